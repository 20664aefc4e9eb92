"""What kind of process an exec is, from its name and argv alone (pure functions, no I/O).

* Compilers by basename: gcc, g++, cc, c++, clang, clang++ with a target prefix
  (``x86_64-linux-gnu-gcc-12``) and/or a version suffix (``gcc-12``, ``clang++-16``, ``gcc-12.2``).
* Interpreters by basename: python, python3, python3.X (``python3.11``, ``python3.12d``).
* Everything else is "other"; whether it is a student binary depends on where the file lives,
  which attribution decides.

For a compile, every source file in argv and the ``-o`` output; for a python run, the script,
``-m module`` or ``-c``.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

DEFAULT_COMPILERS = ("gcc", "g++", "cc", "c++", "clang", "clang++")
DEFAULT_INTERPRETERS = ("python", "python3")

# Inputs a compiler driver compiles (not objects or libraries, which it only links).
SOURCE_EXTENSIONS = (
    ".c",
    ".i",
    ".h",
    ".cc",
    ".cp",
    ".cxx",
    ".cpp",
    ".CPP",
    ".c++",
    ".C",
    ".ii",
    ".hh",
    ".hpp",
    ".hxx",
    ".H",
    ".tcc",
    ".s",
    ".S",
    ".sx",
)
# Options whose value is the NEXT argument (gcc and clang). Joined forms (-Idir, -DX=1, -ofile) need
# no entry. Everything after these is never mistaken for a source file.
_OPTIONS_WITH_VALUE = frozenset(
    {
        "-o",
        "-I",
        "-iquote",
        "-isystem",
        "-idirafter",
        "-iprefix",
        "-iwithprefix",
        "-iwithprefixbefore",
        "-isysroot",
        "-imultilib",
        "-include",
        "-imacros",
        "-D",
        "-U",
        "-MF",
        "-MT",
        "-MQ",
        "-MJ",
        "-L",
        "-l",
        "-x",
        "-T",
        "-u",
        "-e",
        "-z",
        "-A",
        "-B",
        "-G",
        "-Xlinker",
        "-Xassembler",
        "-Xpreprocessor",
        "-Xclang",
        "-Xarch_host",
        "-Xarch_device",
        "-mllvm",
        "-aux-info",
        "--param",
        "-wrapper",
        "-dumpbase",
        "-dumpdir",
        "-dumpbase-ext",
        "-target",
        "--target",
        "-arch",
        "--sysroot",
        "-specs",
        "--include-directory",
        "--output",
        "-working-directory",
        "-ivfsoverlay",
        "-F",
        "-isystem-after",
        "-cxx-isystem",
    }
)
# `-x none` restores detection by extension; any other language makes the following files sources.
_NO_LANGUAGE = "none"


@dataclass(frozen=True)
class Classes:
    """The configurable name lists (flags ``--compilers`` and ``--interpreters``)."""

    compilers: tuple[str, ...] = DEFAULT_COMPILERS
    interpreters: tuple[str, ...] = DEFAULT_INTERPRETERS
    _compiler_re: re.Pattern = field(init=False, repr=False, compare=False)
    _interp_re: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiler_re", _name_re(self.compilers, version=r"-\d+(?:\.\d+)*"))
        object.__setattr__(
            self, "_interp_re", _name_re(self.interpreters, version=r"(?:\d+(?:\.\d+)*)?[dmu]?", prefix=False)
        )

    def compiler_family(self, path: str) -> str | None:
        """``/usr/bin/x86_64-linux-gnu-gcc-12`` -> ``gcc``; None if not a configured compiler."""
        m = self._compiler_re.fullmatch(basename(path))
        return m.group("name") if m else None

    def interpreter_family(self, path: str) -> str | None:
        """``python3.11`` -> ``python3``; ``python`` -> ``python``; None if not an interpreter."""
        m = self._interp_re.fullmatch(basename(path))
        if not m:
            return None
        name, version = m.group("name"), m.group("version") or ""
        # `python` + `3.11` is python3: label by major version so metrics stay bounded.
        if name == "python" and version[:1] == "3":
            return "python3"
        return name


def _name_re(names: tuple[str, ...], *, version: str, prefix: bool = True) -> re.Pattern:
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    target = r"(?:[A-Za-z0-9_]+(?:-[A-Za-z0-9_.]+)*-)?" if prefix else ""
    return re.compile(rf"{target}(?P<name>{alternatives})(?P<version>{version})?")


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if path else ""


@dataclass(frozen=True)
class CompileArgs:
    sources: tuple[str, ...]  # as written in argv (relative to the cwd or absolute)
    output: str | None  # -o value, or the driver's default (a.out) when it links
    compiles_only: bool  # -c / -S / -E: no link step
    internal: bool = False  # clang -cc1 / -cc1as: the driver's own child, not a user compile


def parse_compile(argv: list[str]) -> CompileArgs:
    """Every source file and the output of a gcc/clang command line (argv[0] included)."""
    sources: list[str] = []
    output: str | None = None
    compiles_only = False
    language: str | None = None
    args = argv[1:]
    if args and args[0] in ("-cc1", "-cc1as"):
        return CompileArgs((), None, True, internal=True)
    i = 0
    end_of_options = False
    while i < len(args):
        arg = args[i]
        i += 1
        if not end_of_options and arg.startswith("-") and arg != "-":
            if arg == "--":
                end_of_options = True
            elif arg in ("-c", "-S", "-E", "-M", "-MM", "-fsyntax-only"):
                compiles_only = True
            elif arg == "-o" and i < len(args):
                output = args[i]
                i += 1
            elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("-obj"):
                output = arg[2:]
            elif arg.startswith("--output="):
                output = arg.split("=", 1)[1]
            elif arg == "-x" and i < len(args):
                language = None if args[i] == _NO_LANGUAGE else args[i]
                i += 1
            elif arg.startswith("-x") and len(arg) > 2:
                language = None if arg[2:] == _NO_LANGUAGE else arg[2:]
            elif arg in _OPTIONS_WITH_VALUE:
                i += 1
            continue
        if arg == "-" or arg.startswith("@"):
            continue  # stdin or a response file: nothing we can name
        if language is not None or arg.endswith(SOURCE_EXTENSIONS):
            sources.append(arg)
    if output is None and not compiles_only and sources:
        output = "a.out"
    return CompileArgs(tuple(sources), output, compiles_only)


@dataclass(frozen=True)
class PythonArgs:
    script: str | None = None  # path of the script as written in argv
    module: str | None = None  # -m module
    command: bool = False  # -c code
    stdin: bool = False  # no script (interactive or `-`)


# Interpreter options whose value is the next argument (python3 --help).
_PY_OPTIONS_WITH_VALUE = frozenset({"-W", "-X", "--check-hash-based-pycs"})


def parse_python(argv: list[str]) -> PythonArgs:
    """The script, module or command of a python command line (argv[0] included)."""
    args = argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "-" or not arg.startswith("-"):
            return PythonArgs(stdin=True) if arg == "-" else PythonArgs(script=arg)
        if arg == "--":
            if i < len(args):
                return PythonArgs(script=args[i])
            return PythonArgs(stdin=True)
        if arg.startswith("--"):
            if arg in _PY_OPTIONS_WITH_VALUE:
                i += 1
            continue
        # A cluster of one-letter flags: -uB, -Wignore, -c'code', -mpkg.
        flags = arg[1:]
        for j, letter in enumerate(flags):
            rest = flags[j + 1 :]
            if letter == "c":
                return PythonArgs(command=True)
            if letter == "m":
                module = rest or (args[i] if i < len(args) else None)
                return PythonArgs(module=module)
            if letter in "WX":
                if not rest:
                    i += 1
                break
    return PythonArgs(stdin=True)
