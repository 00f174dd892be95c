"""The audit trail (admins) and the turnaround and agreement page (everyone)."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.services import audit
from app.services.audit_query import AuditFilter, query_audit
from app.services.turnaround import agreement, turnaround_by_day
from app.web.charts import turnaround_chart
from app.web.deps import AdminDep, ClientDep, DbDep, NowDep, SettingsDep, UserDep
from app.web.routers.worklist import page_context
from app.web.templating import render

router = APIRouter(include_in_schema=False)
STATS_DAYS = 30


def audit_filter(
    actor: str = "",
    action: str = "",
    study_id: int | None = None,
    since: date | None = None,
    until: date | None = None,
    page: int = 1,
) -> AuditFilter:
    return AuditFilter(
        actor=actor.strip(),
        action=action.strip(),
        study_id=study_id,
        since=since,
        until=until,
        page=max(1, page),
    )


@router.get("/admin/audit")
def audit_page(
    request: Request,
    user: AdminDep,
    db: DbDep,
    settings: SettingsDep,
    client: ClientDep,
    actor: str = "",
    action: str = "",
    study_id: int | None = None,
    since: date | None = None,
    until: date | None = None,
    page: int = 1,
) -> Response:
    flt = audit_filter(actor, action, study_id, since, until, page)
    result = query_audit(db, flt)
    audit.record(
        db,
        actor=user.username,
        action="audit.view",
        object_type="audit",
        user_id=user.id,
        client_address=client,
        detail={"actor": flt.actor, "action": flt.action, "study_id": flt.study_id},
    )
    db.commit()
    return render(
        request,
        "audit.html",
        {**page_context(request, user, settings, "audit"), "result": result},
    )


@router.get("/stats")
def stats_page(
    request: Request, user: UserDep, db: DbDep, settings: SettingsDep, now: NowDep
) -> Response:
    days = turnaround_by_day(db, now=now, days=STATS_DAYS)
    return render(
        request,
        "stats.html",
        {
            **page_context(request, user, settings, "stats"),
            "days": days,
            "chart": turnaround_chart(days),
            "agreement": agreement(db, now=now, days=STATS_DAYS),
            "period_days": STATS_DAYS,
        },
    )
