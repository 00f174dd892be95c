"""`radscribe worker`: a Celery drafting worker (scale-out mode)."""

from __future__ import annotations

import argparse
import sys

from app.core.settings import Settings
from app.services.celery_app import ROUTINE_QUEUE, STAT_QUEUE, run_worker
from app.services.metrics_server import MetricsServer


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "worker",
        help="run a Celery drafting worker (needs RADSCRIBE_CELERY_BROKER_URL)",
        description="Takes drafting jobs from Redis, STAT queue first. Several workers on "
        "several machines share the queue; each job runs once (claims are guarded in the "
        "database).",
    )
    parser.add_argument("--concurrency", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--queue",
        action="append",
        choices=[STAT_QUEUE, ROUTINE_QUEUE],
        help="serve only these queues (default: both, STAT first)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.celery_broker_url:
        print(
            "radscribe worker: set RADSCRIBE_CELERY_BROKER_URL (e.g. redis://127.0.0.1:6379/0)",
            file=sys.stderr,
        )
        return 2
    # One worker process (the default) serves its drafting metrics on the metrics port;
    # with --concurrency > 1 the forked children would each need their own.
    metrics = MetricsServer(settings) if args.concurrency == 1 else None
    if metrics is not None:
        metrics.start()
    try:
        run_worker(settings, concurrency=args.concurrency, queues=args.queue)
    finally:
        if metrics is not None:
            metrics.stop()
    return 0
