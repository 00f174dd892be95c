"""Series or NIfTI to the model's input: one module shared by training and inference.

``PreprocessSpec`` is the input contract; every checkpoint stores it, and
``preprocess`` is the only way images reach the network, so training and
inference cannot drift apart.

Steps (timed separately in ``PreparedImage.timings``):

1. load: DICOM (``models.dicom_loader``: series chosen, bad input refused,
   slices decoded in parallel) or NIfTI (``models.nifti_loader``) into a
   ``SliceStack`` of int16 HU with per-slice origins;
2. anti-alias: average-pool the stack by whole factors towards the grid spacing
   (in-plane always, through-plane when the slices are evenly spaced), then a
   Gaussian for the resolution still finer than the grid (``band_limit``);
3. place: centre the grid on the body in plane and on the lungs head to foot;
4. resample: one trilinear ``grid_sample`` onto the fixed RAS grid.  Each grid
   point is mapped into the stack with the *per-slice* origins, so a tilted gantry
   (origins not on the slice normal) and mixed slice spacing land correctly;
5. window: clip HU to ``hu_window`` and scale to [-1, 1];
6. quality: noise, lung coverage and truncation, metal, slice spacing.

``extract_patch`` cuts full-resolution cubes (``patch_spacing_mm``) around nodule
candidates from the native stack, for millimetre measurements.

MONAI's ``LoadImage`` + ``Spacing`` + ``Orientation`` would do steps 1-4 for a
regular stack, but its DICOM reader is about 3x slower than parallel pydicom here
and it cannot express a tilted stack as per-slice origins, so the steps are
written with NumPy/torch.  The GPU box has no MONAI; this module needs none.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from models.dicom_loader import load_dicom_series
from models.errors import NoImagesError
from models.nifti_loader import is_nifti, load_nifti
from models.volume import LPS_TO_RAS, GridGeometry, SliceStack, in_plane_pool_factors

SPEC_VERSION = 1
BODY_HU = -500.0
"""Voxels above this are body (or table); air and lungs are below."""
LUNG_HU_RANGE = (-1000.0, -400.0)
"""Air-filled voxels enclosed by the body count as lung (trachea and bowel gas included)."""
SOFT_TISSUE_HU_RANGE = (-100.0, 150.0)
METAL_HU = 2500.0
LUNG_SLICE_MIN_FRACTION = 0.02
"""A slice holds lung when this fraction of its in-body voxels is lung."""
NORMAL_LUNG_VOLUME_L = 5.0
QUALITY_SLICES = 9
"""Native slices sampled (evenly) for noise and metal estimates."""
OUTSIDE_FILL_HU = -1000.0
"""Grid voxels outside the scanned volume are filled with air (and flagged in quality)."""
CENTRE_SAMPLE_STRIDE = 2
CENTRE_MAX_SLICES = 96
"""Body and lungs are found on at most this many slices (every n-th of a long stack)."""


@dataclass(frozen=True)
class PreprocessSpec:
    """The input contract of a checkpoint (saved in its JSON sidecar).

    Grid axes are (R, A, S): ``grid_shape[0]`` voxels run towards patient Right.
    The default grid is 160 x 160 x 128 voxels of 2.25 x 2.25 x 2.5 mm, i.e.
    360 x 360 x 320 mm: a whole adult thorax.
    """

    version: int = SPEC_VERSION
    grid_shape: tuple[int, int, int] = (160, 160, 128)
    grid_spacing_mm: tuple[float, float, float] = (2.25, 2.25, 2.5)
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    patch_shape: tuple[int, int, int] = (48, 48, 48)
    patch_spacing_mm: float = 0.75
    min_slices: int = 20
    min_coverage_mm: float = 100.0
    decode_workers: int = 2
    antialias: bool = True
    band_limit: float = 0.75
    """Gaussian pre-filter before resampling, as a share of the resolution a fine stack has
    beyond the grid (0 turns it off).  0.75 brings the noise of 1.56 mm and 0.78 mm stacks
    on the grid to within about 10 % of training's renders (session 4 measurement)."""

    def __post_init__(self) -> None:
        if len(self.grid_shape) != 3 or min(self.grid_shape) < 8:
            raise ValueError("grid_shape needs three sizes of at least 8")
        if min(self.grid_spacing_mm) <= 0 or self.patch_spacing_mm <= 0:
            raise ValueError("spacings must be positive")
        if self.hu_window[0] >= self.hu_window[1]:
            raise ValueError("hu_window must be (low, high) with low < high")

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        return (
            self.grid_shape[0] * self.grid_spacing_mm[0],
            self.grid_shape[1] * self.grid_spacing_mm[1],
            self.grid_shape[2] * self.grid_spacing_mm[2],
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreprocessSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("grid_shape", "grid_spacing_mm", "hu_window", "patch_shape"):
            if key in known:
                known[key] = tuple(known[key])
        spec = cls(**known)
        if spec.version != SPEC_VERSION:
            raise ValueError(f"preprocessing spec version {spec.version} is not {SPEC_VERSION}")
        return spec


IMAGE_QUALITY_FEATURES = (
    "noise",
    "lung_volume",
    "lung_truncated",
    "grid_coverage",
    "metal",
    "slice_spacing",
)
"""Order of ``ImageQuality.to_vector()``; each feature is scaled to about [0, 1]."""


@dataclass(frozen=True)
class ImageQuality:
    """Image quality estimates that feed the modality gate (and are shown to users)."""

    noise_hu: float
    lung_volume_l: float
    lung_truncated: float
    """Fraction of lung area in the first and last slice: 0 when the lungs are whole."""
    grid_coverage: float
    """Fraction of the lung voxels that fall inside the model's grid."""
    metal_fraction: float
    slice_spacing_mm: float

    def to_vector(self) -> list[float]:
        return [
            min(self.noise_hu / 100.0, 2.0),
            min(self.lung_volume_l / NORMAL_LUNG_VOLUME_L, 2.0),
            min(self.lung_truncated, 1.0),
            self.grid_coverage,
            min(self.metal_fraction * 100.0, 1.0),
            min(self.slice_spacing_mm / 10.0, 2.0),
        ]

    def to_json(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


@dataclass
class PreparedImage:
    """The model's image input plus what inference needs to explain it."""

    image: torch.Tensor
    """(1, X, Y, Z) float32 in [-1, 1] on the RAS grid."""
    grid: GridGeometry
    quality: ImageQuality
    stack: SliceStack
    spec: PreprocessSpec
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return self.stack.warnings


def load_stack(path: Path, spec: PreprocessSpec) -> SliceStack:
    """A DICOM folder (or file's folder) or a NIfTI file to a ``SliceStack``."""
    path = Path(path)
    if is_nifti(path):
        return load_nifti(path, min_slices=spec.min_slices, min_coverage_mm=spec.min_coverage_mm)
    if path.is_file():
        path = path.parent
    if not path.is_dir():
        raise NoImagesError(f"{path} is neither a folder of DICOM files nor a NIfTI file")
    return load_dicom_series(
        path,
        min_slices=spec.min_slices,
        min_coverage_mm=spec.min_coverage_mm,
        workers=spec.decode_workers,
        preview_spacing_mm=min(spec.grid_spacing_mm[:2]) if spec.antialias else None,
    )


@dataclass(frozen=True)
class _Pooled:
    """An average-pooled copy of a stack; pooled index i covers source i*f .. i*f+f-1."""

    volume: torch.Tensor  # (slices, rows, columns) float32 HU
    factors: tuple[int, int, int]
    slab_start: int = 0


def _pool_factors(stack: SliceStack, spec: PreprocessSpec) -> tuple[int, int, int]:
    if not spec.antialias:
        return (1, 1, 1)
    fr, fc = in_plane_pool_factors(stack.pixel_spacing_mm, min(spec.grid_spacing_mm[:2]))
    gaps = np.diff(stack.slice_offsets_mm)
    fz = 1
    if len(gaps) and np.ptp(gaps) <= 0.05 * float(np.median(gaps)):
        fz = max(1, math.floor(spec.grid_spacing_mm[2] / float(np.median(gaps)) + 1e-6))
        fz = min(fz, max(1, stack.shape[0] // 2))
    return (fz, fr, fc)


POOL_CHUNK_SLICES = 32


def _pool(stack: SliceStack, factors: tuple[int, int, int]) -> _Pooled:
    """Average-pool in chunks so only a few slices are ever held as float32."""
    fz, fr, fc = factors
    source = torch.from_numpy(stack.pixels)
    if factors == (1, 1, 1):
        return _Pooled(volume=source.float(), factors=factors)
    if stack.preview is not None and stack.preview_factors == (fr, fc):
        preview = torch.from_numpy(stack.preview)  # pooled in plane while decoding
        if fz == 1:
            return _Pooled(volume=preview, factors=factors)
        n = (stack.shape[0] // fz) * fz
        volume = F.avg_pool3d(preview[None, None, :n], kernel_size=(fz, 1, 1))[0, 0]
        return _Pooled(volume=volume, factors=factors)
    n = (stack.shape[0] // fz) * fz
    chunk = max(fz, (POOL_CHUNK_SLICES // fz) * fz)
    parts = []
    for start in range(0, n, chunk):
        block = source[start : min(start + chunk, n)].float()[None, None]
        parts.append(F.avg_pool3d(block, kernel_size=(fz, fr, fc), stride=(fz, fr, fc))[0, 0])
    return _Pooled(volume=torch.cat(parts), factors=factors)


MIN_BAND_LIMIT_SIGMA = 0.2
"""Below this (in voxels of the pooled stack) an axis is left as it is: the kernel would be
almost a delta (a 512 matrix pooled by 3 to 2.2 mm asks for 0.12), and the time is not."""


def _band_limit(stack: SliceStack, pooled: _Pooled, spec: PreprocessSpec) -> _Pooled:
    """Gaussian pre-filter along each axis whose pooled spacing is finer than the grid's.

    Pooling by whole factors and trilinear sampling leave the noise of a fine stack
    (say 1.56 mm onto 2.25 mm) about three times that of a stack acquired near the grid
    spacing, which is what training renders.  The filter's sigma is ``spec.band_limit``
    times the resolution missing on that axis, sqrt(grid^2 - source^2) in mm.
    """
    fz, fr, fc = pooled.factors
    gaps = np.diff(stack.slice_offsets_mm)
    source = (
        float(np.median(gaps)) * fz if len(gaps) else spec.grid_spacing_mm[2],
        stack.pixel_spacing_mm[0] * fr,
        stack.pixel_spacing_mm[1] * fc,
    )
    in_plane = min(spec.grid_spacing_mm[:2])
    target = (spec.grid_spacing_mm[2], in_plane, in_plane)
    sigmas = [
        spec.band_limit * math.sqrt(max(t * t - s * s, 0.0)) / s
        for s, t in zip(source, target, strict=True)
    ]
    if max(sigmas) < MIN_BAND_LIMIT_SIGMA:
        return pooled
    volume = pooled.volume.numpy()  # may be the stack's own preview: the first pass copies
    for axis, sigma in enumerate(sigmas):
        if sigma >= MIN_BAND_LIMIT_SIGMA:
            volume = ndimage.gaussian_filter1d(
                volume, sigma, axis=axis, mode="nearest", truncate=3.0
            )
    return _Pooled(
        volume=torch.from_numpy(volume), factors=pooled.factors, slab_start=pooled.slab_start
    )


def _stack_points_lps(stack: SliceStack, k: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """World (LPS) coordinates of fractional source indices (vectorised)."""
    n = stack.shape[0]
    kk = np.clip(k, 0, n - 1)
    lo = np.clip(np.floor(kk).astype(int), 0, max(n - 2, 0))
    t = (kk - lo)[:, None]
    hi = np.minimum(lo + 1, n - 1)
    origins = stack.origins_lps[lo] * (1 - t) + stack.origins_lps[hi] * t
    return (
        origins
        + (c * stack.pixel_spacing_mm[1])[:, None] * stack.row_direction[None, :]
        + (r * stack.pixel_spacing_mm[0])[:, None] * stack.column_direction[None, :]
    )


@dataclass(frozen=True)
class _Anatomy:
    centre_ras: np.ndarray
    lung_points_ras: np.ndarray
    lung_volume_l: float
    lung_truncated: float


def _find_anatomy(stack: SliceStack, pooled: _Pooled, spec: PreprocessSpec) -> _Anatomy:
    """Body and lungs from a coarse copy: where to centre the grid, and lung coverage."""
    s = CENTRE_SAMPLE_STRIDE
    zs = max(1, math.ceil(pooled.volume.shape[0] / CENTRE_MAX_SLICES))
    coarse = pooled.volume[::zs, ::s, ::s].numpy()
    fz, fr, fc = pooled.factors
    fz *= zs  # one coarse slice now stands for zs pooled slices
    body = coarse > BODY_HU
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    filled = ndimage.binary_fill_holes(body, structure=in_plane)
    lungs = filled & ~body & (coarse >= LUNG_HU_RANGE[0]) & (coarse <= LUNG_HU_RANGE[1])
    per_slice_body = np.maximum(filled.sum(axis=(1, 2)), 1)
    lung_slices = lungs.sum(axis=(1, 2)) / per_slice_body >= LUNG_SLICE_MIN_FRACTION
    lungs &= lung_slices[:, None, None]

    def to_source(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = idx[:, 0] * fz + (pooled.factors[0] - 1) / 2  # centre of the pooled slice kept
        r = idx[:, 1] * s * fr + (fr - 1) / 2  # centre of the pooled pixel kept
        c = idx[:, 2] * s * fc + (fc - 1) / 2
        return k, r, c

    rng = np.random.default_rng(0)
    body_idx = np.argwhere(filled)
    if len(body_idx) == 0:
        corner_k = np.array([0.0, stack.shape[0] - 1.0])
        pts = _stack_points_lps(
            stack, corner_k, np.array([stack.shape[1] / 2] * 2), np.array([stack.shape[2] / 2] * 2)
        )
        centre = pts.mean(axis=0) * LPS_TO_RAS
        return _Anatomy(centre, np.zeros((0, 3)), 0.0, 0.0)
    if len(body_idx) > 20000:
        body_idx = body_idx[rng.choice(len(body_idx), 20000, replace=False)]
    body_ras = _stack_points_lps(stack, *to_source(body_idx)) * LPS_TO_RAS
    centre = (body_ras.min(axis=0) + body_ras.max(axis=0)) / 2
    lung_idx = np.argwhere(lungs)
    voxel_ml = (
        fz
        * float(np.median(np.diff(stack.slice_offsets_mm)))
        * s
        * fr
        * stack.pixel_spacing_mm[0]
        * s
        * fc
        * stack.pixel_spacing_mm[1]
    ) / 1000.0
    lung_volume = len(lung_idx) * voxel_ml / 1000.0
    truncated = 0.0
    lung_ras = np.zeros((0, 3))
    if len(lung_idx):
        per_slice = lungs.sum(axis=(1, 2)).astype(np.float64)
        truncated = float(max(per_slice[0], per_slice[-1]) / max(per_slice.max(), 1.0))
        if len(lung_idx) > 20000:
            lung_idx = lung_idx[rng.choice(len(lung_idx), 20000, replace=False)]
        lung_ras = _stack_points_lps(stack, *to_source(lung_idx)) * LPS_TO_RAS
        lz = (lung_ras[:, 2].min() + lung_ras[:, 2].max()) / 2
        body_z = (body_ras[:, 2].min(), body_ras[:, 2].max())
        half = spec.extent_mm[2] / 2
        if body_z[1] - body_z[0] <= 2 * half:
            centre[2] = (body_z[0] + body_z[1]) / 2
        else:  # a long scan: centre on the lungs, but keep the grid inside the scan
            centre[2] = float(np.clip(lz, body_z[0] + half, body_z[1] - half))
    return _Anatomy(centre, lung_ras, lung_volume, truncated)


AXIS_ALIGNED_TOLERANCE = 1e-4


def _is_axis_aligned(stack: SliceStack) -> bool:
    """Rows along +-x, columns along +-y, slices stacked straight along z (no tilt)."""
    row, col = np.abs(stack.row_direction), np.abs(stack.column_direction)
    in_plane = stack.origins_lps[:, :2]
    return bool(
        abs(row[0] - 1) < AXIS_ALIGNED_TOLERANCE
        and abs(col[1] - 1) < AXIS_ALIGNED_TOLERANCE
        and np.ptp(in_plane, axis=0).max() < 1e-3
    )


def _lerp_along(volume: torch.Tensor, dim: int, positions: np.ndarray) -> torch.Tensor:
    """Linear interpolation of ``volume`` along ``dim`` at fractional indices.

    A neighbour outside [0, size - 1] (or a NaN position) contributes nothing, which
    is what ``grid_sample(padding_mode="zeros", align_corners=True)`` does.
    """
    size = volume.shape[dim]
    positions = np.where(np.isfinite(positions), positions, -(size + 2.0))  # NaN: outside
    lo = np.floor(positions).astype(np.int64)
    frac = positions - lo
    w_lo = np.where((lo >= 0) & (lo < size), 1.0 - frac, 0.0)
    w_hi = np.where((lo + 1 >= 0) & (lo + 1 < size), frac, 0.0)
    shape = [1] * volume.dim()
    shape[dim] = len(positions)

    def gather(index: np.ndarray, weight: np.ndarray) -> torch.Tensor:
        picked = volume.index_select(dim, torch.from_numpy(np.clip(index, 0, size - 1)))
        return picked * torch.from_numpy(weight.astype(np.float32)).reshape(shape)

    return gather(lo, w_lo).add_(gather(lo + 1, w_hi))


def _sample_axis_aligned(
    stack: SliceStack, pooled: _Pooled, grid: GridGeometry, *, fill_hu: float
) -> torch.Tensor:
    """Trilinear sampling as three 1D interpolations (exact for untilted stacks)."""
    xs, ys, zs = grid.axis_points_lps()
    fz, fr, fc = pooled.factors
    origin = stack.origins_lps[0]
    u = (xs - origin[0]) * np.sign(stack.row_direction[0]) / stack.pixel_spacing_mm[1]
    v = (ys - origin[1]) * np.sign(stack.column_direction[1]) / stack.pixel_spacing_mm[0]
    offsets = stack.slice_offsets_mm
    d = zs * np.sign(stack.normal[2])
    k = np.interp(d, offsets, np.arange(len(offsets), dtype=np.float64))
    first_gap, last_gap = offsets[1] - offsets[0], offsets[-1] - offsets[-2]
    k[(d < offsets[0] - first_gap / 2) | (d > offsets[-1] + last_gap / 2)] = np.nan
    source = pooled.volume - fill_hu  # axes (slice, row, column)
    # slices -> Z first (the axis that shrinks most), then rows -> Y, then columns -> X
    step = _lerp_along(source, 0, (k - pooled.slab_start - (fz - 1) / 2) / fz)
    step = _lerp_along(step, 1, (v - (fr - 1) / 2) / fr)
    step = _lerp_along(step, 2, (u - (fc - 1) / 2) / fc)  # axes (Z, Y, X)
    return step.add_(fill_hu).permute(2, 1, 0)  # a view with axes (X, Y, Z)


def sample_stack(
    stack: SliceStack,
    pooled: _Pooled,
    grid: GridGeometry,
    *,
    fill_hu: float = OUTSIDE_FILL_HU,
) -> torch.Tensor:
    """Trilinear sample of the (pooled) stack at every grid point: (X, Y, Z) HU.

    Grid point p (LPS) goes to fractional slice k from its offset along the normal
    (piecewise linear over the sorted slice offsets, so uneven spacing is exact),
    then to (row, column) relative to the origin interpolated at k, so sheared
    stacks (gantry tilt) are placed where the scanner put each slice.
    """
    if _is_axis_aligned(stack):
        return _sample_axis_aligned(stack, pooled, grid, fill_hu=fill_hu)
    return _sample_general(stack, pooled, grid, fill_hu=fill_hu)


def _sample_general(
    stack: SliceStack, pooled: _Pooled, grid: GridGeometry, *, fill_hu: float
) -> torch.Tensor:
    xs, ys, zs = (torch.from_numpy(a).float() for a in grid.axis_points_lps())
    normal = torch.from_numpy(stack.normal).float()
    row_dir = torch.from_numpy(stack.row_direction).float()
    col_dir = torch.from_numpy(stack.column_direction).float()
    offsets = torch.from_numpy(stack.slice_offsets_mm).float()
    origins = torch.from_numpy(stack.origins_lps).float()
    n = len(offsets)
    # axes of every tensor below: (x=R, y=A, z=S) of the grid
    px, py, pz = xs[:, None, None], ys[None, :, None], zs[None, None, :]
    d = px * normal[0] + py * normal[1] + pz * normal[2]
    hi = torch.searchsorted(offsets, d.contiguous()).clamp(1, n - 1)
    lo = hi - 1
    t = ((d - offsets[lo]) / (offsets[hi] - offsets[lo])).clamp(0.0, 1.0)
    k = lo.float() + t
    first_gap, last_gap = offsets[1] - offsets[0], offsets[-1] - offsets[-2]
    inside = (d >= offsets[0] - first_gap / 2) & (d <= offsets[-1] + last_gap / 2)
    rel = []
    for axis, p in enumerate((px, py, pz)):
        o = origins[lo, axis] * (1 - t) + origins[hi, axis] * t
        rel.append(p - o)
    u = (rel[0] * row_dir[0] + rel[1] * row_dir[1] + rel[2] * row_dir[2]) / stack.pixel_spacing_mm[
        1
    ]
    v = (rel[0] * col_dir[0] + rel[1] * col_dir[1] + rel[2] * col_dir[2]) / stack.pixel_spacing_mm[
        0
    ]
    fz, fr, fc = pooled.factors
    depth, height, width = pooled.volume.shape
    kp = (k - pooled.slab_start - (fz - 1) / 2) / fz
    vp = (v - (fr - 1) / 2) / fr
    up = (u - (fc - 1) / 2) / fc

    def normalise(index: torch.Tensor, size: int) -> torch.Tensor:
        return index * (2.0 / max(size - 1, 1)) - 1.0

    sample_grid = torch.stack(
        (normalise(up, width), normalise(vp, height), normalise(kp, depth)), dim=-1
    )
    sample_grid = torch.where(inside[..., None], sample_grid, torch.full_like(sample_grid, 3.0))
    source = (pooled.volume - fill_hu)[None, None]
    if depth == 1:  # grid_sample needs two planes to interpolate between
        source = source.expand(1, 1, 2, height, width)
    out = F.grid_sample(
        source, sample_grid[None], mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return out[0, 0] + fill_hu


def window(hu: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """Clip to the HU window and scale to [-1, 1] (a new tensor, ``hu`` is kept)."""
    low, high = spec.hu_window
    return hu.clamp(low, high).sub_(low).mul_(2.0 / (high - low)).sub_(1.0)


def unwindow(values: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """:func:`window`'s inverse: model input in [-1, 1] back to HU (clipped to the window)."""
    low, high = spec.hu_window
    return (np.asarray(values, dtype=np.float32) + 1.0) * ((high - low) / 2.0) + low


def _noise_and_metal(stack: SliceStack) -> tuple[float, float]:
    picks = np.unique(np.linspace(0, stack.shape[0] - 1, QUALITY_SLICES).round().astype(int))
    slices = stack.pixels[picks].astype(np.float32)
    tissue = (slices >= SOFT_TISSUE_HU_RANGE[0]) & (slices <= SOFT_TISSUE_HU_RANGE[1])
    both = tissue[:, :, 1:] & tissue[:, :, :-1]
    diffs = (slices[:, :, 1:] - slices[:, :, :-1])[both]
    # The spread of neighbour differences in soft tissue: noise * sqrt(2) for white noise.
    noise = float(1.4826 * np.median(np.abs(diffs)) / math.sqrt(2)) if diffs.size else 0.0
    body = slices > BODY_HU
    metal = float((slices > METAL_HU).sum() / max(int(body.sum()), 1))
    return noise, metal


def estimate_quality(stack: SliceStack, anatomy: _Anatomy, grid: GridGeometry) -> ImageQuality:
    noise, metal = _noise_and_metal(stack)
    coverage = 0.0
    if len(anatomy.lung_points_ras):
        index = grid.ras_to_voxel(anatomy.lung_points_ras)
        within = np.all((index >= -0.5) & (index <= np.array(grid.shape) - 0.5), axis=1)
        coverage = float(within.mean())
    gaps = np.diff(stack.slice_offsets_mm)
    return ImageQuality(
        noise_hu=noise,
        lung_volume_l=anatomy.lung_volume_l,
        lung_truncated=anatomy.lung_truncated,
        grid_coverage=coverage,
        metal_fraction=metal,
        slice_spacing_mm=float(np.median(gaps)) if len(gaps) else 0.0,
    )


def prepare_stack(stack: SliceStack, spec: PreprocessSpec) -> PreparedImage:
    """Steps 2-6 for an already loaded stack (training can cache stacks)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    pooled = _pool(stack, _pool_factors(stack, spec))
    if spec.antialias and spec.band_limit > 0:
        pooled = _band_limit(stack, pooled, spec)
    anatomy = _find_anatomy(stack, pooled, spec)
    grid = GridGeometry.centred(
        shape=spec.grid_shape, spacing_mm=spec.grid_spacing_mm, centre_ras=anatomy.centre_ras
    )
    timings["place_s"] = time.perf_counter() - start
    start = time.perf_counter()
    image = window(sample_stack(stack, pooled, grid), spec)[None].contiguous()
    timings["resample_s"] = time.perf_counter() - start
    start = time.perf_counter()
    quality = estimate_quality(stack, anatomy, grid)
    timings["quality_s"] = time.perf_counter() - start
    return PreparedImage(
        image=image, grid=grid, quality=quality, stack=stack, spec=spec, timings=timings
    )


def preprocess(path: Path, spec: PreprocessSpec | None = None) -> PreparedImage:
    """A study folder, series folder or NIfTI file to the model's image input."""
    spec = spec or PreprocessSpec()
    start = time.perf_counter()
    stack = load_stack(Path(path), spec)
    load_s = time.perf_counter() - start
    prepared = prepare_stack(stack, spec)
    prepared.timings = {"load_s": load_s, **prepared.timings}
    prepared.timings["total_s"] = time.perf_counter() - start
    return prepared


def extract_patch(
    prepared: PreparedImage, centre_ras: np.ndarray, *, spec: PreprocessSpec | None = None
) -> torch.Tensor:
    """A full-resolution cube (1, X, Y, Z) in [-1, 1] around a RAS point (nodule candidate).

    Sampled from the native stack at ``patch_spacing_mm`` with no anti-alias pooling,
    so a 6 mm nodule spans 8 voxels at the default 0.75 mm.
    """
    spec = spec or prepared.spec
    grid = GridGeometry.centred(
        shape=spec.patch_shape,
        spacing_mm=(spec.patch_spacing_mm,) * 3,
        centre_ras=np.asarray(centre_ras, dtype=np.float64),
    )
    stack = prepared.stack
    # Only the slab of slices the cube can touch is converted to float.
    half_diag = float(np.linalg.norm(grid.extent_mm)) / 2
    centre_offset = float((np.asarray(centre_ras) * LPS_TO_RAS) @ stack.normal)
    offsets = stack.slice_offsets_mm
    lo = max(int(np.searchsorted(offsets, centre_offset - half_diag)) - 1, 0)
    hi = min(int(np.searchsorted(offsets, centre_offset + half_diag)) + 1, stack.shape[0])
    if hi - lo < 2:
        lo, hi = max(0, min(lo, stack.shape[0] - 2)), min(stack.shape[0], max(hi, lo + 2))
    slab = _Pooled(
        volume=torch.from_numpy(stack.pixels[lo:hi]).float(), factors=(1, 1, 1), slab_start=lo
    )
    return window(sample_stack(stack, slab, grid), spec)[None].contiguous()
