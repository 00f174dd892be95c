"""Running Radscribe's components together in one process.

A component is anything with ``start()``, ``stop()`` and a line that says where
to find it.  ``app.services.assembly`` builds the list from settings for
``radscribe serve`` and ``radscribe demo``; a deployment runs them apart.
This module stays light (no ML imports) so every command starts quickly.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import uvicorn
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core import migrate
from app.core.db import make_engine, make_session_factory
from app.core.settings import Settings

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


def open_database(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    """Migrate the database to the newest schema and open it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    return engine, make_session_factory(engine)


def build_web_runtime(settings: Settings) -> Runtime:
    """Only the web app (``radscribe web``), for deployments that run the rest apart."""
    engine, factory = open_database(settings)
    return Runtime(
        settings=settings,
        engine=engine,
        session_factory=factory,
        components=[WebComponent(settings, factory)],
    )
