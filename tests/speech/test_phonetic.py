"""Words Whisper invents become the chest CT term they sound like; real words stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.speech.model import locate_model
from app.speech.phonemes import espeak_available
from app.speech.phonetic import (
    COMMON_WORDS_FILE,
    PhoneticCorrector,
    chest_corrector,
    common_words,
    edit_distance,
    frequent,
    sound_key,
    word_ranks,
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


def test_common_words_are_whispers_whole_word_tokens_in_id_order(tmp_path: Path) -> None:
    """The shipped list is exactly the whole words of the packaged tiny.en tokenizer, in the
    order of their token ids (the byte-pair merge order: frequent words first)."""
    tokenizer = locate_model(None, cache_dir=tmp_path).directory / "tokenizer.json"
    vocab = json.loads(tokenizer.read_text(encoding="utf-8"))["model"]["vocab"]
    whole_words: dict[str, None] = {}
    for token in sorted(vocab, key=vocab.__getitem__):
        if token.startswith("Ġ") and token[1:].isascii() and token[1:].isalpha():
            whole_words.setdefault(token[1:].lower(), None)
    shipped = COMMON_WORDS_FILE.read_text(encoding="utf-8").split()
    assert shipped == list(whole_words)
    assert {"the", "order", "assist", "lobe"} <= common_words()
    assert "pleural" not in common_words()
    assert word_ranks()["the"] < word_ranks()["level"] < word_ranks()["sentimental"]
    assert frequent("level") and frequent("collapsed") and not frequent("sentimental")


needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


@needs_espeak
@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        # invented words Whisper wrote for terms, reached by pronunciation
        ("Mustoyotomy wires are intact.", "Sternotomy wires are intact."),
        ("Clerogic lesion in the liver.", "Sclerotic lesion in the liver."),
        ("Trace left lural fluid.", "Trace left pleural fluid."),  # not "lateral"
    ],
)
def test_pronunciation_reaches_terms_spelling_does_not(heard: str, meant: str) -> None:
    assert chest_corrector().correct(heard) == meant


@needs_espeak
def test_unexpected_english_that_sounds_like_a_term_becomes_it() -> None:
    """English that report sentences never use, in a chest dictation, sounding almost like a
    term: the term.  Only after the other corrections (:func:`correct_transcript`)."""
    corrector = chest_corrector()
    assert corrector.unexpected("river")
    assert not corrector.unexpected("lesion")  # report English
    assert corrector.correct("A river lesion in the left lower lobe.") == (
        "A river lesion in the left lower lobe."
    )
    assert corrector.correct_english("A river lesion in the left lower lobe.") == (
        "A liver lesion in the left lower lobe."
    )
    assert correct_transcript("A river lesion in the left lower lobe.").text == (
        "A liver lesion in the left lower lobe."
    )


@needs_espeak
@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        ("A 4 mm some pleural nodule.", "A 4 mm subpleural nodule."),
        ("No acute cardio pulmonary abnormality.", "No acute cardiopulmonary abnormality."),
    ],
)
def test_unexpected_english_merges_with_a_neighbour_into_a_long_term(
    heard: str, meant: str
) -> None:
    assert chest_corrector().correct_english(heard) == meant


@needs_espeak
@pytest.mark.parametrize(
    "text",
    [
        "Coronal on reconstruction.",  # a two-letter word is never swallowed
        "Some high attenuation material in the stomach.",
        "Mild cardiac enlargement.",  # another form of a term ("enlarged") stays
        "The patient could not hold his breath, so there is motion artifact in the lungs.",
        "Discussed with Doctor Margaret Jones by telephone regarding the pleural effusion.",
        "Please put the previous studies in order. The lungs are clear.",
        "Likely assist. The ascending order.",  # too far, or too short a term ("cyst")
        "There is a large right pleural effusion.",  # statement words are never changed
    ],
)
def test_english_that_sounds_like_no_term_stays(text: str) -> None:
    assert chest_corrector().correct_english(text) == text


@needs_espeak
@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        (
            "No feeling defects in the pulmonary arteries.",
            "No filling defects in the pulmonary arteries.",
        ),
        ("A river lesion in the left lower lobe.", "A liver lesion in the left lower lobe."),
    ],
)
def test_frequent_english_words_near_a_term_that_the_neighbours_support_become_it(
    heard: str, meant: str
) -> None:
    assert chest_corrector().correct_english(heard) == meant


@needs_espeak
@pytest.mark.parametrize(
    "text",
    [
        "Left lower lobe collapse with a small pleural effusion.",
        "Fluid level in the right pleural space.",
        "The level of the carina.",
    ],
)
def test_frequent_english_words_stay_without_a_near_exact_sound_and_context(text: str) -> None:
    """An everyday word ("level", "collapse") is what was said unless it sounds nearly
    exactly like a term that the corpus has seen next to one of its neighbours."""
    assert chest_corrector().correct_english(text) == text
    assert correct_transcript(text).text == text


@needs_espeak
def test_a_frequent_word_needs_a_sentence_with_the_term_and_its_neighbour() -> None:
    common = ["a", "the", "in", "river", "lesion"]
    alone = PhoneticCorrector.build(["liver"], common, pronounce=True)
    assert alone.correct_english("A river lesion.") == "A river lesion."
    seen = PhoneticCorrector.build(
        ["liver"], common, sentences=["A lesion in the liver."], pronounce=True
    )
    assert seen.correct_english("A river lesion.") == "A liver lesion."
    # "the" goes with any term: it supports none
    assert seen.correct_english("The river.") == "The river."


def test_without_pronunciations_only_inventions_change() -> None:
    corrector = PhoneticCorrector.build(["liver", "carina"], ["the", "at", "a", "river"])
    assert not corrector.sounds
    assert corrector.correct_english("A river lesion.") == "A river lesion."
    assert corrector.correct("Mass at the karinna.") == "Mass at the carina."


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        ("Non-contrast CT of the chest.", "Noncontrast CT of the chest."),
        ("Technique. Non contrast CT of the chest.", "Technique. Noncontrast CT of the chest."),
        ("Small left hydro pneumothorax.", "Small left hydropneumothorax."),
        ("Gall bladder stones.", "Gallbladder stones."),
        ("A sub pleural nodule in the lingula.", "A subpleural nodule in the lingula."),
    ],
)
def test_a_term_split_after_its_prefix_is_joined(heard: str, meant: str) -> None:
    assert chest_corrector().correct(heard) == meant


@pytest.mark.parametrize(
    "text",
    [
        "A part solid nodule with ground glass opacity.",
        "The main pulmonary artery is normal.",
        "No air fluid level in the lung.",
    ],
)
def test_words_that_stand_on_their_own_are_not_joined(text: str) -> None:
    assert chest_corrector().correct(text) == text


def test_another_form_of_a_term_is_as_said() -> None:
    """A word like "thickened" is neither common English (one token) nor a term, but
    "thickening" is: the same verb, said as it is, not an invention to map to a term."""
    corrector = chest_corrector()
    assert not corrector.invented("thickened")
    assert corrector.invented("clerotic")
    text = "The esophageal wall is thickened. Pleural thickening."
    assert corrector.correct(text) == text


@needs_espeak
def test_an_invention_never_becomes_a_negation_side_or_change_word() -> None:
    """Heard "Nerema" for "There is a", which sounds like "normal": a report must not say a mass is
    normal (nor new, stable, left or absent) because of a sound."""
    corrector = chest_corrector()
    text = "Findings. Nerema 2 cm mass in the right upper lobe. Stickulated margins."
    assert corrector.correct(text) == (
        "Findings. Nerema 2 cm mass in the right upper lobe. Spiculated margins."
    )


@needs_espeak
def test_a_negation_side_or_change_word_spelt_short_is_written_whole() -> None:
    corrector = chest_corrector()
    assert corrector.correct("The nodule is unchange since the prior study.") == (
        "The nodule is unchanged since the prior study."
    )


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        # tiny.en hyphenated dictated words into one: apart, each word can be mended
        ("Small-right-hidrop pneumothorax.", "Small right hydropneumothorax."),
        ("Small-right-hide pneumothorax.", "Small right hide pneumothorax."),
        # compounds stay: no statement word, or two words that are both known
        ("Left-sided ground-glass opacity.", "Left-sided ground-glass opacity."),
        ("Tree-in-bud nodules.", "Tree-in-bud nodules."),
    ],
)
def test_words_hyphenated_into_one_are_mended_apart(heard: str, meant: str) -> None:
    assert chest_corrector().correct(heard) == meant


def test_heard_words_run_together_are_no_form_of_a_term() -> None:
    """ "bronchic tase" starts as bronchiectasis does and is two letters shorter, but two heard
    words are no form of a term: it becomes the closest term, not the next one
    (bronchiolitis, whose length happened to be one letter off)."""
    text = "Fibrotic changes with traction bronchic tase in the lower lobes."
    assert chest_corrector().correct(text) == (
        "Fibrotic changes with traction bronchiectasis in the lower lobes."
    )
