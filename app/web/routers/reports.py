"""Editing, signing and resolving flags from the study page (HTML forms)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from app.core.domain import FlagStatus, ReportKind
from app.core.settings import Settings
from app.core.tables import User
from app.services.report_actions import (
    ActionRefused,
    Actor,
    resolve_study_flag,
    save_report,
    sign_study,
)
from app.web.deps import ClientDep, DbDep, NowDep, SettingsDep, UserDep, verify_csrf
from app.web.routers.studies import get_study, study_page

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])
SECTION_PREFIX = "section__"


async def editor_texts(request: Request) -> dict[str, str]:
    """The editor's text boxes (form fields ``section__<key>``)."""
    form = await request.form()
    return {
        key.removeprefix(SECTION_PREFIX): value
        for key, value in form.multi_items()
        if key.startswith(SECTION_PREFIX) and isinstance(value, str)
    }


TextsDep = Annotated[dict[str, str], Depends(editor_texts)]


def refused(
    request: Request,
    db: Session,
    *,
    study_id: int,
    actor: Actor,
    settings: Settings,
    message: str,
) -> Response:
    db.rollback()
    return study_page(
        request,
        db=db,
        study=get_study(db, study_id),
        user=actor.user,
        settings=settings,
        now=actor.now,
        client=actor.client_address,
        error=message,
        status_code=409,
    )


def _actor(user: User, now: NowDep, client: ClientDep) -> Actor:
    return Actor(user=user, now=now, client_address=client)


@router.post("/studies/{study_id}/report")
def save(
    request: Request,
    study_id: int,
    texts: TextsDep,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
) -> Response:
    actor = _actor(user, now, client)
    try:
        save_report(db, study=get_study(db, study_id), actor=actor, texts=texts, settings=settings)
    except ActionRefused as exc:
        return refused(
            request, db, study_id=study_id, actor=actor, settings=settings, message=str(exc)
        )
    db.commit()
    return RedirectResponse(f"/studies/{study_id}?done=saved", status_code=303)


@router.post("/studies/{study_id}/sign")
def sign(
    request: Request,
    study_id: int,
    texts: TextsDep,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
    kind: Annotated[ReportKind, Form()],
    addendum: Annotated[str, Form(max_length=20_000)] = "",
    cosign: Annotated[str, Form()] = "",
) -> Response:
    actor = _actor(user, now, client)
    study = get_study(db, study_id)
    try:
        if kind is not ReportKind.ADDENDUM:
            # The reader's text is kept even when signing is then refused.
            save_report(db, study=study, actor=actor, texts=texts, settings=settings)
            db.commit()
        sign_study(
            db,
            study=study,
            actor=actor,
            kind=kind,
            settings=settings,
            texts=texts,
            addendum=addendum,
            cosign=cosign == "1",
        )
    except ActionRefused as exc:
        return refused(
            request, db, study_id=study_id, actor=actor, settings=settings, message=str(exc)
        )
    db.commit()
    return RedirectResponse(f"/studies/{study_id}?done=signed", status_code=303)


@router.post("/studies/{study_id}/flags/{flag_id}")
def flag(
    request: Request,
    study_id: int,
    flag_id: int,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
    resolution: Annotated[FlagStatus, Form()],
) -> Response:
    actor = _actor(user, now, client)
    try:
        resolve_study_flag(
            db, study=get_study(db, study_id), actor=actor, flag_id=flag_id, resolution=resolution
        )
    except ActionRefused as exc:
        return refused(
            request, db, study_id=study_id, actor=actor, settings=settings, message=str(exc)
        )
    db.commit()
    return RedirectResponse(f"/studies/{study_id}?done=flag", status_code=303)
