"""What has been received: studies with their series, counts, ready and selection state.

Used by ``radscribe studies list``.  Patient names are left out: identifiers
(UIDs, accession numbers) are enough to find a study.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.domain import SeriesState
from app.core.tables import Series, Study


@dataclass(frozen=True)
class SeriesOverview:
    series_instance_uid: str
    series_number: int | None
    modality: str
    description: str
    instance_count: int
    state: str
    ready: bool  # the current content version has been declared ready
    selected: bool
    skip_reason: str | None
    selection_score: float | None
    flags: list[str]
    content_version: int
    last_instance_at: str | None


@dataclass(frozen=True)
class StudyOverview:
    study_instance_uid: str
    accession_number: str
    study_date: str | None
    study_description: str
    status: str
    instance_count: int
    selected_series_uid: str | None
    series: list[SeriesOverview] = field(default_factory=list)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _flags(notes: dict[str, Any] | None) -> list[str]:
    flags = (notes or {}).get("flags", [])
    return [str(flag) for flag in flags] if isinstance(flags, list) else []


def list_studies(session: Session, *, limit: int = 100) -> list[StudyOverview]:
    """The most recently updated studies, each with every series."""
    studies = session.scalars(
        select(Study).order_by(Study.updated_at.desc(), Study.id.desc()).limit(limit)
    ).all()
    if not studies:
        return []
    rows = session.scalars(
        select(Series)
        .where(Series.study_id.in_([study.id for study in studies]))
        .order_by(Series.series_number, Series.series_instance_uid)
    ).all()
    by_study: dict[int, list[SeriesOverview]] = {}
    for series in rows:
        by_study.setdefault(series.study_id, []).append(
            SeriesOverview(
                series_instance_uid=series.series_instance_uid,
                series_number=series.series_number,
                modality=series.modality,
                description=series.series_description,
                instance_count=series.instance_count,
                state=series.state.value,
                ready=series.ready_version is not None
                and series.ready_version == series.content_version,
                selected=series.state is SeriesState.SELECTED,
                skip_reason=series.skip_reason,
                selection_score=series.selection_score,
                flags=_flags(series.selection_notes),
                content_version=series.content_version,
                last_instance_at=_iso(series.last_instance_at),
            )
        )
    overview = []
    for study in studies:
        series_list = by_study.get(study.id, [])
        overview.append(
            StudyOverview(
                study_instance_uid=study.study_instance_uid,
                accession_number=study.accession_number,
                study_date=study.study_date,
                study_description=study.study_description,
                status=study.status.value,
                instance_count=sum(s.instance_count for s in series_list),
                selected_series_uid=next(
                    (s.series_instance_uid for s in series_list if s.selected), None
                ),
                series=series_list,
            )
        )
    return overview
