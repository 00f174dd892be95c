"""Tissue labels of the phantom and their nominal attenuation in Hounsfield units.

Values follow published chest CT attenuation (unenhanced and after iodinated
contrast).  Each study jitters them a little (see :func:`tissue_hu`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class Tissue(enum.IntEnum):
    AIR = 0
    TABLE = 1
    SKIN = 2
    FAT = 3
    MUSCLE = 4
    BONE_CORTEX = 5
    BONE_MARROW = 6
    CARTILAGE = 7
    DISC = 8
    SPINAL_CANAL = 9
    LUNG = 10
    AIRWAY_LUMEN = 11
    AIRWAY_WALL = 12
    PULMONARY_VESSEL = 13
    BLOOD = 14  # heart chambers and great vessels
    MYOCARDIUM = 15
    PERICARDIUM = 16
    LIVER = 17
    SPLEEN = 18
    STOMACH = 19
    BOWEL_GAS = 20
    KIDNEY = 21
    ESOPHAGUS = 22
    LYMPH_NODE = 23
    BREAST = 24
    GALLBLADDER = 25
    FLUID = 26  # effusions
    LESION = 27  # lung findings of soft-tissue or ground-glass density
    CALCIUM = 28
    METAL = 29
    DIAPHRAGM = 30


class Phase(enum.StrEnum):
    """Contrast phase of the acquisition."""

    NONE = "none"
    ARTERIAL = "arterial"
    VENOUS = "venous"


@dataclass(frozen=True)
class TissueHU:
    none: float
    arterial: float
    venous: float

    def at(self, phase: Phase) -> float:
        return float(getattr(self, phase.value))


_NOMINAL: dict[Tissue, TissueHU] = {
    Tissue.AIR: TissueHU(-1000, -1000, -1000),
    Tissue.TABLE: TissueHU(300, 300, 300),
    Tissue.SKIN: TissueHU(30, 40, 45),
    Tissue.FAT: TissueHU(-100, -100, -100),
    Tissue.MUSCLE: TissueHU(42, 55, 60),
    Tissue.BONE_CORTEX: TissueHU(1000, 1000, 1000),
    Tissue.BONE_MARROW: TissueHU(185, 200, 210),
    Tissue.CARTILAGE: TissueHU(110, 115, 120),
    Tissue.DISC: TissueHU(80, 85, 90),
    Tissue.SPINAL_CANAL: TissueHU(15, 20, 20),
    Tissue.LUNG: TissueHU(-845, -840, -840),
    Tissue.AIRWAY_LUMEN: TissueHU(-1000, -1000, -1000),
    Tissue.AIRWAY_WALL: TissueHU(40, 60, 60),
    Tissue.PULMONARY_VESSEL: TissueHU(40, 320, 170),
    Tissue.BLOOD: TissueHU(40, 320, 170),
    Tissue.MYOCARDIUM: TissueHU(45, 110, 120),
    Tissue.PERICARDIUM: TissueHU(30, 35, 40),
    Tissue.LIVER: TissueHU(58, 75, 115),
    Tissue.SPLEEN: TissueHU(48, 130, 120),
    Tissue.STOMACH: TissueHU(20, 25, 30),
    Tissue.BOWEL_GAS: TissueHU(-1000, -1000, -1000),
    Tissue.KIDNEY: TissueHU(32, 180, 160),
    Tissue.ESOPHAGUS: TissueHU(40, 60, 70),
    Tissue.LYMPH_NODE: TissueHU(40, 70, 80),
    Tissue.BREAST: TissueHU(20, 35, 40),
    Tissue.GALLBLADDER: TissueHU(8, 8, 8),
    Tissue.FLUID: TissueHU(12, 15, 15),
    Tissue.LESION: TissueHU(35, 70, 80),
    Tissue.CALCIUM: TissueHU(700, 700, 700),
    Tissue.METAL: TissueHU(3000, 3000, 3000),
    Tissue.DIAPHRAGM: TissueHU(50, 60, 65),
}

# Study-to-study jitter (HU, 1 sd) of each tissue's mean.
_JITTER: dict[Tissue, float] = {
    Tissue.FAT: 6.0,
    Tissue.MUSCLE: 5.0,
    Tissue.LUNG: 18.0,
    Tissue.BLOOD: 6.0,
    Tissue.PULMONARY_VESSEL: 6.0,
    Tissue.LIVER: 6.0,
    Tissue.BONE_MARROW: 30.0,
    Tissue.BONE_CORTEX: 80.0,
}


def nominal_hu(tissue: Tissue, phase: Phase = Phase.NONE) -> float:
    return _NOMINAL[tissue].at(phase)


def tissue_hu(rng: np.random.Generator, phase: Phase) -> dict[Tissue, float]:
    """Per-study tissue values: nominal for the phase plus a small jitter."""
    out: dict[Tissue, float] = {}
    contrast_scale = float(rng.uniform(0.75, 1.2)) if phase is not Phase.NONE else 1.0
    unenhanced = {t: v.none for t, v in _NOMINAL.items()}
    for tissue, values in _NOMINAL.items():
        base = values.at(phase)
        enhancement = (base - unenhanced[tissue]) * contrast_scale
        out[tissue] = (
            unenhanced[tissue] + enhancement + float(rng.normal(0, _JITTER.get(tissue, 2.0)))
        )
    return out
