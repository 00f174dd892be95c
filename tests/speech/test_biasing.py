"""The second look at a chest chunk: the terms its odd words sound like, named in the prompt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.speech.audio import decode_audio
from app.speech.biasing import MAX_TERMS, PREFIX, biased_prompt, sounding_terms
from app.speech.lexicon import VOCABULARY_PROMPT
from app.speech.nbest import Hypothesis, NBest
from app.speech.phonemes import espeak_available
from app.speech.phonetic import PhoneticCorrector, common_words
from app.speech.transcriber import Transcriber, _as_good
from app.speech.vocabulary import CHEST_CT_VOCABULARY

Speak = Callable[[str, Path], Path]
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


@needs_espeak
@pytest.mark.parametrize(
    ("heard", "term"),
    [
        ("Gallbladder stones, compatible with colipidasis.", "cholelithiasis"),
        ("A stickulated nodule in the left upper lobe.", "spiculated"),
        ("Limphanedic spread of tumor in the right lower lobe.", "lymphangitic"),
        ("Small left hydrache pneumothorax.", "hydropneumothorax"),
    ],
)
def test_odd_words_name_the_terms_they_sound_like(heard: str, term: str) -> None:
    assert term in sounding_terms(heard)


@needs_espeak
def test_report_english_names_nothing() -> None:
    text = "No pleural effusion or pneumothorax. The heart is normal in size. The lungs are clear."
    assert sounding_terms(text) == []


@needs_espeak
def test_terms_already_written_are_not_named_and_few_are() -> None:
    terms = sounding_terms("Spiculated margins. A stickulated nodule, likely colipidasis.")
    assert "spiculated" not in terms
    assert "cholelithiasis" in terms
    many = " ".join(["Stickulated colipidasis, galleger, hyattal lural verdidra."] * 5)
    assert len(sounding_terms(many)) <= MAX_TERMS


def test_without_pronunciations_there_is_no_second_look() -> None:
    corrector = PhoneticCorrector.build(CHEST_CT_VOCABULARY, common_words())
    assert sounding_terms("Gallbladder stones, compatible with colipidasis.", corrector) == []


def test_the_terms_close_the_prompt() -> None:
    prompt = biased_prompt(VOCABULARY_PROMPT, ["cholelithiasis", "gallbladder"])
    assert prompt == f"{VOCABULARY_PROMPT} {PREFIX}cholelithiasis, gallbladder."
    assert biased_prompt(None, ["lingula"]) == f"{PREFIX}lingula."


def _best(text: str) -> NBest:
    return NBest((Hypothesis(text=text, logprob=-2.0, tokens=len(text.split()) + 2),), 0.0)


def test_a_second_decoding_that_loops_or_drops_words_is_not_taken() -> None:
    first = _best(
        "Hepatic ketosis. No killer or axillary adenopathy. Linf angelic spread of tumor."
    )
    mended = _best(
        "Hepatic steatosis. No hilar or axillary adenopathy. Lymphangitic spread of tumor."
    )
    looping = _best("Hepatic, ketosis, parenchymal, " + "parenchymal, " * 6)
    short = _best("Hepatic steatosis.")
    assert _as_good(mended, first)
    assert not _as_good(looping, first)
    assert not _as_good(short, first)


def test_spoken_term_heard_with_its_name_in_the_prompt(
    transcriber: Transcriber, speak: Speak, tmp_path: Path
) -> None:
    """Real audio (espeak-ng, tiny.en): "lymphangitic" is written as heard ("Limphanedic")
    at first, and as the term once the prompt names it."""
    said = (
        "Findings. Hepatic steatosis period. "
        "Lymphangitic spread of tumor in the right lower lobe period."
    )
    audio = decode_audio(speak(said, tmp_path / "lymphangitic.wav"))
    without = Transcriber(model=transcriber._model, model_name="tiny.en", bias=False)
    assert "lymphangitic" not in without.transcribe_raw(audio).text.lower()
    assert "lymphangitic" in transcriber.transcribe_raw(audio).text.lower()


@needs_espeak
def test_frequent_english_names_only_near_terms() -> None:
    """Everyday words of a chest dictation ("patient in", "bed") are more likely said than
    misheard: no far term is named for them ("prominent", "benign": naming such terms made
    tiny.en write "in bed two" as "in med2")."""
    terms = sounding_terms("The patient in bed two has a small left pleural effusion.")
    assert not {"prominent", "benign"} & set(terms)
    assert "cholelithiasis" in sounding_terms("The patient has colipidasis.")
