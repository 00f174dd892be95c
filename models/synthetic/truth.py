"""Ground truth of a synthetic study: labels, lesion instances, masks and measurements.

While a study is drawn, every finding registers its voxels in
:class:`FindingMasks` (a bit per finding, an instance id per lesion) on the
render grid; :func:`study_truth_json` turns the spec, lesions and geometry into
the JSON written beside the study.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from models.findings import FINDINGS, Finding
from models.synthetic.canvas import Box, Grid

SCHEMA_VERSION = 1
MASK_ENCODING = (
    "bit n of the uint32 value is set where FINDINGS[n] is present (CT-RATE column order)"
)


def finding_bit(finding: Finding) -> int:
    return 1 << FINDINGS.index(finding)


@dataclass
class Lesion:
    """One drawn instance of a finding (a nodule, a node, an effusion, a device...)."""

    finding: Finding
    kind: str
    location: str
    centre_mm: tuple[float, float, float]  # anatomical frame; converted when written
    measurements: dict[str, float | int | str] = field(default_factory=dict)
    side: str | None = None
    lobe: str | None = None
    instance_id: int = 0
    voxels: int = 0


# Findings that only change lung texture; an opaque finding drawn later hides them.
TEXTURE_FINDINGS = (
    Finding.EMPHYSEMA,
    Finding.MOSAIC_ATTENUATION_PATTERN,
    Finding.INTERLOBULAR_SEPTAL_THICKENING,
    Finding.LUNG_OPACITY,
    Finding.PULMONARY_FIBROTIC_SEQUELA,
    Finding.PERIBRONCHIAL_THICKENING,
    Finding.BRONCHIECTASIS,
)
OPAQUE_FINDINGS = (
    Finding.LUNG_NODULE,
    Finding.CONSOLIDATION,
    Finding.ATELECTASIS,
    Finding.PLEURAL_EFFUSION,
    Finding.HIATAL_HERNIA,
    Finding.LYMPHADENOPATHY,
)


class FindingMasks:
    """Per-voxel finding bits and lesion instance ids on the render grid.

    Opaque findings (a nodule, consolidation, effusion...) clear the bits of
    texture findings they cover, so the masks describe what the image shows.
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.bits = np.zeros(grid.shape, dtype=np.uint32)
        self.instances = np.zeros(grid.shape, dtype=np.uint16)
        self.lesions: list[Lesion] = []
        self.registered: set[Finding] = set()
        self._texture_bits = np.uint32(sum(finding_bit(f) for f in TEXTURE_FINDINGS))

    def add(
        self,
        finding: Finding,
        mask: npt.NDArray[np.bool_],
        *,
        box: Box | None = None,
        lesion: Lesion | None = None,
    ) -> Lesion | None:
        """Register voxels (a full-grid mask, or a mask of ``box``) for a finding and lesion."""
        sl = box if box is not None else self.grid.full_box()
        view = self.bits[sl]
        if finding in OPAQUE_FINDINGS:
            view[mask] &= ~self._texture_bits
        view[mask] |= np.uint32(finding_bit(finding))
        if mask.any():
            self.registered.add(finding)
        if lesion is not None:
            lesion.instance_id = len(self.lesions) + 1
            lesion.voxels = int(mask.sum())
            self.instances[sl][mask] = lesion.instance_id
            self.lesions.append(lesion)
        return lesion

    def add_flat(
        self, finding: Finding, flat_index: npt.NDArray[np.intp], *, lesion: Lesion | None = None
    ) -> None:
        flat = self.bits.reshape(-1)
        if finding in OPAQUE_FINDINGS:
            flat[flat_index] &= ~self._texture_bits
        flat[flat_index] |= np.uint32(finding_bit(finding))
        if flat_index.size:
            self.registered.add(finding)
        if lesion is not None:
            lesion.instance_id = len(self.lesions) + 1
            lesion.voxels = int(flat_index.size)
            self.instances.reshape(-1)[flat_index] = lesion.instance_id
            self.lesions.append(lesion)

    def present(self) -> set[Finding]:
        any_bits = int(np.bitwise_or.reduce(self.bits, axis=None)) if self.bits.size else 0
        return {f for f in FINDINGS if any_bits & finding_bit(f)}


def labels_vector(present: set[Finding] | frozenset[Finding]) -> dict[str, int]:
    """The 18 CT-RATE labels, in column order."""
    return {f.value: int(f in present) for f in FINDINGS}


def json_safe(value: Any) -> Any:
    """Numpy scalars and tuples to plain JSON values."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 3)
    return value
