"""Only Alembic creates the schema; it goes up, down and up again on both backends."""

from __future__ import annotations

from sqlalchemy import inspect

from app.core import migrate
from app.core.db import make_engine
from app.core.tables import Base


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    expected = set(Base.metadata.tables)

    migrate.upgrade(database_url)
    assert expected <= _tables(database_url)

    migrate.downgrade(database_url)
    assert _tables(database_url) & expected == set()

    migrate.upgrade(database_url)
    assert expected <= _tables(database_url)
    engine = make_engine(database_url)
    try:
        assert migrate.current_revision(engine) is not None
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_tables(migrated_url: str) -> None:
    """Every column the ORM declares exists after the migrations, so the two never drift."""
    engine = make_engine(migrated_url)
    try:
        inspector = inspect(engine)
        for table in Base.metadata.sorted_tables:
            migrated = {column["name"] for column in inspector.get_columns(table.name)}
            declared = {column.name for column in table.columns}
            assert declared == migrated, table.name
    finally:
        engine.dispose()
