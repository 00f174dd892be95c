"""From a ready study to a stored AI draft: the drafting job and what triggers it.

``request_drafts`` computes each candidate study's content key (selected series
and its version, linked order, dictations) and enqueues a job when the key is
new, so new dictation or a late order produces a new draft version and
re-delivered events produce nothing.  ``run_draft_job`` runs one claimed job
through its stages, timing each: context, preprocess, transcription (waiting
briefly for a dictation another worker is transcribing), model, report, store.
The same function runs in the embedded worker pool and in Celery workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import (
    DictationStatus,
    FlagKind,
    FlagStatus,
    Priority,
    ReportKind,
    SeriesState,
    StudyStatus,
)
from app.core.settings import Settings
from app.core.tables import (
    Dictation,
    Instance,
    Order,
    Report,
    ReportFlag,
    ReportVersion,
    Series,
    Study,
)
from app.reporting.draft import (
    Draft,
    FindingScore,
    ModelOutput,
    OrderContext,
    Technique,
    build_draft,
)
from app.reporting.render import render_text
from app.reporting.schema import Evidence, Nodule
from app.services import audit, jobs
from app.services import pipeline_metrics as metrics
from app.services.batching import ModelBatcher
from app.services.dictation import DictationError, release_stale_dictations
from app.services.study_status import change_status
from models.errors import ModelInputError
from models.findings import Finding
from models.inference import Drafter, DraftResult, SliceLocation, StudyInput
from models.networks.gating import DictationQuality
from models.preprocess import PreparedImage

log = logging.getLogger(__name__)

STALE_TRANSCRIPTION = timedelta(minutes=10)
# A dictation another worker is transcribing is usually done within a second or
# two: the job watches for it this long (every DICTATION_POLL_SECONDS) before it
# gives its worker back and comes again DICTATION_RETRY_SECONDS later.
DICTATION_WAIT_SECONDS = 20.0
DICTATION_POLL_SECONDS = 0.05
DICTATION_RETRY_SECONDS = 2.0

# Studies in these states may get a (new) draft; signed or preliminary ones never.
DRAFTABLE = (
    StudyStatus.READY,
    StudyStatus.QUEUED,
    StudyStatus.DRAFTING,
    StudyStatus.DRAFT_READY,
    StudyStatus.IN_REVIEW,
    StudyStatus.FAILED,
    StudyStatus.NEEDS_RECONCILIATION,
)
# States the drafting pipeline itself may move a study out of.
_PIPELINE_OWNED = (
    StudyStatus.READY,
    StudyStatus.QUEUED,
    StudyStatus.DRAFTING,
    StudyStatus.DRAFT_READY,
    StudyStatus.FAILED,
)


@dataclass
class DraftingServices:
    """What a drafting job needs, bound once per process."""

    settings: Settings
    session_factory: sessionmaker[Session]
    drafter: Callable[[], Drafter]
    transcribe: Callable[[int], None] | None = None
    """Transcribe one pending dictation by id (None: dictations are not transcribed here)."""
    load_transcriber: Callable[[], object] | None = None
    batcher: ModelBatcher | None = None
    """Gathers the model stages of jobs running at once into one batch (None: each alone)."""

    def warm_up(self) -> None:
        """Load the model (and Whisper) once, before the first job needs them."""
        self.drafter()
        if self.load_transcriber is not None:
            self.load_transcriber()


@dataclass
class _Stages:
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - start


# -- what triggers a draft -------------------------------------------------------------


def _selected_series(session: Session, study_id: int) -> Series | None:
    return session.scalar(
        select(Series)
        .where(Series.study_id == study_id, Series.state == SeriesState.SELECTED)
        .order_by(Series.selection_score.desc().nulls_last(), Series.id)
        .limit(1)
    )


def content_key(session: Session, study: Study) -> tuple[str, Series] | None:
    """The study content a draft is made of; None while nothing is draftable."""
    series = _selected_series(session, study.id)
    if series is None:
        return None
    dictations = session.scalars(
        select(Dictation.id)
        .where(Dictation.study_id == study.id, Dictation.status != DictationStatus.FAILED)
        .order_by(Dictation.id)
    ).all()
    key = (
        f"series={series.id}:v{series.content_version}"
        f"|order={study.order_id or 0}|dictations={','.join(map(str, dictations)) or '-'}"
    )
    return key, series


def request_drafts(
    factory: sessionmaker[Session], study_ids: Sequence[int] | None = None
) -> list[tuple[int, Priority]]:
    """Enqueue a job for every draftable study whose content has no job yet.

    Returns the new jobs (id, priority), for a dispatcher to hand out.
    """
    created: list[tuple[int, Priority]] = []
    with factory() as session, session.begin():
        query = select(Study).where(Study.status.in_(DRAFTABLE))
        if study_ids is not None:
            query = query.where(Study.id.in_(study_ids))
        for study in session.scalars(query):
            keyed = content_key(session, study)
            if keyed is None:
                continue
            key, series = keyed
            job, new = jobs.enqueue(
                session,
                study_id=study.id,
                series_id=series.id,
                content_key=key,
                priority=study.priority,
            )
            if new:
                session.flush()
                created.append((job.id, job.priority))
                if study.status in (StudyStatus.READY, StudyStatus.DRAFT_READY, StudyStatus.FAILED):
                    change_status(session, study, StudyStatus.QUEUED)
    return created


# -- the job ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    study_id: int
    series_dir: Path
    first_instance: Path
    order: OrderContext | None
    emr_text: str | None


def _order_context(order: Order | None) -> tuple[OrderContext | None, str | None]:
    if order is None:
        return None, None
    context = OrderContext(
        procedure_text=order.procedure_text,
        reason_for_exam=order.reason_for_exam,
        clinical_history=order.clinical_history,
    )
    parts = [p.strip() for p in (order.reason_for_exam, order.clinical_history) if p and p.strip()]
    return context, (". ".join(parts) or None)


def _load_context(
    services: DraftingServices, claimed: jobs.ClaimedJob, session: Session
) -> _Context:
    study = session.get_one(Study, claimed.study_id)
    keyed = content_key(session, study)
    if keyed is None or keyed[0] != claimed.content_key:
        raise _Superseded("the study's content changed; a newer job drafts it")
    _, series = keyed
    if study.order_id is None and study.status is not StudyStatus.NEEDS_RECONCILIATION:
        waited = datetime.now(UTC) - _aware(study.created_at)
        remaining = services.settings.order_wait_seconds - waited.total_seconds()
        if remaining > 0:
            raise jobs.DeferJob(remaining, "waiting for the order")
    order = session.get(Order, study.order_id) if study.order_id else None
    if study.status is StudyStatus.NEEDS_RECONCILIATION:
        order = None  # an unreconciled order is not trusted as clinical context
    path = session.scalar(
        select(Instance.storage_path).where(Instance.series_id == series.id).limit(1)
    )
    if path is None:
        raise ModelInputError(f"series {series.series_instance_uid} has no stored instances")
    first = services.settings.dicom_storage_dir / path
    context, emr_text = _order_context(order)
    return _Context(study.id, first.parent, first, context, emr_text)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Superseded(Exception):
    pass


def _technique(first_instance: Path) -> Technique:
    ds = pydicom.dcmread(first_instance, stop_before_pixels=True)

    def number(keyword: str) -> float | None:
        value = ds.get(keyword)
        try:
            return float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    kernel = ds.get("ConvolutionKernel")
    if isinstance(kernel, pydicom.multival.MultiValue):
        kernel = "\\".join(str(k) for k in kernel)
    return Technique(
        slice_thickness_mm=number("SliceThickness"),
        contrast_agent=str(ds.get("ContrastBolusAgent") or "").strip() or None,
        kvp=number("KVP"),
        ctdivol_mgy=number("CTDIvol"),
        kernel=str(kernel).strip() or None if kernel else None,
    )


def transcribe_pending(services: DraftingServices, study_id: int | None = None) -> int:
    """Transcribe pending dictations (of one study, or all); returns how many were tried."""
    if services.transcribe is None:
        return 0
    query = select(Dictation.id).where(Dictation.status == DictationStatus.PENDING)
    if study_id is not None:
        query = query.where(Dictation.study_id == study_id)
    with services.session_factory() as session:
        pending = session.scalars(query.order_by(Dictation.id)).all()
    for dictation_id in pending:
        try:
            services.transcribe(dictation_id)
        except DictationError:  # another worker took it first
            continue
    return len(pending)


def _dictations(
    services: DraftingServices, study_id: int
) -> tuple[dict[str, str], str | None, DictationQuality | None]:
    """Transcribe what is still pending, then join the study's transcripts by section."""
    transcribe_pending(services, study_id)
    release_stale_dictations(services.session_factory, older_than=STALE_TRANSCRIPTION)
    _await_transcriptions(services, study_id)
    with services.session_factory() as session:
        done = session.scalars(
            select(Dictation)
            .where(Dictation.study_id == study_id, Dictation.status == DictationStatus.DONE)
            .order_by(Dictation.id)
        ).all()
    sections: dict[str, list[str]] = {}
    texts: list[str] = []
    qualities: list[DictationQuality] = []
    for row in done:
        for name, text in (row.sections or {}).items():
            if text and str(text).strip():
                sections.setdefault(name, []).append(str(text).strip())
        if row.transcript_text:
            texts.append(row.transcript_text)
        if row.quality:
            qualities.append(dictation_quality(row.quality))
    quality = min(qualities, key=lambda q: q.confidence) if qualities else None
    joined = {name: " ".join(parts) for name, parts in sections.items()}
    return joined, (" ".join(texts) or None), quality


