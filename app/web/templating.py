"""Jinja2 page templates (``templates/pages``) and the helpers they use."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from app.core.domain import StudyStatus
from app.core.paths import templates_dir
from app.services.worklist import STATUS_LABELS
from app.web.sessions import CSRF_FIELD, CSRF_HEADER

MINUTE = 60
HOUR = 3600
DAY = 86400


def elapsed(moment: datetime | None, now: datetime | None = None) -> str:
    """A short "time since" (``45 min``, ``3 h 10 min``, ``2 d 4 h``)."""
    if moment is None:
        return "-"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    if seconds < HOUR:
        return f"{seconds // MINUTE} min"
    if seconds < DAY:
        return f"{seconds // HOUR} h {(seconds % HOUR) // MINUTE} min"
    return f"{seconds // DAY} d {(seconds % DAY) // HOUR} h"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def timestamp(moment: datetime | None) -> str:
    """``2024-05-01 13:07 UTC`` (formatted by hand: strftime costs more, fifty times a page)."""
    if moment is None:
        return "-"
    m = _utc(moment)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d} {m.hour:02d}:{m.minute:02d} UTC"


def timestamp_seconds(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    m = _utc(moment)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d} {m.hour:02d}:{m.minute:02d}:{m.second:02d}"


def person(xcn: str | None) -> str:
    """An HL7 person (``id^family^given``) as "given family"."""
    if not xcn:
        return "-"
    parts = xcn.split("^")
    if len(parts) < 2:
        return xcn
    name = " ".join(p for p in (parts[2] if len(parts) > 2 else "", parts[1]) if p)
    return name or parts[0]


def html_text(value: object) -> str:
    """Escaped for HTML text and attributes, as a plain str (cheaper than Markup)."""
    return html.escape("" if value is None else str(value), quote=True)


def status_label(status: StudyStatus | str) -> str:
    return STATUS_LABELS.get(StudyStatus(status), str(status))


def build_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(templates_dir() / "pages"))
    env = templates.env
    env.auto_reload = False  # templates ship with the code; no stat() per render
    env.filters.update(
        elapsed=elapsed,
        timestamp=timestamp,
        timestamp_seconds=timestamp_seconds,
        person=person,
        status_label=status_label,
        h=html_text,
    )
    env.globals.update(CSRF_FIELD=CSRF_FIELD, CSRF_HEADER=CSRF_HEADER)
    return templates


def render(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, context, status_code=status_code)
