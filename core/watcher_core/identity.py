"""Identity and layout rules: the one place that knows how a path or a pod name maps to a student.

Every component (filemon, procmon, the backend's legacy API, the ipynb hook) calls these functions;
none parses identities itself. The system we replace let each component do it differently (hw21 became
hw2 in one place, hyphenated course codes were rejected in another); keeping the rules here ends that.

Layout on the workspace volume::

    <workspace root>/{course}-{section}-{student_id}/.../{assignment}/{path relative to the assignment}

* The student directory name is parsed from the right, so course codes may contain hyphens
  (``data-structure-2-202012345`` is course ``data-structure``, section ``2``).
* ``student_id`` stays a string: ``000123`` keeps its zeros.
* The assignment is the first directory below the student directory whose *whole* name matches the
  assignment pattern (default ``hw\\d+``): ``hw21`` is ``hw21``, and a file ``hw1.c`` is just a file.
* Inside a student pod the student directory is mounted at ``/home/coder/project``; both views resolve.
* Student pods are named ``jcode-{course}-{section}-{student_id}`` plus Kubernetes' generated suffixes.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from watcher_core import settings_spec
from watcher_core.settings_spec import setting

# Name pieces. Course codes are lowercase-friendly identifiers that may contain hyphens; sections and
# student ids are alphanumeric without hyphens (that is what makes parsing from the right unambiguous).
COURSE_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?")
SECTION_RE = re.compile(r"[A-Za-z0-9]{1,16}")
MAX_STUDENT_ID_LENGTH = 32
STUDENT_ID_RE = re.compile(rf"[A-Za-z0-9]{{1,{MAX_STUDENT_ID_LENGTH}}}")

DEFAULT_ASSIGNMENT_PATTERN = r"hw\d+"
DEFAULT_EXTENSIONS = (".c", ".h", ".cc", ".cpp", ".hpp", ".py", ".ipynb")
# Matched against every directory component below the student directory (fnmatch, case-sensitive).
# Hidden folders, virtual environments and package caches are never student work.
DEFAULT_IGNORE_DIRS = (".*", "__pycache__", "site-packages", "dist-packages", "venv", "node_modules")
DEFAULT_MAX_FILE_SIZE = 1024 * 1024  # 1 MiB
POD_WORKSPACE_MOUNT = "/home/coder/project"
POD_NAME_PREFIX = "jcode-"
MAX_PATH_LENGTH = 1024

# Kubernetes generates pod-name suffixes from this alphabet (no vowels, no 0/1/3), see
# k8s.io/apimachinery/pkg/util/rand. A Deployment's pod is <name>-<pod-template-hash>-<5 random>.
_K8S_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_RANDOM_SUFFIX_RE = re.compile(rf"[{_K8S_SUFFIX_ALPHABET}]{{5}}")
_TEMPLATE_HASH_RE = re.compile(rf"[{_K8S_SUFFIX_ALPHABET}]{{6,10}}")


class IdentityError(ValueError):
    """A name or path does not follow the layout rules. The message says which part and why."""


@dataclass(frozen=True)
class Student:
    course: str
    section: str
    student_id: str

    @property
    def class_div(self) -> str:
        """The old platform's name for course plus section, e.g. ``os-1``."""
        return f"{self.course}-{self.section}"

    @property
    def dirname(self) -> str:
        return f"{self.course}-{self.section}-{self.student_id}"


@dataclass(frozen=True)
class FileIdentity:
    """Where a file belongs: whose it is, which assignment, and its path relative to the assignment folder."""

    student: Student
    assignment: str
    path: str  # POSIX, relative to the assignment folder, never empty, never with '..'


def _extensions(extensions: tuple[str, ...]) -> tuple[str, ...]:
    for ext in extensions:
        if not ext.startswith("."):
            raise ValueError(f"extension {ext!r} must start with a dot, e.g. '.c'")
    return extensions


