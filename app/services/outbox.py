"""The outbound HL7 outbox: ORU^R01 rows written with the signature, read by the sender.

A row is created in the signing transaction (:func:`enqueue_report`), with
its control ID fixed for life, so every retry repeats the same MSH-10 and a
receiver can drop repeats.  Messages of one patient share an ordering key
and go out strictly in id order; a dead-lettered message holds back the
later ones of its patient until an admin requeues it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import OutboxStatus, ReportKind
from app.core.settings import Settings
from app.core.tables import Order, OutboxMessage, Patient, Report, ReportVersion, Study, User
from app.emr.messages import (
    Interpreter,
    OrderInfo,
    PatientInfo,
    ReportSection,
    ResultInfo,
    build_oru_r01,
)
from app.services import audit

MESSAGE_TYPE_ORU = "ORU^R01"
DESTINATION_EMR = "emr"
CONTROL_ID_PREFIX = "RS"
CONTROL_ID_LENGTH = 20
RESULT_STATUS = {
    ReportKind.PRELIMINARY: "P",
    ReportKind.FINAL: "F",
    ReportKind.ADDENDUM: "C",
}
UNDELIVERED = (OutboxStatus.PENDING, OutboxStatus.SENT, OutboxStatus.RETRYING)


class OutboxError(ValueError):
    """A report cannot be turned into an outbound message; the message says why."""


def as_utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were written in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def new_control_id() -> str:
    return (CONTROL_ID_PREFIX + uuid.uuid4().hex.upper())[:CONTROL_ID_LENGTH]


def ordering_key(patient: Patient) -> str:
    return f"patient:{patient.id}"


# --------------------------------------------------------------------------- creation


def _interpreter(user: User) -> Interpreter:
    display = (user.display_name or user.username).strip()
    given, _, family = display.rpartition(" ")
    return Interpreter(id=user.username, family_name=family or display, given_name=given)


def patient_info(patient: Patient) -> PatientInfo:
    return PatientInfo(
        mrn=patient.mrn,
        issuer=patient.issuer,
        family_name=patient.family_name,
        given_name=patient.given_name,
        birth_date=patient.birth_date or "",
        sex=patient.sex if patient.sex in ("M", "F", "O", "U") else "U",
    )


def order_info(order: Order) -> OrderInfo:
    return OrderInfo(
        accession_number=order.accession_number,
        accession_issuer=order.accession_issuer,
        placer_order_number=order.placer_order_number or order.accession_number,
        procedure_code=order.procedure_code or "",
        procedure_text=order.procedure_text or "",
        priority="S" if order.priority.value == "stat" else "R",
        reason_for_exam=order.reason_for_exam,
        clinical_history=order.clinical_history,
        ordering_provider=order.ordering_provider,
        order_control="NW",
    )


def enqueue_report(
    session: Session,
    *,
    version: ReportVersion,
    sections: Sequence[tuple[str, str]],
    study: Study,
    order: Order,
    patient: Patient,
    principal: User,
    assistant: User | None,
    settings: Settings,
    now: datetime,
) -> OutboxMessage:
    """Build the ORU^R01 of a human-signed version, validate it STRICT and queue it."""
    if version.ai_generated or version.kind is ReportKind.DRAFT:
        raise OutboxError("an AI draft never leaves Radscribe; only signed versions are sent")
    status = RESULT_STATUS.get(version.kind)
    if status is None:
        raise OutboxError(f"a {version.kind.value} version has no HL7 result status")
    acquired = study.acquired_at
    result = ResultInfo(
        result_status=status,
        sections=tuple(ReportSection(name, text) for name, text in sections if text.strip()),
        principal_interpreter=_interpreter(principal),
        assistant_interpreter=_interpreter(assistant) if assistant is not None else None,
        signed_at=now,
        observation_time=as_utc(acquired) if acquired is not None else None,
        model_version=version.model_version,
    )
    control_id = new_control_id()
    er7 = build_oru_r01(
        patient_info(patient),
        order_info(order),
        result,
        control_id=control_id,
        processing_id=settings.hl7_processing_id,
        when=now,
    )
    # build_oru_r01 has validated the whole message at hl7apy's STRICT level;
    # it raises instead of returning text that fails, so nothing unchecked is queued.
    message = OutboxMessage(
        report_version_id=version.id,
        ordering_key=ordering_key(patient),
        control_id=control_id,
        message_type=MESSAGE_TYPE_ORU,
        destination=DESTINATION_EMR,
        payload=er7.encode("utf-8"),
        status=OutboxStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(message)
    session.flush()
    return message


# --------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class Delivery:
    """One message the sender may deliver now."""

    id: int
    ordering_key: str
    control_id: str
    payload: bytes
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class DeliveryResult:
    id: int
    accepted: bool
    ack_code: str | None
    error: str | None
    retryable: bool = True
    sent_at: datetime | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float

    def delay(self, attempts: int) -> float:
        return float(min(self.base_seconds * (2 ** max(attempts - 1, 0)), self.max_seconds))


def due_batch(session: Session, *, now: datetime, limit: int) -> list[Delivery]:
    """The next messages to send, in id order, keeping each patient's order.

    For each ordering key only its oldest undelivered message may go first;
    later messages of the same key ride along behind it in the same batch
    (the sender stops a key at its first failure).  Keys with a dead letter
    wait.
    """
    blocked = set(
        session.scalars(
            select(OutboxMessage.ordering_key).where(OutboxMessage.status == OutboxStatus.DEAD)
        ).all()
    )
    rows = session.execute(
        select(
            OutboxMessage.id,
            OutboxMessage.ordering_key,
            OutboxMessage.control_id,
            OutboxMessage.payload,
            OutboxMessage.attempts,
            OutboxMessage.next_attempt_at,
            OutboxMessage.created_at,
        )
        .where(OutboxMessage.status.in_(UNDELIVERED))
        .order_by(OutboxMessage.id)
        .limit(limit)
    ).all()
    batch: list[Delivery] = []
    seen: set[str] = set()
    held: set[str] = set(blocked)
    for row in rows:
        key = row.ordering_key
        if key in held:
            continue
        if key not in seen:
            seen.add(key)
            if as_utc(row.next_attempt_at) > now:
                held.add(key)  # its head is waiting out a backoff; so do the others
                continue
        batch.append(
            Delivery(
                id=row.id,
                ordering_key=key,
                control_id=row.control_id,
                payload=row.payload,
                attempts=row.attempts,
                created_at=as_utc(row.created_at),
            )
        )
    return batch


EXPORT_ACTION = "report.export"


def record_results(
    factory: sessionmaker[Session],
    results: Sequence[DeliveryResult],
    *,
    policy: RetryPolicy,
    now: datetime,
) -> list[int]:
    """Store what happened to each attempt in one transaction; returns dead-lettered ids.

    Every attempt is an export of patient data: its audit event (the system sent
    report version X: acknowledged, retrying or dead) commits with its outcome.
    """
    dead: list[int] = []
    if not results:
        return dead
    with factory() as session, session.begin():
        messages = {
            m.id: m
            for m in session.scalars(
                select(OutboxMessage).where(OutboxMessage.id.in_([r.id for r in results]))
            )
        }
        study_of = _studies_of_versions(session, [m.report_version_id for m in messages.values()])
        for result in results:
            message = messages.get(result.id)
            if message is None or message.status in (OutboxStatus.ACKED, OutboxStatus.DEAD):
                continue
            message.attempts += 1
            message.sent_at = result.sent_at or now
            message.ack_code = result.ack_code
            if result.accepted:
                message.status = OutboxStatus.ACKED
                message.acked_at = now
                message.last_error = None
            elif not result.retryable or message.attempts >= policy.max_attempts:
                message.status = OutboxStatus.DEAD
                message.last_error = result.error
                dead.append(message.id)
            else:
                message.status = OutboxStatus.RETRYING
                message.last_error = result.error
                message.next_attempt_at = now + timedelta(seconds=policy.delay(message.attempts))
            _audit_export(session, message, result, study_of.get(message.report_version_id))
    return dead


def _studies_of_versions(session: Session, version_ids: list[int]) -> dict[int, int]:
    rows = session.execute(
        select(ReportVersion.id, Report.study_id)
        .join(Report, Report.id == ReportVersion.report_id)
        .where(ReportVersion.id.in_(version_ids))
    )
    return {version_id: study_id for version_id, study_id in rows}


def _audit_export(
    session: Session, message: OutboxMessage, result: DeliveryResult, study_id: int | None
) -> None:
    outcome = {
        OutboxStatus.ACKED: "acknowledged",
        OutboxStatus.DEAD: "dead-lettered",
    }.get(message.status, "retrying")
    audit.record(
        session,
        actor=audit.SYSTEM_ACTOR,
        action=EXPORT_ACTION,
        object_type="report_version",
        object_id=message.report_version_id,
        study_id=study_id,
        detail={
            "outcome": outcome,
            "destination": message.destination,
            "message_type": message.message_type,
            "control_id": message.control_id,
            "attempt": message.attempts,
            "ack_code": result.ack_code,
            "error": result.error,
        },
    )


def dead_letter_count(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status == OutboxStatus.DEAD)
        )
        or 0
    )


# --------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class OutboxRow:
    id: int
    control_id: str
    message_type: str
    ordering_key: str
    status: str
    attempts: int
    ack_code: str | None
    created_at: str
    next_attempt_at: str
    acked_at: str | None
    last_error: str | None
    report_version_id: int


def list_outbox(
    session: Session, *, limit: int = 100, status: str | None = None
) -> list[OutboxRow]:
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if status:
        query = query.where(OutboxMessage.status == OutboxStatus(status))
    return [
        OutboxRow(
            id=m.id,
            control_id=m.control_id,
            message_type=m.message_type,
            ordering_key=m.ordering_key,
            status=m.status.value,
            attempts=m.attempts,
            ack_code=m.ack_code,
            created_at=as_utc(m.created_at).isoformat(),
            next_attempt_at=as_utc(m.next_attempt_at).isoformat(),
            acked_at=as_utc(m.acked_at).isoformat() if m.acked_at else None,
            last_error=m.last_error,
            report_version_id=m.report_version_id,
        )
        for m in session.scalars(query)
    ]


def status_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    ).all()
    return {status.value: int(count) for status, count in rows}


def requeue(session: Session, *, message_id: int, now: datetime | None = None) -> OutboxMessage:
    """Give a dead-lettered message a fresh set of attempts (same control ID)."""
    message = session.get(OutboxMessage, message_id)
    if message is None:
        raise OutboxError(f"no outbox message {message_id}")
    if message.status is not OutboxStatus.DEAD:
        raise OutboxError(f"outbox message {message_id} is {message.status.value}, not dead")
    message.status = OutboxStatus.RETRYING
    message.attempts = 0
    message.next_attempt_at = now or datetime.now(UTC)
    return message
