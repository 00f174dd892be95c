"""A Celery worker with two drafting processes serves both processes' metrics on one port.

A real worker (``radscribe worker --concurrency 2``, prefork) on Redis drafts two studies
received over DICOM; Prometheus would scrape the parent's metrics port, and the parent drafts
nothing itself.  Started without ``PROMETHEUS_MULTIPROC_DIR``, the worker makes its own
folder and starts itself again in multiprocess mode; it removes the folder when it stops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.core.domain import JobState
from app.core.settings import Settings, load_settings
from app.core.tables import Job
from app.services.assembly import build_runtime
from app.services.celery_app import ROUTINE_QUEUE, STAT_QUEUE
from app.services.runtime import Runtime
from dicom_node.send import Destination, collect_files, send_files
from tests.conftest import free_port
from tests.pipeline.conftest import redis_or_skip, small_study_factory, start_worker, wait_for

__all__ = ["small_study_factory"]  # the fixture, imported for this test

REDIS_URL = "redis://127.0.0.1:6379/13"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    redis_or_skip(REDIS_URL).delete(STAT_QUEUE, ROUTINE_QUEUE, "unacked", "unacked_index")
    return load_settings(
        env="development",
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        celery_broker_url=REDIS_URL,
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        dicom_quiet_seconds=0.5,
        order_wait_seconds=0.0,
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    built = build_runtime(settings, only=["dicom", "draft-requests"])
    built.start()
    yield built
    built.stop()


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def scrape(port: int) -> dict[str, float]:
    """The exposition as {sample line without value: value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.mark.timeout(300)
def test_a_prefork_worker_serves_every_process_metrics(
    settings: Settings,
    runtime: Runtime,
    small_study_factory: Callable[[int], tuple[Path, dict[str, Any]]],
    tmp_path: Path,
) -> None:
    for seed in (11, 12):
        folder, truth = small_study_factory(seed)
        results = send_files(
            collect_files([folder / truth["files"]["dicom"]]),
            Destination(host="127.0.0.1", port=settings.dicom_port, calling_aet="TEST_PACS"),
        )
        assert results and all(r.ok for r in results)

    metrics_port = free_port()
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log, metrics_port, args=("--concurrency", "2"))
    try:

        def both_done() -> list[Job] | None:
            with runtime.session_factory() as session:
                rows = session.scalars(select(Job)).all()
            done = [j for j in rows if j.state is JobState.DONE]
            return done if len(done) == 2 else None

        done = wait_for(both_done, timeout=240, what="both jobs drafted by the worker")
        assert all(job.attempts == 1 for job in done)
        folder = Path(environment_of(worker.pid)[MULTIPROCESS_ENV])
        writers = {int(path.stem.rsplit("_", 1)[1]) for path in folder.glob("histogram_*.db")} - {
            worker.pid
        }
        samples = scrape(metrics_port)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    output = log.read_text(errors="replace")
    assert len(writers) == 2, f"two child processes drafted: {writers}\n{output[-3000:]}"
    # The parent's port serves the sum over both children (it drafted nothing itself).
    assert samples['radscribe_pipeline_stage_seconds_count{stage="model"}'] == 2.0
    assert samples['radscribe_drafting_jobs_finished_total{outcome="drafted"}'] == 2.0
    assert not folder.exists(), "the worker removes the folder it made"
