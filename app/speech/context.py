"""Real English words Whisper hears for radiology terms, fixed where the sentence demands it.

Whisper tiny.en writes what it hears, and a term it does not know often comes
out as ordinary English: "media still" for mediastinal, "shore taxes" for short
axis, "mesas" for bases.  Such words are right English, so neither the lexicon
nor :mod:`app.speech.phonetic` (which only touches invented words) may change
them on their own.  Here the words around them decide, as in a noisy-channel
speech recognizer:

- a small trigram language model (:class:`NgramModel`, Witten-Bell smoothing)
  learnt from chest CT report sentences (:data:`CORPUS_FILE`) says how likely
  each word is where it stands; a word it has never seen gets the probability
  of an unknown word among :data:`OPEN_VOCABULARY` English words;
- the candidates for a heard word (or two heard words) are the corpus words
  that sound and are spelt alike (:func:`app.speech.phonetic.sound_key`);
- a candidate replaces the heard words only if the sentence's log-probability
  rises by more than :data:`MIN_GAIN` plus a price for how different it sounds,
  and the corpus has seen it next to a neighbour of the heard word; two heard
  words of common English must sound close (:data:`MAX_COMMON_PAIR_DISTANCE`),
  since everyday English is unknown to the report model ("patient in" stays).

A chest CT term Whisper wrote is changed only into another form of itself where the
sentence calls for it ("in the lingular." -> lingula) or, where the corpus has seen it
but never beside its neighbours, into a term that sounds alike and fills a slot of few
words beside them ("with subcarinal reticulation" -> subpleural; see
``ContextCorrector._other_term``).

What it never does, so that a correction cannot change what was reported:
it never replaces a number or a word of :data:`NEVER_CHANGE` (negations,
laterality, size and change words), nor a term with another of its vocabulary
line ("hyperdense" and "hypodense"); it never writes a word of :data:`NEVER_WRITE`;
it writes a finding word (:data:`app.speech.vocabulary.FINDINGS`) only where the
corpus has seen it with the words on both sides, and a size word
(:data:`SIZE_WORDS`) likewise.  It runs only on chest dictations
(:func:`app.speech.lexicon.has_context`), so other English is left alone.

What it cannot do: reach a term whose sound key and spelling are far from what
was heard ("order" for aorta, "Margaret" for moderate are beyond
:data:`MAX_KEY_DISTANCE` and :data:`MAX_SPELLING_DISTANCE`), or a word the
corpus lacks (it knows the report language of its corpus, not chest CT English
at large).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from app.speech.numbers import ONES, TENS
from app.speech.phonemes import Phonemes, relative_phoneme_distance
from app.speech.phonetic import (
    MIN_NEIGHBOUR_RANK,
    SoundedWord,
    chest_corrector,
    common_prefix,
    common_words,
    edit_distance,
    relative_distance,
    sound_key,
    word_ranks,
)
from app.speech.vocabulary import (
    CHEST_CT_VOCABULARY,
    FINDINGS,
    MUST_BE_HEARD,
    STATEMENT_WORDS,
    vocabulary_groups,
)

CORPUS_FILE = Path(__file__).with_name("report_corpus.txt")
"""Chest CT report sentences, one a line; ``#`` starts a comment line."""

