"""Pronunciations from espeak-ng and the distance between them."""

from __future__ import annotations

import pytest

from app.speech import phonemes
from app.speech.phonemes import (
    espeak_available,
    parse,
    phoneme_distance,
    pronunciations,
    relative_phoneme_distance,
)
from app.speech.phonetic import MAX_ENGLISH_DISTANCE

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


def test_parse_drops_stress_and_length_and_joins_affricates() -> None:
    assert parse("plˈʊəɹəl") == ("p", "l", "ʊ", "ə", "ɹ", "ə", "l")
    assert parse("lˈɑːɹdʒ") == ("l", "ɑ", "ɹ", "ʤ")
    assert parse("plˈʊɹɹəl") == parse("plˈʊɹəl")  # a doubled consonant is one sound


def test_near_sounds_cost_less_than_other_edits() -> None:
    vowel = phoneme_distance(("f", "ɪ", "l"), ("f", "i", "l"))
    voicing = phoneme_distance(("k", "æ", "p"), ("k", "æ", "b"))
    other = phoneme_distance(("k", "æ", "p"), ("k", "æ", "n"))
    schwa = phoneme_distance(("ə", "p", "l"), ("p", "l"))
    consonant = phoneme_distance(("s", "p", "l"), ("p", "l"))
    assert 0 < vowel < voicing < other == consonant
    assert 0 < schwa < consonant
    assert phoneme_distance(("a", "b"), ("a", "b")) == 0


@needs_espeak
def test_words_whisper_confuses_sound_alike() -> None:
    said = pronunciations(["pleural", "plural", "filling", "feeling", "aorta", "order"])
    assert set(said) == {"pleural", "plural", "filling", "feeling", "aorta", "order"}
    assert relative_phoneme_distance(said["filling"], said["feeling"]) < MAX_ENGLISH_DISTANCE
    assert relative_phoneme_distance(said["pleural"], said["plural"]) < MAX_ENGLISH_DISTANCE
    # spelt alike, sounding apart: too far to be taken for one another
    assert relative_phoneme_distance(said["aorta"], said["order"]) > 2 * MAX_ENGLISH_DISTANCE


@needs_espeak
def test_many_words_in_one_run_match_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    words = ["mediastinal", "hemidiaphragm", "bronchiectasis", "stickulated", "cyst"]
    monkeypatch.setattr(phonemes, "_cache", {})
    together = pronunciations(words)
    for word in words:
        monkeypatch.setattr(phonemes, "_cache", {})
        alone = pronunciations([word])[word]
        assert alone == together[word]
        assert len(alone) >= 3
    assert pronunciations(["no-such-chars!", ""]) == {}
