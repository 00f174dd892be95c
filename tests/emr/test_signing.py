"""Linking studies to orders, reconciliation, and what signing writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import FlagKind, FlagStatus, OutboxStatus, ReportKind, Role, StudyStatus
from app.core.settings import Settings
from app.core.tables import (
    AuditEvent,
    OutboxMessage,
    Report,
    ReportFlag,
    ReportVersion,
    Study,
    StudyStatusChange,
)
from app.emr.messages import PatientInfo, build_orm_o01
from app.emr.runtime import Hl7Component
from app.services import linking
from app.services.signing import SigningError, sign_report

from .conftest import (  # type: ignore[import-not-found]
    ack_fields,
    hl7_settings,
    linked_studies,
    make_study,
    make_user,
    mllp_send,
    order_for,
    seed_order,
)

JANE = PatientInfo("MRN-1", "HOSP", "Doe", "Jane", "19700102", "F")
FINDINGS = {"findings": "No pulmonary nodule.", "impression": "Normal CT of the chest."}


def test_mismatch_is_not_linked_and_cannot_be_signed(
    listener: Hl7Component,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
) -> None:
    # The study arrives first; its order has not come yet.
    with session_factory() as session, session.begin():
        wrong = make_study(
            session,
            accession="ACC-1",
            issuer="HOSP",
            patient_id="MRN-1",
            name="DOE^JOHN",  # the EMR says Jane
            birth_date="19700102",
        )
        right = make_study(
            session,
            accession="ACC-2",
            issuer="HOSP",
            patient_id="MRN-1",
            name="Doe^Jane^Q",
            birth_date="19700102",
        )
        same_patient_other_accession = make_study(
            session,
            accession="ACC-999",
            issuer="HOSP",
            patient_id="MRN-1",
            name="DOE^JANE",
            birth_date="19700102",
        )
        for study in (wrong, right, same_patient_other_accession):
            result = linking.link_study(session, study)
            assert not result.linked and result.reason is None  # waiting for the order
        study_ids = (wrong.id, right.id, same_patient_other_accession.id)

    # The orders arrive over MLLP from python-hl7's mllp_send.
    files = []
    for number in (1, 2):
        path = tmp_path / f"orm{number}.hl7"
        path.write_text(build_orm_o01(JANE, order_for(number), control_id=f"ORM-{number}"))
        files.append(path)
    replies = mllp_send(files, listener.listen_port or 0, tmp_path)
    assert [ack_fields(reply)[0] for reply in replies] == ["AA", "AA"]

    with session_factory() as session:
        wrong_study, right_study, other = (session.get(Study, i) for i in study_ids)
        assert wrong_study is not None and right_study is not None and other is not None
        assert wrong_study.order_id is None
        assert wrong_study.status is StudyStatus.NEEDS_RECONCILIATION
        assert "name differs" in (wrong_study.reconciliation_reason or "")
        assert right_study.order_id is not None
        assert right_study.status is StudyStatus.DRAFT_READY
        assert other.order_id is None and other.reconciliation_reason is None  # never by PID alone
        flag = session.scalar(select(ReportFlag).where(ReportFlag.study_id == wrong_study.id))
        assert flag is not None and flag.kind is FlagKind.RECONCILIATION
        assert flag.status is FlagStatus.OPEN

    with session_factory() as session, session.begin():
        radiologist = make_user(session, "attending", Role.RADIOLOGIST, "Ann Smith")
        admin = make_user(session, "admin", Role.ADMIN)
    with (
        pytest.raises(SigningError, match="reconciliation"),
        session_factory() as session,
        session.begin(),
    ):
        sign_report(
            session,
            study_id=study_ids[0],
            signer=radiologist,
            kind=ReportKind.FINAL,
            sections=FINDINGS,
            settings=settings,
        )
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ReportVersion)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0

    # An admin checks the identity and links it; then it can be signed.
    with session_factory() as session, session.begin():
        order_id = session.scalar(
            select(linking.Order.id).where(linking.Order.accession_number == "ACC-1")
        )
        assert order_id is not None
        with pytest.raises(linking.ReconciliationError):
            linking.resolve_reconciliation(
                session, study_id=study_ids[0], admin=radiologist, order_id=order_id, note="x"
            )
        study = linking.resolve_reconciliation(
            session,
            study_id=study_ids[0],
            admin=admin,
            order_id=order_id,
            note="John is the name on the modality worklist typo; wristband says Jane",
        )
        assert study.status is StudyStatus.DRAFT_READY
    with session_factory() as session, session.begin():
        signed = sign_report(
            session,
            study_id=study_ids[0],
            signer=radiologist,
            kind=ReportKind.FINAL,
            sections=FINDINGS,
            settings=settings,
        )
        assert signed.outbox_message is not None


def test_ambiguous_and_cancelled_orders_need_reconciliation(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session, session.begin():
        seed_order(session, JANE, order_for(5, issuer="HOSP-A"), control_id="A")
        seed_order(session, JANE, order_for(5, issuer="HOSP-B"), control_id="B")
        two = make_study(
            session,
            accession="ACC-5",
            issuer="",
            patient_id="MRN-1",
            name="DOE^JANE",
            birth_date="19700102",
        )
        result = linking.link_study(session, two)
        assert not result.linked and "2 open orders" in (result.reason or "")

        seed_order(session, JANE, order_for(6), control_id="C")
        study = make_study(
            session,
            accession="ACC-6",
            issuer="HOSP",
            patient_id="MRN-1",
            name="DOE^JANE",
            birth_date="19700102",
        )
        assert linking.link_study(session, study).linked
        cancel = order_for(6).__class__(**{**order_for(6).__dict__, "order_control": "CA"})
        seed_order(session, JANE, cancel, control_id="D")  # cancelling relinks: now blocked
        session.refresh(study)
        assert study.order_id is None
        assert study.status is StudyStatus.NEEDS_RECONCILIATION
        assert "cancelled" in (study.reconciliation_reason or "")


def test_signing_rules_and_the_outbound_message(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    test_settings = hl7_settings(settings, hl7_processing_id="T")
    study_id, second_id, third_id = linked_studies(session_factory, [JANE], per_patient=3)
    with session_factory() as session, session.begin():
        attending = make_user(session, "attending", Role.RADIOLOGIST, "Ann Smith")
        resident = make_user(session, "resident", Role.RESIDENT, "Bob Jones")
        report = Report(study_id=study_id)
        session.add(report)
        session.flush()
        session.add(
            ReportVersion(
                report_id=report.id,
                version_number=1,
                kind=ReportKind.DRAFT,
                ai_generated=True,
                model_version="radscribe-ct-2.1",
                structured={},
                rendered_text="AI draft",
            )
        )
        session.add(ReportFlag(study_id=third_id, kind=FlagKind.VERIFY, message="check nodule"))

    def sign(study: int, **kwargs: object) -> object:
        with session_factory() as session, session.begin():
            return sign_report(session, study_id=study, settings=test_settings, **kwargs)  # type: ignore[arg-type]

    with pytest.raises(SigningError, match="co-signer"):
        sign(study_id, signer=resident, kind=ReportKind.FINAL, sections=FINDINGS)
    with pytest.raises(SigningError, match="open flag"):
        sign(third_id, signer=attending, kind=ReportKind.FINAL, sections=FINDINGS)
    with pytest.raises(SigningError, match="addendum needs"):
        sign(study_id, signer=attending, kind=ReportKind.ADDENDUM, text="late")

    preliminary = sign(second_id, signer=resident, kind=ReportKind.PRELIMINARY, sections=FINDINGS)
    assert preliminary.outbox_message is None  # type: ignore[attr-defined]  # setting is off

    final = sign(
        study_id, signer=resident, cosigner=attending, kind=ReportKind.FINAL, sections=FINDINGS
    )
    with pytest.raises(SigningError, match="already final"):
        sign(study_id, signer=attending, kind=ReportKind.FINAL, sections=FINDINGS)
    addendum = sign(study_id, signer=attending, kind=ReportKind.ADDENDUM, text="Small effusion.")

    with session_factory() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        assert [row.status for row in rows] == [OutboxStatus.PENDING, OutboxStatus.PENDING]
        assert rows[0].control_id == final.outbox_message.control_id  # type: ignore[attr-defined]
        assert rows[1].control_id == addendum.outbox_message.control_id  # type: ignore[attr-defined]
        for row in rows:
            version = session.get(ReportVersion, row.report_version_id)
            assert version is not None and version.ai_generated is False
            assert version.model_version == "radscribe-ct-2.1"
        first, second = (row.payload.decode("utf-8") for row in rows)
        message = parse_message(first, validation_level=VALIDATION_LEVEL.STRICT)
        message.validate()
        assert message.msh.msh_11.to_er7() == "T"
        obr = next(line for line in first.split("\r") if line.startswith("OBR|")).split("|")
        assert obr[25] == "F"
        assert obr[32].startswith("attending&Smith&Ann") and obr[33].startswith("resident&Jones")
        assert obr[3] == "ACC-1^HOSP"
        pid = next(line for line in first.split("\r") if line.startswith("PID|")).split("|")
        assert pid[3] == "MRN-1^^^HOSP^MR"
        obx = [line.split("|") for line in first.split("\r") if line.startswith("OBX|")]
        assert {fields[11] for fields in obx} == {"F"}
        assert "radscribe-ct-2.1" in first
        assert "No pulmonary nodule." in first
        corrected = [
            line.split("|") for line in second.split("\r") if line.startswith(("OBR|", "OBX|"))
        ]
        assert corrected[0][25] == "C" and {fields[11] for fields in corrected[1:]} == {"C"}
        assert "Small effusion." in second and "No pulmonary nodule." in second

        study = session.get(Study, study_id)
        assert study is not None and study.status is StudyStatus.ADDENDED
        changes = session.scalars(
            select(StudyStatusChange.to_status).where(StudyStatusChange.study_id == study_id)
        ).all()
        assert StudyStatus.FINAL in changes and StudyStatus.ADDENDED in changes
        actions = set(session.scalars(select(AuditEvent.action)).all())
        assert {"report.sign_final", "report.sign_addendum", "report.sign_preliminary"} <= actions

    with_preliminary = hl7_settings(settings, hl7_send_preliminary=True)
    poe = PatientInfo("MRN-9", "HOSP", "Poe", "Al", "19500505", "M")
    fourth = linked_studies(session_factory, [poe], 1, first_number=50)[0]
    with session_factory() as session, session.begin():
        signed = sign_report(
            session,
            study_id=fourth,
            signer=attending,
            kind=ReportKind.PRELIMINARY,
            sections=FINDINGS,
            settings=with_preliminary,
        )
        assert signed.outbox_message is not None
        assert b"|P|" in signed.outbox_message.payload