OPEN_VOCABULARY = 50_000
"""English words a dictation may hold: an unseen word gets 1/this of the unigram mass left."""
MIN_GAIN = 5.0
"""Natural-log gain in sentence probability a replacement must beat (about 150 times)."""
SOUND_PRICE = 6.0
"""Log-probability a candidate must gain per unit of sound-key plus spelling distance."""
MAX_KEY_DISTANCE = 0.5
MAX_SPELLING_DISTANCE = 0.6
MAX_CLOSED_KEY_DISTANCE = 0.7
"""The sound-key limit for the one word the corpus ever writes after the two words before
the heard one: "the superior vena karma" -> cava (keys KRM and KF, 0.67).  The sound price,
:data:`MIN_GAIN` and the finding rules still apply."""
MIN_CLOSED_HISTORY = 3
"""Times the corpus must have seen the two words for the one word after them to count."""
MIN_LETTERS = 3
"""Heard words shorter than this are left alone, except two-letter words (below)."""
MIN_TERM_LETTERS = 4
"""Corpus words shorter than this are never written (too easy to reach by sound), except
that a two-letter word may become another ("on the chest" -> "of the chest")."""
MIN_LENGTH_RATIO = 0.75
"""A candidate spells at least this share of the heard letters: nothing said is dropped."""
SHORT = 2
SHORT_WORDS = frozenset({"of", "on", "in", "at", "to", "by", "as", "an"})
"""The two-letter words that may become one another (never "no", never a unit)."""
SHORT_SOUND_PRICE = 1.0
"""The price per unit of distance for one two-letter word for another: these are said
weakly and heard for one another ("CT on the chest"), and their keys and spellings are all
far apart for their length.  Chosen on the development and tuning dictations (6 -> 3:
errors 82 -> 80 and 239 -> 235; 1 to 3 did the same; with the 4-gram judge of
:data:`SHORT_ORDER`, 3 -> 1: development 47 -> 46, tuning 158 -> 158)."""
MIN_PAIR_LETTERS = 5
"""Word pairs of the corpus are candidates too ("shore taxes" -> "short axis") if this long."""
MAX_COMMON_PAIR_DISTANCE = 0.5
"""Most sound-key plus spelling distance for two heard words that are both common English
(:func:`app.speech.phonetic.common_words`) to become a term: "media still" -> mediastinal
(0.35) and "man remarkable" -> unremarkable (0.28), but "patient in" is not "ascending"
(1.06) and "fluid level" is not "multilevel" (0.57).  The language model knows only report
sentences, so any everyday pair it never saw looks unlikely to it; only the sound can say
that the pair was a misheard term.  On the tuning dictations the pairs it turned into terms
were all right at 0.35 or less and all wrong at 0.81 or more ("This often" -> the spleen,
"This offer" -> the liver, both for "The esophageal"); those wrong organs happened to write
a right "the", so the limit costs 3 word errors there (210 -> 213) and writes no wrong term."""

NEARBY = 2
"""A word is never written where it already stands this close (in words) on either side: a
sentence names a thing once per list ("No hilar or axillary adenopathy", heard "No killer or
axillary", is not "No axillary or axillary")."""

MIN_FORM_STEM = 6
MAX_FORM_CHANGE = 3
"""A term may become another form of itself: at least 6 letters the same at the start and
at most 3 letters of either word after them ("lingular" -> lingula, "thickening" ->
thickened; "osteophytes" is no form of osteopenia)."""

MAX_TERM_DISTANCE = 0.35
"""Most relative phoneme distance (:mod:`app.speech.phonemes`) between a chest CT term Whisper
wrote and another term the sentence calls for (:meth:`ContextCorrector._other_term`): "with
subcarinal reticulation" -> subpleural (0.32).  "lymph" and "lungs" (0.47) are too far."""
MAX_SLOT_WORDS = 3
"""A term becomes another only beside a neighbour the corpus has seen with at most this many
different words: a closed slot ("subpleural reticulation", the only term before reticulation
there).  Before "nodule" the corpus has nine ("solid", "calcified", "subpleural", ...), so
"a 4 mm subcarinal nodule" stays as said."""

ORDER = 3
"""Words in an n-gram of the report model (:class:`NgramModel`)."""
SHORT_ORDER = 4
"""Words in an n-gram of the model that judges one two-letter word for another
(:attr:`ContextCorrector.long_model`): "of" or "on" is told by the words around it,
further than a trigram sees ("thickening of the right pleura", while "on the right" is
common).  On the saved tiny.en transcripts, with :data:`SHORT_SOUND_PRICE` 1: order 3
wrote "Atelectasis in the left" for "on the left" and "Calcified granuloma in the right",
order 4 neither, and fixed "Mild thickening on the right pleura" (development 47 -> 46
errors, tuning 158 -> 158); order 5 was as order 3 on those sentences."""

