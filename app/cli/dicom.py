"""`radscribe dicom serve|send`: the DICOM node and its C-STORE client.

``python -m app.cli.dicom serve|send ...`` runs the same commands without
loading every other sub-command of ``radscribe`` (a receiver process starts
faster that way).
"""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from prometheus_client import REGISTRY

from app.core import migrate
from app.core.db import make_engine, make_session_factory
from app.core.logging import configure_logging
from app.core.settings import Settings, SettingsError, load_settings
from app.services.dicom_runtime import (
    SUPERVISE_SECONDS,
    DicomComponent,
    ReceiverPool,
    freeze_heap,
)
from app.services.metrics_server import MetricsServer
from dicom_node.access import AccessRuleError, parse_rule
from dicom_node.send import Destination, send_files

DEFAULT_CALLING_AET = "RADSCRIBE_SCU"
DEFAULT_CALLED_AET = "RADSCRIBE"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("dicom", help="DICOM node (storage SCP) and C-STORE client")
    dicom_sub = parser.add_subparsers(
        title="dicom commands", metavar="DICOM_COMMAND", required=True
    )

    serve = dicom_sub.add_parser(
        "serve", help="receive instances over DICOM (C-ECHO, C-STORE) and detect ready series"
    )
    serve.add_argument("--port", type=int, default=None, help="default: RADSCRIBE_DICOM_PORT")
    serve.add_argument("--ae-title", default=None, help="default: RADSCRIBE_DICOM_AE_TITLE")
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="receiver processes sharing the port (default: RADSCRIBE_DICOM_WORKERS)",
    )
    serve.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    serve.set_defaults(handler=run_serve, needs_settings=True)

    send = dicom_sub.add_parser("send", help="send DICOM files or folders (C-STORE SCU)")
    send.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    send.add_argument("--to", required=True, metavar="HOST:PORT")
    send.add_argument("--called-aet", default=DEFAULT_CALLED_AET)
    send.add_argument("--calling-aet", default=DEFAULT_CALLING_AET)
    send.add_argument(
        "--tls-ca", type=Path, default=None, help="use TLS, trusting this PEM CA bundle"
    )
    send.add_argument("--quiet", action="store_true", help="print failures and the summary only")
    send.set_defaults(handler=run_send, needs_settings=False)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"--to {text!r} is not HOST:PORT")
    return host, int(port)


def _wait(stop: threading.Event, pool: ReceiverPool | None) -> None:
    while not stop.wait(SUPERVISE_SECONDS):
        if pool is not None:
            pool.supervise()


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    workers = args.workers or settings.dicom_workers
    if workers < 1:
        print("radscribe dicom serve: --workers must be at least 1", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    factory = make_session_factory(engine)
    stop = threading.Event()

    def _handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    port = settings.dicom_port if args.port is None else args.port
    runner: DicomComponent | ReceiverPool
    if workers == 1:
        runner = DicomComponent(
            settings, factory, registry=REGISTRY, port=port, ae_title=args.ae_title
        )
        metrics = MetricsServer(settings)
    else:
        runner = ReceiverPool(settings, factory, workers=workers, port=port, ae_title=args.ae_title)
        metrics = MetricsServer(settings, registry=runner.registry)
    try:
        freeze_heap()  # before listening: a collection would stall the first senders
        runner.start()
        if not args.no_metrics:
            metrics.start()
        print(runner.describe(), flush=True)
        if not args.no_metrics:
            print(metrics.describe(), flush=True)
        _wait(stop, runner if isinstance(runner, ReceiverPool) else None)
    finally:
        if not args.no_metrics:
            metrics.stop()
        runner.stop()
        engine.dispose()
    return 0


def run_send(args: argparse.Namespace, settings: Settings) -> int:
    try:
        host, port = _address(args.to)
        for title in (args.called_aet, args.calling_aet):
            parse_rule(title)
    except (ValueError, AccessRuleError) as exc:
        print(f"radscribe dicom send: {exc}", file=sys.stderr)
        return 2
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        print(f"radscribe dicom send: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    tls = None
    if args.tls_ca is not None:
        tls = ssl.create_default_context(cafile=str(args.tls_ca))
    destination = Destination(
        host=host, port=port, called_aet=args.called_aet, calling_aet=args.calling_aet, tls=tls
    )
    try:
        results = send_files(args.paths, destination)
    except (OSError, RuntimeError) as exc:
        print(f"radscribe dicom send: {host}:{port}: {exc}", file=sys.stderr)
        return 1
    failed = 0
    for result in results:
        if result.ok:
            if not args.quiet:
                print(f"{result.path}: stored (0x{result.status:04X})")
            continue
        failed += 1
        why = result.error or f"status 0x{result.status:04X}"
        print(f"{result.path}: FAILED {why}")
    print(f"sent {len(results) - failed} of {len(results)} files to {host}:{port}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="radscribe")
    register(parser.add_subparsers(title="commands", metavar="COMMAND"))
    args = parser.parse_args(["dicom", *(sys.argv[1:] if argv is None else argv)])
    try:
        settings = load_settings() if args.needs_settings else Settings.model_construct()
    except SettingsError as exc:
        print(f"radscribe: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json_lines=settings.log_json)
    result: int = args.handler(args, settings)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
