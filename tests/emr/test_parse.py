"""Tolerant inbound parsing and the acknowledgment rules, on generated messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import ReportKind, Role
from app.core.settings import load_settings
from app.emr.ack import Outcome, choose_ack_code, read_ack
from app.emr.messages import OrderInfo, PatientInfo, build_ack, build_orm_o01
from app.emr.parse import MalformedMessage, hl7apy_version, parse
from app.emr.runtime import Hl7Component
from app.services.signing import sign_report

from .conftest import linked_studies, make_user  # type: ignore[import-not-found]

PATIENT = PatientInfo("M-1", "HOSP", "Müller", "Zoë", "19700101", "F")
ORDER = OrderInfo(
    accession_number="ACC-1",
    accession_issuer="HOSP",
    placer_order_number="PL-1",
    procedure_code="CTHEAD",
    procedure_text="CT head",
    priority="S",
    reason_for_exam="fall | head strike",
    clinical_history="on warfarin",
    ordering_provider="9^Who^Doctor",
)


def _orm() -> str:
    return build_orm_o01(PATIENT, ORDER, control_id="Q-1")


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_separators_and_bom(separator: str) -> None:
    raw = b"\xef\xbb\xbf" + _orm().replace("\r", separator).encode("utf-8") + b"\r\n"
    message = parse(raw)
    assert message.header.message_type == "ORM^O01"
    assert message.patient == PATIENT
    (order,) = message.orders
    assert order.accession_number == "ACC-1" and order.accession_issuer == "HOSP"
    assert order.priority == "S"
    assert order.reason_for_exam == "fall | head strike"  # unescaped from \F\
    assert order.clinical_history == "on warfarin\non warfarin"  # OBR-13 and the NTE
    assert order.ordering_provider == "9^Who^Doctor"


def test_charset_from_msh_18() -> None:
    text = _orm().replace("UNICODE UTF-8", "8859/1")
    message = parse(text.encode("latin-1"))
    assert message.header.charset == "latin-1"
    assert message.patient is not None and message.patient.family_name == "Müller"
    utf8 = parse(_orm().encode("utf-8"))
    assert utf8.patient is not None and utf8.patient.given_name == "Zoë"
    undeclared = parse(_orm().replace("|UNICODE UTF-8", "|").encode("utf-8"))
    assert undeclared.patient is not None and undeclared.patient.given_name == "Zoë"


def test_versions() -> None:
    assert hl7apy_version("2.5.1") == "2.5.1"
    assert hl7apy_version("2.9") == "2.8.2"
    assert hl7apy_version("2.3.1.1") == "2.3.1"
    newer = parse(_orm().replace("|2.5.1|", "|2.9|").encode())
    assert newer.header.version == "2.9" and newer.orders[0].accession_number == "ACC-1"
    with pytest.raises(MalformedMessage) as excinfo:
        parse(_orm().replace("|2.5.1|", "|3.0|").encode())
    assert excinfo.value.code == "203"


@pytest.mark.parametrize(
    "raw",
    [b"", b"PID|1||X", b"MSH|", b"MSH|^~\\&|A|B|C|D|2024||ORM^O01|||2.5.1"],
)
def test_malformed_is_refused_clearly(raw: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse(raw)


def test_ack_modes() -> None:
    original = {"accept_ack_type": "", "application_ack_type": ""}
    assert choose_ack_code(**original, outcome=Outcome.PROCESSED) == "AA"
    assert choose_ack_code(**original, outcome=Outcome.ERROR) == "AE"
    assert choose_ack_code(**original, outcome=Outcome.REJECTED) == "AR"
    accept_only = {"accept_ack_type": "AL", "application_ack_type": "NE"}
    assert choose_ack_code(**accept_only, outcome=Outcome.PROCESSED) == "CA"
    assert choose_ack_code(**accept_only, outcome=Outcome.ERROR) == "CA"
    assert choose_ack_code(**accept_only, outcome=Outcome.REJECTED) == "CR"
    assert choose_ack_code(**accept_only, outcome=Outcome.NOT_STORED) == "CE"
    on_error = {"accept_ack_type": "NE", "application_ack_type": "ER"}
    assert choose_ack_code(**on_error, outcome=Outcome.PROCESSED) is None
    assert choose_ack_code(**on_error, outcome=Outcome.ERROR) == "AE"
    both = {"accept_ack_type": "AL", "application_ack_type": "AL"}
    assert choose_ack_code(**both, outcome=Outcome.PROCESSED) == "AA"


def test_read_ack_round_trip() -> None:
    message = parse(_orm().encode())
    ack = build_ack(message.header.ack_info(), code="AE", control_id="X", error_text="a | b")
    received = read_ack(ack.encode())
    assert (received.code, received.control_id, received.text) == ("AE", "Q-1", "a | b")
    assert not received.accepts("Q-1")


def test_cli_send_and_outbox(
    listener: Hl7Component,
    session_factory: sessionmaker[Session],
    migrated_url: str,
    tmp_path: Path,
) -> None:
    good = tmp_path / "order.hl7"
    good.write_bytes(b"\xef\xbb\xbf" + _orm().replace("\r", "\n").encode())
    bad = tmp_path / "bad.hl7"
    bad.write_bytes(b"MSH|^~\\&|X|Y|Z|W|2024||SIU^S12|S-1|P|2.5.1\rPID|1||1")
    radscribe = str(Path(sys.executable).parent / "radscribe")
    result = subprocess.run(
        [
            radscribe,
            "hl7",
            "send",
            str(good),
            str(bad),
            "--to",
            f"127.0.0.1:{listener.listen_port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr  # one message was rejected
    lines = result.stdout.splitlines()
    assert lines[0].endswith("AA Q-1")
    assert " AR S-1 " in lines[1] and "SIU^S12" in lines[1]
    env = {"RADSCRIBE_ENV": "development", "RADSCRIBE_DATABASE_URL": migrated_url}
    outbox = subprocess.run(
        [radscribe, "hl7", "outbox", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    assert outbox.returncode == 0, outbox.stderr
    assert outbox.stdout == ""  # nothing signed yet: no outbound messages

    (study_id,) = linked_studies(session_factory, [PATIENT], 1, first_number=40)
    with session_factory() as session, session.begin():
        doctor = make_user(session, "reader", Role.RADIOLOGIST)
        signed = sign_report(
            session,
            study_id=study_id,
            signer=doctor,
            kind=ReportKind.FINAL,
            text="Normal head CT.",
            settings=load_settings(env="development", database_url=migrated_url),
        )
        assert signed.outbox_message is not None
    outbox = subprocess.run(
        [radscribe, "hl7", "outbox", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    (row,) = [json.loads(line) for line in outbox.stdout.splitlines()]
    assert row["control_id"] == signed.outbox_message.control_id
    assert row["status"] == "pending" and row["message_type"] == "ORU^R01"
