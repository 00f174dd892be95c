"""`radscribe web`: only the web app (worklist, study view, API), for a separate web process."""

from __future__ import annotations

import argparse

from app.cli.serve import wait_for_signal
from app.core.settings import Settings
from app.services.runtime import build_runtime


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("web", help="serve only the web app (worklist, study view, JSON API)")
    parser.add_argument("--host", help="listen address (default RADSCRIBE_HTTP_HOST)")
    parser.add_argument("--port", type=int, help="listen port (default RADSCRIBE_HTTP_PORT)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    overrides = {
        key: value
        for key, value in (("http_host", args.host), ("http_port", args.port))
        if value is not None
    }
    if overrides:
        settings = settings.model_copy(update=overrides)
    runtime = build_runtime(settings, only=("web",))
    try:
        runtime.start()
        for line in runtime.describe():
            print(f"Radscribe {line}", flush=True)
        print("Stop with Ctrl-C.", flush=True)
        wait_for_signal()
    finally:
        runtime.stop()
    return 0
