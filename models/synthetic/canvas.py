"""Voxel grids and the painter that draws analytic shapes onto them.

Every synthetic structure is defined in millimetres in one anatomical frame
(x: towards the patient's left, y: posterior, z: superior, carina at z=0) and
drawn onto a regular grid with a soft, partial-volume edge, so the same seed
gives the same anatomy at any resolution.  Arrays are indexed ``[k, j, i]`` =
``(z, y, x)`` with z ascending, y running anterior to posterior (image rows)
and x running from the patient's right to left (image columns).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
PointLike = Sequence[float] | npt.NDArray[np.floating[Any]]
"""A point or a triple of sizes: a sequence of floats or a numpy vector."""
Box = tuple[slice, slice, slice]
Vec3 = tuple[float, float, float]

EDGE_SOFTNESS = 1.0
"""Width of the partial-volume ramp at an edge, in voxels."""
BATCH_MAX_VOXELS = 1500  # capsules with smaller bounding boxes are drawn in vectorised batches
BATCH_SEGMENTS = 256


@dataclass(frozen=True)
class Grid:
    """A regular grid of voxel centres in anatomical millimetres."""

    shape: tuple[int, int, int]  # (nz, ny, nx)
    origin: Vec3  # (x, y, z) of the centre of voxel [0, 0, 0]
    spacing: Vec3  # (dx, dy, dz)

    @property
    def xs(self) -> FloatArray:
        return (self.origin[0] + self.spacing[0] * np.arange(self.shape[2])).astype(np.float32)

    @property
    def ys(self) -> FloatArray:
        return (self.origin[1] + self.spacing[1] * np.arange(self.shape[1])).astype(np.float32)

    @property
    def zs(self) -> FloatArray:
        return (self.origin[2] + self.spacing[2] * np.arange(self.shape[0])).astype(np.float32)

    @property
    def voxel_mm(self) -> float:
        """The in-plane voxel size, which sets the width of soft edges."""
        return float(0.5 * (self.spacing[0] + self.spacing[1]))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(self.spacing[0] * self.spacing[1] * self.spacing[2])

    def box(self, lo: PointLike, hi: PointLike) -> Box | None:
        """Index slices of the voxels whose centres lie in [lo, hi] (x, y, z), or None."""
        out: list[slice] = []
        for axis, n in ((2, self.shape[0]), (1, self.shape[1]), (0, self.shape[2])):
            o, d = self.origin[axis], self.spacing[axis]
            a = int(np.floor((lo[axis] - o) / d))
            b = int(np.ceil((hi[axis] - o) / d)) + 1
            a, b = max(a, 0), min(b, n)
            if a >= b:
                return None
            out.append(slice(a, b))
        return (out[0], out[1], out[2])

    def full_box(self) -> Box:
        return (slice(0, self.shape[0]), slice(0, self.shape[1]), slice(0, self.shape[2]))

    def axes(self, box: Box) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Broadcastable coordinate arrays Z (n,1,1), Y (1,n,1), X (1,1,n) for a box."""
        z = self.zs[box[0]].reshape(-1, 1, 1)
        y = self.ys[box[1]].reshape(1, -1, 1)
        x = self.xs[box[2]].reshape(1, 1, -1)
        return z, y, x

    def points(self, index: npt.NDArray[np.intp]) -> FloatArray:
        """Millimetre coordinates (x, y, z) of voxel indices given as rows (k, j, i)."""
        k, j, i = index[:, 0], index[:, 1], index[:, 2]
        return np.stack(
            [
                self.origin[0] + self.spacing[0] * i,
                self.origin[1] + self.spacing[1] * j,
                self.origin[2] + self.spacing[2] * k,
            ],
            axis=1,
        ).astype(np.float32)

    def index_of(self, point: PointLike) -> tuple[int, int, int]:
        """The (k, j, i) index of the voxel nearest a point (not clipped)."""
        return (
            round((point[2] - self.origin[2]) / self.spacing[2]),
            round((point[1] - self.origin[1]) / self.spacing[1]),
            round((point[0] - self.origin[0]) / self.spacing[0]),
        )


