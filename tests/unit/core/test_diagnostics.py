"""The diagnostics parser on what gcc, clang and python3 really print (run here, in a scratch assignment
folder), plus the normalisation of messages into error classes."""

import os
import subprocess
import sys

import pytest

from watcher_core import diagnostics
from watcher_core.diagnostics import normalise, parse_compiler, parse_python, relative_file

MAIN_C = """\
#include <stdio.h>
#include "util.h"

static int add(int a, int b) { return a + b; }

int main(void) {
    int count = undeclared_thing + 1;
    char *name = 42;
    int unused;
    printf("%d\\n", count)
    return add(1, 2);
}
"""
UTIL_H = "int helper(int q) { return q }\n"


@pytest.fixture
def hw1(tmp_path):
    """<tmp>/os-1-2024001/hw1 with src/main.c and src/util.h."""
    folder = tmp_path / "os-1-2024001" / "hw1"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "main.c").write_text(MAIN_C)
    (folder / "src" / "util.h").write_text(UTIL_H)
    return folder


def run(argv, cwd, locale="C.UTF-8"):
    env = {**os.environ, "LC_ALL": locale, "LANG": locale}
    env.pop("GCC_COLORS", None)
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env).stderr


def by_line(found):
    """(file, line) -> the first diagnostic printed there that is not a note."""
    rows = {}
    for d in found:
        if d.kind != "note":
            rows.setdefault((d.file, d.line), d)
    return rows


def test_gcc_errors_warnings_and_notes_from_the_assignment_folder(hw1):
    stderr = run(["gcc", "-Wall", "-c", "src/main.c", "-o", os.devnull], hw1)
    found = parse_compiler(stderr, cwd=".", assignment="hw1")
    rows = by_line(found)
    # the include chain and "In function" lines are context, not diagnostics
    assert all(not d.message.startswith(("In file", "In function")) for d in found)
    header = rows[("src/util.h", 1)]
    assert (header.kind, header.col, header.error_class) == ("error", 29, "expected ';' before '}' token")
    undeclared = rows[("src/main.c", 7)]
    assert undeclared.kind == "error"
    assert undeclared.error_class == "<id> undeclared (first use in this function)"
    assert "undeclared_thing" in undeclared.message
    mismatch = rows[("src/main.c", 8)]
    assert (mismatch.kind, mismatch.flag) == ("warning", "-Wint-conversion")
    assert mismatch.error_class == "initialization of <type> from <type> makes pointer from integer without a cast"
    unused = rows[("src/main.c", 9)]
    assert (unused.kind, unused.flag, unused.error_class) == ("warning", "-Wunused-variable", "unused variable <id>")
    semicolon = rows[("src/main.c", 10)]
    assert semicolon.error_class == "expected ';' before 'return'"
    assert all(d.in_assignment for d in found)


def test_gcc_in_the_c_locale_gives_the_same_classes(hw1):
    utf8 = parse_compiler(run(["gcc", "-Wall", "-c", "src/main.c"], hw1), cwd=".", assignment="hw1")
    plain = parse_compiler(run(["gcc", "-Wall", "-c", "src/main.c"], hw1, locale="C"), cwd=".", assignment="hw1")
    assert [d.error_class for d in utf8] == [d.error_class for d in plain]
    assert any("‘" in d.message for d in utf8) and not any("‘" in d.message for d in plain)


def test_clang_from_a_subfolder_with_absolute_paths(hw1):
    stderr = run(["clang", "-Wall", "-c", str(hw1 / "src" / "main.c"), "-o", os.devnull], hw1 / "src")
    rows = by_line(parse_compiler(stderr, cwd="src", assignment="hw1"))
    assert rows[("src/main.c", 7)].error_class == "use of undeclared identifier <id>"
    assert rows[("src/main.c", 8)].error_class == (
        "incompatible integer to pointer conversion initializing <type> with an expression of type <type>"
    )
    assert rows[("src/main.c", 8)].flag == "-Wint-conversion"
    assert rows[("src/main.c", 10)].error_class == "expected ';' after expression"
    assert rows[("src/util.h", 1)].error_class == "expected ';' after return statement"
    assert "2 errors generated" not in {d.message for d in rows.values()}


def test_gcc_relative_names_from_a_subfolder(hw1):
    stderr = run(["gcc", "-c", "main.c", "-o", os.devnull], hw1 / "src")
    files = {d.file for d in parse_compiler(stderr, cwd="src", assignment="hw1")}
    assert files == {"src/main.c", "src/util.h"}


def test_linker_and_driver_errors(hw1):
    (hw1 / "link.c").write_text("int missing(void);\nint main(void) { return missing(); }\n")
    stderr = run(["gcc", "link.c", "nofile.c", "-o", os.devnull], hw1)
    found = parse_compiler(stderr, cwd=".", assignment="hw1")
    driver = [d for d in found if d.file is None]
    assert [(d.kind, d.error_class) for d in driver] == [("error", "<file>: No such file or directory")]
    stderr = run(["gcc", "link.c", "-o", os.devnull], hw1)
    found = parse_compiler(stderr, cwd=".", assignment="hw1")
    assert [(d.kind, d.line, d.error_class) for d in found] == [("error", None, "undefined reference to <id>")]
    # "collect2: error: ld returned 1 exit status" only repeats that the link failed
    assert "ld returned" not in " ".join(d.message for d in found)


