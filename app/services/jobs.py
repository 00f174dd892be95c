"""Durable drafting jobs: keyed by study and content, claimed once, retried with backoff.

A job row is the unit of work in both execution modes: the in-process worker
pool polls for it, a Celery worker receives its id.  Either way the claim is a
guarded UPDATE, so a job runs once even when a message is delivered twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import updated_rows
from app.core.domain import JobState, Priority
from app.core.tables import Job

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 5.0
LEASE_SECONDS = 600.0

_RUNNABLE = (JobState.QUEUED, JobState.RETRYING)
_PRIORITY_ORDER = case((Job.priority == Priority.STAT, 0), else_=1)


class RetryableJobError(RuntimeError):
    """A failure worth another attempt (a peer was down, a file was still arriving)."""


class DeferJob(Exception):
    """Put the job back without counting an attempt (for example, waiting for an order)."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.reason = reason


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    study_id: int
    series_id: int | None
    content_key: str
    attempts: int


def _now() -> datetime:
    return datetime.now(UTC)


def enqueue(
    session: Session,
    *,
    study_id: int,
    content_key: str,
    series_id: int | None = None,
    priority: Priority = Priority.ROUTINE,
) -> tuple[Job, bool]:
    """Create the job for this study content unless it exists; returns (job, created)."""
    existing = session.scalar(
        select(Job).where(Job.study_id == study_id, Job.content_key == content_key)
    )
    if existing is not None:
        return existing, False
    job = Job(
        study_id=study_id,
        series_id=series_id,
        content_key=content_key,
        priority=priority,
        state=JobState.QUEUED,
        timings={},
    )
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError:  # another process enqueued the same content first
        found = session.scalar(
            select(Job).where(Job.study_id == study_id, Job.content_key == content_key)
        )
        if found is None:  # pragma: no cover - the conflicting row vanished
            raise
        return found, False
    return job, True


def claim(factory: sessionmaker[Session], job_id: int, owner: str) -> ClaimedJob | None:
    """Claim one job by id (Celery mode); None if it is not runnable or someone has it."""
    now = _now()
    with factory() as session, session.begin():
        claimed = updated_rows(
            session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.state.in_(_RUNNABLE)
                    | ((Job.state == JobState.RUNNING) & (Job.lease_expires_at < now)),
                )
                .values(
                    state=JobState.RUNNING,
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=LEASE_SECONDS),
                    started_at=now,
                    attempts=Job.attempts + 1,
                    error=None,
                )
            )
        )
        if not claimed:
            return None
        job = session.get_one(Job, job_id)
        return ClaimedJob(job.id, job.study_id, job.series_id, job.content_key, job.attempts)


def claim_next(factory: sessionmaker[Session], owner: str) -> ClaimedJob | None:
    """Claim the most urgent runnable job (STAT first, then oldest), or None."""
    now = _now()
    for _ in range(5):  # a few tries when another worker takes the same candidate
        with factory() as session:
            job_id = session.scalar(
                select(Job.id)
                .where(
                    (
                        Job.state.in_(_RUNNABLE)
                        & ((Job.not_before.is_(None)) | (Job.not_before <= now))
                    )
                    | ((Job.state == JobState.RUNNING) & (Job.lease_expires_at < now))
                )
                .order_by(_PRIORITY_ORDER, Job.created_at, Job.id)
                .limit(1)
            )
        if job_id is None:
            return None
        claimed = claim(factory, job_id, owner)
        if claimed is not None:
            return claimed
    return None


def record_timings(
    factory: sessionmaker[Session], job_id: int, stage: str | None, timings: Mapping[str, float]
) -> None:
    with factory() as session, session.begin():
        job = session.get_one(Job, job_id)
        job.stage = stage
        job.timings = {**(job.timings or {}), **{k: round(v, 4) for k, v in timings.items()}}


def finish(factory: sessionmaker[Session], job_id: int) -> None:
    with factory() as session, session.begin():
        job = session.get_one(Job, job_id)
        job.state = JobState.DONE
        job.stage = None
        job.finished_at = _now()
        job.lease_owner = None
        job.lease_expires_at = None


def defer(factory: sessionmaker[Session], job_id: int, seconds: float, reason: str) -> None:
    with factory() as session, session.begin():
        job = session.get_one(Job, job_id)
        job.state = JobState.QUEUED
        job.attempts = max(0, job.attempts - 1)  # waiting is not a failed attempt
        job.not_before = _now() + timedelta(seconds=seconds)
        job.stage = "waiting"
        job.error = reason
        job.lease_owner = None
        job.lease_expires_at = None


def fail(factory: sessionmaker[Session], job_id: int, reason: str, *, retryable: bool) -> bool:
    """Record a failure; returns True when the job will be retried."""
    with factory() as session, session.begin():
        job = session.get_one(Job, job_id)
        job.error = reason[:2000]
        job.lease_owner = None
        job.lease_expires_at = None
        if retryable and job.attempts < MAX_ATTEMPTS:
            job.state = JobState.RETRYING
            job.not_before = _now() + timedelta(
                seconds=BACKOFF_BASE_SECONDS * 2 ** (job.attempts - 1)
            )
            return True
        job.state = JobState.FAILED
        job.finished_at = _now()
        return False
