"""Scale-out drafting: the same job function as a Celery task on Redis.

Jobs stay durable rows (``app.services.jobs``); a Celery message carries only
the job id.  The task claims the row with the same guarded UPDATE as the
embedded pool, so a message delivered twice runs the job once.  Late
acknowledgement and ``reject_on_worker_lost`` give a crashed worker's job to
another; STAT work has its own queue that workers poll first.
"""

from __future__ import annotations

import functools
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown
from kombu import Queue
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import make_engine, make_session_factory
from app.core.domain import JobState, Priority
from app.core.settings import Settings, load_settings
from app.core.tables import Job
from app.services import jobs, leases
from app.services.metrics_server import forget_process

if TYPE_CHECKING:  # the ML stack loads in the worker, not where jobs are only sent
    from app.services.drafting import DraftingServices

log = logging.getLogger(__name__)

STAT_QUEUE = "radscribe.stat"
ROUTINE_QUEUE = "radscribe.routine"
TASK_NAME = "radscribe.draft"
TASK_SOFT_TIME_LIMIT_SECONDS = 300
TASK_TIME_LIMIT_SECONDS = 360
REDISPATCH_AFTER_SECONDS = 60.0


def queue_for(priority: Priority) -> str:
    return STAT_QUEUE if priority is Priority.STAT else ROUTINE_QUEUE


def make_celery(broker_url: str) -> Celery:
    app = Celery("radscribe", broker=broker_url)
    app.conf.update(
        task_queues=(Queue(STAT_QUEUE), Queue(ROUTINE_QUEUE)),
        task_default_queue=ROUTINE_QUEUE,
        # Redis: poll the queues in the order listed, so STAT work is taken first.
        broker_transport_options={"queue_order_strategy": "priority", "visibility_timeout": 3600},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT_SECONDS,
        task_time_limit=TASK_TIME_LIMIT_SECONDS,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.task(name=TASK_NAME, bind=True, max_retries=None)(_draft_task)
    return app


@functools.cache
def _worker_services() -> DraftingServices:
    """Built once per worker process from the environment (the worker's settings)."""
    from app.services.assembly import drafting_services

    settings = load_settings()
    engine = make_engine(settings.effective_database_url)
    return drafting_services(settings, make_session_factory(engine))


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Load the model and Whisper when a process that drafts starts, not in its first job.

    Both pools send this signal: solo in the worker itself, prefork in each child (the
    parent, which only hands out messages, loads nothing)."""
    try:
        _worker_services().warm_up()
    except Exception:  # the first job reports the same problem with its study
        log.exception("loading the drafting models failed")


@worker_process_shutdown.connect
def _forget_process(pid: int | None = None, **_: object) -> None:
    """A prefork child ends: its live gauges leave the worker's metrics."""
    forget_process(pid or os.getpid())


def _draft_task(task: Task, job_id: int) -> str:
    from app.services.drafting import run_draft_job

    services = _worker_services()
    factory = services.session_factory
    owner = f"{leases.process_identity()}:celery"
    claimed = jobs.claim(factory, job_id, owner)
    if claimed is None:
        return "not runnable"  # done, running elsewhere, or a repeated message
    run_draft_job(services, claimed)
    with factory() as session:
        job = session.get_one(Job, job_id)
        state, not_before = job.state, job.not_before
    if state in (JobState.QUEUED, JobState.RETRYING):  # deferred or failed and retrying
        delay = 0.0
        if not_before is not None:
            aware = not_before if not_before.tzinfo else not_before.replace(tzinfo=UTC)
            delay = max(0.0, (aware - datetime.now(UTC)).total_seconds())
        raise task.retry(countdown=delay)
    return state.value


class CeleryDispatcher:
    """Sends job ids to the Celery queues (the scale-out counterpart of the worker pool)."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def dispatch(self, job_id: int, priority: Priority) -> None:
        self.app.send_task(TASK_NAME, args=[job_id], queue=queue_for(priority))

    def redispatch_stale(self, factory: sessionmaker[Session]) -> int:
        """Re-send runnable jobs whose message may have been lost (cheap: claims are guarded)."""
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=REDISPATCH_AFTER_SECONDS)
        with factory() as session:
            rows = session.execute(
                select(Job.id, Job.priority).where(
                    (
                        Job.state.in_((JobState.QUEUED, JobState.RETRYING))
                        & (Job.updated_at < cutoff)
                        & (Job.not_before.is_(None) | (Job.not_before <= now))
                    )
                    | ((Job.state == JobState.RUNNING) & (Job.lease_expires_at < now))
                )
            ).all()
        for job_id, priority in rows:
            self.dispatch(job_id, priority)
        return len(rows)


def dispatcher_for(settings: Settings) -> CeleryDispatcher | None:
    if not settings.celery_broker_url:
        return None
    return CeleryDispatcher(make_celery(settings.celery_broker_url))


def worker_argv(settings: Settings, *, concurrency: int, queues: list[str] | None) -> list[str]:
    """Processes for concurrency; one process of threads when jobs are batched on its model."""
    if concurrency > 1:
        pool, slots = "prefork", concurrency
    elif settings.draft_batch_size > 1:
        pool, slots = "threads", settings.draft_batch_size
    else:
        pool, slots = "solo", 1
    return [
        "worker",
        "--loglevel",
        settings.log_level,
        "--concurrency",
        str(slots),
        "--queues",
        ",".join(queues or [STAT_QUEUE, ROUTINE_QUEUE]),
        "--pool",
        pool,
        "--without-gossip",
        "--without-mingle",
    ]


def run_worker(settings: Settings, *, concurrency: int = 1, queues: list[str] | None = None) -> Any:
    if not settings.celery_broker_url:
        raise ValueError("RADSCRIBE_CELERY_BROKER_URL is not set")
    app = make_celery(settings.celery_broker_url)
    return app.worker_main(worker_argv(settings, concurrency=concurrency, queues=queues))
