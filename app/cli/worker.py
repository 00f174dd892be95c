"""`radscribe worker`: a Celery drafting worker (scale-out mode).

With ``--concurrency`` above 1 the drafting runs in forked child processes, and the metrics
port must serve theirs: the worker runs in prometheus_client's multiprocess mode.  That mode
has to be on before the first metric exists, so a worker started without
``PROMETHEUS_MULTIPROC_DIR`` makes a private folder for it and starts itself again (exec, same
process id) with the variable set; it removes that folder when it ends.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from app.core.settings import Settings
from app.services.celery_app import ROUTINE_QUEUE, STAT_QUEUE, run_worker
from app.services.metrics_server import (
    MULTIPROCESS_DIR_ENV,
    MetricsServer,
    discard_other_processes_files,
    multiprocess_dir,
)

PRIVATE_METRICS_MARKER = ".radscribe-worker-private"
"""In a metrics folder the worker made itself: remove the folder when the worker ends."""


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
    if args.concurrency < 1:
        print("radscribe worker: --concurrency must be at least 1", file=sys.stderr)
        return 2
    folder = multiprocess_dir()
    if args.concurrency > 1 and folder is None:
        _restart_in_multiprocess_mode(args)  # does not return
    if folder is not None:
        discard_other_processes_files(folder)  # no child runs yet: these are an earlier run's
    metrics = MetricsServer(settings)
    metrics.start()
    try:
        run_worker(settings, concurrency=args.concurrency, queues=args.queue)
    finally:
        metrics.stop()
        if folder is not None and (folder / PRIVATE_METRICS_MARKER).exists():
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def _restart_in_multiprocess_mode(args: argparse.Namespace) -> NoReturn:
    folder = Path(tempfile.mkdtemp(prefix="radscribe-worker-metrics-"))
    (folder / PRIVATE_METRICS_MARKER).touch()
    os.environ[MULTIPROCESS_DIR_ENV] = str(folder)
    argv = [sys.executable, "-m", "app.cli.main", "worker", "--concurrency", str(args.concurrency)]
    for queue in args.queue or []:
        argv += ["--queue", queue]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
