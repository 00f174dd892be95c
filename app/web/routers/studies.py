"""The study page, claiming and releasing a study, and its slices as PNG."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.core.domain import ReportKind, Role
from app.core.tables import Study, User
from app.services import audit
from app.services.claims import ClaimError, claim, release
from app.services.slices import SliceCache, SliceError, WindowPreset, render_slice, study_slices
from app.web.deps import ClientDep, DbDep, NowDep, SettingsDep, UserDep, verify_csrf
from app.web.routers.worklist import page_context
from app.web.study_view import build_study_view
from app.web.templating import render

router = APIRouter(include_in_schema=False)
SLICE_CACHE_SECONDS = 600


def get_study(db: DbDep, study_id: int) -> Study:
    study = db.get(Study, study_id)
    if study is None:
        raise HTTPException(status_code=404, detail=f"no study {study_id}")
    return study


def study_page(
    request: Request,
    *,
    db: DbDep,
    study: Study,
    user: User,
    settings: SettingsDep,
    now: NowDep,
    client: str | None,
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    view = build_study_view(db, study, user=user, settings=settings, now=now)
    audit.record_study_view(db, user=user, study_id=study.id, client_address=client)
    db.commit()
    context: dict[str, Any] = {
        **page_context(request, user, settings, "worklist"),
        "view": view,
        "now": now,
        "error": error,
        "notice": notice,
        "windows": list(WindowPreset),
        "is_reader": user.role in (Role.RADIOLOGIST, Role.RESIDENT),
        "kinds": ReportKind,
    }
    return render(request, "study.html", context, status_code=status_code)


NOTICES = {
    "saved": "Working copy saved.",
    "signed": "Report signed.",
    "flag": "Flag resolved.",
    "dictation": "Dictation stored; it is transcribed in the background.",
    "released": "Study released.",
}


@router.get("/studies/{study_id}")
def show_study(
    request: Request,
    study_id: int,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
    done: str | None = None,
) -> Response:
    study = get_study(db, study_id)
    return study_page(
        request,
        db=db,
        study=study,
        user=user,
        settings=settings,
        now=now,
        client=client,
        notice=NOTICES.get(done or ""),
    )


@router.post("/studies/{study_id}/claim", dependencies=[Depends(verify_csrf)])
def claim_study(
    request: Request,
    study_id: int,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
) -> Response:
    study = get_study(db, study_id)
    try:
        claim(
            db,
            study_id=study.id,
            user=user,
            now=now,
            minutes=settings.claim_minutes,
            client_address=client,
        )
    except ClaimError as exc:
        db.rollback()
        return study_page(
            request,
            db=db,
            study=get_study(db, study_id),
            user=user,
            settings=settings,
            now=now,
            client=client,
            error=str(exc),
            status_code=409,
        )
    db.commit()
    return RedirectResponse(f"/studies/{study_id}", status_code=303)


@router.post("/studies/{study_id}/release", dependencies=[Depends(verify_csrf)])
def release_study(study_id: int, user: UserDep, db: DbDep, client: ClientDep) -> Response:
    release(db, study_id=study_id, user=user, client_address=client)
    db.commit()
    return RedirectResponse("/worklist", status_code=303)


@router.get("/studies/{study_id}/slices/{index}.png")
def slice_png(
    request: Request,
    study_id: int,
    index: int,
    db: DbDep,
    settings: SettingsDep,
    window: WindowPreset = WindowPreset.LUNG,
) -> Response:
    """One slice, windowed; images are covered by the study's view audit event."""
    slices = study_slices(db, study_id)
    if slices is None or not 0 <= index < len(slices.slices):
        raise HTTPException(status_code=404, detail="no such slice")
    cache: SliceCache = request.app.state.slice_cache
    try:
        png = render_slice(
            slices.slices[index], window, storage_dir=settings.dicom_storage_dir, cache=cache
        )
    except SliceError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    return Response(
        png,
        media_type="image/png",
        headers={"Cache-Control": f"private, max-age={SLICE_CACHE_SECONDS}"},
    )