VERB_ENDINGS = ("ed", "ing", "es", "s")
"""Endings of one verb's forms: a word whose stem takes another of them to make a chest CT
term is a form of that term, said as heard ("thickened" was "the chest" for a 5.1 gain)."""

NUMBER = "<num>"
START, END = "<s>", "</s>"

NEVER_CHANGE = STATEMENT_WORDS
"""Words whose change would change the statement, and the dictation's commands and section
words; never replaced (chest CT terms neither)."""
SIZE_WORDS = frozenset({"mild", "moderate", "severe", "small", "large", "trace"})
NEVER_WRITE = NEVER_CHANGE - SIZE_WORDS
"""Words never written in place of another: a negation or a change word must be heard.
A size word may be written ("my old" -> "mild") where the corpus has seen it with the
words on both sides, as a finding."""

FINDING_WORDS = frozenset(FINDINGS.split())
NUMBER_WORDS = frozenset([*ONES, *TENS, "hundred", "point"])
_UNITS = {
    "mm": "mm",
    "millimeter": "mm",
    "millimeters": "mm",
    "millimetre": "mm",
    "millimetres": "mm",
    "cm": "cm",
    "centimeter": "cm",
    "centimeters": "cm",
    "centimetre": "cm",
    "centimetres": "cm",
}
_TOKEN = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?|\d+(?:\.\d+)?|[.?!:;]")
_BOUNDARY = frozenset(".?!:;")


def normalise(word: str) -> str:
    """The model's form of a word: lower case, numbers as :data:`NUMBER`, units shortened."""
    lower = word.lower().replace("’", "'")
    if lower[:1].isdigit() or lower in NUMBER_WORDS:
        return NUMBER
    return _UNITS.get(lower, lower)


def sentences(text: str) -> list[list[str]]:
    """Normalised words of each sentence of ``text`` (split at . ? ! : ; and a spoken
    "period"; a spoken "comma" is left out, as a written one is)."""
    out: list[list[str]] = [[]]
    previous = ""
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        mark = token if token in _BOUNDARY else _spoken_mark(token, previous)
        previous = token.lower()
        if mark in _BOUNDARY:
            if out[-1]:
                out.append([])
        elif mark is None:
            out[-1].append(normalise(token))
    return [sentence for sentence in out if sentence]


SPOKEN_MARKS = {"period": ".", "comma": ","}
"""Punctuation said as a word: the corrections run before it becomes a mark, and the words
around it are report words on either side of a sentence end or a comma, not neighbours
("in the lingular period." is "in the lingula.")."""
PERIOD_AS_WORD_AFTER = frozenset({"a", "the", "this", "that", "short", "long", "time"})


def _spoken_mark(token: str, previous: str) -> str | None:
    """The mark a spoken "period" or "comma" stands for, or None for any other word."""
    lower = token.lower()
    if lower == "period" and previous in PERIOD_AS_WORD_AFTER:
        return None  # "a period of", "the follow-up period"
    return SPOKEN_MARKS.get(lower)


