"""Queue depth by priority, read from the jobs table (what the worker autoscaler follows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import make_engine, make_session_factory
from app.core.domain import Priority
from app.core.tables import Job, Study
from app.services import jobs
from app.services.queue_metrics import report_job_queue

AGE_SECONDS = 120


def add_job(factory: sessionmaker[Session], uid: str, priority: Priority) -> int:
    with factory() as session, session.begin():
        study = Study(study_instance_uid=uid)
        session.add(study)
        session.flush()
        job, _ = jobs.enqueue(session, study_id=study.id, content_key="v1", priority=priority)
        session.flush()
        return job.id


def sample(registry: CollectorRegistry, name: str, priority: Priority) -> float | None:
    return registry.get_sample_value(name, {"priority": priority.value})


def test_queue_depth_age_and_running_by_priority(session_factory: sessionmaker[Session]) -> None:
    registry = CollectorRegistry()
    report_job_queue(session_factory, registry)
    assert sample(registry, "radscribe_job_queue_depth", Priority.STAT) == 0
    assert sample(registry, "radscribe_job_queue_oldest_seconds", Priority.ROUTINE) == 0

    old = add_job(session_factory, "1.1", Priority.ROUTINE)
    add_job(session_factory, "1.2", Priority.ROUTINE)
    add_job(session_factory, "1.3", Priority.STAT)
    deferred = add_job(session_factory, "1.4", Priority.STAT)
    with session_factory() as session, session.begin():
        now = datetime.now(UTC)
        session.execute(
            update(Job).where(Job.id == old).values(created_at=now - timedelta(seconds=AGE_SECONDS))
        )
        session.execute(
            update(Job).where(Job.id == deferred).values(not_before=now + timedelta(hours=1))
        )
    assert sample(registry, "radscribe_job_queue_depth", Priority.ROUTINE) == 2
    assert sample(registry, "radscribe_job_queue_depth", Priority.STAT) == 1, "deferred: not due"
    oldest = sample(registry, "radscribe_job_queue_oldest_seconds", Priority.ROUTINE)
    assert oldest is not None and AGE_SECONDS <= oldest < AGE_SECONDS + 60

    claimed = jobs.claim_next(session_factory, "worker-1")
    assert claimed is not None
    assert sample(registry, "radscribe_jobs_running", Priority.STAT) == 1
    assert sample(registry, "radscribe_job_queue_depth", Priority.STAT) == 0


def test_an_unreachable_database_leaves_the_scrape_working() -> None:
    engine = make_engine("postgresql://nobody@127.0.0.1:1/none")
    registry = CollectorRegistry()
    report_job_queue(make_session_factory(engine), registry)
    try:
        exposition = generate_latest(registry).decode()
    finally:
        engine.dispose()
    assert "radscribe_job_queue_depth{" not in exposition
