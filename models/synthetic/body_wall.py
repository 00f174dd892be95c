"""Table, skin, subcutaneous fat, breasts, chest-wall muscle and the cavity fat."""

from __future__ import annotations

import numpy as np

from models.synthetic.anatomy import Anatomy
from models.synthetic.canvas import Canvas, paint_ellipsoid, soft_alpha
from models.synthetic.tissues import Tissue

SKIN_MM = 2.0
TABLE_PAD_HU = -930.0  # foam mattress the patient lies on
TABLE_TOP_HU = -450.0
TABLE_BASE_HU = 380.0
TABLE_HALF_WIDTH = 240.0
TABLE_RADIUS = 650.0


def paint_table(canvas: Canvas, anatomy: Anatomy) -> None:
    """The patient table: a low-density top and a dense curved base under the body."""
    grid = canvas.grid
    box = grid.full_box()
    _, y, x = grid.axes(box)
    y_top = anatomy.body_posterior_y() + 1.0
    curve = (x * x) / (2.0 * TABLE_RADIUS)
    inside_width = np.abs(x) < TABLE_HALF_WIDTH
    for offset, thickness, value in (
        (0.0, 22.0, TABLE_PAD_HU),
        (22.0, 4.0, TABLE_TOP_HU),
        (48.0, 5.0, TABLE_BASE_HU),
    ):
        centre = y_top + offset + thickness / 2 - curve
        sd = np.abs(y - centre) - thickness / 2
        alpha = soft_alpha(sd.astype(np.float32), grid.voxel_mm) * inside_width
        alpha2d = np.ascontiguousarray(np.broadcast_to(alpha[0], grid.shape[1:]))
        rows = np.nonzero(alpha2d.max(axis=1) > 0)[0]
        if rows.size == 0:
            continue
        j0, j1 = int(rows[0]), int(rows[-1]) + 1
        a2 = alpha2d[j0:j1]
        hu = canvas.hu[:, j0:j1]
        hu += a2[None] * (np.float32(value) - hu)
        canvas.label[:, j0:j1][:, a2 >= 0.5] = Tissue.TABLE


def paint_body_wall(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    """Skin, subcutaneous fat, breasts, muscle, axillary fat, and fat filling the cavity."""
    grid = canvas.grid
    box = grid.full_box()
    z, y, x = grid.axes(box)
    fat = anatomy.fat_at(z)
    v = grid.voxel_mm
    skin = anatomy.outline_distance(z, y, x, fat)
    canvas.blend(box, soft_alpha(skin, v), hu[Tissue.SKIN], Tissue.SKIN)
    canvas.blend(box, soft_alpha(skin + SKIN_MM, v), hu[Tissue.FAT], Tissue.FAT)
    del skin
    if anatomy.plan.breasts:
        _paint_breasts(canvas, anatomy, hu)
    muscle = anatomy.outline_distance(z, y, x, 0.0)
    canvas.blend(box, soft_alpha(muscle, v), hu[Tissue.MUSCLE], Tissue.MUSCLE)
    del muscle
    _paint_axillary_fat(canvas, anatomy, hu)
    _paint_fat_planes(canvas, anatomy, hu)
    cavity = anatomy.cavity_distance(z, y, x)
    canvas.blend(box, soft_alpha(cavity, v), hu[Tissue.FAT], Tissue.FAT)


def _paint_breasts(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    s = anatomy.plan.scale
    z0 = 0.5 * (anatomy.plan.z_dome_right + anatomy.heart_centre[2])
    z_arr = np.array([z0], dtype=np.float32)
    _, ant, _ = anatomy.muscle_outline(z_arr)
    front = -float(ant[0])
    size = 1.0 + 0.012 * (anatomy.plan.fat_mm - 15.0)
    for side in (-1, 1):
        centre = (side * 84.0 * anatomy.sx, front + 12.0 * s, z0)
        semi = (62.0 * s * size, 24.0 * s * size, 55.0 * s * size)
        paint_ellipsoid(
            canvas, centre, semi, hu[Tissue.SKIN], Tissue.SKIN, only_labels=(Tissue.AIR,)
        )
        inner = (semi[0] - SKIN_MM, semi[1] - SKIN_MM, semi[2] - SKIN_MM)
        paint_ellipsoid(
            canvas, centre, inner, hu[Tissue.FAT], Tissue.FAT, only_labels=(Tissue.SKIN, Tissue.AIR)
        )
        gland = (centre[0], centre[1] + 6.0 * s, centre[2])
        paint_ellipsoid(
            canvas,
            gland,
            (semi[0] * 0.55, semi[1] * 0.5, semi[2] * 0.55),
            0.5 * (hu[Tissue.BREAST] + hu[Tissue.FAT]),
            Tissue.BREAST,
            only_labels=(Tissue.FAT,),
        )


def _paint_axillary_fat(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    s = anatomy.plan.scale
    for side in (-1, 1):
        centre = (side * (anatomy.cage_a + 6.0 * s), 4.0 * anatomy.sy, 58.0 * s)
        paint_ellipsoid(
            canvas,
            centre,
            (16.0 * s, 34.0 * s, 42.0 * s),
            hu[Tissue.FAT],
            Tissue.FAT,
            only_labels=(Tissue.MUSCLE,),
        )


def _paint_fat_planes(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    """Thin fat planes between muscle groups (pectoral anteriorly, paraspinal posteriorly)."""
    grid = canvas.grid
    s = anatomy.plan.scale
    outward, rel = anatomy.cage_coordinates(grid)
    band = (outward > 8.0 * s) & (outward < 20.0 * s) & (canvas.label == Tissue.MUSCLE)
    flat = np.nonzero(band.reshape(-1))[0]
    if flat.size == 0:
        return
    out = outward.reshape(-1)[flat]
    r = rel.reshape(-1)[flat]
    x = grid.xs[np.unravel_index(flat, grid.shape)[2]]
    anterior = np.clip((-r - 0.35) * 4.0, 0.0, 1.0) * (np.abs(x) > 20.0 * s)
    posterior = np.clip((r - 0.55) * 4.0, 0.0, 1.0) * (np.abs(x) > 34.0 * s)
    plane_a = (
        soft_alpha((np.abs(out - 11.0 * s) - 0.9).astype(np.float32), grid.voxel_mm) * anterior
    )
    plane_p = (
        soft_alpha((np.abs(out - 17.0 * s) - 1.1).astype(np.float32), grid.voxel_mm) * posterior
    )
    alpha = (np.maximum(plane_a, plane_p) * 0.8).astype(np.float32)
    keep = alpha > 0
    canvas.blend_flat(flat[keep], alpha[keep], hu[Tissue.FAT], None)
