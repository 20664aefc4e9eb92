"""Known secrets in command lines are replaced (watcher_core.redact), and ordinary commands stay as run."""

from __future__ import annotations

import pytest

from watcher_core.redact import MASK, is_secret_name, redact_argv

CASES = [
    (["mysql", "-uroot", "-pHunter2", "db"], ["mysql", "-uroot", f"-p{MASK}", "db"]),
    (["sshpass", "-p", "hunter2", "ssh", "host"], ["sshpass", "-p", MASK, "ssh", "host"]),
    (["/usr/bin/redis-cli", "-a", "pw", "ping"], ["/usr/bin/redis-cli", "-a", MASK, "ping"]),
    (["./client", "--password=hunter2"], ["./client", f"--password={MASK}"]),
    (["./client", "--password", "hunter2", "-v"], ["./client", "--password", MASK, "-v"]),
    (
        ["./client", "--api-key=abc", "--client-secret", "xyz"],
        ["./client", f"--api-key={MASK}", "--client-secret", MASK],
    ),
    (["env", "GITHUB_TOKEN=ghp_abc", "make"], ["env", f"GITHUB_TOKEN={MASK}", "make"]),
    (["bash", "-c", "PGPASSWORD=pw psql -h db && echo ok"], ["bash", "-c", f"PGPASSWORD={MASK} psql -h db && echo ok"]),
    (
        ["git", "clone", "https://kim:s3cret@git.example.org/r.git"],
        ["git", "clone", f"https://kim:{MASK}@git.example.org/r.git"],
    ),
    (["curl", "-u", "kim:pw", "http://x"], ["curl", "-u", f"kim:{MASK}", "http://x"]),
    (
        ["curl", "-H", "Authorization: Bearer abc.def", "http://x"],
        ["curl", "-H", f"Authorization: Bearer {MASK}", "http://x"],
    ),
    (["smbclient", "-U", "kim%pw", "//h/s"], ["smbclient", "-U", f"kim%{MASK}", "//h/s"]),
    (["openssl", "enc", "-pass", "pass:hunter2"], ["openssl", "enc", "-pass", f"pass:{MASK}"]),
    (["python3", "app.py", "MYSQL_PWD='a b'"], ["python3", "app.py", f"MYSQL_PWD={MASK}"]),
]

UNCHANGED = [
    ["gcc", "-Wall", "-p", "main.c", "-o", "main"],  # -p is profiling for gcc
    ["mkdir", "-p", "out"],
    ["ssh", "-p", "22", "host"],
    ["./main", "--author=kim", "--keep=1", "--pass-with-no-tests"],
    ["python3", "-c", "print(1 == 1)"],
    ["make", "CFLAGS=-O2", "PREFIX=/usr"],
    ["git", "clone", "https://git.example.org/r.git"],
    ["./a.out", "http://user@host/"],
    [],
]


@pytest.mark.parametrize(("argv", "shown"), CASES)
def test_known_secrets_are_replaced(argv, shown):
    assert redact_argv(argv) == shown


@pytest.mark.parametrize("argv", UNCHANGED)
def test_ordinary_commands_stay_as_run(argv):
    assert redact_argv(argv) == argv


def test_secret_names():
    for name in ("password", "PGPASSWORD", "GH_TOKEN", "api-key", "aws_secret_access_key", "MYSQL_PWD", "auth"):
        assert is_secret_name(name), name
    for name in ("author", "keep", "CFLAGS", "passes", "tokenize-only"):
        assert not is_secret_name(name), name
