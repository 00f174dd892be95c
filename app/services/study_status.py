"""Study status changes, each recorded with its time for turnaround and audit."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from app.core.domain import StudyStatus
from app.core.tables import Study, StudyStatusChange, User


def change_status(
    session: Session,
    study: Study,
    status: StudyStatus,
    *,
    user: User | None = None,
    now: datetime | None = None,
) -> bool:
    """Move ``study`` to ``status`` and record the change; False if it was already there."""
    if study.status is status:
        return False
    session.add(
        StudyStatusChange(
            study_id=study.id,
            from_status=study.status,
            to_status=status,
            at=now or datetime.now(UTC),
            user_id=user.id if user else None,
        )
    )
    study.status = status
    return True
