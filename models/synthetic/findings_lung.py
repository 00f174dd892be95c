"""Parenchymal findings: nodules, opacity, consolidation, atelectasis, emphysema,
mosaic attenuation, interlobular septal thickening and fibrotic sequelae."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from models.findings import Finding
from models.synthetic.anatomy import LOBE_CODES, Lobe
from models.synthetic.canvas import AlphaAccumulator, FloatArray, SmoothField, soft_alpha
from models.synthetic.draw_context import PARENCHYMA_LABELS, DrawContext, LungVoxels
from models.synthetic.finding_plans import JsonValue, number, records
from models.synthetic.tissues import Tissue
from models.synthetic.truth import Lesion

GROUND_GLASS_DELTA_HU = 280.0
EMPHYSEMA_HU = -985.0
LAA_THRESHOLD_HU = -950.0
EMPHYSEMA_FRACTION = {"mild": 0.05, "moderate": 0.11, "severe": 0.2}


def _side(lobe: Lobe) -> str:
    return "right" if lobe.side < 0 else "left"


def _equivalent_diameter(voxels: int, voxel_volume: float) -> float:
    return float((6.0 * voxels * voxel_volume / np.pi) ** (1.0 / 3.0)) if voxels else 0.0


def _unit_vectors(rng: np.random.Generator, n: int) -> FloatArray:
    v = rng.normal(size=(n, 3))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _blend_points(
    ctx: DrawContext,
    vox: LungVoxels,
    alpha: FloatArray,
    value: float | FloatArray,
    label: Tissue | None,
) -> None:
    keep = alpha > 0.0
    v = value[keep] if isinstance(value, np.ndarray) else value
    ctx.canvas.blend_flat(vox.flat[keep], alpha[keep], v, label)


# ----------------------------------------------------------------------------- nodules
def draw_nodules(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    grid = ctx.canvas.grid
    rng = ctx.rng
    solid_hu = ctx.enhanced(32.0 + float(rng.normal(0, 6)), 30.0)
    for item in records(params, "nodules"):
        d = number(item, "diameter_mm")
        kind = str(item["type"])
        lobe = Lobe[str(item["lobe"])]
        r = d / 2.0
        juxtapleural = d < 16 and rng.random() < 0.2
        if juxtapleural:
            centre = ctx.random_lung_point(lobe, depth_mm=r * 0.6, near_pleura_mm=r * 1.1)
        else:
            centre = ctx.random_lung_point(lobe, depth_mm=r + 3.0)
        reach = r * 1.5 + (12.0 if d >= 12 else 0.0) + 2 * grid.voxel_mm
        box = grid.box(centre - reach, centre + reach)
        if box is None:
            continue
        z, y, x = grid.axes(box)
        dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
        dist = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-6
        lob = 0.0 if d < 6 else (0.08 if d < 14 else 0.14)
        radius: FloatArray | float = r
        if lob > 0:
            dirs = _unit_vectors(rng, 4)
            g = np.zeros_like(dist)
            for e in dirs:
                g += np.cos(
                    3.0 * (dx * e[0] + dy * e[1] + dz * e[2]) / dist + rng.uniform(0, 2 * np.pi)
                )
            radius = r * (1.0 + lob * g / 2.0)
        alpha = soft_alpha((dist - radius).astype(np.float32), grid.voxel_mm)
        where = ctx.canvas.label_is(box, PARENCHYMA_LABELS)
        alpha = alpha * where
        core_mm = d
        if kind == "solid":
            ctx.canvas.blend(box, alpha, solid_hu, Tissue.LESION)
        else:
            delta = GROUND_GLASS_DELTA_HU + float(rng.normal(0, 30))
            ctx.canvas.blend(box, alpha, ctx.canvas.hu[box] + np.float32(delta), Tissue.LESION)
            core_mm = 0.0
            if kind == "part-solid":
                core_mm = round(d * float(rng.uniform(0.35, 0.6)), 1)
                core = soft_alpha((dist - core_mm / 2).astype(np.float32), grid.voxel_mm) * where
                ctx.canvas.blend(box, core, solid_hu, Tissue.LESION)
        mask = alpha >= 0.5
        if d >= 12 and kind == "solid" and rng.random() < 0.5:
            acc = AlphaAccumulator(grid)
            for e in _unit_vectors(rng, int(rng.integers(5, 11))):
                a = centre + e * r * 0.8
                acc.add_capsule(a, a + e * float(rng.uniform(4, 11)), 0.8, 0.35)
            acc.paint(ctx.canvas, solid_hu, Tissue.LESION, only_labels=(Tissue.LUNG,))
        lesion = Lesion(
            Finding.LUNG_NODULE,
            kind=f"{kind} nodule",
            location=lobe.value,
            centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
            side=_side(lobe),
            lobe=lobe.value,
            measurements={
                "diameter_mm": round(d, 1),
                "type": kind,
                "solid_component_mm": round(core_mm, 1),
                "juxtapleural": int(juxtapleural),
                "mask_diameter_mm": round(
                    _equivalent_diameter(int(mask.sum()), grid.voxel_volume_mm3), 1
                ),
            },
        )
        ctx.masks.add(Finding.LUNG_NODULE, mask, box=box, lesion=lesion)
    ctx.forget_lung_voxels()


# --------------------------------------------------------------------- opacity (GGO)
def draw_opacity(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    grid = ctx.canvas.grid
    rng = ctx.rng
    delta = number(params, "density_hu")
    for item in records(params, "patches"):
        lobe = Lobe[str(item["lobe"])]
        big = number(item, "radius_mm")
        centre = ctx.random_lung_point(lobe, depth_mm=4.0)
        semi = big * rng.uniform(0.7, 1.3, size=3)
        box = grid.box(centre - semi.max() * 1.4, centre + semi.max() * 1.4)
        if box is None:
            continue
        z, y, x = grid.axes(box)
        q = np.sqrt(
            ((x - centre[0]) / semi[0]) ** 2
            + ((y - centre[1]) / semi[1]) ** 2
            + ((z - centre[2]) / semi[2]) ** 2
        )
        q = q + 0.3 * SmoothField(rng, wavelength_mm=big * 0.7, waves=8).on_box(grid, box)
        alpha = np.clip((1.0 - q) / 0.35, 0.0, 1.0).astype(np.float32)
        lung = ctx.canvas.label[box] == Tissue.LUNG
        ctx.canvas.hu[box] += alpha * lung * np.float32(delta)
        mask = (alpha >= 0.4) & np.isin(
            ctx.canvas.label[box], [Tissue.LUNG, Tissue.PULMONARY_VESSEL]
        )
        if not mask.any():
            continue
        lesion = Lesion(
            Finding.LUNG_OPACITY,
            kind="ground-glass opacity",
            location=lobe.value,
            centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
            side=_side(lobe),
            lobe=lobe.value,
            measurements={
                "size_mm": round(2 * big, 1),
                "density_increase_hu": round(delta),
                "volume_ml": round(float(mask.sum()) * grid.voxel_volume_mm3 / 1000, 1),
            },
        )
        ctx.masks.add(Finding.LUNG_OPACITY, mask, box=box, lesion=lesion)


# ------------------------------------------------------------------- consolidation
def draw_consolidation(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    grid = ctx.canvas.grid
    rng = ctx.rng
    lobe = Lobe[str(params["lobe"])]
    extent = str(params["extent"])
    radius = number(params, "radius_mm")
    vox = ctx.lung_voxels((Tissue.LUNG, Tissue.PULMONARY_VESSEL, Tissue.AIRWAY_WALL))
    sel = vox.subset(vox.lobe == LOBE_CODES[lobe])
    if len(sel.flat) == 0:
        return
    if extent == "lobar":
        centre = sel.points.mean(axis=0)
        alpha = np.ones(len(sel.flat), dtype=np.float32)
    else:
        centre = ctx.random_lung_point(lobe, depth_mm=0.0, near_pleura_mm=radius * 0.5)
        semi = radius * rng.uniform(0.75, 1.25, size=3)
        d = sel.points - centre
        q = np.sqrt(((d / semi) ** 2).sum(axis=1))
        q += 0.15 * SmoothField(rng, wavelength_mm=radius * 0.6, waves=8).at_points(sel.points)
        alpha = np.clip((1.0 - q) / 0.12, 0.0, 1.0).astype(np.float32)
    value = ctx.enhanced(30.0 + float(rng.normal(0, 6)), 35.0) + 8.0 * SmoothField(
        rng, wavelength_mm=6.0, waves=6
    ).at_points(sel.points)
    _blend_points(ctx, sel, alpha, value.astype(np.float32), Tissue.LESION)
    keep = alpha >= 0.5
    if not keep.any():
        return
    lesion = Lesion(
        Finding.CONSOLIDATION,
        kind=f"{extent} consolidation with air bronchograms",
        location=lobe.value,
        centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
        side=_side(lobe),
        lobe=lobe.value,
        measurements={
            "extent": extent,
            "volume_ml": round(float(keep.sum()) * grid.voxel_volume_mm3 / 1000, 1),
        },
    )
    ctx.masks.add_flat(Finding.CONSOLIDATION, sel.flat[keep], lesion=lesion)
    ctx.forget_lung_voxels()


# --------------------------------------------------------------------- atelectasis
def _posterior_depth(ctx: DrawContext, vox: LungVoxels, side: int) -> FloatArray:
    """Depth (mm) of each voxel in front of the most posterior lung voxel of its (z, x) column."""
    grid = ctx.canvas.grid
    k, j, i = np.unravel_index(vox.flat, grid.shape)
    jmax = np.full((grid.shape[0], grid.shape[2]), -1, dtype=np.int64)
    on_side = (vox.points[:, 0] < 0) if side < 0 else (vox.points[:, 0] >= 0)
    np.maximum.at(jmax, (k[on_side], i[on_side]), j[on_side])
    return ((jmax[k, i] - j) * grid.spacing[1]).astype(np.float32)


def draw_atelectasis(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    grid = ctx.canvas.grid
    rng = ctx.rng
    lobe = Lobe[str(params["lobe"])]
    kind = str(params["type"])
    if kind == "dependent" and not lobe.is_lower:
        kind = "linear"
    vox = ctx.lung_voxels(
        (Tissue.LUNG, Tissue.PULMONARY_VESSEL, Tissue.AIRWAY_WALL, Tissue.AIRWAY_LUMEN)
    )
    value = ctx.enhanced(22.0 + float(rng.normal(0, 6)), 45.0)
    if kind == "dependent":
        depth = _posterior_depth(ctx, vox, lobe.side)
        sel_mask = vox.lobe == LOBE_CODES[lobe]
        z = vox.points[:, 2]
        z_top = ctx.anatomy.plan.z_dome_right + 45.0 * ctx.anatomy.plan.scale
        z_low = float(z[sel_mask].min()) if sel_mask.any() else z_top - 60
        t_max = float(rng.uniform(9, 18))
        t = t_max * np.clip((z_top - z) / max(z_top - z_low, 1.0), 0.0, 1.0) ** 0.7
        alpha = np.clip((t - depth) / 2.0 + 0.5, 0.0, 1.0) * sel_mask
        centre_pts = vox.points[alpha >= 0.5]
        measurements: dict[str, float | int | str] = {"max_thickness_mm": round(t_max, 1)}
    else:
        centre = ctx.random_lung_point(lobe, depth_mm=2.0, near_pleura_mm=14.0)
        normal = np.array([rng.normal(0, 0.3), rng.normal(0, 0.3), 1.0])
        normal /= np.linalg.norm(normal)
        half_t = float(rng.uniform(1.6, 2.8))
        length = float(rng.uniform(18, 34))
        d = vox.points - centre
        along = d @ normal
        radial = np.linalg.norm(d - along[:, None] * normal, axis=1)
        sd = np.maximum(np.abs(along) - half_t, radial - length).astype(np.float32)
        alpha = soft_alpha(sd, grid.voxel_mm) * (vox.lobe == LOBE_CODES[lobe])
        centre_pts = vox.points[alpha >= 0.5]
        measurements = {"thickness_mm": round(2 * half_t, 1), "length_mm": round(2 * length, 1)}
    keep_lumen = ctx.canvas.label.reshape(-1)[vox.flat] != Tissue.AIRWAY_LUMEN
    alpha = (alpha * keep_lumen).astype(np.float32)
    _blend_points(ctx, vox, alpha, value, Tissue.LESION)
    keep = alpha >= 0.5
    if not keep.any():
        return
    c = centre_pts.mean(axis=0) if len(centre_pts) else vox.points[keep].mean(axis=0)
    measurements["volume_ml"] = round(float(keep.sum()) * grid.voxel_volume_mm3 / 1000, 1)
    lesion = Lesion(
        Finding.ATELECTASIS,
        kind=f"{kind} atelectasis",
        location=lobe.value,
        centre_mm=(float(c[0]), float(c[1]), float(c[2])),
        side=_side(lobe),
        lobe=lobe.value,
        measurements=measurements,
    )
    ctx.masks.add_flat(Finding.ATELECTASIS, vox.flat[keep], lesion=lesion)
    ctx.forget_lung_voxels()


# ---------------------------------------------------------------------- emphysema
def draw_emphysema(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    grid = ctx.canvas.grid
    rng = ctx.rng
    kind = str(params["type"])
    severity = str(params["severity"])
    fraction = EMPHYSEMA_FRACTION[severity]
    vox = ctx.lung_voxels((Tissue.LUNG,))
    if len(vox.flat) == 0:
        return
    lung_volume = len(vox.flat) * grid.voxel_volume_mm3
    z = vox.points[:, 2]
    zmin, zmax = float(z.min()), float(z.max())
    rel = (z - zmin) / max(zmax - zmin, 1.0)
    acc = AlphaAccumulator(grid)
    if kind == "panlobular":
        lower = np.isin(vox.lobe, [LOBE_CODES[Lobe.RLL], LOBE_CODES[Lobe.LLL]])
        drop = float(rng.uniform(70, 110)) * (1.0 - 0.6 * rel)
        field = 0.5 + 0.5 * SmoothField(rng, wavelength_mm=30.0, waves=8).at_points(vox.points)
        ctx.canvas.hu.reshape(-1)[vox.flat[lower]] -= (drop * np.clip(field, 0.2, 1.0))[
            lower
        ].astype(np.float32)
        ctx.masks.add_flat(Finding.EMPHYSEMA, vox.flat[lower])
        weights = np.where(lower, 1.0, 0.1)
        radii = (1.5, 3.5)
        target_fraction = fraction * 0.4
    elif kind == "paraseptal":
        sd = ctx.anatomy.lung_distance(vox.points[:, 2], vox.points[:, 1], vox.points[:, 0])
        weights = (sd > -6.0) * (0.2 + rel) ** 2
        radii = (3.0, 9.0)
        target_fraction = fraction * 0.6
    else:
        weights = (0.1 + rel) ** 3
        radii = (1.6, 4.5)
        target_fraction = fraction
    r = rng.uniform(*radii, size=200_000)
    mean_volume = float(np.mean(4.0 / 3.0 * np.pi * r**3))
    count = int(np.clip(target_fraction * lung_volume / mean_volume, 10, 20_000))
    p = weights / weights.sum()
    centres = vox.points[rng.choice(len(vox.flat), size=count, p=p)]
    radii_drawn = r[:count]
    if kind == "paraseptal":
        walls = AlphaAccumulator(grid)
        for c, rr in zip(centres, radii_drawn, strict=True):
            walls.add_capsule(c, c, float(rr) + 0.9, float(rr) + 0.9)
        walls.paint(ctx.canvas, ctx.hu[Tissue.LUNG] + 150.0, None, only_labels=(Tissue.LUNG,))
    for c, rr in zip(centres, radii_drawn, strict=True):
        acc.add_capsule(c, c, float(rr), float(rr))
    mask = acc.paint_masked(ctx.canvas, EMPHYSEMA_HU, None, only_labels=(Tissue.LUNG,))
    zone = (
        "lower lobes"
        if kind == "panlobular"
        else ("subpleural" if kind == "paraseptal" else "upper lobes")
    )
    centre = centres.mean(axis=0)
    lesion = Lesion(
        Finding.EMPHYSEMA,
        kind=f"{kind} emphysema",
        location=f"{zone}, bilateral",
        centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
        side="bilateral",
        measurements={"type": kind, "severity": severity, "lesions": count},
    )
    ctx.masks.add(Finding.EMPHYSEMA, mask, lesion=lesion)
    ctx.forget_lung_voxels()


def low_attenuation_percent(hu: FloatArray, lung: npt.NDArray[np.bool_]) -> float:
    """Percentage of lung voxels below -950 HU (LAA-950), before noise."""
    n = int(lung.sum())
    return round(100.0 * float((hu[lung] < LAA_THRESHOLD_HU).sum()) / n, 2) if n else 0.0


# ------------------------------------------------------------------------- mosaic
def draw_mosaic(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    rng = ctx.rng
    extent = number(params, "extent")
    contrast = number(params, "contrast_hu")
    vox = ctx.lung_voxels((Tissue.LUNG,))
    if len(vox.flat) == 0:
        return
    f = SmoothField(rng, wavelength_mm=34.0, waves=14).at_points(vox.points)
    f += 0.35 * SmoothField(rng, wavelength_mm=12.0, waves=10).at_points(vox.points)
    threshold = float(np.quantile(f, 1.0 - extent))
    dark = (1.0 / (1.0 + np.exp(-(f - threshold) * 7.0))).astype(np.float32)
    change = (-0.65 * contrast * dark + 0.35 * contrast * (1.0 - dark)).astype(np.float32)
    ctx.canvas.hu.reshape(-1)[vox.flat] += change
    keep = dark >= 0.5
    centre = vox.points[keep].mean(axis=0)
    lesion = Lesion(
        Finding.MOSAIC_ATTENUATION_PATTERN,
        kind="mosaic attenuation",
        location="both lungs",
        centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
        side="bilateral",
        measurements={
            "hypoattenuating_fraction": round(float(keep.mean()), 2),
            "attenuation_difference_hu": round(contrast),
        },
    )
    ctx.masks.add_flat(Finding.MOSAIC_ATTENUATION_PATTERN, vox.flat[keep], lesion=lesion)


# ---------------------------------------------------------------- septal thickening
def _voronoi_lines(rng: np.random.Generator, points: FloatArray, cell_mm: float) -> FloatArray:
    """Distance (mm) of each point to the nearest wall of a random Voronoi network."""
    lo, hi = points.min(axis=0) - cell_mm, points.max(axis=0) + cell_mm
    count = int(np.prod(hi - lo) / cell_mm**3)
    seeds = rng.uniform(lo, hi, size=(max(count, 8), 3))
    dist, _ = cKDTree(seeds).query(points, k=2, workers=2)
    return ((dist[:, 1] - dist[:, 0]) / 2.0).astype(np.float32)


def draw_septal_thickening(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    grid = ctx.canvas.grid
    rng = ctx.rng
    zone = str(params["zone"])
    cell = number(params, "cell_mm")
    vox = ctx.lung_voxels((Tissue.LUNG,))
    if len(vox.flat) == 0:
        return
    p = vox.points
    sd = ctx.anatomy.lung_distance(p[:, 2], p[:, 1], p[:, 0])
    peripheral = sd > -16.0
    if zone == "basal":
        z_cut = ctx.anatomy.plan.z_dome_right + 70.0 * ctx.anatomy.plan.scale
        peripheral &= p[:, 2] < z_cut
    sel = vox.subset(peripheral)
    if len(sel.flat) == 0:
        return
    wall = _voronoi_lines(rng, sel.points, cell)
    half = float(rng.uniform(0.5, 0.9))
    alpha = soft_alpha(wall - half, grid.voxel_mm)
    _blend_points(ctx, sel, alpha, ctx.hu[Tissue.LUNG] + float(rng.uniform(420, 560)), None)
    keep = alpha >= 0.5
    if not keep.any():
        return
    centre = sel.points[keep].mean(axis=0)
    lesion = Lesion(
        Finding.INTERLOBULAR_SEPTAL_THICKENING,
        kind="smooth interlobular septal thickening",
        location=("lung bases" if zone == "basal" else "both lungs, peripheral"),
        centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
        side="bilateral",
        measurements={
            "zone": zone,
            "lobule_size_mm": round(cell, 1),
            "septal_thickness_mm": round(2 * half, 1),
        },
    )
    ctx.masks.add_flat(Finding.INTERLOBULAR_SEPTAL_THICKENING, sel.flat[keep], lesion=lesion)


# ------------------------------------------------------------------ fibrotic sequela
def _outward(ctx: DrawContext, p: FloatArray) -> FloatArray:
    """Direction towards the nearest pleura (gradient of the lung distance)."""
    eps = 2.0
    g = np.zeros(3, dtype=np.float32)
    for axis in range(3):
        a, b = p.copy(), p.copy()
        a[axis] += eps
        b[axis] -= eps
        da = float(ctx.anatomy.lung_distance(a[2:3], a[1:2], a[0:1])[0])
        db = float(ctx.anatomy.lung_distance(b[2:3], b[1:2], b[0:1])[0])
        g[axis] = da - db
    n = float(np.linalg.norm(g))
    return g / n if n > 0 else np.array([0.0, 0.0, 1.0], dtype=np.float32)


def draw_fibrosis(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    grid = ctx.canvas.grid
    rng = ctx.rng
    lobe = Lobe[str(params["lobe"])]
    bands = int(number(params, "bands"))
    candidates = [ctx.random_lung_point(lobe, depth_mm=4.0, near_pleura_mm=20.0) for _ in range(8)]
    centre = max(candidates, key=lambda q: float(q[2])) if lobe.is_upper else candidates[0]
    value = ctx.enhanced(-10.0 + float(rng.normal(0, 8)), 25.0)
    acc = AlphaAccumulator(grid)
    for _ in range(bands):
        start = centre + rng.normal(0, 7.0, 3).astype(np.float32)
        direction = _outward(ctx, start)
        pts = [start]
        length = float(rng.uniform(18, 42))
        for _ in range(4):
            direction = direction + rng.normal(0, 0.35, 3).astype(np.float32)
            direction /= np.linalg.norm(direction)
            pts.append((pts[-1] + direction * length / 4).astype(np.float32))
        thickness = float(rng.uniform(1.0, 2.0))
        acc.add_polyline(
            np.asarray(pts, dtype=np.float32), np.full(len(pts), thickness, dtype=np.float32)
        )
    band_mask = acc.paint_masked(
        ctx.canvas, value, Tissue.LESION, only_labels=(Tissue.LUNG, Tissue.PULMONARY_VESSEL)
    )
    # Reticulation around the scar.
    vox = ctx.lung_voxels((Tissue.LUNG,))
    near = np.linalg.norm(vox.points - centre, axis=1) < float(rng.uniform(16, 24))
    sel = vox.subset(near)
    mask_flat = np.nonzero(band_mask.reshape(-1))[0]
    if len(sel.flat):
        wall = _voronoi_lines(rng, sel.points, float(rng.uniform(5, 7)))
        alpha = soft_alpha(wall - 0.6, grid.voxel_mm)
        _blend_points(ctx, sel, alpha, ctx.hu[Tissue.LUNG] + 650.0, None)
        mask_flat = np.union1d(mask_flat, sel.flat[alpha >= 0.5])
    lesion = Lesion(
        Finding.PULMONARY_FIBROTIC_SEQUELA,
        kind="fibrotic bands and reticulation",
        location=lobe.value,
        centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
        side=_side(lobe),
        lobe=lobe.value,
        measurements={"bands": bands},
    )
    ctx.masks.add_flat(Finding.PULMONARY_FIBROTIC_SEQUELA, mask_flat, lesion=lesion)
    ctx.forget_lung_voxels()