def max_of(*arrays: FloatArray | float) -> FloatArray:
    """Element-wise maximum of broadcastable arrays (intersection of signed distances)."""
    out = np.asarray(arrays[0], dtype=np.float32)
    for a in arrays[1:]:
        out = np.maximum(out, a)
    return out.astype(np.float32, copy=False)


def soft_alpha(signed_distance: FloatArray, voxel_mm: float) -> FloatArray:
    """Partial-volume coverage from a signed distance in mm (negative inside)."""
    a = np.float32(0.5) - signed_distance * np.float32(1.0 / (EDGE_SOFTNESS * voxel_mm))
    np.clip(a, 0.0, 1.0, out=a)
    return a


class Canvas:
    """An HU image and a tissue label image on one grid, painted back to front."""

    def __init__(self, grid: Grid, *, background_hu: float, background_label: int) -> None:
        self.grid = grid
        self.hu = np.full(grid.shape, background_hu, dtype=np.float32)
        self.label = np.full(grid.shape, background_label, dtype=np.uint8)

    def blend(
        self,
        box: Box,
        alpha: FloatArray,
        value: float | FloatArray,
        label: int | None,
        *,
        where: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """hu <- hu + alpha * (value - hu) inside box; voxels at alpha >= 0.5 take the label."""
        if where is not None:
            alpha = alpha * where
        h = self.hu[box]
        h += alpha * (np.asarray(value, dtype=np.float32) - h)
        if label is not None:
            lab = self.label[box]
            lab[np.broadcast_to(alpha >= 0.5, lab.shape)] = label

    def blend_flat(
        self,
        flat_index: npt.NDArray[np.intp],
        alpha: FloatArray,
        value: float | FloatArray,
        label: int | None,
    ) -> None:
        """Like :meth:`blend` for a list of voxels given as flat indices."""
        hu = self.hu.reshape(-1)
        h = hu[flat_index]
        hu[flat_index] = h + alpha * (np.float32(value) - h)
        if label is not None:
            self.label.reshape(-1)[flat_index[alpha >= 0.5]] = label

    def label_is(self, box: Box, labels: Sequence[int]) -> npt.NDArray[np.bool_]:
        lut = np.zeros(256, dtype=bool)
        lut[np.asarray(labels, dtype=np.intp)] = True
        return lut[self.label[box]]

    def split_z(self, parts: int) -> list[Canvas]:
        """Views of consecutive slabs of slices (painting them paints this canvas)."""
        nz = self.grid.shape[0]
        edges = np.linspace(0, nz, max(1, min(parts, nz)) + 1).round().astype(int)
        out = []
        for k0, k1 in itertools.pairwise(edges):
            view = Canvas.__new__(Canvas)
            g = self.grid
            view.grid = Grid(
                shape=(int(k1 - k0), g.shape[1], g.shape[2]),
                origin=(g.origin[0], g.origin[1], g.origin[2] + int(k0) * g.spacing[2]),
                spacing=g.spacing,
            )
            view.hu = self.hu[k0:k1]
            view.label = self.label[k0:k1]
            out.append(view)
        return out


def rotation_frame(axis: PointLike, up: PointLike = (0.0, 0.0, 1.0)) -> FloatArray:
    """A right-handed orthonormal frame (rows u, v, w) whose first row points along axis."""
    u = np.asarray(axis, dtype=np.float64)
    u /= np.linalg.norm(u)
    ref = np.asarray(up, dtype=np.float64)
    if abs(float(u @ ref)) > 0.95:
        ref = np.array([1.0, 0.0, 0.0])
    v = np.cross(ref, u)
    v /= np.linalg.norm(v)
    w = np.cross(u, v)
    return np.stack([u, v, w]).astype(np.float32)


def ellipsoid_distance(
    z: FloatArray,
    y: FloatArray,
    x: FloatArray,
    centre: PointLike,
    semi: PointLike,
    frame: FloatArray | None = None,
) -> FloatArray:
    """Approximate signed distance (mm) to an ellipsoid, optionally rotated by frame rows."""
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    if frame is None:
        q = (dx / semi[0]) ** 2 + (dy / semi[1]) ** 2 + (dz / semi[2]) ** 2
    else:
        q = np.zeros(np.broadcast_shapes(dx.shape, dy.shape, dz.shape), dtype=np.float32)
        for row, s in zip(frame, semi, strict=True):
            q += ((dx * row[0] + dy * row[1] + dz * row[2]) / s) ** 2
    return ((np.sqrt(q) - 1.0) * np.float32(min(semi))).astype(np.float32, copy=False)


def ellipsoid_bounds(centre: PointLike, semi: PointLike, margin: float) -> tuple[Vec3, Vec3]:
    r = max(semi) + margin
    return (
        (centre[0] - r, centre[1] - r, centre[2] - r),
        (centre[0] + r, centre[1] + r, centre[2] + r),
    )


def paint_ellipsoid(
    canvas: Canvas,
    centre: PointLike,
    semi: PointLike,
    value: float,
    label: int | None,
    *,
    frame: FloatArray | None = None,
    grow: float = 0.0,
    only_labels: Sequence[int] | None = None,
) -> None:
    """Paint an ellipsoid, grown outward by ``grow`` mm; optionally only over some labels."""
    lo, hi = ellipsoid_bounds(centre, semi, grow + 2 * canvas.grid.voxel_mm)
    box = canvas.grid.box(lo, hi)
    if box is None:
        return
    z, y, x = canvas.grid.axes(box)
    sd = ellipsoid_distance(z, y, x, centre, semi, frame) - np.float32(grow)
    alpha = soft_alpha(sd, canvas.grid.voxel_mm)
    where = canvas.label_is(box, only_labels) if only_labels is not None else None
    canvas.blend(box, alpha, value, label, where=where)


def segment_distance(
    z: FloatArray,
    y: FloatArray,
    x: FloatArray,
    a: npt.NDArray[np.floating],
    b: npt.NDArray[np.floating],
) -> tuple[FloatArray, FloatArray]:
    """Distance from voxel centres to segment a-b, and the parameter t of the nearest point."""
    d = (b - a).astype(np.float32)
    dd = float(d @ d) or 1e-6
    px, py, pz = x - np.float32(a[0]), y - np.float32(a[1]), z - np.float32(a[2])
    t = (px * d[0] + py * d[1] + pz * d[2]) * np.float32(1.0 / dd)
    np.clip(t, 0.0, 1.0, out=t)
    ex, ey, ez = px - t * d[0], py - t * d[1], pz - t * d[2]
    return np.sqrt(ex * ex + ey * ey + ez * ez), t


class AlphaAccumulator:
    """Union of many soft shapes in one buffer (max of alphas), blended onto a canvas once."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.alpha = np.zeros(grid.shape, dtype=np.float32)  # calloc: pages appear when touched
        self._lo = [grid.shape[0], grid.shape[1], grid.shape[2]]
        self._hi = [0, 0, 0]

    def _touch(self, box: Box) -> None:
        for n, sl in enumerate(box):
            self._lo[n] = min(self._lo[n], sl.start)
            self._hi[n] = max(self._hi[n], sl.stop)

    def add_capsule(
        self, a: npt.NDArray[np.floating], b: npt.NDArray[np.floating], ra: float, rb: float
    ) -> None:
        r = max(ra, rb) + 2 * self.grid.voxel_mm
        ax, ay, az = float(a[0]), float(a[1]), float(a[2])
        bx, by, bz = float(b[0]), float(b[1]), float(b[2])
        box = self.grid.box(
            (min(ax, bx) - r, min(ay, by) - r, min(az, bz) - r),
            (max(ax, bx) + r, max(ay, by) + r, max(az, bz) + r),
        )
        if box is None:
            return
        z, y, x = self.grid.axes(box)
        dist, t = segment_distance(z, y, x, a, b)
        sd = dist - (np.float32(ra) + t * np.float32(rb - ra))
        sub = self.alpha[box]
        np.maximum(sub, soft_alpha(sd, self.grid.voxel_mm), out=sub)
        self._touch(box)

    def add_polyline(
        self, points: npt.NDArray[np.floating], radii: npt.NDArray[np.floating]
    ) -> None:
        pts = np.asarray(points, dtype=np.float32)
        r = np.asarray(radii, dtype=np.float32)
        self.add_capsules(pts[:-1], pts[1:], r[:-1], r[1:])

    def add_capsules(
        self,
        a: npt.NDArray[np.floating],
        b: npt.NDArray[np.floating],
        ra: npt.NDArray[np.floating],
        rb: npt.NDArray[np.floating],
    ) -> None:
        """Many capsules at once: small ones in vectorised batches, large ones one by one."""
        a = np.asarray(a, dtype=np.float32).reshape(-1, 3)
        b = np.asarray(b, dtype=np.float32).reshape(-1, 3)
        ra = np.asarray(ra, dtype=np.float32).reshape(-1)
        rb = np.asarray(rb, dtype=np.float32).reshape(-1)
        if len(a) == 0:
            return
        g = self.grid
        origin = np.array(g.origin, dtype=np.float32)
        spacing = np.array(g.spacing, dtype=np.float32)
        shape_xyz = np.array([g.shape[2], g.shape[1], g.shape[0]])
        reach = (np.maximum(ra, rb) + 2 * g.voxel_mm)[:, None]
        lo = np.floor((np.minimum(a, b) - reach - origin) / spacing).astype(np.int64)
        hi = np.ceil((np.maximum(a, b) + reach - origin) / spacing).astype(np.int64)
        lo = np.clip(lo, 0, shape_xyz)
        hi = np.clip(hi + 1, 0, shape_xyz)
        size = hi - lo
        ok = np.all(size > 0, axis=1)
        volume = np.prod(np.maximum(size, 0), axis=1)
        small = ok & (volume <= BATCH_MAX_VOXELS)
        for n in np.nonzero(ok & ~small)[0]:
            self.add_capsule(a[n], b[n], float(ra[n]), float(rb[n]))
        idx = np.nonzero(small)[0]
        if idx.size == 0:
            return
        flat_alpha = self.alpha.reshape(-1)
        blocks = (np.ceil(size[idx] / 2.0) * 2).astype(np.int64)  # group by block shape
        keys = (blocks[:, 0] * 4096 + blocks[:, 1]) * 4096 + blocks[:, 2]
        for key in np.unique(keys):
            members = idx[keys == key]
            dims = blocks[keys == key][0]
            ox, oy, oz = np.meshgrid(
                np.arange(dims[0]), np.arange(dims[1]), np.arange(dims[2]), indexing="ij"
            )
            offs = np.stack([ox.ravel(), oy.ravel(), oz.ravel()], axis=1).astype(np.int32)
            for start in range(0, members.size, BATCH_SEGMENTS):
                self._batch(
                    members[start : start + BATCH_SEGMENTS],
                    offs,
                    a,
                    b,
                    ra,
                    rb,
                    lo,
                    hi,
                    origin,
                    spacing,
                    flat_alpha,
                )

    def _batch(
        self,
        chunk: npt.NDArray[np.intp],
        offs: npt.NDArray[np.int32],
        a: FloatArray,
        b: FloatArray,
        ra: FloatArray,
        rb: FloatArray,
        lo: npt.NDArray[np.int64],
        hi: npt.NDArray[np.int64],
        origin: FloatArray,
        spacing: FloatArray,
        flat_alpha: FloatArray,
    ) -> None:
        g = self.grid
        vox = lo[chunk].astype(np.int32)[:, None, :] + offs[None, :, :]  # (n, m, 3) as x, y, z
        valid = np.all(vox < hi[chunk].astype(np.int32)[:, None, :], axis=2)
        pos = origin + vox.astype(np.float32) * spacing
        aa, bb = a[chunk][:, None, :], b[chunk][:, None, :]
        d = bb - aa
        dd = np.maximum((d * d).sum(axis=2), np.float32(1e-6))
        pa = pos - aa
        t = np.clip((pa * d).sum(axis=2) / dd, 0.0, 1.0)
        e = pa - t[:, :, None] * d
        dist = np.sqrt((e * e).sum(axis=2))
        rad = ra[chunk][:, None] + t * (rb[chunk] - ra[chunk])[:, None]
        alpha = soft_alpha((dist - rad).astype(np.float32), g.voxel_mm)
        keep = valid & (alpha > 0)
        v = vox[keep]
        flat = (v[:, 2].astype(np.int64) * g.shape[1] + v[:, 1]) * g.shape[2] + v[:, 0]
        np.maximum.at(flat_alpha, flat, alpha[keep])
        blo, bhi = lo[chunk].min(axis=0), hi[chunk].max(axis=0)
        self._touch(
            (
                slice(int(blo[2]), int(bhi[2])),
                slice(int(blo[1]), int(bhi[1])),
                slice(int(blo[0]), int(bhi[0])),
            )
        )

    def add_ellipsoid(
        self, centre: PointLike, semi: PointLike, frame: FloatArray | None = None
    ) -> None:
        lo, hi = ellipsoid_bounds(centre, semi, 2 * self.grid.voxel_mm)
        box = self.grid.box(lo, hi)
        if box is None:
            return
        z, y, x = self.grid.axes(box)
        sd = ellipsoid_distance(z, y, x, centre, semi, frame)
        sub = self.alpha[box]
        np.maximum(sub, soft_alpha(sd, self.grid.voxel_mm), out=sub)
        self._touch(box)

    def bounding_box(self) -> Box | None:
        if any(lo >= hi for lo, hi in zip(self._lo, self._hi, strict=True)):
            return None
        return (
            slice(self._lo[0], self._hi[0]),
            slice(self._lo[1], self._hi[1]),
            slice(self._lo[2], self._hi[2]),
        )

    def paint(
        self,
        canvas: Canvas,
        value: float,
        label: int | None,
        *,
        only_labels: Sequence[int] | None = None,
    ) -> tuple[Box, npt.NDArray[np.bool_]] | None:
        """Blend the union onto the canvas; returns its box and the mask (alpha >= 0.5) there."""
        box = self.bounding_box()
        if box is None:
            return None
        where = canvas.label_is(box, only_labels) if only_labels is not None else None
        alpha = self.alpha[box]
        canvas.blend(box, alpha, value, label, where=where)
        m = alpha >= 0.5
        if where is not None:
            m &= where
        return box, m

    def paint_masked(
        self,
        canvas: Canvas,
        value: float,
        label: int | None,
        *,
        only_labels: Sequence[int] | None = None,
    ) -> npt.NDArray[np.bool_]:
        """Like :meth:`paint`, returning the full-grid mask."""
        mask = np.zeros(self.grid.shape, dtype=bool)
        painted = self.paint(canvas, value, label, only_labels=only_labels)
        if painted is not None:
            mask[painted[0]] = painted[1]
        return mask


def smooth_polyline(control: Sequence[Sequence[float]], step_mm: float) -> FloatArray:
    """A Catmull-Rom spline through control points, sampled about every step_mm."""
    p = np.asarray(control, dtype=np.float64)
    padded = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out: list[npt.NDArray[np.float64]] = []
    for n in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[n - 1], padded[n], padded[n + 1], padded[n + 2]
        length = float(np.linalg.norm(p2 - p1))
        m = max(2, int(np.ceil(length / step_mm)))
        t = np.linspace(0.0, 1.0, m, endpoint=False)[:, None]
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    out.append(p[-1:])
    return np.vstack(out).astype(np.float32)


class SmoothField:
    """A smooth random field: a sum of random plane waves, defined at any point in mm."""

    def __init__(self, rng: np.random.Generator, *, wavelength_mm: float, waves: int = 16) -> None:
        directions = rng.normal(size=(waves, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        lengths = wavelength_mm * rng.uniform(0.6, 1.6, size=waves)
        self.k = (2 * np.pi * directions / lengths[:, None]).astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, size=waves).astype(np.float32)
        self.norm = np.float32(np.sqrt(2.0 / waves))

    def at_points(self, points: FloatArray) -> FloatArray:
        """Values (about unit variance) at points (n, 3) in mm."""
        arg = points @ self.k.T + self.phase
        return (np.cos(arg).sum(axis=1) * self.norm).astype(np.float32)

    def on_box(self, grid: Grid, box: Box) -> FloatArray:
        z, y, x = grid.axes(box)
        out = np.zeros((z.shape[0], y.shape[1], x.shape[2]), dtype=np.float32)
        for k, ph in zip(self.k, self.phase, strict=True):
            out += np.cos(x * k[0] + y * k[1] + (z * k[2] + ph))
        out *= self.norm
        return out
