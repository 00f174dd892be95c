"""Refit a checkpoint's calibration and operating points on a validation split.

A hospital that takes Radscribe's weights (or its own) sets the per-finding Platt
calibration, the decision and verify thresholds and the nodule objectness threshold
on its own validation studies, without training: the weights stay as they are.  The
same steps the trainer runs after each pass (``MultiModalTrainer._calibrate``), on the
texts a deployment sees (``assign_texts(training=False)``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.training import metrics, nodules
from models.training.config import DataConfig, DictationConfig, ThresholdConfig
from models.training.data import StudyTable, assign_texts
from models.training.sources import open_split
from models.training.text_cache import TextEmbeddingStore, ensure_texts, text_encoder_id
from models.training.thresholds import choose_operating_points
from models.training.trainer import (
    Distributed,
    autocast_dtype,
    fit_calibration,
    predict,
    resolve_device,
)

logger = logging.getLogger("radscribe.recalibrate")


@dataclass(frozen=True)
class Recalibration:
    checkpoint: Path
    """The new checkpoint's sidecar (or weights file when not split)."""
    studies: int
    thresholds: dict[str, float]
    verify_thresholds: dict[str, float]
    nodule_threshold: float
    macro_auroc: float


def recalibrate_checkpoint(
    checkpoint: Path,
    data: DataConfig,
    out: Path,
    *,
    cache_dir: Path,
    split: str = "valid",
    thresholds: ThresholdConfig | None = None,
    dictation: DictationConfig | None = None,
    seed: int = 0,
    device: str = "auto",
    amp: str = "bf16",
    batch_size: int = 8,
    max_part_bytes: int | None = None,
    progress: bool = False,
) -> Recalibration:
    """Write ``out`` (a checkpoint path stem) with calibration and thresholds from ``split``."""
    thresholds = thresholds or ThresholdConfig()
    dictation = dictation or DictationConfig()
    torch_device = resolve_device(device, Distributed())
    loaded = load_checkpoint(checkpoint, device=torch_device)
    model, meta = loaded.model, loaded.meta
    cached = open_split(data, split, meta.preprocess_spec, cache_dir, progress=progress)
    if len(cached) == 0:
        raise ValueError(f"split {split!r} has no usable studies")
    texts = assign_texts(cached.studies, seed=seed, config=dictation, training=False)
    store = None
    if not model.config.text_trainable:
        store = TextEmbeddingStore(cache_dir, text_encoder_id(model))
        ensure_texts(store, texts, model=model, device=torch_device)
    table = StudyTable(cached, texts, model_config=model.config, store=store)
    predictions, maps = predict(
        model,
        table,
        torch_device,
        batch_size=batch_size,
        amp_dtype=autocast_dtype(amp, torch_device),
        keep_nodule_maps=True,
    )
    logits = torch.from_numpy(predictions.logits)
    labels = torch.from_numpy(predictions.labels)
    temperature, bias = fit_calibration(logits, labels)
    head = model.finding_head
    head.calibration_temperature.copy_(temperature.to(head.calibration_temperature.device))
    head.calibration_bias.copy_(bias.to(head.calibration_bias.device))
    calibrated = torch.sigmoid(logits / temperature + bias).numpy()
    points = choose_operating_points(
        calibrated,
        predictions.labels,
        decision_rule=thresholds.decision_rule,
        decision_target=thresholds.decision_target,
        verify_sensitivity=thresholds.verify_sensitivity,
    )
    studies = cached.studies
    candidates = [
        nodules.decode(m, s.grid, top=model.config.max_nodules)
        for m, s in zip(maps, studies, strict=True)
    ]
    nodule_threshold = nodules.choose_threshold([s.nodules for s in studies], candidates)
    macro = float(metrics.macro_auroc(calibrated, predictions.labels))
    record = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "from": str(checkpoint),
        "split": split,
        "studies": len(cached),
        "rule": thresholds.model_dump(),
        "macro_auroc": round(macro, 4),
    }
    saved = save_checkpoint(
        out,
        model,
        model_version=meta.model_version,
        spec=meta.preprocess_spec,
        thresholds=points.decision,
        verify_thresholds=points.verify,
        nodule_threshold=nodule_threshold,
        training={**meta.training, "recalibrated": record},
        max_part_bytes=max_part_bytes,
    )
    logger.info("recalibrated on %d %s studies: %s", len(cached), split, saved)
    return Recalibration(
        checkpoint=saved,
        studies=len(cached),
        thresholds=points.decision,
        verify_thresholds=points.verify,
        nodule_threshold=nodule_threshold,
        macro_auroc=macro,
    )
