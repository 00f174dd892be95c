"""Checkpoints split into parts, and the shipped weights (size limits, loading, not validated)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.checkpoint import (
    load_checkpoint,
    read_meta,
    save_checkpoint,
    shipped_checkpoint_path,
)
from models.config import tiny_config
from models.errors import CheckpointError
from models.networks.model import RadscribeModel
from models.preprocess import PreprocessSpec

PART_LIMIT = 16 * 2**20
SHIPPED_LIMIT = 50 * 10**6


def test_weights_split_into_parts_load_back_and_refuse_tampering(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RadscribeModel(tiny_config()).eval()
    limit = 4_200_000  # the tiny text encoder (3.9 MB) fits one part, the rest another
    sidecar = save_checkpoint(
        tmp_path / "split",
        model,
        model_version="parts-test",
        spec=PreprocessSpec(),
        thresholds={"lung_nodule": 0.7},
        verify_thresholds={"lung_nodule": 0.4, "emphysema": 0.9},
        max_part_bytes=limit,
    )
    meta = read_meta(sidecar)
    parts = [tmp_path / p["file"] for p in meta.weights_parts]
    assert len(parts) > 1 and all(p.stat().st_size <= limit for p in parts)
    assert meta.verify_thresholds["lung_nodule"] == 0.4
    assert meta.verify_thresholds["emphysema"] == 0.5  # never above the decision threshold
    loaded = load_checkpoint(sidecar)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value)
    data = bytearray(parts[-1].read_bytes())
    data[-1] ^= 0xFF
    parts[-1].write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(sidecar)
    parts[0].unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(sidecar)


def test_shipped_weights_are_small_split_marked_and_load() -> None:
    sidecar = shipped_checkpoint_path()
    if sidecar is None:
        pytest.skip("no shipped weights in this checkout")
    meta = read_meta(sidecar)
    assert meta.validated_for_clinical_use is False
    parts = [sidecar.with_name(p["file"]) for p in meta.weights_parts]
    assert parts and all(p.stat().st_size <= PART_LIMIT for p in parts)
    assert sum(p.stat().st_size for p in parts) <= SHIPPED_LIMIT
    assert all(meta.verify_thresholds[s] <= t for s, t in meta.thresholds.items())
    assert "evaluation" in meta.training
    loaded = load_checkpoint(sidecar)
    assert loaded.meta.model_version == meta.model_version
    assert (sidecar.parent / "MODEL_CARD.md").is_file()


def test_shipped_student_is_small_marked_and_recorded_against_the_shipped_teacher() -> None:
    teacher = shipped_checkpoint_path()
    if teacher is None:
        pytest.skip("no shipped weights in this checkout")
    folder = teacher.parent / "student"
    sidecar = folder / "radscribe-synthetic-v2-student.json"
    meta = read_meta(sidecar)
    assert meta.validated_for_clinical_use is False
    weights = sidecar.with_suffix(".safetensors")
    assert weights.stat().st_size <= PART_LIMIT
    shipped = sum(p.stat().st_size for p in teacher.parent.rglob("*.safetensors"))
    assert shipped <= SHIPPED_LIMIT
    record = json.loads((folder / "distillation.json").read_text())
    forms = {(f["model_version"], f["weights_sha256"], f["precision"]) for f in record["forms"]}
    teacher_meta = read_meta(teacher)
    assert (teacher_meta.model_version, teacher_meta.weights_sha256, "bf16") in forms
    assert (meta.model_version, meta.weights_sha256, "int8") in forms
    assert load_checkpoint(sidecar).meta.weights_sha256 == meta.weights_sha256
