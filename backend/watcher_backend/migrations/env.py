"""Alembic environment: the target metadata is the models'; the connection comes from ``migrate.upgrade``.

Run programmatically (``watcher_backend.migrate``) at startup, or with the alembic CLI:
``alembic -x url=sqlite:///data/watcher.db -c <package>/migrations/alembic.ini upgrade head``.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from watcher_backend import models  # noqa: F401  (registers the tables)
from watcher_backend.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table copies for ALTERs
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("alembic: give the database as -x url=<database URL> (or sqlalchemy.url in alembic.ini)")
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
