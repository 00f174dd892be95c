"""What a radiologist would dictate about a synthetic study, from varied templates.

Two template families exist so speech benchmarks can train or tune on one and
test on sentences they have never seen: ``TEMPLATE_SETS["lexicon"]`` and
``TEMPLATE_SETS["heldout"]``.  A dictation mentions some (not always all) of
the study's findings, adds a few normal statements, uses section words
("findings", "impression") and is spoken with punctuation words ("period",
"comma", "colon", "new paragraph"), the way dictation software expects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.findings import FINDINGS, Finding

ABSENT_PROBABILITY = 0.12
MENTION_PROBABILITY = 0.75
SPOKEN_PUNCTUATION = {".": "period", ",": "comma", ":": "colon"}
NEW_PARAGRAPH = "new paragraph"

# Placeholders: {size} mm, {lobe}, {side}, {type}, {volume} mL, {depth} mm, {station},
# {short} mm, {vessel}, {ctr}, {severity}, {etype}, {extent}, {kind}, {location}, {zone}.
_LEXICON: dict[Finding, tuple[str, ...]] = {
    Finding.LUNG_NODULE: (
        "There is a {size} millimeter {type} nodule in the {lobe}.",
        "A {type} pulmonary nodule measuring {size} millimeters is seen in the {lobe}.",
    ),
    Finding.EMPHYSEMA: (
        "There is {severity} {etype} emphysema.",
        "{Severity} emphysematous changes are noted, {etype} type.",
    ),
    Finding.PLEURAL_EFFUSION: (
        "There is a {side} pleural effusion measuring up to {depth} millimeters in depth.",
        "{Side} pleural effusion is present, estimated at {volume} milliliters.",
    ),
    Finding.CARDIOMEGALY: ("The heart is enlarged.", "There is cardiomegaly."),
    Finding.PERICARDIAL_EFFUSION: (
        "There is a pericardial effusion measuring {depth} millimeters.",
        "A pericardial effusion is present.",
    ),
    Finding.LYMPHADENOPATHY: (
        "There is an enlarged lymph node at station {station} "
        "measuring {short} millimeters in short axis.",
        "Mediastinal lymphadenopathy with a {short} millimeter node at station {station}.",
    ),
    Finding.ATELECTASIS: ("There is {kind} in the {lobe}.", "{Kind} is noted in the {lobe}."),
    Finding.LUNG_OPACITY: (
        "There is a ground glass opacity in the {lobe}.",
        "Patchy ground glass opacity is seen in the {lobe}.",
    ),
    Finding.CONSOLIDATION: (
        "There is {extent} consolidation in the {lobe} with air bronchograms.",
        "Consolidation is present in the {lobe}.",
    ),
    Finding.PULMONARY_FIBROTIC_SEQUELA: (
        "Fibrotic bands are seen in the {lobe}, consistent with sequelae.",
        "There are fibrotic sequelae in the {lobe}.",
    ),
    Finding.MOSAIC_ATTENUATION_PATTERN: (
        "There is a mosaic attenuation pattern in both lungs.",
        "Mosaic attenuation is noted.",
    ),
    Finding.PERIBRONCHIAL_THICKENING: (
        "There is peribronchial thickening in the {lobe}.",
        "Bronchial wall thickening is noted in the {lobe}.",
    ),
    Finding.BRONCHIECTASIS: (
        "There is {btype} bronchiectasis in the {lobe}.",
        "Bronchiectasis is present in the {lobe}.",
    ),
    Finding.INTERLOBULAR_SEPTAL_THICKENING: (
        "There is interlobular septal thickening at the {zone}.",
        "Smooth interlobular septal thickening is seen.",
    ),
    Finding.ARTERIAL_WALL_CALCIFICATION: (
        "There are atherosclerotic calcifications of the aorta.",
        "Aortic wall calcifications are noted.",
    ),
    Finding.CORONARY_ARTERY_WALL_CALCIFICATION: (
        "There are coronary artery calcifications in the {vessel}.",
        "Coronary calcifications are present.",
    ),
    Finding.HIATAL_HERNIA: ("There is a hiatal hernia.", "A small hiatal hernia is noted."),
    Finding.MEDICAL_MATERIAL: ("There is a {kind}.", "A {kind} is in place."),
}
_HELDOUT: dict[Finding, tuple[str, ...]] = {
    Finding.LUNG_NODULE: (
        "In the {lobe}, a {size} millimeter {type} nodule is identified.",
        "Noted is a {type} nodule of the {lobe}, {size} millimeters.",
    ),
    Finding.EMPHYSEMA: ("The lungs show {severity} emphysema of {etype} pattern.",),
    Finding.PLEURAL_EFFUSION: (
        "Small to moderate {side} sided pleural fluid, approximately {volume} milliliters.",
        "Fluid layers in the {side} pleural space, {depth} millimeters deep.",
    ),
    Finding.CARDIOMEGALY: ("Cardiac silhouette is enlarged, cardiothoracic ratio {ctr}.",),
    Finding.PERICARDIAL_EFFUSION: (
        "Fluid surrounds the heart in the pericardial sac, up to {depth} millimeters.",
    ),
    Finding.LYMPHADENOPATHY: (
        "Station {station} lymph node is enlarged, short axis {short} millimeters.",
    ),
    Finding.ATELECTASIS: ("The {lobe} shows {kind}.",),
    Finding.LUNG_OPACITY: ("Hazy increased attenuation of the {lobe} is present.",),
    Finding.CONSOLIDATION: ("Airspace consolidation involves the {lobe}.",),
    Finding.PULMONARY_FIBROTIC_SEQUELA: ("Scarring with linear fibrosis in the {lobe}.",),
    Finding.MOSAIC_ATTENUATION_PATTERN: (
        "Heterogeneous lung attenuation in a mosaic distribution.",
    ),
    Finding.PERIBRONCHIAL_THICKENING: ("Thickened bronchial walls in the {lobe}.",),
    Finding.BRONCHIECTASIS: ("Dilated bronchi larger than the adjacent arteries in the {lobe}.",),
    Finding.INTERLOBULAR_SEPTAL_THICKENING: ("Thickened interlobular septa at the {zone}.",),
    Finding.ARTERIAL_WALL_CALCIFICATION: ("Calcified plaque along the thoracic aorta.",),
    Finding.CORONARY_ARTERY_WALL_CALCIFICATION: (
        "Calcified plaque of the {vessel} coronary artery.",
    ),
    Finding.HIATAL_HERNIA: ("Part of the stomach lies above the diaphragm, a hiatal hernia.",),
    Finding.MEDICAL_MATERIAL: ("Device noted: {kind}.",),
}
TEMPLATE_SETS: dict[str, dict[Finding, tuple[str, ...]]] = {
    "lexicon": _LEXICON,
    "heldout": _HELDOUT,
}
NORMAL_SENTENCES = {
    "lexicon": (
        "No pleural effusion.",
        "The airways are patent.",
        "No mediastinal lymphadenopathy.",
        "The heart size is normal.",
        "No acute osseous abnormality.",
    ),
    "heldout": (
        "Pleural spaces are clear.",
        "Central airways are clear.",
        "Mediastinal contours are unremarkable.",
    ),
}
IMPRESSION_WORDS = {
    "lexicon": ("Impression:",),
    "heldout": ("Impression:", "Conclusion:"),
}
NORMAL_IMPRESSION = {
    "lexicon": "No acute cardiopulmonary abnormality.",
    "heldout": "Unremarkable chest CT.",
}


@dataclass(frozen=True)
class Dictation:
    template_set: str
    written: str  # what the radiologist means, with punctuation and paragraphs
    spoken: str  # what is said: punctuation and paragraphs as words
    findings: tuple[Finding, ...]  # findings mentioned

    def to_json(self) -> dict[str, Any]:
        return {
            "template_set": self.template_set,
            "written": self.written,
            "text": self.spoken,
            "mentioned": [f.value for f in self.findings],
        }


def _values(lesion: Mapping[str, Any]) -> dict[str, str]:
    m = lesion.get("measurements", {})
    size = m.get("diameter_mm") or m.get("size_mm")
    v = {
        "size": f"{float(size):.0f}" if size is not None else "several",
        "lobe": str(lesion.get("lobe") or lesion.get("location") or "lung"),
        "side": str(lesion.get("side") or "right"),
        "type": str(m.get("type", "solid")).replace("-", " "),
        "volume": f"{float(m.get('volume_ml', 0)):.0f}",
        "depth": f"{float(m.get('max_depth_mm', m.get('thickness_mm', 0))):.0f}",
        "station": str(m.get("station", "")),
        "short": f"{float(m.get('short_axis_mm', 0)):.0f}",
        "vessel": {
            "LAD": "left anterior descending",
            "LCX": "circumflex",
            "RCA": "right coronary",
        }.get(str(m.get("vessel", "")), "left anterior descending"),
        "ctr": f"{float(m.get('cardiothoracic_ratio', 0.6)):.2f}",
        "severity": str(m.get("severity", "mild")),
        "etype": str(m.get("type", "centrilobular")),
        "btype": str(m.get("type", "cylindrical")),
        "extent": str(m.get("extent", "segmental")),
        "kind": str(lesion.get("kind", "device")),
        "location": str(lesion.get("location", "")),
        "zone": "lung bases" if m.get("zone") == "basal" else "lung periphery",
    }
    v.update({k.capitalize(): val.capitalize() for k, val in list(v.items())})
    return v


def spoken_form(written: str) -> str:
    """Punctuation and paragraph breaks as dictation words."""
    paragraphs = [p.strip() for p in written.split("\n\n") if p.strip()]
    out = []
    for para in paragraphs:
        text = para
        for mark, word in SPOKEN_PUNCTUATION.items():
            text = text.replace(mark, f" {word} ")
        out.append(re.sub(r"\s+", " ", text).strip())
    return f" {NEW_PARAGRAPH} ".join(out)


def make_dictation(
    truth: Mapping[str, Any], rng: np.random.Generator, *, template_set: str | None = None
) -> Dictation | None:
    """A dictation for the study described by ``truth``, or None (no dictation)."""
    if rng.random() < ABSENT_PROBABILITY:
        return None
    family = template_set or str(rng.choice(sorted(TEMPLATE_SETS)))
    if family not in TEMPLATE_SETS:
        raise ValueError(f"unknown template set {family!r}; known: {sorted(TEMPLATE_SETS)}")
    templates = TEMPLATE_SETS[family]
    lesions: Sequence[Mapping[str, Any]] = truth.get("lesions", [])
    by_finding: dict[Finding, Mapping[str, Any]] = {}
    for lesion in lesions:
        f = Finding(lesion["finding"])
        if f not in by_finding:
            by_finding[f] = lesion
    present = [f for f in FINDINGS if f in by_finding]
    mentioned = [f for f in present if rng.random() < MENTION_PROBABILITY]
    if present and not mentioned:
        mentioned = [present[int(rng.integers(len(present)))]]
    sentences = [str(rng.choice(templates[f])).format(**_values(by_finding[f])) for f in mentioned]
    normals = list(NORMAL_SENTENCES[family])
    rng.shuffle(normals)
    sentences += normals[: int(rng.integers(0, 3))]
    findings_text = "Findings: " + " ".join(sentences) if sentences else "Findings: No abnormality."
    impression_word = str(rng.choice(IMPRESSION_WORDS[family]))
    if mentioned:
        impression = " ".join(f"{f.value}." for f in mentioned)
    else:
        impression = NORMAL_IMPRESSION[family]
    written = f"{findings_text}\n\n{impression_word} {impression}"
    return Dictation(family, written, spoken_form(written), tuple(mentioned))
