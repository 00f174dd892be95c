"""Small chest phantoms written as real DICOM series, for the model and preprocessing tests.

Geometry is in DICOM LPS millimetres.  The phantom: an elliptical body of soft tissue,
two lungs of air-filled parenchyma, a heart, a spine, and optional spherical nodules.
Loaded by path (tests/ml/conftest.py and bench/) because tests are not a package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

HU_AIR = -1000
HU_LUNG = -850
HU_SOFT = 40
HU_BONE = 700
RESCALE_INTERCEPT = -1024


@dataclass(frozen=True)
class PhantomNodule:
    centre_lps: tuple[float, float, float]
    diameter_mm: float
    hu: float = 30.0


def chest_hu(
    *,
    rows: int,
    columns: int,
    pixel_spacing: float,
    z_positions: Sequence[float],
    nodules: Sequence[PhantomNodule] = (),
    lung_z_range: tuple[float, float] = (-1e9, 1e9),
    noise_hu: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """HU slices (slices, rows, columns) of an axial chest centred on (0, 0) LPS."""
    x = (np.arange(columns) - (columns - 1) / 2) * pixel_spacing  # LPS x (towards Left)
    y = (np.arange(rows) - (rows - 1) / 2) * pixel_spacing  # LPS y (towards Posterior)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    body = (xx / 160.0) ** 2 + (yy / 110.0) ** 2 <= 1
    lungs = ((np.abs(xx) - 75.0) / 55.0) ** 2 + ((yy + 5.0) / 80.0) ** 2 <= 1
    heart = ((xx - 15.0) / 45.0) ** 2 + ((yy + 25.0) / 40.0) ** 2 <= 1
    spine = (xx / 18.0) ** 2 + ((yy - 75.0) / 18.0) ** 2 <= 1
    rng = np.random.default_rng(seed)
    out = np.full((len(z_positions), rows, columns), HU_AIR, dtype=np.float32)
    for k, z in enumerate(z_positions):
        s = out[k]
        s[body] = HU_SOFT
        if lung_z_range[0] <= z <= lung_z_range[1]:
            s[lungs & ~heart] = HU_LUNG
        s[spine] = HU_BONE
        for nodule in nodules:
            cx, cy, cz = nodule.centre_lps
            r2 = (nodule.diameter_mm / 2) ** 2 - (z - cz) ** 2
            if r2 > 0:
                s[(xx - cx) ** 2 + (yy - cy) ** 2 <= r2] = nodule.hu
    if noise_hu > 0:
        out += rng.normal(0, noise_hu, out.shape).astype(np.float32)
    return np.rint(out).astype(np.int16)


def _base_dataset(path: Path, sop_class: str, *, series_uid: str, study_uid: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName = "PHANTOM^CHEST"
    ds.PatientID = "PHANTOM"
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    return ds


def write_ct_series(
    folder: Path,
    hu: np.ndarray,
    *,
    pixel_spacing: float,
    origins_lps: np.ndarray,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    slice_thickness: float | Sequence[float] = 2.0,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    study_uid: str | None = None,
    shuffle_names: bool = True,
) -> str:
    """Write ``hu`` (slices, rows, cols) as one CT Image Storage series; return its UID.

    File names are shuffled so the loader must sort by position, not by name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    study_uid = study_uid or generate_uid()
    n = hu.shape[0]
    names = np.random.default_rng(n).permutation(n) if shuffle_names else np.arange(n)
    thickness = (
        list(slice_thickness)
        if not isinstance(slice_thickness, float | int)
        else [slice_thickness] * n
    )
    for k in range(n):
        path = folder / f"IM{int(names[k]):04d}.dcm"
        ds = _base_dataset(path, CTImageStorage, series_uid=series_uid, study_uid=study_uid)
        ds.ImageType = list(image_type)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origins_lps[k]]
        ds.ImageOrientationPatient = [f"{v:.7f}" for v in orientation]
        ds.PixelSpacing = [f"{pixel_spacing:.6f}", f"{pixel_spacing:.6f}"]
        ds.SliceThickness = f"{thickness[k]:.3f}"
        ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = str(RESCALE_INTERCEPT)
        ds.RescaleSlope = "1"
        ds.PixelData = (hu[k].astype(np.int32) - RESCALE_INTERCEPT).astype(np.int16).tobytes()
        ds.save_as(path, enforce_file_format=True)
    return str(series_uid)


def axial_origins(
    *, rows: int, columns: int, pixel_spacing: float, z_positions: Sequence[float]
) -> np.ndarray:
    """ImagePositionPatient of centred axial slices (identity orientation)."""
    x0 = -(columns - 1) / 2 * pixel_spacing
    y0 = -(rows - 1) / 2 * pixel_spacing
    return np.array([[x0, y0, z] for z in z_positions], dtype=np.float64)


def write_chest_series(
    folder: Path,
    *,
    rows: int = 64,
    columns: int = 64,
    pixel_spacing: float = 6.0,
    slices: int = 48,
    slice_spacing: float = 7.0,
    nodules: Sequence[PhantomNodule] = (),
    noise_hu: float = 0.0,
    seed: int = 0,
) -> tuple[str, np.ndarray]:
    """A whole small chest series centred at the origin; returns (series UID, HU array)."""
    z = [(k - (slices - 1) / 2) * slice_spacing for k in range(slices)]
    hu = chest_hu(
        rows=rows,
        columns=columns,
        pixel_spacing=pixel_spacing,
        z_positions=z,
        nodules=nodules,
        lung_z_range=(-120.0, 120.0),
        noise_hu=noise_hu,
        seed=seed,
    )
    origins = axial_origins(rows=rows, columns=columns, pixel_spacing=pixel_spacing, z_positions=z)
    uid = write_ct_series(folder, hu, pixel_spacing=pixel_spacing, origins_lps=origins)
    return uid, hu


def write_localizer(folder: Path) -> None:
    """One CT localizer image (coronal orientation, ImageType LOCALIZER)."""
    hu = np.zeros((1, 64, 32), dtype=np.int16)
    write_ct_series(
        folder,
        hu,
        pixel_spacing=4.0,
        origins_lps=np.array([[0.0, -120.0, 300.0]]),
        orientation=(0, 1, 0, 0, 0, -1),
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )


def write_secondary_capture(folder: Path, *, count: int = 3) -> None:
    """A dose-screen style secondary capture series (Modality CT)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    for k in range(count):
        path = folder / f"SC{k}.dcm"
        ds = _base_dataset(
            path, SecondaryCaptureImageStorage, series_uid=series_uid, study_uid=study_uid
        )
        ds.ImageType = ["DERIVED", "SECONDARY", "DOSE_INFO"]
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = 32, 32
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelRepresentation = 0
        ds.PixelData = np.zeros((32, 32), np.uint8).tobytes()
        ds.save_as(path, enforce_file_format=True)
