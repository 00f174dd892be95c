"""Nodule candidates from the nodule map, matching to truth, and measurement with the refiner.

Decoding follows ``models.inference`` (top cells by objectness, centre from the
cell plus its offset); evaluation and threshold selection work on the model grid,
and the refiner measures on patches cut from the grid image (``data.grid_patches``),
as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.losses import NoduleTarget
from models.networks.heads import NODULE_LOG_DIAMETER, NODULE_OBJECTNESS, NODULE_OFFSET
from models.volume import GridGeometry

MATCH_MIN_MM = 10.0
"""A candidate matches a true nodule within max(this, the nodule's diameter)."""
DEFAULT_NODULE_THRESHOLD = 0.5
THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


@dataclass(frozen=True)
class Candidate:
    score: float
    centre_ras: np.ndarray
    head_diameter_mm: float


def decode(nodule_map: torch.Tensor, grid: GridGeometry, *, top: int) -> list[Candidate]:
    """The ``top`` cells by objectness as candidates (strongest first, overlaps merged)."""
    maps = nodule_map.float().cpu()
    objectness = torch.sigmoid(maps[NODULE_OBJECTNESS]).flatten()
    k = min(top, objectness.numel())
    scores, order = objectness.topk(k)
    map_shape = tuple(maps.shape[1:])
    cell = np.array(grid.shape) / np.array(map_shape)
    found: list[Candidate] = []
    for score, flat in zip(scores.tolist(), order.tolist(), strict=True):
        x, y, z = np.unravel_index(flat, map_shape)
        offset = torch.tanh(maps[NODULE_OFFSET, x, y, z]).numpy()
        voxel = (np.array([x, y, z]) + offset + 0.5) * cell - 0.5
        candidate = Candidate(
            score=float(score),
            centre_ras=grid.voxel_to_ras(voxel),
            head_diameter_mm=float(torch.exp(maps[NODULE_LOG_DIAMETER, x, y, z])),
        )
        if all(
            np.linalg.norm(candidate.centre_ras - other.centre_ras)
            > max(candidate.head_diameter_mm, other.head_diameter_mm) / 2
            for other in found
        ):
            found.append(candidate)
    return found


def match(
    truth: Sequence[NoduleTarget], candidates: Sequence[Candidate], threshold: float
) -> tuple[list[tuple[NoduleTarget, Candidate]], int]:
    """Greedy matching (largest nodules first); returns matches and unmatched candidates."""
    pool = [c for c in candidates if c.score >= threshold]
    used: set[int] = set()
    matches = []
    for nodule in sorted(truth, key=lambda n: -n.diameter_mm):
        centre = np.asarray(nodule.centre_ras)
        radius = max(MATCH_MIN_MM, nodule.diameter_mm)
        best, best_distance = None, radius
        for i, c in enumerate(pool):
            distance = float(np.linalg.norm(c.centre_ras - centre))
            if i not in used and distance <= best_distance:
                best, best_distance = i, distance
        if best is not None:
            used.add(best)
            matches.append((nodule, pool[best]))
    return matches, len(pool) - len(used)


def choose_threshold(
    truths: Sequence[Sequence[NoduleTarget] | None], candidates: Sequence[Sequence[Candidate]]
) -> float:
    """The objectness threshold with the best detection F1 over studies with known nodules."""
    best, best_f1 = DEFAULT_NODULE_THRESHOLD, -1.0
    if not any(truths):
        return best
    for t in THRESHOLD_GRID:
        tp = fp = fn = 0
        for truth, found in zip(truths, candidates, strict=True):
            if truth is None:
                continue
            matches, false = match(truth, found, float(t))
            tp += len(matches)
            fn += len(truth) - len(matches)
            fp += false
        f1 = 2 * tp / max(2 * tp + fp + fn, 1)
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best
