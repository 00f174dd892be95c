"""What words sound like: espeak-ng pronunciations and a distance between them.

Spelling hides sound: "plural" and "pleural", "feeling" and "filling",
"sentimental" and "segmental" look far apart but sound close, which is why
Whisper writes one for the other.  espeak-ng gives a pronunciation (IPA
phonemes) for any word, known or invented, so a heard word can be compared
with a chest CT term by how it sounds.  :func:`phoneme_distance` is an edit
distance over phonemes in which a vowel for another vowel, a consonant for its
voiced or unvoiced twin, or a dropped schwa costs less than other edits.

espeak-ng is a Debian package (``espeak-ng``).  Where it is not installed,
:func:`pronunciations` returns nothing and the correctors fall back to their
spelling-based sound keys (:func:`app.speech.phonetic.sound_key`).
Pronunciations are asked for in batches (one espeak-ng process for many words)
and remembered for the life of the process.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from functools import cache

log = logging.getLogger(__name__)

VOICE = "en-us"
TIMEOUT_SECONDS = 30.0
BATCH = 400
"""Words per espeak-ng run."""

Phonemes = tuple[str, ...]

VOWELS = frozenset("aeiouæɑɒɔəɚɛɜɪʊʌɐᵻ")
# Consonants that are easily heard for one another: voicing twins, nasals, liquids.
_NEAR = (
    "pb",
    "td",
    "kg",
    "fv",
    "sz",
    "ʃʒ",
    "θð",
    "tʃdʒ",
    "mnŋ",
    "lɹ",
    "tɾ",
    "dɾ",
    "θf",
    "sʃ",
)

VOWEL_COST = 0.4
"""A vowel heard as another vowel."""
NEAR_COST = 0.5
"""A consonant heard as a near one (see ``_NEAR``)."""
SCHWA_COST = 0.3
"""A schwa or an unstressed short i dropped or added."""
VOWEL_GAP_COST = 0.6
"""Another vowel dropped or added."""

_STRIP = str.maketrans("", "", "ˈˌː-_'")
# espeak-ng's multi-letter symbols and American variants, to one inventory.
_REWRITE = (
    ("tʃ", "ʧ"),
    ("dʒ", "ʤ"),
    ("ɚ", "əɹ"),
    ("ɝ", "ɜɹ"),
    ("ᵻ", "ɪ"),
    ("ɐ", "ə"),
    ("ɾ", "t"),
    ("ʔ", "t"),
    ("ɫ", "l"),
    ("ɬ", "l"),
    ("r", "ɹ"),
    ("oː", "o"),
)


def _split_group(group: str) -> list[str]:
    return ["ʧ", "ʤ"] if group == "tʃdʒ" else list(group)


NEAR_PAIRS = frozenset(
    frozenset((a, b))
    for group in _NEAR
    for a in _split_group(group)
    for b in _split_group(group)
    if a != b
)
_WORD = re.compile(r"^[a-z]+$")
_cache: dict[str, Phonemes] = {}
_lock = threading.Lock()


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def parse(ipa: str) -> Phonemes:
    """espeak-ng's IPA for one word (or phrase) as a tuple of phoneme symbols."""
    text = ipa.strip().translate(_STRIP)
    for old, new in _REWRITE:
        text = text.replace(old, new)
    symbols = [symbol for symbol in text if not symbol.isspace()]
    # a doubled consonant is one sound ("plural": plʊɹɹəl)
    return tuple(
        symbol
        for index, symbol in enumerate(symbols)
        if index == 0 or symbol != symbols[index - 1] or symbol in VOWELS
    )


def pronunciations(words: Iterable[str]) -> dict[str, Phonemes]:
    """The phonemes of each lower-case alphabetic word (or space-separated phrase) asked
    for; empty if espeak-ng is missing or fails."""
    wanted = sorted({w for w in words if w.split() and all(_WORD.match(p) for p in w.split())})
    with _lock:
        missing = [word for word in wanted if word not in _cache]
    if missing and espeak_available():
        for start in range(0, len(missing), BATCH):
            found = _run(missing[start : start + BATCH])
            with _lock:
                _cache.update(found)
    with _lock:
        return {word: _cache[word] for word in wanted if word in _cache}


def _run(words: Sequence[str]) -> dict[str, Phonemes]:
    """One espeak-ng run: each word a clause of its own ("word, word, ..."), one line each."""
    command = ["espeak-ng", "-v", VOICE, "-q", "--ipa", ", ".join(words)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("espeak-ng failed (%s); comparing spellings instead of sounds", exc)
        return {}
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if len(lines) != len(words):
        if len(words) == 1:
            return {words[0]: parse(" ".join(lines))}
        middle = len(words) // 2  # a word spoken as two clauses: ask again in halves
        return _run(words[:middle]) | _run(words[middle:])
    return {word: parse(line) for word, line in zip(words, lines, strict=True)}


@cache
def _substitution(a: str, b: str) -> float:
    if a == b:
        return 0.0
    if a in VOWELS and b in VOWELS:
        return VOWEL_COST
    if frozenset((a, b)) in NEAR_PAIRS:
        return NEAR_COST
    return 1.0


@cache
def _gap(symbol: str) -> float:
    if symbol in "əɪ":
        return SCHWA_COST
    return VOWEL_GAP_COST if symbol in VOWELS else 1.0


def phoneme_distance(first: Phonemes, second: Phonemes, *, give_up: float = math.inf) -> float:
    """Weighted edit distance over phonemes (see the module docstring); ``math.inf`` as soon
    as it is sure to exceed ``give_up``."""
    gaps = [_gap(symbol) for symbol in second]
    previous = [0.0]
    for gap in gaps:
        previous.append(previous[-1] + gap)
    for a in first:
        gap_a = _gap(a)
        current = [previous[0] + gap_a]
        for j, b in enumerate(second, start=1):
            current.append(
                min(
                    previous[j] + gap_a,
                    current[j - 1] + gaps[j - 1],
                    previous[j - 1] + _substitution(a, b),
                )
            )
        if min(current) > give_up:
            return math.inf
        previous = current
    return previous[-1]


def relative_phoneme_distance(
    first: Phonemes, second: Phonemes, *, limit: float = math.inf
) -> float:
    """:func:`phoneme_distance` over the longer pronunciation's length (``math.inf`` when
    sure to be over ``limit``)."""
    longest = max(len(first), len(second), 1)
    return phoneme_distance(first, second, give_up=limit * longest) / longest
