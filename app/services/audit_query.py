"""Reading the audit trail back: filtered, newest first, in pages (for the admin page)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.tables import AuditEvent

AUDIT_PAGE_SIZE = 100


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    action: str = ""
    study_id: int | None = None
    since: date | None = None
    until: date | None = None
    page: int = 1


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    total: int
    filter: AuditFilter
    actions: list[str]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // AUDIT_PAGE_SIZE))


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def query_audit(session: Session, flt: AuditFilter) -> AuditPage:
    conditions = []
    if flt.actor:
        conditions.append(AuditEvent.actor == flt.actor)
    if flt.action:
        conditions.append(AuditEvent.action == flt.action)
    if flt.study_id is not None:
        conditions.append(AuditEvent.study_id == flt.study_id)
    if flt.since:
        conditions.append(AuditEvent.at >= _day_start(flt.since))
    if flt.until:
        conditions.append(AuditEvent.at < _day_start(flt.until + timedelta(days=1)))
    events = list(
        session.scalars(
            select(AuditEvent)
            .where(*conditions)
            .order_by(AuditEvent.id.desc())
            .limit(AUDIT_PAGE_SIZE)
            .offset((max(1, flt.page) - 1) * AUDIT_PAGE_SIZE)
        )
    )
    total = session.scalar(select(func.count()).select_from(AuditEvent).where(*conditions))
    actions = list(
        session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action))
    )
    return AuditPage(events=events, total=int(total or 0), filter=flt, actions=actions)
