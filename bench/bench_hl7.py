"""HL7 outbound benchmark: signing-to-ACK latency and sustained delivery rate.

Run from the repository root::

    .venv/bin/python bench/bench_hl7.py                      # SQLite in a temp folder
    .venv/bin/python bench/bench_hl7.py --messages 500 --rounds 5
    .venv/bin/python bench/bench_hl7.py --database-url postgresql://postgres@127.0.0.1:5432/bench

The EMR is txHL7's receiver (``twistd -n mllp``, LoggingReceiver, answers AA)
on a free local port.  Radscribe runs with the outbox's durability on: every
signature commits its ORU^R01 outbox row (SQLite synchronous=FULL / PostgreSQL
commit), and the sender commits each ACK before the message counts as sent.

Measured, side by side in one run and against the same receiver:

- latency: ``sign_report`` called -> the EMR's accepting ACK recorded
  (median and p95 of ``--latency-samples``; the sender polls every
  ``hl7_outbox_poll_seconds``, 0.1 s by default, and is not woken);
- rate, Radscribe: the sender draining ``--messages`` signed reports, from its
  start to the last ACK it committed (``--rounds`` rounds, alternating with
  python-hl7 below on the same payloads; medians);
- rate, Radscribe end to end: signing them one transaction each while the
  sender delivers (signing time included);
- rate, python-hl7: the same ORU payloads sent by ``mllp_send`` (the CLI,
  process start included) and by its ``MLLPClient`` in-process (the same
  library code without the start-up, the stricter comparison).

Goals: median latency <= 1 s; Radscribe's drain rate >= half of python-hl7's.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from hl7.client import MLLPClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core import migrate
from app.core.db import make_engine, make_session_factory
from app.core.domain import OutboxStatus, ReportKind, Role, StudyStatus
from app.core.net import free_port
from app.core.settings import Settings, load_settings
from app.core.tables import Hl7Message, OutboxMessage, Study, User
from app.emr import parse as hl7parse
from app.emr.messages import OrderInfo, PatientInfo, build_orm_o01
from app.emr.runtime import Hl7Component
from app.services import linking, orders
from app.services.outbox import as_utc
from app.services.signing import sign_report

VENV_BIN = Path(sys.executable).parent
PATIENT_COUNT = 20
POLL_SECONDS = 0.002
TIMEOUT_SECONDS = 300.0
LATENCY_GOAL_SECONDS = 1.0
RATE_GOAL_FRACTION = 0.5
SECTIONS = {
    "findings": "Lungs are clear. No pleural effusion. Heart size normal.",
    "impression": "No acute cardiopulmonary abnormality.",
}


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_receiver(folder: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            str(VENV_BIN / "twistd"),
            "-n",
            "--pidfile=",
            f"--logfile={folder / 'receiver.log'}",
            "mllp",
            "-e",
            f"tcp:{port}:interface=127.0.0.1",
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return process


def seed(factory: sessionmaker[Session], count: int) -> tuple[list[int], User]:
    """``count`` linked studies over PATIENT_COUNT patients, and a radiologist."""
    ids: list[int] = []
    with factory() as session, session.begin():
        user = User(username="bench", display_name="Bench Reader", role=Role.RADIOLOGIST)
        session.add(user)
        for number in range(count):
            n = number % PATIENT_COUNT
            patient = PatientInfo(f"MRN{n}", "HOSP", f"Family{n}", f"Given{n}", "19700101", "F")
            order = OrderInfo(
                accession_number=f"ACC{number}",
                accession_issuer="HOSP",
                placer_order_number=f"PL{number}",
                procedure_code="CTCHEST",
                procedure_text="CT chest",
                priority="R",
                reason_for_exam="cough",
                clinical_history=None,
                ordering_provider=None,
            )
            er7 = build_orm_o01(patient, order, control_id=f"B{number}")
            row = Hl7Message(raw=er7.encode(), control_id=f"B{number}", message_type="ORM^O01")
            session.add(row)
            session.flush()
            orders.apply_message(session, hl7parse.parse(er7.encode()), message_id=row.id)
            study = Study(
                study_instance_uid=f"2.25.{number + 1}",
                dicom_patient_id=patient.mrn,
                dicom_patient_name=f"{patient.family_name}^{patient.given_name}",
                dicom_birth_date=patient.birth_date,
                accession_number=order.accession_number,
                accession_issuer="HOSP",
                status=StudyStatus.DRAFT_READY,
            )
            session.add(study)
            session.flush()
            assert linking.link_study(session, study).linked
            ids.append(study.id)
        session.flush()
        session.expunge(user)
    return ids, user


def sign(factory: sessionmaker[Session], settings: Settings, study_id: int, user: User) -> int:
    with factory() as session, session.begin():
        signed = sign_report(
            session,
            study_id=study_id,
            signer=user,
            kind=ReportKind.FINAL,
            sections=SECTIONS,
            settings=settings,
        )
        assert signed.outbox_message is not None
        return signed.outbox_message.id


def acked_count(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == OutboxStatus.ACKED)
            )
            or 0
        )


def wait_acked(factory: sessionmaker[Session], total: int) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while acked_count(factory) < total:
        if time.monotonic() > deadline:
            raise RuntimeError("messages were not acknowledged in time")
        time.sleep(POLL_SECONDS * 5)


def measure_latency(
    factory: sessionmaker[Session], settings: Settings, studies: list[int], user: User
) -> list[float]:
    samples = []
    for study_id in studies:
        started = datetime.now(UTC)
        message_id = sign(factory, settings, study_id, user)
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while True:
            with factory() as session:
                message = session.get(OutboxMessage, message_id)
                assert message is not None
                if message.status is OutboxStatus.ACKED and message.acked_at is not None:
                    samples.append((as_utc(message.acked_at) - started).total_seconds())
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("no ACK")
            time.sleep(POLL_SECONDS)
    return samples


def drain_rate(settings: Settings, factory: sessionmaker[Session], ids: list[int]) -> float:
    """Start the sender on a filled outbox; rate up to the last ACK it recorded."""
    component = Hl7Component(settings, factory, listen=False)
    started = datetime.now(UTC)
    component.start()
    try:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while True:
            with factory() as session:
                rows = session.execute(
                    select(OutboxMessage.status, OutboxMessage.acked_at).where(
                        OutboxMessage.id.in_(ids)
                    )
                ).all()
            if all(status is OutboxStatus.ACKED for status, _ in rows):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("messages were not acknowledged in time")
            time.sleep(0.05)  # poll gently: the sender shares the cores
    finally:
        component.stop()
    last = max(as_utc(acked_at) for _, acked_at in rows)
    return len(ids) / (last - started).total_seconds()


def python_hl7_rates(folder: Path, port: int, payloads: list[bytes]) -> tuple[float, float]:
    framed = folder / "payloads.mllp"
    framed.write_bytes(b"".join(b"\x0b" + payload + b"\x1c\r" for payload in payloads))
    started = time.perf_counter()
    subprocess.run(
        [
            str(VENV_BIN / "mllp_send"),
            "--quiet",
            "--file",
            str(framed),
            "--port",
            str(port),
            "127.0.0.1",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    cli_rate = len(payloads) / (time.perf_counter() - started)
    started = time.perf_counter()
    with MLLPClient("127.0.0.1", port) as client:
        for payload in payloads:
            reply = client.send_message(payload)
            assert b"MSA|AA" in reply
    library_rate = len(payloads) / (time.perf_counter() - started)
    return cli_rate, library_rate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=30)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp folder")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-hl7-") as tmp:
        folder = Path(tmp)
        url = args.database_url or f"sqlite:///{folder / 'bench.db'}"
        port = free_port()
        receiver = start_receiver(folder, port)
        engine = make_engine(url)
        try:
            migrate.upgrade(url)
            factory = make_session_factory(engine)
            settings = load_settings(
                env="development",
                data_dir=folder / "data",
                database_url=url,
                emr_hl7_host="127.0.0.1",
                emr_hl7_port=port,
            )
            per_round = args.messages
            e2e_count = max(per_round // 3, 1)
            total = args.latency_samples + args.rounds * per_round + e2e_count
            studies, user = seed(factory, total)
            latency_studies = studies[: args.latency_samples]
            rest = studies[args.latency_samples :]

            component = Hl7Component(settings, factory, listen=False)
            component.start()
            try:
                latencies = measure_latency(factory, settings, latency_studies, user)
            finally:
                component.stop()

            # Rounds alternate Radscribe and python-hl7 on the same payloads, so a
            # busy neighbour on the machine slows both sides alike; medians are reported.
            drain_rates: list[float] = []
            cli_rates: list[float] = []
            library_rates: list[float] = []
            for round_number in range(args.rounds):
                chunk = rest[round_number * per_round : (round_number + 1) * per_round]
                ids = [sign(factory, settings, study_id, user) for study_id in chunk]
                drain_rates.append(drain_rate(settings, factory, ids))
                with factory() as session:
                    payloads = list(
                        session.scalars(
                            select(OutboxMessage.payload)
                            .where(OutboxMessage.id.in_(ids))
                            .order_by(OutboxMessage.id)
                        )
                    )
                cli_rate, library_rate = python_hl7_rates(folder, port, payloads)
                cli_rates.append(cli_rate)
                library_rates.append(library_rate)

            component = Hl7Component(settings, factory, listen=False)
            component.start()
            try:
                done_before = acked_count(factory)
                started = time.perf_counter()
                for study_id in rest[args.rounds * per_round :]:
                    sign(factory, settings, study_id, user)
                wait_acked(factory, done_before + e2e_count)
                e2e_rate = e2e_count / (time.perf_counter() - started)
            finally:
                component.stop()
            log_text = "".join(  # twistd rotates its log at 1 MB
                path.read_text("utf-8", errors="replace") for path in folder.glob("receiver.log*")
            )
            received = len(re.findall(r"MSH\|", log_text))
        finally:
            engine.dispose()
            receiver.terminate()
            receiver.wait(timeout=10)

    median = statistics.median(latencies)
    p95 = sorted(latencies)[max(int(len(latencies) * 0.95) - 1, 0)]
    backend = url.split(":", 1)[0]
    print(
        f"HL7 outbound benchmark ({backend}, {os.cpu_count()} cores, receiver: txHL7 twistd mllp)"
    )
    print(f"  messages per rate run: {args.messages}; receiver logged {received} messages")
    print(
        f"  latency sign -> accepted ACK: median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
        f"(goal <= {LATENCY_GOAL_SECONDS * 1000:.0f} ms)"
    )
    drain = statistics.median(drain_rates)
    cli_rate = statistics.median(cli_rates)
    library_rate = statistics.median(library_rates)
    print(f"  sustained rate (messages/s, median of {args.rounds} alternating rounds):")
    print(f"    Radscribe sender, outbox drain (durable) {drain:8.0f}")
    print(f"    Radscribe sign + deliver, end to end     {e2e_rate:8.0f}")
    print(f"    python-hl7 mllp_send CLI                 {cli_rate:8.0f}")
    print(f"    python-hl7 MLLPClient in-process         {library_rate:8.0f}")
    baseline = max(cli_rate, library_rate)
    ratio = drain / baseline
    print(f"  Radscribe drain / best python-hl7: {ratio:.2f} (goal >= {RATE_GOAL_FRACTION})")
    ok = median <= LATENCY_GOAL_SECONDS and ratio >= RATE_GOAL_FRACTION
    print("  goals met" if ok else "  GOALS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