@dataclass(frozen=True, slots=True)
class NgramModel:
    """A word n-gram model (:data:`ORDER` words) with Witten-Bell interpolation down to an
    open unigram."""

    counts: tuple[Counter[tuple[str, ...]], ...]
    """Counts of the corpus's 1-grams, 2-grams, ... :data:`ORDER`-grams."""
    histories: tuple[Counter[tuple[str, ...]], ...]
    followers: tuple[Counter[tuple[str, ...]], ...]
    total: int
    predecessors: Counter[str] = field(default_factory=Counter)
    """How many different words the corpus has seen right before each word."""

    @property
    def order(self) -> int:
        return len(self.counts)

    @classmethod
    def train(cls, corpus: Iterable[Sequence[str]], order: int | None = None) -> NgramModel:
        order = ORDER if order is None else order
        counts: tuple[Counter[tuple[str, ...]], ...] = tuple(Counter() for _ in range(order))
        for sentence in corpus:
            padded = [*[START] * (order - 1), *sentence, END]
            for index in range(order - 1, len(padded)):
                for n in range(1, order + 1):
                    counts[n - 1][tuple(padded[index - n + 1 : index + 1])] += 1
        if not counts[0]:
            raise ValueError("the language model needs at least one sentence")
        histories: tuple[Counter[tuple[str, ...]], ...] = tuple(Counter() for _ in counts[1:])
        followers: tuple[Counter[tuple[str, ...]], ...] = tuple(Counter() for _ in counts[1:])
        for n, table in enumerate(counts[1:]):
            for gram, count in table.items():
                histories[n][gram[:-1]] += count
                followers[n][gram[:-1]] += 1
        return cls(
            counts=counts,
            histories=histories,
            followers=followers,
            total=sum(counts[0].values()),
            predecessors=Counter(second for _, second in counts[1]),
        )

    def truncated(self, order: int) -> NgramModel:
        """The model of the same corpus with n-grams of at most ``order`` words (its counts
        are this one's first ``order`` tables: the padding only adds longer histories)."""
        return NgramModel(
            counts=self.counts[:order],
            histories=self.histories[: order - 1],
            followers=self.followers[: order - 1],
            total=self.total,
            predecessors=self.predecessors,
        )

    def seen(self, *words: str) -> bool:
        """Whether the corpus holds this word sequence (one to :data:`ORDER` words)."""
        return self.counts[len(words) - 1][tuple(words)] > 0

    def knows(self, word: str) -> bool:
        return self.counts[0][(word,)] > 0

    def logprob(self, word: str, *context: str) -> float:
        """ln P(word | context), the nearest word of ``context`` first."""
        types = len(self.counts[0])
        probability = (self.counts[0][(word,)] + types / OPEN_VOCABULARY) / (self.total + types)
        for n in range(min(len(context), self.order - 1)):
            history = tuple(reversed(context[: n + 1]))
            seen = self.histories[n][history]
            if not seen:
                continue
            kinds = self.followers[n][history]
            probability = (self.counts[n + 1][(*history, word)] + kinds * probability) / (
                seen + kinds
            )
        return math.log(probability)

    def text_logprob(self, text: str) -> float:
        """ln P of every sentence of ``text`` (its words and its end)."""
        total = 0.0
        for sentence in sentences(text):
            total += self.score(sentence, 0, len(sentence))
        return total

    def score(self, words: Sequence[str], start: int, stop: int) -> float:
        """ln P of the words at positions ``start`` to ``stop + order - 1`` of the padded
        sentence.

        Those are all the terms a change to the words ``start`` to ``stop`` affects.
        """
        pad = self.order - 1
        padded = [*[START] * pad, *words, END]
        total = 0.0
        for index in range(start + pad, min(stop + pad + self.order, len(padded))):
            context = padded[index - pad : index][::-1]
            total += self.logprob(padded[index], *context)
        return total


@dataclass(frozen=True, slots=True)
class _Word:
    text: str
    start: int
    end: int
    sentence: int
    position: int  # index in its sentence
    gap: str  # the text between the previous word and this one


@dataclass(frozen=True, slots=True)
class Replacement:
    """Words ``first`` to ``last`` (indices into the text's words) become ``word``."""

    first: int
    last: int
    word: str
    gain: float


