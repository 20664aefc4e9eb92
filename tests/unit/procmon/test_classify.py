"""Classifier: compiler and interpreter names, every source of a compile, python's script/-m/-c."""

import pytest

from watcher_agents.procmon.classify import Classes, parse_compile, parse_python

C = Classes()


@pytest.mark.parametrize(
    "name,family",
    [
        ("gcc", "gcc"),
        ("/usr/bin/gcc", "gcc"),
        ("gcc-12", "gcc"),
        ("x86_64-linux-gnu-gcc-12", "gcc"),
        ("/usr/bin/x86_64-linux-gnu-g++-12", "g++"),
        ("aarch64-linux-gnu-gcc", "gcc"),
        ("g++", "g++"),
        ("cc", "cc"),
        ("c++", "c++"),
        ("clang", "clang"),
        ("clang-16", "clang"),
        ("clang++-16", "clang++"),
        ("/usr/lib/llvm-16/bin/clang", "clang"),
        ("gcc-12.2", "gcc"),
    ],
)
def test_compilers_by_basename_with_prefix_and_suffix(name, family):
    assert C.compiler_family(name) == family


@pytest.mark.parametrize(
    "name",
    ["cc1", "cc1plus", "collect2", "ld", "as", "gcc-ar", "gccgo", "lto-wrapper", "ccache", "python3", "make", ""],
)
def test_not_compilers(name):
    assert C.compiler_family(name) is None


@pytest.mark.parametrize(
    "name,family",
    [
        ("python", "python"),
        ("python3", "python3"),
        ("/usr/bin/python3.11", "python3"),
        ("python3.12", "python3"),
        ("/root/.pyenv/versions/3.11.7/bin/python3.11", "python3"),
        ("python3.13d", "python3"),
    ],
)
def test_interpreters(name, family):
    assert C.interpreter_family(name) == family


@pytest.mark.parametrize("name", ["ipython", "pythonw", "python-config", "jupyter", "gcc"])
def test_not_interpreters(name):
    assert C.interpreter_family(name) is None


def test_configurable_lists():
    c = Classes(compilers=("tcc",), interpreters=("pypy3",))
    assert c.compiler_family("tcc") == "tcc"
    assert c.compiler_family("gcc") is None
    assert c.interpreter_family("pypy3") == "pypy3"


def test_every_source_and_output():
    parsed = parse_compile(["gcc", "-Wall", "-O2", "main.c", "src/util.c", "-o", "prog", "-I", "inc", "-lm", "x.o"])
    assert parsed.sources == ("main.c", "src/util.c")
    assert parsed.output == "prog"
    assert not parsed.compiles_only


def test_options_with_values_are_not_sources():
    parsed = parse_compile(["gcc", "-include", "pre.h", "-MF", "deps.c", "-D", "X=a.c", "-c", "real.c"])
    assert parsed.sources == ("real.c",)
    assert parsed.compiles_only and parsed.output is None


def test_joined_output_and_language_override():
    parsed = parse_compile(["gcc", "-x", "c", "prog.txt", "-x", "none", "lib.o", "-oapp"])
    assert parsed.sources == ("prog.txt",)
    assert parsed.output == "app"


def test_default_output_is_a_out_when_linking():
    assert parse_compile(["g++", "a.cpp", "b.cc"]).output == "a.out"
    assert parse_compile(["g++", "a.cpp", "b.cc"]).sources == ("a.cpp", "b.cc")


def test_link_only_has_no_sources():
    parsed = parse_compile(["gcc", "a.o", "b.o", "-o", "p"])
    assert parsed.sources == () and parsed.output == "p"


def test_clang_cc1_is_internal():
    assert parse_compile(["clang", "-cc1", "-triple", "x86_64", "a.c"]).internal


def test_long_command_line_keeps_last_source():
    argv = ["gcc"] + [f"-Wno-warning-{i}" for i in range(40)] + ["first.c", "last.c"]
    assert parse_compile(argv).sources == ("first.c", "last.c")


@pytest.mark.parametrize(
    "argv,script,module,command",
    [
        (["python3", "main.py", "arg"], "main.py", None, False),
        (["python3", "-u", "-B", "sub/main.py"], "sub/main.py", None, False),
        (["python3", "-W", "ignore", "x.py"], "x.py", None, False),
        (["python3", "-Wignore", "x.py"], "x.py", None, False),
        (["python3", "-X", "dev", "x.py"], "x.py", None, False),
        (["python3", "-m", "pytest", "-q"], None, "pytest", False),
        (["python3", "-mhttp.server"], None, "http.server", False),
        (["python3", "-c", "print(1)"], None, None, True),
        (["python3", "-uc", "print(1)"], None, None, True),
        (["python3", "--", "x.py"], "x.py", None, False),
    ],
)
def test_python_args(argv, script, module, command):
    parsed = parse_python(argv)
    assert (parsed.script, parsed.module, parsed.command) == (script, module, command)


def test_python_interactive():
    assert parse_python(["python3"]).stdin
    assert parse_python(["python3", "-"]).stdin
