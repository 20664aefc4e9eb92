"""Node-local watching: which student workspaces have a pod on this node.

filemon in node mode watches only the workspace folders of the student pods scheduled on its own node. A
pod watch on the Kubernetes API (field selector ``spec.nodeName=<node>``, the student pods' label selector)
keeps a table of those pods; each pod maps to its folder (an annotation, else a pattern on the pod name:
the platform names pods ``jcode-{course}-{section}-{student_id}[-{rs-hash}-{suffix}]`` and mounts
``workspace/{course}-{section}-{student_id}``). A folder is watched while at least one pod maps to it (a
rolling update briefly runs two), and dropped when the last one goes.

``PodTable`` is the pure part (events in, changes out); ``PodWatch`` is the thread that lists and
watches with a plain HTTP client: list, then watch from the list's resourceVersion; a watch that ends is
resumed from the last version seen (bookmarks keep it fresh); 410 Gone (the version was compacted away)
relists, and the relist's difference with the table is applied, so nothing that happened meanwhile is
missed. API errors are counted and retried with a capped backoff; the last table stays in force.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from watcher_core import identity

log = logging.getLogger(__name__)

DEFAULT_ANNOTATION = "watcher.jcode.io/workspace"
# jcode-{course}-{section}-{student_id}, then a Deployment's -{rs-hash}-{suffix} if any; the course may hold '-'
DEFAULT_PATTERN = r"^jcode-(?P<workspace>[a-z0-9_-]+?-[a-z0-9]+-[a-z0-9]+)(?:-[a-z0-9]{1,10}-[a-z0-9]{5})?$"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TERMINAL_PHASES = ("Succeeded", "Failed")  # a finished pod writes nothing more


def pattern(raw: str) -> str:
    """The settings parser of WATCHER_POD_WORKSPACE_PATTERN: a regex with a group `workspace` (or one group)."""
    try:
        compiled = re.compile(raw)
    except re.error as exc:
        raise ValueError(f"is not a valid regex ({exc})") from None
    if "workspace" not in compiled.groupindex and compiled.groups < 1:
        raise ValueError("needs a group that captures the folder, e.g. ^jcode-(?P<workspace>[a-z0-9-]+)$")
    return raw


_SELECTOR = re.compile(r"[A-Za-z0-9_./=!,() -]*")


def label_selector(raw: str) -> str:
    """The settings parser of WATCHER_POD_SELECTOR: Kubernetes label selector text (the API server checks
    the rest)."""
    raw = raw.strip()
    if not _SELECTOR.fullmatch(raw):
        raise ValueError("must be a label selector, e.g. app=jcode-student or role in (student)")
    return raw


@dataclass(frozen=True)
class Mapping:
    """How a pod names its workspace folder."""

    annotation: str = DEFAULT_ANNOTATION
    pattern: str = DEFAULT_PATTERN

    def workspace(self, pod: dict) -> str | None:
        """The pod's folder below the workspace root, or None (not a student pod, or a name we cannot use)."""
        meta = pod.get("metadata") or {}
        folder = (meta.get("annotations") or {}).get(self.annotation) if self.annotation else None
        if folder is None:
            m = re.match(self.pattern, meta.get("name") or "")
            if m is None:
                return None
            folder = m.group("workspace") if "workspace" in m.re.groupindex else m.group(1)
        try:  # one folder directly below the root, named as the layout rules expect: never a path
            identity.parse_student_dir(folder)
        except identity.IdentityError:
            return None
        return folder


@dataclass(frozen=True)
class Change:
    added: bool  # True: start watching `workspace`; False: stop
    workspace: str
    pod: str  # namespace/name of the pod that caused it


