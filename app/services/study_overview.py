"""What has been received: studies with their series, counts, ready and selection state,
their newest drafting job (state, stage, timings) and newest report version.

Used by ``radscribe studies list``.  Patient names are left out: identifiers
(UIDs, accession numbers) are enough to find a study.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.domain import SeriesState
from app.core.tables import Job, Report, ReportVersion, Series, Study
from app.services.outbox import as_utc


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
class JobOverview:
    """The study's newest drafting job."""

    state: str
    stage: str | None
    priority: str
    attempts: int
    error: str | None
    timings: dict[str, Any] | None
    started_at: str | None
    finished_at: str | None


@dataclass(frozen=True)
class ReportOverview:
    """The study's newest report version."""

    version_number: int
    kind: str
    ai_generated: bool
    model_version: str | None
    model_precision: str | None
    created_at: str | None
    signed_at: str | None


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
    job: JobOverview | None = None
    report: ReportOverview | None = None


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


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
    jobs = _latest_jobs(session, [study.id for study in studies])
    reports = _latest_versions(session, [study.id for study in studies])
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
                job=jobs.get(study.id),
                report=reports.get(study.id),
            )
        )
    return overview


def _latest_jobs(session: Session, study_ids: list[int]) -> dict[int, JobOverview]:
    newest = select(func.max(Job.id)).where(Job.study_id.in_(study_ids)).group_by(Job.study_id)
    return {
        job.study_id: JobOverview(
            state=job.state.value,
            stage=job.stage,
            priority=job.priority.value,
            attempts=job.attempts,
            error=job.error,
            timings=job.timings,
            started_at=_iso(job.started_at),
            finished_at=_iso(job.finished_at),
        )
        for job in session.scalars(select(Job).where(Job.id.in_(newest)))
    }


def _latest_versions(session: Session, study_ids: list[int]) -> dict[int, ReportOverview]:
    newest = (
        select(func.max(ReportVersion.id))
        .join(Report, Report.id == ReportVersion.report_id)
        .where(Report.study_id.in_(study_ids))
        .group_by(Report.study_id)
    )
    rows = session.execute(
        select(Report.study_id, ReportVersion)
        .join(ReportVersion, ReportVersion.report_id == Report.id)
        .where(ReportVersion.id.in_(newest))
    ).all()
    return {
        study_id: ReportOverview(
            version_number=version.version_number,
            kind=version.kind.value,
            ai_generated=version.ai_generated,
            model_version=version.model_version,
            model_precision=version.model_precision,
            created_at=_iso(version.created_at),
            signed_at=_iso(version.signed_at),
        )
        for study_id, version in rows
    }
