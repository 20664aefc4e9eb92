"""Issue 13, end to end: a scripted student in a simulated pod (its own cgroup, UTS and mount namespaces)
makes the usual mistakes; the real eBPF program captures what gcc and Python wrote to stderr, and the real
backend serves it with each compile and run (the student's timeline), parsed into diagnostics with the
right file, line and error class, and counted in the assignment's frequent errors."""

from __future__ import annotations

import re

from system.procmon.pm_helpers import GCC, PYTHON, wait_events, write

POD = "jcode-os-3-202400201-7d9f8b6c5d-x2x7z"
FILES = {
    "undeclared.c": "int main(void)\n{\n    return count;\n}\n",
    "semicolon.c": "int main(void)\n{\n    int x = 1\n    return x;\n}\n",
    "mismatch.c": "int main(void)\n{\n    int *p = 1.5;\n    return *p;\n}\n",
    "warning.c": '#include <stdio.h>\nint main(void)\n{\n    int unused;\n    puts("hi");\n    return 0;\n}\n',
    "name.py": "total = 0\nfor i in range(3):\n    total += i\nprint(totl)\n",
    "zero.py": "def mean(xs):\n    return sum(xs) / len(xs)\n\nprint(mean([]))\n",
}
# what the student's terminal showed, by file: (line, what the message says)
COMPILER = {
    "undeclared.c": (3, "error", r"‘count’ undeclared"),
    "semicolon.c": (4, "error", r"expected ‘,’ or ‘;’ before ‘return’"),
    "mismatch.c": (3, "error", r"incompatible types when initializing type ‘int \*’ using type ‘double’"),
    "warning.c": (4, "warning", r"unused variable ‘unused’ \[-Wunused-variable\]"),
}
PYTHON_ERRORS = {
    "name.py": (4, "NameError", "name 'totl' is not defined"),
    "zero.py": (2, "ZeroDivisionError", "division by zero"),
}
# what the backend made of it: the first diagnostic of each compile, the exception of each run
CLASSES = {
    "undeclared.c": ("error", 3, "<id> undeclared (first use in this function)", None),
    "semicolon.c": ("error", 4, "expected ',' or ';' before 'return'", None),
    "mismatch.c": ("error", 3, "incompatible types when initializing type <type> using type <type>", None),
    "warning.c": ("warning", 4, "unused variable <id>", "-Wunused-variable"),
    "name.py": ("exception", 4, "NameError: name <id> is not defined", "NameError"),
    "zero.py": ("exception", 2, "ZeroDivisionError: division by zero", "ZeroDivisionError"),
}


def test_a_students_mistakes_reach_the_backend_with_file_line_and_class(stack, container, tmp_path):
    backend, pm, ws = stack
    files = ws / "os-3-202400201"
    for name, text in FILES.items():
        write(files / "hw1" / name, text)
    script = " ; ".join(
        [f"{GCC} {'-Wall ' if c == 'warning.c' else ''}{c} -o {c[:-2]}" for c in COMPILER]
        + [f"{PYTHON} {p}" for p in PYTHON_ERRORS]
    )
    shown = container("mistakes").pod(f"LC_ALL=C.UTF-8 sh -c '{script}' 2>&1; exit 0", POD, files, workdir="hw1").stdout
    events = wait_events(backend, "os", "3", "202400201", "hw1", 6)
    compiles = {e["path"]: e for e in events if e["type"] == "process.compile"}
    runs = {e["path"]: e for e in events if e["type"] == "process.run"}
    for name, (line, severity, message) in COMPILER.items():
        ev = compiles[name]
        assert ev["stderr_truncated"] is False and ev["stderr"] in shown, name
        assert re.search(rf"^{re.escape(name)}:{line}:\d+: {severity}: {message}", ev["stderr"], re.M), ev["stderr"]
        assert (ev["exit_code"] == 0) == (severity == "warning")
    for name, (line, cls, message) in PYTHON_ERRORS.items():
        ev = runs[name]
        tb = ev["stderr"]
        assert ev["exit_code"] == 1 and tb in shown and tb.startswith("Traceback (most recent call last):\n")
        frames = re.findall(r'^  File "([^"]+)", line (\d+)', tb, re.M)
        assert frames[-1] == (f"/home/coder/project/hw1/{name}", str(line)), tb
        assert tb.splitlines()[-1].startswith(f"{cls}: {message}"), tb  # then maybe "Did you mean"

    parsed = {name: ev["diagnostics"][0] for name, ev in compiles.items()} | {
        name: ev["exception"] for name, ev in runs.items()
    }
    for name, (kind, line, error_class, flag) in CLASSES.items():
        d = parsed[name]
        assert (d["kind"], d["file"], d["line"], d["error_class"], d["flag"]) == (kind, name, line, error_class, flag)
        assert d["in_assignment"] is True
    with backend.client() as http:
        base = "/api/v1/courses/os/sections/3/assignments/hw1"
        classes = http.get(f"{base}/errors", params={"kind": ["error", "warning", "exception"]}).json()["classes"]
    counted = {(c["kind"], c["error_class"]): c for c in classes}
    for kind, _, error_class, _ in CLASSES.values():
        assert counted[(kind, error_class)]["students"] == ["202400201"], (kind, error_class)
