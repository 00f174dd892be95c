"""Database engine and sessions.

One engine per process, made by :func:`make_engine` from settings and passed
on; SQLite gets WAL and foreign keys, PostgreSQL a normal pool.  Only Alembic
creates tables (see :mod:`app.core.migrate`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Result, create_engine, event
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.orm import Session, sessionmaker


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")  # acknowledged means durable
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, echo=echo, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on error."""
    with factory() as session, session.begin():
        yield session


def updated_rows(result: Result[Any]) -> int:
    """Rows matched by an UPDATE or DELETE (guarded updates use it to claim work)."""
    if not isinstance(result, CursorResult):  # pragma: no cover - ORM bulk paths
        raise TypeError("expected the result of an UPDATE or DELETE statement")
    return int(result.rowcount)
