"""What Prometheus scrapes: the web app's HTTP metrics and the metrics port of other processes."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.core.db import make_engine, make_session_factory
from app.core.settings import Settings, load_settings
from app.services.metrics_server import MetricsServer
from app.web.app import create_app
from tests.conftest import free_port


@pytest.fixture
def web_app(settings: Settings) -> Iterator[FastAPI]:
    engine = make_engine(settings.effective_database_url)
    app = create_app(settings, make_session_factory(engine))

    @app.get("/test-only/explode/{item_id}")
    def explode(item_id: int) -> None:
        raise RuntimeError(f"boom {item_id}")

    yield app
    engine.dispose()


def requests_seen(route: str, status: str, method: str = "GET") -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("radscribe_http_requests_total", labels) or 0.0


def seconds_observed(route: str) -> float:
    labels = {"method": "GET", "route": route}
    return REGISTRY.get_sample_value("radscribe_http_request_duration_seconds_count", labels) or 0


def test_web_requests_are_counted_by_route_template_and_status(web_app: FastAPI) -> None:
    before = {
        "ok": requests_seen("/healthz", "200"),
        "missing": requests_seen("unmatched", "404"),
        "error": requests_seen("/test-only/explode/{item_id}", "500"),
        "timed": seconds_observed("/healthz"),
    }
    with TestClient(web_app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/no/such/page").status_code == 404
        assert client.get("/test-only/explode/7").status_code == 500
        exposition = client.get("/metrics").text
    assert requests_seen("/healthz", "200") == before["ok"] + 1
    assert requests_seen("unmatched", "404") == before["missing"] + 1
    assert requests_seen("/test-only/explode/{item_id}", "500") == before["error"] + 1
    assert seconds_observed("/healthz") == before["timed"] + 1
    assert 'route="/healthz"' in exposition
    assert "/test-only/explode/7" not in exposition, "raw paths never become labels"


def test_processes_without_a_web_server_serve_metrics_on_their_port() -> None:
    settings = load_settings(env="development", metrics_host="127.0.0.1", metrics_port=free_port())
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    server = MetricsServer(settings)
    server.start()
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
        assert response.status == 200
        assert "# TYPE radscribe_http_requests_total counter" in body, "the process registry"
        assert str(settings.metrics_port) in server.describe()
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_a_taken_metrics_port_is_a_clear_error() -> None:
    settings = load_settings(env="development", metrics_port=free_port())
    first = MetricsServer(settings)
    first.start()
    try:
        with pytest.raises(RuntimeError, match=f"could not listen on .*:{settings.metrics_port}"):
            MetricsServer(settings).start()
    finally:
        first.stop()
