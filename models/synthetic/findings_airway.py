"""Airway findings: bronchiectasis and peribronchial thickening.

Both change the bronchial tree before it is painted (lumen calibre, wall
thickness, how far out bronchi are visible); their masks are the voxels of
the affected bronchi.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from models.findings import Finding
from models.synthetic.anatomy import LOBE_CODES, Lobe
from models.synthetic.canvas import AlphaAccumulator
from models.synthetic.draw_context import DrawContext
from models.synthetic.finding_plans import JsonValue, number
from models.synthetic.tissues import Tissue
from models.synthetic.trees import AIRWAY_TO_ARTERY, Airways
from models.synthetic.truth import Lesion

AIRWAY_LABELS = (Tissue.AIRWAY_WALL, Tissue.AIRWAY_LUMEN)


def _lobes(params: Mapping[str, JsonValue]) -> list[Lobe]:
    names = params["lobes"]
    assert isinstance(names, list)
    return [Lobe[str(n)] for n in names]


def prepare_bronchiectasis(
    airways: Airways,
    params: Mapping[str, JsonValue],
    rng: np.random.Generator,
    visible_lumen_mm: float,
) -> npt.NDArray[np.bool_]:
    """Dilate (and show further out) the bronchi of the chosen lobes; returns the selection."""
    dilation = number(params, "dilation")
    varicose = params["type"] == "varicose"
    sel = airways.select({LOBE_CODES[lobe] for lobe in _lobes(params)}, min_generation=2)
    factor = np.full(int(sel.sum()), dilation, dtype=np.float32)
    if varicose:
        factor *= rng.uniform(0.7, 1.3, size=factor.shape).astype(np.float32)
    airways.lumen_scale[sel] = factor
    airways.wall_scale[sel] = 1.4
    lumen = airways.centre.ra * airways.lumen_scale
    airways.visible[sel] = lumen[sel] >= visible_lumen_mm
    return sel & airways.visible


def prepare_peribronchial(
    airways: Airways, params: Mapping[str, JsonValue]
) -> npt.NDArray[np.bool_]:
    factor = number(params, "wall_factor")
    sel = (
        airways.select({LOBE_CODES[lobe] for lobe in _lobes(params)}, min_generation=1)
        & airways.visible
    )
    airways.wall_scale[sel] *= factor
    return sel


def register_airway_finding(
    ctx: DrawContext,
    finding: Finding,
    selection: npt.NDArray[np.bool_],
    params: Mapping[str, JsonValue],
    *,
    walls_only: bool,
) -> None:
    """Mask the painted voxels of the selected bronchi and record one lesion per lobe."""
    aw = ctx.tree.airways
    c = aw.centre
    for lobe in _lobes(params):
        chosen = selection & (c.lobe == LOBE_CODES[lobe])
        if not chosen.any():
            continue
        acc = AlphaAccumulator(ctx.canvas.grid)
        wall = aw.wall * aw.wall_scale
        acc.add_capsules(
            c.a[chosen],
            c.b[chosen],
            (c.ra * aw.lumen_scale + wall)[chosen],
            (c.rb * aw.lumen_scale + wall)[chosen],
        )
        box = acc.bounding_box()
        if box is None:
            continue
        labels = (Tissue.AIRWAY_WALL,) if walls_only else AIRWAY_LABELS
        mask = (acc.alpha[box] >= 0.5) & ctx.canvas.label_is(box, labels)
        if not mask.any():
            continue
        centre = c.a[chosen].mean(axis=0)
        if finding is Finding.BRONCHIECTASIS:
            ratio = float(np.median(aw.lumen_scale[chosen])) * AIRWAY_TO_ARTERY
            measurements: dict[str, float | int | str] = {
                "bronchoarterial_ratio": round(ratio, 2),
                "type": str(params["type"]),
                "bronchi": int(chosen.sum()),
            }
            kind = f"{params['type']} bronchiectasis"
        else:
            measurements = {
                "wall_thickness_factor": number(params, "wall_factor"),
                "bronchi": int(chosen.sum()),
            }
            kind = "peribronchial thickening"
        lesion = Lesion(
            finding,
            kind=kind,
            location=lobe.value,
            centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
            side="right" if lobe.side < 0 else "left",
            lobe=lobe.value,
            measurements=measurements,
        )
        ctx.masks.add(finding, mask, box=box, lesion=lesion)
