"""What finding painters share: the canvas, anatomy, tree, masks and lung-voxel lookups."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from models.synthetic.anatomy import LOBE_CODES, Anatomy, Lobe
from models.synthetic.canvas import Canvas, FloatArray
from models.synthetic.tissues import Phase, Tissue
from models.synthetic.trees import BronchovascularTree
from models.synthetic.truth import FindingMasks

PARENCHYMA_LABELS = (Tissue.LUNG, Tissue.PULMONARY_VESSEL, Tissue.AIRWAY_WALL, Tissue.LESION)


@dataclass
class LungVoxels:
    """Flat indices, millimetre positions and lobe codes of lung voxels."""

    flat: npt.NDArray[np.intp]
    points: FloatArray
    lobe: npt.NDArray[np.int8]

    def subset(self, keep: npt.NDArray[np.bool_]) -> LungVoxels:
        return LungVoxels(self.flat[keep], self.points[keep], self.lobe[keep])


@dataclass
class DrawContext:
    canvas: Canvas
    anatomy: Anatomy
    hu: dict[Tissue, float]
    phase: Phase
    tree: BronchovascularTree
    rng: np.random.Generator
    masks: FindingMasks
    _cache: dict[tuple[int, ...], LungVoxels] = field(default_factory=dict)

    def lung_voxels(self, labels: tuple[int, ...] = PARENCHYMA_LABELS) -> LungVoxels:
        """Voxels currently carrying one of ``labels`` (computed once per label set)."""
        if labels not in self._cache:
            mask = np.isin(self.canvas.label, np.asarray(labels, dtype=np.uint8)).reshape(-1)
            flat = np.nonzero(mask)[0]
            idx = np.stack(np.unravel_index(flat, self.canvas.grid.shape), axis=1)
            pts = self.canvas.grid.points(idx)
            self._cache[labels] = LungVoxels(flat, pts, self.anatomy.lobe_of(pts))
        return self._cache[labels]

    def forget_lung_voxels(self) -> None:
        self._cache.clear()

    def random_lung_point(
        self, lobe: Lobe | None, *, depth_mm: float = 0.0, near_pleura_mm: float | None = None
    ) -> FloatArray:
        """A lung point (optionally in a lobe) at least depth_mm inside the lung surface,
        or within near_pleura_mm of it."""
        vox = self.lung_voxels((Tissue.LUNG,))
        cand = (
            np.nonzero(vox.lobe == LOBE_CODES[lobe])[0]
            if lobe is not None
            else np.arange(len(vox.flat))
        )
        if cand.size == 0:
            cand = np.arange(len(vox.flat))
        for _ in range(200):
            p = vox.points[int(self.rng.choice(cand))]
            sd = float(self.anatomy.lung_distance(p[2:3], p[1:2], p[0:1])[0])
            if sd <= -depth_mm and (near_pleura_mm is None or sd >= -near_pleura_mm):
                return p.copy()
        return vox.points[int(self.rng.choice(cand))].copy()

    def enhanced(self, unenhanced: float, enhancement: float) -> float:
        """A lesion value: unenhanced HU plus an enhancement when contrast was given."""
        return unenhanced + (enhancement if self.phase is not Phase.NONE else 0.0)
