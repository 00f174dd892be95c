"""The same drafting job on Celery workers over Redis: once per job, STAT first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.core.domain import JobState, Priority
from app.core.settings import Settings, load_settings
from app.core.tables import Job, ReportVersion, Study
from app.services.assembly import build_runtime
from app.services.celery_app import ROUTINE_QUEUE, STAT_QUEUE, TASK_NAME, make_celery
from app.services.runtime import Runtime
from dicom_node.send import Destination, collect_files, send_files
from tests.conftest import free_port
from tests.pipeline.conftest import redis_or_skip, start_worker, wait_for

REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
def celery_settings(tmp_path: Path, sqlite_url: str) -> Settings:
    client = redis_or_skip(REDIS_URL)
    client.delete(STAT_QUEUE, ROUTINE_QUEUE, "unacked", "unacked_index")
    return load_settings(
        env="development",
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        celery_broker_url=REDIS_URL,
        dicom_port=free_port(),
        dicom_host="127.0.0.1",
        http_port=free_port(),
        hl7_port=free_port(),
        dicom_quiet_seconds=0.5,
        order_wait_seconds=0.0,
    )


@pytest.fixture
def runtime(celery_settings: Settings) -> Iterator[Runtime]:
    built = build_runtime(celery_settings, only=["dicom", "draft-requests"])
    built.start()
    yield built
    built.stop()


def _push(settings: Settings, folder: Path, truth: dict[str, Any]) -> str:
    results = send_files(
        collect_files([folder / truth["files"]["dicom"]]),
        Destination(host="127.0.0.1", port=settings.dicom_port, calling_aet="TEST_PACS"),
    )
    assert results and all(r.ok for r in results)
    return str(truth["study"]["study_uid"])


@pytest.mark.timeout(240)
def test_jobs_run_once_on_celery_workers_stat_first(
    celery_settings: Settings,
    runtime: Runtime,
    small_study_factory: Callable[[int], tuple[Path, dict[str, Any]]],
    tmp_path: Path,
) -> None:
    factory = runtime.session_factory
    routine_uid = _push(celery_settings, *small_study_factory(11))
    stat_uid = _push(celery_settings, *small_study_factory(12))

    def job_of(uid: str) -> Job | None:
        with factory() as session:
            return session.scalar(
                select(Job)
                .join(Study, Study.id == Job.study_id)
                .where(Study.study_instance_uid == uid)
            )

    routine_job = wait_for(lambda: job_of(routine_uid), timeout=60, what="the routine job")
    stat_job = wait_for(lambda: job_of(stat_uid), timeout=60, what="the second job")
    # No worker runs yet: make the second job STAT and send it after the routine one.
    with factory() as session, session.begin():
        session.get_one(Job, stat_job.id).priority = Priority.STAT
    celery = make_celery(REDIS_URL)
    celery.send_task(TASK_NAME, args=[stat_job.id], queue=STAT_QUEUE)
    celery.send_task(TASK_NAME, args=[routine_job.id], queue=ROUTINE_QUEUE)  # a repeat

    metrics_port = free_port()
    worker = start_worker(celery_settings, tmp_path / "worker.log", metrics_port)
    try:

        def finished() -> list[Job] | None:
            with factory() as session:
                rows = session.scalars(select(Job).order_by(Job.id)).all()
                done = [j for j in rows if j.state is JobState.DONE]
                return list(rows) if len(done) == 2 else None

        done = wait_for(finished, timeout=180, what="both jobs done on the worker")
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'radscribe_pipeline_stage_seconds_count{stage="model"} 2.0' in scraped
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert worker.returncode is not None, log

    by_id = {job.id: job for job in done}
    assert by_id[stat_job.id].started_at <= by_id[routine_job.id].started_at, "STAT first"
    assert all(job.attempts == 1 for job in done), "each job ran once despite repeats"
    with factory() as session:
        versions = session.scalars(select(ReportVersion)).all()
    assert len(versions) == 2
    assert all(v.ai_generated and v.kind.value == "draft" for v in versions)
