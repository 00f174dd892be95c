"""What the radiology tuning was built from: never the benchmark's held-out dictations.

The benchmark (``bench/bench_transcribe.py``) measures word error rate on
dictations built from held-out sentence templates.  These tests keep that
measure honest: the templates of the two sets are apart, the lexicon's
corrections write only words of the development set (or dictation commands),
the vocabulary is a general chest CT list rather than the benchmark's words, and
the prompt fits the part of Whisper's context that a prompt gets.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from app.speech.lexicon import CORRECTIONS, PROMPT_MAX_TOKENS, VOCABULARY_PROMPT
from app.speech.model import locate_model
from app.speech.postprocess import COMMANDS, SECTION_WORDS, SPOKEN_MARKS
from app.speech.vocabulary import CHEST_CT_VOCABULARY
from models.findings import FINDINGS

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import radiology_dictations as dictations  # noqa: E402

MIN_VOCABULARY = 400
MIN_SHARE_OUTSIDE_BENCH = 0.6


def _words(texts: Iterable[str]) -> set[str]:
    return {word for text in texts for word in re.findall(r"[a-z]+", text.lower())}


SLOT_WORDS = _words(
    value for pairs in dictations.SLOTS.values() for pair in pairs for value in pair
)
DEVELOPMENT = (
    _words(
        dictations.DEVELOPMENT_TECHNIQUE
        + dictations.DEVELOPMENT_FINDINGS
        + dictations.DEVELOPMENT_IMPRESSION
    )
    | SLOT_WORDS
)
HELD_OUT = (
    _words(
        dictations.HELDOUT_TECHNIQUE + dictations.HELDOUT_FINDINGS + dictations.HELDOUT_IMPRESSION
    )
    | SLOT_WORDS
)
DICTATION_WORDS = _words(
    " ".join(phrase) for table in (COMMANDS, SPOKEN_MARKS, SECTION_WORDS) for phrase in table
)


def test_the_two_sets_share_no_template() -> None:
    development = set(
        dictations.DEVELOPMENT_TECHNIQUE
        + dictations.DEVELOPMENT_FINDINGS
        + dictations.DEVELOPMENT_IMPRESSION
    )
    held_out = set(
        dictations.HELDOUT_TECHNIQUE + dictations.HELDOUT_FINDINGS + dictations.HELDOUT_IMPRESSION
    )
    assert not development & held_out
    built = {d.name: d.reference for d in dictations.build_set("heldout")}
    assert all(name.startswith("heldout-") for name in built)


def test_tuning_templates_use_no_held_out_only_word() -> None:
    """The tuning set was written after the held-out one had been read: it borrows no word
    only the held-out templates use, so tuning on it cannot reach the held-out wording."""
    tuning = _words(
        dictations.TUNING_TECHNIQUE + dictations.TUNING_FINDINGS + dictations.TUNING_IMPRESSION
    )
    held_out_only = HELD_OUT - DEVELOPMENT
    assert not tuning & held_out_only, sorted(tuning & held_out_only)
    assert not set(dictations.TUNING_FINDINGS) & set(dictations.HELDOUT_FINDINGS)
    built = dictations.build_set("tuning")
    assert len(built) == 12 and all(d.name.startswith("tuning-") for d in built)


def test_held_out_set_is_large_and_varied() -> None:
    """Enough words to tell 5% from 7%, from many templates, in several voices and speeds."""
    built = dictations.build_set("heldout")
    assert len(built) >= 30
    assert sum(len(d.reference.split()) for d in built) >= 2000
    assert len({(d.voice, d.words_per_minute) for d in built}) >= 5
    assert len(dictations.HELDOUT_FINDINGS) + len(dictations.HELDOUT_IMPRESSION) >= 40


def test_corrections_write_only_development_words() -> None:
    """Each lexicon fix was read off the development set: it writes no held-out-only word."""
    allowed = DEVELOPMENT | DICTATION_WORDS
    written = _words(correction.right for correction in CORRECTIONS)
    strays = {word for word in written - allowed if word.rstrip("s") not in allowed}
    assert not strays, f"corrections write words only the held-out set uses: {sorted(strays)}"


def test_vocabulary_is_a_general_chest_ct_list() -> None:
    """Most of it is in no development template: a domain list, not the benchmark's words.

    (The held-out templates were written after the vocabulary, in the same domain, so
    about half of their own words are chest CT terms of this list by nature.)
    """
    vocabulary = CHEST_CT_VOCABULARY
    assert len(vocabulary) >= MIN_VOCABULARY
    outside = vocabulary - DEVELOPMENT
    assert len(outside) / len(vocabulary) >= MIN_SHARE_OUTSIDE_BENCH
    assert all(word == word.lower() and word.strip() == word for word in vocabulary)


def test_prompt_names_the_findings_radscribe_predicts() -> None:
    prompt = _words([VOCABULARY_PROMPT])
    for finding in FINDINGS:
        named = _words([finding.value]) - {"wall", "pattern", "material", "medical"}
        missing = {word for word in named if word not in prompt and f"{word}s" not in prompt}
        assert not missing, f"{finding.value}: {missing}"
    assert {"scratch", "that", "new", "paragraph"} <= prompt


def test_prompt_fits_the_context_whisper_gives_it(tmp_path: Path) -> None:
    """Whisper keeps the last 223 tokens of a prompt: a longer one would lose its start."""
    tokenizers = pytest.importorskip("tokenizers")
    path = locate_model(None, cache_dir=tmp_path).directory / "tokenizer.json"
    tokenizer = tokenizers.Tokenizer.from_file(str(path))
    tokens = tokenizer.encode(" " + VOCABULARY_PROMPT.strip()).ids
    assert 100 < len(tokens) <= PROMPT_MAX_TOKENS
