"""The shipped weights' recipe on a rented, offline GPU machine, in commands of under 10 minutes.

The machine has PyTorch but no internet; pure-Python packages travel as wheels and
the frozen MiniLM as a repacked copy (``models.training.minilm_pack``).  Volumes are
generated there, at model resolution, by the synthetic fast path.  Two stages:

``first``: starts the bf16/fp32 training benchmark on the GPU while the CPU cores
generate and cache the valid, test and (until the data budget) train studies;
picks the epoch count from the measured throughput; trains until the stage's
time is nearly up (``resume.pt`` is written); evaluates; exports.

``continue``: resumes training, evaluates the best checkpoint in full, distils the
student if time remains, exports.

Exports go to ``--out``: the best checkpoint as safetensors parts of at most
16 MiB plus its JSON sidecar, and ``results.tar.gz`` (evaluation, metrics, curves,
benchmark, distillation report and student, logs).  MODEL_CARD.md gives the
exact commands.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from models.training.config import TrainConfig, load_train_config

logger = logging.getLogger("radscribe.recipe")

PART_BYTES = 15 * 2**20
SHIPPED_NAME = "radscribe-synthetic-v1"
THROUGHPUT_EFFICIENCY = 0.6
"""Share of the benchmark's samples/s the real training loop reaches (refiner, data, texts)."""
MIN_EPOCHS, MAX_EPOCHS = 1, 60
FALLBACK_EPOCHS = 8
RECIPE_FILE = "recipe.json"


class Clock:
    def __init__(self, budget_s: float) -> None:
        self.start = time.monotonic()
        self.budget_s = budget_s

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def _configure(args: argparse.Namespace) -> TrainConfig:
    config = load_train_config(args.config)
    data = config.data.model_dump()
    data.update(cache_dir=str(args.work / "cache"), cache_workers=args.workers)
    for key, value in (
        ("synthetic_train", args.train),
        ("synthetic_valid", args.valid),
        ("synthetic_test", args.test),
    ):
        if value is not None:
            data[key] = value
    overrides: dict[str, Any] = {
        "data": data,
        "run_dir": str(args.work / "run"),
        "device": args.device,
    }
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    return config.with_overrides(**overrides)


def _build_eval_caches(config: TrainConfig, clock: Clock) -> dict[str, int]:
    from models.training.sources import open_split

    spec = config.preprocess_spec()
    cache_dir = Path(config.data.cache_dir or "")
    counts = {}
    for split in ("valid", "test"):
        counts[split] = len(open_split(config.data, split, spec, cache_dir, progress=False))
        logger.info("%s: %d studies cached (%.0f s)", split, counts[split], clock.elapsed())
    return counts


def _start_generation(args: argparse.Namespace, deadline: float) -> subprocess.Popen[bytes]:
    """Generate train studies in another process until ``deadline`` (a time.time() value)."""
    command = [
        sys.executable, "-m", "models.training.recipe", "generate",
        "--config", str(args.config), "--work", str(args.work), "--out", str(args.out),
        "--workers", str(args.workers), "--deadline", str(deadline), "--device", args.device,
    ]  # fmt: skip
    if args.train is not None:
        command += ["--train", str(args.train)]
    log = open(args.work / "generate.log", "a")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _train_done(config: TrainConfig) -> int:
    """Train studies cached so far (0 before the cache exists)."""
    import numpy as np

    from models.training.sources import split_records
    from models.training.volume_cache import DONE, fingerprint

    records, _ = split_records(config.data, "train")
    root = (
        Path(config.data.cache_dir or "")
        / "volumes"
        / fingerprint("train", config.preprocess_spec(), records)
    )
    status = root / "status.npy"
    return int((np.load(status) == DONE).sum()) if status.is_file() else 0


def stage_generate(args: argparse.Namespace) -> int:
    from models.training.sources import open_split

    config = _configure(args)
    if args.with_eval:
        _build_eval_caches(config, Clock(args.budget_s))
    budget = max(1.0, args.deadline - time.time())
    cached = open_split(
        config.data,
        "train",
        config.preprocess_spec(),
        Path(config.data.cache_dir or ""),
        time_budget_s=budget,
        progress=False,
    )
    logger.info("train cache: %d studies", len(cached))
    return 0


def _export(checkpoint: Path, out: Path, name: str, extra: dict[str, Any]) -> list[Path]:
    from models.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(checkpoint)
    meta = loaded.meta
    target = out / "weights"
    target.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        target / name,
        loaded.model,
        model_version=meta.model_version,
        spec=meta.preprocess_spec,
        thresholds=meta.thresholds,
        verify_thresholds=meta.verify_thresholds,
        nodule_threshold=meta.nodule_threshold,
        training={**meta.training, **extra},
        max_part_bytes=PART_BYTES,
    )
    return sorted(target.iterdir())


