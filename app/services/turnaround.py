"""Turnaround (acquisition to final signature) by day, and AI draft agreement.

Turnaround: for each study signed final, the time from its acquisition (or
arrival, when the acquisition time is unknown) to its first change to
``final`` in ``study_status_changes``.  Per day of signing: the count, the
median and the 90th percentile in minutes.

Agreement: for each signed final with an AI draft before it, every finding
the draft stated present was *kept* (the signed text states it present) or
*removed*; a finding the signed text states present that the draft did not
is *added*.  Counted per finding and model version.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.domain import ReportKind, StudyStatus
from app.core.tables import ReportVersion, Study, StudyStatusChange
from app.reporting.schema import StructuredReport
from app.services.outbox import as_utc
from models.findings import Finding
from models.report_labeler import Mention, label_text

DEFAULT_DAYS = 30
UNKNOWN_MODEL = "unknown"


def percentile(values: list[float], fraction: float) -> float:
    """Linear-interpolated percentile (fraction 0-1) of a non-empty list."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class DayTurnaround:
    day: date
    count: int
    median_minutes: float
    p90_minutes: float


def turnaround_by_day(
    session: Session, *, now: datetime, days: int = DEFAULT_DAYS
) -> list[DayTurnaround]:
    since = now - timedelta(days=days)
    first_final = (
        select(
            StudyStatusChange.study_id.label("study_id"),
            func.min(StudyStatusChange.at).label("final_at"),
        )
        .where(StudyStatusChange.to_status == StudyStatus.FINAL)
        .group_by(StudyStatusChange.study_id)
        .subquery()
    )
    rows = session.execute(
        select(first_final.c.final_at, func.coalesce(Study.acquired_at, Study.created_at))
        .join(Study, Study.id == first_final.c.study_id)
        .where(first_final.c.final_at >= since)
    ).all()
    minutes: dict[date, list[float]] = defaultdict(list)
    for final_at, started in rows:
        signed = as_utc(final_at)
        minutes[signed.date()].append(max(0.0, (signed - as_utc(started)).total_seconds() / 60))
    return [
        DayTurnaround(
            day=day,
            count=len(values),
            median_minutes=round(percentile(values, 0.5), 1),
            p90_minutes=round(percentile(values, 0.9), 1),
        )
        for day, values in sorted(minutes.items())
    ]


@dataclass(frozen=True)
class FindingAgreement:
    model_version: str
    finding: str
    kept: int
    removed: int
    added: int

    @property
    def kept_fraction(self) -> float | None:
        drafted = self.kept + self.removed
        return self.kept / drafted if drafted else None


def drafted_findings(version: ReportVersion) -> set[str]:
    try:
        report = StructuredReport.model_validate(version.structured)
    except ValidationError:
        return set()
    return {s.finding for section in report.sections for s in section.statements}


def signed_findings(text: str) -> set[str]:
    return {f.value for f, m in label_text(text).items() if m is Mention.PRESENT}


def agreement(
    session: Session, *, now: datetime, days: int = DEFAULT_DAYS
) -> list[FindingAgreement]:
    since = now - timedelta(days=days)
    finals = session.scalars(
        select(ReportVersion)
        .where(ReportVersion.kind == ReportKind.FINAL, ReportVersion.signed_at >= since)
        .order_by(ReportVersion.id)
    ).all()
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for final in finals:
        draft = session.scalar(
            select(ReportVersion)
            .where(
                ReportVersion.report_id == final.report_id,
                ReportVersion.ai_generated.is_(True),
                ReportVersion.version_number < final.version_number,
            )
            .order_by(ReportVersion.version_number.desc())
            .limit(1)
        )
        if draft is None:
            continue
        model = draft.model_version or UNKNOWN_MODEL
        drafted = drafted_findings(draft)
        signed = signed_findings(final.rendered_text)
        for finding in drafted | signed:
            slot = counts[(model, finding)]
            if finding in drafted and finding in signed:
                slot[0] += 1
            elif finding in drafted:
                slot[1] += 1
            else:
                slot[2] += 1
    order = {f.value: i for i, f in enumerate(Finding)}
    return [
        FindingAgreement(model_version=m, finding=f, kept=c[0], removed=c[1], added=c[2])
        for (m, f), c in sorted(counts.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99)))
    ]


__all__ = ["agreement", "percentile", "turnaround_by_day"]
