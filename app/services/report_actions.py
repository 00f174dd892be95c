"""What a reader does to a claimed study: save, sign (or co-sign), resolve a flag.

Each checks the reader's claim first, then calls the one service that does
the work (signing only through :func:`app.services.signing.sign_report`).
The caller commits.  Refusals raise :class:`ActionRefused` with a message for
the reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.core.domain import FlagStatus, ReportKind, Role
from app.core.settings import Settings
from app.core.tables import ReportFlag, Study, User
from app.services.claims import ClaimError, claim, release, require_claim
from app.services.flags import FlagError, resolve_flag
from app.services.report_editing import (
    EditError,
    latest_version,
    save_working_copy,
    to_signed_sections,
    versions,
)
from app.services.signing import ADDENDUM_SECTION, Signed, SigningError, sign_report


class ActionRefused(ValueError):
    """The action is not possible now; the message says why (shown to the reader)."""


@dataclass(frozen=True)
class Actor:
    user: User
    now: datetime
    client_address: str | None


def cosign_candidate(session: Session, study_id: int, user: User) -> User | None:
    """The resident whose preliminary an attending (``user``) may co-sign as final."""
    if user.role is not Role.RADIOLOGIST:
        return None
    signed = [v for v in versions(session, study_id) if v.kind is not ReportKind.DRAFT]
    if not signed or signed[-1].kind is not ReportKind.PRELIMINARY:
        return None
    if any(v.kind is ReportKind.FINAL for v in signed):
        return None
    author = session.get(User, signed[-1].signer_id) if signed[-1].signer_id else None
    return author if author is not None and author.role is Role.RESIDENT else None


def _unchanged(session: Session, study: Study, sections: list[tuple[str, str]]) -> bool:
    latest = latest_version(session, study.id)
    if latest is None or latest.ai_generated:
        return False
    return [tuple(pair) for pair in latest.structured.get("sections", [])] == sections


def save_report(
    session: Session,
    *,
    study: Study,
    actor: Actor,
    texts: Mapping[str, str],
    settings: Settings,
) -> bool:
    """Store the editor text as a working copy (False when nothing changed); extends the claim."""
    try:
        require_claim(session, study, user=actor.user, now=actor.now)
        changed = bool(texts) and not _unchanged(session, study, to_signed_sections(texts))
        if changed:
            save_working_copy(
                session,
                study=study,
                author=actor.user,
                texts=texts,
                now=actor.now,
                client_address=actor.client_address,
            )
        claim(
            session,
            study_id=study.id,
            user=actor.user,
            now=actor.now,
            minutes=settings.claim_minutes,
            client_address=actor.client_address,
        )
    except (ClaimError, EditError) as exc:
        raise ActionRefused(str(exc)) from None
    return changed


def sign_study(
    session: Session,
    *,
    study: Study,
    actor: Actor,
    kind: ReportKind,
    settings: Settings,
    texts: Mapping[str, str] | None = None,
    addendum: str = "",
    cosign: bool = False,
) -> Signed:
    """Sign the editor text (or an addendum); the claim is released after signing."""
    try:
        require_claim(session, study, user=actor.user, now=actor.now)
        signer, cosigner = actor.user, None
        if cosign:
            resident = cosign_candidate(session, study.id, actor.user)
            if resident is None:
                raise ActionRefused("there is no resident's preliminary report to co-sign")
            signer, cosigner = resident, actor.user
        if kind is ReportKind.ADDENDUM:
            sections: list[tuple[str, str]] = [(ADDENDUM_SECTION, addendum)]
        else:
            sections = to_signed_sections(texts or {})
        signed = sign_report(
            session,
            study_id=study.id,
            signer=signer,
            cosigner=cosigner,
            kind=kind,
            settings=settings,
            sections=sections,
            client_address=actor.client_address,
            now=actor.now,
        )
        release(session, study_id=study.id, user=actor.user, client_address=actor.client_address)
    except (ClaimError, EditError, SigningError) as exc:
        raise ActionRefused(str(exc)) from None
    return signed


def resolve_study_flag(
    session: Session,
    *,
    study: Study,
    actor: Actor,
    flag_id: int,
    resolution: FlagStatus,
) -> ReportFlag:
    try:
        require_claim(session, study, user=actor.user, now=actor.now)
        return resolve_flag(
            session,
            study_id=study.id,
            flag_id=flag_id,
            user=actor.user,
            resolution=resolution,
            now=actor.now,
            client_address=actor.client_address,
        )
    except (ClaimError, FlagError) as exc:
        raise ActionRefused(str(exc)) from None


__all__ = [
    "ActionRefused",
    "Actor",
    "cosign_candidate",
    "resolve_study_flag",
    "save_report",
    "sign_study",
]