def test_system_headers_stay_outside_the_assignment(hw1):
    (hw1 / "bad.c").write_text("#include <stdio.h>\nint main(void) { printf(1); return 0; }\n")
    found = parse_compiler(run(["gcc", "-c", "bad.c", "-o", os.devnull], hw1), cwd=".", assignment="hw1")
    outside = [d for d in found if not d.in_assignment]
    assert outside and all(d.file.startswith("/usr/") for d in outside)  # the note pointing at stdio.h
    assert any(d.file == "bad.c" and d.line == 2 for d in found)


PROGRAMS = {
    "zero.py": ("def ratio(a, b):\n    return a / b\n\nprint(ratio(1, 0))\n", "ZeroDivisionError", 2, None),
    "name.py": ("total = 0\nprint(totl)\n", "NameError", 2, None),
    "syntax.py": ("values = (1, 2\nprint(values)\n", "SyntaxError", 1, 10),
    "indent.py": ("if True:\nprint(1)\n", "IndentationError", 2, 1),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_python_exceptions(hw1, name):
    source, type_, line, col = PROGRAMS[name]
    (hw1 / "py").mkdir(exist_ok=True)
    (hw1 / "py" / name).write_text(source)
    stderr = run([sys.executable, name], hw1 / "py")
    [found] = parse_python(stderr, cwd="py", assignment="hw1")
    assert (found.kind, found.flag, found.file, found.line) == ("exception", type_, f"py/{name}", line)
    if col is not None:
        assert found.col == col
    assert found.message.startswith(type_)


def test_python_classes():
    assert normalise("NameError: name 'totl' is not defined") == "NameError: name <id> is not defined"
    assert normalise("TypeError: unsupported operand type(s) for +: 'int' and 'str'") == (
        "TypeError: unsupported operand type(s) for +: <type> and <type>"
    )
    assert normalise("ValueError: invalid literal for int() with base 10: 'abc'") == (
        "ValueError: invalid literal for int() with base <n>: <id>"
    )
    assert normalise("NameError: name 'valuez' is not defined. Did you mean: 'values'?") == (
        "NameError: name <id> is not defined"
    )
    assert normalise("'totl' undeclared (first use in this function); did you mean 'total'?") == (
        "<id> undeclared (first use in this function)"
    )
    assert normalise("IndexError: list index out of range") == "IndexError: list index out of range"
    assert normalise("IndentationError: expected an indented block after 'if' statement on line 1") == (
        "IndentationError: expected an indented block after 'if' statement on line <n>"
    )


def test_the_innermost_frame_in_the_students_files(hw1):
    """The exception rises inside the standard library: the location is the student's call."""
    (hw1 / "load.py").write_text('import json\n\n\ndef load():\n    return json.loads("{")\n\n\nload()\n')
    [found] = parse_python(run([sys.executable, str(hw1 / "load.py")], "/"), cwd=".", assignment="hw1")
    assert (found.file, found.line, found.flag) == ("load.py", 5, "json.decoder.JSONDecodeError")
    assert found.error_class.startswith("json.decoder.JSONDecodeError: Expecting property name")
    assert "<n>" in found.error_class


def test_chained_exceptions_report_the_last(hw1):
    (hw1 / "chain.py").write_text("try:\n    {}['k']\nexcept KeyError:\n    raise ValueError('bad key 7')\n")
    [found] = parse_python(run([sys.executable, "chain.py"], hw1), cwd=".", assignment="hw1")
    assert (found.flag, found.line, found.error_class) == ("ValueError", 4, "ValueError: bad key <n>")


def test_a_run_that_raised_nothing():
    assert parse_python("", cwd=".", assignment="hw1") == []
    assert parse_python("warning: something odd\n", cwd=".", assignment="hw1") == []


def test_same_mistake_same_class_across_students():
    a = "main.c:3:5: error: 'total' undeclared (first use in this function)"
    b = "x.c:9:1: error: 'count_2' undeclared (first use in this function)"
    [da], [db] = parse_compiler(a, assignment="hw1"), parse_compiler(b, assignment="hw1")
    assert da.error_class == db.error_class
    assert normalise('format "%d" expects 3 arguments') == "format <str> expects <n> arguments"


@pytest.mark.parametrize(
    ("name", "cwd", "expected"),
    [
        ("main.c", ".", ("main.c", True)),
        ("main.c", "src", ("src/main.c", True)),
        ("../lib/x.c", "src", ("lib/x.c", True)),
        ("../hw1/main.c", ".", ("main.c", True)),
        ("../other/main.c", ".", ("../other/main.c", False)),
        ("/home/coder/project/os/hw1/a/b.c", ".", ("a/b.c", True)),
        ("/workspace/os-1-2024001/hw1/main.py", "sub", ("main.py", True)),
        ("/usr/include/stdio.h", ".", ("/usr/include/stdio.h", False)),
    ],
)
def test_relative_file(name, cwd, expected):
    assert relative_file(name, cwd, "hw1") == expected


def test_for_process_reads_only_tools():
    text = (
        "Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\nNameError: name 'x' is not defined\n"
    )
    assert diagnostics.for_process("process.run", text, cwd=".", assignment="hw1", kind="binary") == []
    assert diagnostics.for_process("process.run", None, cwd=".", assignment="hw1", kind="python") == []
    [exc] = diagnostics.for_process("process.run", text, cwd=".", assignment="hw1", kind="python")
    assert exc.file == "a.py"
