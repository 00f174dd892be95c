"""`radscribe demo [--check]`: the whole system on embedded defaults with a synthetic study."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from app.cli.serve import wait_for_signal
from app.core.settings import Settings

DEMO_SEED = 7


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the embedded system and push a synthetic study through it",
        description="Starts web, DICOM node, HL7 listener and workers on SQLite and local "
        "files, sends a synthetic study's order over HL7, its images over DICOM and its "
        "dictation through the upload service, and shows the AI draft it becomes.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="use free ports and a temporary folder, wait for the draft, exit 0 or 1",
    )
    parser.add_argument("--data-dir", type=Path, help="data folder (default ./radscribe-data)")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="synthetic study seed")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (--check)")
    parser.set_defaults(handler=run, needs_settings=False)


def run(args: argparse.Namespace, _unused: Settings) -> int:
    from app.services import demo  # the ML stack loads here, not at start-up

    data_dir = args.data_dir or (None if args.check else Path("radscribe-data"))
    settings = demo.demo_settings(data_dir=data_dir, free_ports=args.check)
    slices, matrix = (demo.CHECK_SLICES, demo.CHECK_MATRIX) if args.check else (None, 256)
    runtime = demo.start_runtime(settings)
    try:
        print("Radscribe demo is running:")
        for line in runtime.describe():
            print(f"  {line}")
        print(f"  data     {settings.data_dir.resolve()}", flush=True)
        password = demo.ensure_demo_user(runtime.session_factory)
        if password:
            print(f"  login    user {demo.DEMO_USER!r}, password {password!r}")
        folder = settings.data_dir / "synthetic" / f"study-{args.seed}"
        shutil.rmtree(folder, ignore_errors=True)
        print(f"Generating synthetic study (seed {args.seed}) in {folder} ...", flush=True)
        truth = demo.generate(folder, seed=args.seed, slices=slices, matrix=matrix)
        pushed = demo.push_study(settings, runtime.session_factory, folder, truth)
        print(
            f"Sent the order over HL7 ({', '.join(pushed.acks)}), {pushed.instances} images "
            f"over DICOM{' and the dictation' if pushed.dictation_id else ''}; drafting ...",
            flush=True,
        )
        outcome = demo.wait_for_draft(runtime.session_factory, pushed, timeout=args.timeout)
        print(demo.summary(outcome, truth), flush=True)
        if args.check:
            problems = []
            if not outcome.order_linked:
                problems.append("the study was not linked to its order")
            if pushed.dictation_id is not None and not outcome.dictation_in_draft:
                problems.append("the dictation is not in the draft")
            for problem in problems:
                print(f"radscribe demo --check: {problem}", file=sys.stderr)
            print("demo check: " + ("FAILED" if problems else "passed"))
            return 1 if problems else 0
        print("The draft is in the worklist. Stop with Ctrl-C.", flush=True)
        wait_for_signal()
        return 0
    except demo.DemoError as exc:
        print(f"radscribe demo: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.stop()
        if args.check and args.data_dir is None:
            shutil.rmtree(settings.data_dir, ignore_errors=True)
