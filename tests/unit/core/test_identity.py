import pytest

from watcher_core import identity
from watcher_core.identity import IdentityError, LayoutRules, Student

RULES = LayoutRules()


@pytest.mark.parametrize(
    "name, expected",
    [
        ("os-1-202012345", ("os", "1", "202012345")),
        ("data-structure-2-202012345", ("data-structure", "2", "202012345")),
        ("os-1-000123", ("os", "1", "000123")),  # leading zeros are kept
        ("a_b-10-s99", ("a_b", "10", "s99")),
    ],
)
def test_student_dir_is_parsed_from_the_right(name, expected):
    s = identity.parse_student_dir(name)
    assert (s.course, s.section, s.student_id) == expected
    assert s.dirname == name


@pytest.mark.parametrize("name", ["os-1", "os", "-1-2020", "os--2020", "os-1-", "os-1-20 20", "os-1-2020.5", "..-1-2"])
def test_bad_student_dirs_are_rejected_with_a_reason(name):
    with pytest.raises(IdentityError, match=repr(name)[1:-1].split("-")[0] or "."):
        identity.parse_student_dir(name)


def test_assignment_is_the_whole_name_and_the_first_match():
    f = RULES.locate("os-1-2020/hw21/main.c")
    assert (f.assignment, f.path) == ("hw21", "main.c")
    f = RULES.locate("os-1-2020/hw1/hw1.c")  # a file named like an assignment is a file
    assert (f.assignment, f.path) == ("hw1", "hw1.c")
    f = RULES.locate("os-1-2020/hw1/hw2/x.c")  # the first matching directory wins
    assert (f.assignment, f.path) == ("hw1", "hw2/x.c")
    f = RULES.locate("os-1-2020/projects/hw3/src/util.c")
    assert (f.assignment, f.path) == ("hw3", "src/util.c")
    with pytest.raises(IdentityError, match="assignment pattern"):
        RULES.locate("os-1-2020/hw2x/main.c")
    with pytest.raises(IdentityError):
        RULES.locate("os-1-2020/main.c")


def test_assignment_pattern_is_configurable():
    rules = LayoutRules(assignment_pattern=r"(hw|lab)\d+")
    assert rules.locate("os-1-2020/lab3/a.py").assignment == "lab3"
    with pytest.raises(IdentityError, match="not a valid regex"):
        LayoutRules(assignment_pattern="(")


@pytest.mark.parametrize(
    "rel",
    [
        "os-1-2020/hw1/.git/config.c",
        "os-1-2020/hw1/venv/lib/x.py",
        "os-1-2020/hw1/a/__pycache__/m.py",
        "os-1-2020/hw1/lib/site-packages/m.py",
        "os-1-2020/.cache/hw1/a.c",
    ],
)
def test_ignored_directories(rel):
    with pytest.raises(IdentityError, match="ignored"):
        RULES.locate(rel)


def test_student_folders_named_lib_or_env_are_not_ignored():
    # The old system hid any folder called lib, libs, lib64, env or ENV.
    assert RULES.locate("os-1-2020/hw1/lib/list.c").path == "lib/list.c"
    assert RULES.locate("os-1-2020/hw1/env/e.py").path == "env/e.py"


def test_tracked_extensions_and_hidden_files():
    for name in ["a.c", "a.h", "a.cc", "a.cpp", "a.hpp", "a.py", "a.ipynb"]:
        assert RULES.is_tracked_name(name), name
    for name in ["a.o", "a.out", "Makefile", ".a.c.swp", ".hidden.c", "a.C", "a.java"]:
        assert not RULES.is_tracked_name(name), name
    with pytest.raises(IdentityError, match="dot"):
        LayoutRules(extensions=("c",))


@pytest.mark.parametrize("rel", ["../os-1-2020/hw1/a.c", "os-1-2020/hw1/../../x.c", "/etc/passwd", "a\x00b", ""])
def test_paths_cannot_escape(rel):
    with pytest.raises(IdentityError):
        RULES.locate(rel)


