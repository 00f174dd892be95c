"""The worklist page and its self-refreshing rows.

Filters travel in a POST body (the search may hold a patient's name, which
must never appear in a URL or an access log).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.core.domain import Priority, Role, StudyStatus
from app.core.tables import User
from app.services.worklist import (
    Claimed,
    Scope,
    Sort,
    TotalsCache,
    WorklistError,
    WorklistPage,
    WorklistQuery,
    parse_statuses,
    query_worklist,
)
from app.web.deps import (
    ClientDep,
    DbDep,
    NowDep,
    SettingsDep,
    UserDep,
    csrf_token_for,
    get_audit_writer,
    verify_csrf,
)
from app.web.sessions import BACKGROUND_HEADER
from app.web.templating import render

router = APIRouter(include_in_schema=False)
# Worklist reads run here: a plain executor hands off more cheaply than anyio's
# threadpool, and four threads (with the audit writer, five connections: the
# database pool's size) keep both the connections and the GIL contention bounded.
READERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="worklist-read")


def page_context(
    request: Request, user: User, settings: SettingsDep, active: str
) -> dict[str, Any]:
    """What every logged-in page's layout needs."""
    return {
        "user": user,
        "csrf_token": csrf_token_for(request),
        "idle_minutes": settings.session_idle_minutes,
        "active": active,
    }


def build_query(
    *,
    scope: str = Scope.OPEN.value,
    status: list[str] | None = None,
    priority: str = "",
    claimed: str = Claimed.ANY.value,
    sort: str = Sort.PRIORITY.value,
    search: str = "",
    page: int = 1,
    page_size: int | None = None,
) -> WorklistQuery:
    try:
        extra = {"page_size": page_size} if page_size is not None else {}
        return WorklistQuery(
            scope=Scope(scope),
            statuses=parse_statuses(status or []),
            priority=Priority(priority) if priority else None,
            claimed=Claimed(claimed),
            sort=Sort(sort),
            search=search.strip(),
            page=page,
            **extra,
        )
    except ValueError as exc:
        raise WorklistError(str(exc)) from None


def _read_worklist(
    db: Session, query: WorklistQuery, *, user_id: int, now: datetime, totals: TotalsCache
) -> WorklistPage:
    # Two reads need no transaction: autocommit saves the BEGIN and COMMIT round trips.
    db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    page = query_worklist(db, query, user_id=user_id, now=now, totals=totals)
    db.commit()  # hands the connection back (nothing to commit)
    return page


async def audited_worklist(
    request: Request,
    db: DbDep,
    user: User,
    query: WorklistQuery,
    *,
    now: NowDep,
    client: str | None,
) -> WorklistPage:
    """The page of the worklist, returned only once its audit event is committed.

    The query runs in a worker thread; the wait for the audit writer's shared
    commit happens on the event loop, so a slow disk holds no thread.
    """
    page = await asyncio.get_running_loop().run_in_executor(
        READERS,
        partial(
            _read_worklist,
            db,
            query,
            user_id=user.id,
            now=now,
            totals=request.app.state.worklist_totals,
        ),
    )
    await get_audit_writer(request).record_async(
        actor=user.username,
        action="worklist.view",
        object_type="worklist",
        user_id=user.id,
        client_address=client,
        detail={
            "page": query.page,
            "rows": len(page.rows),
            "searched": bool(query.search),
            "refresh": request.headers.get(BACKGROUND_HEADER) == "1",
        },
    )
    return page


@router.get("/")
def home() -> Response:
    return RedirectResponse("/worklist", status_code=303)


@router.get("/worklist")
async def worklist_page(
    request: Request,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
) -> Response:
    page = await audited_worklist(request, db, user, WorklistQuery(), now=now, client=client)
    return render(
        request,
        "worklist.html",
        {
            **page_context(request, user, settings, "worklist"),
            "page": page,
            "now": now,
            "statuses": list(StudyStatus),
            "refresh_seconds": settings.worklist_refresh_seconds,
            "can_claim": user.role in (Role.RADIOLOGIST, Role.RESIDENT),
        },
    )


@router.post("/worklist/rows", dependencies=[Depends(verify_csrf)])
async def worklist_rows(
    request: Request,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
    scope: Annotated[str, Form()] = Scope.OPEN.value,
    status: Annotated[list[str] | None, Form()] = None,
    priority: Annotated[str, Form()] = "",
    claimed: Annotated[str, Form()] = Claimed.ANY.value,
    sort: Annotated[str, Form()] = Sort.PRIORITY.value,
    search: Annotated[str, Form(max_length=256)] = "",
    page: Annotated[int, Form(ge=1, le=100_000)] = 1,
) -> Response:
    error = None
    try:
        query = build_query(
            scope=scope,
            status=status,
            priority=priority,
            claimed=claimed,
            sort=sort,
            search=search,
            page=page,
        )
    except WorklistError as exc:
        error, query = str(exc), WorklistQuery()
    result = await audited_worklist(request, db, user, query, now=now, client=client)
    return render(
        request,
        "worklist_rows.html",
        {
            **page_context(request, user, settings, "worklist"),
            "page": result,
            "now": now,
            "error": error,
            "can_claim": user.role in (Role.RADIOLOGIST, Role.RESIDENT),
        },
    )
