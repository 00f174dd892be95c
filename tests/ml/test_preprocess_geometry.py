"""Preprocessing geometry on generated series: sorting, RAS orientation, tilt, spacing, grid."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from models.errors import BrokenGeometryError, TooFewSlicesError
from models.preprocess import (
    PreprocessSpec,
    extract_patch,
    preprocess,
    sample_stack,
    unwindow,
    window,
)
from models.volume import LPS_TO_RAS

SMALL_SPEC = PreprocessSpec(grid_shape=(64, 64, 48), grid_spacing_mm=(6.0, 6.0, 7.0))


def _to_hu(image: torch.Tensor, spec: PreprocessSpec) -> np.ndarray:
    return unwindow(image[0].numpy(), spec).astype(np.float64)


def test_unwindow_undoes_the_window() -> None:
    spec = PreprocessSpec()
    hu = torch.tensor([-1000.0, -850.0, 0.0, 40.0, 1000.0])
    assert np.allclose(unwindow(window(hu, spec).numpy(), spec), hu.numpy(), atol=1e-3)


def test_default_grid_covers_an_adult_thorax() -> None:
    extent = PreprocessSpec().extent_mm
    assert extent[0] >= 360 and extent[1] >= 360 and extent[2] >= 320


def test_spec_round_trips_through_json() -> None:
    spec = PreprocessSpec(grid_shape=(32, 32, 24))
    assert PreprocessSpec.from_json(spec.to_json()) == spec


def test_nodule_lands_at_its_ras_position(tmp_path: Path, phantoms: ModuleType) -> None:
    # A nodule on the patient's right (LPS x < 0), anterior (LPS y < 0), superior (z > 0).
    nodule = phantoms.PhantomNodule(centre_lps=(-70.0, -20.0, 40.0), diameter_mm=30.0, hu=100.0)
    phantoms.write_chest_series(
        tmp_path / "s", nodules=[nodule], pixel_spacing=3.0, rows=128, columns=128
    )
    prepared = preprocess(tmp_path / "s", SMALL_SPEC)
    hu = _to_hu(prepared.image, SMALL_SPEC)
    expected = prepared.grid.ras_to_voxel(np.array(nodule.centre_lps) * LPS_TO_RAS)
    # The nodule is the only soft tissue inside the right lung: find it there.
    i, j, k = np.round(expected).astype(int)
    assert hu[i, j, k] > 0, "the nodule is not where its RAS coordinates say"
    # The mirrored point (patient's left) is lung.
    mirrored = prepared.grid.ras_to_voxel(np.array([-70.0, 20.0, 40.0]))
    assert hu[tuple(np.round(mirrored).astype(int))] < -600
    assert prepared.quality.grid_coverage == pytest.approx(1.0)
    assert prepared.quality.lung_truncated == pytest.approx(0.0)


def test_file_order_does_not_matter(tmp_path: Path, phantoms: ModuleType) -> None:
    _, hu = phantoms.write_chest_series(tmp_path / "a", slices=30)
    z = [(k - 14.5) * 7.0 for k in range(30)]
    origins = phantoms.axial_origins(rows=64, columns=64, pixel_spacing=6.0, z_positions=z)
    phantoms.write_ct_series(
        tmp_path / "b", hu, pixel_spacing=6.0, origins_lps=origins, shuffle_names=False
    )
    a = preprocess(tmp_path / "a", SMALL_SPEC)
    b = preprocess(tmp_path / "b", SMALL_SPEC)
    assert torch.equal(a.image, b.image)
    assert [s.instance_number for s in a.stack.slices] == list(range(1, 31))


def _tilted_series(
    tmp_path: Path, phantoms: ModuleType, *, tilt_deg: float, spacings: list[float]
) -> tuple[Path, np.ndarray]:
    """A ball sampled on gantry-tilted planes: rows along x, columns tilted in y-z."""
    centre = np.array([10.0, -15.0, 30.0])
    radius = 40.0
    angle = np.deg2rad(tilt_deg)
    row_dir = np.array([1.0, 0.0, 0.0])
    col_dir = np.array([0.0, np.cos(angle), -np.sin(angle)])
    rows = columns = 64
    spacing = 3.0
    z_positions = np.concatenate([[0.0], np.cumsum(spacings)]) - sum(spacings) / 2 + 30.0
    origins = np.array(
        [
            [-(columns - 1) / 2 * spacing, -(rows - 1) / 2 * spacing * np.cos(angle), z]
            for z in z_positions
        ]
    )
    rr, cc = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    hu = np.full((len(z_positions), rows, columns), -1000, dtype=np.int16)
    for k, origin in enumerate(origins):
        points = (
            origin[None, None, :]
            + cc[..., None] * spacing * row_dir
            + rr[..., None] * spacing * col_dir
        )
        inside = np.linalg.norm(points - centre, axis=-1) <= radius
        hu[k][inside] = 100
    folder = tmp_path / "tilt"
    phantoms.write_ct_series(
        folder,
        hu,
        pixel_spacing=spacing,
        origins_lps=origins,
        orientation=(*row_dir, *col_dir),
        slice_thickness=[float(s) for s in [spacings[0], *spacings]],
    )
    return folder, centre


def test_tilted_gantry_with_mixed_spacing_is_resampled_onto_world_positions(
    tmp_path: Path, phantoms: ModuleType
) -> None:
    spacings = [2.0] * 20 + [5.0] * 16
    folder, centre = _tilted_series(tmp_path, phantoms, tilt_deg=20.0, spacings=spacings)
    spec = PreprocessSpec(
        grid_shape=(48, 48, 48), grid_spacing_mm=(3.0, 3.0, 3.0), min_coverage_mm=50
    )
    prepared = preprocess(folder, spec)
    assert any("tilt" in w for w in prepared.warnings)
    hu = _to_hu(prepared.image, spec)
    ball = hu > -450
    index = np.argwhere(ball)
    centroid_ras = prepared.grid.voxel_to_ras(index.mean(axis=0))
    expected_ras = centre * LPS_TO_RAS
    assert np.allclose(centroid_ras, expected_ras, atol=1.5), (centroid_ras, expected_ras)
    volume_ml = ball.sum() * 27 / 1000
    assert volume_ml == pytest.approx(4 / 3 * np.pi * 40**3 / 1000, rel=0.08)


def test_general_and_axis_aligned_sampling_agree(tmp_path: Path, phantoms: ModuleType) -> None:
    from models import preprocess as module

    phantoms.write_chest_series(tmp_path / "s", slices=30, noise_hu=20)
    prepared = preprocess(tmp_path / "s", SMALL_SPEC)
    pooled = module._pool(prepared.stack, (1, 1, 1))
    fast = sample_stack(prepared.stack, pooled, prepared.grid)
    general = module._sample_general(prepared.stack, pooled, prepared.grid, fill_hu=-1000.0)
    assert float((fast - general).abs().max()) < 0.05


def test_patch_measures_a_nodule_at_full_resolution(tmp_path: Path, phantoms: ModuleType) -> None:
    nodule = phantoms.PhantomNodule(centre_lps=(60.0, 10.0, -5.0), diameter_mm=8.0, hu=60.0)
    phantoms.write_chest_series(
        tmp_path / "s",
        nodules=[nodule],
        rows=256,
        columns=256,
        pixel_spacing=1.5,
        slices=120,
        slice_spacing=1.0,
    )
    prepared = preprocess(tmp_path / "s", SMALL_SPEC)
    spec = PreprocessSpec(patch_shape=(24, 24, 24), patch_spacing_mm=0.75)
    patch = extract_patch(prepared, np.array(nodule.centre_lps) * LPS_TO_RAS, spec=spec)
    assert patch.shape == (1, 24, 24, 24)
    hu = _to_hu(patch, spec)
    dense = hu > -400  # half way between lung (-850) and nodule (+60)
    diameter = 2 * (dense.sum() * 0.75**3 * 3 / (4 * np.pi)) ** (1 / 3)
    assert diameter == pytest.approx(8.0, abs=1.0)
    assert dense[12, 12, 12]


def test_a_big_gap_is_broken_geometry(tmp_path: Path, phantoms: ModuleType) -> None:
    z = [*(k * 5.0 for k in range(15)), *(200 + k * 5.0 for k in range(15))]
    hu = np.zeros((30, 32, 32), dtype=np.int16)
    origins = phantoms.axial_origins(rows=32, columns=32, pixel_spacing=5.0, z_positions=z)
    phantoms.write_ct_series(tmp_path / "gap", hu, pixel_spacing=5.0, origins_lps=origins)
    with pytest.raises(BrokenGeometryError, match="gap"):
        preprocess(tmp_path / "gap", SMALL_SPEC)


def test_duplicate_positions_are_broken_geometry(tmp_path: Path, phantoms: ModuleType) -> None:
    z = [k * 5.0 for k in range(25)] + [0.0]
    hu = np.zeros((26, 32, 32), dtype=np.int16)
    origins = phantoms.axial_origins(rows=32, columns=32, pixel_spacing=5.0, z_positions=z)
    phantoms.write_ct_series(tmp_path / "dup", hu, pixel_spacing=5.0, origins_lps=origins)
    with pytest.raises(BrokenGeometryError, match="share a position"):
        preprocess(tmp_path / "dup", SMALL_SPEC)


def test_too_few_slices(tmp_path: Path, phantoms: ModuleType) -> None:
    phantoms.write_chest_series(tmp_path / "few", slices=8)
    with pytest.raises(TooFewSlicesError):
        preprocess(tmp_path / "few", SMALL_SPEC)


def test_nifti_and_dicom_give_the_same_grid(tmp_path: Path, phantoms: ModuleType) -> None:
    import nibabel as nib

    phantoms.write_chest_series(tmp_path / "dcm", slices=30)
    from_dicom = preprocess(tmp_path / "dcm", SMALL_SPEC)
    stack = from_dicom.stack
    # NIfTI data[i, j, k] = pixels[k, row=j, column=i]; affine maps to RAS.
    affine = np.eye(4)
    affine[:3, 0] = stack.row_direction * stack.pixel_spacing_mm[1] * LPS_TO_RAS
    affine[:3, 1] = stack.column_direction * stack.pixel_spacing_mm[0] * LPS_TO_RAS
    affine[:3, 2] = (stack.origins_lps[1] - stack.origins_lps[0]) * LPS_TO_RAS
    affine[:3, 3] = stack.origins_lps[0] * LPS_TO_RAS
    nib.save(nib.Nifti1Image(np.transpose(stack.pixels, (2, 1, 0)), affine), tmp_path / "v.nii.gz")
    from_nifti = preprocess(tmp_path / "v.nii.gz", SMALL_SPEC)
    assert from_nifti.grid == from_dicom.grid
    assert float((from_nifti.image - from_dicom.image).abs().max()) < 1e-4


def test_preview_pooling_matches_torch_average_pooling() -> None:
    from models.dicom_loader import average_pool_2d

    image = np.random.default_rng(0).integers(-1000, 2000, (65, 70)).astype(np.int16)
    expected = torch.nn.functional.avg_pool2d(
        torch.from_numpy(image.astype(np.float32))[None], kernel_size=(3, 2), stride=(3, 2)
    )[0].numpy()
    assert np.allclose(average_pool_2d(image, (3, 2)), expected, atol=1e-3)


@pytest.mark.parametrize(
    ("stored", "slope", "intercept", "expected"),
    [
        (np.array([[0, 1024, 3000]], dtype=np.uint16), 1.0, -1024.0, [-1024, 0, 1976]),
        (np.array([[0, 65535, 40000]], dtype=np.uint16), 1.0, -1024.0, [-1024, 32767, 32767]),
        (np.array([[-2000, 10, 500]], dtype=np.int16), 0.5, -10.0, [-1010, -5, 240]),
    ],
)
def test_rescale_to_hu_never_overflows(
    stored: np.ndarray, slope: float, intercept: float, expected: list[int]
) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from models.dicom_loader import _decode_into, _Header

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    ds.RescaleSlope, ds.RescaleIntercept = str(slope), str(intercept)
    ds.PixelData = stored.tobytes()
    out = np.zeros((1, *stored.shape), dtype=np.int16)
    _decode_into(out, None, (1, 1), 0, _Header(path=Path("x.dcm"), dataset=ds), "1.2.3")
    assert out[0].tolist() == [expected]


def test_a_fine_stack_is_band_limited_to_the_grid_before_resampling() -> None:
    """One noise field scanned with 1.5 mm and with 2.25 mm voxels looks alike on the grid."""
    from models.preprocess import prepare_stack
    from models.volume import SliceRef, SliceStack

    rng = np.random.default_rng(5)
    field = rng.normal(0, 60, (162, 162, 162)).astype(np.float32)  # 0.75 mm voxels

    def scanned(factor: int) -> SliceStack:
        n = 162 // factor
        blocks = field[: n * factor, : n * factor, : n * factor]
        pixels = blocks.reshape(n, factor, n, factor, n, factor).mean(axis=(1, 3, 5)) + 40
        mm = 0.75 * factor
        k = np.arange(n, dtype=np.float64)
        return SliceStack(
            pixels=np.rint(pixels).astype(np.int16),
            origins_lps=np.stack([np.full_like(k, -60.0), np.full_like(k, -60.0), k * mm], 1),
            row_direction=np.array([1.0, 0.0, 0.0]),
            column_direction=np.array([0.0, 1.0, 0.0]),
            pixel_spacing_mm=(mm, mm),
            slices=[
                SliceRef(instance_number=int(i) + 1, sop_instance_uid=None, file_name=None)
                for i in k
            ],
            description="noise",
        )

    def noise(stack: SliceStack, spec: PreprocessSpec) -> float:
        image = prepare_stack(stack, spec).image[0].numpy()
        return float(image[8:-8, 8:-8, 8:-8].std())  # inside the scanned volume

    spec = PreprocessSpec(grid_shape=(40, 40, 40), grid_spacing_mm=(2.25, 2.25, 2.25))
    acquired_on_grid = noise(scanned(3), spec)
    fine = noise(scanned(2), spec)
    unfiltered = noise(scanned(2), dataclasses.replace(spec, band_limit=0.0))
    assert unfiltered > 1.5 * acquired_on_grid  # what whole-factor pooling and trilinear leave
    # closer to the on-grid scan (white noise overshoots a little: CT noise has less power
    # at low frequencies; on the generator's CT noise 0.75 lands within about 10 %)
    assert abs(fine - acquired_on_grid) < 0.5 * abs(unfiltered - acquired_on_grid)
    round_tripped = PreprocessSpec.from_json(spec.to_json())
    assert round_tripped.band_limit == spec.band_limit
    older = {k: v for k, v in spec.to_json().items() if k != "band_limit"}
    assert PreprocessSpec.from_json(older) == spec  # sidecars from before keep the default
