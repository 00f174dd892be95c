"""A rule-based, negation-aware labeler: report or dictation text -> the 18 findings.

Used to label a hospital's own signed reports for training and to compare a
radiologist's dictation with the model's findings.  Each finding has phrases
that mention it; a mention counts as negative when a negation cue ("no",
"without", "negative for", "free of", "resolved" ...) governs it in the same
clause, in the way of NegEx.  Sentences are split on punctuation and clause
words ("but", "however") so "no effusion but a nodule" labels the nodule.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from models.findings import Finding


class Mention(enum.StrEnum):
    PRESENT = "present"
    ABSENT = "absent"


_PHRASES: dict[Finding, tuple[str, ...]] = {
    Finding.MEDICAL_MATERIAL: (
        r"port(?:-a-cath)?",
        r"pacemaker",
        r"pacer",
        r"(?:pacing|icd|cardiac) leads?",
        r"surgical clips?",
        r"sternotomy wires?",
        r"central (?:venous )?(?:line|catheter)",
        r"stent",
        r"medical (?:material|device)",
        r"endotracheal tube",
        r"chest tube",
    ),
    Finding.ARTERIAL_WALL_CALCIFICATION: (
        r"(?:aortic|arterial|atherosclerotic|vascular)(?: wall)? calcifications?",
        r"calcifi\w* (?:of the )?(?:aorta|aortic wall|arterial wall)",
        r"atherosclerosis",
    ),
    Finding.CARDIOMEGALY: (
        r"cardiomegaly",
        r"(?:heart|cardiac silhouette) is (?:mildly |moderately |markedly )?enlarged",
        r"enlarged (?:heart|cardiac silhouette)",
    ),
    Finding.PERICARDIAL_EFFUSION: (r"pericardial (?:effusion|fluid)",),
    Finding.CORONARY_ARTERY_WALL_CALCIFICATION: (
        r"coronary(?: artery)?(?: wall)? calcifications?",
        r"calcifi\w* (?:of )?(?:the )?coronary arter(?:y|ies)",
        r"coronary (?:artery )?(?:atherosclerosis|calcium)",
    ),
    Finding.HIATAL_HERNIA: (r"hiat(?:al|us) hernia",),
    Finding.LYMPHADENOPATHY: (
        r"lymphadenopathy",
        r"adenopathy",
        r"enlarged (?:\w+ )?lymph nodes?",
        r"(?:mediastinal|hilar|axillary) (?:lymph )?nodes? (?:is|are) enlarged",
    ),
    Finding.EMPHYSEMA: (r"emphysema\w*", r"bullae", r"bullous"),
    Finding.ATELECTASIS: (r"atelecta\w+", r"(?:lobar |segmental )?collapse"),
    Finding.LUNG_NODULE: (
        r"(?:pulmonary |lung |solid |part-solid |part solid |ground-glass |ground glass |"
        r"subsolid |calcified |non-calcified )*nodules?",
        r"nodular (?:opacity|opacities|lesion)",
        r"(?:lung|pulmonary) mass",
    ),
    Finding.LUNG_OPACITY: (
        r"(?:lung |pulmonary |parenchymal |patchy |airspace |ground[- ]glass )opacit(?:y|ies)",
        r"ground[- ]glass (?:attenuation|change)",
        r"opacit(?:y|ies) (?:in|within) the (?:\w+ )*(?:lobe|lung)s?",
    ),
    Finding.PULMONARY_FIBROTIC_SEQUELA: (
        r"fibrotic (?:sequelae?|changes?|bands?|scarring)",
        r"fibrosis",
        r"(?:parenchymal|linear) scarring",
        r"fibrous (?:bands?|streaks?)",
    ),
    Finding.PLEURAL_EFFUSION: (
        r"pleural (?:effusions?|fluid)",
        r"pleural (?:or|and) pericardial (?:effusions?|fluid)",
        r"(?:left|right|bilateral)(?:-sided)? effusions?",
        r"hydrothorax",
    ),
    Finding.MOSAIC_ATTENUATION_PATTERN: (r"mosaic (?:attenuation|perfusion|pattern)",),
    Finding.PERIBRONCHIAL_THICKENING: (
        r"peribronchial (?:wall )?thickening",
        r"bronchial wall thickening",
        r"peribronchial cuffing",
    ),
    Finding.CONSOLIDATION: (r"consolidat\w+", r"air ?space disease"),
    Finding.BRONCHIECTASIS: (r"bronchiectasis", r"bronchiectatic", r"bronchiolectasis"),
    Finding.INTERLOBULAR_SEPTAL_THICKENING: (
        r"(?:interlobular )?septal (?:line )?thickening",
        r"thickening of the (?:interlobular )?septa",
        r"kerley b lines?",
        r"crazy[- ]paving",
    ),
}

_PRE_NEGATION = re.compile(
    r"\b(?:no|not|without|negative for|free of|absence of|absent|rule out|ruled out|"
    r"resolution of|resolved|no evidence of|no sign of|no signs of|nor|neither|"
    r"cannot be identified|there is no|there are no)\b"
)
_POST_NEGATION = re.compile(
    r"^[^.;]{0,40}?\b(?:is|are|was|were)\s+(?:not\s+(?:seen|identified|present|visible|"
    r"detected|evident)|absent|resolved)\b"
)
_CLAUSE_SPLIT = re.compile(r"[.;:\n!?]|\b(?:but|however|although|except)\b")
_PRE_WINDOW_WORDS = 6

_COMPILED: dict[Finding, re.Pattern[str]] = {
    finding: re.compile(r"\b(?:" + "|".join(phrases) + r")\b")
    for finding, phrases in _PHRASES.items()
}


@dataclass(frozen=True)
class LabelledMention:
    finding: Finding
    mention: Mention
    text: str


def _negated(clause: str, start: int, end: int) -> bool:
    before = clause[:start].split()[-_PRE_WINDOW_WORDS:]
    if _PRE_NEGATION.search(" ".join(before)):
        return True
    return bool(_POST_NEGATION.search(clause[end:]))


def mentions(text: str) -> list[LabelledMention]:
    """Every finding mention in ``text`` with whether it is stated present or absent."""
    found: list[LabelledMention] = []
    for clause in _CLAUSE_SPLIT.split(text.lower()):
        for finding, pattern in _COMPILED.items():
            for match in pattern.finditer(clause):
                mention = (
                    Mention.ABSENT
                    if _negated(clause, match.start(), match.end())
                    else Mention.PRESENT
                )
                found.append(LabelledMention(finding, mention, match.group(0)))
    return found


def label_text(text: str) -> dict[Finding, Mention]:
    """One label per mentioned finding; a finding stated present anywhere is present.

    Findings the text never mentions are left out: silence is not a negative.
    """
    labels: dict[Finding, Mention] = {}
    for item in mentions(text):
        if labels.get(item.finding) is not Mention.PRESENT:
            labels[item.finding] = item.mention
    return labels


def label_vector(text: str) -> list[int]:
    """0/1 labels in CT-RATE column order, for training on a hospital's own reports."""
    labels = label_text(text)
    return [int(labels.get(finding) is Mention.PRESENT) for finding in Finding]