@dataclass(frozen=True)
class LayoutRules:
    """The configurable part of the rules. Defaults match the JCode platform."""

    # The agents' settings (filemon has all four; procmon the assignment pattern and the ignored folders).
    assignment_pattern: str = setting(
        DEFAULT_ASSIGNMENT_PATTERN,
        flag="--assignment-pattern",
        env="WATCHER_ASSIGNMENT_PATTERN",
        parse=settings_spec.regex,
        metavar="REGEX",
        doc="assignment folder names (a whole-name match)",
    )
    extensions: tuple[str, ...] = setting(
        DEFAULT_EXTENSIONS,
        flag="--extensions",
        env="WATCHER_EXTENSIONS",
        parse=lambda raw: _extensions(settings_spec.csv(raw)),
        metavar="LIST",
        doc="tracked file extensions, comma-separated (case-sensitive)",
    )
    ignore_dirs: tuple[str, ...] = setting(
        DEFAULT_IGNORE_DIRS,
        flag="--ignore-dirs",
        env="WATCHER_IGNORE_DIRS",
        parse=settings_spec.csv,
        metavar="LIST",
        doc="folder name patterns (fnmatch, comma-separated) that are never student work: filemon does not "
        "watch or scan them, procmon does not attribute what runs in them",
    )
    max_file_size: int = setting(
        DEFAULT_MAX_FILE_SIZE,
        flag="--max-file-size",
        env="WATCHER_MAX_FILE_SIZE",
        parse=settings_spec.positive_byte_size,
        metavar="SIZE",
        default_doc="`1048576` (1 MiB)",
        doc="larger files are recorded as `file.too_large`, without content (a size: `1048576`, `64k`, `512M`, `1G`)",
    )
    _assignment_re: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            compiled = re.compile(self.assignment_pattern)
        except re.error as exc:
            raise IdentityError(f"assignment pattern {self.assignment_pattern!r} is not a valid regex: {exc}") from exc
        object.__setattr__(self, "_assignment_re", compiled)
        object.__setattr__(self, "extensions", tuple(self.extensions))
        object.__setattr__(self, "ignore_dirs", tuple(self.ignore_dirs))
        try:
            _extensions(self.extensions)
        except ValueError as exc:
            raise IdentityError(str(exc)) from None
        if self.max_file_size <= 0:
            raise IdentityError(f"max file size must be positive, got {self.max_file_size}")

    # --- names -----------------------------------------------------------------------------------

    def is_assignment(self, name: str) -> bool:
        return self._assignment_re.fullmatch(name) is not None

    def is_ignored_dir(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.ignore_dirs)

    def is_tracked_name(self, filename: str) -> bool:
        """Whether a file name has a tracked extension (hidden files never are: editor swap files)."""
        if filename.startswith("."):
            return False
        return any(filename.endswith(ext) for ext in self.extensions)

    # --- paths -----------------------------------------------------------------------------------

    def locate(self, rel: str | PurePosixPath) -> FileIdentity:
        """Resolve a path relative to the workspace root: ``os-1-2020/hw1/src/a.c``.

        Raises IdentityError if the path is not inside an assignment of a valid student directory,
        or passes through an ignored directory. Does not check the extension (see ``is_tracked``).
        """
        parts = _clean_parts(rel)
        if len(parts) < 3:
            raise IdentityError(
                f"{'/'.join(parts)!r}: expected {{course}}-{{section}}-{{student_id}}/<assignment>/<file>"
            )
        student = parse_student_dir(parts[0])
        return self._locate_below(student, parts[1:])

    def locate_in_pod(self, student: Student, abs_path: str) -> FileIdentity:
        """Resolve an absolute path seen inside a student pod (``/home/coder/project/hw1/a.c``)."""
        rel = relative_to(abs_path, POD_WORKSPACE_MOUNT)
        if rel is None:
            raise IdentityError(f"{abs_path!r} is outside the pod workspace {POD_WORKSPACE_MOUNT}")
        return self._locate_below(student, _clean_parts(rel))

    def locate_on_node(self, workspace_root: str, abs_path: str) -> FileIdentity:
        """Resolve an absolute path seen on the node (``<workspace root>/os-1-2020/hw1/a.c``)."""
        rel = relative_to(abs_path, workspace_root)
        if rel is None:
            raise IdentityError(f"{abs_path!r} is outside the workspace root {workspace_root}")
        return self.locate(rel)

    def assignment_dir(self, student: Student, below_student: str | PurePosixPath) -> tuple[str, str] | None:
        """For a directory path below the student dir, the (assignment, path inside it), or None.

        Used for a process's cwd, which may be the assignment folder itself (path ``.``).
        """
        parts = _clean_parts(below_student) if str(below_student) not in ("", ".") else []
        for i, part in enumerate(parts):
            if self.is_ignored_dir(part):
                return None
            if self.is_assignment(part):
                inner = parts[i + 1 :]
                if any(self.is_ignored_dir(p) for p in inner):
                    return None
                return part, "/".join(inner) or "."
        return None

    def is_tracked(self, ident: FileIdentity) -> bool:
        return self.is_tracked_name(PurePosixPath(ident.path).name)

    def _locate_below(self, student: Student, parts: list[str]) -> FileIdentity:
        # parts: components below the student directory, the last one being the file.
        for i, part in enumerate(parts[:-1]):
            if self.is_ignored_dir(part):
                raise IdentityError(f"{'/'.join(parts)!r}: directory {part!r} is ignored")
            if self.is_assignment(part):
                inner = parts[i + 1 :]
                for p in inner[:-1]:
                    if self.is_ignored_dir(p):
                        raise IdentityError(f"{'/'.join(parts)!r}: directory {p!r} is ignored")
                return FileIdentity(student, part, "/".join(inner))
        raise IdentityError(
            f"{'/'.join(parts)!r}: no directory matching the assignment pattern {self.assignment_pattern!r}"
        )


# --- student names -------------------------------------------------------------------------------


