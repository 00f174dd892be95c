"""A report's version history, the differences between versions, and EMR delivery."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.tables import OutboxMessage, Report, ReportVersion


@dataclass(frozen=True)
class DiffLine:
    tag: str  # "same", "added", "removed"
    text: str


def diff_versions(older: ReportVersion | None, newer: ReportVersion) -> list[DiffLine]:
    """Line differences of the rendered text (all "added" for the first version)."""
    before = older.rendered_text.splitlines() if older else []
    lines: list[DiffLine] = []
    for raw in difflib.ndiff(before, newer.rendered_text.splitlines()):
        code, text = raw[:2], raw[2:]
        if code == "? ":
            continue
        tag = {"+ ": "added", "- ": "removed"}.get(code, "same")
        lines.append(DiffLine(tag=tag, text=text))
    return lines


def deliveries(session: Session, study_id: int) -> list[OutboxMessage]:
    """Outbound HL7 messages of this study's report versions, newest first."""
    return list(
        session.scalars(
            select(OutboxMessage)
            .join(ReportVersion, ReportVersion.id == OutboxMessage.report_version_id)
            .join(Report, Report.id == ReportVersion.report_id)
            .where(Report.study_id == study_id)
            .order_by(OutboxMessage.id.desc())
        )
    )
