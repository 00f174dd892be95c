"""Nodule diameter by measurement: rays cast from the nodule's centre to its edge.

The refiner network under-reads large nodules (a 20 mm nodule reads about 9 mm: it
was trained mostly on small ones), so where a nodule is large enough to measure,
the diameter a draft states comes from the image itself.  Rays from the nodule's
centre find where the attenuation falls half-way from the nodule to the surrounding
lung (the half-maximum edge of a blurred step).  The centre is refitted as the
sphere through those edge points (twice), and the diameter is twice the median ray
length, corrected for the curvature of a blurred sphere (its half-maximum lies
about blur^2 / radius inside the surface, the blur measured from the edge's slope).
The median ignores the few rays that run along a vessel or a spicule; rays that run
into the chest wall or the mediastinum find no edge and are left out.

What it measures is the dense part: a part-solid nodule whose ground-glass rim is
thinner than the image can resolve is measured at its core (the evaluation reports
the error by type).  Below ``MIN_MEASURED_MM`` blur dominates the profile and the
refiner's reading stands (``nodule_diameter``).

Input: a cube of HU values at isotropic spacing centred near the candidate
(``models.preprocess.extract_patch`` with ``measuring_spec``, or a grid image sampled
the same way).  numpy and scipy only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from models.preprocess import PreprocessSpec

MEASURE_SHAPE: tuple[int, int, int] = (64, 64, 64)
MEASURE_SPACING_MM = 1.0
"""The measuring cube: 64 mm across, room for a 32 mm nodule off its candidate centre."""
MIN_MEASURED_MM = 8.0
"""Smaller nodules keep the refiner's reading: their profile is mostly blur."""
MAX_RAY_SPREAD = 0.3
"""Round enough to be a nodule (interquartile range of the edge distances over their
median). Chosen on the shipped weights' validation split (200 synthetic studies, a
scratch script run once on 2026-11-29, not a committed bench): 43
of 44 measured true nodules at most 0.28, 26 of 34 measured false candidates above 0.3."""
MAX_MEASURED_RATIO = 2.0
"""A measurement more than twice the network's larger reading is of something else.
On the validation split, true nodules reached at most 1.84 times (one outlier at 5.6)."""
RAY_COUNT = 200
RAY_STEP_MM = 0.25
SEED_SEARCH_MM = 5.0
"""The nodule's brightest point is looked for this far around the candidate centre."""
LUNG_MAX_HU = -500.0
"""Voxels below this are lung when the background is estimated."""
SOLID_MIN_CONTRAST_HU = 500.0
"""A centre this much above the lung is solid tissue; less is ground glass."""
MIN_CONTRAST_HU = 140.0
"""Less than this over the lung (half of typical ground glass) is no nodule to measure."""
MIN_RAYS_USED = 0.3
"""At least this share of rays must find an edge (the rest run into the chest wall)."""
RECENTRE_PASSES = 2

Kind = Literal["solid", "ground-glass"]


@dataclass(frozen=True)
class NoduleMeasurement:
    diameter_mm: float
    kind: Kind
    blur_mm: float
    """The image's blur at the edge (Gaussian sigma), corrected for."""
    rays_used: float
    """Share of rays that found an edge."""
    ray_spread: float
    """Interquartile range of the edge distances over their median: low for a round
    nodule, high for an elongated or irregular density."""


def _directions(count: int) -> np.ndarray:
    """Near-uniform unit vectors (a Fibonacci sphere)."""
    i = np.arange(count) + 0.5
    polar = np.arccos(1 - 2 * i / count)
    azimuth = np.pi * (1 + 5**0.5) * i
    return np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1
    )


DIRECTIONS = _directions(RAY_COUNT)


