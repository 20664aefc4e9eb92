"""Attribution: pod view (hostname + /home/coder/project) and node view (<root>/{student}/hwN)."""

from watcher_agents.procmon.attribution import (
    COMPILER_CHILD,
    NO_ASSIGNMENT,
    NOT_CLASSIFIED,
    NOT_STUDENT,
    Attributed,
    Attributor,
    Skip,
    resolve,
)
from watcher_agents.procmon.events import ExecEvent
from watcher_core.identity import Student

ROOT = "/watcher/codes"
A = Attributor(ROOT)
POD = "jcode-os-1-202012345-7d9f8b6c5d-x2x7z"
ME = Student("os", "1", "202012345")


def ev(filename, argv, cwd, hostname="node-a"):
    return ExecEvent(pid=100, ktime_ns=1, filename=filename, argv=argv, cwd=cwd, hostname=hostname)


def test_pod_view_compile_with_every_source():
    r = A.attribute(ev("/usr/bin/gcc", ["gcc", "main.c", "lib/util.c", "-o", "prog"], "/home/coder/project/hw1", POD))
    assert isinstance(r, Attributed)
    assert (r.type, r.student, r.assignment, r.view) == ("process.compile", ME, "hw1", "pod")
    assert r.sources == ("main.c", "lib/util.c")
    assert (r.output, r.path, r.cwd, r.compiler, r.label) == ("prog", "main.c", ".", "gcc", "gcc")


def test_node_view_compile():
    r = A.attribute(ev("/usr/bin/x86_64-linux-gnu-gcc-12", ["gcc", "a.c"], f"{ROOT}/os-1-202012345/hw2/src"))
    assert isinstance(r, Attributed)
    assert (r.student, r.assignment, r.view, r.cwd, r.sources, r.output) == (
        ME,
        "hw2",
        "node",
        "src",
        ("src/a.c",),
        "src/a.out",
    )


def test_hyphenated_course_and_file_named_like_an_assignment():
    r = A.attribute(ev("gcc", ["gcc", "hw1.c", "-o", "hw1"], f"{ROOT}/data-structure-2-000123/hw1"))
    assert isinstance(r, Attributed)
    assert r.student == Student("data-structure", "2", "000123")
    assert (r.assignment, r.sources, r.output) == ("hw1", ("hw1.c",), "hw1")


def test_cwd_outside_the_assignment_uses_the_sources():
    r = A.attribute(ev("gcc", ["gcc", "hw3/a.c", "-o", "hw3/a"], "/home/coder/project", POD))
    assert isinstance(r, Attributed)
    assert (r.assignment, r.sources, r.output, r.cwd) == ("hw3", ("a.c",), "a", ".")


def test_absolute_source_paths():
    r = A.attribute(ev("gcc", ["gcc", "/home/coder/project/hw1/a.c"], "/tmp", POD))
    assert isinstance(r, Attributed) and r.sources == ("a.c",) and r.assignment == "hw1"


def test_python_script_run():
    r = A.attribute(ev("/usr/bin/python3.11", ["python3", "main.py"], "/home/coder/project/hw4", POD))
    assert isinstance(r, Attributed)
    assert (r.type, r.kind, r.target, r.path, r.label) == ("process.run", "python", "main.py", "main.py", "python3")


def test_python_module_and_command_use_the_cwd():
    r = A.attribute(ev("python3", ["python3", "-m", "pytest"], "/home/coder/project/hw4/tests", POD))
    assert isinstance(r, Attributed) and (r.target, r.path, r.cwd) == (None, "tests", "tests")
    r = A.attribute(ev("python3", ["python3", "-c", "print(1)"], "/home/coder/project/hw4", POD))
    assert isinstance(r, Attributed) and (r.target, r.path) == (None, ".")


def test_student_binary_relative_and_absolute():
    r = A.attribute(ev("./a.out", ["./a.out"], "/home/coder/project/hw1", POD))
    assert isinstance(r, Attributed) and (r.kind, r.target, r.label) == ("binary", "a.out", "binary")
    r = A.attribute(ev(f"{ROOT}/os-1-202012345/hw5/bin/run", ["run"], "/root"))
    assert isinstance(r, Attributed) and (r.student, r.assignment, r.target, r.cwd) == (ME, "hw5", "bin/run", ".")


def test_shebang_python_script_is_a_python_run():
    r = A.attribute(ev("./main.py", ["./main.py"], "/home/coder/project/hw1", POD))
    assert isinstance(r, Attributed) and (r.kind, r.target) == ("python", "main.py")


def test_skips():
    assert A.attribute(ev("/usr/bin/gcc", ["gcc", "a.c"], "/root")) == Skip(NOT_STUDENT)
    assert A.attribute(ev("/bin/ls", ["ls"], "/home/coder/project/hw1", POD)) == Skip(NOT_CLASSIFIED)
    assert A.attribute(ev("gcc", ["gcc", "/tmp/x.c"], "/tmp", POD)) == Skip(NO_ASSIGNMENT)
    assert A.attribute(ev("clang", ["clang", "-cc1", "a.c"], "/home/coder/project/hw1", POD)) == Skip(COMPILER_CHILD)
    assert A.attribute(ev("gcc", ["gcc", "a.c"], "/home/coder/project/hw1", POD), parent_is_compiler=True) == Skip(
        COMPILER_CHILD
    )
    # A file of the student, but inside an ignored directory (a virtualenv) is not student work.
    assert A.attribute(ev("/home/coder/project/hw1/.venv/bin/tool", ["tool"], "/home/coder/project/hw1", POD)) == Skip(
        NOT_CLASSIFIED
    )


def test_not_a_pod_name_falls_back_to_paths():
    r = A.attribute(ev("gcc", ["gcc", "a.c"], f"{ROOT}/os-1-202012345/hw1", hostname="jcode-broken"))
    assert isinstance(r, Attributed) and r.view == "node"


def test_unknown_cwd_keeps_absolute_paths_only():
    assert resolve("a.c", None) is None
    assert resolve("/x/../y/a.c", None) == "/y/a.c"
    r = A.attribute(ev("gcc", ["gcc", "a.c"], None, POD))
    assert r == Skip(NO_ASSIGNMENT)
