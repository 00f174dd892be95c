"""Lungs, fissures, heart, great vessels, central airways, oesophagus and lymph nodes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.synthetic.anatomy import LEFT, RIGHT, Anatomy, Tube
from models.synthetic.canvas import (
    AlphaAccumulator,
    Canvas,
    SmoothField,
    paint_ellipsoid,
    rotation_frame,
    smooth_polyline,
    soft_alpha,
)
from models.synthetic.tissues import Tissue

LUNG_GRADIENT_HU = 140.0  # anterior-to-posterior rise of lung density when supine
LUNG_TEXTURE_HU = 32.0
FISSURE_HU = 160.0
HALO_MM = 5.0  # fat around mediastinal vessels where they meet lung

# Lymph node stations (IASLC), positions in mm before scaling.
NODE_STATIONS: dict[str, tuple[float, float, float]] = {
    "2R": (-18.0, -10.0, 55.0),
    "2L": (14.0, -6.0, 58.0),
    "4R": (-17.0, -2.0, 14.0),
    "4L": (14.0, 6.0, 8.0),
    "5": (24.0, -8.0, 12.0),
    "6": (16.0, -32.0, 28.0),
    "7": (0.0, 24.0, -22.0),
    "8": (8.0, 34.0, -60.0),
    "10R": (-36.0, 6.0, -10.0),
    "10L": (38.0, 12.0, -18.0),
}


@dataclass(frozen=True)
class HeartGeometry:
    centre: tuple[float, float, float]
    semi: tuple[float, float, float]
    frame: np.ndarray


def paint_lungs(
    canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float], rng: np.random.Generator
) -> None:
    grid = canvas.grid
    plan = anatomy.plan
    s = plan.scale
    z_lo = min(plan.z_dome_left, plan.z_dome_right) - 120.0 * s
    box = grid.box((-400, -400, z_lo), (400, 400, plan.z_apex + 5.0))
    if box is None:
        return
    z, y, x = grid.axes(box)
    v = grid.voxel_mm
    y_front, y_back = -anatomy.cage_b, anatomy.cage_b
    gradient = LUNG_GRADIENT_HU * ((y - y_front) / (y_back - y_front) - 0.45)
    value = (hu[Tissue.LUNG] + gradient).astype(np.float32)
    texture = SmoothField(rng, wavelength_mm=14.0, waves=3)
    canvas.blend(box, soft_alpha(anatomy.lung_distance(z, y, x), v), value, Tissue.LUNG)
    lung = canvas.label[box] == Tissue.LUNG
    idx = np.nonzero(lung)
    if idx[0].size:
        pts = np.stack([x[0, 0, idx[2]], y[0, idx[1], 0], z[idx[0], 0, 0]], axis=1)
        sub = canvas.hu[box]
        sub[idx] += LUNG_TEXTURE_HU * texture.at_points(pts)


def paint_fissures(canvas: Canvas, anatomy: Anatomy) -> None:
    grid = canvas.grid
    lung = canvas.label == Tissue.LUNG
    idx = np.nonzero(lung)
    if idx[0].size == 0:
        return
    pts = grid.points(np.stack(idx, axis=1))
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    right = x < 0
    zo = np.where(
        right, anatomy.oblique_fissure_z(y, x, RIGHT), anatomy.oblique_fissure_z(y, x, LEFT)
    )
    d = np.abs(z - zo) * 0.6
    zh = anatomy.horizontal_fissure_z(y)
    dh = np.where(right & (z > zo), np.abs(z - zh), 1e3)
    dist = np.minimum(d, dh).astype(np.float32)
    alpha = soft_alpha(dist - 0.4, grid.voxel_mm) * 0.8
    keep = alpha > 0.02
    flat = np.ravel_multi_index(tuple(i[keep] for i in idx), grid.shape)
    hu = canvas.hu.reshape(-1)
    hu[flat] += alpha[keep] * FISSURE_HU


def heart_geometry(anatomy: Anatomy) -> HeartGeometry:
    return HeartGeometry(anatomy.heart_centre, anatomy.heart_semi, anatomy.heart_frame)


def paint_heart(
    canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float], *, pericardial_fluid_mm: float = 0.0
) -> None:
    """Pericardial fat and sac, myocardium and the four chambers."""
    g = heart_geometry(anatomy)
    s = anatomy.plan.scale * anatomy.plan.heart_scale
    soft = (Tissue.LUNG, Tissue.FAT, Tissue.PULMONARY_VESSEL)
    sac = 3.0 + pericardial_fluid_mm + (2.5 if pericardial_fluid_mm > 0 else 0.0)
    paint_ellipsoid(
        canvas,
        g.centre,
        g.semi,
        hu[Tissue.FAT],
        Tissue.FAT,
        frame=g.frame,
        grow=sac + 3.0,
        only_labels=soft,
    )
    paint_ellipsoid(
        canvas,
        g.centre,
        g.semi,
        hu[Tissue.PERICARDIUM],
        Tissue.PERICARDIUM,
        frame=g.frame,
        grow=sac + 0.9,
    )
    epicardial = 2.5
    paint_ellipsoid(canvas, g.centre, g.semi, hu[Tissue.FAT], Tissue.FAT, frame=g.frame, grow=sac)
    if pericardial_fluid_mm > 0:
        # Fluid lies inside the sac, outside the epicardial fat around the coronary arteries.
        paint_ellipsoid(
            canvas,
            g.centre,
            g.semi,
            hu[Tissue.FLUID],
            Tissue.FLUID,
            frame=g.frame,
            grow=epicardial + pericardial_fluid_mm,
        )
        paint_ellipsoid(
            canvas, g.centre, g.semi, hu[Tissue.FAT], Tissue.FAT, frame=g.frame, grow=epicardial
        )
    paint_ellipsoid(
        canvas, g.centre, g.semi, hu[Tissue.MYOCARDIUM], Tissue.MYOCARDIUM, frame=g.frame
    )
    c = np.asarray(g.centre)
    blood, myo = hu[Tissue.BLOOD], hu[Tissue.MYOCARDIUM]
    chambers = {
        # name: (offset from centre in mm, semi-axes along the heart frame, wall mm)
        "right ventricle": ((-10.0, -24.0, -6.0), (40.0, 15.0, 28.0), 3.5),
        "right atrium": ((-36.0, 0.0, 14.0), (24.0, 22.0, 26.0), 2.0),
        "left atrium": ((-8.0, 30.0, 28.0), (22.0, 26.0, 18.0), 2.0),
        "left ventricle": ((16.0, 10.0, -8.0), (42.0, 21.0, 23.0), 10.0),
    }
    for _, (off, semi, wall) in chambers.items():
        centre = c + np.asarray(off) * s
        semi_s = tuple(a * s for a in semi)
        paint_ellipsoid(
            canvas,
            centre,
            semi_s,
            myo,
            Tissue.MYOCARDIUM,
            frame=g.frame,
            grow=wall * s,
            only_labels=(
                Tissue.MYOCARDIUM,
                Tissue.FAT,
                Tissue.PERICARDIUM,
                Tissue.LUNG,
                Tissue.BLOOD,
            ),
        )
        paint_ellipsoid(canvas, centre, semi_s, blood, Tissue.BLOOD, frame=g.frame)


def coronary_paths(anatomy: Anatomy) -> dict[str, np.ndarray]:
    """Centre lines of the RCA, LAD and LCx on the heart surface (mm)."""
    g = heart_geometry(anatomy)
    c = np.asarray(g.centre)
    a = np.asarray(g.semi)

    def on_surface(local: np.ndarray) -> np.ndarray:
        # local: directions in the heart frame (u, v, w); scale onto the ellipsoid plus 2 mm.
        q = np.sqrt(((local / a) ** 2).sum(axis=1, keepdims=True))
        p = local / q
        normal = p / (a**2)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        world = c + p @ g.frame + 2.0 * (normal @ g.frame)
        return world.astype(np.float32)

    t = np.linspace(0.0, 1.0, 24)
    u_av = -0.38
    ring = np.sqrt(1.0 - u_av**2)
    # RCA: from the right coronary sinus around the anterior-right AV groove to the crux.
    ang_r = np.deg2rad(125 + 120 * t)
    rca = np.stack([np.full_like(t, u_av), ring * np.cos(ang_r), ring * np.sin(ang_r)], axis=1) * a
    # LCx: the left AV groove towards the posterior.
    ang_l = np.deg2rad(70 - 110 * t)
    lcx = np.stack([np.full_like(t, u_av), ring * np.cos(ang_l), ring * np.sin(ang_l)], axis=1) * a
    # LAD: the anterior interventricular groove from base to apex.
    uu = -0.3 + 1.22 * t
    lad_dir = np.stack([uu, np.full_like(t, -0.25), np.full_like(t, 0.97)], axis=1)
    lad = lad_dir * a
    return {"RCA": on_surface(rca), "LAD": on_surface(lad), "LCX": on_surface(lcx)}


def paint_coronaries(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    for name, pts in coronary_paths(anatomy).items():
        acc = AlphaAccumulator(canvas.grid)
        r0 = 2.0 if name != "LCX" else 1.7
        radii = np.linspace(r0, 1.0, len(pts)).astype(np.float32) * anatomy.plan.scale
        acc.add_polyline(pts, radii)
        acc.paint(
            canvas, hu[Tissue.BLOOD], Tissue.BLOOD, only_labels=(Tissue.FAT, Tissue.PERICARDIUM)
        )


def paint_tube(
    canvas: Canvas,
    tube: Tube,
    value: float,
    label: Tissue,
    *,
    halo_value: float | None,
    grow: float = 0.0,
) -> None:
    if halo_value is not None:
        halo = AlphaAccumulator(canvas.grid)
        halo.add_polyline(tube.points, tube.radii + grow + HALO_MM)
        halo.paint(
            canvas, halo_value, Tissue.FAT, only_labels=(Tissue.LUNG, Tissue.PULMONARY_VESSEL)
        )
    acc = AlphaAccumulator(canvas.grid)
    acc.add_polyline(tube.points, tube.radii + grow)
    acc.paint(canvas, value, label)


def paint_great_vessels(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    fat = hu[Tissue.FAT]
    for tube in anatomy.great_vessels():
        value = hu[Tissue.PULMONARY_VESSEL] if "pulmonary" in tube.name else hu[Tissue.BLOOD]
        if tube.name == "superior vena cava" or "brachiocephalic vein" in tube.name:
            value = 0.5 * (hu[Tissue.BLOOD] + hu[Tissue.PULMONARY_VESSEL])
        paint_tube(canvas, tube, value, Tissue.BLOOD, halo_value=fat)
    for tube in anatomy.pulmonary_veins():
        paint_tube(canvas, tube, hu[Tissue.BLOOD], Tissue.BLOOD, halo_value=fat)


def paint_central_airways(canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float]) -> None:
    s = anatomy.plan.scale
    for tube in anatomy.central_airways():
        paint_tube(
            canvas,
            tube,
            hu[Tissue.AIRWAY_WALL],
            Tissue.AIRWAY_WALL,
            halo_value=hu[Tissue.FAT],
            grow=2.0 * s,
        )
    for tube in anatomy.central_airways():
        paint_tube(canvas, tube, hu[Tissue.AIRWAY_LUMEN], Tissue.AIRWAY_LUMEN, halo_value=None)


def oesophagus(anatomy: Anatomy) -> Tube:
    p = anatomy._p
    plan = anatomy.plan
    c = anatomy.heart_centre
    ctrl = [
        p(3, 18, 170),
        p(4, 20, 60),
        p(6, 26, 0),
        (8.0 * anatomy.sx, c[1] + 56.0 * anatomy.sy, c[2] + 10.0),
        (16.0 * anatomy.sx, 24.0 * anatomy.sy, plan.z_dome_left - 6.0 * plan.scale),
        (40.0 * anatomy.sx, 8.0 * anatomy.sy, plan.z_dome_left - 34.0 * plan.scale),
    ]
    pts = smooth_polyline(ctrl, 4.0)
    return Tube("oesophagus", pts, np.full(len(pts), 7.0 * plan.scale, dtype=np.float32))


def paint_oesophagus(
    canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float], rng: np.random.Generator
) -> None:
    tube = oesophagus(anatomy)
    paint_tube(canvas, tube, hu[Tissue.ESOPHAGUS], Tissue.ESOPHAGUS, halo_value=hu[Tissue.FAT])
    if rng.random() < 0.5:
        lumen = Tube(
            "oesophageal air",
            tube.points,
            np.full(len(tube.points), 1.8 * anatomy.plan.scale, dtype=np.float32),
        )
        acc = AlphaAccumulator(canvas.grid)
        acc.add_polyline(
            lumen.points[: len(lumen.points) * 2 // 3], lumen.radii[: len(lumen.points) * 2 // 3]
        )
        acc.paint(
            canvas, hu[Tissue.AIRWAY_LUMEN], Tissue.AIRWAY_LUMEN, only_labels=(Tissue.ESOPHAGUS,)
        )


def station_centre(anatomy: Anatomy, station: str) -> tuple[float, float, float]:
    x, y, z = NODE_STATIONS[station]
    return anatomy._p(x, y, z)


def paint_normal_nodes(
    canvas: Canvas, anatomy: Anatomy, hu: dict[Tissue, float], rng: np.random.Generator
) -> None:
    """A few normal-sized (short axis under 10 mm) mediastinal nodes."""
    stations = rng.choice(sorted(NODE_STATIONS), size=int(rng.integers(2, 6)), replace=False)
    for st in stations:
        c = np.asarray(station_centre(anatomy, str(st))) + rng.normal(0, 2.0, 3)
        short = float(rng.uniform(2.5, 4.0))
        frame = rotation_frame(rng.normal(size=3))
        paint_ellipsoid(
            canvas,
            c,
            (short * 1.6, short, short),
            hu[Tissue.LYMPH_NODE],
            Tissue.LYMPH_NODE,
            frame=frame,
            only_labels=(Tissue.FAT,),
        )


def paint_mediastinum(
    canvas: Canvas,
    anatomy: Anatomy,
    hu: dict[Tissue, float],
    rng: np.random.Generator,
    *,
    pericardial_fluid_mm: float = 0.0,
) -> None:
    paint_heart(canvas, anatomy, hu, pericardial_fluid_mm=pericardial_fluid_mm)
    paint_coronaries(canvas, anatomy, hu)
    paint_great_vessels(canvas, anatomy, hu)
    paint_central_airways(canvas, anatomy, hu)
    paint_oesophagus(canvas, anatomy, hu, np.random.default_rng([int(rng.integers(2**31)), 1]))
    paint_normal_nodes(canvas, anatomy, hu, np.random.default_rng([int(rng.integers(2**31)), 2]))
