"""Ribs and costal cartilages, spine, sternum, clavicles and scapulae."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from models.synthetic.anatomy import Anatomy
from models.synthetic.canvas import AlphaAccumulator, Canvas, FloatArray, max_of, soft_alpha
from models.synthetic.tissues import Tissue

RIB_COUNT = 12
RIB_THETA_POSTERIOR = 1.36  # cage angle where a rib leaves the spine (radians)
RIB_THETA_ANTERIOR = -1.45  # where the costal cartilage meets the sternum
CORTEX_FRACTION = 0.72  # inner fraction of a bone's normalised radius that is marrow


def _bone_value(q: FloatArray, hu: dict[Tissue, float]) -> FloatArray:
    """Cortex at the rim and marrow inside, from a normalised radius q (1 = surface)."""
    rim = np.clip((q - CORTEX_FRACTION) / (1.0 - CORTEX_FRACTION), 0.0, 1.0)
    rim = np.minimum(rim * 2.5, 1.0)
    marrow, cortex = hu[Tissue.BONE_MARROW], hu[Tissue.BONE_CORTEX]
    return (marrow + (cortex - marrow) * rim).astype(np.float32)


def paint_ribs(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    grid = canvas.grid
    s = anatomy.plan.scale
    z_first = anatomy.plan.z_apex - 8.0 * s
    z_last = z_first - (RIB_COUNT - 1) * anatomy.vertebra_pitch
    drop = 125.0 * s
    box = grid.box((-400, -400, z_last - drop - 20.0), (400, 400, z_first + 20.0))
    if box is None:
        return
    z, y, x = grid.axes(box)
    cy, a, b = anatomy.cage(z)
    outward = anatomy.cage_coordinates(grid)[0][box]
    thickness = 8.0 * s
    band = (outward > -1.0) & (outward < thickness + 2.0)
    idx = np.nonzero(band)
    if idx[0].size == 0:
        return
    k0, j0, i0 = box[0].start, box[1].start, box[2].start
    zz = z[idx[0], 0, 0]
    yy = y[0, idx[1], 0]
    xx = x[0, 0, idx[2]]
    cyy, aa, bb = cy[idx[0], 0, 0], a[idx[0], 0, 0], b[idx[0], 0, 0]
    u_lat = np.abs(xx) / aa
    v = (yy - cyy) / bb
    theta = np.arctan2(v, u_lat)
    phi = (RIB_THETA_POSTERIOR - theta) / (RIB_THETA_POSTERIOR - RIB_THETA_ANTERIOR)
    height_drop = drop * (0.45 * phi + 0.55 * phi * phi)
    z_eq = zz + height_drop
    k = np.rint((z_first - z_eq) / anatomy.vertebra_pitch)
    dz = z_eq - (z_first - k * anatomy.vertebra_pitch)
    rib_no = k + 1
    half_h = 4.6 * s * (1.0 + 0.2 * phi)
    out_n = outward[idx]
    dr = out_n - (1.5 + thickness / 2)
    q = np.sqrt((dz / half_h) ** 2 + (dr / (thickness / 2)) ** 2)
    # Where each rib ends anteriorly, and where bone turns into costal cartilage.
    bone_end = np.where(rib_no <= 7, 0.78, np.where(rib_no <= 10, 0.72, 0.5))
    cart_end = np.where(rib_no <= 7, 1.0, np.where(rib_no <= 10, 0.9, 0.5))
    valid = (rib_no >= 1) & (rib_no <= RIB_COUNT) & (phi >= 0.0) & (phi <= cart_end)
    alpha = soft_alpha(
        ((q - 1.0) * np.minimum(half_h, thickness / 2)).astype(np.float32), grid.voxel_mm
    )
    alpha *= valid
    is_bone = phi <= bone_end
    value = np.where(is_bone, _bone_value(q.astype(np.float32), hu), hu[Tissue.CARTILAGE]).astype(
        np.float32
    )
    flat = np.ravel_multi_index((idx[0] + k0, idx[1] + j0, idx[2] + i0), grid.shape)
    keep = alpha > 0
    canvas.blend_flat(flat[keep], alpha[keep], value[keep], None)
    labels = np.where(
        is_bone,
        np.where(q < CORTEX_FRACTION, Tissue.BONE_MARROW, Tissue.BONE_CORTEX),
        Tissue.CARTILAGE,
    )
    sel = alpha >= 0.5
    canvas.label.reshape(-1)[flat[sel]] = labels[sel].astype(np.uint8)


def paint_spine(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    """Vertebral bodies with discs, the canal, pedicles, laminae and processes."""
    grid = canvas.grid
    s = anatomy.plan.scale
    v = grid.voxel_mm
    pitch = anatomy.vertebra_pitch
    z_ref = anatomy.plan.z_apex - 8.0 * s + 0.35 * pitch  # T1 body centre (rib 1 head)
    ext = 60.0 * s
    box = grid.box((-ext, anatomy.vb_y - 30.0 * s, -1e4), (ext, anatomy.vb_y + 80.0 * s, 1e4))
    if box is None:
        return
    z, y, x = grid.axes(box)
    phase = np.mod(z - z_ref, pitch) / pitch  # 0..1 within a vertebral level
    disc = np.abs(phase - 0.5) < (2.6 * s / pitch)
    # Paraspinal soft tissue margin first (so lung never touches bone directly).
    rx, ry = anatomy.vb_rx, anatomy.vb_ry
    body_f = np.sqrt((x / rx) ** 2 + ((y - anatomy.vb_y) / ry) ** 2)
    margin = ((body_f - 1.0) * min(rx, ry) - 3.0 * s).astype(np.float32)
    canvas.blend(box, soft_alpha(margin, v), hu[Tissue.MUSCLE], Tissue.MUSCLE, where=None)
    body_sd = (body_f - 1.0) * min(rx, ry)
    value = np.where(disc, np.float32(hu[Tissue.DISC]), _bone_value(body_f.astype(np.float32), hu))
    alpha = soft_alpha(body_sd.astype(np.float32), v)
    canvas.blend(box, alpha, value, None)
    lab = canvas.label[box]
    inside = alpha >= 0.5
    lab[inside & disc] = Tissue.DISC
    lab[inside & ~disc] = Tissue.BONE_MARROW
    # Neural arch around the canal.
    canal_y = anatomy.vb_y + ry + 9.0 * s
    canal_r = 7.5 * s
    rc = np.sqrt(x**2 + (y - canal_y) ** 2)
    arch_present = (phase > 0.05) & (phase < 0.85)
    ring = np.maximum(rc - 15.0 * s, canal_r - rc)
    ring = np.where(y < canal_y - 4.0 * s, np.maximum(ring, np.abs(x) - 12.0 * s), ring)
    spinous = max_of(
        (np.abs(x) - 3.5 * s).astype(np.float32),
        ((canal_y + 10.0 * s) - y).astype(np.float32),
        (y - (canal_y + 42.0 * s - 40.0 * s * phase)).astype(np.float32),
    )
    spinous = np.where((phase > 0.15) & (phase < 0.7), spinous, 1e3)
    # Transverse processes: bars running laterally and backwards from the pedicles.
    ax_, ay_ = np.abs(x) - 10.0 * s, y - canal_y
    tx, ty = 24.0 * s, 12.0 * s
    tt = np.clip((ax_ * tx + ay_ * ty) / (tx * tx + ty * ty), 0.0, 1.0)
    transverse = np.sqrt((ax_ - tt * tx) ** 2 + (ay_ - tt * ty) ** 2) - 4.5 * s
    transverse = np.where((phase > 0.25) & (phase < 0.65), transverse, 1e3)
    arch = np.minimum(np.minimum(ring, spinous), transverse)
    arch = np.where(arch_present, arch, 1e3).astype(np.float32)
    alpha = soft_alpha(arch, v)
    canvas.blend(
        box, alpha, 0.5 * (hu[Tissue.BONE_CORTEX] + hu[Tissue.BONE_MARROW]), Tissue.BONE_CORTEX
    )
    canal = soft_alpha((rc - canal_r).astype(np.float32), v)
    canvas.blend(box, canal, hu[Tissue.SPINAL_CANAL], Tissue.SPINAL_CANAL)


def paint_sternum(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    grid = canvas.grid
    s = anatomy.plan.scale
    z_top = 48.0 * s
    z_xiphoid = min(anatomy.plan.z_dome_right, anatomy.plan.z_dome_left) - 8.0 * s
    box = grid.box((-40 * s, -250, z_xiphoid - 5), (40 * s, 0, z_top + 5))
    if box is None:
        return
    z, y, x = grid.axes(box)
    cy, _, b = anatomy.cage(z)
    t = np.clip((z_top - z) / 40.0, 0.0, 1.0)  # manubrium -> body
    rx = (26.0 - 11.0 * t) * s * np.where(z < z_xiphoid + 25.0 * s, 0.55, 1.0)
    ry = (7.5 - 1.0 * t) * s
    yc = cy - b - ry + 1.0
    f = np.sqrt((x / rx) ** 2 + ((y - yc) / ry) ** 2)
    sd = np.maximum((f - 1.0) * ry, np.maximum(z - z_top, z_xiphoid - z)).astype(np.float32)
    alpha = soft_alpha(sd, grid.voxel_mm)
    canvas.blend(box, alpha, _bone_value(f.astype(np.float32), hu), Tissue.BONE_CORTEX)


def paint_clavicles_and_scapulae(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    grid = canvas.grid
    s = anatomy.plan.scale
    for side in (-1, 1):
        z_a = np.array([52.0 * s], dtype=np.float32)
        cy, _, b = anatomy.cage(z_a)
        medial = np.array([side * 22.0 * s, float(cy[0] - b[0]) - 6.0 * s, 50.0 * s])
        mid = np.array([side * 80.0 * anatomy.sx, float(cy[0] - b[0]) + 2.0 * s, 70.0 * s])
        lateral = np.array([side * 138.0 * anatomy.sx, -8.0 * anatomy.sy, 84.0 * s])
        acc = AlphaAccumulator(grid)
        acc.add_capsule(medial, mid, 7.5 * s, 6.5 * s)
        acc.add_capsule(mid, lateral, 6.5 * s, 7.0 * s)
        acc.paint(
            canvas, 0.5 * (hu[Tissue.BONE_CORTEX] + hu[Tissue.BONE_MARROW]), Tissue.BONE_CORTEX
        )
    _paint_scapulae(canvas, anatomy, hu)


def _paint_scapulae(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    grid = canvas.grid
    s = anatomy.plan.scale
    z_top, z_tip = anatomy.plan.z_apex - 2.0 * s, -62.0 * s
    box = grid.box((-400, -50, z_tip - 5), (400, 400, z_top + 5))
    if box is None:
        return
    outward_all, rel_all = anatomy.cage_coordinates(grid)
    outward = outward_all[box]
    near = (outward > 6.0 * s) & (outward < 26.0 * s) & (rel_all[box] > -0.2)
    idx = np.nonzero(near)
    if idx[0].size == 0:
        return
    z, _y, x = grid.axes(box)
    zz = z[idx[0], 0, 0]
    xx = x[0, 0, idx[2]]
    _cy, a, _b = anatomy.cage(zz)
    rel = rel_all[box][idx]
    out = outward[idx]
    theta = np.arctan2(rel, np.abs(xx) / a)
    t = np.clip((z_top - zz) / (z_top - z_tip), 0.0, 1.0)  # 0 top, 1 inferior angle
    th_lo = 0.30 + 0.45 * t
    th_hi = 1.22 - 0.35 * t
    thickness = 2.6 * s + 4.0 * s * np.clip((th_lo + 0.15 - theta) / 0.15, 0.0, 1.0)
    depth = 17.0 * s - 4.0 * s * t
    sd = np.maximum(
        np.abs(out - depth) - thickness / 2, np.maximum(th_lo - theta, theta - th_hi) * 90.0
    )
    alpha = soft_alpha(sd.astype(np.float32), grid.voxel_mm)
    keep = alpha > 0
    flat = np.ravel_multi_index(
        (idx[0][keep] + box[0].start, idx[1][keep] + box[1].start, idx[2][keep] + box[2].start),
        grid.shape,
    )
    canvas.blend_flat(
        flat,
        alpha[keep],
        0.6 * hu[Tissue.BONE_CORTEX] + 0.4 * hu[Tissue.BONE_MARROW],
        Tissue.BONE_CORTEX,
    )


def paint_skeleton(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    paint_ribs(canvas, anatomy, hu)
    paint_spine(canvas, anatomy, hu)
    paint_sternum(canvas, anatomy, hu)
    paint_clavicles_and_scapulae(canvas, anatomy, hu)


def bone_mask(labels: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    return np.isin(labels, [Tissue.BONE_CORTEX, Tissue.BONE_MARROW])
