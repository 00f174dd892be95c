"""Outbox delivery to real receivers: txHL7 as the EMR, outages, restarts, dead letters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import OutboxStatus, ReportKind, Role
from app.core.settings import Settings
from app.core.tables import OutboxMessage, User
from app.emr.messages import PatientInfo
from app.emr.runtime import Hl7Component
from app.services import outbox
from app.services.signing import sign_report

from .conftest import (  # type: ignore[import-not-found]
    TxHl7Receiver,
    hl7_settings,
    linked_studies,
    make_user,
    wait_for,
)

PATIENTS = [
    PatientInfo("MRN-A", "HOSP", "Adams", "Amy", "19800101", "F"),
    PatientInfo("MRN-B", "HOSP", "Brown", "Ben", "19810202", "M"),
]
TEXT = {"findings": "No acute finding.", "impression": "Normal."}
DELIVERY_TIMEOUT = 30.0


def _fast(settings: Settings, port: int, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "emr_hl7_host": "127.0.0.1",
        "emr_hl7_port": port,
        "hl7_ack_timeout_seconds": 2.0,
        "hl7_retry_base_seconds": 0.05,
        "hl7_retry_max_seconds": 0.3,
        "hl7_max_attempts": 1000,
        "hl7_outbox_poll_seconds": 0.05,
        "hl7_lease_seconds": 2.0,
    }
    values.update(overrides)
    return hl7_settings(settings, **values)


@contextmanager
def sender(settings: Settings, factory: sessionmaker[Session]) -> Iterator[Hl7Component]:
    component = Hl7Component(settings, factory, listen=False)
    component.start()
    try:
        yield component
    finally:
        component.stop()


def _radiologist(factory: sessionmaker[Session]) -> User:
    with factory() as session, session.begin():
        return make_user(session, "attending", Role.RADIOLOGIST, "Ann Smith")


def _sign(factory: sessionmaker[Session], settings: Settings, study_id: int, who: User) -> str:
    with factory() as session, session.begin():
        signed = sign_report(
            session,
            study_id=study_id,
            signer=who,
            kind=ReportKind.FINAL,
            sections=TEXT,
            settings=settings,
        )
        assert signed.outbox_message is not None
        return signed.outbox_message.control_id


def _statuses(factory: sessionmaker[Session]) -> dict[str, OutboxStatus]:
    with factory() as session:
        return {m.control_id: m.status for m in session.scalars(select(OutboxMessage))}


def _all_acked(factory: sessionmaker[Session]) -> bool:
    statuses = _statuses(factory)
    return bool(statuses) and set(statuses.values()) == {OutboxStatus.ACKED}


def _attempts(factory: sessionmaker[Session], control_id: str) -> int:
    with factory() as session:
        message = session.scalar(
            select(OutboxMessage).where(OutboxMessage.control_id == control_id)
        )
        return message.attempts if message is not None else 0


def _ordering_key(factory: sessionmaker[Session]) -> dict[str, str]:
    with factory() as session:
        return {m.control_id: m.ordering_key for m in session.scalars(select(OutboxMessage))}


def test_outage_and_restarts_lose_nothing_and_keep_order(
    txhl7_receiver: TxHl7Receiver, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    fast = _fast(settings, txhl7_receiver.port, hl7_ack_timeout_seconds=0.5)
    studies = linked_studies(session_factory, PATIENTS, per_patient=4)
    studies += linked_studies(session_factory, PATIENTS[:1], per_patient=1, first_number=90)
    doctor = _radiologist(session_factory)
    signed: list[str] = []
    with sender(fast, session_factory):
        for study in studies[:2] + studies[4:6]:
            signed.append(_sign(session_factory, fast, study, doctor))
        wait_for(lambda: _all_acked(session_factory), timeout=DELIVERY_TIMEOUT, what="first ACKs")

        txhl7_receiver.stop()  # the EMR goes away while radiologists keep signing
        for study in studies[2:3] + studies[6:7]:
            signed.append(_sign(session_factory, fast, study, doctor))
        wait_for(
            lambda: any(m == OutboxStatus.RETRYING for m in _statuses(session_factory).values()),
            timeout=DELIVERY_TIMEOUT,
            what="a retry while the EMR is down",
        )
    # Radscribe restarts too (the sender above stopped); one more report is signed meanwhile.
    for study in studies[3:4] + studies[7:8]:
        signed.append(_sign(session_factory, fast, study, doctor))
    txhl7_receiver.start()
    with sender(fast, session_factory):
        wait_for(lambda: _all_acked(session_factory), timeout=DELIVERY_TIMEOUT, what="all ACKs")

        # A lost ACK: the frozen EMR takes the message but answers only after the
        # sender timed out, so the message arrives twice, with one control ID.
        txhl7_receiver.pause()
        try:
            repeated = _sign(session_factory, fast, studies[8], doctor)
            signed.append(repeated)
            wait_for(
                lambda: _attempts(session_factory, repeated) >= 1,
                timeout=DELIVERY_TIMEOUT,
                what="an ACK timeout",
            )
        finally:
            txhl7_receiver.resume()
        wait_for(lambda: _all_acked(session_factory), timeout=DELIVERY_TIMEOUT, what="all ACKs")

    received = txhl7_receiver.received_control_ids()
    assert set(received) == set(signed)  # every report arrived, no control ID invented
    assert received.count(repeated) >= 2  # the repeat carried the same MSH-10
    keys = _ordering_key(session_factory)
    for key in set(keys.values()):
        sent_order = [cid for cid in signed if keys[cid] == key]
        first_arrivals = list(dict.fromkeys(cid for cid in received if keys[cid] == key))
        assert first_arrivals == sent_order  # in signing order for each patient


def test_two_senders_share_one_lease(
    txhl7_receiver: TxHl7Receiver, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    fast = _fast(settings, txhl7_receiver.port)
    studies = linked_studies(session_factory, PATIENTS, per_patient=3)
    doctor = _radiologist(session_factory)
    with sender(fast, session_factory) as first, sender(fast, session_factory) as second:
        signed = [_sign(session_factory, fast, study, doctor) for study in studies]
        wait_for(lambda: _all_acked(session_factory), timeout=DELIVERY_TIMEOUT, what="all ACKs")
        assert first.sender is not None and second.sender is not None
    received = txhl7_receiver.received_control_ids()
    assert sorted(received) == sorted(signed)  # each exactly once: only the lease holder sent


def test_rejection_dead_letters_and_holds_the_patients_queue(
    listener: Hl7Component, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    # Radscribe's own listener rejects ORU^R01 with AR: a real peer that says no.
    fast = _fast(settings, listener.listen_port or 0)
    before = REGISTRY.get_sample_value("radscribe_hl7_outbox_dead_letters_total") or 0.0
    first_study, second_study = linked_studies(session_factory, PATIENTS[:1], per_patient=2)
    doctor = _radiologist(session_factory)
    first = _sign(session_factory, fast, first_study, doctor)
    second = _sign(session_factory, fast, second_study, doctor)
    with sender(fast, session_factory):
        wait_for(
            lambda: _statuses(session_factory)[first] is OutboxStatus.DEAD,
            timeout=DELIVERY_TIMEOUT,
            what="dead letter",
        )
        after = REGISTRY.get_sample_value("radscribe_hl7_outbox_dead_letters_total") or 0.0
        assert after == before + 1
        assert _statuses(session_factory)[second] is OutboxStatus.PENDING  # held behind it
    with session_factory() as session:
        dead = session.scalar(select(OutboxMessage).where(OutboxMessage.control_id == first))
        assert dead is not None and dead.attempts == 1 and dead.ack_code == "AR"
        assert "AR" in (dead.last_error or "")
    with session_factory() as session, session.begin():
        outbox.requeue(session, message_id=dead.id)
    assert _statuses(session_factory)[first] is OutboxStatus.RETRYING
