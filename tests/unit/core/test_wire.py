from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from watcher_core import wire

SHA = "a" * 64


def base(**kw):
    ev = {
        "event_id": "ev-0000000001",
        "timestamp": "2026-11-26T08:00:00Z",
        "node": "node-1",
        "source": "filemon",
        "course": "data-structure",
        "section": "2",
        "student_id": "000123",
        "assignment": "hw1",
        "path": "src/main.c",
    }
    ev.update(kw)
    return ev


def test_every_type_round_trips():
    t0 = "2026-11-26T08:00:00+09:00"
    samples = [
        base(type="file.save", sha256=SHA, size=10),
        base(type="file.delete"),
        base(type="file.too_large", size=2_000_000, limit=1_048_576),
        base(
            type="process.compile",
            source="procmon",
            argv=["gcc", "a.c", "b.c", "-o", "a"],
            cwd=".",
            exit_code=1,
            signal=None,
            started_at=t0,
            ended_at=t0,
            compiler="gcc",
            sources=["a.c", "b.c"],
            output="a",
            stderr="a.c:1:14: error: 'x' undeclared (first use in this function)\n",
        ),
        base(
            type="process.run",
            source="procmon",
            argv=["./a"],
            cwd=".",
            exit_code=None,
            signal=11,
            started_at=t0,
            kind="binary",
            target="a",
            stderr="Traceback (most recent call last):\n" * 400,
            stderr_truncated=True,
        ),
    ]
    for raw in samples:
        ev = wire.parse_event(raw)
        assert ev.type == raw["type"]
        again = wire.parse_event(ev.model_dump(mode="json"))
        assert again == ev


def test_process_stderr_is_bounded_text_without_nul_and_optional():
    t0 = "2026-11-26T08:00:00Z"
    run = base(type="process.run", source="procmon", argv=["./a"], cwd=".", started_at=t0, kind="binary")
    ev = wire.parse_event(run)
    assert (ev.stderr, ev.stderr_truncated) == (None, False)  # not captured
    assert wire.parse_event({**run, "stderr": "é" * wire.MAX_STDERR_BYTES}).stderr == "é" * wire.MAX_STDERR_BYTES
    for bad in ("x" * (wire.MAX_STDERR_BYTES + 1), "a\x00b", 42):
        with pytest.raises(ValidationError) as exc:
            wire.parse_event({**run, "stderr": bad})
        assert wire.describe_error(exc.value).startswith("stderr:")
    assert "stderr" not in wire.type_fields(wire.FILE_SAVE)
    assert {"stderr", "stderr_truncated"} <= set(wire.type_fields(wire.PROCESS_COMPILE))


def test_timestamps_are_normalised_to_utc_and_naive_is_rejected():
    ev = wire.parse_event(base(type="file.delete", timestamp="2026-11-26T17:00:00+09:00"))
    assert ev.timestamp == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    assert ev.timestamp.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError) as exc:
        wire.parse_event(base(type="file.delete", timestamp="2026-11-26T17:00:00"))
    assert wire.describe_error(exc.value).startswith("timestamp:")


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:10+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_timestamp_outside_the_years_once_in_utc_is_refused_naming_the_field(stamp):
    # valid RFC 3339 with an offset, but converting it to UTC leaves datetime's range (found by schemathesis
    # as a 503 on the query side: the conversion failed in the database driver)
    with pytest.raises(ValidationError) as exc:
        wire.parse_event(base(type="file.delete", timestamp=stamp))
    assert wire.describe_error(exc.value).startswith("timestamp:")
    assert "UTC" in wire.describe_error(exc.value)


def test_student_id_stays_a_string():
    ev = wire.parse_event(base(type="file.delete"))
    assert ev.student_id == "000123"
    with pytest.raises(ValidationError):
        wire.parse_event(base(type="file.delete", student_id=123))


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"path": "/etc/passwd"}, "path"),
        ({"path": "../x.c"}, "path"),
        ({"sha256": "XYZ"}, "sha256"),
        ({"size": -1}, "size"),
        ({"course": "a b"}, "course"),
        ({"event_id": "short"}, "event_id"),
    ],
)
def test_errors_name_the_field(patch, field):
    with pytest.raises(ValidationError) as exc:
        wire.parse_event({**base(type="file.save", sha256=SHA, size=1), **patch})
    assert wire.describe_error(exc.value).startswith(f"{field}:")


def test_a_field_this_version_does_not_know_is_accepted_listed_and_never_part_of_the_event():
    # forward compatibility: a newer agent's field (docs/api.md); a known field of the wrong type is still an error
    ev = wire.parse_event({**base(type="file.save", sha256=SHA, size=1), "extra": 1, "another": [1]})
    assert ev.unknown_fields == ["another", "extra"]
    assert "extra" not in ev.__dict__
    assert wire.parse_event(base(type="file.save", sha256=SHA, size=1)).unknown_fields == []


def test_unknown_and_missing_type():
    with pytest.raises(ValidationError) as exc:
        wire.parse_event(base(type="file.explode"))
    assert "unknown event type" in wire.describe_error(exc.value)
    with pytest.raises(ValidationError) as exc:
        wire.parse_event(base())
    assert wire.describe_error(exc.value).startswith("type:")


def test_process_paths_must_be_relative_and_times_ordered():
    t = "2026-11-26T08:00:00Z"
    good = base(type="process.compile", source="procmon", argv=["gcc"], cwd=".", started_at=t, compiler="gcc")
    wire.parse_event(good)
    for key, value in [("cwd", "/home/coder/project/hw1"), ("sources", ["../a.c"]), ("output", "/tmp/a")]:
        with pytest.raises(ValidationError) as exc:
            wire.parse_event({**good, key: value})
        assert wire.describe_error(exc.value).startswith(key)
    with pytest.raises(ValidationError, match="ended_at is before started_at"):
        wire.parse_event({**good, "ended_at": "2026-11-26T07:59:59Z"})


def test_only_legacy_saves_may_omit_content():
    with pytest.raises(ValidationError, match="sha256 is required"):
        wire.parse_event(base(type="file.save", size=3))
    ev = wire.parse_event(base(type="file.save", size=3, source="legacy"))
    assert ev.sha256 is None


def test_process_outcome_helpers():
    t = "2026-11-26T08:00:00Z"
    ev = wire.parse_event(
        base(
            type="process.run",
            source="procmon",
            argv=["./a"],
            cwd=".",
            started_at=t,
            ended_at="2026-11-26T08:00:01.5Z",
            signal=11,
            kind="binary",
        )
    )
    assert ev.duration_ms == 1500.0
    assert not ev.succeeded


def test_event_ids_are_deterministic():
    assert wire.make_event_id("n", "p", 1) == wire.make_event_id("n", "p", 1)
    assert wire.make_event_id("n", "p", 1) != wire.make_event_id("n", "p", 2)
    wire.parse_event(base(type="file.delete", event_id=wire.make_event_id("x")))


def test_compiler_name_may_not_contain_nul():
    # PostgreSQL cannot store NUL in text: this must be a 422 at validation, not a database error.
    t = "2026-11-26T08:00:00Z"
    good = base(type="process.compile", source="procmon", argv=["gcc"], cwd=".", started_at=t, compiler="gcc")
    with pytest.raises(ValidationError) as exc:
        wire.parse_event({**good, "compiler": "g\x00cc"})
    assert wire.describe_error(exc.value).startswith("compiler")
    assert wire.parse_event({**good, "compiler": "x86_64-linux-gnu-gcc-12"}).compiler == "x86_64-linux-gnu-gcc-12"