def _bundle(work: Path, out: Path, extra: list[Path]) -> None:
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        for path in [
            work / "run" / "metrics.csv",
            work / "run" / "curves.png",
            work / "run" / "config.json",
            *extra,
        ]:
            if path.exists():
                tar.add(
                    path, arcname=path.relative_to(work) if path.is_relative_to(work) else path.name
                )


def stage_first(args: argparse.Namespace, clock: Clock) -> int:
    from models.training.trainer import MultiModalTrainer

    config = _configure(args)
    bench = None
    bench_json = args.work / "bench_train_gpu.json"
    if config.device != "cpu" and not args.no_bench:
        bench = subprocess.Popen(
            [
                sys.executable,
                "bench/bench_train_gpu.py",
                "--config",
                str(args.config),
                "--json",
                str(bench_json),
            ],
            stdout=open(args.work / "bench.log", "w"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
        )
    counts = _build_eval_caches(config, clock)
    generation = _start_generation(args, time.time() + clock.left() - args.reserve_s)
    throughput = None
    if bench is not None:
        bench.wait()
        if bench_json.is_file():
            throughput = json.loads(bench_json.read_text())["bf16"]["samples_per_s"]
        logger.info(
            "bench done (%.0f s): %s", clock.elapsed(), (args.work / "bench.log").read_text()[-700:]
        )
    while (
        _train_done(config) < args.min_train
        and clock.elapsed() < args.data_budget_s
        and generation.poll() is None
    ):
        time.sleep(5)
    counts["train_at_start"] = _train_done(config)
    planned = config.data.synthetic_train
    epochs = FALLBACK_EPOCHS  # no benchmark: a short schedule that can finish
    if throughput:
        train_s = clock.left() - args.reserve_s + args.continue_train_s
        epochs = int(train_s * throughput * THROUGHPUT_EFFICIENCY / planned)
        epochs = max(MIN_EPOCHS, min(MAX_EPOCHS, epochs))
    if args.epochs:
        epochs = args.epochs
    (args.work / RECIPE_FILE).write_text(
        json.dumps({"epochs": epochs, "counts": counts, "throughput": throughput})
    )
    logger.info(
        "training %d passes of %d planned studies (%d cached so far)",
        epochs,
        planned,
        counts["train_at_start"],
    )
    limit = max(1.0, (clock.left() - args.reserve_s) / 60)
    config = _growing(config).with_overrides(epochs=epochs, time_limit_minutes=limit)
    trainer = MultiModalTrainer(config)
    trainer.progress = False
    result = trainer.train(resume=True)
    logger.info(
        "stage done: %d epochs (%.0f s), %d train studies cached",
        result.epochs_done,
        clock.elapsed(),
        _train_done(config),
    )
    _stop(generation)
    return _finish(args, config, clock, bootstrap=args.bootstrap_first, student=args.student)


def _growing(config: TrainConfig) -> TrainConfig:
    data = config.data.model_dump()
    data["grow_train"] = True
    return config.with_overrides(data=data)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def stage_continue(args: argparse.Namespace, clock: Clock) -> int:
    from models.training.trainer import MultiModalTrainer

    recipe_path = args.work / RECIPE_FILE
    if not recipe_path.is_file():
        logger.error(
            "no %s: the first stage did not run on this machine (its disk is gone)", recipe_path
        )
        return 3
    recipe = json.loads(recipe_path.read_text())
    config = _growing(_configure(args))
    reserve = args.reserve_s + (args.distill_s if args.student else 0.0)
    generation = _start_generation(args, time.time() + clock.left() - reserve - 30)
    limit = max(1.0, (clock.left() - reserve) / 60)
    config = config.with_overrides(epochs=int(recipe["epochs"]), time_limit_minutes=limit)
    trainer = MultiModalTrainer(config)
    trainer.progress = False
    result = trainer.train(resume=True)
    logger.info(
        "training: %d epochs, finished %s (%.0f s)",
        result.epochs_done,
        result.finished,
        clock.elapsed(),
    )
    _stop(generation)
    return _finish(args, config, clock, bootstrap=args.bootstrap_continue, student=args.student)


def _finish(
    args: argparse.Namespace,
    config: TrainConfig,
    clock: Clock,
    *,
    bootstrap: int,
    student: Path | None = None,
) -> int:
    from models.training.evaluate import EvaluationOptions, evaluate_checkpoint

    run = args.work / "run"
    best = run / "checkpoints" / "best.json"
    if not best.is_file():
        logger.error("no best checkpoint yet")
        return 4
    cache_dir = Path(config.data.cache_dir or "")
    evaluation = args.work / "evaluation"
    report = evaluate_checkpoint(
        best,
        config.data,
        evaluation,
        cache_dir=cache_dir,
        options=EvaluationOptions(
            split="test", bootstrap=bootstrap, device=config.device, amp=config.amp, progress=False
        ),
        dictation=config.dictation,
    )
    logger.info("evaluation (%.0f s): %s", clock.elapsed(), json.dumps(report["summary"]))
    extra = [
        evaluation,
        args.work / "bench.log",
        args.work / "bench_train_gpu.json",
        args.work / RECIPE_FILE,
    ]
    if student is not None and clock.left() > args.distill_min_s:
        extra += _distill(args, config, best, student, clock)
    args.out.mkdir(parents=True, exist_ok=True)
    recipe = json.loads((args.work / RECIPE_FILE).read_text())
    summary = {"evaluation": report["summary"], "recipe": recipe}
    files = _export(best, args.out, SHIPPED_NAME, summary)
    _bundle(args.work, args.out, extra)
    logger.info("exported %s (%.0f s)", [f.name for f in files], clock.elapsed())
    return 0


def _distill(
    args: argparse.Namespace, config: TrainConfig, teacher: Path, student_config: Path, clock: Clock
) -> list[Path]:
    from models.training.distill import compare, distill, summary_lines

    student = load_train_config(student_config)
    data = config.data.model_dump()
    student = student.with_overrides(
        data=data, run_dir=str(args.work / "student"), device=config.device
    )
    recipe_path = args.work / RECIPE_FILE
    recipe = json.loads(recipe_path.read_text()) if recipe_path.is_file() else {}
    limit = max(1.0, (clock.left() - args.compare_reserve_s) / 60)
    epochs = student.epochs
    if recipe.get("throughput"):
        speed = (
            recipe["throughput"] * THROUGHPUT_EFFICIENCY * 1.5
        )  # smaller net, teacher forward added
        studies = max(1, _train_done(config))
        epochs = max(1, min(student.epochs, int(limit * 60 * speed / studies)))
    student = student.with_overrides(epochs=epochs, time_limit_minutes=limit)
    result = distill(teacher, student, progress=False)
    logger.info("student: %d epochs (%.0f s)", result.epochs_done, clock.elapsed())
    best = args.work / "student" / "checkpoints" / "best.json"
    report = compare(
        teacher,
        best,
        student,
        args.work / "distillation",
        cache_dir=Path(config.data.cache_dir or ""),
        int8_studies=args.int8_studies,
    )
    for line in summary_lines(report):
        logger.info("%s", line)
    folder = args.work / "distillation"
    for path in (args.work / "student" / "checkpoints").glob("best.*"):
        shutil.copyfile(path, folder / path.name)
    return [folder, args.work / "student" / "metrics.csv"]


def stage_distill(args: argparse.Namespace, clock: Clock) -> int:
    """Distil ``--student`` from ``--teacher`` (shipped weights) on the recipe's synthetic data.

    The data come from ``generate --with-eval`` started earlier on the same machine; the
    student takes in train studies as they are cached (``grow_train``).
    """
    if args.student is None or args.teacher is None:
        logger.error("distill needs --teacher and --student")
        return 2
    config = _configure(args)
    while _train_done(config) < args.min_train and clock.elapsed() < args.data_budget_s:
        time.sleep(5)
    logger.info("distilling with %d train studies cached", _train_done(config))
    extra = _distill(args, _growing(config), args.teacher, args.student, clock)
    args.out.mkdir(parents=True, exist_ok=True)
    _bundle(args.work, args.out, extra)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("first", "continue", "generate", "distill"))
    parser.add_argument("--config", type=Path, default=Path("configs/train/shipped.yaml"))
    parser.add_argument("--student", type=Path)
    parser.add_argument("--teacher", type=Path, help="distill: the teacher checkpoint")
    parser.add_argument(
        "--with-eval", action="store_true", help="generate: the valid and test splits first"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/radscribe-recipe"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-s", type=float, default=560.0)
    parser.add_argument("--data-budget-s", type=float, default=330.0)
    parser.add_argument(
        "--reserve-s", type=float, default=60.0, help="kept for evaluation and export"
    )
    parser.add_argument("--continue-train-s", type=float, default=200.0)
    parser.add_argument("--distill-min-s", type=float, default=150.0)
    parser.add_argument("--distill-s", type=float, default=150.0, help="kept for distillation")
    parser.add_argument("--min-train", type=int, default=300, help="studies before training")
    parser.add_argument("--deadline", type=float, default=0.0, help="generate: stop time")
    parser.add_argument("--compare-reserve-s", type=float, default=60.0)
    parser.add_argument("--int8-studies", type=int, default=150)
    parser.add_argument("--bootstrap-first", type=int, default=200)
    parser.add_argument("--bootstrap-continue", type=int, default=1000)
    parser.add_argument("--train", type=int)
    parser.add_argument("--valid", type=int)
    parser.add_argument("--test", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-bench", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout
    )
    clock = Clock(args.budget_s)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage == "generate":
        return stage_generate(args)
    if args.stage == "first":
        return stage_first(args, clock)
    if args.stage == "distill":
        return stage_distill(args, clock)
    return stage_continue(args, clock)


if __name__ == "__main__":
    raise SystemExit(main())
