"""Linking studies to EMR orders, and the reconciliation an admin resolves.

A study is linked to an order only by accession number and its issuer, and
only when the DICOM PatientID, name and birth date agree with the order's
PID.  Never by patient ID alone.  A mismatch, two active orders, or a
cancelled order puts the study in ``needs_reconciliation`` (with a reason
and an open reconciliation flag), which blocks signing until an admin
resolves it.

Call :func:`link_study` when a study arrives (the DICOM side) and
:func:`link_studies_for_order` when an order arrives or changes (the HL7
side); both run in the caller's transaction.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.domain import FlagKind, FlagStatus, OrderStatus, Role, StudyStatus
from app.core.tables import Order, Patient, ReportFlag, Study, StudyStatusChange, User
from app.services import audit
from app.services.study_status import change_status

log = logging.getLogger(__name__)

ACTIVE_ORDER = frozenset({OrderStatus.OPEN, OrderStatus.IN_PROGRESS, OrderStatus.COMPLETED})
SIGNED_STUDY = frozenset({StudyStatus.FINAL, StudyStatus.ADDENDED})
DEFAULT_RESUME_STATUS = StudyStatus.READY
MAX_PATIENT_MERGES = 16


class ReconciliationError(ValueError):
    """An admin's resolution cannot be applied; the message says why."""


@dataclass(frozen=True)
class LinkResult:
    order_id: int | None
    reason: str | None  # set when the study needs reconciliation

    @property
    def linked(self) -> bool:
        return self.order_id is not None


def needs_reconciliation(study: Study) -> bool:
    return study.status is StudyStatus.NEEDS_RECONCILIATION or bool(study.reconciliation_reason)


# --------------------------------------------------------------------------- identity


def _fold(text: str) -> str:
    """Case, accents and spacing folded away for a name comparison."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"[\s.,'-]+", " ", plain).strip().casefold()


def _dicom_name_parts(person_name: str) -> tuple[str, str]:
    alphabetic = person_name.split("=", 1)[0]
    parts = alphabetic.split("^")
    family = parts[0] if parts else ""
    given = parts[1] if len(parts) > 1 else ""
    return _fold(family), _fold(given)


def identity_mismatches(study: Study, patient: Patient | None) -> list[str]:
    """Which of PatientID, name and birth date disagree (or cannot be compared)."""
    if patient is None:
        return ["the order has no patient"]
    problems = []
    if study.dicom_patient_id.strip() != patient.mrn.strip():
        problems.append("patient ID differs")
    family, given = _dicom_name_parts(study.dicom_patient_name)
    if family != _fold(patient.family_name) or given != _fold(patient.given_name):
        problems.append("patient name differs")
    if not study.dicom_birth_date or not patient.birth_date:
        problems.append("birth date missing")
    elif study.dicom_birth_date.strip() != patient.birth_date.strip():
        problems.append("birth date differs")
    return problems


def _issuers_agree(study_issuer: str, order_issuer: str) -> bool:
    """Equal issuers agree; an empty issuer on one side cannot contradict the other."""
    return not study_issuer or not order_issuer or study_issuer == order_issuer


def _surviving_patient(session: Session, patient_id: int | None) -> Patient | None:
    patient = session.get(Patient, patient_id) if patient_id is not None else None
    for _ in range(MAX_PATIENT_MERGES):
        if patient is None or patient.merged_into_id is None:
            break
        patient = session.get(Patient, patient.merged_into_id)
    return patient


# --------------------------------------------------------------------------- linking


def candidate_orders(session: Session, study: Study) -> list[Order]:
    orders = session.scalars(
        select(Order).where(Order.accession_number == study.accession_number).order_by(Order.id)
    ).all()
    return [o for o in orders if _issuers_agree(study.accession_issuer, o.accession_issuer)]


def link_study(session: Session, study: Study, *, now: datetime | None = None) -> LinkResult:
    """Link ``study`` to its order, or put it into reconciliation with the reason.

    A signed study keeps its link.  A study whose order has not arrived yet
    stays unlinked without a reason; the order's arrival calls this again.
    """
    if study.status in SIGNED_STUDY:
        return LinkResult(order_id=study.order_id, reason=None)
    if not study.accession_number.strip():
        return _reconcile(session, study, "the study has no accession number", now=now)
    candidates = candidate_orders(session, study)
    if not candidates:
        return LinkResult(order_id=None, reason=None)
    active = [o for o in candidates if o.status in ACTIVE_ORDER]
    inactive = [o for o in candidates if o.status not in ACTIVE_ORDER]
    if inactive:
        states = ", ".join(sorted({o.status.value for o in inactive}))
        return _reconcile(
            session,
            study,
            f"accession {study.accession_number} matches an order that is {states}",
            now=now,
        )
    if len(active) > 1:
        return _reconcile(
            session,
            study,
            f"accession {study.accession_number} matches {len(active)} open orders",
            now=now,
        )
    order = active[0]
    patient = _surviving_patient(session, order.patient_id)
    problems = identity_mismatches(study, patient)
    if problems:
        return _reconcile(
            session,
            study,
            f"DICOM identity disagrees with order {order.accession_number}: " + "; ".join(problems),
            now=now,
        )
    _link(session, study, order, patient, now=now, user=None)
    return LinkResult(order_id=order.id, reason=None)


def link_studies_for_order(session: Session, order: Order) -> list[LinkResult]:
    """Re-evaluate every study with this order's accession (the order arrived or changed)."""
    studies = session.scalars(
        select(Study).where(Study.accession_number == order.accession_number).order_by(Study.id)
    ).all()
    return [
        link_study(session, study)
        for study in studies
        if _issuers_agree(study.accession_issuer, order.accession_issuer)
    ]


