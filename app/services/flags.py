"""Editor flags (verify, discrepancy, reconciliation): listing and resolving.

A reader accepts or dismisses a verify or discrepancy flag on a study they
hold.  A reconciliation flag is resolved only by an admin linking the study
to its order (:func:`app.services.linking.resolve_reconciliation`); open flags
block signing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.domain import FlagKind, FlagStatus
from app.core.tables import ReportFlag, User
from app.services import audit

READER_KINDS = frozenset({FlagKind.VERIFY, FlagKind.DISCREPANCY})
RESOLUTIONS = frozenset({FlagStatus.ACCEPTED, FlagStatus.DISMISSED})


class FlagError(ValueError):
    """The flag cannot be resolved this way; the message says why."""


def study_flags(session: Session, study_id: int) -> list[ReportFlag]:
    return list(
        session.scalars(
            select(ReportFlag)
            .where(ReportFlag.study_id == study_id)
            .order_by(ReportFlag.status != FlagStatus.OPEN, ReportFlag.id)
        )
    )


def open_flag_count(session: Session, study_id: int) -> int:
    return sum(1 for f in study_flags(session, study_id) if f.status is FlagStatus.OPEN)


def resolve_flag(
    session: Session,
    *,
    study_id: int,
    flag_id: int,
    user: User,
    resolution: FlagStatus,
    now: datetime,
    client_address: str | None = None,
) -> ReportFlag:
    """Accept or dismiss an open verify/discrepancy flag (the caller checks the claim)."""
    if resolution not in RESOLUTIONS:
        raise FlagError("a flag is accepted or dismissed")
    flag = session.get(ReportFlag, flag_id, with_for_update=True)
    if flag is None or flag.study_id != study_id:
        raise FlagError(f"no flag {flag_id} on this study")
    if flag.kind not in READER_KINDS:
        raise FlagError("a reconciliation flag is resolved by an admin linking the order")
    if flag.status is not FlagStatus.OPEN:
        raise FlagError(f"the flag is already {flag.status.value}")
    flag.status = resolution
    flag.resolved_by_id = user.id
    flag.resolved_at = now
    audit.record(
        session,
        actor=user.username,
        action=f"flag.{resolution.value}",
        object_type="report_flag",
        object_id=flag.id,
        user_id=user.id,
        study_id=study_id,
        client_address=client_address,
        detail={"kind": flag.kind.value, "finding": flag.finding},
    )
    return flag
