"""`radscribe hl7 serve|send|outbox`: the EMR interface from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from app.core import migrate
from app.core.db import make_engine, make_session_factory, transaction
from app.core.domain import OutboxStatus
from app.core.settings import Settings
from app.emr import mllp
from app.emr.ack import AckError, ReceivedAck
from app.emr.client import send_messages_sync
from app.emr.runtime import Hl7Component
from app.services import outbox
from app.services.metrics_server import MetricsServer

DEFAULT_SEND_TIMEOUT = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("hl7", help="HL7 v2 interface to the EMR (listener, sender, outbox)")
    hl7_sub = parser.add_subparsers(title="hl7 commands", metavar="HL7_COMMAND", required=True)

    serve = hl7_sub.add_parser(
        "serve", help="run the MLLP listener (HL7_PORT) and the outbox sender (EMR_HL7_HOST/PORT)"
    )
    serve.add_argument("--no-send", action="store_true", help="do not deliver the outbox")
    serve.set_defaults(handler=run_serve)

    send = hl7_sub.add_parser(
        "send", help="send HL7 files over MLLP and print each ACK (testing, debugging)"
    )
    send.add_argument("files", nargs="+", type=Path, metavar="FILE")
    send.add_argument("--to", required=True, metavar="HOST:PORT")
    send.add_argument("--timeout", type=float, default=DEFAULT_SEND_TIMEOUT)
    send.set_defaults(handler=run_send, needs_settings=False)

    box = hl7_sub.add_parser("outbox", help="show outbound messages and their delivery state")
    box.add_argument("--json", action="store_true", help="print JSON lines")
    box.add_argument("--status", choices=[s.value for s in OutboxStatus], default=None)
    box.add_argument("--limit", type=int, default=50)
    box.add_argument(
        "--requeue", type=int, metavar="ID", help="give a dead-lettered message new attempts"
    )
    box.set_defaults(handler=run_outbox)


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from app.cli.serve import wait_for_signal

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    component = Hl7Component(settings, make_session_factory(engine), send=not args.no_send)
    metrics = MetricsServer(settings)
    try:
        component.start()
        metrics.start()
        print(component.describe(), flush=True)
        print(f"metrics  {metrics.describe()}", flush=True)
        wait_for_signal()
    finally:
        metrics.stop()
        component.stop()
        engine.dispose()
    return 0


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"--to {text!r} is not HOST:PORT")
    return host, int(port)


def _report(paths: list[Path], acks: list[ReceivedAck]) -> int:
    failures = 0
    for path, ack in zip(paths, acks, strict=True):
        print(f"{path}: {ack.code} {ack.control_id} {ack.text}".rstrip())
        if ack.code not in ("AA", "CA"):
            failures += 1
    return failures


def run_send(args: argparse.Namespace, settings: Settings) -> int:
    try:
        host, port = _address(args.to)
        payloads = [(path, path.read_bytes()) for path in args.files]
    except (ValueError, OSError) as exc:
        print(f"radscribe hl7 send: {exc}", file=sys.stderr)
        return 2
    try:
        acks = send_messages_sync(host, port, [p for _, p in payloads], timeout=args.timeout)
    except AckError as exc:
        print(f"radscribe hl7 send: unreadable reply ({exc})", file=sys.stderr)
        return 1
    except (OSError, TimeoutError, mllp.MllpError) as exc:
        print(f"radscribe hl7 send: {host}:{port}: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    failures = _report([path for path, _ in payloads], acks)
    return 1 if failures else 0


def run_outbox(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.effective_database_url)
    factory = make_session_factory(engine)
    try:
        if args.requeue is not None:
            try:
                with transaction(factory) as session:
                    outbox.requeue(session, message_id=args.requeue)
            except outbox.OutboxError as exc:
                print(f"radscribe hl7 outbox: {exc}", file=sys.stderr)
                return 1
            print(f"outbox message {args.requeue} requeued")
            return 0
        with factory() as session:
            rows = outbox.list_outbox(session, limit=args.limit, status=args.status)
            counts = outbox.status_counts(session)
    finally:
        engine.dispose()
    if args.json:
        for row in rows:
            print(json.dumps(asdict(row)))
        return 0
    print("counts: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "empty"))
    for row in rows:
        error = f"  {row.last_error}" if row.last_error else ""
        print(
            f"{row.id:>6} {row.control_id:<20} {row.status:<8} tries={row.attempts:<3} "
            f"ack={row.ack_code or '-':<2} {row.ordering_key:<14} {row.created_at}{error}"
        )
    return 0
