"""Training under torchrun on one GPU and on several: does every rank step, and how fast?

Runs ``MultiModalTrainer`` (the code behind ``radscribe train``) under
``torch.distributed.run --standalone --nproc-per-node N`` for each N of ``--gpus``,
on a synthetic cache that ``models.training.recipe generate`` built (same
``--train/--valid/--test`` counts, same ``--work``)::

    python3 -m models.training.recipe generate --with-eval --train 400 --valid 100 \\
        --test 50 --workers 24 --work /tmp/rw --out /tmp/rout --deadline $(( $(date +%s) + 900 ))
    OMP_NUM_THREADS=8 python3 bench/bench_train_ddp.py --work /tmp/rw --train 400 \\
        --valid 100 --test 50 --epochs 10 --gpus 2,1

It prints each run's samples/s per epoch (all ranks together) and their median
over the epochs after the first two (cuDNN autotuning, caches warming).  It
stops if a rank never logged its share of the epoch or the run did not write
exactly one metrics row per epoch, and names each rank on which DDP warned that
it copies gradients whose strides differ from their parameters'.  torchrun sets
OMP_NUM_THREADS=1 per process when it starts several and the variable is
unset; set it for a fair comparison.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TRAIN = """import logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
from models.training.config import load_train_config
from models.training.trainer import MultiModalTrainer
result = MultiModalTrainer(load_train_config(sys.argv[1])).train()
print("epochs done", result.epochs_done)
"""
SETTLED_FROM_EPOCH = 3


def _config(args: argparse.Namespace, gpus: int) -> Path:
    config = yaml.safe_load(args.config.read_text())
    config["epochs"] = args.epochs
    config["run_dir"] = str(args.work / f"ddp-bench-{gpus}")
    config["early_stopping_patience"] = args.epochs + 1
    config["data"].update(
        synthetic_train=args.train,
        synthetic_valid=args.valid,
        synthetic_test=args.test,
        cache_dir=str(args.work / "cache"),
    )
    path = args.work / f"ddp-bench-{gpus}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(args: argparse.Namespace, gpus: int) -> tuple[list[float], float]:
    config = _config(args, gpus)
    logs = args.work / f"ddp-bench-{gpus}-logs"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(gpus), "--log-dir", str(logs), "--redirects", "3",
        "--no-python", sys.executable, "-c", TRAIN, str(config),
    ]  # fmt: skip
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=REPO)
    seconds = time.monotonic() - started
    rank_logs = {
        r: "".join(p.read_text() for p in logs.rglob(f"{r}/std*.log")) for r in range(gpus)
    }
    if done.returncode != 0:
        print(rank_logs.get(0, "")[-4000:])
        raise SystemExit(f"{gpus} GPU(s): torchrun exited {done.returncode}")
    for rank, text in rank_logs.items():
        if f"rank {rank} of {gpus}:" not in text and gpus > 1:
            raise SystemExit(f"rank {rank} of {gpus} never logged its share of the epoch")
        if "Grad strides do not match bucket view strides" in text:
            print(f"rank {rank}: DDP copied gradients (strides differ from the parameters')")
    run_dir = Path(yaml.safe_load(config.read_text())["run_dir"])
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) != args.epochs:
        raise SystemExit(f"{gpus} GPU(s): {len(rows)} metrics rows for {args.epochs} epochs")
    return [float(row["samples_per_s"]) for row in rows], seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="recipe generate's --work")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train" / "shipped.yaml")
    parser.add_argument("--train", type=int, required=True)
    parser.add_argument("--valid", type=int, required=True)
    parser.add_argument("--test", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--gpus", default="2,1", help="comma-separated process counts")
    args = parser.parse_args()
    if args.epochs < SETTLED_FROM_EPOCH:
        parser.error(f"--epochs must be at least {SETTLED_FROM_EPOCH}")
    import torch

    print(
        f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    )
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    medians: dict[int, float] = {}
    for gpus in (int(g) for g in args.gpus.split(",")):
        rates, seconds = _run(args, gpus)
        medians[gpus] = statistics.median(rates[SETTLED_FROM_EPOCH - 1 :])
        per_epoch = " ".join(f"{r:.0f}" for r in rates)
        print(f"{gpus} GPU(s): samples/s per epoch {per_epoch}; wall {seconds:.0f} s")
    for gpus, rate in sorted(medians.items()):
        epochs = f"epochs {SETTLED_FROM_EPOCH}-{args.epochs}"
        line = f"{gpus} GPU(s): median {rate:.1f} samples/s ({epochs})"
        if 1 in medians and gpus > 1:
            line += f", {rate / medians[1]:.2f}x one GPU"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
