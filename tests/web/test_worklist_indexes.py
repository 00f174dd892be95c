"""The worklist's queries match the indexes of migration 0005 on PostgreSQL.

An ORDER BY or search expression that differs from the indexed one by a bind
parameter silently falls back to sorting every open study; the plans here
show the index is usable (sequential scans and sorts discouraged so the plan
answers "can", not "would at this size").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert
from sqlalchemy.orm import Session

from app.core import migrate
from app.core.db import make_engine, make_session_factory, transaction
from app.core.domain import Priority, StudyStatus
from app.core.tables import Study
from app.services.worklist import (
    Claimed,
    Scope,
    Sort,
    TotalsCache,
    WorklistQuery,
    query_worklist,
    search_words,
)


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    now = datetime.now(UTC)
    names = ("SMITH^ANNA", "JONES^BEN", "GARCIA^CARLA", "O'BRIEN^DAVID")
    rows = [
        {
            "study_instance_uid": f"2.25.{n}",
            "dicom_patient_id": f"MRN{n:05d}",
            "dicom_patient_name": names[n % len(names)],
            "accession_number": f"ACC{n:06d}",
            "study_description": "CT CHEST",
            "status": list(StudyStatus)[n % len(StudyStatus)],
            "priority": Priority.STAT if n % 10 == 0 else Priority.ROUTINE,
            "acquired_at": now - timedelta(minutes=n),
            "created_at": now,
            "updated_at": now,
        }
        for n in range(400)
    ]
    with transaction(make_session_factory(engine)) as session:
        session.execute(insert(Study), rows)
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE studies")
    yield engine
    engine.dispose()


def _plans(engine: Engine, query: WorklistQuery) -> tuple[Any, list[str]]:
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with Session(engine) as session:
            page = query_worklist(session, query, user_id=1, now=datetime.now(UTC))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    plans = []
    with engine.connect() as connection:
        connection.exec_driver_sql("SET enable_seqscan = off")
        connection.exec_driver_sql("SET enable_sort = off")
        for statement, params in statements:
            rows = connection.exec_driver_sql("EXPLAIN " + statement, params).all()
            plans.append("\n".join(str(r[0]) for r in rows))
    return page, plans


def test_the_first_page_is_read_along_the_priority_index(pg_engine: Engine) -> None:
    page, plans = _plans(pg_engine, WorklistQuery(page_size=20))
    assert "ix_studies_worklist_priority" in plans[0], plans[0]
    assert page.rows[0].priority is Priority.STAT and page.total > 20
    newest, plans = _plans(pg_engine, WorklistQuery(sort=Sort.NEWEST, page_size=20))
    assert "ix_studies_worklist_acquired" in plans[0], plans[0]
    assert newest.rows[0].acquired_at >= newest.rows[-1].acquired_at


def test_a_search_uses_the_trigram_index_and_finds_every_word(pg_engine: Engine) -> None:
    query = WorklistQuery(scope=Scope.ALL, search="Smith, Anna", page_size=20)
    page, plans = _plans(pg_engine, query)
    assert "ix_studies_search_trgm" in plans[1], plans[1]  # the count
    assert page.total > 20 and all(r.patient_name == "SMITH, ANNA" for r in page.rows)
    accession, _ = _plans(pg_engine, WorklistQuery(search="acc000017 chest"))
    assert [r.accession_number for r in accession.rows] == ["ACC000017"]
    quoted, _ = _plans(pg_engine, WorklistQuery(search="o'brien 100%"))
    assert quoted.total == 0  # "100" is in no study; the % is not a wildcard


def test_search_words_drop_wildcards_and_separators() -> None:
    assert search_words(" Doe,  JANE^x%_y\\ ") == ["doe", "jane", "x", "y"]


def test_totals_are_remembered_briefly_but_rows_are_always_fresh(pg_engine: Engine) -> None:
    totals = TotalsCache(ttl=0.3)
    query = WorklistQuery(scope=Scope.ALL, page_size=10, sort=Sort.NEWEST)
    now = datetime.now(UTC)
    with Session(pg_engine) as session:
        first = query_worklist(session, query, user_id=1, now=now, totals=totals)
    with transaction(make_session_factory(pg_engine)) as session:
        session.add(Study(study_instance_uid="2.25.999999", acquired_at=now, created_at=now))
    with Session(pg_engine) as session:
        second = query_worklist(session, query, user_id=1, now=now, totals=totals)
        assert second.rows[0].study_id != first.rows[0].study_id  # the new study, read fresh
        assert second.total == first.total == 400  # the count is the remembered one
        mine = query_worklist(
            session,
            WorklistQuery(scope=Scope.ALL, claimed=Claimed.MINE),
            user_id=1,
            now=now,
            totals=totals,
        )
        assert mine.total == 0
        time.sleep(0.4)
        third = query_worklist(session, query, user_id=1, now=now, totals=totals)
    assert third.total == 401