def _await_transcriptions(services: DraftingServices, study_id: int) -> None:
    """Wait for the study's dictations other workers are transcribing (bounded, then defer)."""
    query = select(func.count(Dictation.id)).where(
        Dictation.study_id == study_id, Dictation.status == DictationStatus.TRANSCRIBING
    )
    deadline = time.monotonic() + DICTATION_WAIT_SECONDS
    while True:
        with services.session_factory() as session:
            if not session.scalar(query):
                return
        if time.monotonic() >= deadline:
            raise jobs.DeferJob(
                DICTATION_RETRY_SECONDS, "waiting for a dictation being transcribed"
            )
        time.sleep(DICTATION_POLL_SECONDS)


def dictation_quality(quality: Mapping[str, float]) -> DictationQuality:
    """What the model's gate sees of a transcript (the speech side's stored signals)."""
    return DictationQuality(
        confidence=float(quality.get("confidence", 0.0)),
        no_speech_prob=float(quality.get("no_speech_prob", 1.0)),
        snr_db=float(quality.get("snr_db", 0.0)),
    )


def _location(location: SliceLocation | None) -> Evidence | None:
    if location is None:
        return None
    return Evidence(slice_index=location.slice_index, position_mm=location.centre_ras_mm)


def _run_model(
    drafter: Drafter,
    prepared: PreparedImage,
    emr_text: str | None,
    transcript: str | None,
    quality: DictationQuality | None,
    batcher: ModelBatcher | None = None,
) -> tuple[DraftResult, DraftResult | None]:
    """The draft's result and, with a dictation, the same study read without it (one batch),
    against which the dictation's discrepancies are judged."""
    fused = StudyInput(
        image=prepared, emr_text=emr_text, transcript=transcript, dictation_quality=quality
    )
    unaided = StudyInput(image=prepared, emr_text=emr_text, findings_only=True)
    studies = [fused, unaided] if transcript else [fused]
    results = batcher.run(drafter, studies) if batcher else drafter.draft_batch(studies)
    return results[0], (results[1] if transcript else None)


