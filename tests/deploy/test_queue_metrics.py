"""The database's queues: drafting jobs by priority (what the worker autoscaler follows) and
the HL7 outbox backlog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import make_engine, make_session_factory
from app.core.domain import OutboxStatus, Priority, ReportKind, Role
from app.core.tables import Job, OutboxMessage, Report, ReportVersion, Study, User
from app.services import jobs
from app.services.queue_metrics import report_queues

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
    report_queues(session_factory, registry)
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
    report_queues(make_session_factory(engine), registry)
    try:
        exposition = generate_latest(registry).decode()
    finally:
        engine.dispose()
    assert "radscribe_job_queue_depth{" not in exposition


def add_outbox_message(factory: sessionmaker[Session], uid: str, status: OutboxStatus) -> None:
    with factory() as session, session.begin():
        study = Study(study_instance_uid=uid)
        session.add(study)
        session.flush()
        report = Report(study_id=study.id)
        signer = User(username=f"rad-{uid}", role=Role.RADIOLOGIST)
        session.add_all([report, signer])
        session.flush()
        version = ReportVersion(
            author_id=signer.id,
            signer_id=signer.id,
            signed_at=datetime.now(UTC),
            report_id=report.id,
            version_number=1,
            kind=ReportKind.FINAL,
            ai_generated=False,
            structured={},
            rendered_text="signed",
        )
        session.add(version)
        session.flush()
        session.add(
            OutboxMessage(
                report_version_id=version.id,
                ordering_key=f"patient-{uid}",
                control_id=f"C{uid}",
                message_type="ORU^R01",
                payload=b"MSH|...",
                status=status,
                created_at=datetime.now(UTC) - timedelta(seconds=AGE_SECONDS),
            )
        )


def test_outbox_backlog_counts_what_the_emr_has_not_acknowledged(
    session_factory: sessionmaker[Session],
) -> None:
    registry = CollectorRegistry()
    report_queues(session_factory, registry)
    statuses = ("pending", "retrying", "retrying", "acked", "dead")
    for index, status in enumerate(OutboxStatus(s) for s in statuses):
        add_outbox_message(session_factory, f"2.{index}", status)

    def backlog(status: OutboxStatus) -> float | None:
        labels = {"status": status.value}
        return registry.get_sample_value("radscribe_hl7_outbox_messages", labels)

    assert backlog(OutboxStatus.PENDING) == 1
    assert backlog(OutboxStatus.RETRYING) == 2
    assert backlog(OutboxStatus.SENT) == 0
    assert backlog(OutboxStatus.DEAD) == 1, "dead letters, whichever process sends"
    assert backlog(OutboxStatus.ACKED) is None
    oldest = registry.get_sample_value(
        "radscribe_hl7_outbox_oldest_seconds", {"status": "retrying"}
    )
    assert oldest is not None and AGE_SECONDS <= oldest < AGE_SECONDS + 60
