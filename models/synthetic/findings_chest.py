"""Pleura, heart, mediastinum and devices: pleural and pericardial effusion,
cardiomegaly, hiatal hernia, lymphadenopathy, arterial and coronary calcification
and medical material (port, pacemaker and leads, sternotomy wires, clips)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.findings import Finding
from models.synthetic.anatomy import Tube
from models.synthetic.canvas import (
    AlphaAccumulator,
    FloatArray,
    ellipsoid_distance,
    paint_ellipsoid,
    rotation_frame,
    soft_alpha,
)
from models.synthetic.draw_context import DrawContext
from models.synthetic.finding_plans import JsonValue, number, records
from models.synthetic.thorax import coronary_paths, heart_geometry, station_centre
from models.synthetic.tissues import Tissue
from models.synthetic.truth import Lesion

METAL_HU = 3000.0
CATHETER_HU = 420.0
SOFT_MEDIASTINUM = (
    Tissue.FAT,
    Tissue.LUNG,
    Tissue.LYMPH_NODE,
    Tissue.PULMONARY_VESSEL,
    Tissue.PERICARDIUM,
    Tissue.ESOPHAGUS,
)


def _c(p: FloatArray | tuple[float, float, float]) -> tuple[float, float, float]:
    return (float(p[0]), float(p[1]), float(p[2]))


# ---------------------------------------------------------------- pleural effusion
def draw_pleural_effusion(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    grid = ctx.canvas.grid
    rng = ctx.rng
    depths = params["depth_mm"]
    assert isinstance(depths, dict)
    value = ctx.hu[Tissue.FLUID] + float(rng.uniform(-4, 10))
    labels = np.asarray(
        [
            Tissue.LUNG,
            Tissue.PULMONARY_VESSEL,
            Tissue.AIRWAY_WALL,
            Tissue.AIRWAY_LUMEN,
            Tissue.LESION,
        ],
        dtype=np.uint8,
    )
    lung_flat = np.nonzero(np.isin(ctx.canvas.label, labels).reshape(-1))[0]
    k, j, i = np.unravel_index(lung_flat, grid.shape)
    x = grid.origin[0] + i * grid.spacing[0]
    z = grid.origin[2] + k * grid.spacing[2]
    for side_name in depths:
        t_max = number(depths, side_name)
        on_side = (x < 0) if side_name == "right" else (x >= 0)
        if not on_side.any():
            continue
        jmax = np.full((grid.shape[0], grid.shape[2]), -1, dtype=np.int64)
        np.maximum.at(jmax, (k[on_side], i[on_side]), j[on_side])
        dep = (jmax[k, i] - j) * grid.spacing[1]
        z_low = float(z[on_side].min())
        height = 70.0 + 2.2 * t_max
        t = t_max * np.clip(1.0 - (z - z_low) / height, 0.0, 1.0) ** 0.6
        # Layering fluid also climbs the lateral wall a little (meniscus).
        alpha = np.clip((t - dep) / 2.0 + 0.5, 0.0, 1.0) * on_side
        keep = alpha > 0
        ctx.canvas.blend_flat(lung_flat[keep], alpha[keep].astype(np.float32), value, Tissue.FLUID)
        full = lung_flat[alpha >= 0.5]
        if full.size == 0:
            continue
        kk, jj, ii = np.unravel_index(full, grid.shape)
        centre = grid.points(np.stack([kk, jj, ii], axis=1)).mean(axis=0)
        volume = full.size * grid.voxel_volume_mm3 / 1000.0
        lesion = Lesion(
            Finding.PLEURAL_EFFUSION,
            kind="pleural effusion",
            location=f"{side_name} hemithorax",
            centre_mm=_c(centre),
            side=side_name,
            measurements={
                "volume_ml": round(volume, 1),
                "max_depth_mm": round(t_max, 1),
                "density_hu": round(value),
            },
        )
        ctx.masks.add_flat(Finding.PLEURAL_EFFUSION, full, lesion=lesion)
    ctx.forget_lung_voxels()


# ------------------------------------------------------------------ heart findings
def register_pericardial_effusion(ctx: DrawContext, thickness_mm: float) -> None:
    g = heart_geometry(ctx.anatomy)
    grid = ctx.canvas.grid
    reach = max(g.semi) + thickness_mm + 10.0
    box = grid.box(np.asarray(g.centre) - reach, np.asarray(g.centre) + reach)
    if box is None:
        return
    mask = ctx.canvas.label[box] == Tissue.FLUID
    lesion = Lesion(
        Finding.PERICARDIAL_EFFUSION,
        kind="pericardial effusion",
        location="pericardium",
        centre_mm=_c(g.centre),
        measurements={
            "thickness_mm": round(thickness_mm, 1),
            "volume_ml": round(float(mask.sum()) * grid.voxel_volume_mm3 / 1000, 1),
        },
    )
    ctx.masks.add(Finding.PERICARDIAL_EFFUSION, mask, box=box, lesion=lesion)


def register_cardiomegaly(ctx: DrawContext) -> None:
    g = heart_geometry(ctx.anatomy)
    grid = ctx.canvas.grid
    reach = max(g.semi) + 4.0
    box = grid.box(np.asarray(g.centre) - reach, np.asarray(g.centre) + reach)
    if box is None:
        return
    z, y, x = grid.axes(box)
    inside = ellipsoid_distance(z, y, x, g.centre, g.semi, g.frame) < 1.0
    mask = inside & ctx.canvas.label_is(box, (Tissue.MYOCARDIUM, Tissue.BLOOD))
    ctr = ctx.anatomy.cardiothoracic_ratio()
    lesion = Lesion(
        Finding.CARDIOMEGALY,
        kind="cardiomegaly",
        location="heart",
        centre_mm=_c(g.centre),
        measurements={
            "cardiothoracic_ratio": round(ctr, 3),
            "transverse_diameter_mm": round(2 * ctx.anatomy.heart_x_extent, 1),
        },
    )
    ctx.masks.add(Finding.CARDIOMEGALY, mask, box=box, lesion=lesion)


# ------------------------------------------------------------------- hiatal hernia
def draw_hiatal_hernia(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    an = ctx.anatomy
    rng = ctx.rng
    size = number(params, "size_mm") * an.plan.scale
    gas = bool(params["gas"])
    base_z = an.plan.z_dome_left - 4.0 * an.plan.scale
    centre = np.array([12.0 * an.sx, 20.0 * an.sy, base_z + size * 0.42], dtype=np.float32)
    semi = (size * 0.5, size * 0.38, size * 0.48)
    allowed = (
        *SOFT_MEDIASTINUM,
        Tissue.DIAPHRAGM,
        Tissue.AIRWAY_LUMEN,
        Tissue.MUSCLE,
        Tissue.STOMACH,
        Tissue.LIVER,
    )
    grid = ctx.canvas.grid
    outer = AlphaAccumulator(grid)
    outer.add_ellipsoid(centre, semi)
    stomach_top = np.array(
        [50.0 * an.sx, 4.0 * an.sy, an.plan.z_dome_left - 20.0 * an.plan.scale], dtype=np.float32
    )
    outer.add_capsule(
        centre - np.array([0, 0, semi[2] * 0.6], dtype=np.float32),
        stomach_top,
        size * 0.22,
        size * 0.28,
    )
    mask = outer.paint_masked(
        ctx.canvas, ctx.hu[Tissue.MUSCLE], Tissue.STOMACH, only_labels=allowed
    )
    inner_semi = tuple(max(a - 3.5, 2.0) for a in semi)
    content = ctx.hu[Tissue.STOMACH] + float(rng.uniform(-5, 15))
    paint_ellipsoid(
        ctx.canvas, centre, inner_semi, content, Tissue.STOMACH, only_labels=(Tissue.STOMACH,)
    )
    if gas:
        box = grid.box(centre - np.array(inner_semi), centre + np.array(inner_semi))
        if box is not None:
            z, y, x = grid.axes(box)
            level = centre[1] - inner_semi[1] * float(rng.uniform(0.1, 0.6))
            sd = np.maximum(
                ellipsoid_distance(z, y, x, centre, inner_semi) + 1.0, y - level
            ).astype(np.float32)
            ctx.canvas.blend(
                box,
                soft_alpha(sd, grid.voxel_mm),
                ctx.hu[Tissue.BOWEL_GAS],
                Tissue.BOWEL_GAS,
                where=ctx.canvas.label[box] == Tissue.STOMACH,
            )
    z_grid = grid.zs[:, None, None]
    above = z_grid > (an.plan.z_dome_left - 2.0)
    mask &= above
    lesion = Lesion(
        Finding.HIATAL_HERNIA,
        kind="sliding hiatal hernia",
        location="retrocardiac, oesophageal hiatus",
        centre_mm=_c(centre),
        measurements={"size_mm": round(size, 1), "contains_gas": int(gas)},
    )
    ctx.masks.add(Finding.HIATAL_HERNIA, mask, lesion=lesion)


# -------------------------------------------------------------- lymphadenopathy
def draw_lymphadenopathy(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    rng = ctx.rng
    value = ctx.enhanced(42.0 + float(rng.normal(0, 4)), 35.0)
    for item in records(params, "nodes"):
        station = str(item["station"])
        short = number(item, "short_axis_mm")
        long = short * float(rng.uniform(1.2, 1.6))
        centre = np.asarray(station_centre(ctx.anatomy, station), dtype=np.float32) + rng.normal(
            0, 1.5, 3
        ).astype(np.float32)
        frame = rotation_frame((rng.normal(0, 0.25), rng.normal(0, 0.25), 1.0))
        semi = (long / 2, short / 2, short / 2 * float(rng.uniform(1.0, 1.15)))
        acc = AlphaAccumulator(ctx.canvas.grid)
        acc.add_ellipsoid(centre, semi, frame)
        mask = acc.paint_masked(
            ctx.canvas,
            value,
            Tissue.LYMPH_NODE,
            only_labels=(*SOFT_MEDIASTINUM, Tissue.AIRWAY_WALL),
        )
        lesion = Lesion(
            Finding.LYMPHADENOPATHY,
            kind="enlarged lymph node",
            location=f"station {station}",
            centre_mm=_c(centre),
            side=("right" if station.endswith("R") else "left" if station.endswith("L") else None),
            measurements={
                "station": station,
                "short_axis_mm": round(short, 1),
                "long_axis_mm": round(long, 1),
            },
        )
        ctx.masks.add(Finding.LYMPHADENOPATHY, mask, lesion=lesion)


# ------------------------------------------------------------- calcifications
def _wall_frame(points: FloatArray, n: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    a, b = points[max(n - 1, 0)], points[min(n + 1, len(points) - 1)]
    t = (b - a) / (np.linalg.norm(b - a) + 1e-6)
    e1 = np.cross(t, [0.0, 0.0, 1.0] if abs(t[2]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(t, e1)
    return t.astype(np.float32), e1.astype(np.float32), e2.astype(np.float32)


def _plaques_on_tube(
    ctx: DrawContext,
    tube: Tube,
    count: int,
    weights: FloatArray,
    *,
    size: tuple[float, float],
    value: float,
) -> tuple[AlphaAccumulator, FloatArray]:
    rng = ctx.rng
    acc = AlphaAccumulator(ctx.canvas.grid)
    where = rng.choice(len(tube.points), size=count, p=weights / weights.sum())
    centres = []
    for n in where:
        t, e1, e2 = _wall_frame(tube.points, int(n))
        ang = rng.uniform(0, 2 * np.pi)
        radial = np.cos(ang) * e1 + np.sin(ang) * e2
        c = tube.points[n] + radial * (tube.radii[n] - 0.3)
        tangential = np.cross(t, radial)
        frame = np.stack([radial, tangential, t]).astype(np.float32)
        least = 0.6 * ctx.canvas.grid.voxel_mm  # stay visible on coarse grids
        semi = (
            max(float(rng.uniform(0.9, 1.5)), least),
            max(float(rng.uniform(*size)), least),
            max(float(rng.uniform(size[0], size[1] * 1.4)), least),
        )
        acc.add_ellipsoid(c, semi, frame)
        centres.append(c)
    return acc, np.asarray(centres, dtype=np.float32)


def draw_arterial_calcification(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    count = int(number(params, "plaques"))
    aorta = ctx.anatomy.aorta()
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(aorta.points, axis=0), axis=1))])
    weights = np.where(arc < 40, 0.3, 1.0) * (
        aorta.points[:, 2] > ctx.anatomy.plan.z_dome_right - 60
    )
    value = float(ctx.rng.uniform(700, 1100))
    acc, centres = _plaques_on_tube(
        ctx, aorta, count, weights.astype(np.float32), size=(1.5, 4.0), value=value
    )
    mask = acc.paint_masked(
        ctx.canvas,
        value,
        Tissue.CALCIUM,
        only_labels=(Tissue.BLOOD, Tissue.FAT, Tissue.LUNG, Tissue.PULMONARY_VESSEL),
    )
    volume = float(mask.sum()) * ctx.canvas.grid.voxel_volume_mm3
    lesion = Lesion(
        Finding.ARTERIAL_WALL_CALCIFICATION,
        kind="atherosclerotic calcification of the aortic wall",
        location="thoracic aorta",
        centre_mm=_c(centres.mean(axis=0)),
        measurements={"plaques": count, "calcium_volume_mm3": round(volume, 1)},
    )
    ctx.masks.add(Finding.ARTERIAL_WALL_CALCIFICATION, mask, lesion=lesion)


def draw_coronary_calcification(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    vessels = params["vessels"]
    assert isinstance(vessels, list)
    total = int(number(params, "plaques"))
    paths = coronary_paths(ctx.anatomy)
    per = max(1, total // len(vessels))
    for name in vessels:
        pts = paths[str(name)]
        radii = np.full(len(pts), 1.6, dtype=np.float32)
        weights = np.linspace(1.0, 0.2, len(pts)).astype(np.float32)  # proximal predominance
        value = float(ctx.rng.uniform(550, 1000))
        acc, centres = _plaques_on_tube(
            ctx, Tube(str(name), pts, radii), per, weights, size=(1.2, 2.8), value=value
        )
        mask = acc.paint_masked(
            ctx.canvas,
            value,
            Tissue.CALCIUM,
            only_labels=(
                Tissue.BLOOD,
                Tissue.FAT,
                Tissue.PERICARDIUM,
                Tissue.MYOCARDIUM,
                Tissue.FLUID,
            ),
        )
        volume = float(mask.sum()) * ctx.canvas.grid.voxel_volume_mm3
        lesion = Lesion(
            Finding.CORONARY_ARTERY_WALL_CALCIFICATION,
            kind="coronary artery calcification",
            location=str(name),
            centre_mm=_c(centres.mean(axis=0)),
            measurements={
                "vessel": str(name),
                "plaques": per,
                "calcium_volume_mm3": round(volume, 1),
            },
        )
        ctx.masks.add(Finding.CORONARY_ARTERY_WALL_CALCIFICATION, mask, lesion=lesion)


# ------------------------------------------------------------------- devices
def _device_lesion(
    kind: str,
    location: str,
    centre: FloatArray,
    side: str | None,
    **measurements: float | int | str,
) -> Lesion:
    return Lesion(
        Finding.MEDICAL_MATERIAL,
        kind=kind,
        location=location,
        centre_mm=_c(centre),
        side=side,
        measurements=dict(measurements),
    )


def _chest_wall_point(ctx: DrawContext, side: int, z: float) -> FloatArray:
    """A point in the anterior subcutaneous fat below the clavicle."""
    an = ctx.anatomy
    ant = an.body_anterior_y()
    x = side * 62.0 * an.sx
    zz = np.array([z], dtype=np.float32)
    fat = float(an.fat_at(zz)[0])
    return np.array([x, -ant + fat * 0.5 + 4.0, z], dtype=np.float32)


def draw_medical_material(ctx: DrawContext, params: Mapping[str, JsonValue]) -> None:
    for item in records(params, "devices"):
        kind = str(item["kind"])
        side = -1 if item["side"] == "right" else 1
        if kind == "port":
            _draw_port(ctx, side)
        elif kind == "pacemaker":
            _draw_pacemaker(ctx, side)
        elif kind == "sternotomy wires":
            _draw_sternotomy(ctx)
        else:
            _draw_clips(ctx)
    add_metal_streaks(ctx)


def _venous_path(ctx: DrawContext, side: int) -> list[FloatArray]:
    an = ctx.anatomy
    p = an._p
    c = an.heart_centre
    return [
        np.array(p(side * 45, -34, 78), dtype=np.float32),
        np.array(p(-28 if side < 0 else 10, -30, 56), dtype=np.float32),
        np.array(p(-27, -24, 30), dtype=np.float32),
        np.array(p(-28, -20, 0), dtype=np.float32),
        np.array((c[0] - 36.0 * an.sx, c[1] + 2.0, c[2] + 26.0 * an.sz), dtype=np.float32),
    ]


def _draw_port(ctx: DrawContext, side: int) -> None:
    an = ctx.anatomy
    centre = _chest_wall_point(ctx, side, 32.0 * an.plan.scale)
    acc = AlphaAccumulator(ctx.canvas.grid)
    frame = rotation_frame((0.0, 1.0, 0.0))
    acc.add_ellipsoid(centre, (5.0, 14.0, 14.0), frame)
    m1 = acc.paint_masked(
        ctx.canvas,
        1800.0,
        Tissue.METAL,
        only_labels=(Tissue.FAT, Tissue.MUSCLE, Tissue.SKIN, Tissue.BREAST),
    )
    path = [centre, *_venous_path(ctx, side)]
    cat = AlphaAccumulator(ctx.canvas.grid)
    pts = np.asarray(path, dtype=np.float32)
    cat.add_polyline(
        pts, np.full(len(pts), max(1.2, 0.55 * ctx.canvas.grid.voxel_mm), dtype=np.float32)
    )
    m2 = cat.paint_masked(ctx.canvas, CATHETER_HU, Tissue.METAL)
    ctx.masks.add(
        Finding.MEDICAL_MATERIAL,
        m1 | m2,
        lesion=_device_lesion(
            "port catheter",
            f"{'right' if side < 0 else 'left'} anterior chest wall, tip in the superior vena cava",
            centre,
            "right" if side < 0 else "left",
        ),
    )


def _draw_pacemaker(ctx: DrawContext, side: int) -> None:
    an = ctx.anatomy
    g = heart_geometry(an)
    centre = _chest_wall_point(ctx, side, 42.0 * an.plan.scale)
    acc = AlphaAccumulator(ctx.canvas.grid)
    acc.add_ellipsoid(centre, (24.0, 4.5, 20.0))
    m1 = acc.paint_masked(
        ctx.canvas,
        METAL_HU,
        Tissue.METAL,
        only_labels=(Tissue.FAT, Tissue.MUSCLE, Tissue.SKIN, Tissue.BREAST),
    )
    vein = _venous_path(ctx, side)
    rv_apex = np.asarray(g.centre) + g.frame[0] * g.semi[0] * 0.55 - g.frame[1] * g.semi[1] * 0.35
    ra = np.asarray(g.centre) + np.array([-36.0 * an.sx, 0.0, 18.0 * an.sz])
    leads = AlphaAccumulator(ctx.canvas.grid)
    for tip in (rv_apex, ra):
        pts = np.asarray([centre, *vein, tip], dtype=np.float32)
        leads.add_polyline(
            pts, np.full(len(pts), max(1.0, 0.55 * ctx.canvas.grid.voxel_mm), dtype=np.float32)
        )
    m2 = leads.paint_masked(ctx.canvas, 2400.0, Tissue.METAL)
    ctx.masks.add(
        Finding.MEDICAL_MATERIAL,
        m1 | m2,
        lesion=_device_lesion(
            "cardiac pacemaker with leads",
            f"{'right' if side < 0 else 'left'} pectoral generator, "
            "leads in the right atrium and right ventricle",
            centre,
            "right" if side < 0 else "left",
            leads=2,
        ),
    )


def _draw_sternotomy(ctx: DrawContext) -> None:
    an = ctx.anatomy
    grid = ctx.canvas.grid
    s = an.plan.scale
    mask = np.zeros(grid.shape, dtype=bool)
    levels = np.linspace(
        35.0 * s,
        min(an.plan.z_dome_right, an.plan.z_dome_left) + 20.0 * s,
        int(ctx.rng.integers(5, 8)),
    )
    for zc in levels:
        z_arr = np.array([zc], dtype=np.float32)
        cy, _, b = an.cage(z_arr)
        yc = float(cy[0] - b[0]) - 6.0 * s
        box = grid.box((-40 * s, yc - 20, zc - 3), (40 * s, yc + 20, zc + 3))
        if box is None:
            continue
        z, y, x = grid.axes(box)
        ring = np.sqrt((x / (24.0 * s)) ** 2 + ((y - yc) / (10.0 * s)) ** 2)
        sd = np.sqrt(((ring - 1.0) * 10.0 * s) ** 2 + (z - zc) ** 2) - max(
            0.7, 0.55 * grid.voxel_mm
        )
        alpha = soft_alpha(sd.astype(np.float32), grid.voxel_mm)
        ctx.canvas.blend(box, alpha, METAL_HU, Tissue.METAL)
        mask[box] |= alpha >= 0.5
    centre = np.array([0.0, -an.cage_b, float(levels.mean())], dtype=np.float32)
    ctx.masks.add(
        Finding.MEDICAL_MATERIAL,
        mask,
        lesion=_device_lesion(
            "median sternotomy wires", "sternum", centre, None, wires=len(levels)
        ),
    )


def _draw_clips(ctx: DrawContext) -> None:
    an = ctx.anatomy
    rng = ctx.rng
    sites = {
        "mediastinum (aortopulmonary window)": an._p(22, -4, 4),
        "left axilla": (an.cage_a + 8.0 * an.plan.scale, 8.0, 55.0 * an.plan.scale),
        "gallbladder fossa": an._p(-48, -45, an.plan.z_dome_right / an.plan.scale - 80),
    }
    site = str(rng.choice(sorted(sites)))
    centre = np.asarray(sites[site], dtype=np.float32)
    acc = AlphaAccumulator(ctx.canvas.grid)
    count = int(rng.integers(3, 8))
    for _ in range(count):
        c = centre + rng.normal(0, 6.0, 3).astype(np.float32)
        d = rng.normal(size=3)
        d = (d / np.linalg.norm(d) * 3.0).astype(np.float32)
        r = max(0.8, 0.55 * ctx.canvas.grid.voxel_mm)
        acc.add_capsule(c - d, c + d, r, r)
    mask = acc.paint_masked(ctx.canvas, METAL_HU, Tissue.METAL)
    ctx.masks.add(
        Finding.MEDICAL_MATERIAL,
        mask,
        lesion=_device_lesion("surgical clips", site, centre, None, clips=count),
    )


def add_metal_streaks(ctx: DrawContext) -> None:
    """Streak artefacts radiating from dense metal in each axial slice."""
    grid = ctx.canvas.grid
    rng = ctx.rng
    metal = ctx.canvas.label == Tissue.METAL
    per_slice = metal.reshape(grid.shape[0], -1).sum(axis=1)
    ys, xs = grid.ys[:, None], grid.xs[None, :]
    body = ctx.canvas.label != Tissue.AIR
    for k in np.nonzero(per_slice >= 3)[0]:
        dense = metal[k] & (ctx.canvas.hu[k] > 1500)
        if dense.sum() < 3:
            continue
        jj, ii = np.nonzero(dense)
        cy, cx = float(ys[jj, 0].mean()), float(xs[0, ii].mean())
        phi = np.arctan2(ys - cy, xs - cx).astype(np.float32)
        r = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2).astype(np.float32)
        amp = min(220.0, 30.0 * float(np.sqrt(dense.sum() * grid.spacing[0] * grid.spacing[1])))
        streak = np.zeros_like(r, dtype=np.float32)
        for _ in range(8):
            theta = rng.uniform(-np.pi, np.pi)
            dphi = np.mod(
                phi - np.float32(theta) + np.float32(np.pi / 2), np.float32(np.pi)
            ) - np.float32(np.pi / 2)
            near = np.abs(dphi) < 0.06  # a line through the metal
            sign = 1.0 if rng.random() < 0.5 else -1.0
            streak[near] += np.float32(sign * amp) * np.exp(
                -(dphi[near] ** 2) / np.float32(2 * 0.012**2)
            )
        streak /= 1.0 + r / 40.0
        ctx.canvas.hu[k] += streak * body[k] * ~metal[k]
