"""Claiming a study for one reader, with an expiry.

A claim is one guarded UPDATE: it succeeds only when the study is unclaimed,
its claim has expired, or the reader already holds it.  Of two concurrent
claims the database lets exactly one through.  Claiming a study whose draft
is ready moves it to "in review".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session

from app.core.db import updated_rows
from app.core.domain import Role, StudyStatus
from app.core.tables import Study, StudyStatusChange, User
from app.services import audit
from app.services.outbox import as_utc

CLAIMING_ROLES = frozenset({Role.RADIOLOGIST, Role.RESIDENT})


class ClaimError(ValueError):
    """The study cannot be claimed or edited by this user; the message says why."""


@dataclass(frozen=True)
class Holder:
    user_id: int
    name: str
    expires_at: datetime


def holder(session: Session, study: Study, *, now: datetime) -> Holder | None:
    """Who holds the study now (None when unclaimed or expired)."""
    if study.claimed_by_id is None or study.claim_expires_at is None:
        return None
    expires = as_utc(study.claim_expires_at)
    if expires <= now:
        return None
    user = session.get(User, study.claimed_by_id)
    name = user.display_name or user.username if user else f"user {study.claimed_by_id}"
    return Holder(user_id=study.claimed_by_id, name=name, expires_at=expires)


def claim(
    session: Session,
    *,
    study_id: int,
    user: User,
    now: datetime,
    minutes: float,
    client_address: str | None = None,
) -> Holder:
    """Claim (or extend the claim on) a study; :class:`ClaimError` names the holder."""
    if user.role not in CLAIMING_ROLES or not user.active:
        raise ClaimError("only radiologists and residents claim studies")
    expires = now + timedelta(minutes=minutes)
    won = updated_rows(
        session.execute(
            update(Study)
            .where(
                Study.id == study_id,
                or_(
                    Study.claimed_by_id.is_(None),
                    Study.claimed_by_id == user.id,
                    Study.claim_expires_at.is_(None),
                    Study.claim_expires_at <= now,
                ),
            )
            .values(claimed_by_id=user.id, claim_expires_at=expires)
            .execution_options(synchronize_session=False)
        )
    )
    study = session.get(Study, study_id, populate_existing=True)
    if study is None:
        raise ClaimError(f"no study {study_id}")
    if not won:
        current = holder(session, study, now=now)
        who = current.name if current else "another reader"
        raise ClaimError(f"{who} is reading this study")
    if study.status is StudyStatus.DRAFT_READY:
        session.add(
            StudyStatusChange(
                study_id=study.id,
                from_status=study.status,
                to_status=StudyStatus.IN_REVIEW,
                at=now,
                user_id=user.id,
            )
        )
        study.status = StudyStatus.IN_REVIEW
    audit.record(
        session,
        actor=user.username,
        action="study.claim",
        object_type="study",
        object_id=study.id,
        user_id=user.id,
        study_id=study.id,
        client_address=client_address,
        detail={"expires_at": expires.isoformat()},
    )
    return Holder(user_id=user.id, name=user.display_name or user.username, expires_at=expires)


def release(
    session: Session,
    *,
    study_id: int,
    user: User,
    client_address: str | None = None,
) -> bool:
    """Give up one's own claim; False when the user did not hold it."""
    released = updated_rows(
        session.execute(
            update(Study)
            .where(and_(Study.id == study_id, Study.claimed_by_id == user.id))
            .values(claimed_by_id=None, claim_expires_at=None)
            .execution_options(synchronize_session=False)
        )
    )
    if released:
        audit.record(
            session,
            actor=user.username,
            action="study.release",
            object_type="study",
            object_id=study_id,
            user_id=user.id,
            study_id=study_id,
            client_address=client_address,
        )
    return bool(released)


def require_claim(session: Session, study: Study, *, user: User, now: datetime) -> None:
    """Editing needs the user's own, unexpired claim."""
    current = holder(session, study, now=now)
    if current is None:
        raise ClaimError("open the study for reporting (claim it) before editing")
    if current.user_id != user.id:
        raise ClaimError(f"{current.name} is reading this study; it cannot be edited")
