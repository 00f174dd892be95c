"""Geometry types shared by the loaders and the resampler.

A ``SliceStack`` is what every scanner file turns into: parallel 2D slices, each with
its own origin in patient space (DICOM LPS millimetres).  Per-slice origins are what
make a tilted gantry (origins that do not move along the slice normal) and mixed
slice spacing come out right: the resampler never assumes a regular stack.

A ``GridGeometry`` is the model's fixed, axis-aligned RAS grid: array index
``(i, j, k)`` runs towards Right, Anterior and Superior.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])
"""Multiply an LPS point or direction by this to get RAS (and back)."""


@dataclass(frozen=True)
class SliceRef:
    """Where one source slice came from, so evidence can point back at it."""

    instance_number: int | None
    sop_instance_uid: str | None
    file_name: str | None


@dataclass
class SliceStack:
    """Source image as parallel slices with per-slice origins (sorted along the normal).

    ``pixels`` has shape (slices, rows, columns) and holds Hounsfield units
    (int16 or float32).  Directions are DICOM's: ``row_direction`` is the LPS unit
    vector along a row (increasing column index), ``column_direction`` the one down
    a column (increasing row index).  ``pixel_spacing_mm`` is (between rows,
    between columns), as DICOM's PixelSpacing.
    """

    pixels: npt.NDArray[np.int16] | npt.NDArray[np.float32]
    origins_lps: FloatArray
    row_direction: FloatArray
    column_direction: FloatArray
    pixel_spacing_mm: tuple[float, float]
    slices: list[SliceRef] = field(default_factory=list)
    series_instance_uid: str | None = None
    description: str = ""
    warnings: list[str] = field(default_factory=list)
    preview: npt.NDArray[np.float32] | None = None
    """Optional in-plane average-pooled float copy made while decoding (see ``preview_factors``)."""
    preview_factors: tuple[int, int] = (1, 1)

    @property
    def normal(self) -> FloatArray:
        n = np.cross(self.row_direction, self.column_direction)
        return n / np.linalg.norm(n)

    @property
    def slice_offsets_mm(self) -> FloatArray:
        """Each slice's position along the normal (increasing)."""
        return self.origins_lps @ self.normal

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.pixels.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    def voxel_to_lps(self, slice_index: float, row: float, column: float) -> FloatArray:
        """World (LPS mm) point of a fractional voxel index (origins interpolated)."""
        n = self.shape[0]
        k = np.clip(slice_index, 0, n - 1)
        origin = np.array(
            [np.interp(k, np.arange(n), self.origins_lps[:, axis]) for axis in range(3)]
        )
        return (
            origin
            + column * self.pixel_spacing_mm[1] * self.row_direction
            + row * self.pixel_spacing_mm[0] * self.column_direction
        )

    def nearest_slice(self, point_lps: FloatArray) -> int:
        """Index of the slice nearest to a world point (along the normal)."""
        return int(np.argmin(np.abs(self.slice_offsets_mm - float(point_lps @ self.normal))))


def in_plane_pool_factors(
    pixel_spacing_mm: tuple[float, float], target_spacing_mm: float
) -> tuple[int, int]:
    """Whole-number pooling factors (rows, columns) that keep pixels finer than the target."""
    return (
        max(1, int(target_spacing_mm / pixel_spacing_mm[0] + 1e-6)),
        max(1, int(target_spacing_mm / pixel_spacing_mm[1] + 1e-6)),
    )


@dataclass(frozen=True)
class GridGeometry:
    """An axis-aligned RAS grid: voxel (i, j, k) sits at ``origin_ras + (i, j, k) * spacing``."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_ras: tuple[float, float, float]

    @classmethod
    def centred(
        cls,
        *,
        shape: tuple[int, int, int],
        spacing_mm: tuple[float, float, float],
        centre_ras: FloatArray,
    ) -> GridGeometry:
        half = (np.array(shape, dtype=np.float64) - 1) / 2 * np.array(spacing_mm)
        origin = np.asarray(centre_ras, dtype=np.float64) - half
        return cls(
            shape=shape,
            spacing_mm=spacing_mm,
            origin_ras=(float(origin[0]), float(origin[1]), float(origin[2])),
        )

    @property
    def affine_ras(self) -> FloatArray:
        """4x4 voxel-to-RAS affine (NIfTI convention)."""
        affine = np.eye(4)
        affine[:3, :3] = np.diag(self.spacing_mm)
        affine[:3, 3] = self.origin_ras
        return affine

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        return (
            self.shape[0] * self.spacing_mm[0],
            self.shape[1] * self.spacing_mm[1],
            self.shape[2] * self.spacing_mm[2],
        )

    def voxel_to_ras(self, index: FloatArray) -> FloatArray:
        return np.asarray(self.origin_ras) + np.asarray(index) * np.asarray(self.spacing_mm)

    def ras_to_voxel(self, point_ras: FloatArray) -> FloatArray:
        return (np.asarray(point_ras) - np.asarray(self.origin_ras)) / np.asarray(self.spacing_mm)

    def axis_points_lps(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The LPS coordinate of each grid plane along each axis (the grid is separable)."""
        xs = self.origin_ras[0] + np.arange(self.shape[0], dtype=np.float64) * self.spacing_mm[0]
        ys = self.origin_ras[1] + np.arange(self.shape[1], dtype=np.float64) * self.spacing_mm[1]
        zs = self.origin_ras[2] + np.arange(self.shape[2], dtype=np.float64) * self.spacing_mm[2]
        return -xs, -ys, zs

    def to_json(self) -> dict[str, list[float] | list[int]]:
        return {
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing_mm),
            "origin_ras": list(self.origin_ras),
        }
