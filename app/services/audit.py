"""Audit trail: every access to patient data and every change of state is recorded.

Events are written in the caller's transaction, so an action and its audit
entry commit or roll back together.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.core.tables import AuditEvent, User

SYSTEM_ACTOR = "system"


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int | None = None,
    user_id: int | None = None,
    study_id: int | None = None,
    client_address: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        user_id=user_id,
        study_id=study_id,
        client_address=client_address,
        detail=detail,
    )
    session.add(event)
    return event


def record_study_view(
    session: Session,
    *,
    user: User,
    study_id: int,
    client_address: str | None,
    via: str | None = None,
) -> AuditEvent:
    """A user looked at a study's patient data (page or API)."""
    return record(
        session,
        actor=user.username,
        action="study.view",
        object_type="study",
        object_id=study_id,
        user_id=user.id,
        study_id=study_id,
        client_address=client_address,
        detail={"via": via} if via else None,
    )