@dataclass(frozen=True, slots=True)
class ContextCorrector:
    """Replaces heard English words with the corpus word the sentence around them demands."""

    model: NgramModel
    candidates: tuple[SoundedWord, ...]
    protected: frozenset[str]
    sounds: Mapping[str, Phonemes] = field(default_factory=dict, hash=False, compare=False)
    """Pronunciations of the chest CT terms the corpus knows: the terms one heard term may
    become (:meth:`_other_term`); none without espeak-ng."""
    kinds: Mapping[str, frozenset[int]] = field(default_factory=dict, hash=False, compare=False)
    """The vocabulary lines each term stands in (:func:`app.speech.vocabulary.vocabulary_groups`):
    terms of one line are alternatives of one kind ("hypodense hyperdense", "apex apices
    ... anterior posterior"), never written for one another."""
    long_model: NgramModel | None = None
    """A model of :data:`SHORT_ORDER` words from the same corpus that judges one two-letter
    word for another; :attr:`model` where None."""

    @classmethod
    def build(
        cls,
        corpus: Sequence[str],
        protected: Iterable[str],
        *,
        sounds: Mapping[str, Phonemes] | None = None,
        groups: Sequence[str] = (),
    ) -> ContextCorrector:
        long_model = NgramModel.train(
            (s for text in corpus for s in sentences(text)), order=max(ORDER, SHORT_ORDER)
        )
        model = long_model.truncated(ORDER)
        words = sorted(
            word
            for (word,) in model.counts[0]
            if (len(word) >= MIN_TERM_LETTERS or word in SHORT_WORDS)
            and word.isalpha()
            and word not in NEVER_WRITE
        )
        pairs = sorted(
            " ".join(pair)
            for pair in model.counts[1]
            if all(word.isalpha() and word not in NEVER_WRITE for word in pair)
            and len("".join(pair)) >= MIN_PAIR_LETTERS
        )
        words += pairs
        kinds: dict[str, set[int]] = {}
        for line, group in enumerate(groups):
            for word in group.split():
                kinds.setdefault(word, set()).add(line)
        return cls(
            model=model,
            long_model=long_model.truncated(SHORT_ORDER),
            candidates=tuple(SoundedWord.of(word) for word in words),
            protected=frozenset(protected) | NEVER_CHANGE,
            sounds={word: sound for word, sound in (sounds or {}).items() if model.knows(word)},
            kinds={word: frozenset(lines) for word, lines in kinds.items()},
        )

    def correct(self, text: str) -> str:
        """``text`` with each replacement of :meth:`replacements` made, keeping the rest."""
        words = _words(text)
        out: list[str] = []
        position = 0
        for replacement in self.replacements(text):
            first, last = words[replacement.first], words[replacement.last]
            out.append(text[position : first.start])
            out.append(_cased(replacement.word, text, first.start))
            position = last.end
        out.append(text[position:])
        return "".join(out)

    def replacements(self, text: str) -> list[Replacement]:
        """The changes, left to right; each is judged with the earlier ones made."""
        words = _words(text)
        by_sentence: dict[int, list[str]] = {}
        for word in words:
            by_sentence.setdefault(word.sentence, []).append(normalise(word.text))
        found: list[Replacement] = []
        index = 0
        while index < len(words):
            best = self._best(words, index, by_sentence[words[index].sentence])
            if best is None:
                index += 1
                continue
            found.append(best)
            sentence = by_sentence[words[index].sentence]
            first = words[best.first].position
            written = best.word.split()
            sentence[first : words[best.last].position + 1] = written
            # positions after the change move if the number of words changed
            shift = best.last - best.first + 1 - len(written)
            for later in range(best.last + 1, len(words)):
                if words[later].sentence == words[index].sentence:
                    old = words[later]
                    words[later] = _Word(
                        old.text, old.start, old.end, old.sentence, old.position - shift, old.gap
                    )
            index = best.last + 1
        return found

    def changeable(self, word: str) -> bool:
        lower = word.lower()
        return (
            (len(lower) >= MIN_LETTERS or lower in SHORT_WORDS)
            and lower.isalpha()
            and normalise(lower) != NUMBER
            and not self._protected(lower)
        )

    def _protected(self, word: str) -> bool:
        """A term, a statement word, an inflection of one, or another verb form of a term's
        stem ("thickened" beside "thickening", "narrowed" beside "narrowing")."""
        if word in self.protected:
            return True
        for suffix, ending in (("s", ""), ("es", ""), ("ies", "y"), ("ed", ""), ("ly", "")):
            if word.endswith(suffix) and word[: -len(suffix)] + ending in self.protected:
                return True
        for suffix in VERB_ENDINGS:
            stem = word[: -len(suffix)]
            if (
                word.endswith(suffix)
                and len(stem) >= MIN_FORM_STEM
                and any(stem + other in self.protected for other in VERB_ENDINGS)
            ):
                return True
        return False

    def _best(self, words: Sequence[_Word], index: int, sentence: list[str]) -> Replacement | None:
        if not self.changeable(words[index].text):
            made = [
                replacement
                for replacement in (
                    self._other_form(words, index, sentence),
                    self._other_term(words, index, sentence),
                )
                if replacement is not None
            ]
            return max(made, key=lambda replacement: replacement.gain, default=None)
        best: Replacement | None = None
        for first, last in ((index, index), (index, index + 1)):
            if last >= len(words) or words[last].sentence != words[index].sentence:
                continue
            if not all(self.changeable(words[i].text) for i in range(first, last + 1)):
                continue
            if last > first and len(words[first].text) <= SHORT:
                continue  # a two-letter word was said: "wall in thickened" is no "thickening"
            if any(words[i].gap.strip() not in ("", "-") for i in range(first + 1, last + 1)):
                continue  # a comma or a sentence mark between them
            found = self._judge(words, first, last, sentence)
            if found is not None and (best is None or found.gain > best.gain):
                best = found
        return best

    def _judge(
        self, words: Sequence[_Word], first: int, last: int, sentence: list[str]
    ) -> Replacement | None:
        start, stop = words[first].position, words[last].position
        heard = "".join(sentence[start : stop + 1])
        model = self.long_model if len(heard) == SHORT and self.long_model else self.model
        before = model.score(sentence, start, stop)
        left = sentence[start - 1] if start > 0 else START
        right = sentence[stop + 1] if stop + 1 < len(sentence) else END
        best: Replacement | None = None
        common = last > first and all(sentence[i] in common_words() for i in range(start, stop + 1))
        nearby = {
            word
            for word in sentence[max(0, start - NEARBY) : start]
            + sentence[stop + 1 : stop + 1 + NEARBY]
            if word.isalpha()
        }
        closed = self._closed_slot(sentence, start)
        for candidate, distance in self._sounding_like(heard, closed):
            if (len(heard) == SHORT) != (len(candidate) == SHORT):
                continue  # two letters only for two letters
            if common and distance > MAX_COMMON_PAIR_DISTANCE:
                continue  # everyday English, said as heard ("patient in", "fluid level")
            if set(candidate.split()) & set(sentence[start : stop + 1]):
                continue  # no deleting or keeping a word by merging it with its neighbour
            if set(candidate.split()) & nearby:
                continue  # "No killer or axillary": a list names each thing once
            if (
                stop > start
                and len(sentence[stop]) <= SHORT
                and not candidate.startswith(sentence[start])
            ):
                continue  # two letters after a word are its broken-off end ("reform at"), or said
            written = candidate.split()
            if len(written) > 1 and any(
                _plural_of(word, said) or _plural_of(said, word)
                for word, said in zip(written, sentence[start : stop + 1], strict=False)
            ):
                continue  # a pair keeps its number: "no change on the left" is no "changes in"
            left_seen = self.model.seen(left, written[0])
            right_seen = self.model.seen(written[-1], right)
            if FINDING_WORDS.intersection(written) or SIZE_WORDS.intersection(written):
                if not (left_seen and right_seen):
                    continue
            elif not (left_seen or right_seen):
                continue
            changed = [*sentence[:start], *written, *sentence[stop + 1 :]]
            after = model.score(changed, start, start + len(written) - 1)
            price = SHORT_SOUND_PRICE if len(heard) == SHORT else SOUND_PRICE
            gain = after - before - price * distance
            if gain > MIN_GAIN and (best is None or gain > best.gain):
                best = Replacement(first, last, candidate, gain)
        return best

    def _other_form(
        self, words: Sequence[_Word], index: int, sentence: list[str]
    ) -> Replacement | None:
        """A term in the form the sentence calls for ("in the lingular." -> lingula, "is
        thickening." -> thickened): a corpus word with the same first :data:`MIN_FORM_STEM`
        letters, seen with the word before it and with the word after it unless that word
        tells nothing of the form (:func:`_tells_nothing`: "in the lingular with an irregular
        wall", "in the lingular, 3 mm"), if the sentence gains :data:`MIN_GAIN`.  Statement
        words keep their form ("enlarged" is never "enlargement"), and the number stays
        ("lesions" is never "lesion")."""
        heard = words[index].text.lower()
        if (
            len(heard) < MIN_FORM_STEM
            or not heard.isalpha()
            or heard not in self.protected
            or _inflected_from(heard, NEVER_CHANGE)
        ):
            return None
        position = words[index].position
        left = sentence[position - 1] if position > 0 else START
        right = sentence[position + 1] if position + 1 < len(sentence) else END
        before = self.model.score(sentence, position, position)
        best: Replacement | None = None
        for candidate in self._forms(heard):
            if not self.model.seen(left, candidate):
                continue
            if not (self.model.seen(candidate, right) or _tells_nothing(right)):
                continue
            changed = [*sentence[:position], candidate, *sentence[position + 1 :]]
            gain = self.model.score(changed, position, position) - before
            if gain > MIN_GAIN and (best is None or gain > best.gain):
                best = Replacement(index, index, candidate, gain)
        return best

    def _other_term(
        self, words: Sequence[_Word], index: int, sentence: list[str]
    ) -> Replacement | None:
        """Another chest CT term that sounds like the one Whisper wrote, where the corpus has
        seen the term written in other sentences but never beside either neighbour here, and
        has seen the other term beside both ("interlobular septal thickening with subcarinal
        reticulation" -> subpleural: "subcarinal" goes with lymph nodes), beside a neighbour
        that goes with few words in the corpus (:data:`MAX_SLOT_WORDS`).  Within
        :data:`MAX_TERM_DISTANCE` of each other by pronunciation, never two terms of one
        vocabulary line (:attr:`kinds`: "hyperdense" is no mishearing of hypodense), never a
        statement word either way, and only if the sentence gains :data:`MIN_GAIN` plus the
        sound price.  A term the corpus has never seen ("apices") is left alone: that the
        corpus lacks it beside its neighbours says nothing ("at the lung apices" is not
        "bases")."""
        heard = words[index].text.lower()
        sound = self.sounds.get(heard)
        if sound is None or heard in MUST_BE_HEARD or _inflected_from(heard, NEVER_CHANGE):
            return None
        position = words[index].position
        left = sentence[position - 1] if position > 0 else START
        right = sentence[position + 1] if position + 1 < len(sentence) else END
        if self.model.seen(left, heard) or self.model.seen(heard, right):
            return None  # the corpus knows it here, on one side at least
        slot = min(self.model.predecessors[right], self.model.followers[0][(left,)])
        if not 0 < slot <= MAX_SLOT_WORDS:
            return None  # the neighbours go with many words: no evidence against it
        nearby = set(sentence[max(0, position - NEARBY) : position + 1 + NEARBY])
        before = self.model.score(sentence, position, position)
        best: Replacement | None = None
        for candidate, said in self.sounds.items():
            if (
                candidate in nearby
                or candidate in NEVER_WRITE
                or _inflected_from(candidate, NEVER_CHANGE)
                or self.kinds.get(candidate, frozenset()) & self.kinds.get(heard, frozenset())
                or _plural_of(candidate, heard)
                or _plural_of(heard, candidate)
                or not (self.model.seen(left, candidate) and self.model.seen(candidate, right))
            ):
                continue
            distance = relative_phoneme_distance(sound, said, limit=MAX_TERM_DISTANCE)
            if distance > MAX_TERM_DISTANCE:
                continue
            changed = [*sentence[:position], candidate, *sentence[position + 1 :]]
            gain = self.model.score(changed, position, position) - before - SOUND_PRICE * distance
            if gain > MIN_GAIN and (best is None or gain > best.gain):
                best = Replacement(index, index, candidate, gain)
        return best

    def _forms(self, heard: str) -> list[str]:
        stem = heard[:MIN_FORM_STEM]
        return [
            candidate.word
            for candidate in self.candidates
            if candidate.word.startswith(stem)
            and candidate.word != heard
            and " " not in candidate.word
            and common_prefix(candidate.word, heard)
            >= max(len(candidate.word), len(heard)) - MAX_FORM_CHANGE
            and not _inflected_from(candidate.word, NEVER_CHANGE)
            and not _plural_of(candidate.word, heard)
            and not _plural_of(heard, candidate.word)
        ]

    def _closed_slot(self, sentence: Sequence[str], start: int) -> str | None:
        """The one word the corpus has ever written after the two words before ``start``, if
        it has seen those two words at least :data:`MIN_CLOSED_HISTORY` times ("right lower"
        is always followed by "lobe")."""
        if start < 2:
            return None
        history = (sentence[start - 2], sentence[start - 1])
        if self.model.histories[1][history] < MIN_CLOSED_HISTORY:
            return None
        if self.model.followers[1][history] != 1:
            return None
        return next(gram[2] for gram in self.model.counts[2] if gram[:2] == history)

    def _sounding_like(self, heard: str, closed: str | None = None) -> list[tuple[str, float]]:
        """Candidates whose sound key and spelling are close to ``heard``; the ``closed``
        slot's word may be further in sound key (:data:`MAX_CLOSED_KEY_DISTANCE`)."""
        key = sound_key(heard)
        if not key:
            return []
        close = []
        for candidate in self.candidates:
            limit = MAX_CLOSED_KEY_DISTANCE if candidate.word == closed else MAX_KEY_DISTANCE
            key_distance = relative_distance(key, candidate.key, limit)
            if key_distance is None:
                continue
            spelled = candidate.word.replace(" ", "")
            if len(spelled) < MIN_LENGTH_RATIO * len(heard):
                continue  # it would leave heard sounds unexplained (a word dropped)
            spelling = edit_distance(heard, spelled) / max(len(heard), len(spelled))
            if spelling > MAX_SPELLING_DISTANCE:
                continue
            close.append((candidate.word, key_distance + spelling))
        return close


