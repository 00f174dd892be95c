"""Nodule measurement on cubes with known nodules: blurred, noisy, off-centre, touching the
chest wall, crossed by a vessel; ground glass; nothing to measure."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy import ndimage

from models.nodule_measure import (
    MAX_RAY_SPREAD,
    MEASURE_SHAPE,
    MEASURE_SPACING_MM,
    MIN_MEASURED_MM,
    measure,
    nodule_diameter,
)

LUNG_HU = -850.0
SOLID_HU = 40.0
GROUND_GLASS_HU = -570.0


def _cube(
    diameter_mm: float,
    *,
    offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    nodule_hu: float = SOLID_HU,
    blur_mm: float = 1.5,
    noise_hu: float = 25.0,
    wall: bool = False,
    vessel: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """A lung cube (1 mm voxels) with a sphere, blurred like a CT and with noise."""
    shape = MEASURE_SHAPE
    axes = [(np.arange(n) - (n - 1) / 2) * MEASURE_SPACING_MM for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    cube = np.full(shape, LUNG_HU, dtype=np.float32)
    dx, dy, dz = x - offset_mm[0], y - offset_mm[1], z - offset_mm[2]
    cube[np.sqrt(dx**2 + dy**2 + dz**2) <= diameter_mm / 2] = nodule_hu
    if wall:  # chest wall touching the nodule's side
        cube[x >= offset_mm[0] + diameter_mm / 2] = SOLID_HU
    if vessel:  # a 3 mm vessel through the nodule
        cube[np.sqrt(dy**2 + (dz - 2.0) ** 2) <= 1.5] = SOLID_HU
    cube = ndimage.gaussian_filter(cube, blur_mm / MEASURE_SPACING_MM)
    rng = np.random.default_rng(seed)
    return cube + rng.normal(0, noise_hu, shape).astype(np.float32)


@pytest.mark.parametrize("diameter", [8.0, 12.0, 20.0, 30.0])
def test_a_blurred_noisy_solid_nodule_is_measured_within_a_millimetre(diameter: float) -> None:
    result = measure(_cube(diameter))
    assert result is not None and result.kind == "solid"
    assert abs(result.diameter_mm - diameter) <= 0.7
    assert 1.0 <= result.blur_mm <= 2.0  # the cube was blurred with sigma 1.5 mm


def test_an_off_centre_candidate_is_recentred() -> None:
    result = measure(_cube(16.0, offset_mm=(4.0, -3.0, 2.0)))
    assert result is not None and abs(result.diameter_mm - 16.0) <= 0.8


def test_the_chest_wall_and_a_vessel_do_not_count_as_nodule() -> None:
    against_wall = measure(_cube(14.0, wall=True))
    assert against_wall is not None and abs(against_wall.diameter_mm - 14.0) <= 1.0
    assert against_wall.rays_used < 0.95  # rays into the wall found no edge
    crossed = measure(_cube(14.0, vessel=True))
    assert crossed is not None and abs(crossed.diameter_mm - 14.0) <= 1.0


def test_ground_glass_is_measured_at_its_own_half_maximum() -> None:
    result = measure(_cube(18.0, nodule_hu=GROUND_GLASS_HU, noise_hu=15.0))
    assert result is not None and result.kind == "ground-glass"
    assert abs(result.diameter_mm - 18.0) <= 1.0


def test_plain_lung_has_nothing_to_measure_and_the_refiner_reading_stands() -> None:
    lung = _cube(0.0)
    assert measure(lung) is None
    assert nodule_diameter(6.3, lung, head_mm=7.0) == (6.3, "refiner")
    assert nodule_diameter(6.3, None, head_mm=7.0) == (6.3, "refiner")


def test_small_nodules_keep_the_refiner_reading_and_large_ones_are_measured() -> None:
    small = _cube(5.0)
    assert nodule_diameter(5.2, small, head_mm=6.0) == (5.2, "refiner")
    large, source = nodule_diameter(9.0, _cube(22.0), head_mm=18.0)
    assert source == "measured" and abs(large - 22.0) <= 0.7
    assert large >= MIN_MEASURED_MM


def test_an_elongated_density_is_not_measured_as_a_nodule() -> None:
    """A false candidate on a band of consolidation: the edge distances spread widely,
    so the draft keeps the network's reading instead of stating a large nodule."""
    shape = MEASURE_SHAPE
    axes = [(np.arange(n) - (n - 1) / 2) * MEASURE_SPACING_MM for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    cube = np.full(shape, LUNG_HU, dtype=np.float32)
    cube[(np.abs(y) <= 5.0) & (np.abs(z) <= 5.0) & (np.abs(x) <= 22.0)] = SOLID_HU
    cube = ndimage.gaussian_filter(cube, 1.5)
    measured = measure(cube)
    assert measured is not None and measured.ray_spread > MAX_RAY_SPREAD
    assert nodule_diameter(7.5, cube, head_mm=9.0) == (7.5, "refiner")


def test_a_measurement_far_beyond_the_network_reading_is_not_stated() -> None:
    """A round density twice the size the network saw is something else (a mass-like
    structure next to the candidate): the refiner's reading stands."""
    round_density = _cube(26.0)
    assert nodule_diameter(7.0, round_density, head_mm=10.0) == (7.0, "refiner")
    diameter, source = nodule_diameter(9.0, round_density, head_mm=16.0)
    assert source == "measured" and abs(diameter - 26.0) <= 0.7


def test_a_nodule_in_a_dicom_series_is_measured_through_the_product_path(
    tmp_path: Path, phantoms: ModuleType
) -> None:
    """DICOM files -> preprocess -> the measuring cube (extract_patch) -> nodule_diameter,
    as the drafter does, with the candidate 3 mm off the nodule's centre."""
    from models.nodule_measure import measuring_spec
    from models.preprocess import PreprocessSpec, extract_patch, preprocess, unwindow
    from models.volume import LPS_TO_RAS

    nodule = phantoms.PhantomNodule(centre_lps=(70.0, 5.0, -10.0), diameter_mm=18.0, hu=40.0)
    phantoms.write_chest_series(
        tmp_path / "s",
        nodules=[nodule],
        rows=200,
        columns=200,
        pixel_spacing=1.5,
        slices=90,
        slice_spacing=1.25,
        noise_hu=15.0,
    )
    spec = PreprocessSpec(grid_shape=(32, 32, 32), grid_spacing_mm=(10.0, 10.0, 10.0))
    prepared = preprocess(tmp_path / "s", spec)
    candidate = (np.array(nodule.centre_lps) + np.array([2.0, -2.0, 1.0])) * LPS_TO_RAS
    cube = extract_patch(prepared, candidate, spec=measuring_spec(spec))[0].numpy()
    diameter, source = nodule_diameter(7.0, unwindow(cube, spec), head_mm=15.0)
    assert source == "measured"
    assert diameter == pytest.approx(18.0, abs=1.0)


def test_the_nodule_bench_reports_diameter_error_by_size_and_type(tmp_path: Path) -> None:
    """bench/bench_nodule_diameter.py on four generated test studies (the fourth has a
    nodule) with the shipped weights."""
    import importlib.util
    import json

    bench = Path(__file__).resolve().parents[2] / "bench" / "bench_nodule_diameter.py"
    spec = importlib.util.spec_from_file_location("bench_nodule_diameter", bench)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "nodules.json"
    code = module.main(["--count", "4", "--cache", str(tmp_path / "cache"), "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["studies"] >= 1 and report["true_nodules"] >= 1
    assert set(report["diameter_by_size"]) == {"3-6 mm", "6-10 mm", "10-20 mm", "20-40 mm"}
    assert set(report["diameter_by_type"]) == {"solid", "part-solid", "ground-glass"}
    matched = sum(g["matched"] for g in report["diameter_by_size"].values())
    assert matched == report["detected"]
    false = report["false_candidates"]
    assert false["count"] == round(report["false_positives_per_study"] * report["studies"])
    assert 0 <= false["measured"] <= false["count"]
