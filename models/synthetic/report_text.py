"""The reference report of a synthetic study: technique, findings and impression.

Sentences are built from the drawn lesions and their measurements; organ
systems without findings get the usual normal statements, in CT-RATE's
order (airways, mediastinum and heart, lungs, pleura, upper abdomen, bones).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from models.findings import FINDINGS, Finding
from models.synthetic.tissues import Phase
from models.synthetic.truth import Lesion

SYSTEMS: dict[str, tuple[Finding, ...]] = {
    "airways": (Finding.BRONCHIECTASIS, Finding.PERIBRONCHIAL_THICKENING),
    "mediastinum": (
        Finding.CARDIOMEGALY,
        Finding.PERICARDIAL_EFFUSION,
        Finding.ARTERIAL_WALL_CALCIFICATION,
        Finding.CORONARY_ARTERY_WALL_CALCIFICATION,
        Finding.LYMPHADENOPATHY,
        Finding.HIATAL_HERNIA,
    ),
    "lungs": (
        Finding.EMPHYSEMA,
        Finding.MOSAIC_ATTENUATION_PATTERN,
        Finding.INTERLOBULAR_SEPTAL_THICKENING,
        Finding.PULMONARY_FIBROTIC_SEQUELA,
        Finding.LUNG_OPACITY,
        Finding.CONSOLIDATION,
        Finding.ATELECTASIS,
        Finding.LUNG_NODULE,
    ),
    "pleura": (Finding.PLEURAL_EFFUSION,),
    "devices": (Finding.MEDICAL_MATERIAL,),
}
NORMAL: dict[str, tuple[str, ...]] = {
    "airways": (
        "Trachea and both main bronchi are patent.",
        "The trachea and main bronchi are open.",
    ),
    "mediastinum": (
        "Heart size is normal; no pericardial effusion. Mediastinal vessels are of normal "
        "calibre. No mediastinal or hilar lymphadenopathy.",
        "The heart and great vessels are unremarkable. No enlarged mediastinal lymph nodes.",
    ),
    "lungs": (
        "No nodule, mass, consolidation or ground-glass opacity in either lung.",
        "Both lungs are clear.",
    ),
    "pleura": ("No pleural effusion or thickening.", "No pleural effusion."),
    "abdomen": ("The upper abdominal organs included in the field of view are unremarkable.",),
    "bones": ("No destructive bone lesion.", "Osseous structures are unremarkable."),
}


@dataclass(frozen=True)
class ReferenceReport:
    technique: str
    findings: str
    impression: str
    sentences: dict[str, list[str]]  # finding slug -> sentences describing it

    def to_json(self) -> dict[str, object]:
        return {
            "technique": self.technique,
            "findings": self.findings,
            "impression": self.impression,
            "by_finding": self.sentences,
        }


def technique_text(*, phase: Phase, thickness_mm: float, kernel: str) -> str:
    contrast = (
        "without intravenous contrast"
        if phase is Phase.NONE
        else f"after intravenous contrast ({phase.value} phase)"
    )
    return (
        f"Axial CT images of the chest were obtained {contrast} with {thickness_mm:g} mm "
        f"slice thickness and reconstructed with the {kernel} kernel."
    )


def _mm(value: float | int | str) -> str:
    return f"{float(value):.0f}"


def _article(word: str) -> str:
    """'a' or 'an' before a spoken number or word."""
    return (
        "an" if word[:1] in "aeiou8" or (word.startswith(("11", "18")) and len(word) == 2) else "a"
    )


def lesion_sentence(lesion: Lesion) -> str:
    m = lesion.measurements
    f = lesion.finding
    if f is Finding.LUNG_NODULE:
        size = _mm(m["diameter_mm"])
        return f"{_article(size).capitalize()} {size} mm {m['type']} nodule in the {lesion.lobe}."
    if f is Finding.LUNG_OPACITY:
        return f"Ground-glass opacity of about {_mm(m['size_mm'])} mm in the {lesion.lobe}."
    if f is Finding.CONSOLIDATION:
        extent = str(m["extent"]).capitalize()
        return f"{extent} consolidation with air bronchograms in the {lesion.lobe}."
    if f is Finding.ATELECTASIS:
        return f"{lesion.kind.capitalize()} in the {lesion.lobe}."
    if f is Finding.EMPHYSEMA:
        zone = lesion.location.split(",")[0]
        return (
            f"{str(m['severity']).capitalize()} {m['type']} emphysema, predominantly in the {zone}."
        )
    if f is Finding.MOSAIC_ATTENUATION_PATTERN:
        return "Mosaic attenuation pattern in both lungs."
    if f is Finding.INTERLOBULAR_SEPTAL_THICKENING:
        return f"Smooth interlobular septal thickening in the {lesion.location}."
    if f is Finding.PULMONARY_FIBROTIC_SEQUELA:
        return f"Fibrotic bands and reticulation consistent with sequelae in the {lesion.lobe}."
    if f is Finding.BRONCHIECTASIS:
        ratio = float(m["bronchoarterial_ratio"])
        return (
            f"{str(m['type']).capitalize()} bronchiectasis in the {lesion.lobe}, "
            f"bronchoarterial ratio about {ratio:.1f}."
        )
    if f is Finding.PERIBRONCHIAL_THICKENING:
        return f"Peribronchial wall thickening in the {lesion.lobe}."
    if f is Finding.PLEURAL_EFFUSION:
        return (
            f"{str(lesion.side).capitalize()} pleural effusion of about {_mm(m['volume_ml'])} mL, "
            f"up to {_mm(m['max_depth_mm'])} mm deep."
        )
    if f is Finding.PERICARDIAL_EFFUSION:
        return f"Pericardial effusion up to {_mm(m['thickness_mm'])} mm thick."
    if f is Finding.CARDIOMEGALY:
        return (
            f"The heart is enlarged, cardiothoracic ratio {float(m['cardiothoracic_ratio']):.2f}."
        )
    if f is Finding.CORONARY_ARTERY_WALL_CALCIFICATION:
        return f"Calcified plaques in the {lesion.location} coronary artery."
    if f is Finding.ARTERIAL_WALL_CALCIFICATION:
        return "Atherosclerotic calcification of the thoracic aortic wall."
    if f is Finding.LYMPHADENOPATHY:
        short = _mm(m["short_axis_mm"])
        return f"An enlarged lymph node at {lesion.location}, {short} mm in short axis."
    if f is Finding.HIATAL_HERNIA:
        return f"Hiatal hernia of about {_mm(m['size_mm'])} mm."
    if f is Finding.MEDICAL_MATERIAL:
        return f"{lesion.kind.capitalize()}: {lesion.location}."
    raise ValueError(f"no sentence for {f}")


IMPRESSION: dict[Finding, str] = {
    Finding.MEDICAL_MATERIAL: "Medical devices as described.",
    Finding.ARTERIAL_WALL_CALCIFICATION: "Aortic atherosclerosis.",
    Finding.CARDIOMEGALY: "Cardiomegaly.",
    Finding.PERICARDIAL_EFFUSION: "Pericardial effusion.",
    Finding.CORONARY_ARTERY_WALL_CALCIFICATION: "Coronary artery calcification.",
    Finding.HIATAL_HERNIA: "Hiatal hernia.",
    Finding.LYMPHADENOPATHY: "Mediastinal lymphadenopathy.",
    Finding.EMPHYSEMA: "Emphysema.",
    Finding.ATELECTASIS: "Atelectasis.",
    Finding.LUNG_NODULE: "Pulmonary nodule(s).",
    Finding.LUNG_OPACITY: "Ground-glass opacities.",
    Finding.PULMONARY_FIBROTIC_SEQUELA: "Fibrotic sequelae.",
    Finding.PLEURAL_EFFUSION: "Pleural effusion.",
    Finding.MOSAIC_ATTENUATION_PATTERN: "Mosaic attenuation pattern.",
    Finding.PERIBRONCHIAL_THICKENING: "Peribronchial thickening.",
    Finding.CONSOLIDATION: "Consolidation, pneumonia to be considered in the clinical context.",
    Finding.BRONCHIECTASIS: "Bronchiectasis.",
    Finding.INTERLOBULAR_SEPTAL_THICKENING: "Interlobular septal thickening.",
}


def reference_report(
    lesions: list[Lesion], *, present: frozenset[Finding], technique: str, rng: np.random.Generator
) -> ReferenceReport:
    by_finding: dict[Finding, list[str]] = defaultdict(list)
    for lesion in lesions:
        sentence = lesion_sentence(lesion)
        if sentence not in by_finding[lesion.finding]:
            by_finding[lesion.finding].append(sentence)
    paragraphs = []
    for system, members in SYSTEMS.items():
        found = [s for f in members for s in by_finding.get(f, [])]
        if found:
            paragraphs.append(" ".join(found))
        elif system in NORMAL:
            paragraphs.append(str(rng.choice(NORMAL[system])))
    paragraphs.append(str(rng.choice(NORMAL["abdomen"])))
    paragraphs.append(str(rng.choice(NORMAL["bones"])))
    positives = [IMPRESSION[f] for f in FINDINGS if f in present]
    impression = " ".join(positives) if positives else "No acute cardiopulmonary abnormality."
    return ReferenceReport(
        technique=technique,
        findings="\n".join(paragraphs),
        impression=impression,
        sentences={f.slug: s for f, s in by_finding.items()},
    )
