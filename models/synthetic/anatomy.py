"""The analytic body plan: where each structure of a chest is, in millimetres.

A :class:`BodyPlan` holds the sampled parameters of one synthetic patient; an
:class:`Anatomy` derives every surface and path from it (thoracic cavity,
diaphragm, lung lobes, heart frame, great vessels, airways).  Painters in the
sibling modules draw these onto a grid; tree growth and finding placement use
the same functions on point clouds, so nothing depends on the grid resolution.

Frame: x towards the patient's left, y posterior, z superior; the carina is at
the origin.  Sizes are those of an average adult, multiplied by the plan's
scale factors.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.synthetic.canvas import FloatArray, Grid, rotation_frame, smooth_polyline

RIGHT, LEFT = -1, 1


class Lobe(enum.StrEnum):
    RUL = "right upper lobe"
    RML = "right middle lobe"
    RLL = "right lower lobe"
    LUL = "left upper lobe"
    LLL = "left lower lobe"

    @property
    def side(self) -> int:
        return RIGHT if self.name.startswith("R") else LEFT

    @property
    def is_lower(self) -> bool:
        return self in (Lobe.RLL, Lobe.LLL)

    @property
    def is_upper(self) -> bool:
        return self in (Lobe.RUL, Lobe.LUL)


LOBES: tuple[Lobe, ...] = tuple(Lobe)
LOBE_CODES: dict[Lobe, int] = {lobe: n + 1 for n, lobe in enumerate(LOBES)}


@dataclass(frozen=True)
class BodyPlan:
    """Sampled parameters of one synthetic patient (millimetres unless stated)."""

    sex: str  # "M" or "F"
    age: int
    scale: float  # overall size
    width: float  # extra left-right factor
    depth: float  # extra anterior-posterior factor
    fat_mm: float  # subcutaneous fat thickness
    z_apex: float  # lung apex
    z_dome_right: float  # top of the right hemidiaphragm
    z_dome_left: float
    heart_scale: float  # 1.0 = normal size; >1.2 cardiomegaly
    heart_shift: float  # mm to the left
    aorta_scale: float
    unfolding: float  # 0..1, elderly tortuous aorta
    breasts: bool
    stomach_gas: float  # 0..1 fraction of the stomach holding gas
    arms_up: bool


def sample_body_plan(rng: np.random.Generator, *, sex: str, age: int) -> BodyPlan:
    male = sex == "M"
    scale = float(np.clip(rng.normal(1.0 if male else 0.93, 0.05), 0.82, 1.15))
    z_dome_right = -scale * float(rng.uniform(118, 142))
    return BodyPlan(
        sex=sex,
        age=age,
        scale=scale,
        width=float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1)),
        depth=float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.14)),
        fat_mm=float(np.clip(rng.gamma(4.0, 4.5 if male else 5.5), 4.0, 55.0)),
        z_apex=scale * float(rng.uniform(84, 100)),
        z_dome_right=z_dome_right,
        z_dome_left=z_dome_right - scale * float(rng.uniform(5, 22)),
        heart_scale=float(rng.uniform(0.92, 1.04)),
        heart_shift=float(rng.normal(0.0, 4.0)),
        aorta_scale=float(np.clip(1.0 + (age - 50) * 0.004 + rng.normal(0, 0.05), 0.85, 1.25)),
        unfolding=float(np.clip((age - 45) / 40 + rng.normal(0, 0.15), 0.0, 1.0)),
        breasts=not male,
        stomach_gas=float(rng.uniform(0.05, 0.45)),
        arms_up=True,
    )


@dataclass(frozen=True)
class Tube:
    """A vessel or airway centre line with radii (mm)."""

    name: str
    points: FloatArray  # (n, 3)
    radii: FloatArray  # (n,)


class Anatomy:
    """Surfaces, paths and region tests derived from a body plan."""

    def __init__(self, plan: BodyPlan) -> None:
        self.plan = plan
        s, w, d = plan.scale, plan.width, plan.depth
        self.sx, self.sy, self.sz = s * w, s * d, s
        # Hemithorax ellipses at mid-chest.
        self.hemi_cx = 62.0 * self.sx
        self.hemi_ax = 72.0 * self.sx
        self.hemi_cy = 2.0 * self.sy
        self.hemi_ay = 88.0 * self.sy
        self._cage_cache: dict[tuple[object, ...], tuple[FloatArray, FloatArray]] = {}
        self.z_base = plan.z_dome_right - 10.0 * s
        self.cage_a = self.hemi_cx + self.hemi_ax
        self.cage_b = self.hemi_ay * 1.12
        # Spine.
        self.vb_y = 50.0 * self.sy
        self.vb_rx = 19.0 * s
        self.vb_ry = 16.0 * s
        self.vertebra_pitch = 25.0 * s
        # Chest wall and body outline (muscle outline before fat).
        self.wall_lateral = 20.0 * s
        self.wall_anterior = 16.0 * s
        self.wall_posterior = 24.0 * s
        # Heart.
        hs = plan.heart_scale
        self.heart_frame = rotation_frame((0.62, -0.46, -0.64))
        self.heart_semi = (71.0 * s * hs, 56.0 * s * hs, 45.0 * s * float(np.sqrt(hs)))
        z_extent = float(
            np.sqrt(
                sum((a * r[2]) ** 2 for a, r in zip(self.heart_semi, self.heart_frame, strict=True))
            )
        )
        self.heart_x_extent = float(
            np.sqrt(
                sum((a * r[0]) ** 2 for a, r in zip(self.heart_semi, self.heart_frame, strict=True))
            )
        )
        z_floor = 0.5 * (plan.z_dome_right + plan.z_dome_left) - 4.0 * s
        self.heart_centre = (
            (16.0 + plan.heart_shift) * self.sx * (0.7 + 0.3 * hs),
            -22.0 * self.sy,
            z_floor + z_extent,
        )

    # ----------------------------------------------------------------- cavity
    def _profile(self, z: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Width and depth factors of the lungs at heights z (1 at the bases, 0 at the apex)."""
        t = np.clip((z - self.z_base) / (self.plan.z_apex + 4.0 - self.z_base), 0.0, 1.0)
        kw = np.sqrt(np.clip(1.0 - t**2.5, 0.0, 1.0))
        kd = np.sqrt(np.clip(1.0 - t**3.5, 0.0, 1.0))
        return kw.astype(np.float32), kd.astype(np.float32)

    def hemithorax(
        self, z: FloatArray, side: int
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Centre and semi-axes (cx, cy, ax, ay) of one hemithorax at heights z."""
        kw, kd = self._profile(z)
        cx = side * self.hemi_cx * (0.55 + 0.45 * kw)
        cy = self.hemi_cy + 14.0 * self.sy * (1.0 - kd)
        ax = np.maximum(self.hemi_ax * kw, 1e-3)
        ay = np.maximum(self.hemi_ay * kd * np.minimum(1.0, 2.5 * kw), 1e-3)
        return (
            cx.astype(np.float32),
            cy.astype(np.float32),
            ax.astype(np.float32),
            ay.astype(np.float32),
        )

    def hemithorax_distance(
        self, z: FloatArray, y: FloatArray, x: FloatArray, side: int
    ) -> FloatArray:
        cx, cy, ax, ay = self.hemithorax(z, side)
        f = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
        return ((f - 1.0) * np.minimum(ax, ay)).astype(np.float32)

    def cage(self, z: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Centre y and semi-axes (a, b) of the rib cage oval at heights z (centred on x=0)."""
        cx, cy, ax, ay = self.hemithorax(z, LEFT)
        s = self.plan.scale
        a = np.maximum(cx + ax, 48.0 * s)
        b = np.maximum(ay * 1.12, 44.0 * s)
        return cy.astype(np.float32), a.astype(np.float32), b.astype(np.float32)

    def cage_distance(self, z: FloatArray, y: FloatArray, x: FloatArray) -> FloatArray:
        cy, a, b = self.cage(z)
        f = np.sqrt((x / a) ** 2 + ((y - cy) / b) ** 2)
        return ((f - 1.0) * np.minimum(a, b)).astype(np.float32)

    def cage_coordinates(self, grid: Grid) -> tuple[FloatArray, FloatArray]:
        """Per voxel of ``grid``: mm outside the cage oval, and (y - cy) / b (cached)."""
        key = (grid.shape, grid.origin, grid.spacing)
        if key not in self._cage_cache:
            z, y, x = grid.axes(grid.full_box())
            cy, a, b = self.cage(z)
            rel = ((y - cy) / b).astype(np.float32)
            rho = np.sqrt((x / a) ** 2 + rel**2)
            outward = ((rho - 1.0) * np.minimum(a, b)).astype(np.float32)
            if len(self._cage_cache) > 4:
                self._cage_cache.clear()
            self._cage_cache[key] = (
                outward,
                np.ascontiguousarray(np.broadcast_to(rel, outward.shape)),
            )
        return self._cage_cache[key]

    def spine_block_distance(self, z: FloatArray, y: FloatArray, x: FloatArray) -> FloatArray:
        """The posterior midline block (vertebra and paraspinal tissue) that indents the cage."""
        cx, cy = 0.0, self.vb_y + 20.0 * self.sy
        ax, ay = 28.0 * self.sx, 42.0 * self.sy
        f = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
        return ((f - 1.0) * ax + 0.0 * z).astype(np.float32)

    def band_limits(self, z: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The mediastinal band between the lungs: half width, anterior and posterior y."""
        s = self.plan.scale
        cy, _, b = self.cage(z)
        half = np.full_like(z, 10.0 * s, dtype=np.float32)
        y_ant = (cy - b - 5.0).astype(np.float32)
        y_post = np.full_like(y_ant, self.vb_y - self.vb_ry + 4.0 * s)
        return half, y_ant, y_post

    def band_distance(self, z: FloatArray, y: FloatArray, x: FloatArray) -> FloatArray:
        half, y_ant, y_post = self.band_limits(z)
        return np.maximum(np.maximum(np.abs(x) - half, y_ant - y), y - y_post).astype(np.float32)

    def cavity_distance(self, z: FloatArray, y: FloatArray, x: FloatArray) -> FloatArray:
        """Signed distance to the inner chest wall (thoracic plus upper abdominal cavity)."""
        return np.maximum(self.cage_distance(z, y, x), -self.spine_block_distance(z, y, x)).astype(
            np.float32
        )

    # -------------------------------------------------------------- diaphragm
    def diaphragm_z(self, y: FloatArray, x: FloatArray) -> FloatArray:
        """Height of the diaphragm surface under (x, y)."""
        s = self.plan.scale

        def dome(z0: float, xc: float, yc: float) -> FloatArray:
            q = ((x - xc) / (95.0 * self.sx)) ** 2 + ((y - yc) / (88.0 * self.sy)) ** 2
            return (z0 - 42.0 * s * q - 0.15 * np.maximum(y - yc, 0.0)).astype(np.float32)

        right = dome(self.plan.z_dome_right, -55.0 * self.sx, -12.0 * self.sy)
        left = dome(self.plan.z_dome_left, 60.0 * self.sx, -8.0 * self.sy)
        wl = 1.0 / (1.0 + np.exp(-(x - 8.0 * s) / (14.0 * s)))
        return (right * (1.0 - wl) + left * wl).astype(np.float32)

    # ------------------------------------------------------------------ lungs
    def lung_distance(
        self, z: FloatArray, y: FloatArray, x: FloatArray, side: int | None = None
    ) -> FloatArray:
        """Signed distance (approximate) to the lungs (one side, or both when side is None),
        before mediastinal organs carve them."""
        if side is None:
            hemi = np.minimum(
                self.hemithorax_distance(z, y, x, RIGHT), self.hemithorax_distance(z, y, x, LEFT)
            )
        else:
            hemi = self.hemithorax_distance(z, y, x, side)
        hemi = np.maximum(hemi, self.cavity_distance(z, y, x) + 1.0)
        hemi = np.maximum(hemi, -self.band_distance(z, y, x))
        return np.maximum(hemi, (self.diaphragm_z(y, x) - z) * np.float32(0.7)).astype(np.float32)

    def in_lung(self, points: FloatArray) -> npt.NDArray[np.bool_]:
        """Whether points (n, 3) lie in lung parenchyma, mediastinal organs excluded."""
        x, y, z = points[:, 0], points[:, 1], points[:, 2]
        inside = self.lung_distance(z, y, x) < 0
        fr = self.heart_frame
        c = self.heart_centre
        q = np.zeros_like(x)
        for row, a in zip(fr, self.heart_semi, strict=True):
            q += (
                ((x - c[0]) * row[0] + (y - c[1]) * row[1] + (z - c[2]) * row[2]) / (a + 8.0)
            ) ** 2
        inside &= q > 1.0
        for tube in self.great_vessels():
            inside &= ~_near_polyline(points, tube.points, tube.radii + 4.0)
        inside &= (
            (x / (self.vb_rx + 8.0)) ** 2 + ((y - self.vb_y) / (self.vb_ry + 8.0)) ** 2
        ) > 1.0
        return inside

    def lobe_of(self, points: FloatArray) -> npt.NDArray[np.int8]:
        """Lobe code (LOBE_CODES) of lung points (no lung test)."""
        x, y, z = points[:, 0], points[:, 1], points[:, 2]
        right = x < 0
        lower_r = z < self.oblique_fissure_z(y, x, RIGHT)
        lower_l = z < self.oblique_fissure_z(y, x, LEFT)
        upper_r = z > self.horizontal_fissure_z(y)
        out = np.empty(x.shape, dtype=np.int8)
        out[right & lower_r] = LOBE_CODES[Lobe.RLL]
        out[right & ~lower_r & upper_r] = LOBE_CODES[Lobe.RUL]
        out[right & ~lower_r & ~upper_r] = LOBE_CODES[Lobe.RML]
        out[~right & lower_l] = LOBE_CODES[Lobe.LLL]
        out[~right & ~lower_l] = LOBE_CODES[Lobe.LUL]
        return out

    def oblique_fissure_z(self, y: FloatArray, x: FloatArray, side: int) -> FloatArray:
        s = self.plan.scale
        z_post = (38.0 if side == RIGHT else 48.0) * s
        z_ant = self.plan.z_dome_right + 10.0 * s
        y_post, y_ant = 80.0 * self.sy, -70.0 * self.sy
        slope = (z_post - z_ant) / (y_post - y_ant)
        lateral = 0.08 * (np.abs(x) - 60.0 * self.sx)
        return (z_ant + (y - y_ant) * slope + lateral).astype(np.float32)

    def horizontal_fissure_z(self, y: FloatArray) -> FloatArray:
        return (-38.0 * self.plan.scale + 0.05 * y).astype(np.float32)

    # ------------------------------------------------------------ body outline
    def muscle_outline(self, z: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Superellipse half-width, anterior and posterior half-depth of the muscle outline."""
        s = self.plan.scale
        shoulders = np.clip((z - 10.0 * s) / (90.0 * s), 0.0, 1.0)
        belly = np.clip((self.plan.z_dome_right - 30.0 * s - z) / (80.0 * s), 0.0, 1.0)
        half_w = (self.cage_a + self.wall_lateral) * (1.0 + 0.12 * shoulders)
        ant = (self.cage_b - self.hemi_cy + self.wall_anterior) * (
            1.0 - 0.12 * shoulders + 0.06 * belly
        )
        post = (self.cage_b + self.hemi_cy + self.wall_posterior) * (1.0 + 0.1 * shoulders)
        shape = np.ones_like(z)
        return (
            (half_w * shape).astype(np.float32),
            (ant * shape).astype(np.float32),
            (post * shape).astype(np.float32),
        )

    def fat_at(self, z: FloatArray) -> FloatArray:
        """Subcutaneous fat thickness at heights z (thicker over the abdomen)."""
        s = self.plan.scale
        belly = np.clip((self.plan.z_dome_right - z) / (90.0 * s), 0.0, 1.0)
        return (self.plan.fat_mm * (0.85 + 0.45 * belly)).astype(np.float32)

    def outline_distance(
        self, z: FloatArray, y: FloatArray, x: FloatArray, grow: FloatArray | float
    ) -> FloatArray:
        """Signed distance to the muscle outline grown by ``grow`` mm (the skin when grow=fat).

        An ellipse whose back is flattened where the patient lies on the table.
        """
        half_w, ant, post = self.muscle_outline(z)
        g = np.asarray(grow, dtype=np.float32)
        a = half_w + g
        b_ant, b_post = ant + g, post + g
        b = np.where(y < 0, b_ant, b_post * 1.06)
        f = np.sqrt((x / a) ** 2 + (y / b) ** 2)
        ell = (f - 1.0) * np.minimum(a, b)
        return np.maximum(ell, y - b_post).astype(np.float32)

    def body_posterior_y(self) -> float:
        z = np.array([0.0], dtype=np.float32)
        _, _, post = self.muscle_outline(z)
        return float(post[0] + self.fat_at(z)[0])

    def body_anterior_y(self) -> float:
        z = np.array([0.0], dtype=np.float32)
        _, ant, _ = self.muscle_outline(z)
        return float(ant[0] + self.fat_at(z)[0])

    def cardiothoracic_ratio(self) -> float:
        """Maximal transverse heart diameter over maximal inner thoracic diameter."""
        z = np.linspace(self.plan.z_dome_right - 40.0, self.plan.z_apex, 200).astype(np.float32)
        _, a, _ = self.cage(z)
        return float(2.0 * self.heart_x_extent / (2.0 * float(a.max())))

    def body_half_width(self) -> float:
        z = np.array([self.plan.z_apex], dtype=np.float32)
        half_w, _, _ = self.muscle_outline(z)
        return float(half_w[0] + self.fat_at(z)[0])

    # ----------------------------------------------------------- great vessels
    def _p(self, x: float, y: float, z: float) -> tuple[float, float, float]:
        return (x * self.sx, y * self.sy, z * self.sz)

    def aorta(self) -> Tube:
        u = self.plan.unfolding
        c = self.heart_centre
        root = (c[0] - 12.0 * self.sx, c[1] + 8.0 * self.sy, c[2] + 40.0 * self.sz)
        ctrl = [
            root,
            self._p(-12 - 6 * u, -26, -8),
            self._p(-17 - 6 * u, -30, 14),
            self._p(-9, -22, 33 + 6 * u),
            self._p(8, -4, 38 + 6 * u),
            self._p(22, 14, 31 + 4 * u),
            self._p(28, 28, 14),
            self._p(29, 30, -20),
            self._p(26 + 4 * u, 30, -70),
            self._p(16, 30, -120),
            self._p(6, 28, -170),
            self._p(3, 28, -320),
        ]
        pts = smooth_polyline(ctrl, 6.0)
        # Radius: 15 mm ascending, 12.5 arch, 11 descending, 9.5 abdominal.
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        s_knots = np.array([0.0, 60.0, 130.0, 200.0, 400.0]) * self.sz
        r_knots = np.array([15.0, 14.0, 12.0, 11.0, 9.5]) * self.sz * self.plan.aorta_scale
        radii = np.interp(arc, s_knots, r_knots).astype(np.float32)
        return Tube("aorta", pts, radii)

    def great_vessels(self) -> list[Tube]:
        """Aorta, arch branches, veins and pulmonary arteries (centre lines)."""
        c = self.heart_centre

        def tube(name: str, ctrl: list[tuple[float, float, float]], r0: float, r1: float) -> Tube:
            pts = smooth_polyline(ctrl, 6.0)
            radii = np.linspace(r0, r1, len(pts)).astype(np.float32) * self.sz
            return Tube(name, pts, radii)

        rv_out = (c[0] + 10.0 * self.sx, c[1] - 30.0 * self.sy, c[2] + 30.0 * self.sz)
        bif = self._p(8, -6, -6)
        tubes = [
            self.aorta(),
            tube(
                "brachiocephalic artery",
                [
                    self._p(-6, -18, 38),
                    self._p(-12, -16, 60),
                    self._p(-22, -8, 95),
                    self._p(-30, -4, 140),
                ],
                6.5,
                5.5,
            ),
            tube(
                "left common carotid",
                [self._p(4, -12, 40), self._p(8, -10, 70), self._p(14, -6, 140)],
                4.5,
                4.0,
            ),
            tube(
                "left subclavian artery",
                [self._p(15, 0, 38), self._p(22, 2, 68), self._p(38, 2, 92), self._p(75, -2, 100)],
                5.0,
                4.0,
            ),
            tube(
                "right brachiocephalic vein",
                [self._p(-32, -24, 140), self._p(-30, -26, 80), self._p(-27, -26, 44)],
                8.0,
                8.5,
            ),
            tube(
                "left brachiocephalic vein",
                [
                    self._p(60, -30, 82),
                    self._p(30, -36, 62),
                    self._p(0, -34, 52),
                    self._p(-25, -27, 44),
                ],
                6.5,
                7.0,
            ),
            tube(
                "superior vena cava",
                [
                    self._p(-27, -26, 44),
                    self._p(-28, -22, 10),
                    self._p(-27, -16, -28),
                    (c[0] - 40.0 * self.sx, c[1] + 4.0 * self.sy, c[2] + 18.0 * self.sz),
                ],
                9.5,
                10.5,
            ),
            tube(
                "azygos vein",
                [
                    self._p(-6, 40, -120),
                    self._p(-9, 38, -30),
                    self._p(-14, 30, 6),
                    self._p(-24, -8, 12),
                    self._p(-27, -20, 14),
                ],
                4.0,
                5.0,
            ),
            tube("pulmonary trunk", [rv_out, self._p(18, -24, -20), bif], 14.0, 13.0),
            tube(
                "left pulmonary artery",
                [bif, self._p(32, 4, -6), self._p(46, 14, -16), self._p(50, 20, -30)],
                11.0,
                8.5,
            ),
            tube(
                "right pulmonary artery",
                [bif, self._p(-10, 0, -10), self._p(-34, 2, -15), self._p(-48, 6, -24)],
                11.0,
                8.5,
            ),
            tube(
                "inferior vena cava",
                [
                    self._p(-20, 12, -330),
                    self._p(-22, 8, -150),
                    (c[0] - 38.0 * self.sx, c[1] + 10.0 * self.sy, c[2] - 25.0 * self.sz),
                ],
                11.0,
                12.0,
            ),
        ]
        return tubes

    def pulmonary_veins(self) -> list[Tube]:
        c = self.heart_centre
        la = (c[0] - 8.0 * self.sx, c[1] + 36.0 * self.sy, c[2] + 26.0 * self.sz)
        out = []
        for name, (x, y, dz) in {
            "right superior pulmonary vein": (-42, 4, 22),
            "right inferior pulmonary vein": (-40, 22, -4),
            "left superior pulmonary vein": (42, 8, 22),
            "left inferior pulmonary vein": (40, 26, -4),
        }.items():
            end = (x * self.sx, y * self.sy, la[2] + dz * self.sz)
            pts = np.array([la, end], dtype=np.float32)
            out.append(Tube(name, pts, np.array([7.0, 6.0], dtype=np.float32) * self.sz))
        return out

    # ---------------------------------------------------------------- airways
    def central_airways(self) -> list[Tube]:
        """Trachea and main/lobar bronchi (lumen radii; walls are added when drawn)."""

        def tube(name: str, ctrl: list[tuple[float, float, float]], r0: float, r1: float) -> Tube:
            pts = smooth_polyline(ctrl, 5.0)
            return Tube(name, pts, (np.linspace(r0, r1, len(pts)) * self.sz).astype(np.float32))

        carina = self._p(-1, 12, 0)
        rmb_end = self._p(-26, 16, -16)
        lmb_end = self._p(30, 20, -28)
        bi_end = self._p(-34, 20, -44)
        return [
            tube(
                "trachea",
                [self._p(0, -4, 170), self._p(0, 2, 80), self._p(0, 8, 30), carina],
                9.0,
                8.5,
            ),
            tube("right main bronchus", [carina, rmb_end], 7.0, 6.5),
            tube("left main bronchus", [carina, self._p(16, 16, -14), lmb_end], 6.5, 5.5),
            tube("bronchus intermedius", [rmb_end, bi_end], 5.5, 5.0),
        ]

    def lobar_roots(self) -> dict[Lobe, tuple[FloatArray, FloatArray]]:
        """Start point and direction of each lobe's bronchovascular tree."""
        p = self._p
        roots = {
            Lobe.RUL: (p(-40, 14, -10), (-0.5, -0.1, 0.85)),
            Lobe.RML: (p(-40, 8, -50), (-0.55, -0.75, -0.35)),
            Lobe.RLL: (p(-40, 26, -56), (-0.3, 0.45, -0.85)),
            Lobe.LUL: (p(42, 14, -20), (0.5, -0.2, 0.85)),
            Lobe.LLL: (p(42, 28, -40), (0.3, 0.45, -0.85)),
        }
        out: dict[Lobe, tuple[FloatArray, FloatArray]] = {}
        for lobe, (pt, dv) in roots.items():
            v = np.asarray(dv, dtype=np.float32)
            out[lobe] = (np.asarray(pt, dtype=np.float32), v / np.linalg.norm(v))
        return out

    def coverage(self, rng: np.random.Generator) -> tuple[float, float]:
        """A plausible scan range (z bottom, z top): from above the apices to the upper abdomen."""
        s = self.plan.scale
        top = self.plan.z_apex + float(rng.uniform(12, 35)) * s
        bottom = (
            min(self.plan.z_dome_right, self.plan.z_dome_left) - float(rng.uniform(55, 105)) * s
        )
        return bottom, top


def _near_polyline(
    points: FloatArray, line: FloatArray, radii: FloatArray
) -> npt.NDArray[np.bool_]:
    """Whether points lie within radii of a polyline (vectorised over points)."""
    near = np.zeros(len(points), dtype=bool)
    reach = float(radii.max())
    lo, hi = line.min(axis=0) - reach, line.max(axis=0) + reach
    cand = np.nonzero(np.all((points >= lo) & (points <= hi), axis=1))[0]
    if cand.size == 0:
        return near
    points = points[cand]
    sub = np.zeros(len(points), dtype=bool)
    for n in range(len(line) - 1):
        a, b = line[n], line[n + 1]
        d = b - a
        dd = float(d @ d) or 1e-6
        t = np.clip(((points - a) @ d) / dd, 0.0, 1.0)
        dist = np.linalg.norm(points - (a + t[:, None] * d), axis=1)
        sub |= dist < radii[n]
    near[cand] = sub
    return near
