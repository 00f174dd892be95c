"""A synthetic data set in the CT-RATE layout, deterministic by seed.

Layout under ``out`` (the same loader reads this and CT-RATE)::

    dataset/{train,valid,test}/<split>_<n>/<split>_<n>_a/<split>_<n>_a_1.nii.gz
    dataset/radiology_text_reports/{train,validation,test}_reports.csv
    dataset/multi_abnormality_labels/{train,valid,test}_predicted_labels.csv
    dataset/metadata/{train,validation,test}_metadata.csv
    dataset/studies/<split>/<VolumeName without .nii.gz>/truth.json  (+ dicom/, masks, HL7, audio)

Volumes are int16 Hounsfield units with a correct RAS affine; the metadata's
RescaleSlope (1) and RescaleIntercept (0) describe the stored NIfTI values, so
applying them, as CT-RATE loaders do, is harmless.  The fast path renders each
study directly on the model grid (``spacing_mm``, ``matrix``), with noise
reduced as if a finer acquisition had been resampled.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.findings import FINDINGS
from models.synthetic.generator import model_grid_geometry, render_study
from models.synthetic.spec import sample_study_spec
from models.synthetic.study_files import (
    DICOM_DIR,
    GeneratedStudy,
    describe,
    truth_document,
    write_json,
    write_nifti,
    write_study,
)

SPLITS = ("train", "valid", "test")
CSV_PREFIX = {"train": "train", "valid": "validation", "test": "test"}
LABEL_PREFIX = {"train": "train", "valid": "valid", "test": "test"}
REPORT_COLUMNS = (
    "VolumeName",
    "ClinicalInformation_EN",
    "Technique_EN",
    "Findings_EN",
    "Impressions_EN",
)
METADATA_COLUMNS = (
    "VolumeName",
    "Manufacturer",
    "ManufacturerModelName",
    "PatientSex",
    "PatientAge",
    "ReconstructionDiameter",
    "KVP",
    "Exposure",
    "ConvolutionKernel",
    "ContrastBolusAgent",
    "PatientPosition",
    "SliceThickness",
    "XYSpacing",
    "ZSpacing",
    "Rows",
    "Columns",
    "NumberofSlices",
    "RescaleIntercept",
    "RescaleSlope",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "AccessionNumber",
    "StudyInstanceUID",
    "Seed",
    "Difficulty",
    "HardReasons",
    "AcquiredPixelSpacing",
    "AcquiredSliceThickness",
)
STUDY_SEED_STRIDE = 1_000_000  # study seed = dataset seed * stride + index


@dataclass(frozen=True)
class DatasetOptions:
    n: int
    seed: int = 0
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    fast: bool = True
    spacing_mm: float = 2.25
    matrix: int = 160
    dicom_fraction: float = 0.0  # share of studies that also get a full DICOM series
    dicom_matrix: int = 512
    masks: bool = False
    workers: int = 1

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if self.seed < 0 or self.seed >= 10_000:
            raise ValueError("seed must be in 0..9999")
        if abs(sum(self.fractions) - 1.0) > 1e-6 or min(self.fractions) < 0:
            raise ValueError("split fractions must be non-negative and sum to 1")
        if not 0.0 <= self.dicom_fraction <= 1.0:
            raise ValueError("dicom_fraction must be between 0 and 1")


@dataclass(frozen=True)
class DatasetItem:
    """One study of the data set, as the builder and its per-study hook see it."""

    index: int
    split: str
    volume_name: str
    study_seed: int
    study_dir: Path  # dataset/studies/<split>/<stem>
    volume_path: Path


def split_counts(options: DatasetOptions) -> dict[str, int]:
    """Studies per split: largest remainders, and at least one per split from n = 3 on."""
    raw = [f * options.n for f in options.fractions]
    counts = [int(np.floor(r)) for r in raw]
    for i in sorted(range(3), key=lambda i: raw[i] - counts[i], reverse=True)[
        : options.n - sum(counts)
    ]:
        counts[i] += 1
    if options.n >= len(SPLITS):
        for i in range(len(SPLITS)):
            if counts[i] == 0 and options.fractions[i] > 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] += 1
    return dict(zip(SPLITS, counts, strict=True))


def assign_splits(options: DatasetOptions) -> list[str]:
    """Split of each study index (deterministic by seed)."""
    order = np.random.default_rng([options.seed, 7]).permutation(options.n)
    counts = split_counts(options)
    names = [name for name in SPLITS for _ in range(counts[name])]
    splits = [""] * options.n
    for rank, index in enumerate(order):
        splits[int(index)] = names[rank]
    return splits


def plan_items(out: Path, options: DatasetOptions) -> list[DatasetItem]:
    splits = assign_splits(options)
    counters = dict.fromkeys(SPLITS, 0)
    items = []
    for index, split in enumerate(splits):
        counters[split] += 1
        stem = f"{split}_{counters[split]}_a_1"
        volume = (
            out
            / "dataset"
            / split
            / f"{split}_{counters[split]}"
            / f"{split}_{counters[split]}_a"
            / f"{stem}.nii.gz"
        )
        items.append(
            DatasetItem(
                index=index,
                split=split,
                volume_name=f"{stem}.nii.gz",
                study_seed=options.seed * STUDY_SEED_STRIDE + index,
                study_dir=out / "dataset" / "studies" / split / stem,
                volume_path=volume,
            )
        )
    return items


def _wants_dicom(options: DatasetOptions, item: DatasetItem) -> bool:
    if options.dicom_fraction <= 0:
        return False
    return bool(
        np.random.default_rng([options.seed, item.index, 11]).random() < options.dicom_fraction
    )


def build_item(item: DatasetItem, options: DatasetOptions) -> dict[str, Any]:
    """Render and write one study; returns its CSV rows (report, labels, metadata)."""
    spec = sample_study_spec(item.study_seed, matrix=options.dicom_matrix)
    geom = (
        model_grid_geometry(spec, spacing_mm=options.spacing_mm, matrix=options.matrix)
        if options.fast
        else None
    )
    rendered = render_study(
        spec,
        geometry=geom,
        with_masks=options.masks,
        acquired_pixel_mm=spec.acquisition.geometry.pixel_spacing if options.fast else None,
        threads=1,
    )
    study = describe(rendered)
    item.volume_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = item.volume_path.with_name(".tmp-" + item.volume_path.name)
    write_nifti(rendered.hu, rendered.geometry, tmp)
    os.replace(tmp, item.volume_path)
    if item.study_dir.exists():
        shutil.rmtree(item.study_dir)
    files: dict[str, str | None] = {"volume": os.path.relpath(item.volume_path, item.study_dir)}
    if _wants_dicom(options, item):
        full = (
            describe(render_study(spec, with_masks=options.masks, threads=1))
            if options.fast
            else study
        )
        doc = write_study(full, item.study_dir, dicom=True, masks=options.masks, threads=1)
        doc["files"]["volume"] = files["volume"]
        doc["dataset"] = {"split": item.split, "volume_name": item.volume_name}
        write_json(item.study_dir / "truth.json", doc)
    else:
        item.study_dir.mkdir(parents=True)
        doc = truth_document(study, files={**files, "dicom": None, "truth": "truth.json"})
        doc["dataset"] = {"split": item.split, "volume_name": item.volume_name}
        write_json(item.study_dir / "truth.json", doc)
    return _rows(item, study, doc)


def _rows(item: DatasetItem, study: GeneratedStudy, doc: dict[str, Any]) -> dict[str, Any]:
    r = study.rendered
    spec = r.spec
    g = r.geometry
    acq = spec.acquisition
    report = {
        "VolumeName": item.volume_name,
        "ClinicalInformation_EN": study.clinical.clinical_information,
        "Technique_EN": study.report.technique,
        "Findings_EN": study.report.findings,
        "Impressions_EN": study.report.impression,
    }
    labels = {"VolumeName": item.volume_name, **{f.value: int(f in r.present) for f in FINDINGS}}
    ipp = g.anatomical_to_patient((g.output_grid().origin[0], g.output_grid().origin[1], g.z_first))
    metadata = {
        "VolumeName": item.volume_name,
        "Manufacturer": acq.manufacturer,
        "ManufacturerModelName": acq.model,
        "PatientSex": spec.identity.sex,
        "PatientAge": f"{spec.identity.age:03d}Y",
        "ReconstructionDiameter": round(g.fov_mm, 2),
        "KVP": acq.kvp,
        "Exposure": round(acq.mas),
        "ConvolutionKernel": acq.kernel_name,
        "ContrastBolusAgent": acq.contrast_agent or "",
        "PatientPosition": g.patient_position,
        "SliceThickness": g.slice_thickness,
        "XYSpacing": f"[{g.pixel_spacing}, {g.pixel_spacing}]",
        "ZSpacing": g.slice_spacing,
        "Rows": g.rows,
        "Columns": g.cols,
        "NumberofSlices": g.n_slices,
        "RescaleIntercept": 0.0,
        "RescaleSlope": 1.0,
        "ImagePositionPatient": "[" + ", ".join(f"{v:.4f}" for v in ipp) + "]",
        "ImageOrientationPatient": "[1, 0, 0, 0, 1, 0]",
        "AccessionNumber": spec.identity.accession_number,
        "StudyInstanceUID": spec.identity.study_uid,
        "Seed": spec.seed,
        "Difficulty": "hard" if spec.hard else "standard",
        "HardReasons": ";".join(spec.hard_reasons),
        "AcquiredPixelSpacing": acq.geometry.pixel_spacing,
        "AcquiredSliceThickness": acq.geometry.slice_thickness,
    }
    return {
        "split": item.split,
        "index": item.index,
        "report": report,
        "labels": labels,
        "metadata": metadata,
    }


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".tmp-" + path.name)
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def build_dataset(
    out: Path,
    options: DatasetOptions,
    *,
    on_study: Callable[[DatasetItem, dict[str, Any]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Build the data set; ``on_study(item, truth)`` runs in this process after each study
    (the application adds HL7 and dictation there).  Returns the study count per split."""
    items = plan_items(out, options)
    results: list[dict[str, Any]] = []

    def finished(row: dict[str, Any]) -> None:
        results.append(row)
        if on_study is not None:
            item = items[row["index"]]
            from models.synthetic.study_files import read_truth

            on_study(item, read_truth(item.study_dir))
        if progress is not None:
            progress(len(results), len(items))

    if options.workers > 1:
        with ProcessPoolExecutor(max_workers=options.workers) as pool:
            futures = [pool.submit(build_item, item, options) for item in items]
            for future in futures:
                finished(future.result())
    else:
        for item in items:
            finished(build_item(item, options))
    results.sort(key=lambda r: r["index"])
    root = out / "dataset"
    counts = {}
    for split in SPLITS:
        rows = [r for r in results if r["split"] == split]
        counts[split] = len(rows)
        _write_csv(
            root / "radiology_text_reports" / f"{CSV_PREFIX[split]}_reports.csv",
            REPORT_COLUMNS,
            [r["report"] for r in rows],
        )
        _write_csv(
            root / "multi_abnormality_labels" / f"{LABEL_PREFIX[split]}_predicted_labels.csv",
            ["VolumeName", *(f.value for f in FINDINGS)],
            [r["labels"] for r in rows],
        )
        _write_csv(
            root / "metadata" / f"{CSV_PREFIX[split]}_metadata.csv",
            METADATA_COLUMNS,
            [r["metadata"] for r in rows],
        )
    return counts


__all__ = [
    "DICOM_DIR",
    "DatasetItem",
    "DatasetOptions",
    "assign_splits",
    "build_dataset",
    "plan_items",
]