def _tells_nothing(word: str) -> bool:
    """A number or one of the :data:`app.speech.phonetic.MIN_NEIGHBOUR_RANK` most frequent
    English words ("with", "and", "is"): such a word follows any form of a term ("the
    lingula with", "the lingular with" the corpus may never have seen), so it cannot
    support the form the corpus has not seen with it.  A content word can ("lingular
    atelectasis"), and its support is still required."""
    return word == NUMBER or word_ranks().get(word, MIN_NEIGHBOUR_RANK) < MIN_NEIGHBOUR_RANK


def _plural_of(word: str, other: str) -> bool:
    """One finding or many is what was said: never changed by the sentence around it."""
    return word in (other + "s", other + "es") or (
        other.endswith("y") and word == other[:-1] + "ies"
    )


def _inflected_from(word: str, words: frozenset[str]) -> bool:
    if word in words:
        return True
    for suffix, ending in (("s", ""), ("es", ""), ("ies", "y"), ("ed", ""), ("ly", "")):
        if word.endswith(suffix) and word[: -len(suffix)] + ending in words:
            return True
    return False


def _words(text: str) -> list[_Word]:
    """The words of ``text`` with their sentence and place in it; a spoken "period" ends a
    sentence and a spoken "comma" is no word but part of the gap before the next one."""
    words: list[_Word] = []
    sentence = 0
    position = 0
    previous_end = 0
    previous = ""
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        mark = token if token in _BOUNDARY else _spoken_mark(token, previous)
        previous = token.lower()
        if mark in _BOUNDARY:
            if position:
                sentence += 1
                position = 0
            continue
        if mark is not None:
            continue  # a spoken comma: the next word's gap holds it
        gap = text[previous_end : match.start()]
        words.append(_Word(token, match.start(), match.end(), sentence, position, gap))
        position += 1
        previous_end = match.end()
    return words


def _cased(word: str, text: str, start: int) -> str:
    before = text[:start].rstrip()
    starts_sentence = not before or before[-1] in ".?!:"
    return word[:1].upper() + word[1:] if starts_sentence else word


def read_corpus(path: Path = CORPUS_FILE) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@cache
def chest_context_corrector() -> ContextCorrector:
    """The corrector for chest CT dictations (built once per process), with the chest CT
    terms' pronunciations where espeak-ng is installed."""
    return ContextCorrector.build(
        read_corpus(),
        CHEST_CT_VOCABULARY,
        sounds=chest_corrector().sounds,
        groups=vocabulary_groups(),
    )
