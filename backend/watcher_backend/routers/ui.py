"""The dashboard's pages at ``/ui``, served by the backend itself so it works offline (no CDN).

Every page is the same ``index.html``; ``app.js`` reads the path and fetches the JSON it needs with the
token the user typed (kept in sessionStorage, sent as Bearer). The pages themselves need no token: they
hold no data. Asset URLs carry a hash of the file (``/ui/assets/<hash>/app.js``), so browsers may cache them
for good and an upgrade is never shown with stale script.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
from importlib import resources

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

router = APIRouter(prefix="/ui", tags=["dashboard"], include_in_schema=False)

ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


@functools.cache
def _asset(name: str) -> tuple[bytes, str]:
    data = resources.files("watcher_backend.ui").joinpath(name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


def _page(request: Request) -> HTMLResponse:
    settings = request.app.state.settings
    config = {
        "timeZone": settings.time_zone,
        "stuckCompiles": settings.stuck_compiles,
        "pasteBytes": settings.paste_bytes,
        "assets": {name: f"/ui/assets/{_asset(name)[1]}/{name}" for name in ASSETS},
    }
    text = _asset("index.html")[0].decode()
    text = text.replace("{{config}}", html.escape(json.dumps(config), quote=True))
    for name, url in config["assets"].items():  # type: ignore[union-attr]
        text = text.replace("{{" + name + "}}", url)
    return HTMLResponse(text, headers={"Cache-Control": "no-cache"})


@router.get("/assets/{version}/{name}")
def asset(version: str, name: str):
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail=f"no asset {name!r}")
    data, digest = _asset(name)
    # An old version's URL still answers (with today's file), but only the current one may be kept for good.
    cache = "public, max-age=31536000, immutable" if version == digest else "no-cache"
    return Response(data, media_type=ASSETS[name], headers={"Cache-Control": cache, "ETag": f'"{digest}"'})


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
@router.get("/courses/{course}", response_class=HTMLResponse)
@router.get("/courses/{course}/sections/{section}/assignments/{assignment}", response_class=HTMLResponse)
@router.get(
    "/courses/{course}/sections/{section}/assignments/{assignment}/students/{student_id}",
    response_class=HTMLResponse,
)
def page(request: Request):
    return _page(request)
