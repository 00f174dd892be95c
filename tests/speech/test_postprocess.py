"""Whisper's words to report text: lexicon, measurements, spoken commands and sections."""

from __future__ import annotations

import pytest

from app.speech.lexicon import CORRECTIONS, has_context
from app.speech.postprocess import apply_lexicon, correct_transcript


def test_chest_confusions_are_fixed_in_a_chest_context() -> None:
    text = apply_lexicon(
        "There is a 6 mm module in the right upper lobe. No plural effusion.", CORRECTIONS
    )
    assert text == "There is a 6 mm nodule in the right upper lobe. No pleural effusion."


def test_context_words_decide() -> None:
    assert has_context("small left pleural effusion")
    assert not has_context("the software module was updated")
    assert apply_lexicon("The software module was updated.", CORRECTIONS) == (
        "The software module was updated."
    )


def test_correction_keeps_a_capital() -> None:
    assert apply_lexicon("Module in the lingula.", CORRECTIONS) == "Nodule in the lingula."


def test_misheard_number_before_a_unit() -> None:
    result = correct_transcript("There is a sick millimeter nodule.")
    assert result.text == "There is a 6 mm nodule."


def test_numbers_and_units() -> None:
    result = correct_transcript(
        "A six by four millimeter nodule. The cyst measures forty five Hounsfield units "
        "and one point five centimeters. Follow-up in twelve months. Two nodules."
    )
    assert result.text == (
        "A 6 x 4 mm nodule. The cyst measures 45 HU and 1.5 cm. Follow-up in 12 months. "
        "Two nodules."
    )


def test_hyphenated_spoken_measurements() -> None:
    result = correct_transcript(
        "A two-by-one point five centimeters mass. A six-by-four mm nodule. Twenty-two "
        "millimeters. A well-defined two-by-two pattern."
    )
    assert result.text == (
        "A 2 x 1.5 cm mass. A 6 x 4 mm nodule. 22 mm. A well-defined two-by-two pattern."
    )


def test_spoken_punctuation_replaces_whispers() -> None:
    result = correct_transcript(
        "There is a nodule period. No effusion, period. Small nodule. Period. "
        "Two nodules comma the largest 6 mm period"
    )
    assert result.text == (
        "There is a nodule. No effusion. Small nodule. Two nodules, the largest 6 mm."
    )


def test_spoken_comma_after_whispers_period_continues_the_sentence() -> None:
    assert correct_transcript("Small nodule. Comma. Which is stable.").text == (
        "Small nodule, which is stable."
    )


def test_period_as_a_word_stays() -> None:
    text = "Stable over a period of time. Follow-up after a short period."
    assert correct_transcript(text).text == text


def test_colon_is_anatomy_except_after_a_heading() -> None:
    result = correct_transcript("Impression colon no acute process. The sigmoid colon is normal.")
    assert result.text == "Impression: No acute process. The sigmoid colon is normal."
    assert result.sections == {"impression": "No acute process. The sigmoid colon is normal."}


def test_scratch_that_removes_the_last_sentence() -> None:
    result = correct_transcript(
        "The heart is enlarged period. Scratch that. The heart is normal in size period."
    )
    assert result.text == "The heart is normal in size."


def test_scratch_that_removes_the_unfinished_sentence() -> None:
    result = correct_transcript("No effusion. The heart is enlarged scratch that normal heart.")
    assert result.text == "No effusion. Normal heart."


def test_scratch_that_never_removes_a_heading() -> None:
    result = correct_transcript("Findings. Scratch that. Clear lungs.")
    assert result.text == "Findings: Clear lungs."


def test_new_paragraph_and_new_line() -> None:
    result = correct_transcript("Clear lungs new paragraph normal heart new line no effusion")
    assert result.text == "Clear lungs.\n\nNormal heart.\nNo effusion."


def test_sections_from_section_words() -> None:
    result = correct_transcript(
        "Clinical history: cough. Technique, CT chest without contrast. Comparison. None. "
        "Findings. Clear lungs. Impression: No acute process."
    )
    assert result.sections == {
        "indication": "Cough.",
        "technique": "CT chest without contrast.",
        "comparison": "None.",
        "findings": "Clear lungs.",
        "impression": "No acute process.",
    }
    assert result.text.startswith("Clinical history: Cough.\n\nTechnique: CT chest")


