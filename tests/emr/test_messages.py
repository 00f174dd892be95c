"""The message builders produce HL7 that hl7apy parses back to the same values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from app.emr.messages import (
    AckInfo,
    Interpreter,
    MessageBuildError,
    OrderInfo,
    PatientInfo,
    ReportSection,
    ResultInfo,
    build_ack,
    build_adt_a01,
    build_adt_a40,
    build_omi_o23,
    build_orm_o01,
    build_oru_r01,
)

PATIENT = PatientInfo(
    mrn="MRN-1",
    issuer="HOSP",
    family_name="O'Brien^Smith",  # a delimiter in a name must be escaped, never split
    given_name="Ann|Marie",
    birth_date="19700102",
    sex="F",
)
ORDER = OrderInfo(
    accession_number="ACC-1",
    accession_issuer="HOSP",
    placer_order_number="PL-1",
    procedure_code="CTCHEST",
    procedure_text="CT chest without contrast",
    priority="S",
    reason_for_exam="cough & fever",
    clinical_history="Smoker, 30 pack-years ~ weight loss",
    ordering_provider="123^House^Gregory",
)
WHEN = datetime(2024, 3, 1, 12, 30, 5, tzinfo=UTC)


def test_adt_a01_parses_with_escaped_names() -> None:
    er7 = build_adt_a01(PATIENT, control_id="CTRL-1", processing_id="T", when=WHEN)
    assert "\n" not in er7
    message = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT)
    assert message.msh.msh_9.to_er7() == "ADT^A01^ADT_A01"
    assert message.msh.msh_10.to_er7() == "CTRL-1"
    assert message.msh.msh_11.to_er7() == "T"
    assert message.msh.msh_7.to_er7() == "20240301123005"
    pid = message.pid
    assert pid.pid_3.cx_1.to_er7() == "MRN-1"
    assert pid.pid_3.cx_4.to_er7() == "HOSP"
    assert pid.pid_5.xpn_1.fn_1.to_er7() == "O'Brien\\S\\Smith"
    assert pid.pid_5.xpn_2.to_er7() == "Ann\\F\\Marie"
    assert pid.pid_7.to_er7() == "19700102"


def test_orm_o01_carries_the_order() -> None:
    er7 = build_orm_o01(PATIENT, ORDER, control_id="CTRL-2", when=WHEN)
    message = parse_message(er7, validation_level=VALIDATION_LEVEL.TOLERANT)
    assert message.msh.msh_9.to_er7() == "ORM^O01^ORM_O01"
    order_group = message.children.get("ORM_O01_ORDER")[0]
    segments = {segment.name: segment for segment in order_group.children}
    orc = segments["ORC"]
    assert orc.orc_1.to_er7() == "NW"
    assert orc.orc_3.to_er7() == "ACC-1^HOSP"
    detail = segments["ORM_O01_ORDER_DETAIL"]
    obr = detail.children[0].children[0]
    assert obr.obr_4.to_er7() == "CTCHEST^CT chest without contrast^L"
    assert obr.obr_5.to_er7() == "S"
    assert obr.obr_18.to_er7() == "ACC-1"
    assert obr.obr_31.to_er7() == "^cough \\T\\ fever"
    assert "Smoker, 30 pack-years \\R\\ weight loss" in er7


def test_omi_o23_and_adt_a40_parse() -> None:
    omi = build_omi_o23(PATIENT, ORDER, control_id="CTRL-3", study_instance_uid="1.2.3")
    assert "\rIPC|ACC-1^HOSP|PL-1|1.2.3|" in omi
    a40 = build_adt_a40(PATIENT, prior_mrn="OLD-1", prior_issuer="HOSP", control_id="CTRL-4")
    message = parse_message(a40, validation_level=VALIDATION_LEVEL.STRICT)
    assert message.msh.msh_9.to_er7() == "ADT^A40^ADT_A39"
    assert "\rMRG|OLD-1^^^HOSP^MR" in a40


def test_oru_r01_status_in_obr_and_every_obx() -> None:
    result = ResultInfo(
        result_status="C",
        sections=(
            ReportSection("findings", "No nodule.\nLungs | clear."),
            ReportSection("impression", "Normal chest CT."),
        ),
        principal_interpreter=Interpreter("attending1", "Smith", "John"),
        assistant_interpreter=Interpreter("resident1", "Doe", "Jane"),
        signed_at=WHEN,
        model_version="radscribe-ct-0.1",
    )
    er7 = build_oru_r01(PATIENT, ORDER, result, control_id="CTRL-5", processing_id="T")
    message = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT)
    message.validate()
    obr_line = next(line for line in er7.split("\r") if line.startswith("OBR|"))
    fields = obr_line.split("|")
    assert fields[25] == "C"
    assert fields[32].startswith("attending1&Smith&John")
    assert fields[33].startswith("resident1&Doe&Jane")
    obx_lines = [line.split("|") for line in er7.split("\r") if line.startswith("OBX|")]
    assert len(obx_lines) == 3
    assert {line[11] for line in obx_lines} == {"C"}
    assert obx_lines[1][5] == "Lungs \\F\\ clear."
    assert "radscribe-ct-0.1" in er7


def test_bad_values_are_refused_with_a_clear_error() -> None:
    with pytest.raises(MessageBuildError, match="priority"):
        build_orm_o01(PATIENT, _replace(ORDER, priority="A"), control_id="X")
    with pytest.raises(MessageBuildError, match="MRN"):
        build_adt_a01(_replace_patient(PATIENT, mrn=""), control_id="X")
    with pytest.raises(MessageBuildError, match="processing ID"):
        build_adt_a01(PATIENT, control_id="X", processing_id="Q")


def test_ack_error_carries_the_reason() -> None:
    ack = build_ack(
        AckInfo(control_id="IN-9", sending_application="EMR", trigger_event="O01"),
        code="AR",
        control_id="ACK-1",
        error_text="unsupported message type SIU^S12",
        error_code="200",
    )
    message = parse_message(ack, validation_level=VALIDATION_LEVEL.STRICT)
    message.validate()
    assert message.msa.msa_1.to_er7() == "AR"
    assert message.msa.msa_2.to_er7() == "IN-9"
    assert message.err.err_3.to_er7().startswith("200")


def _replace(order: OrderInfo, **changes: str) -> OrderInfo:
    from dataclasses import replace

    return replace(order, **changes)


def _replace_patient(patient: PatientInfo, **changes: str) -> PatientInfo:
    from dataclasses import replace

    return replace(patient, **changes)
