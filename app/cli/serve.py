"""`radscribe serve`: every component in one process (the embedded mode)."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from prometheus_client import REGISTRY

from app.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve", help="run every component in one process (web, DICOM node, HL7, workers)"
    )
    parser.set_defaults(handler=run)


def wait_for_signal() -> None:
    stop = threading.Event()

    def _handle(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    stop.wait()


def run(args: argparse.Namespace, settings: Settings) -> int:
    from app.services.assembly import build_runtime  # the ML stack loads here, not at start-up

    runtime = build_runtime(settings, metrics_registry=REGISTRY)
    try:
        runtime.start()
        print("Radscribe is running:")
        for line in runtime.describe():
            print(f"  {line}")
        print(f"  data     {settings.data_dir.resolve()}")
        print(f"  database {settings.effective_database_url}")
        print("Stop with Ctrl-C.", flush=True)
        wait_for_signal()
    finally:
        runtime.stop()
    return 0
