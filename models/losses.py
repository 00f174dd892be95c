"""Training losses for the findings and nodule heads (used by the trainer).

``radscribe_loss(output, targets)`` returns a dict of named scalar losses and their
weighted ``total``.  Finding labels may be unknown (NaN), which masks them.  Nodule
targets are lists of ``NoduleTarget`` per study, turned into dense cell targets on
the nodule map with ``nodule_cell_targets``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.networks.heads import (
    NODULE_LOBE,
    NODULE_LOG_DIAMETER,
    NODULE_OBJECTNESS,
    NODULE_OFFSET,
    NODULE_TYPE,
    REFINER_OUTPUTS,
)
from models.networks.model import ModelOutput
from models.volume import GridGeometry

FOCAL_GAMMA = 2.0
FOCAL_ALPHA = 0.25
IGNORE_INDEX = -100


@dataclass(frozen=True)
class NoduleTarget:
    centre_ras: tuple[float, float, float]
    diameter_mm: float
    type_index: int
    """Index into ``models.config.NODULE_TYPES``."""
    lobe_index: int
    """Index into ``models.config.LOBES``; -100 when unknown."""


@dataclass(frozen=True)
class LossWeights:
    findings: float = 1.0
    objectness: float = 1.0
    offset: float = 1.0
    diameter: float = 1.0
    nodule_type: float = 0.5
    lobe: float = 0.5


@dataclass
class NoduleCellTargets:
    """Dense targets on the nodule map (B, fx, fy, fz)."""

    objectness: torch.Tensor
    offset: torch.Tensor
    """(B, 3, fx, fy, fz) offset in cells, in [-1, 1]."""
    log_diameter: torch.Tensor
    type_index: torch.Tensor
    lobe_index: torch.Tensor


def nodule_cell_targets(
    nodules: Sequence[Sequence[NoduleTarget]],
    grids: Sequence[GridGeometry],
    map_shape: tuple[int, int, int],
    *,
    device: torch.device | None = None,
) -> NoduleCellTargets:
    """Assign each nodule to the cell holding its centre (the larger one wins a tie)."""
    b = len(nodules)
    fx, fy, fz = map_shape
    objectness = torch.zeros(b, fx, fy, fz)
    offset = torch.zeros(b, 3, fx, fy, fz)
    log_diameter = torch.zeros(b, fx, fy, fz)
    type_index = torch.full((b, fx, fy, fz), IGNORE_INDEX, dtype=torch.long)
    lobe_index = torch.full((b, fx, fy, fz), IGNORE_INDEX, dtype=torch.long)
    for i, (study, grid) in enumerate(zip(nodules, grids, strict=True)):
        cell_size = np.array(grid.shape, dtype=np.float64) / np.array(map_shape)
        for nodule in sorted(study, key=lambda n: n.diameter_mm):
            voxel = grid.ras_to_voxel(np.asarray(nodule.centre_ras))
            cell = (voxel + 0.5) / cell_size - 0.5  # fractional cell index
            index = np.round(cell).astype(int)
            if np.any(index < 0) or np.any(index >= np.array(map_shape)):
                continue  # outside the grid: nothing to learn here
            x, y, z = (int(v) for v in index)
            objectness[i, x, y, z] = 1.0
            offset[i, :, x, y, z] = torch.as_tensor(np.clip(cell - index, -1, 1))
            log_diameter[i, x, y, z] = float(np.log(max(nodule.diameter_mm, 0.5)))
            type_index[i, x, y, z] = nodule.type_index
            lobe_index[i, x, y, z] = nodule.lobe_index
    return NoduleCellTargets(
        objectness=objectness.to(device),
        offset=offset.to(device),
        log_diameter=log_diameter.to(device),
        type_index=type_index.to(device),
        lobe_index=lobe_index.to(device),
    )


def _focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    alpha = FOCAL_ALPHA * target + (1 - FOCAL_ALPHA) * (1 - target)
    loss = alpha * (1 - p_t) ** FOCAL_GAMMA * ce
    return loss.sum() / target.sum().clamp_min(1.0)


def radscribe_loss(
    output: ModelOutput,
    *,
    finding_labels: torch.Tensor,
    nodule_targets: NoduleCellTargets | None = None,
    weights: LossWeights | None = None,
) -> dict[str, torch.Tensor]:
    """Finding BCE (unknown labels as NaN are skipped) + nodule focal/regression losses."""
    weights = weights or LossWeights()
    logits = output.finding_logits.float()
    known = ~torch.isnan(finding_labels)
    labels = torch.nan_to_num(finding_labels, nan=0.0)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    losses = {"findings": (bce * known).sum() / known.sum().clamp_min(1)}
    if nodule_targets is not None:
        nodule_map = output.nodule_map.float()
        positive = nodule_targets.objectness > 0
        losses["objectness"] = _focal(nodule_map[:, NODULE_OBJECTNESS], nodule_targets.objectness)
        count = positive.sum().clamp_min(1)
        offset = torch.tanh(nodule_map[:, NODULE_OFFSET])
        offset_error = F.smooth_l1_loss(offset, nodule_targets.offset, reduction="none").sum(1)
        losses["offset"] = (offset_error * positive).sum() / count
        diameter_error = F.smooth_l1_loss(
            nodule_map[:, NODULE_LOG_DIAMETER], nodule_targets.log_diameter, reduction="none"
        )
        losses["diameter"] = (diameter_error * positive).sum() / count
        losses["nodule_type"] = _masked_ce(nodule_map[:, NODULE_TYPE], nodule_targets.type_index)
        losses["lobe"] = _masked_ce(nodule_map[:, NODULE_LOBE], nodule_targets.lobe_index)
    total = sum(getattr(weights, name) * value for name, value in losses.items())
    losses["total"] = torch.as_tensor(total)
    return losses


def _masked_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over channel dim 1 at labelled cells (0 when none is labelled)."""
    if bool((target != IGNORE_INDEX).any()):
        return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    return logits.sum() * 0.0


def refiner_loss(
    prediction: torch.Tensor,
    *,
    diameter_mm: torch.Tensor,
    type_index: torch.Tensor,
    centre_error_mm: torch.Tensor,
) -> torch.Tensor:
    """Loss for ``NoduleRefiner`` on patches centred on (jittered) candidates.

    ``centre_error_mm`` (N, 3) is the true centre minus the patch centre (RAS mm).
    """
    assert prediction.shape[1] == REFINER_OUTPUTS
    log_d = F.smooth_l1_loss(prediction[:, 0], torch.log(diameter_mm.clamp_min(0.5)))
    kind = F.cross_entropy(prediction[:, 1:4], type_index, ignore_index=IGNORE_INDEX)
    centre = F.smooth_l1_loss(prediction[:, 4:7], centre_error_mm / 10.0)
    return log_d + 0.5 * kind + centre
