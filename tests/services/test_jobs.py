"""Drafting jobs run once per study content, STAT first, with bounded retries."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import JobState, Priority
from app.core.tables import Job, Study
from app.services import jobs


def _study(factory: sessionmaker[Session], uid: str) -> int:
    with factory() as session, session.begin():
        study = Study(study_instance_uid=uid)
        session.add(study)
        session.flush()
        return study.id


def _enqueue(
    factory: sessionmaker[Session], study_id: int, key: str, priority: Priority = Priority.ROUTINE
) -> tuple[int, bool]:
    with factory() as session, session.begin():
        job, created = jobs.enqueue(session, study_id=study_id, content_key=key, priority=priority)
        session.flush()
        return job.id, created


def test_the_same_content_is_enqueued_once(session_factory: sessionmaker[Session]) -> None:
    study = _study(session_factory, "1.2.3")
    first, created = _enqueue(session_factory, study, "series=1.2.3.4:v1")
    again, created_again = _enqueue(session_factory, study, "series=1.2.3.4:v1")
    newer, created_newer = _enqueue(session_factory, study, "series=1.2.3.4:v2")
    assert created and not created_again and created_newer
    assert first == again != newer


def test_stat_jobs_are_claimed_before_older_routine_ones(
    session_factory: sessionmaker[Session],
) -> None:
    routine = _enqueue(session_factory, _study(session_factory, "1.1"), "a")[0]
    stat = _enqueue(session_factory, _study(session_factory, "1.2"), "a", Priority.STAT)[0]
    assert jobs.claim_next(session_factory, "w1").id == stat  # type: ignore[union-attr]
    assert jobs.claim_next(session_factory, "w1").id == routine  # type: ignore[union-attr]
    assert jobs.claim_next(session_factory, "w1") is None


def test_concurrent_workers_claim_each_job_exactly_once(
    session_factory: sessionmaker[Session],
) -> None:
    ids = {_enqueue(session_factory, _study(session_factory, f"2.{i}"), "k")[0] for i in range(6)}

    def drain(owner: str) -> list[int]:
        got = []
        while (job := jobs.claim_next(session_factory, owner)) is not None:
            got.append(job.id)
        return got

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(drain, ["w1", "w2", "w3", "w4"]))
    claimed = [job_id for result in results for job_id in result]
    assert sorted(claimed) == sorted(ids)


def test_retries_back_off_then_fail(session_factory: sessionmaker[Session]) -> None:
    job_id = _enqueue(session_factory, _study(session_factory, "3.1"), "k")[0]
    for attempt in range(1, jobs.MAX_ATTEMPTS + 1):
        claimed = jobs.claim(session_factory, job_id, "w")
        assert claimed is not None and claimed.attempts == attempt
        will_retry = jobs.fail(session_factory, job_id, "peer down", retryable=True)
        assert will_retry is (attempt < jobs.MAX_ATTEMPTS)
        if will_retry:
            assert jobs.claim_next(session_factory, "w") is None  # backing off
    with session_factory() as session:
        job = session.get_one(Job, job_id)
        assert job.state is JobState.FAILED and job.error == "peer down"


def test_deferring_does_not_use_up_attempts(session_factory: sessionmaker[Session]) -> None:
    job_id = _enqueue(session_factory, _study(session_factory, "4.1"), "k")[0]
    for _ in range(jobs.MAX_ATTEMPTS + 2):
        assert jobs.claim(session_factory, job_id, "w") is not None
        jobs.defer(session_factory, job_id, 0, "waiting for the order")
    with session_factory() as session:
        job = session.get_one(Job, job_id)
        assert job.attempts == 0 and job.state is JobState.QUEUED


def test_a_job_whose_worker_died_is_taken_over(session_factory: sessionmaker[Session]) -> None:
    job_id = _enqueue(session_factory, _study(session_factory, "5.1"), "k")[0]
    assert jobs.claim(session_factory, job_id, "dead-worker") is not None
    assert jobs.claim_next(session_factory, "w2") is None  # lease still valid
    with session_factory() as session, session.begin():
        session.get_one(Job, job_id).lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)
    taken = jobs.claim_next(session_factory, "w2")
    assert taken is not None and taken.id == job_id
    jobs.finish(session_factory, job_id)
    with session_factory() as session:
        assert session.scalar(select(Job.state).where(Job.id == job_id)) is JobState.DONE
