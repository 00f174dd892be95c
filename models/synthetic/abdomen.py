"""Below the diaphragm: diaphragm muscle, liver, gallbladder, stomach, spleen, kidneys, colon."""

from __future__ import annotations

import numpy as np

from models.synthetic.anatomy import Anatomy
from models.synthetic.canvas import Canvas, max_of, paint_ellipsoid, rotation_frame, soft_alpha
from models.synthetic.tissues import Tissue

DIAPHRAGM_MM = 4.5


def paint_abdomen(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    grid = canvas.grid
    plan = anatomy.plan
    s = plan.scale
    z_hi = max(plan.z_dome_right, plan.z_dome_left) + 5.0
    box = grid.box((-400, -400, -1e4), (400, 400, z_hi))
    if box is None:
        return
    z, y, x = grid.axes(box)
    v = grid.voxel_mm
    cavity = anatomy.cavity_distance(z, y, x)
    zd = anatomy.diaphragm_z(y, x)
    below = ((z - (zd - DIAPHRAGM_MM)) * 0.7).astype(np.float32)  # < 0 under the diaphragm muscle
    in_cavity = cavity < 0
    # Diaphragm: a muscular sheet under the lung base.
    sheet = np.abs(z - (zd - DIAPHRAGM_MM / 2)) * 0.7 - DIAPHRAGM_MM / 2
    canvas.blend(
        box,
        soft_alpha(sheet.astype(np.float32), v),
        hu[Tissue.DIAPHRAGM],
        Tissue.DIAPHRAGM,
        where=in_cavity,
    )
    # Liver: the right upper quadrant, its left lobe tapering across the midline.
    x_edge = (18.0 + 0.42 * np.maximum(-y, -40.0)) * anatomy.sx
    liver_sd = max_of(below, cavity + 2.0, (x - x_edge).astype(np.float32))
    canvas.blend(box, soft_alpha(liver_sd, v), hu[Tissue.LIVER], Tissue.LIVER)
    del liver_sd
    zl, zr = plan.z_dome_left, plan.z_dome_right
    under = (Tissue.FAT, Tissue.LIVER)
    # Gallbladder.
    paint_ellipsoid(
        canvas,
        (-48.0 * anatomy.sx, -52.0 * anatomy.sy, zr - 85.0 * s),
        (14.0 * s, 17.0 * s, 30.0 * s),
        hu[Tissue.GALLBLADDER],
        Tissue.GALLBLADDER,
        only_labels=(Tissue.LIVER,),
    )
    # Spleen, posterolateral on the left.
    spleen_frame = rotation_frame((0.45, 0.9, -0.1))
    paint_ellipsoid(
        canvas,
        (86.0 * anatomy.sx, 46.0 * anatomy.sy, zl - 58.0 * s),
        (52.0 * s, 24.0 * s, 44.0 * s),
        hu[Tissue.SPLEEN],
        Tissue.SPLEEN,
        frame=spleen_frame,
        only_labels=under,
    )
    # Kidneys (upper poles), the right lower than the left.
    for side, dz in ((-1, -18.0), (1, 0.0)):
        paint_ellipsoid(
            canvas,
            (side * 64.0 * anatomy.sx, 58.0 * anatomy.sy, zr - 115.0 * s + dz * s),
            (26.0 * s, 30.0 * s, 55.0 * s),
            hu[Tissue.KIDNEY],
            Tissue.KIDNEY,
            only_labels=under,
        )
    # Stomach with a gas cap (anterior, non-dependent) over fluid.
    centre = (56.0 * anatomy.sx, 0.0, zl - 44.0 * s)
    semi = (44.0 * s, 40.0 * s, 50.0 * s)
    paint_ellipsoid(canvas, centre, semi, hu[Tissue.MUSCLE], Tissue.STOMACH, only_labels=under)
    inner = (semi[0] - 4.0 * s, semi[1] - 4.0 * s, semi[2] - 4.0 * s)
    paint_ellipsoid(
        canvas, centre, inner, hu[Tissue.STOMACH], Tissue.STOMACH, only_labels=(Tissue.STOMACH,)
    )
    gas_level = centre[1] - inner[1] + 2.0 * inner[1] * plan.stomach_gas
    gbox = grid.box(
        (centre[0] - inner[0], centre[1] - inner[1], centre[2] - inner[2]),
        (centre[0] + inner[0], gas_level, centre[2] + inner[2]),
    )
    if gbox is not None:
        gz, gy, gx = grid.axes(gbox)
        f = np.sqrt(
            ((gx - centre[0]) / inner[0]) ** 2
            + ((gy - centre[1]) / inner[1]) ** 2
            + ((gz - centre[2]) / inner[2]) ** 2
        )
        sd = np.maximum((f - 1.0) * min(inner) + 1.5, gy - gas_level).astype(np.float32)
        canvas.blend(gbox, soft_alpha(sd, v), hu[Tissue.BOWEL_GAS], Tissue.BOWEL_GAS)
    # Splenic flexure of the colon with gas.
    flex = (78.0 * anatomy.sx, -30.0 * anatomy.sy, zl - 95.0 * s)
    paint_ellipsoid(
        canvas,
        flex,
        (20.0 * s, 18.0 * s, 26.0 * s),
        hu[Tissue.MUSCLE],
        Tissue.STOMACH,
        only_labels=(Tissue.FAT,),
    )
    paint_ellipsoid(
        canvas,
        flex,
        (17.0 * s, 15.0 * s, 23.0 * s),
        hu[Tissue.BOWEL_GAS],
        Tissue.BOWEL_GAS,
        only_labels=(Tissue.STOMACH,),
    )
