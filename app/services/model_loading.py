"""Which model checkpoint a process drafts with, and whether it may.

Order: ``RADSCRIBE_CHECKPOINT``, then the weights shipped in ``models/weights``,
then (only where demonstration weights are allowed) an untrained seeded model
so the pipeline can still be exercised.  In production a checkpoint that is not
marked validated for clinical use is refused unless ``RADSCRIBE_ALLOW_DEMO_MODEL``
says otherwise; every draft from such weights is labelled a demonstration.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

from app.core.settings import Settings
from models.checkpoint import (
    LoadedCheckpoint,
    demo_checkpoint,
    load_checkpoint,
    shipped_checkpoint_path,
)
from models.inference import Drafter
from models.quantize import Precision


class ModelGovernanceError(RuntimeError):
    """The configured checkpoint may not be used in this environment."""


def demo_weights_allowed(settings: Settings) -> bool:
    return settings.allow_demo_model or not settings.is_production


def resolve_checkpoint(settings: Settings) -> LoadedCheckpoint:
    return _resolve(settings.checkpoint, allow_demo=demo_weights_allowed(settings))


def _resolve(checkpoint: Path | None, *, allow_demo: bool) -> LoadedCheckpoint:
    path = checkpoint or shipped_checkpoint_path()
    if path is not None:
        loaded = load_checkpoint(path)
    elif allow_demo:
        loaded = demo_checkpoint()
    else:
        raise ModelGovernanceError(
            "no model checkpoint: set RADSCRIBE_CHECKPOINT to a validated checkpoint"
        )
    if not loaded.meta.validated_for_clinical_use and not allow_demo:
        raise ModelGovernanceError(
            f"checkpoint {loaded.meta.model_version} is not validated for clinical use; "
            "production refuses it unless RADSCRIBE_ALLOW_DEMO_MODEL=true (drafts are then "
            "labelled 'demonstration model, not for diagnosis')"
        )
    return loaded


_lock = threading.Lock()


@functools.cache
def _drafter(
    checkpoint: Path | None, allow_demo: bool, device: str, precision: Precision | None
) -> Drafter:
    return Drafter(_resolve(checkpoint, allow_demo=allow_demo), device=device, precision=precision)


def get_drafter(settings: Settings) -> Drafter:
    """The process-wide drafter for these settings: loaded once, then shared."""
    with _lock:
        return _drafter(
            settings.checkpoint,
            demo_weights_allowed(settings),
            settings.model_device,
            settings.model_precision,
        )


def light_form_device(settings: Settings) -> str:
    """INT8 (dynamic quantization) runs on the CPU; the other forms where the model runs."""
    return "cpu" if settings.load_adaptive_light_precision == "int8" else settings.model_device


def get_light_drafter(settings: Settings) -> Drafter:
    """The lighter form of load-adaptive precision (a student, or the checkpoint in INT8)."""
    with _lock:
        return _drafter(
            settings.load_adaptive_light_checkpoint or settings.checkpoint,
            demo_weights_allowed(settings),
            light_form_device(settings),
            settings.load_adaptive_light_precision,
        )
