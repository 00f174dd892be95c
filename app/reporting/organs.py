"""Which organ system of the report each finding belongs to, and its wording."""

from __future__ import annotations

from dataclasses import dataclass

from models.findings import Finding


@dataclass(frozen=True)
class OrganSystem:
    key: str
    title: str
    findings: tuple[Finding, ...]


ORGAN_SYSTEMS: tuple[OrganSystem, ...] = (
    OrganSystem(
        "lungs",
        "Lungs and airways",
        (
            Finding.LUNG_NODULE,
            Finding.LUNG_OPACITY,
            Finding.CONSOLIDATION,
            Finding.ATELECTASIS,
            Finding.EMPHYSEMA,
            Finding.PULMONARY_FIBROTIC_SEQUELA,
            Finding.INTERLOBULAR_SEPTAL_THICKENING,
            Finding.MOSAIC_ATTENUATION_PATTERN,
            Finding.PERIBRONCHIAL_THICKENING,
            Finding.BRONCHIECTASIS,
        ),
    ),
    OrganSystem("pleura", "Pleura", (Finding.PLEURAL_EFFUSION,)),
    OrganSystem(
        "heart",
        "Heart and pericardium",
        (
            Finding.CARDIOMEGALY,
            Finding.PERICARDIAL_EFFUSION,
            Finding.CORONARY_ARTERY_WALL_CALCIFICATION,
        ),
    ),
    OrganSystem(
        "mediastinum", "Mediastinum and hila", (Finding.LYMPHADENOPATHY, Finding.HIATAL_HERNIA)
    ),
    OrganSystem("vessels", "Vessels", (Finding.ARTERIAL_WALL_CALCIFICATION,)),
    OrganSystem("upper_abdomen", "Upper abdomen", ()),
    OrganSystem(
        "bones_soft_tissues", "Bones, soft tissues and devices", (Finding.MEDICAL_MATERIAL,)
    ),
)

# Impression order: what changes management first.
IMPRESSION_ORDER: tuple[Finding, ...] = (
    Finding.LUNG_NODULE,
    Finding.CONSOLIDATION,
    Finding.PLEURAL_EFFUSION,
    Finding.PERICARDIAL_EFFUSION,
    Finding.LYMPHADENOPATHY,
    Finding.LUNG_OPACITY,
    Finding.ATELECTASIS,
    Finding.CARDIOMEGALY,
    Finding.INTERLOBULAR_SEPTAL_THICKENING,
    Finding.MOSAIC_ATTENUATION_PATTERN,
    Finding.BRONCHIECTASIS,
    Finding.PERIBRONCHIAL_THICKENING,
    Finding.PULMONARY_FIBROTIC_SEQUELA,
    Finding.EMPHYSEMA,
    Finding.HIATAL_HERNIA,
    Finding.CORONARY_ARTERY_WALL_CALCIFICATION,
    Finding.ARTERIAL_WALL_CALCIFICATION,
    Finding.MEDICAL_MATERIAL,
)

# RadLex identifiers, only where we have them from the RadLex registry.
RADLEX: dict[Finding, str] = {
    Finding.EMPHYSEMA: "RID4799",
    Finding.PLEURAL_EFFUSION: "RID34539",
    Finding.PERICARDIAL_EFFUSION: "RID38588",
    Finding.LYMPHADENOPATHY: "RID3798",
    Finding.CONSOLIDATION: "RID43255",
    Finding.LUNG_NODULE: "RID50149",
}

# How a present finding reads in the Findings section (details are appended).
WORDING: dict[Finding, str] = {
    Finding.MEDICAL_MATERIAL: "Medical material (device) in the chest",
    Finding.ARTERIAL_WALL_CALCIFICATION: "Arterial wall calcification",
    Finding.CARDIOMEGALY: "Cardiomegaly",
    Finding.PERICARDIAL_EFFUSION: "Pericardial effusion",
    Finding.CORONARY_ARTERY_WALL_CALCIFICATION: "Coronary artery wall calcification",
    Finding.HIATAL_HERNIA: "Hiatal hernia",
    Finding.LYMPHADENOPATHY: "Lymphadenopathy",
    Finding.EMPHYSEMA: "Emphysema",
    Finding.ATELECTASIS: "Atelectasis",
    Finding.LUNG_NODULE: "Lung nodule",
    Finding.LUNG_OPACITY: "Lung opacity",
    Finding.PULMONARY_FIBROTIC_SEQUELA: "Pulmonary fibrotic sequela",
    Finding.PLEURAL_EFFUSION: "Pleural effusion",
    Finding.MOSAIC_ATTENUATION_PATTERN: "Mosaic attenuation pattern",
    Finding.PERIBRONCHIAL_THICKENING: "Peribronchial thickening",
    Finding.CONSOLIDATION: "Consolidation",
    Finding.BRONCHIECTASIS: "Bronchiectasis",
    Finding.INTERLOBULAR_SEPTAL_THICKENING: "Interlobular septal thickening",
}

ASSESSED_FINDINGS: frozenset[Finding] = frozenset(f for o in ORGAN_SYSTEMS for f in o.findings)
if frozenset(Finding) != ASSESSED_FINDINGS:  # pragma: no cover - a definition error
    raise RuntimeError("every finding must belong to one organ system")
