"""The ``/metrics`` endpoint of processes without a web server.

The web app serves ``/metrics`` itself; the DICOM node, the HL7 interface and the workers run
this component beside their own, on ``RADSCRIBE_METRICS_HOST:RADSCRIBE_METRICS_PORT``.  It
exposes the process's default Prometheus registry, the same one every module registers in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import CollectorRegistry

from app.core.settings import Settings

STOP_TIMEOUT_SECONDS = 5.0


@dataclass
class MetricsServer:
    """A runtime component: Prometheus exposition on a port of its own."""

    settings: Settings
    registry: CollectorRegistry = REGISTRY
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