def _profiles(cube: np.ndarray, seed: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """HU along every ray from ``seed`` (voxel coordinates) to the cube's edge: (rays, steps)."""
    reach = (min(cube.shape) / 2 - 1) * spacing
    radii = np.arange(0.0, reach, RAY_STEP_MM)
    points = seed[None, None, :] + DIRECTIONS[:, None, :] * radii[None, :, None] / spacing
    values = ndimage.map_coordinates(
        cube, points.reshape(-1, 3).T, order=1, mode="nearest"
    ).reshape(len(DIRECTIONS), len(radii))
    return radii, values


def _edges(radii: np.ndarray, values: np.ndarray, level: float) -> np.ndarray:
    """Per ray, the first radius where the profile falls below ``level`` (nan: never)."""
    below = values < level
    first = below.argmax(axis=1)
    found = below.any(axis=1)
    # Interpolate between the last sample above and the first below.
    prev = np.maximum(first - 1, 0)
    rows = np.arange(len(values))
    v0, v1 = values[rows, prev], values[rows, first]
    fraction = np.where(v0 > v1, (v0 - level) / np.maximum(v0 - v1, 1e-6), 0.0)
    edge = radii[prev] + fraction * (radii[first] - radii[prev])
    return np.where(found & (first > 0), edge, np.nan)


def _seed(cube: np.ndarray, spacing: float) -> np.ndarray:
    """The brightest smoothed point near the cube's centre (voxel coordinates)."""
    smooth = ndimage.uniform_filter(cube, size=max(3, round(3.0 / spacing)))
    centre = (np.array(cube.shape) - 1) / 2
    reach = int(np.ceil(SEED_SEARCH_MM / spacing))
    lo = np.maximum(np.floor(centre).astype(int) - reach, 0)
    hi = np.minimum(np.ceil(centre).astype(int) + reach + 1, cube.shape)
    window = smooth[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    grid = np.stack(
        np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij")
    )
    inside = (
        np.linalg.norm((grid - centre[:, None, None, None]) * spacing, axis=0) <= SEED_SEARCH_MM
    )
    best = np.unravel_index(np.argmax(np.where(inside, window, -np.inf)), window.shape)
    return lo + np.array(best, dtype=np.float64)


def _sphere_centre(points: np.ndarray, *, fallback: np.ndarray) -> np.ndarray:
    """Centre of the sphere through ``points`` (least squares, one trimmed refit).

    Unlike the points' mean, the fit is not pulled away from a side where no edge was
    found (a nodule against the chest wall).
    """
    keep = np.ones(len(points), dtype=bool)
    centre = fallback
    for _ in range(2):
        chosen = points[keep]
        if len(chosen) < 8:
            return fallback
        design = np.hstack([2 * chosen, np.ones((len(chosen), 1))])
        solution, *_ = np.linalg.lstsq(design, (chosen**2).sum(axis=1), rcond=None)
        centre = solution[:3]
        distance = np.linalg.norm(points - centre, axis=1)
        spread = np.median(np.abs(distance - np.median(distance))) + 1e-6
        keep = np.abs(distance - np.median(distance)) <= 3 * spread
    return centre


def _blur_mm(radii: np.ndarray, values: np.ndarray, *, background: float, contrast: float) -> float:
    """The image's blur (Gaussian sigma, mm) from how steeply the edge falls.

    From three quarters of the contrast down to half, a blurred step runs over
    0.674 sigma.  The inner half of the edge is used because spicules and vessels
    leave the nodule below half its contrast; the median over rays ignores the rest.
    """
    half = _edges(radii, values, background + contrast / 2)
    inner = _edges(radii, values, background + 3 * contrast / 4)
    run = half - inner
    run = run[~np.isnan(run)]
    return float(np.median(run)) / 0.674 if run.size else 0.0


def measure(
    cube_hu: np.ndarray, spacing_mm: float = MEASURE_SPACING_MM
) -> NoduleMeasurement | None:
    """Measure the nodule near the centre of ``cube_hu``; None when no edge can be found."""
    cube = np.asarray(cube_hu, dtype=np.float32)
    seed = _seed(cube, spacing_mm)
    radii, values = _profiles(cube, seed, spacing_mm)
    lung = values[values < LUNG_MAX_HU]
    if lung.size < values.size * 0.05:
        return None
    background = float(np.median(lung))
    peak = float(np.median(values[:, radii <= 1.5]))
    contrast = peak - background
    if contrast < MIN_CONTRAST_HU:
        return None
    solid = contrast >= SOLID_MIN_CONTRAST_HU
    for _ in range(RECENTRE_PASSES):
        level = background + contrast / 2
        edges = _edges(radii, values, level)
        if np.isnan(edges).all():
            return None
        ok = ~np.isnan(edges)
        boundary = seed + DIRECTIONS[ok] * edges[ok, None] / spacing_mm
        seed = _sphere_centre(boundary, fallback=seed)
        radii, values = _profiles(cube, seed, spacing_mm)
    core = _edges(radii, values, background + contrast / 2)
    used = float(np.mean(~np.isnan(core)))
    if used < MIN_RAYS_USED:
        return None
    radius = float(np.nanmedian(core))
    quartiles = np.nanpercentile(core, [25, 75])
    spread = float(quartiles[1] - quartiles[0]) / max(radius, 1e-6)
    blur = _blur_mm(radii, values, background=background, contrast=contrast)
    # A blurred sphere reaches half its contrast inside its surface, by about
    # blur^2 / radius (the surface's curvature); add it back.
    radius = radius + blur**2 / max(radius, blur)
    return NoduleMeasurement(
        diameter_mm=2 * radius,
        kind="solid" if solid else "ground-glass",
        blur_mm=blur,
        rays_used=used,
        ray_spread=spread,
    )


def measuring_spec(spec: PreprocessSpec) -> PreprocessSpec:
    """``spec`` with the measuring cube as its patch (for ``extract_patch``)."""
    return dataclasses.replace(spec, patch_shape=MEASURE_SHAPE, patch_spacing_mm=MEASURE_SPACING_MM)


def nodule_diameter(
    refiner_mm: float, cube_hu: np.ndarray | None, *, head_mm: float
) -> tuple[float, str]:
    """The diameter a draft states and where it comes from ("measured" or "refiner").

    The measurement is taken only where it is plausibly a nodule's: at least
    ``MIN_MEASURED_MM``, round (``MAX_RAY_SPREAD``; a false candidate on consolidation,
    atelectasis or a vessel branching is not), and within ``MAX_MEASURED_RATIO`` of the
    larger of the network's two readings (the detection head's and the refiner's).
    Otherwise the refiner's reading stands, as before measurement existed, so a false
    candidate is never stated larger than the network saw it.
    """
    if cube_hu is not None:
        measured = measure(cube_hu, MEASURE_SPACING_MM)
        if (
            measured is not None
            and measured.diameter_mm >= MIN_MEASURED_MM
            and measured.ray_spread <= MAX_RAY_SPREAD
            and measured.diameter_mm <= MAX_MEASURED_RATIO * max(head_mm, refiner_mm)
        ):
            return measured.diameter_mm, "measured"
    return refiner_mm, "refiner"
