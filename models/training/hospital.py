"""A hospital's own export: DICOM studies plus signed report texts.

::

    EXPORT/reports.csv         study, report[, indication][, split][, transcript]
    EXPORT/<study>/...         the study's DICOM files (any depth; the best series is used)

``study`` is the folder name under EXPORT; ``report`` the signed report text;
``indication`` the reason for exam from the order (EMR text); ``split`` is train,
valid or test (otherwise a stable hash of the study name assigns
``valid_fraction`` of the studies to valid).  Labels come from the report by the
rule-based, negation-aware ``models.report_labeler``.
"""

from __future__ import annotations

from pathlib import Path

from models.report_labeler import label_vector
from models.training.ctrate import LayoutError, read_csv
from models.training.records import SPLITS, StudyRecord, clean_text, hash_fraction

REPORTS_FILE = "reports.csv"


def read_export(root: Path, split: str, *, valid_fraction: float = 0.1) -> list[StudyRecord]:
    root = Path(root)
    table = root / REPORTS_FILE
    if not table.is_file():
        raise LayoutError(f"{root} has no {REPORTS_FILE} (columns: study, report)")
    if split not in SPLITS:
        raise LayoutError(f"unknown split {split!r}; known: {SPLITS}")
    records = []
    for row in read_csv(table, required=("study", "report")):
        name = row["study"].strip()
        report = clean_text(row.get("report"))
        if not name or report is None:
            continue
        folder = (root / name).resolve()
        if root.resolve() not in folder.parents or not folder.is_dir():
            raise LayoutError(f"{REPORTS_FILE}: study {name!r} is not a folder inside {root}")
        given = (row.get("split") or "").strip().lower()
        if given and given not in SPLITS:
            raise LayoutError(f"{REPORTS_FILE}: study {name!r} has unknown split {given!r}")
        study_split = given or ("valid" if hash_fraction(name) < valid_fraction else "train")
        if study_split != split:
            continue
        records.append(
            StudyRecord(
                study_id=name,
                split=split,
                labels=tuple(float(v) for v in label_vector(report)),
                source=folder,
                emr_text=clean_text(row.get("indication")),
                report_text=report,
                dictation_text=clean_text(row.get("transcript")),
            )
        )
    return records
