"""Dictations of a study: upload (a file, or a browser recording) and list.

The upload is stored durably by the dictation service; transcription runs in
a worker, never in the request, and the study page shows the transcript
placed into the report's sections when it is done.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from app.core.tables import Dictation, Study, User
from app.services.claims import ClaimError, require_claim
from app.services.dictation import DictationError, store_dictation
from app.services.outbox import as_utc
from app.speech.audio import AudioError
from app.web.deps import ClientDep, DbDep, NowDep, SettingsDep, UserDep, verify_csrf
from app.web.routers.studies import get_study, study_page
from app.web.schemas import DictationPublic

router = APIRouter(tags=["api"], dependencies=[Depends(verify_csrf)])
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
AudioUpload = Annotated[UploadFile, File(description="the recording (wav, webm, ogg, mp3, m4a)")]


class UploadRefused(ValueError):
    """The upload was not stored; the message says why, ``status`` how the API answers."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _public(d: Dictation) -> DictationPublic:
    return DictationPublic(
        id=d.id,
        status=d.status.value,
        created_at=as_utc(d.created_at),
        duration_seconds=d.duration_seconds,
        transcript_text=d.transcript_text,
        sections=d.sections,
        error=d.error,
    )


def _store(
    request: Request,
    *,
    db: DbDep,
    study: Study,
    user: User,
    settings: SettingsDep,
    now: NowDep,
    audio: UploadFile,
) -> int:
    try:
        require_claim(db, study, user=user, now=now)
    except ClaimError as exc:
        raise UploadRefused(str(exc), status=409) from None
    db.rollback()  # the service writes in its own transaction
    data = audio.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadRefused(f"a dictation is at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    try:
        stored = store_dictation(
            request.app.state.session_factory,
            data_dir=settings.data_dir,
            study_id=study.id,
            audio=data,
            author_id=user.id,
            actor=user.username,
        )
    except (AudioError, DictationError) as exc:
        raise UploadRefused(str(exc)) from None
    return stored.id


@router.post("/studies/{study_id}/dictations", include_in_schema=False)
def upload_form(
    request: Request,
    study_id: int,
    audio: AudioUpload,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
) -> Response:
    study = get_study(db, study_id)
    try:
        _store(request, db=db, study=study, user=user, settings=settings, now=now, audio=audio)
    except UploadRefused as exc:
        return study_page(
            request,
            db=db,
            study=get_study(db, study_id),
            user=user,
            settings=settings,
            now=now,
            client=client,
            error=f"Dictation not stored: {exc}",
            status_code=422,
        )
    return RedirectResponse(f"/studies/{study_id}?done=dictation", status_code=303)


@router.post("/api/studies/{study_id}/dictations", response_model=DictationPublic, status_code=201)
def upload(
    request: Request,
    study_id: int,
    audio: AudioUpload,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
) -> DictationPublic:
    """Store a recording for the study the caller holds; it is transcribed in the background."""
    study = get_study(db, study_id)
    try:
        dictation_id = _store(
            request, db=db, study=study, user=user, settings=settings, now=now, audio=audio
        )
    except UploadRefused as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    return _public(db.get_one(Dictation, dictation_id))


@router.get("/api/studies/{study_id}/dictations", response_model=list[DictationPublic])
def list_dictations(study_id: int, user: UserDep, db: DbDep) -> list[DictationPublic]:
    get_study(db, study_id)
    return [
        _public(d)
        for d in db.scalars(
            select(Dictation).where(Dictation.study_id == study_id).order_by(Dictation.id.desc())
        )
    ]
