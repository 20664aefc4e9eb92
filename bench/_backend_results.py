"""Writes one section of bench/results/backend.md, keeping the other benchmark's section."""
from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "backend.md"
ORDER = ["ingest", "ingest_prefilled", "ingest_postgres", "queries", "queries_postgres"]


def write_section(key: str, title: str, body: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    text = RESULTS.read_text() if RESULTS.exists() else ""
    sections = dict(re.findall(r"<!-- section:(\w+) -->\n(.*?)<!-- end:\1 -->\n", text, re.S))
    sections[key] = f"## {title}\n\n{body}\n"
    out = ["# Backend benchmarks\n"]
    for name in ORDER + sorted(set(sections) - set(ORDER)):
        if name in sections:
            out.append(f"<!-- section:{name} -->\n{sections[name]}<!-- end:{name} -->\n")
    RESULTS.write_text("\n".join(out))
