"""The FastAPI application factory.

Dependencies (settings, session factory) are attached to ``app.state`` by the
factory, never built at import time, so tests and processes each pass their own.
"""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.core.settings import Settings
from app.core.version import package_version
from app.services.queue_metrics import report_queues
from app.web.metrics import install_http_metrics


def create_app(settings: Settings, session_factory: sessionmaker[Session]) -> FastAPI:
    app = FastAPI(title="Radscribe", version=package_version())
    app.state.settings = settings
    app.state.session_factory = session_factory
    install_http_metrics(app)
    report_queues(session_factory)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        try:
            with session_factory() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:  # the probe reports, never raises
            return Response(f"database unavailable: {type(exc).__name__}", status_code=503)
        return Response("ok", media_type="text/plain")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
