"""EMR context of a synthetic study: reason for exam, history, priority and procedure.

The reason is sometimes consistent with the drawn findings, sometimes
unrelated, sometimes missing, so that a model cannot simply copy the
indication into its report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.findings import FINDINGS, Finding
from models.synthetic.tissues import Phase

RELATION_WEIGHTS = {"consistent": 0.45, "unrelated": 0.35, "missing": 0.2}
ORDER_MISSING_PROBABILITY = 0.04
STAT_PROBABILITY = 0.2

CONSISTENT_REASONS: dict[Finding, tuple[str, ...]] = {
    Finding.MEDICAL_MATERIAL: (
        "Check of port catheter position.",
        "Pacemaker patient with dyspnea.",
    ),
    Finding.ARTERIAL_WALL_CALCIFICATION: (
        "Chest pain, cardiovascular risk assessment.",
        "Hypertension, known atherosclerosis.",
    ),
    Finding.CARDIOMEGALY: (
        "Heart failure with dyspnea and leg edema.",
        "Dyspnea on exertion, known cardiomyopathy.",
    ),
    Finding.PERICARDIAL_EFFUSION: (
        "Chest pain and tachycardia, suspected pericardial effusion.",
        "Dyspnea after cardiac surgery.",
    ),
    Finding.CORONARY_ARTERY_WALL_CALCIFICATION: (
        "Atypical chest pain.",
        "Cardiovascular risk assessment, diabetes.",
    ),
    Finding.HIATAL_HERNIA: ("Reflux symptoms and retrosternal discomfort.", "Dysphagia."),
    Finding.LYMPHADENOPATHY: (
        "Staging of lymphoma.",
        "Weight loss and night sweats.",
        "Sarcoidosis follow-up.",
    ),
    Finding.EMPHYSEMA: ("COPD exacerbation.", "Dyspnea, 40 pack-year smoking history."),
    Finding.ATELECTASIS: ("Postoperative dyspnea.", "Reduced breath sounds at the lung bases."),
    Finding.LUNG_NODULE: (
        "Follow-up of a known pulmonary nodule.",
        "Nodule on chest radiograph.",
        "Lung cancer screening, former smoker.",
    ),
    Finding.LUNG_OPACITY: (
        "Fever and dry cough, COVID-19 pneumonia?",
        "Hypoxemia, suspected viral pneumonia.",
    ),
    Finding.PULMONARY_FIBROTIC_SEQUELA: ("Follow-up after tuberculosis.", "Chronic cough."),
    Finding.PLEURAL_EFFUSION: (
        "Dyspnea, suspected pleural effusion.",
        "Decreased breath sounds at the base.",
    ),
    Finding.MOSAIC_ATTENUATION_PATTERN: (
        "Dyspnea, suspected small airways disease.",
        "Asthma with worsening dyspnea.",
    ),
    Finding.PERIBRONCHIAL_THICKENING: ("Chronic bronchitis.", "Recurrent respiratory infections."),
    Finding.CONSOLIDATION: (
        "Fever and productive cough, pneumonia?",
        "Elevated inflammatory markers, pneumonia?",
    ),
    Finding.BRONCHIECTASIS: (
        "Chronic productive cough.",
        "Recurrent lower respiratory tract infections.",
    ),
    Finding.INTERLOBULAR_SEPTAL_THICKENING: (
        "Dyspnea, suspected interstitial lung disease.",
        "Heart failure, dyspnea.",
    ),
}
UNRELATED_REASONS = (
    "Trauma, fall from height.",
    "Preoperative evaluation.",
    "Fever of unknown origin.",
    "Staging of colorectal carcinoma.",
    "Routine follow-up.",
    "Chest pain, exclude pulmonary embolism.",
    "Abdominal pain.",
    "Elevated D-dimer.",
    "Syncope.",
)
HISTORIES = (
    "Hypertension.",
    "Type 2 diabetes mellitus.",
    "Former smoker.",
    "Active smoker, 30 pack-years.",
    "History of breast cancer, operated.",
    "History of prostate cancer.",
    "Chronic kidney disease.",
    "Rheumatoid arthritis.",
    "No known prior illness.",
)
PROVIDERS = ("SYNTHETIC^ORDERING^A", "SYNTHETIC^ORDERING^B", "SYNTHETIC^ORDERING^C")
PROCEDURES = {
    Phase.NONE: ("71250", "CT CHEST WITHOUT CONTRAST"),
    Phase.ARTERIAL: ("71260", "CT CHEST WITH CONTRAST"),
    Phase.VENOUS: ("71260", "CT CHEST WITH CONTRAST"),
}


@dataclass(frozen=True)
class ClinicalContext:
    relation: str  # "consistent", "unrelated" or "missing"
    reason_for_exam: str | None
    clinical_history: str | None
    priority: str  # HL7: "S" stat, "R" routine
    procedure_code: str
    procedure_text: str
    ordering_provider: str | None
    order_present: bool

    @property
    def clinical_information(self) -> str:
        """One line in the style of CT-RATE's ClinicalInformation_EN (empty when missing)."""
        parts = [p for p in (self.reason_for_exam, self.clinical_history) if p]
        return " ".join(parts)


def sample_clinical_context(
    rng: np.random.Generator, *, present: frozenset[Finding], phase: Phase, age: int, sex: str
) -> ClinicalContext:
    names = list(RELATION_WEIGHTS)
    relation = str(rng.choice(names, p=list(RELATION_WEIGHTS.values())))
    if relation == "consistent" and not present:
        relation = "unrelated"
    reason: str | None
    history: str | None
    if relation == "consistent":
        chosen = [f for f in FINDINGS if f in present]
        reason = str(rng.choice(CONSISTENT_REASONS[chosen[int(rng.integers(len(chosen)))]]))
    elif relation == "unrelated":
        reason = str(rng.choice(UNRELATED_REASONS))
    else:
        reason = None
    history = (
        None
        if relation == "missing" or rng.random() < 0.3
        else f"{age}-year-old {'man' if sex == 'M' else 'woman'}. {rng.choice(HISTORIES)}"
    )
    code, text = PROCEDURES[phase]
    return ClinicalContext(
        relation=relation,
        reason_for_exam=reason,
        clinical_history=history,
        priority="S" if rng.random() < STAT_PROBABILITY else "R",
        procedure_code=code,
        procedure_text=text,
        ordering_provider=None if relation == "missing" else str(rng.choice(PROVIDERS)),
        order_present=bool(rng.random() >= ORDER_MISSING_PROBABILITY),
    )
