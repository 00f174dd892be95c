"""Real peers for the HL7 tests: txHL7's receiver as the EMR, Radscribe's listener, users."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import Role, StudyStatus
from app.core.settings import Settings, load_settings
from app.core.tables import Hl7Message, Study, User
from app.emr import parse as hl7parse
from app.emr.messages import OrderInfo, PatientInfo, build_orm_o01
from app.emr.runtime import Hl7Component
from app.services import linking, orders

VENV_BIN = Path(sys.executable).parent
TWISTD = VENV_BIN / "twistd"
MLLP_SEND = VENV_BIN / "mllp_send"
START_TIMEOUT = 20.0
POLL = 0.05
CONTROL_ID_IN_LOG = re.compile(r"MSH\|(?:[^|\r\n]*\|){8}([^|\r\n]*)\|")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: object, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(POLL)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class TxHl7Receiver:
    """``twistd -n mllp`` with txHL7's LoggingReceiver: logs every message, answers AA."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.log_path = folder / "receiver.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        if shutil.which(str(TWISTD)) is None:
            pytest.skip("twistd (txHL7) is not installed in the venv")
        self.starts += 1
        self.process = subprocess.Popen(
            [
                str(TWISTD),
                "-n",
                "--pidfile=",
                f"--logfile={self.log_path}",
                "mllp",
                "-e",
                f"tcp:{self.port}:interface=127.0.0.1",
            ],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_for(lambda: port_open(self.port), timeout=START_TIMEOUT, what="txHL7 receiver")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """Freeze the receiver (SIGSTOP): it takes the bytes but cannot ACK them."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def received_control_ids(self) -> list[str]:
        """MSH-10 of every message the receiver logged, in arrival order (repeats kept)."""
        if not self.log_path.exists():
            return []
        text = "".join(
            path.read_text("utf-8", errors="replace")
            for path in sorted(self.folder.glob("receiver.log*"), reverse=True)
        )
        return CONTROL_ID_IN_LOG.findall(text)


@pytest.fixture
def txhl7_receiver(tmp_path: Path) -> Iterator[TxHl7Receiver]:
    folder = tmp_path / "emr"
    folder.mkdir()
    receiver = TxHl7Receiver(folder)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def hl7_settings(settings: Settings, **overrides: object) -> Settings:
    values = settings.model_dump()
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def listener(settings: Settings, session_factory: sessionmaker[Session]) -> Iterator[Hl7Component]:
    """Radscribe's MLLP listener on a free port, over the test database."""
    component = Hl7Component(
        hl7_settings(settings, hl7_host="127.0.0.1", hl7_port=_free_port()),
        session_factory,
        send=False,
    )
    component.start()
    try:
        yield component
    finally:
        component.stop()


def make_user(session: Session, username: str, role: Role, display_name: str = "") -> User:
    user = User(username=username, role=role, display_name=display_name or username.title())
    session.add(user)
    session.flush()
    return user


def mllp_send(files: list[Path], port: int, folder: Path) -> list[bytes]:
    """python-hl7's ``mllp_send`` sends the files' bytes unchanged, one frame each.

    The files are framed here (<VT>bytes<FS><CR>) so that BOMs, LF separators
    and odd encodings reach the listener exactly as they are on disk.
    """
    framed = folder / "framed.mllp"
    framed.write_bytes(b"".join(b"\x0b" + path.read_bytes() + b"\x1c\r" for path in files))
    result = subprocess.run(
        [str(MLLP_SEND), "--file", str(framed), "--port", str(port), "127.0.0.1"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return [chunk for chunk in result.stdout.split(b"\x0b") if chunk.strip()]


def ack_fields(reply: bytes) -> tuple[str, str]:
    """MSA-1 and MSA-2 of an ACK printed by mllp_send."""
    text = reply.decode("utf-8").strip("\x1c\r\n")
    msa = next(line for line in text.split("\r") if line.startswith("MSA"))
    fields = msa.split("|")
    return fields[1], fields[2] if len(fields) > 2 else ""


def seed_order(
    session: Session, patient: PatientInfo, order: OrderInfo, *, control_id: str
) -> None:
    """Apply an ORM^O01 built by the shared builders, as the listener would."""
    er7 = build_orm_o01(patient, order, control_id=control_id)
    parsed = hl7parse.parse(er7.encode("utf-8"))
    stored = Hl7Message(raw=er7.encode("utf-8"), control_id=control_id, message_type="ORM^O01")
    session.add(stored)
    session.flush()
    orders.apply_message(session, parsed, message_id=stored.id)


def make_study(
    session: Session,
    *,
    accession: str,
    issuer: str,
    patient_id: str,
    name: str,
    birth_date: str | None,
) -> Study:
    study = Study(
        study_instance_uid=f"2.25.{uuid.uuid4().int}",
        dicom_patient_id=patient_id,
        dicom_patient_name=name,
        dicom_birth_date=birth_date,
        accession_number=accession,
        accession_issuer=issuer,
        status=StudyStatus.DRAFT_READY,
    )
    session.add(study)
    session.flush()
    return study


def order_for(number: int, *, issuer: str = "HOSP", priority: str = "R") -> OrderInfo:
    return OrderInfo(
        accession_number=f"ACC-{number}",
        accession_issuer=issuer,
        placer_order_number=f"PL-{number}",
        procedure_code="CTCHEST",
        procedure_text="CT chest",
        priority=priority,
        reason_for_exam="cough",
        clinical_history="smoker",
        ordering_provider="77^House^Greg",
    )


def linked_studies(
    factory: sessionmaker[Session],
    patients: list[PatientInfo],
    per_patient: int,
    *,
    first_number: int = 1,
) -> list[int]:
    """Orders plus matching studies, linked; returns study ids in creation order."""
    ids: list[int] = []
    number = first_number - 1
    with factory() as session, session.begin():
        for patient in patients:
            for _ in range(per_patient):
                number += 1
                order = order_for(number)
                seed_order(session, patient, order, control_id=f"SEED-{number}")
                study = make_study(
                    session,
                    accession=order.accession_number,
                    issuer=order.accession_issuer,
                    patient_id=patient.mrn,
                    name=f"{patient.family_name}^{patient.given_name}",
                    birth_date=patient.birth_date,
                )
                assert linking.link_study(session, study).linked
                ids.append(study.id)
    return ids
