"""`radscribe distill --teacher CKPT --student-config FILE`: train a smaller student."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.core.settings import Settings

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 3


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "distill", help="train a smaller student on a teacher's soft predictions and the labels"
    )
    parser.add_argument("--teacher", type=Path, required=True, help="teacher checkpoint (.json)")
    parser.add_argument("--student-config", type=Path, required=True, help="student config (YAML)")
    parser.add_argument("--alpha", type=float, default=0.7, help="weight of the teacher's loss")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--device", help="cpu, cuda or auto")
    parser.add_argument("--no-compare", action="store_true", help="skip the size/latency report")
    parser.set_defaults(handler=run_distill, needs_settings=False)


def run_distill(args: argparse.Namespace, settings: Settings) -> int:
    from models.errors import CheckpointError, ModelInputError
    from models.training.config import ConfigError, load_train_config
    from models.training.ctrate import LayoutError
    from models.training.distill import compare, distill, summary_lines

    if not 0.0 <= args.alpha <= 1.0:
        print("radscribe distill: --alpha must be between 0 and 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        student = load_train_config(args.student_config).with_overrides(device=args.device)
        result = distill(args.teacher, student, alpha=args.alpha, resume=args.resume)
        if not result.finished:
            print("time limit reached: continue with --resume")
            return EXIT_INTERRUPTED
        if result.best_checkpoint is None:
            print("radscribe distill: no student checkpoint was written", file=sys.stderr)
            return EXIT_USAGE
        print(f"student: {result.best_checkpoint}")
        if not args.no_compare:
            cache_dir = Path(student.data.cache_dir or Path(student.run_dir) / "cache")
            report = compare(
                args.teacher,
                result.best_checkpoint,
                student,
                Path(student.run_dir) / "distillation",
                cache_dir=cache_dir,
            )
            for line in summary_lines(report):
                print(line)
    except (CheckpointError, ConfigError, LayoutError, ModelInputError, ValueError) as exc:
        print(f"radscribe distill: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
