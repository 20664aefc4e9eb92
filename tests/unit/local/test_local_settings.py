import json

from watcher_local.stack import LocalStack
from watcher_local.status import build_parser, format_status, read_token


def test_the_stack_passes_its_own_tokens_whatever_the_shell_exports(tmp_path, monkeypatch):
    monkeypatch.setenv("WATCHER_READ_TOKEN_FILE", "/nonexistent/token")
    monkeypatch.setenv("WATCHER_INGEST_TOKEN", "a-token-from-the-shell")
    stack = LocalStack(tmp_path / "ws", tmp_path / "data")
    tokens = stack.prepare()
    backend_env = stack.components["backend"].env
    assert "WATCHER_READ_TOKEN_FILE" not in backend_env
    assert backend_env["WATCHER_INGEST_TOKEN"] == tokens["ingest"] != "a-token-from-the-shell"
    assert stack.components["filemon"].env["WATCHER_INGEST_TOKEN"] == tokens["ingest"]
    # tokens are generated once and kept, so agents' outboxes stay deliverable after a restart
    assert LocalStack(tmp_path / "ws", tmp_path / "data").prepare() == tokens
    assert oct((tmp_path / "data" / "tokens.json").stat().st_mode & 0o777) == "0o600"


def test_status_token_flags_win_over_the_environment(tmp_path, monkeypatch):
    (tmp_path / "tokens.json").write_text(json.dumps({"read": "from-data-dir"}))
    monkeypatch.setenv("WATCHER_READ_TOKEN", "from-env")
    args = build_parser().parse_args(["--data-dir", str(tmp_path)])
    assert read_token(args) == "from-data-dir"
    assert read_token(build_parser().parse_args([])) == "from-env"
    (tmp_path / "t").write_text("from-file\n")
    assert read_token(build_parser().parse_args(["--token-file", str(tmp_path / "t")])) == "from-file"


def test_status_table_names_agents_and_backlogs():
    text = format_status(
        {
            "events_total": 3,
            "last_received_at": None,
            "events_by_type": {"file.save": 2, "process.run": 1},
            "agents": [
                {
                    "node": "n1",
                    "source": "filemon",
                    "last_seen": "2026-01-01T00:00:00Z",
                    "events_received": 2,
                    "backlog": 7,
                }
            ],
        }
    )
    assert "file.save" in text and "n1" in text and "filemon" in text and "7" in text
    assert "erased" not in text  # nothing pending (or an older backend): nothing said


def test_status_says_how_many_erased_contents_are_still_on_disk():
    text = format_status(
        {"events_total": 0, "last_received_at": None, "events_by_type": {}, "agents": [], "erased_contents_pending": 12}
    )
    assert "erased snapshot contents waiting for filemon to remove them: 12" in text