def test_section_words_inside_a_sentence_are_words() -> None:
    result = correct_transcript(
        "Impression. These findings are consistent with pneumonia. Findings compatible with edema."
    )
    assert result.sections == {
        "impression": "These findings are consistent with pneumonia. "
        "Findings compatible with edema."
    }


def test_next_section_moves_on() -> None:
    result = correct_transcript("Clear lungs. Next section. No acute process. Next section. CT.")
    assert result.sections == {
        "findings": "Clear lungs.",
        "impression": "No acute process.",
        "recommendations": "CT.",
    }


def test_text_before_any_section_word_is_findings() -> None:
    assert correct_transcript("The lungs are clear").sections == {
        "findings": "The lungs are clear."
    }


def test_repeated_section_collects_its_text() -> None:
    result = correct_transcript("Findings. Clear lungs. Impression. Normal. Findings. No effusion.")
    assert result.sections == {"findings": "Clear lungs. No effusion.", "impression": "Normal."}


@pytest.mark.parametrize("raw", ["", "   ", "period", "scratch that"])
def test_nothing_left(raw: str) -> None:
    result = correct_transcript(raw)
    assert result.text == ""
    assert result.sections == {}


def test_a_spoken_comma_heard_as_a_word_is_a_comma() -> None:
    """tiny.en writes "coma,", "calmer," or "karma," for a spoken comma (its own mark after
    it)."""
    assert correct_transcript("Small pleural effusion coma, likely reactive period.").text == (
        "Small pleural effusion, likely reactive."
    )
    assert correct_transcript("Chest CT. Hepatic steatosis, karma, otherwise normal.").text == (
        "Chest CT. Hepatic steatosis, otherwise normal."
    )
    assert correct_transcript("The patient was in a coma, said the nurse.").text == (
        "The patient was in a coma, said the nurse."
    )  # not a chest dictation: the word stays


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        ("There is a cavity with a irregular wall.", "There is a cavity with an irregular wall."),
        ("A oval lesion, likely a adenoma.", "An oval lesion, likely an adenoma."),
        # a number word keeps "a": the report writes "a 8 mm nodule"
        ("There is a eight millimeter nodule.", "There is a eight millimeter nodule."),
        (
            "A one point two cm cyst in a uniform wall.",
            "A one point two cm cyst in a uniform wall.",
        ),
    ],
)
def test_an_before_a_vowel(heard: str, meant: str) -> None:
    assert apply_lexicon(heard, CORRECTIONS) == meant


def test_a_heading_heard_without_its_s_opens_the_section() -> None:
    corrected = correct_transcript("Finding. The lungs are clear. Impression. Normal chest CT.")
    assert corrected.text == "Findings: The lungs are clear.\n\nImpression: Normal chest CT."
    assert correct_transcript("The finding is stable.").text == "The finding is stable."


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        # development-set mishearings of tiny.en
        (
            "Acne, axial images of the chest were obtained. Findings. No pleural effusion.",
            "Technique: Axial images of the chest were obtained.\n\nFindings: No pleural effusion.",
        ),
        (
            "Chest CT. Small pleural effusion, common, likely reactive.",
            "Chest CT. Small pleural effusion, likely reactive.",
        ),
        (
            "The ascending order measures 4 cm. Chest CT.",
            "The ascending aorta measures 4 cm. Chest CT.",
        ),
        (
            "Mild calcification of the ordered wall. Chest CT.",
            "Mild calcification of the aortic wall. Chest CT.",
        ),
        (
            "Chest CT. Ground glass opacity in both lungs.",
            "Chest CT. Ground glass opacities in both lungs.",
        ),
        # the same words where they are what was said
        (
            "Findings: acne on the chest wall. No pleural effusion.",
            "Findings: Acne on the chest wall. No pleural effusion.",
        ),
        ("Chest CT. Nodules are common.", "Chest CT. Nodules are common."),
        (
            "Chest CT. Nodules listed in the ascending order of size.",
            "Chest CT. Nodules listed in the ascending order of size.",
        ),
    ],
)
def test_development_mishearings_are_fixed_where_they_are_ones(heard: str, meant: str) -> None:
    assert correct_transcript(heard).text == meant
