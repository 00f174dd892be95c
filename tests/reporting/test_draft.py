"""Drafts report only what the model assessed, flag uncertainty and never invent normals."""

from __future__ import annotations

import pytest

from app.core.domain import FlagKind
from app.reporting.draft import (
    FindingScore,
    ModelOutput,
    OrderContext,
    Technique,
    build_draft,
    place_dictated_findings,
)
from app.reporting.render import render_html, render_text
from app.reporting.schema import AI_BANNER, DEMO_BANNER, NOT_ASSESSED, Evidence, Nodule
from models.findings import Finding

LOW, HIGH = 0.3, 0.6


def _model(probabilities: dict[Finding, float], **kwargs: object) -> ModelOutput:
    scores = [FindingScore(f, probabilities.get(f, 0.02), LOW, HIGH) for f in Finding]
    return ModelOutput(scores=scores, **kwargs)  # type: ignore[arg-type]


def _draft(probabilities: dict[Finding, float], **kwargs: object):  # type: ignore[no-untyped-def]
    model_kwargs = {k: kwargs.pop(k) for k in ("nodules", "demonstration_model") if k in kwargs}
    return build_draft(
        _model(probabilities, **model_kwargs),
        technique=Technique(slice_thickness_mm=1.25, kvp=120),
        order=kwargs.pop("order", OrderContext(reason_for_exam="Cough", clinical_history=None)),
        dictation=kwargs.pop("dictation", None),  # type: ignore[arg-type]
    )


def test_a_draft_without_findings_invents_no_normals() -> None:
    draft = _draft({})
    text = render_text(draft.report)
    assert AI_BANNER in text
    assert "normal" not in text.lower()
    assert "unremarkable" not in text.lower()
    upper_abdomen = next(s for s in draft.report.sections if s.key == "upper_abdomen")
    assert not upper_abdomen.assessed
    assert NOT_ASSESSED in text
    assert "Prior studies not available to the drafting model." in text
    assert "None of the findings assessed by the drafting model was detected." in text
    assert draft.report.ai_generated and not draft.report.verified
    assert draft.flags == ()


def test_present_findings_land_in_their_organ_sections_with_probabilities() -> None:
    draft = _draft({Finding.PLEURAL_EFFUSION: 0.93, Finding.CARDIOMEGALY: 0.81})
    by_key = {s.key: s for s in draft.report.sections}
    assert [s.finding for s in by_key["pleura"].statements] == ["Pleural effusion"]
    assert [s.finding for s in by_key["heart"].statements] == ["Cardiomegaly"]
    assert by_key["pleura"].statements[0].radlex == "RID34539"
    assert "Cardiomegaly" in by_key["heart"].statements[0].text
    assert draft.report.impression[0].startswith("Pleural effusion")


def test_a_finding_between_thresholds_is_flagged_verify_not_hedged_in_text() -> None:
    draft = _draft({Finding.EMPHYSEMA: 0.45})
    (flag,) = draft.flags
    assert flag.kind is FlagKind.VERIFY and flag.finding is Finding.EMPHYSEMA
    text = render_text(draft.report)
    assert "possible" not in text.lower() and "verify" not in text.lower()


def test_dictation_contradicting_the_model_keeps_both_and_flags_a_discrepancy() -> None:
    draft = _draft(
        {Finding.PLEURAL_EFFUSION: 0.9},
        dictation={"findings": "No pleural effusion. Degenerative change of the spine."},
    )
    pleura = next(s for s in draft.report.sections if s.key == "pleura")
    assert pleura.dictated == "No pleural effusion."
    assert pleura.statements[0].finding == "Pleural effusion"
    kinds = {(f.kind, f.finding) for f in draft.flags}
    assert (FlagKind.DISCREPANCY, Finding.PLEURAL_EFFUSION) in kinds
    bones = next(s for s in draft.report.sections if s.key == "bones_soft_tissues")
    assert bones.dictated == "Degenerative change of the spine."


