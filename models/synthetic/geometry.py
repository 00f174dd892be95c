"""Scan geometry: the output image grid, its DICOM positions, and the render grid behind it.

Volumes are generated in a canonical orientation: array ``[k, j, i]`` with
slices ascending in z (feet to head), rows from anterior to posterior and
columns from the patient's right to left, which is how a head-first-supine
axial series is displayed.  Feet-first series are mirrored when written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.synthetic.canvas import FloatArray, Grid

RENDER_TARGET_MM = 1.15  # render no finer than this in-plane; upsample to the output
HEAD_FIRST_SUPINE = "HFS"
FEET_FIRST_SUPINE = "FFS"


@dataclass(frozen=True)
class ScanGeometry:
    rows: int
    cols: int
    pixel_spacing: float  # mm, square pixels
    slice_thickness: float
    slice_spacing: float
    n_slices: int
    fov_centre: tuple[float, float]  # anatomical (x, y) of the image centre
    z_first: float  # anatomical z of the lowest slice
    patient_offset: tuple[float, float, float]  # added to anatomical mm to get DICOM patient mm
    patient_position: str = HEAD_FIRST_SUPINE

    def __post_init__(self) -> None:
        if self.rows < 16 or self.cols < 16:
            raise ValueError(f"matrix {self.rows}x{self.cols} is too small (minimum 16)")
        if self.n_slices < 2:
            raise ValueError("a series needs at least 2 slices")
        if not (self.pixel_spacing > 0 and self.slice_thickness > 0 and self.slice_spacing > 0):
            raise ValueError("spacings and thickness must be positive")
        if self.patient_position not in (HEAD_FIRST_SUPINE, FEET_FIRST_SUPINE):
            raise ValueError(f"unsupported patient position {self.patient_position!r}")

    @property
    def fov_mm(self) -> float:
        return self.cols * self.pixel_spacing

    @property
    def z_last(self) -> float:
        return self.z_first + (self.n_slices - 1) * self.slice_spacing

    def output_grid(self) -> Grid:
        ps = self.pixel_spacing
        x0 = self.fov_centre[0] - ps * (self.cols - 1) / 2
        y0 = self.fov_centre[1] - ps * (self.rows - 1) / 2
        return Grid(
            shape=(self.n_slices, self.rows, self.cols),
            origin=(x0, y0, self.z_first),
            spacing=(ps, ps, self.slice_spacing),
        )

    # --------------------------------------------------------------- render
    @property
    def render_factor(self) -> int:
        return max(1, math.ceil(RENDER_TARGET_MM / self.pixel_spacing - 1e-6))

    def render_grid(self) -> Grid:
        f = self.render_factor
        out = self.output_grid()
        ps = self.pixel_spacing * f
        dz = max(self.slice_thickness / 2, ps)
        lo = self.z_first - self.slice_thickness / 2 - dz
        hi = self.z_last + self.slice_thickness / 2 + dz
        nz = math.ceil((hi - lo) / dz) + 1
        return Grid(
            shape=(nz, math.ceil(self.rows / f), math.ceil(self.cols / f)),
            origin=(
                out.origin[0] + (f - 1) * self.pixel_spacing / 2,
                out.origin[1] + (f - 1) * self.pixel_spacing / 2,
                lo,
            ),
            spacing=(ps, ps, dz),
        )

    def slice_weights(self, render: Grid) -> list[tuple[npt.NDArray[np.intp], FloatArray]]:
        """For each output slice, render-slice indices and weights (slab of slice_thickness)."""
        dz = render.spacing[2]
        m = max(4, math.ceil(2 * self.slice_thickness / dz))
        offsets = (np.arange(m) + 0.5) / m * self.slice_thickness - self.slice_thickness / 2
        out: list[tuple[npt.NDArray[np.intp], FloatArray]] = []
        for k in range(self.n_slices):
            z = self.z_first + k * self.slice_spacing + offsets
            u = np.clip((z - render.origin[2]) / dz, 0, render.shape[0] - 1)
            i0 = np.floor(u).astype(np.intp)
            i1 = np.minimum(i0 + 1, render.shape[0] - 1)
            w = u - i0
            weights = np.zeros(render.shape[0], dtype=np.float64)
            np.add.at(weights, i0, (1 - w) / m)
            np.add.at(weights, i1, w / m)
            nz = np.nonzero(weights > 1e-9)[0]
            out.append((nz, weights[nz].astype(np.float32)))
        return out

    def nearest_render_slice(self, render: Grid) -> npt.NDArray[np.intp]:
        z = self.z_first + np.arange(self.n_slices) * self.slice_spacing
        return np.clip(
            np.rint((z - render.origin[2]) / render.spacing[2]), 0, render.shape[0] - 1
        ).astype(np.intp)

    def upsample_axes(self, render: Grid) -> tuple[_Interp, _Interp]:
        f = self.render_factor
        return _Interp.make(self.rows, f, render.shape[1]), _Interp.make(
            self.cols, f, render.shape[2]
        )

    # ---------------------------------------------------------------- DICOM
    def slice_z_patient(self, k: int) -> float:
        return self.z_first + k * self.slice_spacing + self.patient_offset[2]

    def image_orientation(self) -> list[float]:
        if self.patient_position == FEET_FIRST_SUPINE:
            return [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        return [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]

    def image_position(self, k: int) -> list[float]:
        """Patient-space position of the first transmitted pixel of canonical slice k."""
        g = self.output_grid()
        x_first = (
            g.origin[0]
            if self.patient_position == HEAD_FIRST_SUPINE
            else g.origin[0] + (self.cols - 1) * self.pixel_spacing
        )
        return [
            round(x_first + self.patient_offset[0], 4),
            round(g.origin[1] + self.patient_offset[1], 4),
            round(self.slice_z_patient(k), 4),
        ]

    def anatomical_to_patient(self, point: tuple[float, float, float] | FloatArray) -> list[float]:
        return [float(point[i]) + self.patient_offset[i] for i in range(3)]

    def voxel_of(self, point: tuple[float, float, float] | FloatArray) -> tuple[int, int, int]:
        """Canonical (slice, row, column) index of an anatomical point."""
        g = self.output_grid()
        k, j, i = g.index_of(point)
        return int(k), int(j), int(i)

    def nifti_affine(self) -> FloatArray:
        """RAS affine of the canonical volume stored as data[i, j, k] (columns, rows, slices)."""
        g = self.output_grid()
        ps, dz = self.pixel_spacing, self.slice_spacing
        ox, oy, oz = (g.origin[i] + self.patient_offset[i] for i in range(3))
        return np.array(
            [[-ps, 0, 0, -ox], [0, -ps, 0, -oy], [0, 0, dz, oz], [0, 0, 0, 1]], dtype=np.float64
        ).astype(np.float32)


@dataclass(frozen=True)
class _Interp:
    """Linear interpolation indices from a render axis to an output axis."""

    i0: npt.NDArray[np.intp]
    i1: npt.NDArray[np.intp]
    w: FloatArray
    nearest: npt.NDArray[np.intp]
    factor: int

    @classmethod
    def make(cls, n_out: int, factor: int, n_render: int) -> _Interp:
        u = (np.arange(n_out) - (factor - 1) / 2) / factor
        u = np.clip(u, 0, n_render - 1)
        i0 = np.floor(u).astype(np.intp)
        i1 = np.minimum(i0 + 1, n_render - 1)
        return cls(
            i0,
            i1,
            (u - i0).astype(np.float32),
            np.clip(np.rint(u), 0, n_render - 1).astype(np.intp),
            factor,
        )


def _double(image: FloatArray, axis: int, n_out: int) -> FloatArray:
    """Linear upsampling by exactly two along one axis (pixel centres, edge-clamped)."""
    a = np.moveaxis(image, axis, 0)
    prev = np.concatenate([a[:1], a[:-1]])
    nxt = np.concatenate([a[1:], a[-1:]])
    out = np.empty((2 * a.shape[0], *a.shape[1:]), dtype=np.float32)
    out[0::2] = 0.75 * a + 0.25 * prev
    out[1::2] = 0.75 * a + 0.25 * nxt
    return np.moveaxis(out[:n_out], 0, axis)


def upsample_slice(image: FloatArray, rows: _Interp, cols: _Interp) -> FloatArray:
    """Bilinear upsampling of one render slice to the output matrix."""
    if rows.factor == 2 and cols.factor == 2:
        return np.ascontiguousarray(_double(_double(image, 0, len(rows.i0)), 1, len(cols.i0)))
    if (
        len(rows.i0) == image.shape[0]
        and len(cols.i0) == image.shape[1]
        and not rows.w.any()
        and not cols.w.any()
    ):
        return image
    tmp = image[:, cols.i0] * (1 - cols.w) + image[:, cols.i1] * cols.w
    out = tmp[rows.i0] * (1 - rows.w)[:, None] + tmp[rows.i1] * rows.w[:, None]
    return out.astype(np.float32, copy=False)
