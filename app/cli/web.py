"""`radscribe web`: only the web app (worklist, study view, API), for a separate web process."""

from __future__ import annotations

import argparse

import uvicorn

from app.cli.serve import wait_for_signal
from app.core import migrate
from app.core.settings import Settings
from app.services.runtime import build_web_runtime

MAX_WORKERS = 64


def _workers(value: str) -> int:
    count = int(value)
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"workers is 1-{MAX_WORKERS}")
    return count


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("web", help="serve only the web app (worklist, study view, JSON API)")
    parser.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="web processes sharing the port (default 1; use the number of cores)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.workers > 1:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(settings.effective_database_url)
        print(
            f"Radscribe web on http://{settings.http_host}:{settings.http_port}/ "
            f"({args.workers} processes). Stop with Ctrl-C.",
            flush=True,
        )
        uvicorn.run(
            "app.web.factory:app_from_environment",
            factory=True,
            host=settings.http_host,
            port=settings.http_port,
            workers=args.workers,
            log_level="warning",
            access_log=False,
        )
        return 0
    runtime = build_web_runtime(settings)
    try:
        runtime.start()
        for line in runtime.describe():
            print(f"Radscribe {line}", flush=True)
        print("Stop with Ctrl-C.", flush=True)
        wait_for_signal()
    finally:
        runtime.stop()
    return 0
