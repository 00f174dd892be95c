"""Training against over-trusted texts: misfiled EMR text, and a dictation gate set by quality."""

from __future__ import annotations

import math

import numpy as np
import torch

from models.config import tiny_config
from models.findings import NUM_FINDINGS
from models.losses import radscribe_loss
from models.networks.model import ModelBatch, RadscribeModel, TextInput
from models.training.data import TrainingBatch
from models.training.trainer import mismatch_emr
from models.volume import GridGeometry

GRID = GridGeometry.centred(shape=(32, 32, 32), spacing_mm=(9.0, 9.0, 9.0), centre_ras=np.zeros(3))


def _texts(b: int, *, present: list[bool] | None = None) -> TextInput:
    """Study i's text is the token ids [101, i + 1000, 102], so it can be recognised."""
    ids = torch.tensor([[101, 1000 + i, 102] for i in range(b)])
    flags = torch.tensor(present if present is not None else [True] * b)
    return TextInput(
        present=flags, attention_mask=torch.ones(b, 3, dtype=torch.bool), token_ids=ids
    )


def _training_batch(b: int, *, dictation: TextInput | None = None) -> TrainingBatch:
    generator = torch.Generator().manual_seed(5)
    model = ModelBatch(
        image=torch.randn(b, 1, 32, 32, 32, generator=generator),
        image_quality=torch.rand(b, 6, generator=generator),
        emr=_texts(b),
        dictation=dictation if dictation is not None else TextInput.absent(b),
        dictation_quality=torch.tensor([[0.9, 0.05, 0.5]] * b),
    )
    return TrainingBatch(
        model=model,
        labels=torch.eye(b, NUM_FINDINGS),
        nodules=[None] * b,
        grids=[GRID] * b,
        dictation_accuracy=torch.full((b,), math.nan),
        positions=list(range(b)),
    )


def _owner(batch: TrainingBatch) -> list[int]:
    ids = batch.model.emr.token_ids
    assert ids is not None
    return [int(v) - 1000 for v in ids[:, 1]]


def test_chosen_studies_get_another_studys_emr_and_keep_their_labels() -> None:
    batch = _training_batch(6)
    moved = mismatch_emr(batch, 0.5, torch.Generator().manual_seed(11))
    owners = _owner(moved)
    changed = [i for i, owner in enumerate(owners) if owner != i]
    assert 0 < len(changed) < 6  # about half, with this seed
    assert sorted(owners[i] for i in changed) == sorted(changed)  # passed round among them
    assert torch.equal(moved.labels, batch.labels)
    assert torch.equal(moved.model.image, batch.model.image)


def test_every_study_mismatched_when_asked_and_none_at_zero() -> None:
    batch = _training_batch(4)
    everyone = mismatch_emr(batch, 0.999, torch.Generator().manual_seed(2))
    assert all(owner != i for i, owner in enumerate(_owner(everyone)))
    assert _owner(mismatch_emr(batch, 0.0, torch.Generator().manual_seed(2))) == [0, 1, 2, 3]


def test_an_absent_emr_travels_as_absent() -> None:
    batch = _training_batch(2)
    batch.model.emr = _texts(2, present=[False, True])
    moved = mismatch_emr(batch, 0.999, torch.Generator().manual_seed(0))
    assert moved.model.emr.present.tolist() == [True, False]


def _dictation_gate_gradient(from_quality: bool) -> float:
    torch.manual_seed(0)
    model = RadscribeModel(
        tiny_config(modality_dropout=0.0, dictation_gate_from_quality=from_quality)
    )
    model.train()
    batch = _training_batch(2, dictation=_texts(2)).model
    out = model(batch)
    labels = torch.zeros(2, NUM_FINDINGS)
    radscribe_loss(out, finding_labels=labels)["findings"].backward()
    final = model.gate.net[2]
    assert isinstance(final, torch.nn.Linear) and final.bias.grad is not None
    return float(final.bias.grad[2].abs())


def test_a_quality_gate_is_not_moved_by_the_findings_loss() -> None:
    assert _dictation_gate_gradient(from_quality=False) > 0.0
    assert _dictation_gate_gradient(from_quality=True) == 0.0
