"""From the model's output, the order and the dictation to a structured draft and its flags.

Rules that keep a draft honest:
- only what the model assessed is reported; every other organ system reads
  "not assessed by the drafting model", never a normal finding;
- findings between their two thresholds are stated and flagged "verify";
- where the dictation contradicts the model, both stay visible and a
  discrepancy flag is raised;
- guideline suggestions are listed apart and never written into the report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.core.domain import FlagKind
from app.reporting import guidelines
from app.reporting.organs import IMPRESSION_ORDER, ORGAN_SYSTEMS, RADLEX, WORDING
from app.reporting.schema import (
    Evidence,
    FindingStatement,
    Nodule,
    Section,
    StructuredReport,
)
from models.findings import Finding
from models.report_labeler import Mention, label_text


@dataclass(frozen=True)
class FindingScore:
    """A finding's calibrated probability and its two decision thresholds.

    ``probability >= high``: present.  ``low <= probability < high``: present but
    flagged "verify".  Below ``low``: not detected.
    """

    finding: Finding
    probability: float
    low: float
    high: float
    evidence: Evidence | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"thresholds of {self.finding} must satisfy 0 <= low <= high <= 1")

    @property
    def detected(self) -> bool:
        return self.probability >= self.low

    @property
    def uncertain(self) -> bool:
        return self.low <= self.probability < self.high


@dataclass(frozen=True)
class ModelOutput:
    scores: Sequence[FindingScore]
    nodules: Sequence[Nodule] = ()
    model_version: str | None = None
    model_precision: str | None = None
    demonstration_model: bool = False
    modality_weights: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Technique:
    slice_thickness_mm: float | None = None
    contrast_agent: str | None = None
    kvp: float | None = None
    ctdivol_mgy: float | None = None
    kernel: str | None = None


@dataclass(frozen=True)
class OrderContext:
    procedure_text: str | None = None
    reason_for_exam: str | None = None
    clinical_history: str | None = None


@dataclass(frozen=True)
class DraftFlag:
    kind: FlagKind
    finding: Finding | None
    message: str


@dataclass(frozen=True)
class Draft:
    report: StructuredReport
    flags: tuple[DraftFlag, ...]


# Words that place a dictated sentence in an organ system when it names no finding.
_ORGAN_WORDS: dict[str, tuple[str, ...]] = {
    "lungs": ("lung", "lobe", "airway", "bronch", "trachea", "parenchym"),
    "pleura": ("pleura",),
    "heart": ("heart", "cardiac", "pericardi", "coronary"),
    "mediastinum": ("mediastin", "hilar", "hilum", "esophag", "thyroid", "lymph node"),
    "vessels": ("aorta", "aortic", "pulmonary arter", "vessel", "vascular", "embol"),
    "upper_abdomen": (
        "liver",
        "hepatic",
        "spleen",
        "adrenal",
        "kidney",
        "renal",
        "gallbladder",
        "pancrea",
        "stomach",
        "abdomen",
    ),
    "bones_soft_tissues": (
        "bone",
        "rib",
        "spine",
        "vertebra",
        "sternum",
        "osseous",
        "soft tissue",
        "breast",
        "axilla",
        "chest wall",
        "fracture",
        "port",
        "pacemaker",
    ),
}
_SECTION_OF: dict[Finding, str] = {f: o.key for o in ORGAN_SYSTEMS for f in o.findings}
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _organ_of_sentence(sentence: str) -> str | None:
    labels = label_text(sentence)
    if labels:
        return _SECTION_OF[next(iter(labels))]
    lowered = sentence.lower()
    for key, words in _ORGAN_WORDS.items():
        if any(word in lowered for word in words):
            return key
    return None


def place_dictated_findings(text: str) -> tuple[dict[str, str], str]:
    """Split dictated findings into organ sections; what fits none is returned apart."""
    placed: dict[str, list[str]] = {}
    unplaced: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE.split(text.strip())):
        if not sentence:
            continue
        key = _organ_of_sentence(sentence)
        if key is None:
            unplaced.append(sentence)
        else:
            placed.setdefault(key, []).append(sentence)
    return {k: " ".join(v) for k, v in placed.items()}, " ".join(unplaced)


def _nodule_text(nodules: Sequence[Nodule]) -> str:
    parts = []
    for nodule in sorted(nodules, key=lambda n: -n.diameter_mm):
        where = f", {nodule.lobe}" if nodule.lobe else ""
        image = ""
        if nodule.evidence is not None and nodule.evidence.slice_index is not None:
            image = f" (image {nodule.evidence.slice_index + 1})"
        parts.append(f"{nodule.diameter_mm:.0f} mm {nodule.kind}{where}{image}")
    label = "Lung nodule" if len(nodules) == 1 else f"Lung nodules ({len(nodules)})"
    return f"{label}: " + "; ".join(parts) + "."


def _statement(score: FindingScore, nodules: Sequence[Nodule]) -> FindingStatement:
    if score.finding is Finding.LUNG_NODULE and nodules:
        text = _nodule_text(nodules)
    else:
        location = score.evidence.location if score.evidence and score.evidence.location else None
        text = WORDING[score.finding] + (f", {location}" if location else "") + "."
    return FindingStatement(
        finding=score.finding.value,
        text=text,
        probability=round(score.probability, 3),
        evidence=score.evidence,
        radlex=RADLEX.get(score.finding),
    )


def technique_text(technique: Technique) -> str:
    parts = ["CT of the chest"]
    if technique.contrast_agent:
        parts.append(f"with intravenous contrast ({technique.contrast_agent})")
    else:
        parts.append("(no contrast agent recorded in the DICOM header)")
    details = []
    if technique.slice_thickness_mm:
        details.append(f"{technique.slice_thickness_mm:g} mm slices")
    if technique.kvp:
        details.append(f"{technique.kvp:g} kVp")
    if technique.ctdivol_mgy:
        details.append(f"CTDIvol {technique.ctdivol_mgy:.1f} mGy")
    if technique.kernel:
        details.append(f"{technique.kernel} kernel")
    return " ".join(parts) + "." + (f" {', '.join(details)}." if details else "")


def clinical_text(order: OrderContext | None) -> str:
    if order is None:
        return "No order linked; clinical information not available to the drafting model."
    parts = []
    if order.reason_for_exam:
        parts.append(f"Reason for exam: {order.reason_for_exam.strip()}")
    if order.clinical_history:
        parts.append(f"History: {order.clinical_history.strip()}")
    return ". ".join(p.rstrip(".") for p in parts) + "." if parts else "Not given in the order."


def _flags(
    scores: Sequence[FindingScore],
    dictated: Mapping[Finding, Mention],
    unaided: Mapping[Finding, FindingScore],
) -> list[DraftFlag]:
    """Verify flags from the draft's scores; discrepancies against the ``unaided`` reading.

    The model also reads the dictation, so its fused scores tend to agree with it; a
    contradiction is only visible against what it made of the images and order alone.
    """
    flags: list[DraftFlag] = []
    for score in scores:
        said = dictated.get(score.finding)
        name = WORDING[score.finding].lower()
        own = unaided.get(score.finding, score)
        if said is Mention.PRESENT and not own.detected:
            flags.append(
                DraftFlag(
                    FlagKind.DISCREPANCY,
                    score.finding,
                    f"Dictation reports {name}; from the images and order alone the "
                    f"drafting model did not detect it (p={own.probability:.2f}).",
                )
            )
        elif said is Mention.ABSENT and own.detected:
            flags.append(
                DraftFlag(
                    FlagKind.DISCREPANCY,
                    score.finding,
                    f"Dictation states no {name}; from the images and order alone the "
                    f"drafting model detected it (p={own.probability:.2f}).",
                )
            )
        elif score.uncertain and said is not Mention.PRESENT:
            flags.append(
                DraftFlag(
                    FlagKind.VERIFY,
                    score.finding,
                    f"Verify {name}: probability {score.probability:.2f} is between "
                    f"the thresholds {score.low:.2f} and {score.high:.2f}.",
                )
            )
    return flags


def build_draft(
    model: ModelOutput,
    *,
    technique: Technique,
    order: OrderContext | None,
    dictation: Mapping[str, str] | None = None,
    unaided: ModelOutput | None = None,
) -> Draft:
    """The AI draft: unverified, AI-generated, with its editor flags.

    ``unaided`` is the model's output for the same study without the dictation; where
    given, dictation discrepancies are judged against it.
    """
    scores = {score.finding: score for score in model.scores}
    missing = set(Finding) - set(scores)
    if missing:
        raise ValueError(f"model output lacks scores for {sorted(f.value for f in missing)}")
    dictation = dictation or {}
    dictated_findings = dictation.get("findings", "")
    placed, unplaced = place_dictated_findings(dictated_findings)
    nodules = list(model.nodules) if scores[Finding.LUNG_NODULE].detected else []

    sections = []
    for organ in ORGAN_SYSTEMS:
        present = [scores[f] for f in organ.findings if scores[f].detected]
        sections.append(
            Section(
                key=organ.key,
                title=organ.title,
                dictated=placed.get(organ.key),
                statements=[_statement(score, nodules) for score in present],
                not_detected=[f.value for f in organ.findings if not scores[f].detected],
                assessed=bool(organ.findings),
            )
        )
    if unplaced:
        sections.append(
            Section(key="other", title="Other dictated findings", dictated=unplaced, assessed=False)
        )

    impression = [
        _statement(scores[f], nodules).text for f in IMPRESSION_ORDER if scores[f].detected
    ]
    if not impression:
        impression = ["None of the findings assessed by the drafting model was detected."]

    dictated_labels = label_text(f"{dictated_findings}. {dictation.get('impression', '')}")
    suggestions = guidelines.suggest(
        nodules,
        procedure_text=order.procedure_text if order else None,
        reason_for_exam=order.reason_for_exam if order else None,
    )
    report = StructuredReport(
        clinical_information=clinical_text(order),
        technique=technique_text(technique),
        sections=sections,
        nodules=nodules,
        impression=impression,
        dictated_impression=dictation.get("impression") or None,
        suggestions=suggestions,
        ai_generated=True,
        verified=False,
        demonstration_model=model.demonstration_model,
        model_version=model.model_version,
        model_precision=model.model_precision,
        modality_weights={k: round(float(v), 3) for k, v in model.modality_weights.items()},
    )
    own = {score.finding: score for score in (unaided or model).scores}
    flags = _flags(list(scores.values()), dictated_labels, own)
    return Draft(report=report, flags=tuple(flags))


__all__ = [
    "Draft",
    "DraftFlag",
    "FindingScore",
    "ModelOutput",
    "OrderContext",
    "Technique",
    "build_draft",
    "place_dictated_findings",
]
