"""One component's results file (bench/results/<component>.md), written a section at a time.

Each benchmark script rewrites only its own section and keeps the others, in a fixed order, so
benchmarks of one component can run separately and still leave one readable file. bench/run_all.py
assembles bench/RESULTS.md from these files.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_SECTION_RE = re.compile(r"<!-- section:(\w+) -->\n(.*?)<!-- end:\1 -->\n", re.S)


def machine() -> str:
    return f"nproc={os.cpu_count()}, kernel {platform.release()}, Python {platform.python_version()}"


class ResultsFile:
    def __init__(self, name: str, heading: str, order: list[str]):
        self.path = RESULTS_DIR / f"{name}.md"
        self.heading = heading
        self.order = order

    def write_section(self, key: str, title: str, body: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = self.path.read_text() if self.path.exists() else ""
        sections = dict(_SECTION_RE.findall(text))
        sections[key] = f"## {title}\n\n{body}\n"
        out = [f"# {self.heading}\n"]
        for name in self.order + sorted(set(sections) - set(self.order)):
            if name in sections:
                out.append(f"<!-- section:{name} -->\n{sections[name]}<!-- end:{name} -->\n")
        self.path.write_text("\n".join(out))
