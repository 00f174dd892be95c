"""`radscribe calibrate --checkpoint PATH --data DIR --out STEM`: operating points on local data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli.evaluate import add_checkpoint_and_data, detect_layout
from app.core.settings import Settings

EXIT_OK = 0
EXIT_USAGE = 2


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "calibrate",
        help="refit calibration and per-finding thresholds on a validation split (no training)",
    )
    add_checkpoint_and_data(parser, split="valid", synthetic_count=200)
    parser.add_argument("--out", type=Path, required=True, help="new checkpoint path (stem)")
    parser.add_argument(
        "--specificity", type=float, default=0.9, help="decision threshold's specificity target"
    )
    parser.add_argument(
        "--verify-sensitivity", type=float, default=0.95, help="verify threshold's sensitivity"
    )
    parser.add_argument("--part-mib", type=int, help="split the weights into parts of this size")
    parser.set_defaults(handler=run_calibrate, needs_settings=False)


def run_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from models.errors import CheckpointError, ModelInputError
    from models.training.config import DataConfig, ThresholdConfig
    from models.training.ctrate import LayoutError
    from models.training.recalibrate import recalibrate_checkpoint

    try:
        layout = detect_layout(args.data) if args.layout == "auto" else args.layout
        counts = {f"synthetic_{args.split}": args.synthetic_count} if layout == "synthetic" else {}
        data = DataConfig(layout=layout, root=args.data, **counts)
        cache_dir = args.cache_dir or (args.data if layout == "synthetic" else args.out.parent)
        result = recalibrate_checkpoint(
            args.checkpoint,
            data,
            args.out,
            cache_dir=cache_dir,
            split=args.split,
            thresholds=ThresholdConfig(
                decision_target=args.specificity, verify_sensitivity=args.verify_sensitivity
            ),
            device=args.device,
            max_part_bytes=args.part_mib * 2**20 if args.part_mib else None,
        )
    except (CheckpointError, LayoutError, ModelInputError, ValidationError, ValueError) as exc:
        print(f"radscribe calibrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    summary = {
        "checkpoint": str(result.checkpoint),
        "studies": result.studies,
        "macro_auroc": round(result.macro_auroc, 4),
        "thresholds": {k: round(v, 4) for k, v in result.thresholds.items()},
        "verify_thresholds": {k: round(v, 4) for k, v in result.verify_thresholds.items()},
        "nodule_threshold": result.nodule_threshold,
    }
    print(json.dumps(summary, indent=2))
    return EXIT_OK
