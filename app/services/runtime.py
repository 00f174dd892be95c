"""Running Radscribe's components together in one process.

A component is anything with ``start()``, ``stop()`` and a line that says where
to find it.  ``radscribe serve`` and ``radscribe demo`` build the list from
settings and run them side by side; a deployment runs them apart.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import uvicorn
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from app.core import migrate
from app.core.db import make_engine, make_session_factory
from app.core.settings import Settings
from app.core.tables import Study
from app.emr.runtime import Hl7Component
from app.services import drafting, linking
from app.services.celery_app import dispatcher_for
from app.services.dicom_runtime import build_node
from app.services.drafting import DraftingServices
from app.services.model_loading import get_drafter
from app.services.pipeline_metrics import TRANSCRIPTION_RTF
from app.services.workers import PeriodicDuty, WorkerPool
from app.speech.transcriber import Transcriber
from dicom_node.series import SeriesReadyEvent

log = logging.getLogger(__name__)


class Component(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def describe(self) -> str: ...


@dataclass
class WebComponent:
    """The FastAPI app under uvicorn on a background thread."""

    settings: Settings
    session_factory: sessionmaker[Session]
    name: str = "web"
    _server: uvicorn.Server | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        from app.web.app import create_app

        config = uvicorn.Config(
            create_app(self.settings, self.session_factory),
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_level="warning",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"web server did not start on {self.settings.http_host}:"
                    f"{self.settings.http_port}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def describe(self) -> str:
        url = f"http://{self.settings.http_host}:{self.settings.http_port}"
        return f"web      {url}/  (health: {url}/healthz, metrics: {url}/metrics)"


@dataclass
class Runtime:
    """The database plus every component, started in order and stopped in reverse."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    components: list[Component] = field(default_factory=list)
    _started: list[Component] = field(default_factory=list, init=False)

    def start(self) -> None:
        for component in self.components:
            log.info("starting %s", component.name)
            component.start()
            self._started.append(component)

    def stop(self) -> None:
        while self._started:
            component = self._started.pop()
            try:
                component.stop()
            except Exception:
                log.exception("stopping %s failed", component.name)
        self.engine.dispose()

    def describe(self) -> list[str]:
        return [component.describe() for component in self.components]


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
        drafter=lambda: get_drafter(settings),
        transcribe=transcribe,
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
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    factory = make_session_factory(engine)
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
            factory, lambda claimed: drafting.run_draft_job(services, claimed), threads=1
        )

        def request_and_wake() -> None:
            if drafting.request_drafts(factory):
                pool.wake()

        candidates += [
            pool,
            PeriodicDuty(factory, "draft-requests", request_and_wake, interval_seconds=1.0),
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
