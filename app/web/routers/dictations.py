"""Dictations of a study: the list (uploads arrive through the dictation service)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.core.tables import Dictation
from app.services.outbox import as_utc
from app.web.deps import DbDep, UserDep
from app.web.routers.studies import get_study
from app.web.schemas import DictationPublic

router = APIRouter(tags=["api"])


@router.get("/api/studies/{study_id}/dictations", response_model=list[DictationPublic])
def list_dictations(study_id: int, user: UserDep, db: DbDep) -> list[DictationPublic]:
    get_study(db, study_id)
    return [
        DictationPublic(
            id=d.id,
            status=d.status.value,
            created_at=as_utc(d.created_at),
            duration_seconds=d.duration_seconds,
            transcript_text=d.transcript_text,
            sections=d.sections,
            error=d.error,
        )
        for d in db.scalars(
            select(Dictation).where(Dictation.study_id == study_id).order_by(Dictation.id.desc())
        )
    ]
