"""Whose process is this, and which assignment: from its hostname, cwd and the paths in its argv.

Two views of the same files (the identity rules come from ``watcher_core.identity``):

* pod view: the process's UTS hostname is a student pod name (``jcode-os-1-202012345-...``), and paths
  are inside the pod: ``/home/coder/project/hw1/a.c``;
* node view: paths are on the node: ``<workspace root>/os-1-202012345/hw1/a.c`` (the student comes from
  the directory name).

``attribute`` is pure: it gets the exec (with cwd and hostname already read from /proc) and returns a
``Attributed`` (what to report once the process exits) or a ``Skip`` with the reason (a metric label).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from watcher_agents.procmon.classify import Classes, parse_compile, parse_python
from watcher_agents.procmon.events import ExecEvent
from watcher_core import identity

# Skip reasons (label values of procmon_events_filtered_total; bounded set)
NOT_STUDENT = "not_student"  # neither a student pod nor a workspace path
NOT_CLASSIFIED = "not_classified"  # a student's process, but no compiler/interpreter/workspace binary
NO_ASSIGNMENT = "no_assignment"  # a compile/run outside any assignment folder
COMPILER_CHILD = "compiler_child"  # clang -cc1 or a compiler started by a compiler (lto, driver)
# a process in a cgroup (container) already known as one student's that claims another student (a UTS
# namespace of its own named after a classmate's pod): never recorded as the classmate
OTHER_STUDENTS_CGROUP = "other_students_cgroup"
SKIP_REASONS = (NOT_STUDENT, NOT_CLASSIFIED, NO_ASSIGNMENT, COMPILER_CHILD, OTHER_STUDENTS_CGROUP)


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class StudentContext:
    student: identity.Student
    view: str  # "pod" or "node"
    base: str  # the directory the student directory is seen as: /home/coder/project or <root>/<dir>


@dataclass(frozen=True)
class Attributed:
    type: str  # "process.compile" or "process.run"
    label: str  # metrics label: gcc, g++, cc, c++, clang, clang++, python3, python, binary
    student: identity.Student
    assignment: str
    path: str
    cwd: str
    compiler: str | None = None
    sources: tuple[str, ...] = ()
    output: str | None = None
    kind: str | None = None  # python | binary (runs)
    target: str | None = None
    view: str = "pod"


class Attributor:
    def __init__(
        self, workspace_root: str, rules: identity.LayoutRules | None = None, classes: Classes | None = None
    ) -> None:
        self.root = posixpath.normpath(str(workspace_root))
        self.rules = rules or identity.LayoutRules()
        self.classes = classes or Classes()

    # --- who ------------------------------------------------------------------------------------

    def context(self, hostname: str | None, cwd: str | None, exe: str | None) -> StudentContext | None:
        """The student of a process: its pod name first, else a node path (cwd, then the executable)."""
        if hostname and hostname.startswith(identity.POD_NAME_PREFIX):
            try:
                student = identity.parse_pod_name(hostname)
            except identity.IdentityError:
                student = None
            if student is not None:
                return StudentContext(student, "pod", identity.POD_WORKSPACE_MOUNT)
        for path in (cwd, exe):
            if not path or not path.startswith("/"):
                continue
            rel = identity.relative_to(path, self.root)
            if rel in (None, "."):
                continue
            first = rel.split("/", 1)[0]
            try:
                student = identity.parse_student_dir(first)
            except identity.IdentityError:
                continue
            return StudentContext(student, "node", posixpath.join(self.root, first))
        return None

    # --- where ----------------------------------------------------------------------------------

    def locate_file(self, ctx: StudentContext, abs_path: str | None) -> identity.FileIdentity | None:
        if not abs_path:
            return None
        try:
            if ctx.view == "pod":
                ident = self.rules.locate_in_pod(ctx.student, abs_path)
            else:
                ident = self.rules.locate_on_node(self.root, abs_path)
        except identity.IdentityError:
            return None
        return ident if ident.student == ctx.student else None

    def locate_dir(self, ctx: StudentContext, abs_dir: str | None) -> tuple[str, str] | None:
        """(assignment, path inside it) of a directory of the student, or None."""
        if not abs_dir:
            return None
        rel = identity.relative_to(abs_dir, ctx.base)
        if rel is None:
            return None
        try:
            return self.rules.assignment_dir(ctx.student, rel)
        except identity.IdentityError:
            return None

    # --- what -----------------------------------------------------------------------------------

    def attribute(self, ev: ExecEvent, parent_is_compiler: bool = False) -> Attributed | Skip:
        cwd = ev.cwd
        exe = resolve(ev.filename, cwd)
        ctx = self.context(ev.hostname, cwd, exe)
        if ctx is None:
            return Skip(NOT_STUDENT)
        cwd_loc = self.locate_dir(ctx, cwd)
        argv = ev.argv or [ev.filename]

        family = self.classes.compiler_family(ev.filename)
        if family is not None:
            if parent_is_compiler:
                return Skip(COMPILER_CHILD)
            parsed = parse_compile(argv)
            if parsed.internal:
                return Skip(COMPILER_CHILD)
            located = [self.locate_file(ctx, p) for p in (resolve(s, cwd) for s in parsed.sources) if p]
            out = self.locate_file(ctx, resolve(parsed.output, cwd)) if parsed.output else None
            assignment = (
                next((i.assignment for i in located if i), None)
                or (out.assignment if out else None)
                or (cwd_loc[0] if cwd_loc else None)
            )
            if assignment is None:
                return Skip(NO_ASSIGNMENT)
            sources = tuple(i.path for i in located if i and i.assignment == assignment)
            output = out.path if out and out.assignment == assignment else None
            cwd_rel = _cwd_in(cwd_loc, assignment)
            return Attributed(
                "process.compile",
                family,
                ctx.student,
                assignment,
                path=sources[0] if sources else cwd_rel,
                cwd=cwd_rel,
                compiler=_basename(ev.filename),
                sources=sources,
                output=output,
                view=ctx.view,
            )

        interp = self.classes.interpreter_family(ev.filename)
        exe_ident = self.locate_file(ctx, exe) if exe else None
        if interp is not None or (exe_ident is not None and exe.endswith(".py")):
            script_ident = exe_ident if interp is None else None
            if interp is not None:
                py = parse_python(argv)
                if py.script:
                    script_ident = self.locate_file(ctx, resolve(py.script, cwd))
            assignment = script_ident.assignment if script_ident else (cwd_loc[0] if cwd_loc else None)
            if assignment is None:
                return Skip(NO_ASSIGNMENT)
            cwd_rel = _cwd_in(cwd_loc, assignment)
            target = script_ident.path if script_ident else None
            return Attributed(
                "process.run",
                interp or "python3",
                ctx.student,
                assignment,
                path=target or cwd_rel,
                cwd=cwd_rel,
                kind="python",
                target=target,
                view=ctx.view,
            )

        if exe_ident is not None:
            cwd_rel = _cwd_in(cwd_loc, exe_ident.assignment)
            return Attributed(
                "process.run",
                "binary",
                ctx.student,
                exe_ident.assignment,
                path=exe_ident.path,
                cwd=cwd_rel,
                kind="binary",
                target=exe_ident.path,
                view=ctx.view,
            )
        return Skip(NOT_CLASSIFIED)


def resolve(path: str | None, cwd: str | None) -> str | None:
    """An argv path made absolute against the process's cwd (None if that cannot be known)."""
    if not path:
        return None
    if path.startswith("/"):
        return posixpath.normpath(path)
    if not cwd or not cwd.startswith("/"):
        return None
    return posixpath.normpath(posixpath.join(cwd, path))


def _cwd_in(cwd_loc: tuple[str, str] | None, assignment: str) -> str:
    """The cwd relative to the assignment folder; '.' when the cwd is outside it (e.g. the student
    folder: ``gcc hw1/a.c`` run from /home/coder/project), since wire paths never leave the folder."""
    if cwd_loc and cwd_loc[0] == assignment:
        return cwd_loc[1]
    return "."


def _basename(path: str) -> str:
    return posixpath.basename(path) or path
