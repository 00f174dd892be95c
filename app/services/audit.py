"""Audit trail: every access to patient data and every change of state is recorded.

Events are written in the caller's transaction, so an action and its audit
entry commit or roll back together.  Requests that only read go through
:class:`AuditWriter`, which commits the events of concurrent requests together
and answers each request only after its event is committed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session, sessionmaker

from app.core.tables import AuditEvent, User, utcnow

SYSTEM_ACTOR = "system"


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int | None = None,
    user_id: int | None = None,
    study_id: int | None = None,
    client_address: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        user_id=user_id,
        study_id=study_id,
        client_address=client_address,
        detail=detail,
    )
    session.add(event)
    return event


def record_study_view(
    session: Session,
    *,
    user: User,
    study_id: int,
    client_address: str | None,
    via: str | None = None,
) -> AuditEvent:
    """A user looked at a study's patient data (page or API)."""
    return record(
        session,
        actor=user.username,
        action="study.view",
        object_type="study",
        object_id=study_id,
        user_id=user.id,
        study_id=study_id,
        client_address=client_address,
        detail={"via": via} if via else None,
    )


_AUDIT_INSERT = insert(cast(Table, AuditEvent.__table__))


class AuditWriter:
    """Durable audit events of read-only requests, many requests to one commit.

    A request that only reads patient data has no transaction of its own to put
    its audit event in.  It hands the event to this writer and waits: a thread
    inserts every event waiting at that moment in one statement and commits once
    (group commit), then releases the requests.  A request never answers before
    its event is committed; if the commit fails, every request of the batch
    fails.  Changes keep using :func:`record` in their own transaction.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        max_batch: int = 500,
        idle_seconds: float = 30.0,
    ) -> None:
        self._factory = factory
        self._max_batch = max_batch
        self._idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], Future[None]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(
        self,
        *,
        actor: str,
        action: str,
        object_type: str,
        object_id: str | int | None = None,
        user_id: int | None = None,
        study_id: int | None = None,
        client_address: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Future[None]:
        """Queue one event; the future completes when it is committed."""
        done: Future[None] = Future()
        row = {
            "at": utcnow(),
            "actor": actor,
            "action": action,
            "object_type": object_type,
            "object_id": None if object_id is None else str(object_id),
            "user_id": user_id,
            "study_id": study_id,
            "client_address": client_address,
            "detail": detail,
        }
        self._queue.put((row, done))
        self._ensure_running()
        return done

    def record(self, *, timeout: float = 30.0, **event: Any) -> None:
        """Queue one event and wait until it is committed (raises if it is not)."""
        self.submit(**event).result(timeout=timeout)

    async def record_async(self, **event: Any) -> None:
        """Queue one event and wait, on the event loop, until it is committed."""
        await asyncio.wrap_future(self.submit(**event))

    def _ensure_running(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:  # idle: end, unless an event slipped in meanwhile
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                with self._factory() as session, session.begin():
                    # Core insert on the session's connection: one multi-row statement.
                    session.connection().execute(_AUDIT_INSERT, [row for row, _ in batch])
            except Exception as exc:  # every waiting request learns its event is not stored
                for _, done in batch:
                    done.set_exception(exc)
            else:
                for _, done in batch:
                    done.set_result(None)
