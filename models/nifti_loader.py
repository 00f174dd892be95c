"""NIfTI volumes (CT-RATE ships .nii.gz) to a ``SliceStack`` in Hounsfield units."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.errors import BrokenGeometryError, TooFewSlicesError, UndecodablePixelsError
from models.volume import LPS_TO_RAS, SliceRef, SliceStack

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES)


def load_nifti(path: Path, *, min_slices: int, min_coverage_mm: float) -> SliceStack:
    """Read a 3D NIfTI of HU values; slices run along the third array axis.

    The voxel-to-RAS affine (sform, else qform) is turned into DICOM-style LPS
    slice geometry, so the same resampler handles NIfTI and DICOM.
    """
    import nibabel as nib  # local: only NIfTI users pay for the import

    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)  # type: ignore[attr-defined]
    except Exception as exc:  # nibabel raises many types for broken files
        raise UndecodablePixelsError(f"{path.name} is not a readable NIfTI volume: {exc}") from None
    data = np.squeeze(data)
    if data.ndim != 3:
        raise BrokenGeometryError(f"{path.name} has {data.ndim} dimensions; a 3D volume is needed")
    if data.shape[2] < min_slices:
        raise TooFewSlicesError(f"{path.name} has {data.shape[2]} slices; need {min_slices}")
    affine_lps = np.diag([*LPS_TO_RAS, 1.0]) @ np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    col_vec, row_vec, slice_vec = affine_lps[:3, 0], affine_lps[:3, 1], affine_lps[:3, 2]
    spacing_i, spacing_j = float(np.linalg.norm(col_vec)), float(np.linalg.norm(row_vec))
    if min(spacing_i, spacing_j, float(np.linalg.norm(slice_vec))) <= 0:
        raise BrokenGeometryError(f"{path.name}: the affine has a zero-length axis")
    row_direction, column_direction = col_vec / spacing_i, row_vec / spacing_j
    if abs(row_direction @ column_direction) > 0.01:
        raise BrokenGeometryError(f"{path.name}: in-plane axes are not orthogonal")
    # pixels[k, row=j, column=i] = data[i, j, k]
    pixels = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    if np.issubdtype(pixels.dtype, np.floating):
        pixels = np.rint(pixels).clip(-32768, 32767).astype(np.int16)
    else:
        pixels = pixels.clip(-32768, 32767).astype(np.int16)
    k = np.arange(pixels.shape[0], dtype=np.float64)
    origins = affine_lps[:3, 3][None, :] + k[:, None] * slice_vec[None, :]
    normal = np.cross(row_direction, column_direction)
    original_index = np.arange(pixels.shape[0])
    if slice_vec @ normal < 0:
        pixels, origins = pixels[::-1].copy(), origins[::-1].copy()
        original_index = original_index[::-1]
    offsets = origins @ normal
    if np.any(np.diff(offsets) <= 0):
        raise BrokenGeometryError(f"{path.name}: slices do not advance along their normal")
    coverage = float(offsets[-1] - offsets[0])
    if coverage < min_coverage_mm:
        raise TooFewSlicesError(f"{path.name} covers {coverage:.0f} mm; need {min_coverage_mm:.0f}")
    return SliceStack(
        pixels=pixels,
        origins_lps=origins,
        row_direction=row_direction,
        column_direction=column_direction,
        pixel_spacing_mm=(spacing_j, spacing_i),
        # For NIfTI the "instance number" is the slice's index along the file's third axis.
        slices=[
            SliceRef(instance_number=int(i), sop_instance_uid=None, file_name=path.name)
            for i in original_index
        ],
        description=path.name,
    )
