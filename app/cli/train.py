"""`radscribe train --config FILE.yaml`: fit the drafting model to a data set (resumable)."""

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
        "train", help="train the drafting model (CT-RATE layout, hospital export or synthetic)"
    )
    parser.add_argument("--config", type=Path, required=True, help="training config (YAML)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/resume.pt")
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--run-dir", type=Path, help="override the config's run_dir")
    parser.add_argument("--data", type=Path, help="data root (CT-RATE folder or hospital export)")
    parser.add_argument("--image-dir", type=Path, help="CT-RATE volume folder (train/, valid/)")
    parser.add_argument("--text-dir", type=Path, help="CT-RATE radiology_text_reports folder")
    parser.add_argument("--label-dir", type=Path, help="CT-RATE multi_abnormality_labels folder")
    parser.add_argument("--device", help="cpu, cuda or auto")
    parser.add_argument(
        "--time-limit-minutes", type=float, help="stop cleanly (resumable) after this long"
    )
    parser.set_defaults(handler=run_train, needs_settings=False)


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from models.errors import ModelInputError
    from models.training.config import ConfigError, load_train_config
    from models.training.ctrate import LayoutError
    from models.training.trainer import MultiModalTrainer

    try:
        config = load_train_config(args.config).with_overrides(
            device=args.device, time_limit_minutes=args.time_limit_minutes
        )
        trainer = MultiModalTrainer(config)
        result = trainer.train(
            image_dir=args.image_dir,
            text_dir=args.text_dir,
            label_dir=args.label_dir,
            data_root=args.data,
            epochs=args.epochs,
            run_dir=args.run_dir,
            resume=args.resume,
        )
    except (ConfigError, LayoutError, ModelInputError, ValueError) as exc:
        print(f"radscribe train: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"run folder: {result.run_dir}")
    print(f"epochs done: {result.epochs_done}")
    if result.best_checkpoint is not None:
        print(f"best checkpoint: {result.best_checkpoint}")
    if result.stopped_early:
        print("stopped early: validation loss stopped improving")
    if not result.finished:
        print("time limit reached: continue with --resume")
        return EXIT_INTERRUPTED
    return EXIT_OK