def model_output(result: DraftResult, *, demonstration: bool) -> ModelOutput:
    """The model's typed result in the reporting vocabulary."""
    scores = []
    for finding in Finding:
        high = result.thresholds[finding.slug]
        low = min(result.verify_thresholds.get(finding.slug, high), high)
        evidence = result.evidence.get(finding.slug)
        scores.append(
            FindingScore(
                finding=finding,
                probability=result.probabilities[finding.slug],
                low=low,
                high=high,
                evidence=_location(evidence.location) if evidence else None,
            )
        )
    nodules = [
        Nodule(
            diameter_mm=n.diameter_mm,
            kind=n.nodule_type,
            lobe=n.lobe,
            evidence=_location(n.location),
            probability=n.probability,
        )
        for n in result.nodules
    ]
    return ModelOutput(
        scores=scores,
        nodules=nodules,
        model_version=result.model_version,
        model_precision=result.precision,
        demonstration_model=demonstration,
        modality_weights=result.modality_weights,
    )


def _has_human_edits(session: Session, report: Report) -> bool:
    latest = session.scalar(
        select(ReportVersion)
        .where(ReportVersion.report_id == report.id)
        .order_by(ReportVersion.version_number.desc())
        .limit(1)
    )
    return latest is not None and not latest.ai_generated


def _store(
    services: DraftingServices, claimed: jobs.ClaimedJob, draft: Draft, job_id: int
) -> int | None:
    """Store the draft as a new AI version with its flags; None if a human edit wins."""
    with services.session_factory() as session, session.begin():
        study = session.get_one(Study, claimed.study_id)
        report = session.scalar(select(Report).where(Report.study_id == study.id))
        if report is None:
            report = Report(study_id=study.id)
            session.add(report)
            session.flush()
        elif _has_human_edits(session, report):
            log.info("study %s has a radiologist's version; the new draft is not stored", study.id)
            return None
        number = session.scalar(
            select(func.coalesce(func.max(ReportVersion.version_number), 0)).where(
                ReportVersion.report_id == report.id
            )
        )
        version = ReportVersion(
            report_id=report.id,
            version_number=int(number or 0) + 1,
            kind=ReportKind.DRAFT,
            ai_generated=True,
            structured=draft.report.model_dump(mode="json"),
            rendered_text=render_text(draft.report),
            model_version=draft.report.model_version,
            model_precision=draft.report.model_precision,
            job_id=job_id,
        )
        session.add(version)
        session.flush()
        # Flags of an older AI draft no longer apply; the new draft raises its own.
        for flag in session.scalars(
            select(ReportFlag).where(
                ReportFlag.study_id == study.id,
                ReportFlag.status == FlagStatus.OPEN,
                ReportFlag.kind.in_((FlagKind.VERIFY, FlagKind.DISCREPANCY)),
            )
        ):
            flag.status = FlagStatus.DISMISSED
            flag.resolved_at = datetime.now(UTC)
        for raised in draft.flags:
            session.add(
                ReportFlag(
                    study_id=study.id,
                    report_version_id=version.id,
                    kind=raised.kind,
                    finding=raised.finding.value if raised.finding else None,
                    message=raised.message,
                )
            )
        if study.status in _PIPELINE_OWNED:
            change_status(session, study, StudyStatus.DRAFT_READY)
        study.failure_reason = None
        audit.record(
            session,
            actor=audit.SYSTEM_ACTOR,
            action="report.draft",
            object_type="report_version",
            object_id=version.id,
            study_id=study.id,
            detail={"model_version": version.model_version, "flags": len(draft.flags)},
        )
        return version.id


