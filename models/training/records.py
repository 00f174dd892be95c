"""``StudyRecord``: one training study, whatever the source (CT-RATE, hospital export, synthetic).

A record says where the image is, what the texts are and what the labels are; the
volume cache turns its image into the model's grid once, the text cache embeds its
texts once.  Labels are floats in CT-RATE column order with NaN for unknown.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from models.findings import NUM_FINDINGS
from models.losses import NoduleTarget

SPLITS: tuple[str, ...] = ("train", "valid", "test")
NOT_GIVEN = "not given."


@dataclass(frozen=True, kw_only=True)
class StudyRecord:
    study_id: str
    split: str
    labels: tuple[float, ...]
    source: Path | None = None
    """A NIfTI file or a DICOM series folder (None for synthetic studies)."""
    seed: int | None = None
    """Synthetic studies: the seed that names the study."""
    emr_text: str | None = None
    """Reason for exam and history (CT-RATE: ClinicalInformation_EN)."""
    report_text: str | None = None
    """Findings and impression of the signed report (used to simulate dictations)."""
    dictation_text: str | None = None
    """A real transcript, when the export has one (otherwise simulated from the report)."""
    dictation_quality: tuple[float, float, float] | None = None
    """(confidence, no-speech probability, SNR dB) of a real transcript."""
    nodules: tuple[NoduleTarget, ...] | None = None
    """Nodules with centres in RAS mm, or None when unknown (no nodule loss for the study)."""
    hard_reasons: tuple[str, ...] = ()
    rescale: tuple[float, float] | None = None
    """(slope, intercept) to apply to raw stored values; None when already HU."""
    spacing_mm: tuple[float, float, float] | None = None
    """Voxel spacing from metadata (x, y, z), overriding a volume header that disagrees."""
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.labels) != NUM_FINDINGS:
            raise ValueError(f"{self.study_id}: {len(self.labels)} labels, need {NUM_FINDINGS}")

    @property
    def labels_known(self) -> bool:
        return not any(math.isnan(v) for v in self.labels)


def clean_text(value: object) -> str | None:
    """A CSV cell to text: empty, NaN and CT-RATE's "Not given." mean no text."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.lower() in (NOT_GIVEN, "nan", "none"):
        return None
    return text


def join_report(findings: str | None, impression: str | None) -> str | None:
    parts = [p for p in (findings, impression) if p]
    return " ".join(parts) if parts else None


def hash_fraction(text: str) -> float:
    """A stable number in [0, 1) from a string (split assignment that never changes)."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def limit_records(records: Sequence[StudyRecord], limit: int | None) -> list[StudyRecord]:
    return list(records if limit is None else records[:limit])