def parse_student_dir(name: str) -> Student:
    """``data-structure-2-202012345`` -> Student('data-structure', '2', '202012345'), parsed from the right."""
    pieces = name.rsplit("-", 2)
    if len(pieces) != 3:
        raise IdentityError(f"{name!r}: a student directory is named {{course}}-{{section}}-{{student_id}}")
    course, section, student_id = pieces
    if not COURSE_RE.fullmatch(course):
        raise IdentityError(f"{name!r}: course {course!r} must be letters, digits, '-' or '_'")
    if not SECTION_RE.fullmatch(section):
        raise IdentityError(f"{name!r}: section {section!r} must be letters or digits")
    if not STUDENT_ID_RE.fullmatch(student_id):
        raise IdentityError(f"{name!r}: student id {student_id!r} must be letters or digits")
    return Student(course, section, student_id)


def parse_class_div(class_div: str) -> tuple[str, str]:
    """The old API's ``{course}-{section}`` (``os-1``, ``data-structure-2``) -> (course, section)."""
    course, sep, section = class_div.rpartition("-")
    if not sep or not COURSE_RE.fullmatch(course) or not SECTION_RE.fullmatch(section):
        raise IdentityError(f"{class_div!r}: class_div is {{course}}-{{section}}, e.g. 'os-1'")
    return course, section


def parse_pod_name(name: str) -> Student:
    """``jcode-os-1-202012345-7d9f8b6c5d-x2x7z`` -> Student('os', '1', '202012345').

    Accepts the bare name and a Deployment pod (``-<template hash>-<5 random>``, both drawn from
    Kubernetes' suffix alphabet). Also works on a hostname, which Kubernetes sets to the pod name.
    StatefulSet ordinals (``-0``) are not accepted: ``os-1-2020-0`` would read as course ``os-1``.
    """
    if not name.startswith(POD_NAME_PREFIX):
        raise IdentityError(f"{name!r}: student pods are named {POD_NAME_PREFIX}{{course}}-{{section}}-{{student_id}}")
    rest = name[len(POD_NAME_PREFIX) :]
    tokens = rest.split("-")
    candidates = []
    if len(tokens) >= 5 and _RANDOM_SUFFIX_RE.fullmatch(tokens[-1]) and _TEMPLATE_HASH_RE.fullmatch(tokens[-2]):
        candidates.append("-".join(tokens[:-2]))
    candidates.append(rest)
    errors = []
    for candidate in candidates:
        try:
            return parse_student_dir(candidate)
        except IdentityError as exc:
            errors.append(str(exc))
    raise IdentityError(f"{name!r}: not a student pod name ({errors[0]})")


# --- path helpers --------------------------------------------------------------------------------


def check_relative_path(path: str) -> str:
    """Validate a path that must stay inside its folder: relative, no '..', no NUL, bounded length.

    Returns the normalised POSIX form. ``.`` (the folder itself) is allowed. Used by the wire format
    for every path field, and by anything that turns a path into a file name.
    """
    if not isinstance(path, str) or path == "":
        raise IdentityError("path must be a non-empty string")
    if len(path) > MAX_PATH_LENGTH:
        raise IdentityError(f"path is longer than {MAX_PATH_LENGTH} characters")
    if "\x00" in path or "\\" in path:
        raise IdentityError("path must not contain NUL or backslash")
    if path.startswith("/"):
        raise IdentityError("path must be relative, not absolute")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise IdentityError("path must not contain '..'")
    return "/".join(parts) or "."


def relative_to(abs_path: str, root: str) -> str | None:
    """``/a/b/c`` relative to ``/a`` is ``b/c``; None when outside. Pure string logic, no filesystem: the
    parts as ``PurePosixPath`` reads them, compared without building paths (it is on every old API write
    and procmon attribution)."""
    (anchor, parts), (base_anchor, base) = _posix_parts(abs_path), _posix_parts(root)
    if anchor != base_anchor or ".." in parts or parts[: len(base)] != base:
        return None
    return "/".join(parts[len(base) :]) or "."


def _posix_parts(path: str) -> tuple[str, list[str]]:
    """``PurePosixPath(path)``'s anchor (``/``, ``//`` for exactly two leading slashes, or none) and names
    (without empty ones and ``.``)."""
    stripped = path.lstrip("/")
    leading = len(path) - len(stripped)
    anchor = "" if leading == 0 else "//" if leading == 2 else "/"
    return anchor, [p for p in stripped.split("/") if p and p != "."]


def _clean_parts(rel: str | PurePosixPath) -> list[str]:
    text = str(rel)
    try:
        normal = check_relative_path(text)
    except IdentityError as exc:
        raise IdentityError(f"{text!r}: {exc}") from None
    return [] if normal == "." else normal.split("/")


# Legacy API file names join nested folders with '@' (``src@util.c``).
def legacy_filename(path: str) -> str:
    return check_relative_path(path).replace("/", "@")


def path_from_legacy_filename(filename: str) -> str:
    return check_relative_path(filename.replace("@", "/"))