def _change_status(
    session: Session,
    study: Study,
    status: StudyStatus,
    *,
    user: User | None,
    now: datetime | None,
) -> None:
    change_status(session, study, status, user=user, now=now)


def _status_before_reconciliation(session: Session, study: Study) -> StudyStatus:
    change = session.scalar(
        select(StudyStatusChange)
        .where(
            StudyStatusChange.study_id == study.id,
            StudyStatusChange.to_status == StudyStatus.NEEDS_RECONCILIATION,
        )
        .order_by(StudyStatusChange.id.desc())
        .limit(1)
    )
    if change is None or change.from_status is None:
        return DEFAULT_RESUME_STATUS
    return change.from_status


def _reconcile(session: Session, study: Study, reason: str, *, now: datetime | None) -> LinkResult:
    session.flush()
    unchanged = (
        study.status is StudyStatus.NEEDS_RECONCILIATION
        and study.reconciliation_reason == reason
        and study.order_id is None
    )
    if unchanged:
        return LinkResult(order_id=None, reason=reason)
    study.order_id = None
    study.reconciliation_reason = reason
    _change_status(session, study, StudyStatus.NEEDS_RECONCILIATION, user=None, now=now)
    flag = session.scalar(
        select(ReportFlag).where(
            ReportFlag.study_id == study.id,
            ReportFlag.kind == FlagKind.RECONCILIATION,
            ReportFlag.status == FlagStatus.OPEN,
        )
    )
    if flag is None:
        session.add(
            ReportFlag(
                study_id=study.id,
                kind=FlagKind.RECONCILIATION,
                message=reason,
                status=FlagStatus.OPEN,
            )
        )
    else:
        flag.message = reason
    audit.record(
        session,
        actor=audit.SYSTEM_ACTOR,
        action="study.needs_reconciliation",
        object_type="study",
        object_id=study.id,
        study_id=study.id,
        detail={"reason": reason, "accession_number": study.accession_number},
    )
    session.flush()
    log.warning("study %s (accession %s) needs reconciliation", study.id, study.accession_number)
    return LinkResult(order_id=None, reason=reason)


def _link(
    session: Session,
    study: Study,
    order: Order,
    patient: Patient | None,
    *,
    now: datetime | None,
    user: User | None,
) -> None:
    already = study.order_id == order.id and not needs_reconciliation(study)
    study.order_id = order.id
    study.patient_id = patient.id if patient else order.patient_id
    study.priority = order.priority
    if needs_reconciliation(study):
        resume = _status_before_reconciliation(session, study)
        study.reconciliation_reason = None
        _change_status(session, study, resume, user=user, now=now)
        for flag in session.scalars(
            select(ReportFlag).where(
                ReportFlag.study_id == study.id,
                ReportFlag.kind == FlagKind.RECONCILIATION,
                ReportFlag.status == FlagStatus.OPEN,
            )
        ):
            flag.status = FlagStatus.ACCEPTED
            flag.resolved_by_id = user.id if user else None
            flag.resolved_at = now or datetime.now(UTC)
    if not already:
        audit.record(
            session,
            actor=user.username if user else audit.SYSTEM_ACTOR,
            action="study.link_order",
            object_type="study",
            object_id=study.id,
            user_id=user.id if user else None,
            study_id=study.id,
            detail={"order_id": order.id, "accession_number": order.accession_number},
        )
    session.flush()


def resolve_reconciliation(
    session: Session,
    *,
    study_id: int,
    admin: User,
    order_id: int,
    note: str,
    now: datetime | None = None,
) -> Study:
    """An admin links the study to ``order_id`` after checking the patient's identity."""
    if admin.role is not Role.ADMIN or not admin.active:
        raise ReconciliationError("only an active admin can resolve a reconciliation")
    if not note.strip():
        raise ReconciliationError("say why the study and the order belong together")
    study = session.get(Study, study_id)
    if study is None:
        raise ReconciliationError(f"no study {study_id}")
    order = session.get(Order, order_id)
    if order is None:
        raise ReconciliationError(f"no order {order_id}")
    if order.status not in ACTIVE_ORDER:
        raise ReconciliationError(f"order {order.accession_number} is {order.status.value}")
    patient = _surviving_patient(session, order.patient_id)
    _link(session, study, order, patient, now=now, user=admin)
    audit.record(
        session,
        actor=admin.username,
        action="study.reconcile",
        object_type="study",
        object_id=study.id,
        user_id=admin.id,
        study_id=study.id,
        detail={"order_id": order.id, "note": note.strip()},
    )
    return study
