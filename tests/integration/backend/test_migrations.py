"""Schema migrations: the migrated schema equals the models, and an upgrade keeps existing data."""

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel

from watcher_backend import db, migrate, models, rollups, store  # noqa: F401  (models registers the tables)
from watcher_core import wire

HEAD = "0012"


def test_migrations_from_empty_match_the_models(database_url):
    engine = db.make_engine(database_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, SQLModel.metadata)
    assert diffs == []
    assert migrate.current_revision(engine) == HEAD
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("event")}
    assert {"ix_event_student_file", "ix_event_timestamp"} <= indexes
    # merged in revision 0003, dropped in 0004
    assert not indexes & {"ix_event_student_time", "ix_event_student_path", "ix_event_assignment_type"}
    migrate.upgrade(engine)  # running again (every start) is a no-op
    engine.dispose()


def test_upgrade_from_the_first_revision_keeps_the_data(database_url):
    engine = db.make_engine(database_url)
    migrate.upgrade(engine, "0001")
    assert "agent" not in inspect(engine).get_table_names()
    with engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO event (event_id, type, "timestamp", received_at, node, source, course, section, '
                "student_id, assignment, path, sha256, size) VALUES "
                "('ev-old-00000001', 'file.save', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:01.000000', "
                "'n1', 'filemon', 'os', '1', '000123', 'hw1', 'main.c', :sha, 42)"
            ),
            {"sha": "c" * 64},
        )
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == HEAD
    with Session(engine) as session:
        events, _ = store.timeline(session, "os", "1", "hw1", "000123")
        assert [(e["event_id"], e["size"], e["student_id"]) for e in events] == [("ev-old-00000001", 42, "000123")]
        assert events[0]["timestamp"] == datetime(2026, 1, 1, tzinfo=UTC)
        # the new table works alongside the old data
        new = wire.parse_event(
            {
                "event_id": "ev-new-00000001",
                "type": "file.delete",
                "timestamp": "2026-01-02T00:00:00Z",
                "node": "n1",
                "source": "filemon",
                "course": "os",
                "section": "1",
                "student_id": "000123",
                "assignment": "hw1",
                "path": "main.c",
            }
        )
        assert tuple(store.ingest(session, [new])) == (1, 0)
        assert store.status(session)["agents"][0]["node"] == "n1"
        # erasing data written before revision 0005 queues its snapshot contents like any other
        assert store.delete_student(session, "000123") == ({"event": 2, "diagnostic": 0}, 1)
        assert store.unreferenced_contents(session, 10) == (["c" * 64], 0)
    engine.dispose()


def test_process_rows_from_before_0008_read_as_stderr_not_captured(database_url):
    engine = db.make_engine(database_url)
    migrate.upgrade(engine, "0007")
    with engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO event (event_id, type, "timestamp", received_at, node, source, course, section, '
                "student_id, assignment, path, argv, argv_truncated, cwd, exit_code, started_at, compiler, sources) "
                "VALUES ('ev-old-00000002', 'process.compile', '2026-01-01 00:00:00.000000', "
                "'2026-01-01 00:00:01.000000', 'n1', 'procmon', 'os', '1', '000123', 'hw1', 'main.c', "
                "'[\"gcc\", \"main.c\"]', false, '.', 1, '2026-01-01 00:00:00.000000', 'gcc', '[\"main.c\"]')"
            )
        )
    migrate.upgrade(engine)
    with Session(engine) as session:
        events, _ = store.timeline(session, "os", "1", "hw1", "000123")
        assert [(e["event_id"], e["stderr"], e["stderr_truncated"]) for e in events] == [
            ("ev-old-00000002", None, False)
        ]
    engine.dispose()


def test_revision_0011_parses_the_stderr_stored_before_it(database_url):
    engine = db.make_engine(database_url)
    migrate.upgrade(engine, "0010")
    insert = text(
        'INSERT INTO event (event_id, type, "timestamp", received_at, node, source, course, section, '
        "student_id, assignment, path, argv, argv_truncated, cwd, exit_code, started_at, compiler, sources, kind, "
        "stderr, stderr_truncated) VALUES (:id, :type, '2026-01-01 00:00:00.000000', '2026-01-01 00:00:01.000000', "
        "'n1', 'procmon', 'os', '1', '000123', 'hw1', :path, '[]', false, 'src', 1, "
        "'2026-01-01 00:00:00.000000', :compiler, '[]', :kind, :stderr, false)"
    )
    with engine.begin() as conn:
        conn.execute(
            insert,
            [
                {
                    "id": "ev-old-compile-1",
                    "type": "process.compile",
                    "path": "src/main.c",
                    "compiler": "gcc",
                    "kind": None,
                    "stderr": "main.c:3:5: error: 'y' undeclared (first use in this function)\n"
                    "main.c:4:9: warning: unused variable 'x' [-Wunused-variable]\n",
                },
                {
                    "id": "ev-old-run-1",
                    "type": "process.run",
                    "path": "src/a.py",
                    "compiler": None,
                    "kind": "python",
                    "stderr": 'Traceback (most recent call last):\n  File "a.py", line 2, in <module>\n'
                    "ZeroDivisionError: division by zero\n",
                },
            ],
        )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT event_id, kind, file, line, error_class, flag FROM diagnostic ORDER BY event_id, seq")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("ev-old-compile-1", "error", "src/main.c", 3, "<id> undeclared (first use in this function)", None),
        ("ev-old-compile-1", "warning", "src/main.c", 4, "unused variable <id>", "-Wunused-variable"),
        ("ev-old-run-1", "exception", "src/a.py", 2, "ZeroDivisionError: division by zero", "ZeroDivisionError"),
    ]
    engine.dispose()


def test_revision_0012_numbers_the_activity_hours_in_place_and_back(database_url):
    engine = db.make_engine(database_url)
    migrate.upgrade(engine, "0011")
    stored_at = ("2026-03-02 11:00:00.000000", "2026-03-02 23:00:00.000000", "1970-01-02 00:00:00.000000")
    with engine.begin() as conn:
        for i, hour in enumerate(stored_at):
            conn.execute(
                text(
                    "INSERT INTO activity_hour (course, section, assignment, student_id, hour, events, saves, "
                    "compiles, compile_successes, runs) VALUES ('os', '1', 'hw1', '7', :hour, :n, 1, 0, 0, 0)"
                ),
                {"hour": datetime.fromisoformat(hour) if conn.dialect.name == "postgresql" else hour, "n": i + 2},
            )
    migrate.upgrade(engine)  # converted in place: no rebuild, the same counts under the same hours
    numbered = [
        (
            int((datetime.fromisoformat(h).replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
            // 3600,
            i + 2,
        )
        for i, h in enumerate(stored_at)
    ]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT hour, events FROM activity_hour ORDER BY hour")).all()
    assert [tuple(r) for r in rows] == sorted(numbered) and sorted(numbered)[0][0] == 24
    assert numbered[0][0] == rollups.hour_of(datetime(2026, 3, 2, 11, 59, tzinfo=UTC))

    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011")
    with engine.connect() as conn:
        back = conn.execute(text("SELECT hour, events FROM activity_hour ORDER BY hour")).all()
    as_text = [str(h) if isinstance(h, str) else h.strftime("%Y-%m-%d %H:%M:%S.%f") for h, _ in back]
    assert as_text == sorted(stored_at) and [n for _, n in back] == [4, 2, 3]
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == HEAD
    engine.dispose()
