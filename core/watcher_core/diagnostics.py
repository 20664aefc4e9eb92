"""What a compiler or the Python interpreter told the student, as structured diagnostics (pure, no I/O).

procmon captures a compiler's or interpreter's standard error (``stderr`` on process events); this module
turns that text into rows:

* gcc and clang: ``file:line:col: error|warning|note|fatal error: message [-Wflag]``. The context lines
  around them ("In function", "In file included from", the source excerpt, the caret and fix-it lines,
  "N errors generated") say nothing new and are skipped. Linker errors (``undefined reference to``) and
  driver errors (``gcc: error: x.c: No such file or directory``) are kept, without a line.
* Python: the uncaught exception of a traceback (its type, message, and the innermost frame that is in the
  student's files) and the ``SyntaxError`` form (no traceback, the file and line come first).

Each message is normalised into an *error class* (``error_class``): quoted identifiers, numbers and
literals are masked, types become ``<type>``, so the same mistake counts once across students and
variable names. Punctuation in quotes (``expected ';' before '}'``) is kept: it is the mistake.

Files are made relative to the assignment folder: a relative name is taken from the process's working
directory (``cwd``, itself relative to the assignment); an absolute one is cut after the assignment's
folder (the first directory named like the assignment, as ``identity`` finds it). A file outside the
assignment (``/usr/include/stdio.h``) keeps the name the tool printed.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

KINDS = ("error", "warning", "note", "exception")
MAX_MESSAGE = 2000  # characters kept of one message (stderr is at most 16 KiB anyway)
MAX_CLASS = 512


@dataclass(frozen=True)
class Diagnostic:
    kind: str  # one of KINDS; a gcc "fatal error" is an error
    file: str | None  # relative to the assignment folder when inside it, else as printed; None = no file
    line: int | None
    col: int | None
    message: str  # as printed (for an exception: "Type: message")
    error_class: str  # the normalised message (see normalise)
    flag: str | None  # the warning option (-Wunused-variable), or the exception's type (NameError)
    in_assignment: bool = True  # the file is inside the assignment folder (False also when there is no file)


# ---------------------------------------------------------------------------------------------- files


def relative_file(name: str, cwd: str, assignment: str) -> tuple[str, bool]:
    """``name`` as a path relative to the assignment folder, and whether it is inside it.

    ``cwd`` is the process's working directory relative to the assignment folder (``.`` = the folder).
    """
    if name.startswith("/"):
        parts = [p for p in name.split("/") if p and p != "."]
        if assignment in parts:
            rest = parts[parts.index(assignment) + 1 :]
            if rest and ".." not in rest:
                return posixpath.normpath("/".join(rest)), True
        return name, False
    joined = posixpath.normpath(posixpath.join(cwd or ".", name))
    if joined == ".." or joined.startswith("../"):
        # Reached through the parent of the assignment folder: ../hw1/main.c from the folder itself.
        parts = joined.split("/")
        while parts and parts[0] == "..":
            parts.pop(0)
        if len(parts) > 1 and parts[0] == assignment:
            return "/".join(parts[1:]), True
        return name, False
    return joined, True


# ------------------------------------------------------------------------------------ error classes

_ANSI = re.compile(r"\x1b\[[0-9;]*[mK]")
# gcc quotes with ‘…’ in a UTF-8 locale, '…' in the C locale, old ones with `…'; clang with '…'.
_QUOTED = re.compile(r"‘([^’]*)’|'([^'\n]*)'|`([^'\n]*)'|\"((?:[^\"\\\n]|\\.)*)\"")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(?<![A-Za-z_<])[-+]?(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)[uUlLfF]*\b")
_C_TYPE_WORDS = frozenset(
    "void char short int long float double signed unsigned _Bool bool size_t ssize_t ptrdiff_t FILE "
    "struct union enum const volatile restrict static".split()
)
# Python's built-in types, as they appear in TypeError messages ('int' and 'str').
_PY_TYPES = frozenset(
    "int float complex str bytes bytearray bool list tuple dict set frozenset NoneType object type range "
    "function builtin_function_or_method method module generator".split()
)


def _is_type(text: str) -> bool:
    words = _IDENT.findall(text)
    if not words:
        return False
    if any(c in text for c in "*[]()") and not text.strip().startswith(("(", "[")):
        return any(w in _C_TYPE_WORDS for w in words) or text.rstrip().endswith(("*", "]"))
    if any(w in ("struct", "union", "enum") for w in words):
        return True
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ ]*", text) and all(w in _C_TYPE_WORDS or w.endswith("_t") for w in words):
        return True
    return len(words) == 1 and text == words[0] and words[0] in _PY_TYPES


# Keywords in quotes name the construct ('if' statement, 'return' with a value): part of the mistake.
_KEYWORDS = frozenset(
    "if else for while do switch case default break continue return goto sizeof typedef "
    "def class lambda try except finally with import from as pass raise yield global nonlocal "
    "elif in is not and or await async".split()
)


def _mask_quoted(match: re.Match) -> str:
    double = match.group(4) is not None
    text = next(g for g in match.groups() if g is not None)
    if double:
        return "<str>"
    if text in _KEYWORDS:
        return f"'{text}'"
    if _is_type(text):
        return "<type>"
    if _IDENT.fullmatch(text):
        return "<id>"
    if text and len(text) <= 3 and not any(c.isalnum() for c in text):
        return f"'{text}'"  # a token: ';' '}' '->' tells the mistake, keep it
    if re.fullmatch(r"[A-Za-z_][\w.]*\(\)", text):
        return "<id>()"
    return "<lit>"


# gcc/clang: "; did you mean 'total'?"; Python 3.10+: ". Did you mean: 'values'?"
_SUGGESTION = re.compile(r"(?:;\s*did you mean|\.\s*Did you mean:?)\s.*\?\s*$")


def normalise(message: str) -> str:
    """The error class of a message: quoted identifiers -> ``<id>``, types -> ``<type>``, string and other
    literals -> ``<str>`` / ``<lit>``, numbers -> ``<n>``; quotes become ASCII, spaces are collapsed."""
    # A suggestion depends on the student's other names: "'totl' undeclared; did you mean 'total'?" is the
    # same mistake as without one.
    text = _SUGGESTION.sub("", message)
    text = _QUOTED.sub(_mask_quoted, text)
    text = _NUMBER.sub("<n>", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:MAX_CLASS]


# ---------------------------------------------------------------------------------------- gcc/clang

_GCC_LINE = re.compile(
    r"^(?P<file>[^\s:][^:]*?):(?P<line>\d+):(?:(?P<col>\d+):)?\s+"
    r"(?P<kind>fatal error|error|warning|note):\s+(?P<message>.*)$"
)
_FLAG = re.compile(r"\s+\[(?P<flag>-W[^\]\s]*|-f[^\]\s]*)(?:,[^\]]*)?\]$")
# main.c:(.text+0x1e): undefined reference to `foo'   (GNU ld; the object's source file, no line)
_LINKER = re.compile(r"^(?P<file>[^\s:][^:]*?):\([^)]*\):\s+(?P<message>undefined reference to .*)$")
# gcc: error: nofile.c: No such file or directory / cc1: fatal error: ... (the driver: no source location)
_DRIVER = re.compile(
    r"^(?:[\w./+-]*/)?(?P<tool>gcc|g\+\+|cc|c\+\+|clang|clang\+\+|cc1|cc1plus)(?:-[\d.]+)?:\s+"
    r"(?P<kind>fatal error|error|warning):\s+(?P<message>.*)$"
)
_DRIVER_FILE = re.compile(r"^(?P<file>[^\s:']+\.\w+):\s+(?P<rest>.*)$")
# Summaries of what was already reported: a failed link after its errors, clang's counts.
_CONSEQUENCES = re.compile(r"ld returned \d+ exit status|linker command failed with exit code")


def parse_compiler(stderr: str, *, cwd: str = ".", assignment: str = "") -> list[Diagnostic]:
    """The diagnostics of gcc's or clang's standard error, in the order printed."""
    out: list[Diagnostic] = []
    for raw in stderr.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        m = _GCC_LINE.match(line)
        if m:
            message, flag = _split_flag(m["message"])
            file, inside = relative_file(m["file"], cwd, assignment)
            kind = "error" if m["kind"] == "fatal error" else m["kind"]
            col = int(m["col"]) if m["col"] else None
            out.append(_diagnostic(kind, file, int(m["line"]), col, message, flag, inside))
            continue
        m = _LINKER.match(line)
        if m:
            file, inside = relative_file(m["file"], cwd, assignment)
            out.append(_diagnostic("error", file, None, None, m["message"], None, inside))
            continue
        m = _DRIVER.match(line)
        if m and not _CONSEQUENCES.search(m["message"]):
            message, flag = _split_flag(m["message"])
            kind = "error" if m["kind"] == "fatal error" else m["kind"]
            found = _diagnostic(kind, None, None, None, message, flag, False)
            named = _DRIVER_FILE.match(message)
            if named:  # "nofile.c: No such file or directory": the file name is not the mistake
                found = replace(found, error_class=normalise(f"<file>: {named['rest']}"))
            out.append(found)
    return out


def _split_flag(message: str) -> tuple[str, str | None]:
    m = _FLAG.search(message)
    if not m:
        return message, None
    return message[: m.start()], m["flag"]


def _diagnostic(kind, file, line, col, message, flag, inside) -> Diagnostic:
    message = message.strip()[:MAX_MESSAGE]
    return Diagnostic(kind, file, line, col, message, normalise(message), flag, inside)


# --------------------------------------------------------------------------------------------- Python

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.*))?$')
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")
_CARET = re.compile(r"^\s*[\^~]+\s*$")


def parse_python(stderr: str, *, cwd: str = ".", assignment: str = "") -> list[Diagnostic]:
    """The uncaught exception of a Python run (at most one diagnostic, kind ``exception``).

    With chained exceptions ("During handling of the above exception...") the last one printed is the one
    that ended the program. The location is the innermost frame in the assignment's files; without one,
    the innermost frame at all. A ``SyntaxError`` (and ``IndentationError``) has no traceback: its file and
    line come first, the caret's column gives ``col``.
    """
    lines = [_ANSI.sub("", raw).rstrip("\n") for raw in stderr.splitlines()]
    frames: list[tuple[str, int, bool]] = []
    caret_col: int | None = None
    found: Diagnostic | None = None
    in_traceback = False
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            frames, caret_col, in_traceback = [], None, True
            continue
        m = _FRAME.match(line)
        if m:
            file, inside = relative_file(m["file"], cwd, assignment)
            frames.append((file, int(m["line"]), inside))
            caret_col = None
            # SyntaxError form: the source line and a caret follow; its column is the caret's position.
            if m["func"] is None and index + 2 < len(lines) and _CARET.match(lines[index + 2]):
                source, caret = lines[index + 1], lines[index + 2]
                caret_col = caret.index(caret.strip()[0]) - (len(source) - len(source.lstrip())) + 1
            continue
        if line.startswith((" ", "\t")) or not line:
            continue
        m = _EXCEPTION.match(line)
        if m and (in_traceback or frames) and _looks_like_exception(m["type"]):
            found = _exception(m["type"], m["message"] or "", frames, caret_col)
            in_traceback = False
            frames = []
    return [found] if found else []


def _looks_like_exception(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last[:1].isupper() and (
        last.endswith(("Error", "Exception", "Interrupt", "Exit", "Warning")) or last in ("StopIteration",)
    )


def _exception(type_: str, message: str, frames: list[tuple[str, int, bool]], col: int | None) -> Diagnostic:
    mine = [f for f in frames if f[2]]
    innermost = (mine or frames)[-1] if frames else None
    file, line, inside = innermost if innermost else (None, None, False)
    text = f"{type_}: {message}" if message else type_
    text = text[:MAX_MESSAGE]
    error_class = normalise(text)
    return Diagnostic("exception", file, line, col, text, error_class, type_, inside)


# ---------------------------------------------------------------------------------------------- events

PYTHON_NAMES = re.compile(r"^(?:.*/)?(?:python|pypy)(?:[\d.]*)$")


def for_process(
    event_type: str, stderr: str | None, *, cwd: str, assignment: str, kind: str | None = None
) -> list[Diagnostic]:
    """The diagnostics of one process event's captured stderr: a compile's compiler messages, a Python
    run's exception. Other runs (a student's binary) get none: their stderr is theirs, not a tool's."""
    if not stderr:
        return []
    if event_type == "process.compile":
        return parse_compiler(stderr, cwd=cwd, assignment=assignment)
    if event_type == "process.run" and kind == "python":
        return parse_python(stderr, cwd=cwd, assignment=assignment)
    return []


def first_error(diagnostics: Iterable[Diagnostic]) -> Diagnostic | None:
    """The first error (or exception) printed: the one the research measures score."""
    return next((d for d in diagnostics if d.kind in ("error", "exception")), None)
