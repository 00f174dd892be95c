"""Montages of a CT series in lung and mediastinal windows, so a person can look.

Reads any single-series folder of CT DICOM files (ours or real), orders the
slices by position along the slice normal, converts to HU and puts patients
into the usual display orientation (patient's right on the image left,
anterior at the top) whatever the stored orientation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image, ImageDraw

FloatArray = npt.NDArray[np.float32]

LUNG_WINDOW = (-600.0, 1500.0)
MEDIASTINAL_WINDOW = (40.0, 400.0)
TILE_PX = 256
HU_FLOOR = -1024.0


class SeriesReadError(ValueError):
    """The folder does not hold a readable single CT series."""


@dataclass(frozen=True)
class LoadedSeries:
    hu: FloatArray  # (slices ascending along the normal, rows, columns) in display orientation
    pixel_mm: tuple[float, float]  # (row spacing, column spacing)
    slice_mm: float
    description: str


def load_series(folder: Path) -> LoadedSeries:
    """Read every DICOM file under ``folder`` (one series) into an HU volume."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    slices = []
    for path in files:
        try:
            ds = pydicom.dcmread(path)
        except (pydicom.errors.InvalidDicomError, OSError):
            continue
        if "PixelData" in ds and "ImagePositionPatient" in ds:
            slices.append(ds)
    if len(slices) < 2:
        raise SeriesReadError(f"{folder}: fewer than 2 image slices with positions")
    uids = {str(ds.SeriesInstanceUID) for ds in slices}
    if len(uids) > 1:
        raise SeriesReadError(f"{folder}: {len(uids)} series found, expected one")
    iop = np.array([float(v) for v in slices[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    slices.sort(key=lambda d: float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])))
    vol = np.stack(
        [
            d.pixel_array.astype(np.float32) * float(getattr(d, "RescaleSlope", 1) or 1)
            + float(getattr(d, "RescaleIntercept", 0) or 0)
            for d in slices
        ]
    )
    if iop[0] < 0:  # columns run towards the patient's right: mirror to display convention
        vol = vol[:, :, ::-1]
    if iop[4] < 0:
        vol = vol[:, ::-1, :]
    if normal[2] < 0:
        vol = vol[::-1]
    positions = [float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])) for d in slices]
    slice_mm = float(np.median(np.abs(np.diff(positions)))) or float(slices[0].SliceThickness)
    ps = slices[0].PixelSpacing
    return LoadedSeries(
        np.maximum(vol, HU_FLOOR).astype(np.float32),
        (float(ps[0]), float(ps[1])),
        slice_mm,
        str(getattr(slices[0], "SeriesDescription", "")),
    )


def window(image: FloatArray, centre: float, width: float) -> npt.NDArray[np.uint8]:
    lo = centre - width / 2
    return (np.clip((image - lo) / width, 0.0, 1.0) * 255).astype(np.uint8)


def _tile(image: npt.NDArray[np.uint8], height_mm: float, width_mm: float) -> Image.Image:
    scale = TILE_PX / max(height_mm, width_mm)
    size = (max(1, round(width_mm * scale)), max(1, round(height_mm * scale)))
    tile = Image.new("L", (TILE_PX, TILE_PX))
    img = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)
    tile.paste(img, ((TILE_PX - size[0]) // 2, (TILE_PX - size[1]) // 2))
    return tile


def montage(series: LoadedSeries, *, axial: int = 6, coronal: int = 3) -> Image.Image:
    """Rows: axial lung, axial mediastinal, coronal lung, coronal mediastinal windows."""
    vol = series.hu
    nz, ny, nx = vol.shape
    rows_mm, cols_mm = ny * series.pixel_mm[0], nx * series.pixel_mm[1]
    height_mm = nz * series.slice_mm
    ks = np.linspace(0.12, 0.9, axial) * (nz - 1)
    js = np.linspace(0.35, 0.65, coronal) * (ny - 1)
    columns = max(axial, coronal)
    sheet = Image.new("L", (columns * TILE_PX, 4 * TILE_PX + 4 * 14))
    draw = ImageDraw.Draw(sheet)
    for row, (name, (c, w)) in enumerate(
        (("lung", LUNG_WINDOW), ("mediastinal", MEDIASTINAL_WINDOW))
    ):
        y0 = row * (TILE_PX + 14)
        draw.text(
            (4, y0), f"axial, {name} window (C {c:g} / W {w:g})  {series.description}", fill=255
        )
        for n, k in enumerate(ks):
            sheet.paste(
                _tile(window(vol[round(k)], c, w), rows_mm, cols_mm), (n * TILE_PX, y0 + 14)
            )
        y1 = (row + 2) * (TILE_PX + 14)
        draw.text((4, y1), f"coronal, {name} window", fill=255)
        for n, j in enumerate(js):
            cor = vol[::-1, round(j), :]
            sheet.paste(_tile(window(cor, c, w), height_mm, cols_mm), (n * TILE_PX, y1 + 14))
    return sheet


def write_preview(series_dir: Path, out_png: Path) -> Path:
    series = load_series(series_dir)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    montage(series).save(out_png)
    return out_png