def test_pod_and_node_views_resolve_to_the_same_identity():
    s = Student("os", "1", "202012345")
    pod = RULES.locate_in_pod(s, "/home/coder/project/hw1/src/a.c")
    node = RULES.locate_on_node("/watcher/codes", "/watcher/codes/os-1-202012345/hw1/src/a.c")
    assert pod == node
    with pytest.raises(IdentityError, match="outside"):
        RULES.locate_in_pod(s, "/tmp/a.c")
    with pytest.raises(IdentityError, match="outside"):
        RULES.locate_on_node("/watcher/codes", "/watcher/codesx/os-1-2/hw1/a.c")


def test_assignment_dir_for_a_working_directory():
    s = Student("os", "1", "2020")
    assert RULES.assignment_dir(s, "hw1") == ("hw1", ".")
    assert RULES.assignment_dir(s, "hw1/src") == ("hw1", "src")
    assert RULES.assignment_dir(s, ".") is None
    assert RULES.assignment_dir(s, "notes") is None
    assert RULES.assignment_dir(s, "hw1/.venv/bin") is None


@pytest.mark.parametrize(
    "pod, expected",
    [
        ("jcode-os-1-202012345", ("os", "1", "202012345")),
        ("jcode-os-1-202012345-7d9f8b6c5d-x2x7z", ("os", "1", "202012345")),
        ("jcode-data-structure-2-000123-5c6b7d8f9-bcdfz", ("data-structure", "2", "000123")),
    ],
)
def test_pod_names(pod, expected):
    s = identity.parse_pod_name(pod)
    assert (s.course, s.section, s.student_id) == expected


@pytest.mark.parametrize("pod", ["code-os-1-2020", "jcode-os", "jcode-"])
def test_non_student_pods(pod):
    with pytest.raises(IdentityError):
        identity.parse_pod_name(pod)


def test_class_div_and_legacy_filenames():
    assert identity.parse_class_div("os-1") == ("os", "1")
    assert identity.parse_class_div("data-structure-2") == ("data-structure", "2")
    with pytest.raises(IdentityError):
        identity.parse_class_div("os")
    assert identity.legacy_filename("src/util.c") == "src@util.c"
    assert identity.path_from_legacy_filename("src@util.c") == "src/util.c"
    with pytest.raises(IdentityError):
        identity.path_from_legacy_filename("..@..@etc@passwd")


def test_check_relative_path_normalises():
    assert identity.check_relative_path("./a//b/") == "a/b"
    assert identity.check_relative_path(".") == "."
    with pytest.raises(IdentityError, match="longer"):
        identity.check_relative_path("a/" * 600)


def test_relative_to_reads_paths_as_pure_posix_paths_do():
    """relative_to compares PurePosixPath's parts without building paths; the same answer on every shape."""
    import random
    from pathlib import PurePosixPath

    def by_pathlib(abs_path: str, root: str) -> str | None:
        p, r = PurePosixPath(abs_path), PurePosixPath(root)
        if ".." in p.parts:
            return None
        try:
            return str(p.relative_to(r))
        except ValueError:
            return None

    atoms = ["", "/", "//", "///", "a", "b", ".", "..", "hw1", "x.c", " ", "a b", "\\", "é"]
    rng = random.Random(7)
    for _ in range(50_000):
        a = "".join(rng.choice(atoms) + rng.choice(("/", "", "//")) for _ in range(rng.randrange(6)))
        r = "".join(rng.choice(atoms) + rng.choice(("/", "", "//")) for _ in range(rng.randrange(4)))
        assert identity.relative_to(a, r) == by_pathlib(a, r), (a, r)
    assert identity.relative_to("/home/coder/project/hw1/a.c", "/home/coder/project") == "hw1/a.c"
    assert identity.relative_to("/home/coder/project", "/home/coder/project/") == "."
    assert identity.relative_to("/home/coder/other/a.c", "/home/coder/project") is None
