"""The report labeler reads findings and their negation the way a radiologist wrote them."""

from __future__ import annotations

import pytest

from models.findings import Finding
from models.report_labeler import Mention, label_text, label_vector


@pytest.mark.parametrize(
    ("text", "finding", "mention"),
    [
        ("There is a 6 mm solid nodule in the right upper lobe.", Finding.LUNG_NODULE, "present"),
        ("No pulmonary nodules.", Finding.LUNG_NODULE, "absent"),
        ("Small left pleural effusion.", Finding.PLEURAL_EFFUSION, "present"),
        ("No pleural or pericardial effusion.", Finding.PLEURAL_EFFUSION, "absent"),
        ("No pleural or pericardial effusion.", Finding.PERICARDIAL_EFFUSION, "absent"),
        ("Pleural effusion is not seen.", Finding.PLEURAL_EFFUSION, "absent"),
        ("Centrilobular emphysema in both upper lobes.", Finding.EMPHYSEMA, "present"),
        ("The heart is enlarged.", Finding.CARDIOMEGALY, "present"),
        (
            "Coronary artery calcifications are present.",
            Finding.CORONARY_ARTERY_WALL_CALCIFICATION,
            "present",
        ),
        ("Without mediastinal lymphadenopathy.", Finding.LYMPHADENOPATHY, "absent"),
        ("Resolved consolidation in the left lower lobe.", Finding.CONSOLIDATION, "absent"),
        (
            "Left chest wall port with its catheter tip in the SVC.",
            Finding.MEDICAL_MATERIAL,
            "present",
        ),
        (
            "Interlobular septal thickening at both bases.",
            Finding.INTERLOBULAR_SEPTAL_THICKENING,
            "present",
        ),
        ("Mosaic attenuation pattern of the lungs.", Finding.MOSAIC_ATTENUATION_PATTERN, "present"),
        ("Small hiatal hernia.", Finding.HIATAL_HERNIA, "present"),
    ],
)
def test_mentions_and_negation(text: str, finding: Finding, mention: str) -> None:
    assert label_text(text)[finding] is Mention(mention)


def test_negation_stops_at_a_clause_boundary() -> None:
    labels = label_text("No pleural effusion, but a 9 mm nodule in the left lower lobe.")
    assert labels[Finding.PLEURAL_EFFUSION] is Mention.ABSENT
    assert labels[Finding.LUNG_NODULE] is Mention.PRESENT


def test_silence_is_not_a_negative() -> None:
    assert Finding.BRONCHIECTASIS not in label_text("Small right pleural effusion.")


def test_label_vector_is_in_ct_rate_order() -> None:
    vector = label_vector("Cardiomegaly. Bilateral pleural effusions. No nodules.")
    assert len(vector) == 18
    assert vector[list(Finding).index(Finding.CARDIOMEGALY)] == 1
    assert vector[list(Finding).index(Finding.PLEURAL_EFFUSION)] == 1
    assert vector[list(Finding).index(Finding.LUNG_NODULE)] == 0
    assert sum(vector) == 2
