"""The web app built from the environment, for uvicorn's worker processes.

``radscribe web --workers N`` starts N processes; each calls
:func:`app_from_environment` to build its own settings, engine and app.
"""

from __future__ import annotations

from fastapi import FastAPI

from app.core.db import make_engine, make_session_factory
from app.core.logging import configure_logging
from app.core.settings import load_settings
from app.web.app import create_app


def app_from_environment() -> FastAPI:
    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    engine = make_engine(settings.effective_database_url)
    return create_app(settings, make_session_factory(engine))
