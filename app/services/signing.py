"""Signing a report: the one path by which a human-authored version is created.

:func:`sign_report` runs in the caller's transaction and writes, together,
the new ReportVersion (ai_generated=False, signer, signed_at), the study's
status change, an audit event and, for a final or an addendum (and a
preliminary when ``hl7_send_preliminary`` is on), the ORU^R01 outbox row.
Either all of it commits or none of it does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.domain import FlagStatus, ReportKind, Role, StudyStatus
from app.core.settings import Settings
from app.core.tables import (
    Order,
    OutboxMessage,
    Patient,
    Report,
    ReportFlag,
    ReportVersion,
    Study,
    StudyStatusChange,
    User,
)
from app.services import audit, outbox
from app.services.linking import ACTIVE_ORDER, needs_reconciliation

log = logging.getLogger(__name__)

SIGNING_ROLES = frozenset({Role.RADIOLOGIST, Role.RESIDENT})
STATUS_AFTER = {
    ReportKind.PRELIMINARY: StudyStatus.PRELIMINARY,
    ReportKind.FINAL: StudyStatus.FINAL,
    ReportKind.ADDENDUM: StudyStatus.ADDENDED,
}
PLAIN_TEXT_SECTION = "report"
ADDENDUM_SECTION = "addendum"
MAX_PATIENT_MERGES = 16

SectionsInput = Mapping[str, str] | Sequence[tuple[str, str]]


class SigningError(ValueError):
    """The report cannot be signed now; the message says why (shown to the radiologist)."""


@dataclass(frozen=True)
class Signed:
    version: ReportVersion
    outbox_message: OutboxMessage | None


def _sections(sections: SectionsInput | None, text: str | None) -> list[tuple[str, str]]:
    if sections is not None and text is not None:
        raise SigningError("give the report as sections or as text, not both")
    if sections is not None:
        items = list(sections.items()) if isinstance(sections, Mapping) else list(sections)
        pairs = [(str(name).strip(), str(body).strip()) for name, body in items]
        pairs = [(name, body) for name, body in pairs if name and body]
    elif text is not None and text.strip():
        pairs = [(PLAIN_TEXT_SECTION, text.strip())]
    else:
        pairs = []
    if not pairs:
        raise SigningError("the report has no text")
    return pairs


def render(sections: Sequence[tuple[str, str]]) -> str:
    return "\n\n".join(f"{name.replace('_', ' ').upper()}:\n{body}" for name, body in sections)


def _check_people(kind: ReportKind, signer: User, cosigner: User | None) -> None:
    if not signer.active or signer.role not in SIGNING_ROLES:
        raise SigningError(f"user {signer.username} may not sign reports")
    if cosigner is not None:
        if cosigner.id == signer.id:
            raise SigningError("a co-signer must be another radiologist")
        if not cosigner.active or cosigner.role is not Role.RADIOLOGIST:
            raise SigningError(f"user {cosigner.username} is not an attending radiologist")
    if (
        signer.role is Role.RESIDENT
        and kind in (ReportKind.FINAL, ReportKind.ADDENDUM)
        and cosigner is None
    ):
        raise SigningError(f"a resident cannot sign a {kind.value} without an attending co-signer")


def _surviving(session: Session, patient_id: int | None) -> Patient | None:
    patient = session.get(Patient, patient_id) if patient_id is not None else None
    for _ in range(MAX_PATIENT_MERGES):
        if patient is None or patient.merged_into_id is None:
            break
        patient = session.get(Patient, patient.merged_into_id)
    return patient


def sign_report(
    session: Session,
    *,
    study_id: int,
    signer: User,
    kind: ReportKind,
    settings: Settings,
    sections: SectionsInput | None = None,
    text: str | None = None,
    cosigner: User | None = None,
    client_address: str | None = None,
    now: datetime | None = None,
) -> Signed:
    """Create a signed human version; refuse while reconciliation or open flags block it."""
    moment = now or datetime.now(UTC)
    if kind is ReportKind.DRAFT:
        raise SigningError("a draft is not signed; sign a preliminary, final or addendum")
    study = session.get(Study, study_id, with_for_update=True)
    if study is None:
        raise SigningError(f"no study {study_id}")
    if needs_reconciliation(study):
        raise SigningError(
            "the study needs reconciliation with its order before it can be signed: "
            f"{study.reconciliation_reason or 'see the admin page'}"
        )
    open_flags = session.scalar(
        select(func.count())
        .select_from(ReportFlag)
        .where(ReportFlag.study_id == study.id, ReportFlag.status == FlagStatus.OPEN)
    )
    if open_flags:
        raise SigningError(f"{open_flags} open flag(s) must be resolved before signing")
    order = session.get(Order, study.order_id) if study.order_id is not None else None
    if order is None:
        raise SigningError("the study is not linked to an EMR order; it cannot be signed yet")
    if order.status not in ACTIVE_ORDER:
        raise SigningError(f"the linked order is {order.status.value}")
    patient = _surviving(session, order.patient_id)
    if patient is None:
        raise SigningError("the linked order has no patient")
    _check_people(kind, signer, cosigner)

    report = session.scalar(select(Report).where(Report.study_id == study.id))
    if report is None:
        report = Report(study_id=study.id)
        session.add(report)
        session.flush()
    versions = list(
        session.scalars(
            select(ReportVersion)
            .where(ReportVersion.report_id == report.id)
            .order_by(ReportVersion.version_number)
        )
    )
    finals = [v for v in versions if v.kind is ReportKind.FINAL]
    if kind is ReportKind.FINAL and finals:
        raise SigningError("the report is already final; sign an addendum instead")
    if kind is ReportKind.PRELIMINARY and finals:
        raise SigningError("the report is already final; a preliminary can no longer be signed")
    if kind is ReportKind.ADDENDUM and not finals:
        raise SigningError("an addendum needs a signed final report")
    drafts = [v for v in versions if v.ai_generated]
    model_version = drafts[-1].model_version if drafts else None

    own_sections = _sections(sections, text)
    outbound_sections = own_sections
    if kind is ReportKind.ADDENDUM:
        latest = [v for v in versions if v.kind in (ReportKind.FINAL, ReportKind.ADDENDUM)][-1]
        previous = [tuple(pair) for pair in latest.structured.get("sections", [])]
        outbound_sections = [
            (str(name), str(body)) for name, body in previous if name != ADDENDUM_SECTION
        ]
        earlier = [str(body) for name, body in previous if name == ADDENDUM_SECTION]
        addendum_text = "\n\n".join([*earlier, *(body for _, body in own_sections)])
        outbound_sections.append((ADDENDUM_SECTION, addendum_text))

    version = ReportVersion(
        report_id=report.id,
        version_number=(versions[-1].version_number + 1) if versions else 1,
        kind=kind,
        ai_generated=False,
        author_id=signer.id,
        signer_id=signer.id,
        cosigner_id=cosigner.id if cosigner else None,
        created_at=moment,
        signed_at=moment,
        cosigned_at=moment if cosigner else None,
        model_version=model_version,
        structured={"sections": [list(pair) for pair in outbound_sections]},
        rendered_text=render(outbound_sections),
    )
    session.add(version)
    session.flush()

    new_status = STATUS_AFTER[kind]
    session.add(
        StudyStatusChange(
            study_id=study.id,
            from_status=study.status,
            to_status=new_status,
            at=moment,
            user_id=signer.id,
        )
    )
    study.status = new_status

    message = None
    if kind is not ReportKind.PRELIMINARY or settings.hl7_send_preliminary:
        message = outbox.enqueue_report(
            session,
            version=version,
            sections=outbound_sections,
            study=study,
            order=order,
            patient=patient,
            principal=cosigner or signer,
            assistant=signer,
            settings=settings,
            now=moment,
        )
    audit.record(
        session,
        actor=signer.username,
        action=f"report.sign_{kind.value}",
        object_type="report_version",
        object_id=version.id,
        user_id=signer.id,
        study_id=study.id,
        client_address=client_address,
        detail={
            "version_number": version.version_number,
            "cosigner": cosigner.username if cosigner else None,
            "model_version": model_version,
            "outbox_control_id": message.control_id if message else None,
        },
    )
    session.flush()
    log.info(
        "study %s: %s signed (version %s)%s",
        study.id,
        kind.value,
        version.version_number,
        f", outbox {message.control_id}" if message else "",
    )
    return Signed(version=version, outbox_message=message)
