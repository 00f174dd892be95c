"""Training under torchrun: two processes on CPU (gloo), gradients averaged by DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models.checkpoint import load_checkpoint, read_meta
from tests.ml.train_fixtures import TINY_TRAIN, write_ctrate


def test_torchrun_two_processes_split_the_epoch_and_rank_0_writes_once(tmp_path: Path) -> None:
    radscribe = Path(sys.executable).with_name("radscribe")
    if not radscribe.is_file():
        pytest.skip("the radscribe command is not installed beside this Python")
    root = write_ctrate(tmp_path / "ctrate", train=8, valid=4)
    config = dict(TINY_TRAIN)
    config.update(
        run_dir=str(tmp_path / "run"),
        epochs=2,
        data={"layout": "ctrate", "root": str(root), "cache_dir": str(tmp_path / "cache")},
    )
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump(config))
    logs = tmp_path / "logs"
    env = dict(os.environ, OMP_NUM_THREADS="1", RADSCRIBE_ENV="development")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "--log-dir", str(logs), "--redirects", "3", "--no-python",
        str(radscribe), "train", "--config", str(config_file),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    rank_logs = {
        rank: "\n".join(p.read_text() for p in logs.rglob(f"{rank}/std*.log")) for rank in (0, 1)
    }
    assert done.returncode == 0, done.stderr[-3000:] + rank_logs[0][-3000:]
    for rank in (0, 1):
        assert f"rank {rank} of 2: 4 of 8 train studies per epoch" in rank_logs[rank]
    run = tmp_path / "run"
    metrics = (run / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 3  # header and one row per epoch, written by rank 0 alone
    best = run / "checkpoints" / "epoch-002.json"
    meta = read_meta(best)
    assert meta.training["epoch"] == 2
    loaded = load_checkpoint(best)
    assert loaded.meta.weights_sha256 == meta.weights_sha256
