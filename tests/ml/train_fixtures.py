"""Small data sets for the training tests: a CT-RATE layout of NIfTI phantoms and a
hospital export of DICOM phantoms with report texts.

The phantoms come from ``phantoms.py``; a study with a lung nodule gets a large
nodule, a study with pleural effusion gets fluid in the lung bases, so the labels
have something to do with the images.  Loaded by path (tests are not a package).
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

FINDING_NAMES = (
    "Medical material",
    "Arterial wall calcification",
    "Cardiomegaly",
    "Pericardial effusion",
    "Coronary artery wall calcification",
    "Hiatal hernia",
    "Lymphadenopathy",
    "Emphysema",
    "Atelectasis",
    "Lung nodule",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
    "Pleural effusion",
    "Mosaic attenuation pattern",
    "Peribronchial thickening",
    "Consolidation",
    "Bronchiectasis",
    "Interlobular septal thickening",
)
NODULE = FINDING_NAMES.index("Lung nodule")
EFFUSION = FINDING_NAMES.index("Pleural effusion")
PIXEL_MM = 8.0
SLICE_MM = 8.0
MATRIX = 48
SLICES = 40
RAW_OFFSET = 1024
"""The fixture stores raw values (HU + 1024) for the rescale test."""
TINY_TRAIN = {
    "image_encoder": "resnet10",
    "image_width": 0.125,
    "text_encoder": "tiny-random",
    "fusion_method": "co-attention",
    "model": {
        "image_backend": "torch",
        "stem_kernel": 3,
        "token_grid": [2, 2, 2],
        "d_model": 32,
        "layers": 1,
        "heads": 4,
        "ffn_mult": 2,
        "dropout": 0.0,
        "emr_max_tokens": 32,
        "dictation_max_tokens": 48,
        "gate_hidden": 8,
        "max_nodules": 4,
        "refiner_width": 4,
    },
    "preprocess": {
        "grid_shape": [32, 32, 32],
        "grid_spacing_mm": [12.0, 12.0, 10.0],
        "patch_shape": [12, 12, 12],
        "patch_spacing_mm": 2.0,
    },
    "batch_size": 4,
    "learning_rate": 1e-3,
    "epochs": 2,
    "amp": "off",
    "device": "cpu",
    "early_stopping_patience": 5,
    "image_only_loss_weight": 0.5,
}


def _phantoms() -> ModuleType:
    name = "radscribe_test_phantoms"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("phantoms.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def study_labels(index: int) -> list[int]:
    rng = np.random.default_rng(index)
    labels = [int(v) for v in rng.random(len(FINDING_NAMES)) < 0.3]
    labels[NODULE] = index % 2
    labels[EFFUSION] = int(index % 3 == 0)
    return labels


def study_hu(index: int) -> np.ndarray:
    """(slices, rows, columns) HU of a phantom chest matching ``study_labels(index)``."""
    phantoms = _phantoms()
    labels = study_labels(index)
    z = [(k - (SLICES - 1) / 2) * SLICE_MM for k in range(SLICES)]
    nodules = []
    if labels[NODULE]:
        side = -1 if index % 4 else 1
        nodules.append(
            phantoms.PhantomNodule(centre_lps=(75.0 * side, -10.0, 20.0), diameter_mm=30.0)
        )
    hu = phantoms.chest_hu(
        rows=MATRIX,
        columns=MATRIX,
        pixel_spacing=PIXEL_MM,
        z_positions=z,
        nodules=nodules,
        lung_z_range=(-120.0, 120.0),
        noise_hu=10.0,
        seed=index,
    ).astype(np.int16)
    if labels[EFFUSION]:
        y = (np.arange(MATRIX) - (MATRIX - 1) / 2) * PIXEL_MM
        lung = hu < -500
        posterior = y[None, :, None] > 30.0
        hu[lung & posterior] = 15
    return hu


def report_text(index: int) -> tuple[str, str]:
    labels = study_labels(index)
    findings = ["Trachea is patent."]
    findings.append(
        "A 30 mm nodule in the right lower lobe." if labels[NODULE] else "No lung nodule."
    )
    findings.append("Bilateral pleural effusion." if labels[EFFUSION] else "No pleural effusion.")
    impression = "Lung nodule." if labels[NODULE] else "No acute finding."
    return " ".join(findings), impression


def write_ctrate(root: Path, *, train: int = 8, valid: int = 4, raw_values: bool = False) -> Path:
    """A CT-RATE-layout folder: NIfTI volumes, reports, labels and metadata CSVs."""
    import nibabel as nib

    root.mkdir(parents=True, exist_ok=True)
    x0 = -(MATRIX - 1) / 2 * PIXEL_MM
    z0 = -(SLICES - 1) / 2 * SLICE_MM
    affine = np.array(
        [[-PIXEL_MM, 0, 0, -x0], [0, -PIXEL_MM, 0, -x0], [0, 0, SLICE_MM, z0], [0, 0, 0, 1]],
        dtype=np.float64,
    )
    counts = {"train": train, "valid": valid}
    for split, count in counts.items():
        reports, labels, metadata = [], [], []
        for n in range(count):
            index = n if split == "train" else 1000 + n
            name = f"{split}_{n + 1}_a_1.nii.gz"
            folder = root / "dataset" / split / f"{split}_{n + 1}" / f"{split}_{n + 1}_a"
            folder.mkdir(parents=True, exist_ok=True)
            hu = study_hu(index)
            stored = hu.astype(np.int32) + (RAW_OFFSET if raw_values else 0)
            data = np.ascontiguousarray(stored.transpose(2, 1, 0)).astype(np.int16)
            image = nib.Nifti1Image(data, affine)
            image.header.set_slope_inter(1.0, 0.0)
            nib.save(image, str(folder / name))
            findings, impression = report_text(index)
            reports.append(
                {
                    "VolumeName": name,
                    "ClinicalInformation_EN": "Not given." if n % 3 == 2 else "Cough and fever.",
                    "Technique_EN": "Non-contrast chest CT.",
                    "Findings_EN": findings,
                    "Impressions_EN": impression,
                }
            )
            labels.append(
                {"VolumeName": name, **dict(zip(FINDING_NAMES, study_labels(index), strict=True))}
            )
            metadata.append(
                {
                    "VolumeName": name,
                    "XYSpacing": f"[{PIXEL_MM}, {PIXEL_MM}]",
                    "ZSpacing": SLICE_MM,
                    "RescaleSlope": 1,
                    "RescaleIntercept": -RAW_OFFSET,
                }
            )
        report_name = "train_reports.csv" if split == "train" else "validation_reports.csv"
        meta_name = "train_metadata.csv" if split == "train" else "validation_metadata.csv"
        _write_csv(root / "radiology_text_reports" / report_name, reports)
        _write_csv(root / "multi_abnormality_labels" / f"{split}_predicted_labels.csv", labels)
        _write_csv(root / "metadata" / meta_name, metadata)
    return root


def write_hospital_export(root: Path, *, studies: int = 4) -> Path:
    """DICOM phantoms plus reports.csv (study, report, indication, split)."""
    phantoms = _phantoms()
    rows = []
    for n in range(studies):
        folder = root / f"ACC{n:04d}"
        hu = study_hu(n)
        z = [(k - (SLICES - 1) / 2) * SLICE_MM for k in range(SLICES)]
        origins = phantoms.axial_origins(
            rows=MATRIX, columns=MATRIX, pixel_spacing=PIXEL_MM, z_positions=z
        )
        phantoms.write_ct_series(folder, hu, pixel_spacing=PIXEL_MM, origins_lps=origins)
        findings, impression = report_text(n)
        rows.append(
            {
                "study": folder.name,
                "report": f"{findings} {impression}",
                "indication": "Cough.",
                "split": "valid" if n == studies - 1 else "train",
            }
        )
    _write_csv(root / "reports.csv", rows)
    return root


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
