"""Known secrets in command lines, replaced by ``***`` wherever a command line leaves the backend: the
API (the timeline, the old API's build and run logs) and the ProgSnap2 export. One function,
``redact_argv``, so the three never disagree (docs/security.md, "Secrets in command lines").

Students type secrets into commands (``mysql -pHunter2``, ``curl -u me:pw``, ``GITHUB_TOKEN=... make``).
What is replaced, in every argument (an argument may be a whole shell line, ``bash -c "..."``):

* ``name=value`` where the name is an option or a variable naming a secret (``--password=``,
  ``--api-key=``, ``GITHUB_TOKEN=``, ``PGPASSWORD=``, ``MYSQL_PWD=``): the value;
* such an option alone (``--password``, ``--token``): the next argument;
* ``scheme://user:password@host``: the password; openssl's ``pass:secret``;
* ``Authorization: Bearer xyz`` (a header given to curl or wget): the credentials;
* per program, flags whose value is a password: ``sshpass -p``, ``mysql -p…`` / ``mysqldump``
  / ``mariadb``, ``redis-cli -a``, ``curl -u user:pw`` (the part after ``:``), ``smbclient -U user%pw``.

Known limits: a secret with no name next to it (``./login hunter2``) cannot be told from a file name.
The stored events keep the command line as it was run (the record is unchanged; only what is shown is).
Standard library only.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

MASK = "***"

# A name (an option without its dashes, or a variable) naming a secret: one of its parts (split at - _ .)
# is one of these words, or ends with one of the suffixes (PGPASSWORD, APIKEY).
_WORDS = frozenset(
    {"password", "passwd", "passphrase", "pwd", "pw", "token", "secret", "auth", "credential", "credentials"}
)
_SUFFIXES = ("password", "passwd", "passphrase", "token", "secret", "apikey", "accesskey", "privatekey")
_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"), ("client", "secret")})

_ASSIGNMENT = re.compile(r"(?P<name>(?<![\w.-])-{0,2}[A-Za-z_][\w.-]*)=(?P<value>(?:\"[^\"]*\"|'[^']*'|[^\s;&|)]+))")
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<value>[^/\s@]+)(?=@)")
_AUTH_HEADER = re.compile(
    r"(?P<head>(?:proxy-)?authorization\s*:\s*(?:bearer|basic|token|digest)?\s*)(?P<value>[^\s\"']+)", re.IGNORECASE
)
_OPENSSL_PASS = re.compile(r"(?P<head>(?<![\w-])pass:)(?P<value>\S+)")  # openssl -passin pass:secret
_OPTION = re.compile(r"^-{1,2}(?P<name>[A-Za-z][\w.-]*)$")

# program (basename of argv[0]) -> short flags whose value is a password (attached ``-pX`` or next argument)
_PROGRAM_FLAGS: dict[str, tuple[str, ...]] = {
    "sshpass": ("-p",),
    "mysql": ("-p",),
    "mysqldump": ("-p",),
    "mysqladmin": ("-p",),
    "mariadb": ("-p",),
    "redis-cli": ("-a",),
}
# program -> flags whose value is ``user<sep>password``: only the password goes
_USER_PASSWORD_FLAGS: dict[str, tuple[tuple[str, str], ...]] = {
    "curl": (("-u", ":"), ("--user", ":"), ("--proxy-user", ":")),
    "smbclient": (("-U", "%"), ("--user", "%")),
}


def is_secret_name(name: str) -> bool:
    """Whether an option (without dashes) or a variable name names a secret (``password``, ``GH_TOKEN``)."""
    parts = [p for p in re.split(r"[-_.]", name.lower()) if p]
    if any(p in _WORDS or p.endswith(_SUFFIXES) for p in parts):
        return True
    return any(pair in _PAIRS for pair in zip(parts, parts[1:], strict=False))


def _assignment(match: re.Match[str]) -> str:
    name = match.group("name")
    if not is_secret_name(name.lstrip("-")):
        return match.group(0)
    return f"{name}={MASK}"


def redact_text(text: str) -> str:
    """The secrets of one argument (or a whole shell line) replaced."""
    if "=" in text:
        text = _ASSIGNMENT.sub(_assignment, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    if ":" in text:
        text = _AUTH_HEADER.sub(lambda m: m.group("head") + MASK, text)
        text = _OPENSSL_PASS.sub(lambda m: m.group("head") + MASK, text)
    return text


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with its known secrets replaced by ``***`` (the same length: one item per item)."""
    program = posixpath.basename(argv[0]) if argv else ""
    flags = _PROGRAM_FLAGS.get(program, ())
    user_flags = dict(_USER_PASSWORD_FLAGS.get(program, ()))
    out: list[str] = []
    hide_next: str | None = None  # "all", or the separator of user<sep>password
    for arg in argv:
        if hide_next is not None:
            out.append(_user_password(arg, hide_next) if hide_next != "all" else MASK)
            hide_next = None
            continue
        if arg in flags:
            out.append(arg)
            hide_next = "all"
            continue
        attached = next((f for f in flags if arg.startswith(f) and len(arg) > len(f)), None)
        if attached is not None:
            out.append(attached + MASK)
            continue
        if arg in user_flags:
            out.append(arg)
            hide_next = user_flags[arg]
            continue
        option = _OPTION.match(arg)
        if option is not None and is_secret_name(option.group("name")):
            out.append(arg)
            hide_next = "all"
            continue
        out.append(redact_text(arg))
    return out


def _user_password(value: str, sep: str) -> str:
    user, found, _ = value.partition(sep)
    return f"{user}{sep}{MASK}" if found else value
