"""Training on a tiny CT-RATE-layout set on CPU: checkpoints, resume, evaluate, CLI, distill."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, read_meta
from models.findings import FINDINGS
from models.training.trainer import MultiModalTrainer, TrainResult


def _fixtures() -> ModuleType:
    name = "radscribe_train_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("train_fixtures.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def ctrate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _fixtures().write_ctrate(tmp_path_factory.mktemp("ctrate"))


def _config(root: Path, run_dir: Path, cache: Path, **overrides: Any) -> dict[str, Any]:
    config = dict(_fixtures().TINY_TRAIN)
    config.update(
        run_dir=str(run_dir), data={"layout": "ctrate", "root": str(root), "cache_dir": str(cache)}
    )
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def trained(ctrate: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Path]:
    base = tmp_path_factory.mktemp("runs")
    trainer = MultiModalTrainer(_config(ctrate, base / "straight", base / "cache"))
    trainer.progress = False
    return trainer.train(epochs=2), base


def test_training_writes_checkpoints_with_thresholds_state_and_metrics(
    trained: tuple[TrainResult, Path],
) -> None:
    result, _ = trained
    assert result.finished and result.epochs_done == 2 and result.best_checkpoint is not None
    run = result.run_dir
    for name in ("metrics.csv", "curves.png", "resume.pt", "config.json"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(float(r["epoch"])) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["val_loss"])) for r in rows)
    assert all(float(r["train_image_only"]) > 0 for r in rows)  # the auxiliary loss ran
    for epoch in (1, 2):
        stem = run / "checkpoints" / f"epoch-{epoch:03d}"
        assert stem.with_suffix(".optim.pt").is_file()
        meta = read_meta(stem.with_suffix(".json"))
        assert set(meta.thresholds) == {f.slug for f in FINDINGS}
        assert all(meta.verify_thresholds[s] <= meta.thresholds[s] for s in meta.thresholds)
        assert meta.training["epoch"] == epoch and "val_loss" in meta.training["metrics"]
        assert meta.validated_for_clinical_use is False
    loaded = load_checkpoint(result.best_checkpoint)
    temperature = loaded.model.finding_head.calibration_temperature
    assert bool(torch.isfinite(temperature).all())


def test_a_run_stopped_by_its_time_limit_resumes_to_the_same_weights(
    ctrate: Path, trained: tuple[TrainResult, Path]
) -> None:
    straight, base = trained
    config = _config(ctrate, base / "chunked", base / "cache", time_limit_minutes=0.3)
    first = MultiModalTrainer(config)
    first.progress = False
    partial = first.train(epochs=2)
    assert not partial.finished  # the limit minus its 20 s margin has passed: stop after a batch
    state = torch.load(base / "chunked" / "resume.pt", weights_only=False)
    assert state["state"]["batch"] == 1 and state["state"]["epoch"] == 0
    resumed = MultiModalTrainer(dict(config, time_limit_minutes=None))
    resumed.progress = False
    done = resumed.train(epochs=2, resume=True)
    assert done.finished and done.epochs_done == 2
    a = load_checkpoint(straight.run_dir / "checkpoints" / "epoch-002.json").model.state_dict()
    b = load_checkpoint(done.run_dir / "checkpoints" / "epoch-002.json").model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_evaluate_reports_aurocs_ablation_hard_split_and_plots(
    ctrate: Path, trained: tuple[TrainResult, Path], tmp_path: Path
) -> None:
    from app.cli.main import main

    result, base = trained
    assert result.best_checkpoint is not None
    out = tmp_path / "evaluation"
    code = main(
        [
            "evaluate", "--checkpoint", str(result.best_checkpoint), "--data", str(ctrate),
            "--split", "valid", "--out", str(out), "--cache-dir", str(base / "cache"),
            "--bootstrap", "30", "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert set(report["scenarios"]) == {
        "image only", "+ EMR", "+ dictation", "all", "shuffled EMR", "deployment mix",
    }  # fmt: skip
    nodule = report["scenarios"]["all"]["auroc"]["lung_nodule"]
    assert nodule["low"] <= nodule["value"] <= nodule["high"]
    assert "hard_split" in report and "dictation_gate" in report
    for snr in ("-5 dB", "0 dB", "30 dB"):
        assert 0.0 <= report["dictation_gate"][snr]["mean_weight"] <= 1.0
    markdown = (out / "evaluation.md").read_text()
    assert "| Lung nodule |" in markdown and "Modality ablation" in markdown
    for plot in ("auroc_per_finding.png", "ablation.png", "reliability.png"):
        assert (out / plot).stat().st_size > 1000


def test_calibrate_refits_thresholds_on_a_split_and_keeps_the_weights(
    ctrate: Path, trained: tuple[TrainResult, Path], tmp_path: Path
) -> None:
    from app.cli.main import main

    result, base = trained
    assert result.best_checkpoint is not None
    out = tmp_path / "local" / "recalibrated"
    code = main(
        [
            "calibrate", "--checkpoint", str(result.best_checkpoint), "--data", str(ctrate),
            "--split", "valid", "--out", str(out), "--cache-dir", str(base / "cache"),
            "--specificity", "0.8", "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0
    before = load_checkpoint(result.best_checkpoint)
    after = load_checkpoint(out.with_suffix(".json"))
    record = after.meta.training["recalibrated"]
    assert record["split"] == "valid" and record["rule"]["decision_target"] == 0.8
    assert set(after.meta.thresholds) == {f.slug for f in FINDINGS}
    assert all(
        0.0 <= after.meta.verify_thresholds[s] <= t <= 1.0 for s, t in after.meta.thresholds.items()
    )
    changed = {
        name
        for name, value in after.model.state_dict().items()
        if not torch.equal(value, before.model.state_dict()[name])
    }
    assert changed <= {
        "finding_head.calibration_temperature",
        "finding_head.calibration_bias",
    }, changed


def test_calibrate_refuses_a_missing_checkpoint(tmp_path: Path, ctrate: Path) -> None:
    from app.cli.main import main

    code = main(
        [
            "calibrate", "--checkpoint", str(tmp_path / "none.json"), "--data", str(ctrate),
            "--out", str(tmp_path / "x"), "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 2


def test_cli_train_refuses_a_bad_config_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli.main import main

    config = tmp_path / "bad.yaml"
    config.write_text("fusion_method: sum\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "fusion_method" in capsys.readouterr().err


def test_distillation_trains_a_student_and_reports_size_latency_and_auroc(
    ctrate: Path, trained: tuple[TrainResult, Path]
) -> None:
    from models.training.config import TrainConfig
    from models.training.distill import compare, distill

    result, base = trained
    assert result.best_checkpoint is not None
    tiny = _fixtures().TINY_TRAIN
    student = TrainConfig.model_validate(
        _config(
            ctrate,
            base / "student",
            base / "cache",
            epochs=1,
            model=dict(tiny["model"], d_model=16, heads=2),
        )
    )
    done = distill(result.best_checkpoint, student, progress=False)
    assert done.best_checkpoint is not None
    report = compare(
        result.best_checkpoint,
        done.best_checkpoint,
        student,
        base / "distill",
        cache_dir=base / "cache",
        split="valid",
        int8_studies=2,
    )
    assert report["size_bytes"]["student fp32"] < report["size_bytes"]["teacher fp32"]
    assert set(report["latency_s"]) == {
        "teacher fp32",
        "teacher int8",
        "student fp32",
        "student int8",
    }
    assert (base / "distill" / "distillation.json").is_file()
    # Each form names its checkpoint and precision: what load-adaptive precision checks.
    from models.checkpoint import read_meta

    forms = {form["name"]: form for form in report["forms"]}
    assert set(forms) == set(report["macro_auroc_subset"])
    student_sha = read_meta(done.best_checkpoint).weights_sha256
    assert forms["student int8"]["weights_sha256"] == student_sha
    assert forms["teacher int8"]["weights_sha256"] != student_sha
    assert (forms["student int8"]["precision"], forms["student fp32"]["precision"]) == (
        "int8",
        "fp32",
    )
