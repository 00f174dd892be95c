"""The CT-RATE layout: volumes, report CSVs, multi-abnormality labels and metadata.

::

    ROOT/dataset/{train,valid}/<patient>/<scan>/<name>.nii.gz
    ROOT/radiology_text_reports/{train_reports,validation_reports}.csv
        VolumeName, ClinicalInformation_EN, Technique_EN, Findings_EN, Impressions_EN
    ROOT/multi_abnormality_labels/*{train,valid}*.csv    VolumeName + the 18 labels
    ROOT/metadata/{train,validation}_metadata.csv        VolumeName, XYSpacing, ZSpacing,
                                                         RescaleSlope, RescaleIntercept, ...

The three CSV folders may also sit under ``ROOT/dataset``.  "Not given." means no
clinical information.  CT-RATE's fixed volumes are already HU; with
``volumes_in_hu=False`` the metadata's slope and intercept are applied.  A split
without a label CSV is labelled from its reports by ``models.report_labeler``.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.config import LOBES, NODULE_TYPES
from models.findings import FINDINGS, Finding
from models.losses import IGNORE_INDEX, NoduleTarget
from models.report_labeler import label_vector
from models.training.records import StudyRecord, clean_text, join_report
from models.volume import LPS_TO_RAS

VOLUME_SUFFIXES = (".nii.gz", ".nii")
SPLIT_DIRS = {"train": "train", "valid": "valid", "test": "test"}
REPORT_FILES = {
    "train": ("train_reports.csv",),
    "valid": ("validation_reports.csv", "valid_reports.csv"),
    "test": ("test_reports.csv",),
}
METADATA_FILES = {
    "train": ("train_metadata.csv",),
    "valid": ("validation_metadata.csv", "valid_metadata.csv"),
    "test": ("test_metadata.csv",),
}
LABEL_KEYWORDS = {"train": ("train",), "valid": ("valid",), "test": ("test",)}
VOLUME_COLUMN = "VolumeName"
REPORT_COLUMNS = (
    "VolumeName",
    "ClinicalInformation_EN",
    "Technique_EN",
    "Findings_EN",
    "Impressions_EN",
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE]-?\d+)?")


class LayoutError(ValueError):
    """The folder does not hold a usable CT-RATE layout (the message says what is missing)."""


@dataclass(frozen=True)
class CtRatePaths:
    image_dir: Path
    text_dir: Path
    label_dir: Path | None
    metadata_dir: Path | None


def _first_dir(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


def resolve_paths(
    root: Path | None,
    *,
    image_dir: Path | None = None,
    text_dir: Path | None = None,
    label_dir: Path | None = None,
    metadata_dir: Path | None = None,
) -> CtRatePaths:
    """Fill in the folders not given from ``root`` (either ROOT/X or ROOT/dataset/X)."""
    bases = [] if root is None else [Path(root), Path(root) / "dataset"]
    if image_dir is None:
        found = [b for b in bases if any((b / d).is_dir() for d in SPLIT_DIRS.values())]
        image_dir = found[-1] if found else None
    if text_dir is None:
        text_dir = _first_dir(*(b / "radiology_text_reports" for b in bases))
    if label_dir is None:
        label_dir = _first_dir(*(b / "multi_abnormality_labels" for b in bases))
    if metadata_dir is None:
        metadata_dir = _first_dir(*(b / "metadata" for b in bases))
    if image_dir is None or not Path(image_dir).is_dir():
        raise LayoutError(f"no volume folder (train/ or valid/) found under {root}")
    if text_dir is None or not Path(text_dir).is_dir():
        raise LayoutError(f"no radiology_text_reports folder found under {root}")
    return CtRatePaths(Path(image_dir), Path(text_dir), label_dir, metadata_dir)


def read_csv(path: Path, *, required: tuple[str, ...] = (VOLUME_COLUMN,)) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise LayoutError(f"{path.name} lacks the columns {missing}")
            return list(reader)
    except OSError as exc:
        raise LayoutError(f"cannot read {path}: {exc.strerror}") from None
    except csv.Error as exc:
        raise LayoutError(f"{path.name} is not a readable CSV: {exc}") from None


def _find_file(folder: Path | None, names: tuple[str, ...]) -> Path | None:
    if folder is None:
        return None
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _label_file(folder: Path | None, split: str) -> Path | None:
    if folder is None or not folder.is_dir():
        return None
    keywords = LABEL_KEYWORDS[split]
    for path in sorted(folder.glob("*.csv")):
        if any(k in path.name.lower() for k in keywords):
            return path
    return None


def volume_index(image_dir: Path, split: str) -> dict[str, Path]:
    """VolumeName -> file, for every volume under the split's folder."""
    folder = image_dir / SPLIT_DIRS[split]
    if not folder.is_dir():
        return {}
    index: dict[str, Path] = {}
    for path in folder.rglob("*"):
        if path.is_file() and path.name.lower().endswith(VOLUME_SUFFIXES):
            index[path.name] = path
    return index


