"""Patients and orders from the EMR: ADT^A01/A04/A08/A40, ORM^O01 and OMI^O23.

:func:`apply_message` runs in the caller's transaction after the raw message
is stored.  It raises :class:`MessageRejected` for a message Radscribe does
not handle (the ACK is AR) and :class:`ProcessingError` when the content
cannot be applied (AE); either way the caller rolls the transaction back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.domain import OrderStatus, Priority
from app.core.tables import Order, Patient, Study
from app.emr.messages import (
    ERROR_REQUIRED_FIELD_MISSING,
    ERROR_TABLE_VALUE_NOT_FOUND,
    ERROR_UNKNOWN_KEY,
    ERROR_UNSUPPORTED_EVENT_CODE,
    ERROR_UNSUPPORTED_MESSAGE_TYPE,
    OrderInfo,
    PatientInfo,
)
from app.emr.parse import ParsedMessage
from app.services import audit, linking

log = logging.getLogger(__name__)

ACTOR = "hl7-listener"
ADT_UPSERT_EVENTS = frozenset({"A01", "A04", "A08"})
ADT_MERGE_EVENT = "A40"
ORDER_MESSAGES = frozenset({("ORM", "O01"), ("OMI", "O23")})
SUPPORTED_MESSAGE_CODES = frozenset({"ADT", "ORM", "OMI"})
MAX_MERGE_DEPTH = 16


class MessageRejected(ValueError):
    """Radscribe does not handle this message (unsupported type, missing segment): AR."""

    def __init__(self, reason: str, *, code: str) -> None:
        super().__init__(reason)
        self.code = code


class ProcessingError(ValueError):
    """The message is well formed but cannot be applied (unknown order, no accession): AE."""

    def __init__(self, reason: str, *, code: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True)
class Applied:
    """What a message changed, for the log and the stored message row."""

    summary: str


def is_supported(message_code: str, trigger_event: str) -> bool:
    if message_code == "ADT":
        return trigger_event in ADT_UPSERT_EVENTS or trigger_event == ADT_MERGE_EVENT
    return (message_code, trigger_event) in ORDER_MESSAGES


def apply_message(session: Session, message: ParsedMessage, *, message_id: int) -> Applied:
    header = message.header
    if header.message_code == "ADT":
        if header.trigger_event in ADT_UPSERT_EVENTS:
            return _apply_adt(session, message)
        if header.trigger_event == ADT_MERGE_EVENT:
            return _apply_merge(session, message)
        raise MessageRejected(
            f"ADT^{header.trigger_event} is not handled (A01, A04, A08, A40 are)",
            code=ERROR_UNSUPPORTED_EVENT_CODE,
        )
    if (header.message_code, header.trigger_event) in ORDER_MESSAGES:
        return _apply_orders(session, message, message_id=message_id)
    raise MessageRejected(
        f"message type {header.message_type} is not handled "
        "(ADT^A01/A04/A08/A40, ORM^O01 and OMI^O23 are)",
        code=ERROR_UNSUPPORTED_MESSAGE_TYPE,
    )


# --------------------------------------------------------------------------- patients


def surviving(session: Session, patient: Patient) -> Patient:
    """Follow merges to the patient record that is still in use."""
    current = patient
    for _ in range(MAX_MERGE_DEPTH):
        if current.merged_into_id is None:
            return current
        merged = session.get(Patient, current.merged_into_id)
        if merged is None:
            return current
        current = merged
    return current


def find_patient(session: Session, mrn: str, issuer: str) -> Patient | None:
    return session.scalar(select(Patient).where(Patient.mrn == mrn, Patient.issuer == issuer))


def upsert_patient(session: Session, info: PatientInfo) -> Patient:
    patient = find_patient(session, info.mrn, info.issuer)
    if patient is None:
        patient = Patient(mrn=info.mrn, issuer=info.issuer)
        session.add(patient)
    else:
        patient = surviving(session, patient)
    if info.family_name or info.given_name:
        patient.family_name = info.family_name
        patient.given_name = info.given_name
    if info.birth_date:
        patient.birth_date = info.birth_date
    if info.sex:
        patient.sex = info.sex
    session.flush()
    return patient


def _require_patient(message: ParsedMessage) -> PatientInfo:
    if message.patient is None:
        raise MessageRejected(
            f"{message.header.message_type} has no PID segment with a patient identifier (PID-3)",
            code=ERROR_REQUIRED_FIELD_MISSING,
        )
    return message.patient


def _apply_adt(session: Session, message: ParsedMessage) -> Applied:
    patient = upsert_patient(session, _require_patient(message))
    audit.record(
        session,
        actor=ACTOR,
        action=f"patient.adt_{message.header.trigger_event.lower()}",
        object_type="patient",
        object_id=patient.id,
        detail={"control_id": message.header.control_id},
    )
    # A corrected name or birth date may make a waiting study match its order.
    for study in _studies_of_patient_orders(session, patient):
        linking.link_study(session, study)
    return Applied(summary=f"patient {patient.id} upserted")


def _apply_merge(session: Session, message: ParsedMessage) -> Applied:
    info = _require_patient(message)
    if message.prior_patient is None:
        raise MessageRejected(
            "ADT^A40 has no MRG segment with the prior identifier (MRG-1)",
            code=ERROR_REQUIRED_FIELD_MISSING,
        )
    prior_mrn, prior_issuer = message.prior_patient
    prior = find_patient(session, prior_mrn, prior_issuer)
    target = find_patient(session, info.mrn, info.issuer)
    if prior is not None and target is None:
        # The surviving identifier is new to us: the prior record takes it.
        prior.mrn, prior.issuer = info.mrn, info.issuer
        session.flush()
        survivor = upsert_patient(session, info)
        summary = f"patient {survivor.id} renamed by merge"
    else:
        survivor = upsert_patient(session, info)
        if prior is not None and prior.id != survivor.id:
            prior.merged_into_id = survivor.id
            session.execute(
                update(Order).where(Order.patient_id == prior.id).values(patient_id=survivor.id)
            )
            session.execute(
                update(Study).where(Study.patient_id == prior.id).values(patient_id=survivor.id)
            )
            session.flush()
            summary = f"patient {prior.id} merged into {survivor.id}"
        else:
            summary = f"patient {survivor.id}: nothing to merge"
    audit.record(
        session,
        actor=ACTOR,
        action="patient.merge",
        object_type="patient",
        object_id=survivor.id,
        detail={
            "control_id": message.header.control_id,
            "prior_patient_id": getattr(prior, "id", None),
        },
    )
    for study in _studies_of_patient_orders(session, survivor):
        linking.link_study(session, study)
    return Applied(summary=summary)


def _studies_of_patient_orders(session: Session, patient: Patient) -> list[Study]:
    accessions = session.scalars(
        select(Order.accession_number).where(Order.patient_id == patient.id)
    ).all()
    if not accessions:
        return []
    return list(session.scalars(select(Study).where(Study.accession_number.in_(accessions))))


# --------------------------------------------------------------------------- orders

STATUS_BY_CONTROL = {"CA": OrderStatus.CANCELLED, "DC": OrderStatus.DISCONTINUED}


def _apply_orders(session: Session, message: ParsedMessage, *, message_id: int) -> Applied:
    info = _require_patient(message)
    if not message.orders:
        raise MessageRejected(
            f"{message.header.message_type} has no ORC/OBR order", code=ERROR_REQUIRED_FIELD_MISSING
        )
    patient = upsert_patient(session, info)
    changed: list[str] = []
    for order_info in message.orders:
        order = _apply_order(session, patient, order_info, message_id=message_id)
        changed.append(f"{order_info.order_control} {order.accession_number}")
        audit.record(
            session,
            actor=ACTOR,
            action=f"order.{order_info.order_control.lower()}",
            object_type="order",
            object_id=order.id,
            detail={
                "control_id": message.header.control_id,
                "accession_number": order.accession_number,
                "accession_issuer": order.accession_issuer,
            },
        )
        linking.link_studies_for_order(session, order)
    return Applied(summary="orders: " + ", ".join(changed))


def _apply_order(session: Session, patient: Patient, info: OrderInfo, *, message_id: int) -> Order:
    if not info.accession_number:
        raise ProcessingError(
            "order has no accession number (IPC-1, OBR-18 or filler order number ORC-3)",
            code=ERROR_REQUIRED_FIELD_MISSING,
        )
    control = info.order_control
    order = session.scalar(
        select(Order).where(
            Order.accession_number == info.accession_number,
            Order.accession_issuer == info.accession_issuer,
        )
    )
    if control == "NW":
        if order is None:
            order = Order(
                accession_number=info.accession_number, accession_issuer=info.accession_issuer
            )
            session.add(order)
        elif order.status in (OrderStatus.CANCELLED, OrderStatus.DISCONTINUED):
            raise ProcessingError(
                f"order {info.accession_number} was cancelled; a new order needs a new accession",
                code=ERROR_UNKNOWN_KEY,
            )
        _fill(order, patient, info, message_id=message_id)
    elif control == "XO":
        if order is None:
            raise ProcessingError(
                f"no order {info.accession_number} to change (ORC-1 XO)", code=ERROR_UNKNOWN_KEY
            )
        if order.status in (OrderStatus.CANCELLED, OrderStatus.DISCONTINUED):
            raise ProcessingError(
                f"order {info.accession_number} is {order.status.value}; it cannot be changed",
                code=ERROR_UNKNOWN_KEY,
            )
        _fill(order, patient, info, message_id=message_id)
    elif control in STATUS_BY_CONTROL:
        if order is None:
            raise ProcessingError(
                f"no order {info.accession_number} to cancel (ORC-1 {control})",
                code=ERROR_UNKNOWN_KEY,
            )
        order.status = STATUS_BY_CONTROL[control]
        order.message_id = message_id
    else:
        raise ProcessingError(
            f"order control {control!r} is not handled (NW, XO, CA, DC are)",
            code=ERROR_TABLE_VALUE_NOT_FOUND,
        )
    session.flush()
    log.info("order %s/%s: %s", info.accession_number, info.accession_issuer, control)
    return order


def _fill(order: Order, patient: Patient, info: OrderInfo, *, message_id: int) -> None:
    order.patient_id = patient.id
    order.placer_order_number = info.placer_order_number or order.placer_order_number
    order.procedure_code = info.procedure_code or order.procedure_code
    order.procedure_text = info.procedure_text or order.procedure_text
    order.priority = Priority.STAT if info.priority == "S" else Priority.ROUTINE
    order.reason_for_exam = info.reason_for_exam or order.reason_for_exam
    order.clinical_history = info.clinical_history or order.clinical_history
    order.ordering_provider = info.ordering_provider or order.ordering_provider
    order.message_id = message_id
