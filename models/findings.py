"""The 18 chest CT findings Radscribe predicts: the one definition every part uses.

Values are the CT-RATE multi-abnormality label column names, so a CT-RATE
labels CSV and our synthetic labels CSV share one header.
"""

from __future__ import annotations

import enum


class Finding(enum.StrEnum):
    MEDICAL_MATERIAL = "Medical material"
    ARTERIAL_WALL_CALCIFICATION = "Arterial wall calcification"
    CARDIOMEGALY = "Cardiomegaly"
    PERICARDIAL_EFFUSION = "Pericardial effusion"
    CORONARY_ARTERY_WALL_CALCIFICATION = "Coronary artery wall calcification"
    HIATAL_HERNIA = "Hiatal hernia"
    LYMPHADENOPATHY = "Lymphadenopathy"
    EMPHYSEMA = "Emphysema"
    ATELECTASIS = "Atelectasis"
    LUNG_NODULE = "Lung nodule"
    LUNG_OPACITY = "Lung opacity"
    PULMONARY_FIBROTIC_SEQUELA = "Pulmonary fibrotic sequela"
    PLEURAL_EFFUSION = "Pleural effusion"
    MOSAIC_ATTENUATION_PATTERN = "Mosaic attenuation pattern"
    PERIBRONCHIAL_THICKENING = "Peribronchial thickening"
    CONSOLIDATION = "Consolidation"
    BRONCHIECTASIS = "Bronchiectasis"
    INTERLOBULAR_SEPTAL_THICKENING = "Interlobular septal thickening"

    @property
    def slug(self) -> str:
        """A lower-case identifier for CLI flags, JSON keys and file names."""
        return self.name.lower()

    @classmethod
    def from_slug(cls, slug: str) -> Finding:
        key = slug.strip().upper().replace("-", "_").replace(" ", "_")
        try:
            return cls[key]
        except KeyError:
            known = ", ".join(f.slug for f in cls)
            raise ValueError(f"unknown finding {slug!r}; known: {known}") from None


FINDINGS: tuple[Finding, ...] = tuple(Finding)
"""All findings in CT-RATE column order (the order of every label vector)."""

NUM_FINDINGS = len(FINDINGS)
