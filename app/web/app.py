"""The FastAPI application factory.

Dependencies (settings, session factory) are attached to ``app.state`` by the
factory, never built at import time, so tests and processes each pass their own.

Every route except ``/healthz``, ``/metrics`` (no patient data; scraped by
Prometheus), the login page and the static files needs a logged-in session;
the routers carry that dependency, and the OpenAPI document and its page are
served behind it too.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from swagger_ui_bundle import swagger_ui_path

from app.core.settings import Settings
from app.core.version import package_version
from app.services.audit import AuditWriter
from app.services.oidc import ProviderCache
from app.services.queue_metrics import report_queues
from app.services.slices import SliceCache
from app.services.worklist import TotalsCache
from app.web.deps import current_user
from app.web.errors import install_error_handlers
from app.web.metrics import install_http_metrics
from app.web.routers import (
    admin,
    api,
    auth,
    dictations,
    reconciliation,
    reports,
    studies,
    worklist,
)
from app.web.sessions import SessionCache, SessionCodec, SessionCookieMiddleware
from app.web.templating import build_templates

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Swagger UI's own files, from the swagger-ui-bundle-v2 package: /docs needs no CDN.
DOCS_ASSETS = "/docs/assets"


def create_app(settings: Settings, session_factory: sessionmaker[Session]) -> FastAPI:
    app = FastAPI(
        title="Radscribe",
        version=package_version(),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        description="The radiologist's worklist, study view and report editor as JSON. "
        "Every call needs a logged-in session (cookie); unsafe methods also need the "
        "X-CSRF-Token header.",
    )
    app.state.settings = settings
    app.state.session_factory = session_factory
    app.state.session_codec = SessionCodec(settings.effective_secret_key)
    app.state.session_cache = SessionCache()
    app.state.audit_writer = AuditWriter(session_factory)
    app.state.worklist_totals = TotalsCache()
    app.state.templates = build_templates()
    app.state.slice_cache = SliceCache()
    app.state.oidc_providers = ProviderCache()
    install_http_metrics(app)
    report_queues(session_factory)
    app.add_middleware(
        SessionCookieMiddleware,
        codec=app.state.session_codec,
        max_age_seconds=int(settings.session_max_hours * 3600),
        secure_policy=settings.cookie_secure,
    )
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

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

    app.include_router(auth.router)
    protected = [Depends(current_user)]
    for module in (worklist, studies, reports, dictations, admin, reconciliation):
        app.include_router(module.router, dependencies=protected)
    app.include_router(api.router, prefix="/api", dependencies=protected)
    app.include_router(reconciliation.api_router, prefix="/api", dependencies=protected)

    @app.get("/openapi.json", include_in_schema=False, dependencies=protected)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=protected)
    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Radscribe API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )

    return app
