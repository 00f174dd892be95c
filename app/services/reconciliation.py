"""The admin's reconciliation queue: studies that could not be linked to their EMR order.

:mod:`app.services.linking` puts a study in ``needs_reconciliation`` (with a
reason and an open reconciliation flag) when its accession matches no usable
order or the DICOM identity disagrees with the order's patient.  Here an
admin sees each such study beside the orders that could be its own and
either links one (:func:`app.services.linking.resolve_reconciliation`) or
dismisses the study: it is not reported in Radscribe (a test image, a study
sent to the wrong system), which leaves it failed with the admin's reason.
Both are audited with the admin's note.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.core.domain import FlagKind, FlagStatus, OrderStatus, Role, StudyStatus
from app.core.tables import Order, Patient, ReportFlag, Study, StudyStatusChange, User
from app.services import audit, linking
from app.services.outbox import as_utc
from app.services.study_status import change_status

QUEUE_LIMIT = 200
CANDIDATE_LIMIT = 10
MAX_NOTE_LENGTH = 500


@dataclass(frozen=True)
class OrderCandidate:
    order_id: int
    accession_number: str
    accession_issuer: str
    status: OrderStatus
    procedure: str
    patient_name: str
    patient_mrn: str
    patient_birth_date: str | None
    why: str  # "same accession" or "same patient ID"

    @property
    def linkable(self) -> bool:
        return self.status in linking.ACTIVE_ORDER


@dataclass(frozen=True)
class ReconciliationItem:
    study_id: int
    accession_number: str
    dicom_patient_id: str
    dicom_patient_name: str
    dicom_birth_date: str | None
    description: str
    reason: str
    since: datetime | None
    candidates: list[OrderCandidate]


def _candidates(session: Session, study: Study) -> list[OrderCandidate]:
    """Orders with the study's accession (any issuer), then open orders of a patient
    whose MRN is the study's PatientID."""
    same_patient = (
        select(Patient.id).where(Patient.mrn == study.dicom_patient_id)
        if study.dicom_patient_id.strip()
        else None
    )
    matches = [Order.accession_number == study.accession_number] if study.accession_number else []
    if same_patient is not None:
        matches.append(
            Order.patient_id.in_(same_patient) & Order.status.in_(tuple(linking.ACTIVE_ORDER))
        )
    if not matches:
        return []
    found = session.execute(
        select(Order, Patient)
        .outerjoin(Patient, Patient.id == Order.patient_id)
        .where(or_(*matches))
        .order_by(Order.id.desc())
        .limit(CANDIDATE_LIMIT)
    ).all()
    candidates = [
        OrderCandidate(
            order_id=order.id,
            accession_number=order.accession_number,
            accession_issuer=order.accession_issuer,
            status=order.status,
            procedure=order.procedure_text or order.procedure_code or "",
            patient_name=f"{patient.family_name}^{patient.given_name}" if patient else "",
            patient_mrn=patient.mrn if patient else "",
            patient_birth_date=patient.birth_date if patient else None,
            why="same accession"
            if order.accession_number == study.accession_number
            else "same patient ID",
        )
        for order, patient in found
    ]
    return sorted(candidates, key=lambda c: (c.why != "same accession", -c.order_id))


def reconciliation_queue(session: Session, *, limit: int = QUEUE_LIMIT) -> list[ReconciliationItem]:
    """Studies waiting for an admin, oldest first, each with its candidate orders."""
    studies = session.scalars(
        select(Study)
        .where(Study.status == StudyStatus.NEEDS_RECONCILIATION)
        .order_by(Study.id)
        .limit(limit)
    ).all()
    since: dict[int, datetime] = {}
    for study_id, at in session.execute(
        select(StudyStatusChange.study_id, StudyStatusChange.at)
        .where(
            StudyStatusChange.study_id.in_([s.id for s in studies]),
            StudyStatusChange.to_status == StudyStatus.NEEDS_RECONCILIATION,
        )
        .order_by(StudyStatusChange.id)
    ):
        since[study_id] = at  # the latest time it was put aside
    return [
        ReconciliationItem(
            study_id=study.id,
            accession_number=study.accession_number,
            dicom_patient_id=study.dicom_patient_id,
            dicom_patient_name=study.dicom_patient_name,
            dicom_birth_date=study.dicom_birth_date,
            description=study.study_description,
            reason=study.reconciliation_reason or "",
            since=as_utc(since[study.id]) if study.id in since else None,
            candidates=_candidates(session, study),
        )
        for study in studies
    ]


def _checked_note(note: str) -> str:
    text = note.strip()
    if not text:
        raise linking.ReconciliationError("say why (the note is kept in the audit trail)")
    if len(text) > MAX_NOTE_LENGTH:
        raise linking.ReconciliationError(f"the note is at most {MAX_NOTE_LENGTH} characters")
    return text


def _waiting_study(session: Session, study_id: int) -> Study:
    study = session.get(Study, study_id, with_for_update=True)
    if study is None:
        raise linking.ReconciliationError(f"no study {study_id}")
    if study.status is not StudyStatus.NEEDS_RECONCILIATION:
        raise linking.ReconciliationError(
            f"study {study_id} does not need reconciliation (it is {study.status.value})"
        )
    return study


def link_order(
    session: Session,
    *,
    study_id: int,
    order_id: int,
    admin: User,
    note: str,
    now: datetime,
    client_address: str | None = None,
) -> Study:
    """Link the study to the order the admin chose (the identity check is theirs)."""
    _waiting_study(session, study_id)
    study = linking.resolve_reconciliation(
        session,
        study_id=study_id,
        admin=admin,
        order_id=order_id,
        note=_checked_note(note),
        now=now,
    )
    audit.record(
        session,
        actor=admin.username,
        action="reconciliation.link",
        object_type="study",
        object_id=study.id,
        user_id=admin.id,
        study_id=study.id,
        client_address=client_address,
        detail={"order_id": order_id},
    )
    return study


def dismiss(
    session: Session,
    *,
    study_id: int,
    admin: User,
    note: str,
    now: datetime,
    client_address: str | None = None,
) -> Study:
    """The study is not reported in Radscribe: failed, flag dismissed, reason kept."""
    if admin.role is not Role.ADMIN or not admin.active:
        raise linking.ReconciliationError("only an active admin can dismiss a reconciliation")
    text = _checked_note(note)
    study = _waiting_study(session, study_id)
    reason = study.reconciliation_reason
    study.reconciliation_reason = None
    study.failure_reason = f"reconciliation dismissed by {admin.username}: {text}"
    change_status(session, study, StudyStatus.FAILED, user=admin, now=now)
    for flag in session.scalars(
        select(ReportFlag).where(
            ReportFlag.study_id == study.id,
            ReportFlag.kind == FlagKind.RECONCILIATION,
            ReportFlag.status == FlagStatus.OPEN,
        )
    ):
        flag.status = FlagStatus.DISMISSED
        flag.resolved_by_id = admin.id
        flag.resolved_at = now
    audit.record(
        session,
        actor=admin.username,
        action="reconciliation.dismiss",
        object_type="study",
        object_id=study.id,
        user_id=admin.id,
        study_id=study.id,
        client_address=client_address,
        detail={"note": text, "reason": reason},
    )
    session.flush()
    return study
