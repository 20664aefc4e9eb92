"""Unified diffs between two snapshot contents (pure; binary-safe)."""

from __future__ import annotations

import difflib


def decode_text(data: bytes) -> tuple[str, bool]:
    """(text, was_binary): UTF-8, with replacement characters where the bytes are not valid UTF-8."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def unified_diff(
    old: bytes, new: bytes, old_name: str = "a", new_name: str = "b", context: int = 3
) -> tuple[str, bool]:
    """(diff text, binary): a unified diff of two contents; empty when they are equal."""
    old_text, old_bin = decode_text(old)
    new_text, new_bin = decode_text(new)
    lines = difflib.unified_diff(
        old_text.splitlines(keepends=True),
        new_text.splitlines(keepends=True),
        fromfile=old_name,
        tofile=new_name,
        n=context,
    )
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out), (old_bin or new_bin)
