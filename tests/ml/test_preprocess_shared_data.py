"""Preprocessing on the real public series beside the repo (skipped where absent)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from models.errors import LocalizerError, SecondaryCaptureError, UndecodablePixelsError
from models.preprocess import PreprocessSpec, load_stack, preprocess
from models.volume import LPS_TO_RAS

REAL_CHEST = Path("dicom/real_chest/lungpetctdx_A0002_siemens_sensation10")
TILTED_HEAD = Path("dicom/ct_series/dcmqa_ge_hispeed_head_tilt_varspacing")
SPEC = PreprocessSpec()


def _hu(image: torch.Tensor) -> np.ndarray:
    low, high = SPEC.hu_window
    return (image[0].numpy().astype(np.float64) + 1) / 2 * (high - low) + low


def test_localizer_is_refused(shared_data: Path) -> None:
    with pytest.raises(LocalizerError, match="localizer"):
        preprocess(shared_data / "dicom/ct_series/dcmqa_philips_ingenuity_localizer", SPEC)


def test_exam_summary_secondary_capture_is_refused(shared_data: Path) -> None:
    with pytest.raises(SecondaryCaptureError, match="secondary capture"):
        preprocess(shared_data / "dicom/ct_series/dcmqa_philips_ingenuity_exam_summary_sc", SPEC)


def test_a_study_folder_with_only_non_diagnostic_series_names_every_reason(
    shared_data: Path, tmp_path: Path
) -> None:
    for name in ("dcmqa_philips_ingenuity_localizer", "dcmqa_philips_ingenuity_exam_summary_sc"):
        shutil.copytree(shared_data / "dicom/ct_series" / name, tmp_path / name)
    with pytest.raises((LocalizerError, SecondaryCaptureError)) as info:
        preprocess(tmp_path, SPEC)
    assert "localizer" in str(info.value) and "secondary capture" in str(info.value)


def _voronoi_weights(offsets: np.ndarray) -> np.ndarray:
    edges = np.concatenate(
        [
            [offsets[0] - (offsets[1] - offsets[0]) / 2],
            (offsets[1:] + offsets[:-1]) / 2,
            [offsets[-1] + (offsets[-1] - offsets[-2]) / 2],
        ]
    )
    return np.diff(edges)


def test_tilted_head_lands_on_its_world_position(shared_data: Path) -> None:
    prepared = preprocess(shared_data / TILTED_HEAD, SPEC)
    stack = prepared.stack
    assert any("tilt" in w for w in prepared.warnings)
    assert any("spacing varies" in w for w in prepared.warnings)
    # Centroid of the head (HU > -300) from the source pixels at their scanner positions,
    # each slice weighted by the slab it stands for along the normal.
    weights = _voronoi_weights(stack.slice_offsets_mm)
    total, moment = 0.0, np.zeros(3)
    for k in range(stack.shape[0]):
        rows, cols = np.nonzero(stack.pixels[k] > -300)
        points = (
            stack.origins_lps[k]
            + (cols * stack.pixel_spacing_mm[1])[:, None] * stack.row_direction
            + (rows * stack.pixel_spacing_mm[0])[:, None] * stack.column_direction
        )
        area = stack.pixel_spacing_mm[0] * stack.pixel_spacing_mm[1] * weights[k]
        total += len(rows) * area
        moment += points.sum(axis=0) * area
    source_centroid_ras = moment / total * LPS_TO_RAS
    head = _hu(prepared.image) > -300
    grid_centroid_ras = prepared.grid.voxel_to_ras(np.argwhere(head).mean(axis=0))
    assert np.allclose(grid_centroid_ras, source_centroid_ras, atol=2.0), (
        grid_centroid_ras,
        source_centroid_ras,
    )
    grid_volume_ml = head.sum() * np.prod(prepared.grid.spacing_mm) / 1000
    assert grid_volume_ml == pytest.approx(total / 1000, rel=0.05)
    # The whole scanned head is inside the grid: nothing dense on the grid's faces.
    for axis in range(3):
        assert not head.take(0, axis=axis).any() and not head.take(-1, axis=axis).any()


def _boxes(root: Path) -> list[dict[str, str]]:
    with (root / "annotations_summary.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("series", ["ct_series2_8mm_B70f", "ct_series3_8mm_B40f"])
def test_real_chest_thorax_fits_and_tumour_boxes_land_on_the_tumour(
    shared_data: Path, series: str
) -> None:
    root = shared_data / REAL_CHEST
    prepared = preprocess(root / series, SPEC)
    quality = prepared.quality
    assert quality.grid_coverage == pytest.approx(1.0)
    assert 1.0 < quality.lung_volume_l < 8.0
    hu = _hu(prepared.image)
    body = np.argwhere(hu > -500)
    assert body.min(axis=0)[:2].min() > 0 and (body.max(axis=0)[:2] < 159).all()
    boxes = [b for b in _boxes(root) if b["series_folder"] == series]
    assert len(boxes) >= 8
    for box in boxes:
        ds = pydicom.dcmread(root / series / box["dicom_file"])
        x1, y1, x2, y2 = (int(box[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        spacing = [float(v) for v in ds.PixelSpacing]
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        centre_lps = position + np.array(
            [(x1 + x2) / 2 * spacing[1], (y1 + y2) / 2 * spacing[0], 0.0]
        )
        i, j, k = np.round(prepared.grid.ras_to_voxel(centre_lps * LPS_TO_RAS)).astype(int)
        half_i = max(1, int((x2 - x1) / 4 * spacing[1] / SPEC.grid_spacing_mm[0]))
        half_j = max(1, int((y2 - y1) / 4 * spacing[0] / SPEC.grid_spacing_mm[1]))
        tumour = hu[i - half_i : i + half_i + 1, j - half_j : j + half_j + 1, k].mean()
        source = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
            ds.RescaleIntercept
        )
        qx, qy = (x2 - x1) // 4, (y2 - y1) // 4
        cy, cx = (y1 + y2) // 2, (x1 + x2) // 2
        source_mean = source[cy - qy : cy + qy, cx - qx : cx + qx].mean()
        assert tumour > -300, f"{box['dicom_file']}: box centre is not on dense tissue"
        assert abs(tumour - source_mean) < 60, (box["dicom_file"], tumour, source_mean)
        # The tumour is in the right hemithorax: RAS x beyond the body's centre.
        assert i > (body.min(axis=0)[0] + body.max(axis=0)[0]) / 2


LOSSLESS_SYNTAXES = (
    "CTImage_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm",
    "CTImage_LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm",
    "CTImage_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm",
    "CTImage_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm",
    "CTImage_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm",
    "CTImage_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm",
    "CTImage_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm",
    "CTImage_JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm",
)
UNDECODABLE_SYNTAXES = (
    "CTImage_JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm",
    "CTImage_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm",
)
SMALL_SERIES = PreprocessSpec(min_slices=3, min_coverage_mm=5.0)


def _series_from_one_slice(source: Path, folder: Path, copies: int = 3) -> None:
    """Copies of one real slice at new positions (pixel data kept in its transfer syntax)."""
    folder.mkdir()
    for k in range(copies):
        ds = pydicom.dcmread(source)
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [position[0], position[1], position[2] + 5.0 * k]
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"{k}.dcm")


def test_every_decodable_transfer_syntax_gives_the_same_hu(
    shared_data: Path, tmp_path: Path
) -> None:
    folder = shared_data / "dicom/ct_transfer_syntaxes"
    reference: np.ndarray | None = None
    for name in LOSSLESS_SYNTAXES:
        _series_from_one_slice(folder / name, tmp_path / name)
        stack = load_stack(tmp_path / name, SMALL_SERIES)
        if reference is None:
            reference = stack.pixels[0]
        assert np.array_equal(stack.pixels[0], reference), name
    assert reference is not None and reference.min() < -900 and reference.max() > 1000


@pytest.mark.parametrize("name", UNDECODABLE_SYNTAXES)
def test_retired_jpeg_is_a_typed_error(shared_data: Path, tmp_path: Path, name: str) -> None:
    _series_from_one_slice(shared_data / "dicom/ct_transfer_syntaxes" / name, tmp_path / "s")
    with pytest.raises(UndecodablePixelsError, match="cannot be decoded"):
        load_stack(tmp_path / "s", SMALL_SERIES)


@pytest.mark.parametrize(
    "name",
    [
        "CT_no_file_meta.dcm",
        "meta_missing_transfer_syntax.dcm",
        "MR_truncated_pixel_data.dcm",
        "CT_bad_sequence_jpegLL.dcm",
        "OT_oob_rows_cols_46341.dcm",
        "RTDOSE_badVR.dcm",
    ],
)
def test_malformed_files_give_typed_errors(shared_data: Path, tmp_path: Path, name: str) -> None:
    from models.errors import ModelInputError

    shutil.copy(shared_data / "dicom/malformed" / name, tmp_path / name)
    with pytest.raises(ModelInputError):
        preprocess(tmp_path, SPEC)
