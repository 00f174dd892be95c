"""Drafting-queue depth for Prometheus, read from the jobs table at scrape time.

The jobs table is the queue in both execution modes (in-process pool and Celery), so its
runnable rows are the queue depth the workers' autoscaler follows and the age of the oldest
one is what pages someone when drafting stalls.  Every process that serves ``/metrics`` for
a database reports the same numbers; aggregate with ``max``, not ``sum``, across processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import JobState, Priority
from app.core.tables import Job

log = logging.getLogger(__name__)

RUNNABLE = (JobState.QUEUED, JobState.RETRYING)

QUEUE_DEPTH = "radscribe_job_queue_depth"
OLDEST_WAITING = "radscribe_job_queue_oldest_seconds"
RUNNING = "radscribe_jobs_running"


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class JobQueueCollector(Collector):
    """Runnable (due) jobs and the age of the oldest, by priority; running jobs, by priority."""

    def __init__(self, session_factory: sessionmaker[Session] | None = None) -> None:
        self.session_factory = session_factory

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Declares the names without touching the database (registration calls this).
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                QUEUE_DEPTH, "Drafting jobs waiting to run now, by priority.", labels=["priority"]
            ),
            GaugeMetricFamily(
                OLDEST_WAITING,
                "Age of the oldest drafting job waiting to run now, by priority (0 when none).",
                labels=["priority"],
            ),
            GaugeMetricFamily(RUNNING, "Drafting jobs running, by priority.", labels=["priority"]),
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth, oldest, running = self._families()
        if self.session_factory is None:
            return
        try:
            waiting, busy = self._read(self.session_factory)
        except SQLAlchemyError as exc:  # a scrape must not fail with the database
            log.warning("job queue metrics unavailable: %s", type(exc).__name__)
            return
        for priority in Priority:
            count, age = waiting.get(priority, (0, 0.0))
            depth.add_metric([priority.value], count)
            oldest.add_metric([priority.value], age)
            running.add_metric([priority.value], busy.get(priority, 0))
        yield from (depth, oldest, running)

    @staticmethod
    def _read(
        factory: sessionmaker[Session],
    ) -> tuple[dict[Priority, tuple[int, float]], dict[Priority, int]]:
        now = datetime.now(UTC)
        waiting: dict[Priority, tuple[int, float]] = {}
        busy: dict[Priority, int] = {}
        with factory() as session:
            due = (Job.not_before.is_(None)) | (Job.not_before <= now)
            for priority, count, first in session.execute(
                select(Job.priority, func.count(), func.min(Job.created_at))
                .where(Job.state.in_(RUNNABLE) & due)
                .group_by(Job.priority)
            ):
                age = (now - _as_utc(first)).total_seconds() if first is not None else 0.0
                waiting[priority] = (int(count), max(age, 0.0))
            for priority, count in session.execute(
                select(Job.priority, func.count())
                .where(Job.state == JobState.RUNNING)
                .group_by(Job.priority)
            ):
                busy[priority] = int(count)
        return waiting, busy


_PROCESS_COLLECTOR = JobQueueCollector()
_process_lock = threading.Lock()
_process_registered = False


def report_job_queue(
    session_factory: sessionmaker[Session], registry: CollectorRegistry | None = None
) -> JobQueueCollector:
    """Report this database's queue on ``registry``.

    Without a registry it goes on the process's default one, registered once: a process
    serves one database, so a later call (a second app in tests) points it at the new one.
    """
    global _process_registered
    if registry is not None:
        collector = JobQueueCollector(session_factory)
        registry.register(collector)
        return collector
    with _process_lock:
        if not _process_registered:
            REGISTRY.register(_PROCESS_COLLECTOR)
            _process_registered = True
        _PROCESS_COLLECTOR.session_factory = session_factory
    return _PROCESS_COLLECTOR
