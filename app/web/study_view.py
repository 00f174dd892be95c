"""Everything the study page (and its JSON twin) shows, gathered in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from markupsafe import Markup
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.domain import FlagStatus, ReportKind
from app.core.settings import Settings
from app.core.tables import (
    Dictation,
    Order,
    OutboxMessage,
    Patient,
    ReportFlag,
    ReportVersion,
    Study,
    User,
)
from app.reporting.render import render_html
from app.reporting.schema import StructuredReport
from app.services.claims import Holder, holder
from app.services.flags import study_flags
from app.services.linking import needs_reconciliation
from app.services.report_actions import cosign_candidate
from app.services.report_editing import (
    EditorSection,
    editor_sections,
    place_dictation,
    versions,
)
from app.services.report_history import DiffLine, deliveries, diff_versions
from app.services.slices import SeriesSlices, study_slices


@dataclass(frozen=True)
class KeySlice:
    finding: str
    text: str
    probability: float
    slice_index: int | None


@dataclass(frozen=True)
class VersionView:
    version: ReportVersion
    author: str | None
    signer: str | None
    cosigner: str | None
    diff: list[DiffLine]


@dataclass(frozen=True)
class StudyView:
    study: Study
    order: Order | None
    patient: Patient | None
    holder: Holder | None
    held_by_me: bool
    draft: StructuredReport | None
    draft_html: Markup | None
    findings: list[KeySlice]
    flags: list[ReportFlag]
    open_flags: int
    editor: list[EditorSection]
    history: list[VersionView]
    deliveries: list[OutboxMessage]
    dictations: list[Dictation]
    dictation_inserts: dict[int, dict[str, str]]
    slices: SeriesSlices | None
    viewer_url: str | None
    signed_final: bool
    cosign_for: User | None
    sign_blocked: str | None


def viewer_link(settings: Settings, study: Study) -> str | None:
    template = settings.viewer_url_template
    if not template:
        return None
    return template.replace("{study_instance_uid}", quote(study.study_instance_uid, safe=""))


def _latest_draft(all_versions: list[ReportVersion]) -> StructuredReport | None:
    for version in reversed(all_versions):
        if version.ai_generated:
            try:
                return StructuredReport.model_validate(version.structured)
            except ValidationError:
                return None
    return None


def _sign_blocked(study: Study, order: Order | None, open_flags: int) -> str | None:
    if needs_reconciliation(study):
        return (
            "The study needs reconciliation with its order: "
            f"{study.reconciliation_reason or 'an admin must link it'}"
        )
    if open_flags:
        return f"{open_flags} open flag(s) must be resolved before signing."
    if order is None:
        return "The study is not linked to an EMR order yet; it cannot be signed."
    return None


def build_study_view(
    session: Session, study: Study, *, user: User, settings: Settings, now: datetime
) -> StudyView:
    order = session.get(Order, study.order_id) if study.order_id else None
    patient_id = order.patient_id if order and order.patient_id else study.patient_id
    patient = session.get(Patient, patient_id) if patient_id else None
    current = holder(session, study, now=now)
    all_versions = versions(session, study.id)
    draft = _latest_draft(all_versions)
    flags = study_flags(session, study.id)
    open_flags = sum(1 for f in flags if f.status is FlagStatus.OPEN)
    people_ids = {
        i for v in all_versions for i in (v.author_id, v.signer_id, v.cosigner_id) if i is not None
    }
    people = {u.id: u for u in session.scalars(select(User).where(User.id.in_(people_ids)))}

    def name(user_id: int | None) -> str | None:
        if user_id is None:
            return None
        person = people.get(user_id)
        return (person.display_name or person.username) if person else f"user {user_id}"

    history = [
        VersionView(
            version=v,
            author=name(v.author_id),
            signer=name(v.signer_id),
            cosigner=name(v.cosigner_id),
            diff=diff_versions(all_versions[i - 1] if i else None, v),
        )
        for i, v in enumerate(all_versions)
    ]
    signed_final = any(v.kind is ReportKind.FINAL for v in all_versions)
    cosign_for = cosign_candidate(session, study.id, user)
    findings = [
        KeySlice(
            finding=s.finding,
            text=s.text,
            probability=s.probability,
            slice_index=s.evidence.slice_index if s.evidence else None,
        )
        for section in (draft.sections if draft else [])
        for s in section.statements
    ]
    dictations = list(
        session.scalars(
            select(Dictation).where(Dictation.study_id == study.id).order_by(Dictation.id.desc())
        )
    )
    return StudyView(
        study=study,
        order=order,
        patient=patient,
        holder=current,
        held_by_me=current is not None and current.user_id == user.id,
        draft=draft,
        draft_html=Markup(render_html(draft)) if draft else None,
        findings=findings,
        flags=flags,
        open_flags=open_flags,
        editor=editor_sections(all_versions[-1] if all_versions else None),
        history=list(reversed(history)),
        deliveries=deliveries(session, study.id),
        dictations=dictations,
        dictation_inserts={d.id: place_dictation(d.sections) for d in dictations if d.sections},
        slices=study_slices(session, study.id),
        viewer_url=viewer_link(settings, study),
        signed_final=signed_final,
        cosign_for=cosign_for,
        sign_blocked=_sign_blocked(study, order, open_flags),
    )
