"""The database's queues for Prometheus, read at scrape time: drafting jobs and the HL7 outbox.

The jobs table is the drafting queue in both execution modes (in-process pool and Celery), so
its runnable rows are the depth the workers' autoscaler follows, and the age of the oldest is
what pages someone when drafting stalls.  The outbox's unacknowledged rows are the backlog of
signed reports still on their way to the EMR, and its dead letters the ones that need a person
(counted here whichever process sends).  Every process that serves ``/metrics`` for a
database reports the same numbers: aggregate with ``max``, not ``sum``, across processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import JobState, OutboxStatus, Priority
from app.core.tables import Job, OutboxMessage

log = logging.getLogger(__name__)

RUNNABLE_JOBS = (JobState.QUEUED, JobState.RETRYING)
UNACKED_OUTBOX = (OutboxStatus.PENDING, OutboxStatus.SENT, OutboxStatus.RETRYING)
OPEN_OUTBOX = (*UNACKED_OUTBOX, OutboxStatus.DEAD)

QUEUE_DEPTH = "radscribe_job_queue_depth"
QUEUE_OLDEST = "radscribe_job_queue_oldest_seconds"
JOBS_RUNNING = "radscribe_jobs_running"
OUTBOX_MESSAGES = "radscribe_hl7_outbox_messages"
OUTBOX_OLDEST = "radscribe_hl7_outbox_oldest_seconds"


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _age(now: datetime, first: datetime | None) -> float:
    return max((now - _as_utc(first)).total_seconds(), 0.0) if first is not None else 0.0


@dataclass
class QueueReading:
    jobs_waiting: dict[Priority, tuple[int, float]] = field(default_factory=dict)
    jobs_running: dict[Priority, int] = field(default_factory=dict)
    outbox: dict[OutboxStatus, tuple[int, float]] = field(default_factory=dict)


def read_queues(factory: sessionmaker[Session]) -> QueueReading:
    now = datetime.now(UTC)
    reading = QueueReading()
    with factory() as session:
        due = (Job.not_before.is_(None)) | (Job.not_before <= now)
        for priority, count, first in session.execute(
            select(Job.priority, func.count(), func.min(Job.created_at))
            .where(Job.state.in_(RUNNABLE_JOBS) & due)
            .group_by(Job.priority)
        ):
            reading.jobs_waiting[priority] = (int(count), _age(now, first))
        for priority, count in session.execute(
            select(Job.priority, func.count())
            .where(Job.state == JobState.RUNNING)
            .group_by(Job.priority)
        ):
            reading.jobs_running[priority] = int(count)
        for status, count, first in session.execute(
            select(OutboxMessage.status, func.count(), func.min(OutboxMessage.created_at))
            .where(OutboxMessage.status.in_(OPEN_OUTBOX))
            .group_by(OutboxMessage.status)
        ):
            reading.outbox[status] = (int(count), _age(now, first))
    return reading


class QueueCollector(Collector):
    """Drafting jobs due now and running, by priority; outbox messages not yet acknowledged."""

    def __init__(self, session_factory: sessionmaker[Session] | None = None) -> None:
        self.session_factory = session_factory

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        specs = (
            (QUEUE_DEPTH, "Drafting jobs waiting to run now, by priority.", "priority"),
            (QUEUE_OLDEST, "Age of the oldest drafting job due to run, by priority.", "priority"),
            (JOBS_RUNNING, "Drafting jobs running, by priority.", "priority"),
            (
                OUTBOX_MESSAGES,
                "Outbound HL7 messages not acknowledged: the backlog (pending, sent, retrying) "
                "and dead letters (dead: a signed report that needs a person), by status.",
                "status",
            ),
            (OUTBOX_OLDEST, "Age of the oldest outbound HL7 message in each status.", "status"),
        )
        return {name: GaugeMetricFamily(name, text, labels=[label]) for name, text, label in specs}

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Names only: registration calls this, and it must not touch the database.
        yield from self._families().values()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.session_factory is None:
            return
        try:
            reading = read_queues(self.session_factory)
        except SQLAlchemyError as exc:  # a scrape must not fail with the database
            log.warning("queue metrics unavailable: %s", type(exc).__name__)
            return
        families = self._families()
        for priority in Priority:
            count, age = reading.jobs_waiting.get(priority, (0, 0.0))
            families[QUEUE_DEPTH].add_metric([priority.value], count)
            families[QUEUE_OLDEST].add_metric([priority.value], age)
            running = reading.jobs_running.get(priority, 0)
            families[JOBS_RUNNING].add_metric([priority.value], running)
        for status in OPEN_OUTBOX:
            count, age = reading.outbox.get(status, (0, 0.0))
            families[OUTBOX_MESSAGES].add_metric([status.value], count)
            families[OUTBOX_OLDEST].add_metric([status.value], age)
        yield from families.values()


_PROCESS_COLLECTOR = QueueCollector()
_process_lock = threading.Lock()
_process_registered = False


def report_queues(
    session_factory: sessionmaker[Session], registry: CollectorRegistry | None = None
) -> QueueCollector:
    """Report this database's queues on ``registry``.

    Without a registry they go on the process's default one, registered once: a process
    serves one database, so a later call (a second app in tests) points it at the new one.
    """
    global _process_registered
    if registry is not None:
        collector = QueueCollector(session_factory)
        registry.register(collector)
        return collector
    with _process_lock:
        if not _process_registered:
            REGISTRY.register(_PROCESS_COLLECTOR)
            _process_registered = True
        _PROCESS_COLLECTOR.session_factory = session_factory
    return _PROCESS_COLLECTOR