def _mark_study(
    services: DraftingServices, study_id: int, status: StudyStatus, reason: str | None = None
) -> None:
    with services.session_factory() as session, session.begin():
        study = session.get_one(Study, study_id)
        if study.status in _PIPELINE_OWNED:
            change_status(session, study, status)
        if reason is not None:
            study.failure_reason = reason


def run_draft_job(services: DraftingServices, claimed: jobs.ClaimedJob) -> int | None:
    """Run one claimed job to its end; returns the stored version id, if any."""
    factory = services.session_factory
    stages = _Stages()
    try:
        with stages.stage("context"), factory() as session:
            context = _load_context(services, claimed, session)
        _mark_study(services, claimed.study_id, StudyStatus.DRAFTING)
        with stages.stage("load_model"):
            drafter = services.drafter()
        # The images first: a dictation still being transcribed elsewhere finishes meanwhile.
        jobs.record_timings(factory, claimed.id, "preprocess", stages.timings)
        with stages.stage("preprocess"):
            from models.preprocess import preprocess

            prepared = preprocess(context.series_dir, drafter.spec)
        jobs.record_timings(factory, claimed.id, "transcription", stages.timings)
        with stages.stage("transcription"):
            sections, transcript, quality = _dictations(services, claimed.study_id)
        jobs.record_timings(factory, claimed.id, "model", stages.timings)
        with stages.stage("model"):
            result, unaided = _run_model(
                drafter, prepared, context.emr_text, transcript, quality, services.batcher
            )
        with stages.stage("report"):
            demonstration = not result.validated_for_clinical_use
            draft = build_draft(
                model_output(result, demonstration=demonstration),
                technique=_technique(context.first_instance),
                order=context.order,
                dictation=sections,
                unaided=None if unaided is None else model_output(unaided, demonstration=True),
            )
        with stages.stage("store"):
            version_id = _store(services, claimed, draft, claimed.id)
        jobs.record_timings(factory, claimed.id, None, stages.timings)
        jobs.finish(factory, claimed.id)
        metrics.observe_stages(stages.timings)
        metrics.MODEL_SECONDS.labels(precision=result.precision).observe(stages.timings["model"])
        metrics.JOBS_FINISHED.labels("drafted" if version_id else "kept_human_edits").inc()
        return version_id
    except jobs.DeferJob as wait:
        jobs.defer(factory, claimed.id, wait.seconds, wait.reason)
        metrics.JOBS_FINISHED.labels("deferred").inc()
    except _Superseded as superseded:
        jobs.record_timings(factory, claimed.id, "superseded", stages.timings)
        jobs.finish(factory, claimed.id)
        metrics.JOBS_FINISHED.labels("superseded").inc()
        log.info("job %s superseded: %s", claimed.id, superseded)
    except ModelInputError as bad:
        reason = f"cannot draft this series: {bad}"
        jobs.fail(factory, claimed.id, reason, retryable=False)
        _mark_study(services, claimed.study_id, StudyStatus.FAILED, reason)
        metrics.JOBS_FINISHED.labels("failed").inc()
        log.warning("job %s: %s", claimed.id, reason)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        will_retry = jobs.fail(factory, claimed.id, reason, retryable=True)
        if not will_retry:
            _mark_study(services, claimed.study_id, StudyStatus.FAILED, reason)
        metrics.JOBS_FINISHED.labels("retrying" if will_retry else "failed").inc()
        log.exception("job %s failed (retry: %s)", claimed.id, will_retry)
    return None


__all__ = [
    "DraftingServices",
    "content_key",
    "model_output",
    "request_drafts",
    "run_draft_job",
    "transcribe_pending",
]
