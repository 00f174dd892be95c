"""A second look at a chest chunk, with the terms its first transcription sounds like.

Whisper tiny.en writes a term it does not expect as what it hears: "colipidasis" for
cholelithiasis, "galleger" for gallbladder, "lymph and idic" for lymphangitic.  The
correctors (:mod:`app.speech.phonetic`, :mod:`app.speech.context`) mend some of these in
the text, but Whisper itself does better once the term is in its prompt: the audio is
heard again with the word expected.  So the first transcription of a chest chunk is read
for words that are neither report English nor chest CT terms
(:meth:`app.speech.phonetic.PhoneticCorrector.invented` and ``unexpected``); the
vocabulary terms whose espeak-ng pronunciation is closest to such a word, alone or with a
neighbour, are named at the end of the prompt (:func:`biased_prompt`); and the chunk is
decoded again from the same encoder output (:func:`app.speech.nbest.generate`), which costs
one more decoder pass and no encoder pass.

The prompt only makes a term likelier; Whisper still writes what the audio supports, so a
term named in vain is simply not written.  The terms come from the chest CT vocabulary
(:mod:`app.speech.vocabulary`), never from a benchmark sentence.  Without espeak-ng no
term is found and there is no second look.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from app.speech.phonemes import pronunciations, relative_phoneme_distance
from app.speech.phonetic import (
    PREFILTER_KEY_DISTANCE,
    PhoneticCorrector,
    chest_corrector,
    frequent,
    relative_distance,
    sound_key,
)
from app.speech.vocabulary import CHEST_CT_VOCABULARY

MAX_DISTANCE = 0.4
"""Most relative phoneme distance between heard words and a term named in the prompt: looser
than a correction's (a prompt only suggests), so that "colipidasis" finds cholelithiasis."""
MAX_FREQUENT_DISTANCE = 0.33
"""The same for a frequent English word (:func:`app.speech.phonetic.frequent`: "bed",
"level"), which is more likely said than misheard: only a near term is named for it, as
naming far ones can make Whisper mishear what it had right ("in bed two" -> "in med2")."""
TERMS_PER_SPAN = 2
"""The closest terms named for each heard word or pair of words."""
MAX_TERMS = 24
"""At most this many terms, closest first: Whisper keeps only the last 223 tokens of a
prompt, so more would push the report style out of it."""
MIN_TERM_PHONEMES = 4
"""Shorter terms are close to too much."""
PREFIX = "Also: "
_WORD = re.compile(r"[A-Za-z]+")


def sounding_terms(text: str, corrector: PhoneticCorrector | None = None) -> list[str]:
    """The chest CT terms that the odd words of ``text`` (alone, with a neighbour, or with
    both) sound most like, closest first, leaving out those already in ``text``."""
    corrector = corrector or chest_corrector()
    if not corrector.sounds:
        return []
    words = [word.lower() for word in _WORD.findall(text)]
    spans: dict[str, float] = {}  # heard words -> most distance to a term named for them
    for index, word in enumerate(words):
        if word in CHEST_CT_VOCABULARY:
            continue
        if corrector.invented(word):
            limit = MAX_DISTANCE
        elif corrector.unexpected(word):
            limit = MAX_FREQUENT_DISTANCE if frequent(word) else MAX_DISTANCE
        else:
            continue
        for first, last in ((index, index), (index - 1, index), (index, index + 1)):
            if first >= 0 and last < len(words):
                span = " ".join(words[first : last + 1])
                spans[span] = max(limit, spans.get(span, limit))
    heard = pronunciations(spans)
    present = set(words)
    closest: dict[str, float] = {}
    for span, sound in heard.items():
        limit = spans[span]
        key = sound_key(span)
        scored: list[tuple[float, str]] = []
        for term in corrector.terms:
            said = corrector.sounds.get(term.word)
            if said is None or len(said) < MIN_TERM_PHONEMES or term.word in present:
                continue
            if relative_distance(key, term.key, PREFILTER_KEY_DISTANCE) is None:
                continue
            if abs(len(said) - len(sound)) > limit * max(len(said), len(sound)):
                continue
            distance = relative_phoneme_distance(sound, said, limit=limit)
            if distance <= limit:
                scored.append((distance, term.word))
        for distance, term_word in sorted(scored)[:TERMS_PER_SPAN]:
            closest[term_word] = min(distance, closest.get(term_word, distance))
    ranked = sorted(closest, key=lambda word: (closest[word], word))
    return ranked[:MAX_TERMS]


def biased_prompt(prompt: str | None, terms: Iterable[str]) -> str:
    """``prompt`` with the terms named at its end, where Whisper heeds a prompt most."""
    named = ", ".join(terms)
    return f"{prompt.rstrip()} {PREFIX}{named}." if prompt else f"{PREFIX}{named}."
