"""Data sources: CT-RATE layout (same loader), hospital export, synthetic fast path."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from models.findings import Finding
from models.preprocess import PreprocessSpec
from models.training.ctrate import LayoutError, read_split, resolve_paths
from models.training.hospital import read_export
from models.training.volume_cache import build_split_cache

SPEC = PreprocessSpec(grid_shape=(32, 32, 32), grid_spacing_mm=(12.0, 12.0, 10.0))


def _fixtures() -> ModuleType:
    name = "radscribe_train_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("train_fixtures.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_ctrate_layout_reads_reports_labels_metadata_and_raw_values(tmp_path: Path) -> None:
    fixtures = _fixtures()
    hu_root = fixtures.write_ctrate(tmp_path / "hu", train=3, valid=1)
    raw_root = fixtures.write_ctrate(tmp_path / "raw", train=3, valid=1, raw_values=True)
    records = read_split(resolve_paths(hu_root), "train")
    assert [r.study_id for r in records] == [f"train_{n}_a_1.nii.gz" for n in (1, 2, 3)]
    assert records[2].emr_text is None  # "Not given."
    assert records[0].emr_text == "Cough and fever."
    assert records[1].labels[9] == 1.0 and records[0].labels[9] == 0.0  # lung nodule
    assert records[0].spacing_mm == (8.0, 8.0, 8.0) and records[0].rescale is None
    assert "nodule" in (records[1].report_text or "")
    raw = read_split(resolve_paths(raw_root), "train", volumes_in_hu=False)
    assert raw[0].rescale == (1.0, -1024.0)
    a = build_split_cache(tmp_path / "cache_hu", "train", records, SPEC, progress=False)
    b = build_split_cache(tmp_path / "cache_raw", "train", raw, SPEC, progress=False)
    assert len(a) == len(b) == 3 and not a.refused
    np.testing.assert_array_equal(a.image(0), b.image(0))
    assert a.image(0).min() == pytest.approx(-1.0, abs=0.05)  # air outside the body


def test_ctrate_layout_errors_name_what_is_missing(tmp_path: Path) -> None:
    root = _fixtures().write_ctrate(tmp_path / "ct", train=2, valid=1)
    with pytest.raises(LayoutError, match="radiology_text_reports"):
        resolve_paths(tmp_path / "empty", image_dir=root / "dataset")
    labels = root / "multi_abnormality_labels" / "train_predicted_labels.csv"
    rows = list(csv.DictReader(labels.open()))
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["VolumeName", "Lung nodule"], extrasaction="ignore"
        )
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(LayoutError, match="lacks the columns"):
        read_split(resolve_paths(root), "train")
    labels.unlink()  # no label file: the reports are labelled by the report labeler
    records = read_split(resolve_paths(root), "train")
    assert records[1].labels[9] == 1.0 and not math.isnan(records[0].labels[0])


def test_hospital_export_is_labelled_from_signed_reports(tmp_path: Path) -> None:
    root = _fixtures().write_hospital_export(tmp_path / "export", studies=3)
    train = read_export(root, "train")
    valid = read_export(root, "valid")
    assert [r.study_id for r in train] == ["ACC0000", "ACC0001"] and len(valid) == 1
    nodule = list(Finding).index(Finding.LUNG_NODULE)
    assert train[1].labels[nodule] == 1.0 and train[0].labels[nodule] == 0.0  # "No lung nodule."
    cached = build_split_cache(tmp_path / "cache", "train", train, SPEC, progress=False)
    assert len(cached) == 2 and cached.image(1).shape == SPEC.grid_shape
    with (root / "reports.csv").open("a") as handle:
        handle.write("../outside,Report text.,,train\n")
    with pytest.raises(LayoutError, match="not a folder inside"):
        read_export(root, "train")


def test_synthetic_fast_path_places_nodules_where_the_image_shows_them(tmp_path: Path) -> None:
    from models.training.synthetic_source import prepare_synthetic, synthetic_records

    records = synthetic_records("train", 40)
    nodule = list(Finding).index(Finding.LUNG_NODULE)
    record = next(r for r in records if r.labels[nodule] == 1.0)
    assert not any(r.study_id == record.study_id for r in synthetic_records("test", 40))
    study = prepare_synthetic(record, PreprocessSpec())
    assert study.nodules and study.report_text and "nodule" in study.report_text.lower()
    image = study.image[0].numpy()
    for n in study.nodules:
        i, j, k = np.round(study.grid.ras_to_voxel(np.asarray(n.centre_ras))).astype(int)
        if n.diameter_mm >= 8:  # large enough to dominate its voxel at 2.25 mm
            assert image[i, j, k] > -0.5, n  # denser than aerated lung (-0.8 and below)


def test_the_synthetic_data_set_in_ct_rate_layout_loads_with_nodule_truth(tmp_path: Path) -> None:
    from models.synthetic.dataset import DatasetOptions, build_dataset

    build_dataset(tmp_path / "synth", DatasetOptions(n=3, seed=7, fractions=(0.34, 0.33, 0.33)))
    paths = resolve_paths(tmp_path / "synth")
    records = read_split(paths, "train") + read_split(paths, "test")
    assert records and all(r.nodules is not None for r in records)  # truth files were read
    nodule = list(Finding).index(Finding.LUNG_NODULE)
    assert all(bool(r.nodules) == (r.labels[nodule] == 1.0) for r in records)
    cached = build_split_cache(
        tmp_path / "cache", "train", records[:1], PreprocessSpec(), progress=False
    )
    assert len(cached) == 1 and cached.studies[0].emr_text == records[0].emr_text


def test_a_coarse_share_of_synthetic_studies_keeps_its_acquisition_matrix() -> None:
    from models.synthetic.generator import model_grid_geometry
    from models.synthetic.spec import sample_study_spec
    from models.training.synthetic_source import (
        COARSE_MATRICES,
        MATRIX_KEY,
        synthetic_records,
    )

    full = synthetic_records("train", 60)
    mixed = synthetic_records("train", 60, coarse_fraction=0.5)
    assert [r.study_id for r in full] == [r.study_id for r in mixed]  # same studies, same labels
    assert [r.labels for r in full] == [r.labels for r in mixed]
    assert not any(r.extra for r in full)
    coarse = [r for r in mixed if MATRIX_KEY in r.extra]
    assert 15 <= len(coarse) <= 45
    assert {int(r.extra[MATRIX_KEY]) for r in coarse} <= set(COARSE_MATRICES)
    assert synthetic_records("train", 60, coarse_fraction=0.5) == mixed  # chosen by seed
    record = next(r for r in coarse if int(r.extra[MATRIX_KEY]) <= 128)
    assert record.seed is not None
    spec = sample_study_spec(record.seed, matrix=int(record.extra[MATRIX_KEY]))
    grid = model_grid_geometry(spec, spacing_mm=2.25, matrix=160)
    assert grid.pixel_spacing == spec.acquisition.geometry.pixel_spacing > 2.25
    assert abs(grid.rows * grid.pixel_spacing - 360.0) < grid.pixel_spacing  # same field of view
    fine = model_grid_geometry(sample_study_spec(record.seed), spacing_mm=2.25, matrix=160)
    assert (fine.rows, fine.pixel_spacing) == (160, 2.25)


def test_widely_spaced_slices_keep_their_spacing_on_the_fast_path() -> None:
    from models.synthetic.generator import model_grid_geometry
    from models.synthetic.spec import sample_study_spec

    spec = sample_study_spec(11, n_slices=40)
    acquired = spec.acquisition.geometry
    assert acquired.slice_spacing > 5.0
    grid = model_grid_geometry(spec, spacing_mm=2.25, matrix=160)
    assert grid.slice_spacing == acquired.slice_spacing
    assert grid.n_slices == acquired.n_slices
    thin = model_grid_geometry(sample_study_spec(11, n_slices=300), spacing_mm=2.25, matrix=160)
    assert thin.slice_spacing == 2.25