def _float(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    match = _NUMBER.search(value)
    return float(match.group(0)) if match else None


def _spacing(row: dict[str, str]) -> tuple[float, float, float] | None:
    xy = [float(v) for v in _NUMBER.findall(row.get("XYSpacing", "") or "")]
    z = _float(row.get("ZSpacing"))
    if len(xy) >= 1 and z:
        return (xy[0], xy[1] if len(xy) > 1 else xy[0], z)
    return None


def _labels(row: dict[str, str], path: Path) -> tuple[float, ...]:
    values = []
    for finding in FINDINGS:
        cell = (row.get(finding.value) or "").strip()
        if cell == "":
            values.append(math.nan)
            continue
        try:
            values.append(1.0 if float(cell) > 0.5 else 0.0)
        except ValueError:
            raise LayoutError(
                f"{path.name}: {row.get(VOLUME_COLUMN)} has {cell!r} for {finding.value}"
            ) from None
    return tuple(values)


def synthetic_nodules(image_dir: Path, split: str, name: str) -> tuple[NoduleTarget, ...] | None:
    """Nodule truth of a study from ``models.synthetic``'s data set, if it has a truth file.

    The synthetic data set keeps ``studies/<split>/<volume stem>/truth.json`` beside the
    volumes; real CT-RATE has none (nodule sizes unknown: no nodule loss).
    """
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem
    path = image_dir / "studies" / split / stem / "truth.json"
    if not path.is_file():
        return None
    try:
        lesions = json.loads(path.read_text()).get("lesions", [])
        nodules = []
        for lesion in lesions:
            if lesion.get("finding") != Finding.LUNG_NODULE.value:
                continue
            lps = np.asarray(lesion["centre_patient_mm"], dtype=np.float64)
            kind = str(lesion.get("measurements", {}).get("type", ""))
            lobe = str(lesion.get("lobe") or "")
            nodules.append(
                NoduleTarget(
                    centre_ras=tuple(float(v) for v in lps * LPS_TO_RAS),  # type: ignore[arg-type]
                    diameter_mm=float(lesion["measurements"]["diameter_mm"]),
                    type_index=NODULE_TYPES.index(kind) if kind in NODULE_TYPES else IGNORE_INDEX,
                    lobe_index=LOBES.index(lobe) if lobe in LOBES else IGNORE_INDEX,
                )
            )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LayoutError(f"{path} is not a readable truth file: {exc}") from None
    return tuple(nodules)


def read_split(
    paths: CtRatePaths,
    split: str,
    *,
    volumes_in_hu: bool = True,
) -> list[StudyRecord]:
    """Records of one split, in the order of its report CSV; volumes must exist."""
    if split not in SPLIT_DIRS:
        raise LayoutError(f"unknown split {split!r}; known: {sorted(SPLIT_DIRS)}")
    report_path = _find_file(paths.text_dir, REPORT_FILES[split])
    if report_path is None:
        raise LayoutError(f"no report CSV for split {split!r} in {paths.text_dir}")
    reports = read_csv(report_path)
    label_path = _label_file(paths.label_dir, split)
    labels: dict[str, tuple[float, ...]] = {}
    if label_path is not None:
        header = [f.value for f in FINDINGS]
        for row in read_csv(label_path, required=(VOLUME_COLUMN, *header)):
            labels[row[VOLUME_COLUMN].strip()] = _labels(row, label_path)
    metadata: dict[str, dict[str, str]] = {}
    metadata_path = _find_file(paths.metadata_dir, METADATA_FILES[split])
    if metadata_path is not None:
        metadata = {r[VOLUME_COLUMN].strip(): r for r in read_csv(metadata_path)}
    volumes = volume_index(paths.image_dir, split)
    records = []
    missing = []
    for row in reports:
        name = row[VOLUME_COLUMN].strip()
        if name not in volumes:
            missing.append(name)
            continue
        report = join_report(
            clean_text(row.get("Findings_EN")), clean_text(row.get("Impressions_EN"))
        )
        if name in labels:
            label = labels[name]
        elif label_path is None and report:
            label = tuple(float(v) for v in label_vector(report))
        else:
            label = tuple(math.nan for _ in FINDINGS)
        meta = metadata.get(name, {})
        rescale = None
        if not volumes_in_hu:
            slope, intercept = (
                _float(meta.get("RescaleSlope")),
                _float(meta.get("RescaleIntercept")),
            )
            if slope is None or intercept is None:
                raise LayoutError(
                    f"{name}: volumes_in_hu is off but metadata has no rescale values"
                )
            rescale = (slope, intercept)
        records.append(
            StudyRecord(
                study_id=name,
                split=split,
                labels=label,
                source=volumes[name],
                nodules=synthetic_nodules(paths.image_dir, split, name),
                emr_text=clean_text(row.get("ClinicalInformation_EN")),
                report_text=report,
                rescale=rescale,
                spacing_mm=_spacing(meta) if meta else None,
            )
        )
    if missing and not records:
        raise LayoutError(
            f"none of the {len(missing)} volumes named in {report_path.name} exist under "
            f"{paths.image_dir / SPLIT_DIRS[split]}"
        )
    return records
