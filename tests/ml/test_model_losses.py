"""Training-side helpers: nodule targets, the loss, Platt calibration and thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.calibration import choose_thresholds, fit_platt
from models.config import tiny_config
from models.findings import NUM_FINDINGS
from models.losses import NoduleTarget, nodule_cell_targets, radscribe_loss
from models.networks.model import ModelBatch, RadscribeModel, TextInput
from models.volume import GridGeometry

GRID = GridGeometry.centred(shape=(64, 64, 48), spacing_mm=(6.0, 6.0, 7.0), centre_ras=np.zeros(3))


def test_a_nodule_lands_in_the_cell_holding_its_centre() -> None:
    inside = NoduleTarget(
        centre_ras=(50.0, -30.0, 20.0), diameter_mm=9.0, type_index=2, lobe_index=0
    )
    outside = NoduleTarget(
        centre_ras=(900.0, 0.0, 0.0), diameter_mm=5.0, type_index=0, lobe_index=1
    )
    targets = nodule_cell_targets([[inside, outside]], [GRID], (4, 4, 3))
    assert float(targets.objectness.sum()) == 1.0
    cell = tuple(int(v) for v in torch.nonzero(targets.objectness[0])[0])
    voxel = GRID.ras_to_voxel(np.array(inside.centre_ras))
    fractional = (voxel + 0.5) / (np.array(GRID.shape) / np.array([4, 4, 3])) - 0.5
    assert cell == tuple(int(v) for v in np.round(fractional))
    offset = targets.offset[0, :, cell[0], cell[1], cell[2]].numpy()
    assert np.allclose(offset, fractional - np.round(fractional), atol=1e-6)
    assert float(targets.log_diameter[0][cell]) == pytest.approx(np.log(9.0))
    assert int(targets.type_index[0][cell]) == 2 and int(targets.lobe_index[0][cell]) == 0


def _batch(shape: tuple[int, int, int] = (64, 64, 48)) -> ModelBatch:
    generator = torch.Generator().manual_seed(3)
    return ModelBatch(
        image=torch.randn(2, 1, *shape, generator=generator),
        image_quality=torch.rand(2, 6, generator=generator),
        emr=TextInput.absent(2),
        dictation=TextInput.absent(2),
        dictation_quality=torch.zeros(2, 3),
    )


def test_unknown_labels_do_not_count() -> None:
    torch.manual_seed(0)
    model = RadscribeModel(tiny_config()).eval()
    with torch.no_grad():
        output = model(_batch())
    labels = torch.full((2, NUM_FINDINGS), float("nan"))
    labels[:, 0] = 1.0
    loss = radscribe_loss(output, finding_labels=labels)["findings"]
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        output.finding_logits[:, 0], torch.ones(2)
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_a_few_steps_fit_a_fixed_batch() -> None:
    """The loss is wired to every head: a handful of Adam steps lower it clearly."""
    torch.manual_seed(0)
    model = RadscribeModel(tiny_config(modality_dropout=0.0))
    model.train()
    batch = _batch((32, 32, 32))  # small: this test trains
    labels = torch.tensor([[1.0, 0.0] * 9, [0.0, 1.0] * 9])
    nodules = [
        [NoduleTarget(centre_ras=(60.0, 0.0, 30.0), diameter_mm=12.0, type_index=0, lobe_index=0)],
        [],
    ]
    output = model(batch)
    targets = nodule_cell_targets(nodules, [GRID, GRID], tuple(output.nodule_map.shape[2:]))
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(10):
        output = model(batch)
        loss = radscribe_loss(output, finding_labels=labels, nodule_targets=targets)
        optimiser.zero_grad()
        loss["total"].backward()
        optimiser.step()
        losses.append(float(loss["total"]))
    assert losses[-1] < 0.5 * losses[0], losses


def test_platt_scaling_recovers_temperature_and_bias() -> None:
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(0, 3, (20000, 2)), dtype=torch.float32)
    true = torch.sigmoid(logits / torch.tensor([2.0, 0.5]) + torch.tensor([0.5, -1.0]))
    labels = torch.bernoulli(true, generator=torch.Generator().manual_seed(0))
    labels[:100, 1] = float("nan")
    temperature, bias = fit_platt(logits, labels)
    assert temperature.numpy() == pytest.approx([2.0, 0.5], rel=0.1)
    assert bias.numpy() == pytest.approx([0.5, -1.0], abs=0.1)


def test_platt_scaling_does_not_saturate_on_separable_findings() -> None:
    """200 validation studies the model separates perfectly: probabilities stay below 1."""
    logits = torch.cat([torch.linspace(-9, -1, 180), torch.linspace(2, 12, 20)])[:, None]
    labels = torch.cat([torch.zeros(180), torch.ones(20)])[:, None]
    temperature, bias = fit_platt(logits, labels)
    calibrated = torch.sigmoid(logits / temperature + bias)
    positives, negatives = calibrated[labels == 1], calibrated[labels == 0]
    assert float(temperature[0]) > 0.5  # hard targets give the 0.05 floor here
    assert 0.85 < float(positives.mean()) < 0.99  # Platt's target for 20 positives: 21/22
    assert float(negatives.mean()) < 0.05
    assert float(negatives.max()) < float(positives.min()) < 0.99  # a gap to put a threshold in


def test_thresholds_split_separable_findings() -> None:
    probabilities = np.array([[0.1, 0.2], [0.3, 0.9], [0.7, 0.4], [0.8, 0.6]])
    labels = np.array([[0, 1], [0, 1], [1, 1], [1, 1]], dtype=float)
    thresholds = choose_thresholds(probabilities, labels)
    assert 0.3 < thresholds[0] <= 0.7
    assert thresholds[1] == 0.5  # one class only: the default stays
