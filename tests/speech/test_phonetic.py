"""Words Whisper invents become the chest CT term they sound like; real words stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.speech.model import locate_model
from app.speech.phonetic import (
    COMMON_WORDS_FILE,
    PhoneticCorrector,
    chest_corrector,
    common_words,
    edit_distance,
    sound_key,
)
from app.speech.postprocess import correct_transcript


@pytest.mark.parametrize(
    ("heard", "term"),
    [("hyattal", "hiatal"), ("fibrotic", "phybrotick"), ("cyst", "sist")],
)
def test_words_that_sound_alike_share_a_key(heard: str, term: str) -> None:
    assert sound_key(heard) == sound_key(term)


def test_words_that_sound_different_do_not() -> None:
    assert sound_key("pleural") != sound_key("aorta")
    assert sound_key("nodule") != sound_key("module")


def test_edit_distance() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("lobe", "lobe") == 0


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        (
            "A stickulated nodule in the left upper lobe.",
            "A spiculated nodule in the left upper lobe.",
        ),
        ("Trace left lural fluid.", "Trace left pleural fluid."),
        ("Scattered mediastinil lymph nodes.", "Scattered mediastinal lymph nodes."),
        ("Moderate Hyattal hernia.", "Moderate hiatal hernia."),  # no capital mid-sentence
        ("Bronchic tussies in both lower lobes.", "Bronchiectasis in both lower lobes."),
        ("Stickulated margins.", "Spiculated margins."),  # a capital where a sentence starts
    ],
)
def test_invented_words_become_the_term(heard: str, meant: str) -> None:
    assert chest_corrector().correct(heard) == meant


@pytest.mark.parametrize(
    "text",
    [
        "Likely assist. The ascending order.",  # English words: never replaced
        "The catheter terminates in the right atrium.",  # an inflection of an English word
        "Findings compatible with sarcoidosis.",  # vocabulary words stay
        "A florbix in the lung.",  # an invention that sounds like no term
        "Small pleural effusion.",
    ],
)
def test_known_words_and_unmatched_inventions_stay(text: str) -> None:
    assert chest_corrector().correct(text) == text


def test_only_in_a_chest_dictation() -> None:
    assert correct_transcript("The stickulated widget was updated.").text == (
        "The stickulated widget was updated."
    )
    assert correct_transcript("A stickulated nodule in the lung.").text == (
        "A spiculated nodule in the lung."
    )


def test_a_vocabulary_of_its_own() -> None:
    corrector = PhoneticCorrector.build(["carina"], ["the", "at"])
    assert corrector.correct("Mass at the karinna.") == "Mass at the carina."
    assert corrector.correct("Mass at the stickulated.") == "Mass at the stickulated."


def test_common_words_are_whispers_whole_word_tokens(tmp_path: Path) -> None:
    """The shipped list is exactly the whole words of the packaged tiny.en tokenizer."""
    tokenizer = locate_model(None, cache_dir=tmp_path).directory / "tokenizer.json"
    vocab = json.loads(tokenizer.read_text(encoding="utf-8"))["model"]["vocab"]
    whole_words = {
        token[1:].lower()
        for token in vocab
        if token.startswith("Ġ") and token[1:].isascii() and token[1:].isalpha()
    }
    shipped = COMMON_WORDS_FILE.read_text(encoding="utf-8").split()
    assert shipped == sorted(whole_words)
    assert {"the", "order", "assist", "lobe"} <= common_words()
    assert "pleural" not in common_words()
