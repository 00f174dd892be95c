"""Branching pulmonary arteries, veins and airways that fill each lobe.

Each tree grows by recursive territory splitting: a branch owns a cloud of
points sampled uniformly in its lobe, splits it in two along its longest axis
and sends one child towards each half.  Radii follow Murray's law
(r^gamma conserved), so calibres taper realistically and the trees fill the
lung without crossing fissures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from models.synthetic.anatomy import LOBE_CODES, LOBES, Anatomy, Lobe
from models.synthetic.canvas import AlphaAccumulator, Canvas, FloatArray
from models.synthetic.tissues import Tissue

MURRAY_EXPONENT = 3.0
MAIN_ARTERY_RADIUS = 9.0
POINTS_PER_LOBE_FULL = 2600
STEP_FRACTION = 0.55
AIRWAY_TO_ARTERY = 0.82
AIRWAY_WALL_FRACTION = 0.17  # wall thickness / outer diameter of a normal bronchus
AIRWAY_WALL_MIN_MM = 0.35


@dataclass
class Branches:
    """Segments of one kind of tree as parallel arrays."""

    a: FloatArray  # (n, 3) start points
    b: FloatArray  # (n, 3) end points
    ra: FloatArray  # radius at a
    rb: FloatArray  # radius at b
    lobe: npt.NDArray[np.int8]
    generation: npt.NDArray[np.int16]

    @classmethod
    def empty(cls) -> Branches:
        z3 = np.zeros((0, 3), dtype=np.float32)
        z1 = np.zeros(0, dtype=np.float32)
        return cls(z3, z3.copy(), z1, z1.copy(), np.zeros(0, np.int8), np.zeros(0, np.int16))

    def __len__(self) -> int:
        return len(self.ra)

    @classmethod
    def concat(cls, parts: list[Branches]) -> Branches:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.a for p in parts]),
            np.concatenate([p.b for p in parts]),
            np.concatenate([p.ra for p in parts]),
            np.concatenate([p.rb for p in parts]),
            np.concatenate([p.lobe for p in parts]),
            np.concatenate([p.generation for p in parts]),
        )


@dataclass
class Airways:
    """Airway segments with lumen radii and wall thickness (mm), editable by findings."""

    centre: Branches
    wall: FloatArray
    visible: npt.NDArray[np.bool_]
    lumen_scale: FloatArray = field(default_factory=lambda: np.zeros(0, np.float32))
    wall_scale: FloatArray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self) -> None:
        if len(self.lumen_scale) != len(self.centre):
            self.lumen_scale = np.ones(len(self.centre), dtype=np.float32)
            self.wall_scale = np.ones(len(self.centre), dtype=np.float32)

    def select(self, lobes: set[int], min_generation: int = 1) -> npt.NDArray[np.bool_]:
        """Airway segments of some lobes (by code) from a generation on."""
        return np.isin(self.centre.lobe, list(lobes)) & (self.centre.generation >= min_generation)


@dataclass
class BronchovascularTree:
    arteries: Branches
    veins: Branches
    airways: Airways


def sample_lung_points(
    rng: np.random.Generator, anatomy: Anatomy, n_target: int
) -> tuple[FloatArray, npt.NDArray[np.int8]]:
    """Points uniformly inside the lungs and their lobe codes."""
    plan = anatomy.plan
    s = plan.scale
    lo = np.array(
        [-anatomy.cage_a, -anatomy.cage_b, min(plan.z_dome_left, plan.z_dome_right) - 110 * s]
    )
    hi = np.array([anatomy.cage_a, anatomy.cage_b + 10 * s, plan.z_apex + 2.0])
    chunks: list[FloatArray] = []
    total = 0
    for _ in range(40):
        cand = rng.uniform(lo, hi, size=(max(n_target, 4000) * 3, 3)).astype(np.float32)
        keep = cand[anatomy.in_lung(cand)]
        chunks.append(keep)
        total += len(keep)
        if total >= n_target:
            break
    pts = np.concatenate(chunks)[:n_target]
    return pts, anatomy.lobe_of(pts)


def _quantile(values: FloatArray, q: float) -> float:
    """A quick quantile (np.partition) for splitting a territory."""
    k = min(len(values) - 1, max(0, int(q * (len(values) - 1))))
    return float(np.partition(values, k)[k])


def _grow(
    rng: np.random.Generator,
    root: FloatArray,
    direction: FloatArray,
    territory: FloatArray,
    r_root: float,
    r_min: float,
    lobe_code: int,
) -> Branches:
    starts: list[FloatArray] = []
    ends: list[FloatArray] = []
    ra: list[float] = []
    rb: list[float] = []
    gen: list[int] = []
    centroid = territory.mean(axis=0)
    first_end = root + (centroid - root) * 0.35 + direction * 4.0
    starts.append(root)
    ends.append(first_end.astype(np.float32))
    ra.append(r_root)
    rb.append(r_root * 0.97)
    gen.append(0)
    stack: list[tuple[FloatArray, FloatArray, float, int]] = [
        (first_end, territory, r_root * 0.97, 1)
    ]
    while stack:
        node, pts, radius, g = stack.pop()
        if len(pts) < 3 or radius < r_min:
            continue
        extent = pts.max(axis=0) - pts.min(axis=0)
        proj = pts[:, int(np.argmax(extent))]
        cut = _quantile(
            proj, rng.uniform(0.22, 0.5) if rng.random() < 0.5 else rng.uniform(0.5, 0.78)
        )
        for side in (proj < cut, proj >= cut):
            child = pts[side]
            if len(child) == 0:
                continue
            frac = len(child) / len(pts)
            r_child = radius * frac ** (1.0 / MURRAY_EXPONENT)
            target = child.mean(axis=0)
            step = STEP_FRACTION * rng.uniform(0.8, 1.15)
            end = node + (target - node) * step
            if r_child < r_min:
                # A terminal twig reaching into its territory.
                end = node + (target - node) * min(1.0, step * 1.4)
            starts.append(node.astype(np.float32))
            ends.append(end.astype(np.float32))
            ra.append(r_child)
            rb.append(r_child * 0.92)
            gen.append(g)
            stack.append((end, child, r_child * 0.92, g + 1))
    n = len(ra)
    return Branches(
        np.asarray(starts, dtype=np.float32).reshape(n, 3),
        np.asarray(ends, dtype=np.float32).reshape(n, 3),
        np.asarray(ra, dtype=np.float32),
        np.asarray(rb, dtype=np.float32),
        np.full(n, lobe_code, dtype=np.int8),
        np.asarray(gen, dtype=np.int16),
    )


def grow_bronchovascular_tree(
    rng: np.random.Generator, anatomy: Anatomy, *, r_min: float, density: float = 1.0
) -> BronchovascularTree:
    """Arteries and veins for every lobe, and airways alongside the arteries."""
    n_points = int(POINTS_PER_LOBE_FULL * len(LOBES) * density)
    art_pts, art_lobes = sample_lung_points(rng, anatomy, n_points)
    vein_pts, vein_lobes = sample_lung_points(rng, anatomy, n_points)
    total = max(len(art_pts), 1)
    roots = anatomy.lobar_roots()
    vein_roots = {v.name: v.points[-1] for v in anatomy.pulmonary_veins()}
    vein_root_of = {
        Lobe.RUL: "right superior pulmonary vein",
        Lobe.RML: "right superior pulmonary vein",
        Lobe.RLL: "right inferior pulmonary vein",
        Lobe.LUL: "left superior pulmonary vein",
        Lobe.LLL: "left inferior pulmonary vein",
    }
    arteries: list[Branches] = []
    veins: list[Branches] = []
    for lobe in LOBES:
        code = LOBE_CODES[lobe]
        terr = art_pts[art_lobes == code]
        if len(terr) < 8:
            continue
        frac = 2.0 * len(terr) / total  # share of one lung's flow
        r_root = MAIN_ARTERY_RADIUS * min(frac, 1.0) ** (1.0 / MURRAY_EXPONENT) * anatomy.plan.scale
        root, direction = roots[lobe]
        arteries.append(_grow(rng, root, direction, terr, r_root, r_min, code))
        vterr = vein_pts[vein_lobes == code]
        if len(vterr) >= 8:
            vroot = np.asarray(vein_roots[vein_root_of[lobe]], dtype=np.float32)
            vdir = vterr.mean(axis=0) - vroot
            vdir /= np.linalg.norm(vdir) + 1e-6
            veins.append(_grow(rng, vroot, vdir, vterr, r_root * 0.95, r_min, code))
    art = Branches.concat(arteries)
    return BronchovascularTree(art, Branches.concat(veins), _airways_along(art, r_min))


def _airways_along(arteries: Branches, r_min: float) -> Airways:
    """Bronchi beside their arteries, offset sideways so the two run as a pair."""
    lumen_ra = arteries.ra * AIRWAY_TO_ARTERY
    lumen_rb = arteries.rb * AIRWAY_TO_ARTERY
    visible = lumen_ra >= max(r_min * 1.3, 0.8)
    keep = lumen_ra >= r_min * 0.6
    a, b = arteries.a[keep], arteries.b[keep]
    d = b - a
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-6
    ref = np.where(
        np.abs(d[:, 2:3]) > 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 1.0]])
    )
    perp = np.cross(d, ref)
    perp /= np.linalg.norm(perp, axis=1, keepdims=True) + 1e-6
    wall = np.maximum(
        AIRWAY_WALL_FRACTION * 2 * lumen_ra[keep] / (1 - 2 * AIRWAY_WALL_FRACTION),
        AIRWAY_WALL_MIN_MM,
    )
    offset = (arteries.ra[keep] + lumen_ra[keep] + wall + 0.3)[:, None] * perp
    centre = Branches(
        (a + offset).astype(np.float32),
        (b + offset).astype(np.float32),
        lumen_ra[keep].astype(np.float32),
        lumen_rb[keep].astype(np.float32),
        arteries.lobe[keep],
        arteries.generation[keep],
    )
    return Airways(centre=centre, wall=wall.astype(np.float32), visible=visible[keep])


IN_LUNG_LABELS = (Tissue.LUNG, Tissue.FAT, Tissue.PULMONARY_VESSEL, Tissue.LESION)


def paint_vessels(canvas: Canvas, branches: Branches, value: float) -> None:
    acc = AlphaAccumulator(canvas.grid)
    acc.add_capsules(branches.a, branches.b, branches.ra, branches.rb)
    acc.paint(canvas, value, Tissue.PULMONARY_VESSEL, only_labels=IN_LUNG_LABELS)


def paint_airways(
    canvas: Canvas,
    airways: Airways,
    hu: dict[Tissue, float],
    *,
    only: npt.NDArray[np.bool_] | None = None,
) -> None:
    """Walls then lumens of visible airways."""
    c = airways.centre
    lumen_a = c.ra * airways.lumen_scale
    lumen_b = c.rb * airways.lumen_scale
    wall = airways.wall * airways.wall_scale
    outer = AlphaAccumulator(canvas.grid)
    inner = AlphaAccumulator(canvas.grid)
    n = airways.visible if only is None else (airways.visible & only)
    outer.add_capsules(c.a[n], c.b[n], (lumen_a + wall)[n], (lumen_b + wall)[n])
    inner.add_capsules(c.a[n], c.b[n], lumen_a[n], lumen_b[n])
    allowed = (*IN_LUNG_LABELS, Tissue.AIRWAY_WALL, Tissue.AIRWAY_LUMEN)
    outer.paint(canvas, hu[Tissue.AIRWAY_WALL], Tissue.AIRWAY_WALL, only_labels=allowed)
    inner.paint(canvas, hu[Tissue.AIRWAY_LUMEN], Tissue.AIRWAY_LUMEN, only_labels=allowed)
