"""The embedded system assembled: every component wired to its dependencies.

This is the composition root of ``radscribe serve`` and ``radscribe demo``:
the web app, the DICOM node (whose ready events link studies to orders and
request drafts), the HL7 listener and sender, and drafting on in-process
workers or, with ``RADSCRIBE_CELERY_BROKER_URL``, on Celery workers.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.settings import Settings
from app.core.tables import Study
from app.emr.runtime import Hl7Component
from app.services import drafting, linking
from app.services.adaptive_drafting import drafter_for
from app.services.batching import ModelBatcher
from app.services.celery_app import dispatcher_for
from app.services.dicom_runtime import build_node
from app.services.drafting import DraftingServices
from app.services.pipeline_metrics import TRANSCRIPTION_RTF
from app.services.runtime import Component, Runtime, WebComponent, open_database
from app.services.workers import PeriodicDuty, WorkerPool
from app.speech.transcriber import Transcriber
from dicom_node.series import SeriesReadyEvent


def _on_series_ready(factory: sessionmaker[Session]) -> Callable[[SeriesReadyEvent], None]:
    """When a series is ready: link its study to its order, then ask for a draft."""

    def handle(event: SeriesReadyEvent) -> None:
        with factory() as session, session.begin():
            study = session.scalar(
                select(Study).where(Study.study_instance_uid == event.study_instance_uid)
            )
            if study is None:
                return
            linking.link_study(session, study)
            study_id = study.id
        drafting.request_drafts(factory, [study_id])

    return handle


def drafting_services(settings: Settings, factory: sessionmaker[Session]) -> DraftingServices:
    """The drafting job's dependencies, each loaded once per process on first use."""

    @functools.cache
    def transcriber() -> Transcriber:
        from app.services.dictation import make_transcriber

        return make_transcriber(settings)

    def transcribe(dictation_id: int) -> None:
        from app.services.dictation import transcribe_dictation

        model = transcriber()
        started = time.perf_counter()
        result = transcribe_dictation(
            factory, dictation_id=dictation_id, transcriber=model, data_dir=settings.data_dir
        )
        if result.transcript is not None and result.transcript.duration > 0:
            seconds = time.perf_counter() - started
            TRANSCRIPTION_RTF.observe(seconds / result.transcript.duration)

    return DraftingServices(
        settings=settings,
        session_factory=factory,
        drafter=drafter_for(settings),
        transcribe=transcribe,
        load_transcriber=transcriber,
        batcher=ModelBatcher(
            max_studies=settings.draft_batch_size, window_s=settings.draft_batch_window_ms / 1000
        )
        if settings.draft_batch_size > 1
        else None,
    )


def build_runtime(
    settings: Settings,
    *,
    only: Sequence[str] | None = None,
    metrics_registry: CollectorRegistry | None = None,
) -> Runtime:
    """Migrate the database and assemble every component of the embedded system.

    Pass ``metrics_registry=prometheus_client.REGISTRY`` in a process that serves
    ``/metrics`` (one runtime per process); tests leave it out.
    """
    engine, factory = open_database(settings)
    services = drafting_services(settings, factory)
    candidates: list[Component] = [
        WebComponent(settings, factory),
        build_node(
            settings, factory, on_ready=_on_series_ready(factory), registry=metrics_registry
        ),
        Hl7Component(settings, factory),
    ]
    celery = dispatcher_for(settings)
    if celery is None:  # embedded: jobs run on in-process workers
        pool = WorkerPool(
            factory,
            lambda claimed: drafting.run_draft_job(services, claimed),
            threads=settings.draft_batch_size,
            warm_up=services.warm_up,
        )

        def request_and_wake() -> None:
            if drafting.request_drafts(factory):
                pool.wake()

        def transcribe_uploads() -> None:
            # Dictations are transcribed as they arrive, so drafting rarely waits for Whisper.
            drafting.transcribe_pending(services)

        candidates += [
            pool,
            PeriodicDuty(factory, "draft-requests", request_and_wake, interval_seconds=1.0),
            PeriodicDuty(
                factory, "dictation-transcription", transcribe_uploads, interval_seconds=1.0
            ),
        ]
    else:  # scale-out: jobs go to Celery workers (`radscribe worker`)
        dispatcher = celery

        def request_and_dispatch() -> None:
            for job_id, priority in drafting.request_drafts(factory):
                dispatcher.dispatch(job_id, priority)
            dispatcher.redispatch_stale(factory)

        candidates.append(
            PeriodicDuty(factory, "draft-requests", request_and_dispatch, interval_seconds=1.0)
        )
    components = [c for c in candidates if only is None or c.name in only]
    return Runtime(settings=settings, engine=engine, session_factory=factory, components=components)
