"""The audit writer: read-only requests' events, committed together, never lost silently."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.core import migrate
from app.core.db import make_engine, make_session_factory
from app.core.tables import AuditEvent
from app.services.audit import AuditWriter


def test_concurrent_events_are_all_committed_before_their_callers_go_on(
    postgres_url: str,
) -> None:
    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        factory = make_session_factory(engine)
        writer = AuditWriter(factory)

        def view(n: int) -> int:
            writer.record(
                actor=f"reader{n % 3}",
                action="worklist.view",
                object_type="worklist",
                client_address="127.0.0.1",
                detail={"page": n},
            )
            with factory() as session:  # committed: another connection sees it at once
                return len(
                    session.scalars(
                        select(AuditEvent.id).where(AuditEvent.detail["page"].as_integer() == n)
                    ).all()
                )

        with ThreadPoolExecutor(max_workers=16) as pool:
            seen = list(pool.map(view, range(200)))
        assert seen == [1] * 200
        with factory() as session:
            events = session.scalars(select(AuditEvent)).all()
        assert len(events) == 200 and {e.actor for e in events} == {"reader0", "reader1", "reader2"}
    finally:
        engine.dispose()


def test_a_failed_commit_fails_the_request_that_waits(tmp_path: Path) -> None:
    """No table to write to: the caller gets the error instead of an unaudited answer."""
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        writer = AuditWriter(make_session_factory(engine))
        with pytest.raises(OperationalError):
            writer.record(actor="rad", action="worklist.view", object_type="worklist")
    finally:
        engine.dispose()
