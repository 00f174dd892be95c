"""Context correction: English words the sentence rules out, and never a changed statement."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.speech.audio import decode_audio
from app.speech.context import (
    NEVER_CHANGE,
    ContextCorrector,
    NgramModel,
    chest_context_corrector,
    read_corpus,
    sentences,
)
from app.speech.postprocess import correct_transcript
from app.speech.transcriber import Transcriber

Speak = Callable[[str, Path], Path]

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import radiology_dictations as dictations  # noqa: E402

HELD_OUT_TEMPLATES = (
    dictations.HELDOUT_TECHNIQUE + dictations.HELDOUT_FINDINGS + dictations.HELDOUT_IMPRESSION
)
DEVELOPMENT_TEMPLATES = (
    dictations.DEVELOPMENT_TECHNIQUE
    + dictations.DEVELOPMENT_FINDINGS
    + dictations.DEVELOPMENT_IMPRESSION
)
# Everyday words that happen to occur only in held-out templates.
GENERIC = frozenset({"for", "large", "bilateral", "opacity"})


def _words(texts: list[str]) -> set[str]:
    return {word for text in texts for word in re.findall(r"[a-z]+", text.lower())}


def _template_pattern(template: str) -> re.Pattern[str]:
    """A held-out template as a regex over a normalised sentence (a slot is any words)."""
    parts = re.split(r"\{\w+\}", template.lower())
    words = [re.escape(" ".join(re.findall(r"[a-z]+", part))) for part in parts]
    return re.compile(r"\s*.+?\s*".join(words).strip())


def test_no_held_out_template_is_in_the_corpus() -> None:
    corpus = [" ".join(re.findall(r"[a-z]+", line.lower())) for line in read_corpus()]
    for template in HELD_OUT_TEMPLATES:
        for sentence in re.split(r"(?<=\.)\s+", template):
            pattern = _template_pattern(sentence)
            hits = [line for line in corpus if pattern.search(line)]
            assert not hits, f"held-out {sentence!r} is in the corpus: {hits}"


def test_no_tuning_template_is_in_the_corpus() -> None:
    """The tuning set stands for wording the corrections have not seen, like the held-out."""
    tuning = dictations.TUNING_TECHNIQUE + dictations.TUNING_FINDINGS + dictations.TUNING_IMPRESSION
    corpus = [" ".join(re.findall(r"[a-z]+", line.lower())) for line in read_corpus()]
    for template in tuning:
        for sentence in re.split(r"(?<=\.)\s+", template):
            pattern = _template_pattern(sentence)
            hits = [line for line in corpus if pattern.search(line)]
            assert not hits, f"tuning {sentence!r} is in the corpus: {hits}"


def test_corpus_uses_no_word_only_the_held_out_set_uses() -> None:
    slots = _words([v for pairs in dictations.SLOTS.values() for pair in pairs for v in pair])
    held_out_only = _words(HELD_OUT_TEMPLATES) - _words(DEVELOPMENT_TEMPLATES) - slots
    # (the tuning templates may not lend a held-out word either: test_vocabulary.py)
    strays = (_words(read_corpus()) & held_out_only) - GENERIC
    assert not strays, f"corpus words only held-out templates use: {sorted(strays)}"


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        (
            "Scattered media still lymph nodes, the largest measuring 8 mm in shore taxes.",
            "Scattered mediastinal lymph nodes, the largest measuring 8 mm in short axis.",
        ),
        (
            "Smooth interlobular septal thickening at the mesas.",
            "Smooth interlobular septal thickening at the bases.",
        ),
        (
            "A solid nodule in the left upper lobe measure 7 mm.",
            "A solid nodule in the left upper lobe measures 7 mm.",
        ),
    ],
)
def test_english_words_the_sentence_rules_out_are_fixed(heard: str, meant: str) -> None:
    assert chest_context_corrector().correct(heard) == meant


@pytest.mark.parametrize(
    "text",
    [
        "No pleural effusion or pneumothorax.",
        "There is no mass in the left upper lobe.",
        "Mediastinal and hilar lymph nodes are not enlarged.",
        "The heart is not enlarged. No pericardial effusion.",
        # a term is never swapped for a likelier one: what was said stays said
        "There is a 4 mm subcarinal nodule in the right lower lobe.",
        "Small left pleural effusion.",
        "Mild centrilobular emphysema in the upper lobes.",
        # English the corpus never saw stays as it is
        "Discussed with Doctor Margaret Jones by telephone at 5 pm.",
        "The patient could not hold his breath, so there is motion artifact.",
        "Please put the previous studies in order for the conference.",
    ],
)
def test_what_was_said_is_kept(text: str) -> None:
    assert chest_context_corrector().correct(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "The patient in bed two has a small left pleural effusion.",
        "Patient in a coma. Right lower lobe consolidation.",
        "Fluid level in the right pleural space.",
    ],
)
def test_two_common_words_stay_unless_they_sound_like_the_term(text: str) -> None:
    """Everyday English the corpus never saw is not merged into a far-sounding term
    ("patient in" is not "ascending", "fluid level" is not "multilevel")."""
    assert chest_context_corrector().correct(text) == text


def test_two_common_words_that_sound_like_a_term_become_it() -> None:
    assert chest_context_corrector().correct("The lungs are man remarkable.") == (
        "The lungs are unremarkable."
    )


def test_never_writes_a_negation_or_a_change_word() -> None:
    corrector = chest_context_corrector()
    written = {word for candidate in corrector.candidates for word in candidate.word.split()}
    assert not written & {"no", "not", "without", "new", "increased", "decreased", "stable"}
    assert {"no", "not", "without", "left", "right"} <= NEVER_CHANGE


def test_finding_words_need_support_on_both_sides() -> None:
    """A finding is written only where the corpus saw it with both neighbours."""
    corrector = ContextCorrector.build(["Small pleural effusion.", "Calcified granuloma."], [])
    # "effusion" after "pleural" is known, but never before "today": not written
    assert corrector.correct("Small pleural infusion today.") == "Small pleural infusion today."
    assert corrector.correct("Small pleural infusion.") == "Small pleural effusion."


def test_language_model_prefers_seen_word_orders() -> None:
    model = NgramModel.train(sentences("The ascending aorta measures 4 cm. The aorta is normal."))
    assert model.logprob("aorta", "ascending", "the") > model.logprob("order", "ascending", "the")
    assert model.seen("aorta", "measures")
    with pytest.raises(ValueError, match="at least one sentence"):
        NgramModel.train([])


def test_jfk_text_is_untouched() -> None:
    text = (
        "And so my fellow Americans, ask not what your country can do for you, "
        "ask what you can do for your country."
    )
    assert chest_context_corrector().correct(text) == text
    assert correct_transcript(text).text == text


def test_spoken_chest_dictation_keeps_its_negations(
    transcriber: Transcriber, speak: Speak, tmp_path: Path
) -> None:
    """Real audio: terms come out right, and every negation said is still in the report."""
    wav = speak(
        "Findings. Scattered mediastinal lymph nodes, the largest measuring eight "
        "millimeters in short axis. No pleural effusion. The heart is not enlarged. "
        "Impression. No acute cardiopulmonary abnormality.",
        tmp_path / "negations.wav",
    )
    transcript = transcriber.transcribe(decode_audio(wav))
    findings = transcript.sections["findings"].lower()
    assert "mediastinal lymph nodes" in findings
    assert "8 mm in short axis" in findings
    assert "no pleural effusion" in findings
    assert "not enlarged" in findings
    assert transcript.sections["impression"].lower().startswith("no acute")


def test_spoken_everyday_english_is_not_made_radiology(
    transcriber: Transcriber, speak: Speak, tmp_path: Path
) -> None:
    """Real audio without chest words: the context model never runs, so nothing is bent."""
    wav = speak(
        "Please put the files in order and call Margaret about the lesson tomorrow.",
        tmp_path / "everyday.wav",
    )
    transcript = transcriber.transcribe(decode_audio(wav))
    assert "order" in transcript.text.lower()
    assert "aorta" not in transcript.text.lower()
    assert correct_transcript(transcript.raw_text).text == transcript.text


def test_size_words_need_support_on_both_sides() -> None:
    """A severity is written only where the corpus saw it between the same neighbours."""
    corrector = ContextCorrector.build(["Mild emphysema in the upper lobes."], [])
    assert corrector.correct("Mile emphysema in the upper lobes.") == (
        "Mild emphysema in the upper lobes."
    )
    # seen before "emphysema" but never after "very": one side is not enough
    assert corrector.correct("Very mile emphysema in the upper lobes.") == (
        "Very mile emphysema in the upper lobes."
    )


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        ("Consolidation in the lingular.", "Consolidation in the lingula."),
        ("Left pleura effusion.", "Left pleural effusion."),
        # the corpus's general sentences say where the noun ends a sentence
        ("Focal thickening of the right pleural.", "Focal thickening of the right pleura."),
        # a function word or a number after it tells nothing of the form: the left side does
        (
            "A 2 cm cavity in the lingular with an irregular wall.",
            "A 2 cm cavity in the lingula with an irregular wall.",
        ),
        ("Subpleural nodule in the lingular, 3 mm.", "Subpleural nodule in the lingula, 3 mm."),
    ],
)
def test_a_term_takes_the_form_the_sentence_calls_for(heard: str, meant: str) -> None:
    assert chest_context_corrector().correct(heard) == meant


@pytest.mark.parametrize(
    "text",
    [
        "Lingular atelectasis.",  # both forms are right where they stand
        "The pleura is thickened.",
        "Hypodense lesions in the liver.",  # one lesion or several is what was said
        "The heart is enlarged.",  # a statement word keeps its form
        # another finding that starts alike is no form of it (osteopenia is in the corpus)
        "Osteophytes on the thoracic spine.",
        "Lingular atelectasis with lingular bronchiectasis.",
    ],
)
def test_a_term_in_a_fitting_form_keeps_it(text: str) -> None:
    assert chest_context_corrector().correct(text) == text


def test_spoken_everyday_words_in_a_chest_dictation_stay(
    transcriber: Transcriber, speak: Speak, tmp_path: Path
) -> None:
    """Real audio: everyday English in a chest dictation is what was said ("patient in" was
    "ascending", "collapse" was "clips", "fluid level" was "fluid liver")."""
    wav = speak(
        "Findings. The patient in bed two has a small left pleural effusion. "
        "Left lower lobe collapse. There is a fluid level in the right pleural space.",
        tmp_path / "everyday-chest.wav",
    )
    text = transcriber.transcribe(decode_audio(wav)).text.lower()
    assert "the patient in bed" in text
    assert "left lower lobe collapse" in text
    assert "fluid level in the right pleural space" in text


def test_a_list_never_names_one_thing_twice() -> None:
    """Heard "No killer or axillary": the corpus knows "axillary" after "No", but the word two
    places on is "axillary" already, so the heard word becomes the other term that fits."""
    corrected = chest_context_corrector().correct("No killer or axillary adenopathy.")
    assert corrected == "No hilar or axillary adenopathy."
    corrector = ContextCorrector.build(["No axillary or supraclavicular lymphadenopathy."], [])
    assert corrector.correct("No axillery or axillary lymphadenopathy.") == (
        "No axillery or axillary lymphadenopathy."
    )


def test_spoken_punctuation_ends_a_sentence_for_the_model() -> None:
    """A dictation that says its punctuation: "period" is a sentence end and "comma" no
    word, so the report words next to them have the neighbours the corpus knows."""
    assert chest_context_corrector().correct("A calcified nodule in the lingular period.") == (
        "A calcified nodule in the lingula period."
    )
    assert sentences("Small left effusion comma, likely reactive period. Stable.") == [
        ["small", "left", "effusion", "likely", "reactive"],
        ["stable"],
    ]
    assert sentences("Unchanged over a period of 6 months.") == [
        ["unchanged", "over", "a", "period", "of", "<num>", "months"]
    ]


def test_a_term_the_sentence_rules_out_becomes_the_term_it_calls_for() -> None:
    """A sound-alike term chosen by its neighbours: tiny.en wrote the prompt's "subcarinal"
    for subpleural, which the corpus never puts before "reticulation" or after "with"."""
    assert chest_context_corrector().correct(
        "Interlobular septal thickening with subcarinal reticulation."
    ) == ("Interlobular septal thickening with subpleural reticulation.")


@pytest.mark.parametrize(
    "text",
    [
        "An enlarged subcarinal lymph node measures 12 mm.",  # where the corpus has it
        # a term of the same vocabulary line is another finding, not a mishearing
        "Interlobular septal thickening with pleural reticulation.",
        # a term the corpus never saw says nothing by missing here ("bases" sounds close)
        "Scarring at the lung apices.",
        "Small left empyema.",  # seen on one side: as said, not emphysema
    ],
)
def test_a_term_that_may_stand_there_is_kept(text: str) -> None:
    assert chest_context_corrector().correct(text) == text


def test_two_letter_words_are_judged_with_longer_context() -> None:
    """ "on the right" is common, so a trigram cannot tell "thickening on the right pleura"
    from "of"; the 4-gram judge sees the pleura after it."""
    assert chest_context_corrector().correct("Mild thickening on the right pleura.") == (
        "Mild thickening of the right pleura."
    )


@pytest.mark.parametrize(
    "text",
    [
        "Atelectasis on the left.",
        "Calcified granuloma on the right.",
        "A loculated pleural effusion on the right.",
        # a pair keeps its number ("change on" is no "changes in")
        "There is no change on the left.",
    ],
)
def test_on_the_side_stays(text: str) -> None:
    assert chest_context_corrector().correct(text) == text


def test_the_one_word_the_corpus_writes_after_two_may_sound_further() -> None:
    """After "superior vena" the corpus only ever writes "cava": "karma" (sound keys KRM and
    KF, 0.67 apart) is within reach there, and nowhere else."""
    corrector = chest_context_corrector()
    assert corrector.correct("The catheter terminates in the superior vena karma.") == (
        "The catheter terminates in the superior vena cava."
    )
    assert corrector.correct("Good karma.") == "Good karma."


@pytest.mark.parametrize(
    "text",
    [
        # "in" for "is": a two-letter word is not swallowed into "thickening"
        "The esophageal wall in thickened.",
        # another verb form of a term is as said ("thickened" had become "the chest")
        "This offered your wall in thickened period.",
    ],
)
def test_a_verb_form_of_a_term_and_a_short_word_beside_it_stay(text: str) -> None:
    assert chest_context_corrector().correct(text) == text


def test_two_letters_after_a_word_may_be_its_broken_off_end() -> None:
    """tiny.en heard "reformats" as "reform at": the two letters after a word that, joined,
    make the corpus's term are its end (while "in" before a word was said)."""
    assert chest_context_corrector().correct("Coronal and sagittal reform at were reviewed.") == (
        "Coronal and sagittal reformats were reviewed."
    )


def test_a_shorter_model_cut_from_a_longer_one_equals_one_trained_alone() -> None:
    """The corrector trains one 4-gram model and cuts its trigram model from it."""
    corpus = [s for text in read_corpus() for s in sentences(text)]
    cut = NgramModel.train(corpus, order=4).truncated(3)
    alone = NgramModel.train(corpus, order=3)
    assert cut == alone
    assert cut.logprob("lobe", "lower", "right") == alone.logprob("lobe", "lower", "right")
