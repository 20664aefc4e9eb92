"""Build the four images (cached) and record their sizes and build times in bench/results/images.md.

    .venv/bin/python bench/images_size.py            # after `make deps` (podman, buildah, the base image)
    .venv/bin/python bench/images_size.py --cold     # also time a build without the layer cache

Sizes are what `podman image inspect` reports (uncompressed, layers shared with other images counted
in each); the shared part is the base (debian:bookworm-slim) plus Debian's python3.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from results_file import ResultsFile, machine  # noqa: E402

from support.podman import COMPONENTS, build_images, container_env, image_size  # noqa: E402

BASE = "docker.io/library/debian:bookworm-slim"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cold", action="store_true", help="remove the build cache first and time a cold build")
    args = p.parse_args(argv)
    if args.cold:
        subprocess.run(["buildah", "rm", "--all"], env=container_env(), check=False, capture_output=True)
        subprocess.run(
            ["podman", "image", "prune", "--all", "--force", "--filter", "dangling=false"],
            env=container_env(),
            check=False,
            capture_output=True,
        )
    times = {}
    tags = {}
    for component in COMPONENTS:
        start = time.monotonic()
        tags |= build_images((component,))
        times[component] = time.monotonic() - start
    sizes = {c: image_size(tag) for c, tag in tags.items()}
    base = image_size(BASE)
    rows = "\n".join(f"| `{tags[c]}` | **{sizes[c] / 1e6:.0f} MB** | {times[c]:.0f} s |" for c in COMPONENTS)
    body = (
        f"The four images from `docker/Dockerfile` (buildah, `--layers`), each Debian bookworm's python3 "
        f"with one virtual environment of its component's locked dependencies. Base "
        f"`debian:bookworm-slim` (made locally by scripts/images/base.sh): {base / 1e6:.0f} MB.\n"
        f"Build times are {'cold (no layer cache)' if args.cold else 'with the layer cache of earlier builds'}, "
        f"in this order; the first image pays for the shared build stage.\n"
        f"Machine: {machine()}.\n"
        f"Command: `.venv/bin/python bench/images_size.py{' --cold' if args.cold else ''}`\n\n"
        f"| image | size (uncompressed) | build |\n|---|---|---|\n{rows}\n"
    )
    ResultsFile("images", "Container images", ["sizes"]).write_section(
        "sizes", "Image sizes (bench/images_size.py)", body
    )
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
