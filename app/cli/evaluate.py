"""`radscribe evaluate --checkpoint PATH --data DIR [--split test]`: how good is a checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.core.settings import Settings

EXIT_OK = 0
EXIT_USAGE = 2
LAYOUTS = ("auto", "ctrate", "hospital", "synthetic")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate", help="per-finding AUROC, F1, calibration, nodules, modality ablation"
    )
    add_checkpoint_and_data(parser, split="test", synthetic_count=500)
    parser.add_argument("--out", type=Path, help="report folder (default: DATA/evaluation)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=run_evaluate, needs_settings=False)


def add_checkpoint_and_data(
    parser: argparse.ArgumentParser, *, split: str, synthetic_count: int
) -> None:
    """The arguments `evaluate` and `calibrate` share: a checkpoint and a data split."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint (.json)")
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="CT-RATE folder, hospital export, or (synthetic) the folder for generated studies",
    )
    parser.add_argument("--split", default=split, help=f"train, valid or test (default {split})")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto")
    parser.add_argument("--cache-dir", type=Path, help="preprocessed-volume cache to (re)use")
    parser.add_argument(
        "--synthetic-count", type=int, default=synthetic_count, help="synthetic studies"
    )
    parser.add_argument("--device", default="auto")


def detect_layout(data: Path) -> str:
    if (data / "reports.csv").is_file():
        return "hospital"
    if any((data / d / "radiology_text_reports").is_dir() for d in (".", "dataset")):
        return "ctrate"
    raise ValueError(f"cannot tell the layout of {data}; pass --layout")


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from models.errors import CheckpointError, ModelInputError
    from models.training.config import DataConfig
    from models.training.ctrate import LayoutError
    from models.training.evaluate import EvaluationOptions, evaluate_checkpoint

    try:
        layout = detect_layout(args.data) if args.layout == "auto" else args.layout
        counts = {f"synthetic_{args.split}": args.synthetic_count} if layout == "synthetic" else {}
        data = DataConfig(layout=layout, root=args.data, **counts)
        out = args.out or args.data / "evaluation"
        cache_dir = args.cache_dir or (args.data if layout == "synthetic" else out / "cache")
        report = evaluate_checkpoint(
            args.checkpoint,
            data,
            out,
            cache_dir=cache_dir,
            options=EvaluationOptions(
                split=args.split, bootstrap=args.bootstrap, device=args.device, seed=args.seed
            ),
        )
    except (CheckpointError, LayoutError, ModelInputError, ValueError) as exc:
        print(f"radscribe evaluate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(report["summary"], indent=2))
    print(f"report: {out}")
    return EXIT_OK
