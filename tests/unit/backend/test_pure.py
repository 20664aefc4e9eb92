"""Pure backend logic: time on task, summary totals, diffs, cursors, settings, token scopes, metric labels."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher_backend import auth, diffing, metrics, store
from watcher_backend.settings import Settings, SettingsError, from_env

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ts(*seconds):
    return [T0 + timedelta(seconds=s) for s in seconds]


class TestActiveTime:
    def test_gaps_up_to_the_idle_threshold_count(self):
        assert store.active_seconds(ts(0, 60, 120, 420), idle_gap_seconds=300) == 60 + 60 + 300

    def test_a_longer_gap_is_a_break(self):
        assert store.active_seconds(ts(0, 60, 1000, 1030), idle_gap_seconds=300) == 60 + 30

    def test_order_does_not_matter_and_few_events_give_zero(self):
        assert store.active_seconds(ts(120, 0, 60), 300) == 120
        assert store.active_seconds(ts(5), 300) == 0
        assert store.active_seconds([], 300) == 0


def student(sid, **kw):
    row = dict(
        student_id=sid,
        events=0,
        saves=0,
        deletes=0,
        too_large=0,
        compiles=0,
        compile_successes=0,
        compile_success_rate=None,
        runs=0,
        run_successes=0,
        cells=0,
        cell_successes=0,
        code_size=0,
        files=0,
        first_activity=None,
        last_activity=None,
        active_seconds=0.0,
    )
    row.update(kw)
    return row


def test_summary_totals_from_students():
    rows = [
        student(
            "1",
            events=5,
            saves=3,
            compiles=4,
            compile_successes=1,
            code_size=100,
            active_seconds=10.5,
            first_activity=T0,
            last_activity=T0 + timedelta(hours=1),
        ),
        student(
            "2",
            events=2,
            saves=1,
            compiles=0,
            runs=2,
            code_size=50,
            active_seconds=2,
            first_activity=T0 - timedelta(hours=1),
            last_activity=T0,
        ),
    ]
    s = store.summarise_students("os", "1", "hw1", rows, 300)
    assert s["students"] == 2 and s["saves"] == 4 and s["compiles"] == 4 and s["runs"] == 2
    assert s["compile_success_rate"] == 0.25
    assert s["code_size"] == 150 and s["active_seconds"] == 12.5
    assert s["first_activity"] == T0 - timedelta(hours=1) and s["last_activity"] == T0 + timedelta(hours=1)
    empty = store.summarise_students("os", "1", "hw1", [], 300)
    assert empty["students"] == 0 and empty["compile_success_rate"] is None and empty["first_activity"] is None


def test_success_rate():
    assert store.success_rate(0, 0) is None
    assert store.success_rate(1, 3) == 0.3333


class TestDiff:
    def test_unified_diff(self):
        text, binary = diffing.unified_diff(b"a\nb\n", b"a\nc\n", "old", "new")
        assert not binary
        assert text.splitlines()[:2] == ["--- old", "+++ new"]
        assert "-b" in text.splitlines() and "+c" in text.splitlines()

    def test_equal_contents_give_an_empty_diff(self):
        assert diffing.unified_diff(b"x\n", b"x\n") == ("", False)

    def test_missing_final_newline_is_marked(self):
        text, _ = diffing.unified_diff(b"a", b"b")
        assert "\\ No newline at end of file" in text

    def test_binary_is_decoded_with_replacement(self):
        text, binary = diffing.unified_diff(b"\xff\x00\n", b"ok\n")
        assert binary and "\ufffd" in text


class TestCursor:
    def test_round_trip(self):
        c = store.encode_cursor(T0, 42)
        assert store.decode_cursor(c) == (T0, 42)

    @pytest.mark.parametrize("bad", ["", "nope", "!!!", "MjAyNg"])
    def test_garbage_is_rejected(self, bad):
        with pytest.raises(store.BadCursor):
            store.decode_cursor(bad)


class TestSettings:
    TOKENS = {"WATCHER_INGEST_TOKEN": "i" * 20, "WATCHER_READ_TOKEN": "r" * 20}

    def test_defaults(self):
        s = from_env(self.TOKENS).validate()
        assert (s.host, s.port) == ("0.0.0.0", 3000)
        assert s.database_url == "sqlite:///data/watcher.db" and s.snapshot_dir == Path("data/snapshots")
        assert s.tokens == {"ingest": "i" * 20, "read": "r" * 20}

    def test_token_from_file(self, tmp_path):
        f = tmp_path / "tok"
        f.write_text("a" * 24 + "\n")
        assert from_env({"WATCHER_ADMIN_TOKEN_FILE": str(f)}).tokens == {"admin": "a" * 24}

    @pytest.mark.parametrize(
        "env,setting",
        [
            ({"WATCHER_RETENTION_DAYS": "soon"}, "WATCHER_RETENTION_DAYS"),
            ({"WATCHER_RETENTION_DAYS": "0"}, "WATCHER_RETENTION_DAYS"),
            ({"WATCHER_PORT": "x"}, "WATCHER_PORT"),
            ({"WATCHER_PORT": "70000"}, "WATCHER_PORT"),
            ({"WATCHER_DATABASE_URL": "mysql://x"}, "WATCHER_DATABASE_URL"),
            ({"WATCHER_READ_TOKEN": "short"}, "WATCHER_READ_TOKEN"),
            ({"WATCHER_ADMIN_TOKEN_FILE": "/nonexistent/tok"}, "WATCHER_ADMIN_TOKEN_FILE"),
            ({"WATCHER_CORS_ORIGINS": "*"}, "WATCHER_CORS_ORIGINS"),
            ({"WATCHER_AUTH": "maybe"}, "WATCHER_AUTH"),
        ],
    )
    def test_bad_values_name_the_setting(self, env, setting):
        with pytest.raises(SettingsError) as err:
            from_env({**self.TOKENS, **env}).validate()
        assert err.value.setting == setting

    def test_no_tokens_refuses_unless_auth_is_off(self):
        with pytest.raises(SettingsError):
            from_env({}).validate()
        assert from_env({"WATCHER_AUTH": "off", "WATCHER_HOST": "127.0.0.1"}).validate().auth_enabled is False

    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "watcher.example.org"])
    def test_no_auth_is_refused_where_other_hosts_reach_it(self, host):
        with pytest.raises(SettingsError, match="WATCHER_AUTH"):
            from_env({"WATCHER_AUTH": "off", "WATCHER_HOST": host}).validate()
        assert from_env({"WATCHER_AUTH": "off-on-network", "WATCHER_HOST": host}).validate().auth_enabled is False

    @pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
    def test_no_auth_is_allowed_on_loopback(self, host):
        assert from_env({"WATCHER_AUTH": "off", "WATCHER_HOST": host}).validate().auth_enabled is False


class TestScopes:
    settings = Settings(tokens={"ingest": "i" * 20, "read": "r" * 20, "admin": "a" * 20})

    def test_each_token_grants_its_scope_and_admin_implies_read(self):
        assert auth.scopes_of("i" * 20, self.settings) == {"ingest"}
        assert auth.scopes_of("r" * 20, self.settings) == {"read"}
        assert auth.scopes_of("a" * 20, self.settings) == {"admin", "read"}

    def test_unknown_or_missing_token(self):
        assert auth.scopes_of("x" * 20, self.settings) is None
        assert auth.scopes_of(None, self.settings) is None
        assert auth.scopes_of("", self.settings) is None

    def test_unconfigured_scope_is_disabled(self):
        only_ingest = Settings(tokens={"ingest": "i" * 20})
        assert "read" not in (auth.scopes_of("i" * 20, only_ingest) or set())

    def test_auth_off_grants_everything(self):
        assert auth.scopes_of(None, Settings(auth_enabled=False)) == {"ingest", "read", "admin"}


def test_metric_type_label_is_bounded():
    assert metrics.type_label("file.save") == "file.save"
    assert metrics.type_label("file.save; DROP TABLE") == "unknown"
    assert metrics.type_label(None) == "unknown"
    assert metrics.type_label(["x"]) == "unknown"


def test_database_urls_select_psycopg_3():
    from watcher_backend.db import normalise_url

    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u@h:5/db") == "postgresql+psycopg://u@h:5/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///data/w.db") == "sqlite:///data/w.db"


@pytest.mark.parametrize("name", ["WATCHER_LEGACY_SNAPSHOT_TZ", "WATCHER_LEGACY_NAIVE_TZ"])
def test_a_bad_legacy_zone_stops_the_start_naming_the_setting(name):
    with pytest.raises(SettingsError) as exc:
        from_env({name: "PST", "WATCHER_AUTH": "off"})
    assert exc.value.setting == name and "UTC or KST" in str(exc.value)
    assert from_env({name: "utc", "WATCHER_AUTH": "off"})