def test_dictated_finding_the_model_missed_is_a_discrepancy() -> None:
    draft = _draft({}, dictation={"findings": "There is a small hiatal hernia."})
    assert [(f.kind, f.finding) for f in draft.flags] == [
        (FlagKind.DISCREPANCY, Finding.HIATAL_HERNIA)
    ]


def test_discrepancies_are_judged_against_the_reading_without_the_dictation() -> None:
    """The fused model echoes a dictated effusion; the images alone did not show it."""
    dictation = {"findings": "There is a large pleural effusion."}
    fused = _model({Finding.PLEURAL_EFFUSION: 0.95})
    unaided = _model({Finding.PLEURAL_EFFUSION: 0.05})
    technique = Technique(slice_thickness_mm=1.25, kvp=120)
    draft = build_draft(fused, technique=technique, order=None, dictation=dictation)
    assert draft.flags == ()  # without the unaided reading nothing would be flagged
    draft = build_draft(
        fused, technique=technique, order=None, dictation=dictation, unaided=unaided
    )
    (flag,) = draft.flags
    assert flag.kind is FlagKind.DISCREPANCY and flag.finding is Finding.PLEURAL_EFFUSION
    assert "images and order alone" in flag.message and "p=0.05" in flag.message
    pleura = next(s for s in draft.report.sections if s.key == "pleura")
    assert [s.finding for s in pleura.statements] == ["Pleural effusion"]  # both visible


def test_dictation_confirming_an_uncertain_finding_needs_no_verify_flag() -> None:
    draft = _draft({Finding.ATELECTASIS: 0.4}, dictation={"findings": "Bibasilar atelectasis."})
    assert draft.flags == ()


def test_unplaced_dictation_is_kept() -> None:
    placed, unplaced = place_dictated_findings("Limited by motion. Small left pleural effusion.")
    assert placed == {"pleura": "Small left pleural effusion."}
    assert unplaced == "Limited by motion."


def test_nodules_give_guideline_suggestions_that_stay_out_of_the_text() -> None:
    nodule = Nodule(
        diameter_mm=9.0, kind="solid", lobe="left lower lobe", evidence=Evidence(slice_index=30)
    )
    draft = _draft({Finding.LUNG_NODULE: 0.95}, nodules=[nodule])
    (suggestion,) = draft.report.suggestions
    assert suggestion.guideline.startswith("Fleischner")
    assert draft.report.recommendations == []
    text = render_text(draft.report)
    assert "9 mm solid, left lower lobe (image 31)" in text
    assert "Fleischner" not in text and "RECOMMENDATIONS" not in text


def test_screening_orders_get_lung_rads() -> None:
    nodule = Nodule(diameter_mm=6.5, kind="solid", lobe="right upper lobe")
    order = OrderContext(procedure_text="LDCT lung cancer screening", reason_for_exam=None)
    draft = _draft({Finding.LUNG_NODULE: 0.95}, nodules=[nodule], order=order)
    (suggestion,) = draft.report.suggestions
    assert suggestion.guideline.startswith("Lung-RADS") and suggestion.category == "3"


def test_missing_order_is_said_not_guessed() -> None:
    draft = _draft({}, order=None)
    assert "No order linked" in draft.report.clinical_information


def test_demonstration_label_and_html_escaping() -> None:
    draft = _draft(
        {},
        demonstration_model=True,
        dictation={"findings": "Liver <script>alert(1)</script> lesion."},
    )
    html = render_html(draft.report)
    assert DEMO_BANNER in html and DEMO_BANNER in render_text(draft.report)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_signed_version_renders_without_ai_markers() -> None:
    report = _draft({Finding.CARDIOMEGALY: 0.9, Finding.EMPHYSEMA: 0.4}).report
    signed = report.model_copy(update={"ai_generated": False, "verified": True})
    text = render_text(signed)
    assert AI_BANNER not in text and "p=" not in text and "drafting model did" not in text
    assert "Cardiomegaly." in text


def test_every_finding_needs_a_score() -> None:
    partial = ModelOutput(scores=[FindingScore(Finding.EMPHYSEMA, 0.1, LOW, HIGH)])
    with pytest.raises(ValueError, match="lacks scores"):
        build_draft(partial, technique=Technique(), order=None)
