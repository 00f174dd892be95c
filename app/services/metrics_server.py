"""The ``/metrics`` endpoint of processes without a web server.

The web app serves ``/metrics`` itself; the DICOM node, the HL7 interface and the workers run
this component beside their own, on ``RADSCRIBE_METRICS_HOST:RADSCRIBE_METRICS_PORT``.  It
exposes the process's default Prometheus registry, the same one every module registers in.

A Celery worker with several processes (prefork) runs prometheus_client's multiprocess mode:
with ``PROMETHEUS_MULTIPROC_DIR`` set before the first metric exists, every process writes its
metrics to files there, and the endpoint (in the parent) serves them all, summed.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, multiprocess, start_http_server
from prometheus_client.registry import CollectorRegistry

from app.core.settings import Settings

STOP_TIMEOUT_SECONDS = 5.0
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    """The folder of multiprocess mode, where this process runs in it."""
    folder = os.environ.get(MULTIPROCESS_DIR_ENV)
    return Path(folder) if folder else None


def process_registry() -> CollectorRegistry:
    """What this process's endpoint serves: every process's files in multiprocess mode."""
    if multiprocess_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def discard_other_processes_files(folder: Path) -> int:
    """Remove metric files of other processes (an earlier run's): call before forking."""
    mine = f"_{os.getpid()}.db"
    stale = [f for f in folder.glob("*.db") if not f.name.endswith(mine)]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def forget_process(pid: int) -> None:
    """A process of a multiprocess worker ended: drop its live gauges."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


@dataclass
class MetricsServer:
    """A runtime component: Prometheus exposition on a port of its own."""

    settings: Settings
    registry: CollectorRegistry = field(default_factory=process_registry)
    name: str = "metrics"
    _server: WSGIServer | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def start(self) -> None:
        host, port = self.settings.metrics_host, self.settings.metrics_port
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            message = f"metrics endpoint could not listen on {host}:{port}: {exc}"
            raise RuntimeError(message) from exc

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
        self._server = self._thread = None

    def describe(self) -> str:
        return f"metrics  http://{self.settings.metrics_host}:{self.settings.metrics_port}/metrics"