def _key(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _live(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES


class PodTable:
    """The student pods on this node and the folders they map to (pure: events in, changes out)."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.pods: dict[str, str] = {}  # namespace/name -> workspace
        self.users: dict[str, set[str]] = {}  # workspace -> pods mapping to it
        self.unmapped: set[str] = set()  # pods seen that map to no folder

    def workspaces(self) -> set[str]:
        return set(self.users)

    def _put(self, key: str, workspace: str | None) -> list[Change]:
        changes = []
        old = self.pods.get(key)
        if old == workspace:
            return changes
        if old is not None:
            del self.pods[key]
            self.users[old].discard(key)
            if not self.users[old]:
                del self.users[old]
                changes.append(Change(False, old, key))
        if workspace is not None:
            self.pods[key] = workspace
            if workspace not in self.users:
                self.users[workspace] = set()
                changes.append(Change(True, workspace, key))
            self.users[workspace].add(key)
        return changes

    def apply(self, kind: str, pod: dict) -> list[Change]:
        """One watch event (ADDED, MODIFIED, DELETED)."""
        key = _key(pod)
        if kind == "DELETED" or not _live(pod):
            self.unmapped.discard(key)
            return self._put(key, None)
        workspace = self.mapping.workspace(pod)
        if workspace is None:
            self.unmapped.add(key)
        else:
            self.unmapped.discard(key)
        return self._put(key, workspace)

    def replace(self, pods: list[dict]) -> list[Change]:
        """A full list (startup, relist after 410): the difference with what we had."""
        listed = {_key(p): p for p in pods}
        changes = []
        for key in [k for k in self.pods if k not in listed]:
            changes += self._put(key, None)
        self.unmapped &= set(listed)
        for pod in listed.values():
            changes += self.apply("MODIFIED", pod)
        return changes


class Gone(Exception):
    """410: the resourceVersion we asked to watch from is no longer kept; relist."""


class ApiFailure(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass
class KubeAccess:
    """Where the API server is and how to authenticate. ``in_cluster`` reads the pod's service account."""

    url: str
    token_file: Path | None = None
    token: str | None = None
    verify: str | bool = True

    @classmethod
    def in_cluster(cls, root: Path = SERVICE_ACCOUNT, env: dict | None = None) -> KubeAccess:
        env = os.environ if env is None else env
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
        missing = [
            what
            for what, ok in (
                ("KUBERNETES_SERVICE_HOST", bool(host)),
                (str(root / "token"), (root / "token").exists()),
                (str(root / "ca.crt"), (root / "ca.crt").exists()),
            )
            if not ok
        ]
        if missing:
            raise ApiFailure(
                "config",
                "node-local watching needs the Kubernetes API from inside the pod (the service account's "
                f"token mounted: automountServiceAccountToken); missing: {', '.join(missing)}",
            )
        if ":" in host:
            host = f"[{host}]"
        return cls(f"https://{host}:{port}", token_file=root / "token", verify=str(root / "ca.crt"))

    def headers(self) -> dict[str, str]:
        # read each time: projected service account tokens are rotated by the kubelet
        token = self.token_file.read_text().strip() if self.token_file else self.token
        return {"Authorization": f"Bearer {token}"} if token else {}


class PodWatch:
    """Keeps a PodTable of the student pods on ``node`` and reports each change to ``on_change``."""

    def __init__(
        self,
        access: KubeAccess,
        node: str,
        table: PodTable,
        on_change: Callable[[Change], None],
        *,
        namespace: str = "",
        selector: str = "",
        metrics=None,
        watch_timeout: int = 300,
        backoff_cap: float = 30.0,
    ) -> None:
        self.access = access
        self.node = node
        self.table = table
        self.on_change = on_change
        self.namespace = namespace
        self.selector = selector
        self.metrics = metrics
        self.watch_timeout = watch_timeout
        self.backoff_cap = backoff_cap
        self.synced = threading.Event()  # the first list has been applied
        self._stop = threading.Event()
        verify = ssl.create_default_context(cafile=access.verify) if isinstance(access.verify, str) else access.verify
        self._client = httpx.Client(verify=verify, timeout=httpx.Timeout(30.0, read=watch_timeout + 30.0))
        self._thread = threading.Thread(target=self._run, name="filemon-pods", daemon=True)

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods" if self.namespace else "/api/v1/pods"

    def params(self) -> dict[str, str]:
        p = {"fieldSelector": f"spec.nodeName={self.node}"}
        if self.selector:
            p["labelSelector"] = self.selector
        return p

    # --- one step at a time (the loop below; tests drive them directly) ---------------------------------

    def sync(self) -> str:
        """List the pods and apply the difference; returns the list's resourceVersion."""
        r = self._get(self.params())
        body = r.json()
        self._emit(self.table.replace(body.get("items") or []))
        self.synced.set()
        return (body.get("metadata") or {}).get("resourceVersion", "")

    def follow(self, rv: str) -> str:
        """Watch from ``rv`` until the server ends the watch; returns the last version seen. Raises Gone."""
        params = {
            **self.params(),
            "watch": "true",
            "resourceVersion": rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.watch_timeout),
        }
        with self._client.stream("GET", self.access.url + self.path, params=params, headers=self.access.headers()) as r:
            if r.status_code == 410:
                raise Gone(rv)
            self._check(r)
            for event in self._lines(r):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(rv)
                    raise ApiFailure("watch_error", f"{obj.get('code')} {obj.get('message', '')}")
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._emit(self.table.apply(kind, obj))
                if self._stop.is_set():
                    break
        return rv

    def cycle(self, rv: str) -> str:
        """Follow from ``rv``; when it has expired, relist (what changed meanwhile is in the difference)."""
        try:
            return self.follow(rv)
        except Gone:
            log.info("pod watch: resourceVersion %s expired (410 Gone): listing again", rv)
            if self.metrics is not None:
                self.metrics.pod_relists.inc()
            return self.sync()

    # --- the thread -----------------------------------------------------------------------------------

    def start(self) -> PodWatch:
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._client.close()  # ends a blocked read of the watch stream
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        rv = ""
        failures = 0
        while not self._stop.is_set():
            try:
                rv = self.cycle(rv) if rv else self.sync()
                failures = 0
            except (ApiFailure, httpx.HTTPError, ValueError) as exc:
                if self._stop.is_set():
                    break
                failures += 1
                reason = exc.reason if isinstance(exc, ApiFailure) else type(exc).__name__
                if self.metrics is not None:
                    self.metrics.pod_watch_errors.labels(reason).inc()
                delay = min(self.backoff_cap, 0.5 * 2 ** min(failures, 10)) * random.uniform(0.5, 1.0)
                log.warning(
                    "pod watch: %s; the %d watched workspaces stay as they are, retrying in %.1f s",
                    exc,
                    len(self.table.users),
                    delay,
                )
                rv = ""  # after an error, list again: events may have been missed
                self._stop.wait(delay)

    # --- HTTP -------------------------------------------------------------------------------------------

    def _get(self, params: dict[str, str]) -> httpx.Response:
        r = self._client.get(self.access.url + self.path, params=params, headers=self.access.headers())
        self._check(r)
        return r

    @staticmethod
    def _check(r: httpx.Response) -> None:
        if r.status_code >= 400:
            r.read()
            reason = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(
                r.status_code, f"http_{r.status_code}"
            )
            raise ApiFailure(reason, f"{r.status_code} {r.text[:300]}")

    @staticmethod
    def _lines(r: httpx.Response) -> Iterator[dict]:
        for line in r.iter_lines():
            if line.strip():
                yield json.loads(line)

    def _emit(self, changes: list[Change]) -> None:
        if self.metrics is not None:
            self.metrics.student_pods.set(len(self.table.pods))
            self.metrics.unmapped_pods.set(len(self.table.unmapped))
        for change in changes:
            log.info(
                "workspace %s %s (pod %s on node %s)",
                change.workspace,
                "watched" if change.added else "dropped",
                change.pod,
                self.node,
            )
            self.on_change(change)
