"""Words Whisper invents for radiology terms, mapped to the term they sound like.

Whisper tiny.en writes what it hears when it does not know a word:
"stickulated" for spiculated, "hyattal" for hiatal, "lural" for pleural,
"mediastinil" for mediastinal.  Such a word is in neither the chest CT
vocabulary (:mod:`app.speech.vocabulary`) nor common English (the whole words
of Whisper's own tokenizer, :data:`COMMON_WORDS_FILE`) nor the report corpus.
Only such a word is looked at by :meth:`PhoneticCorrector.correct`: it is
replaced, alone or with the word next to it ("bronchic tussies" ->
bronchiectasis), by the vocabulary word that sounds closest, if close enough.
A known word is never changed there, so correct English stays as it is, and a
made-up word that sounds like no chest CT term stays too.

How close is measured by pronunciation where espeak-ng is installed
(:mod:`app.speech.phonemes`: "mustoyotomy" -> sternotomy, which spelling
misses), else by a small Metaphone key (:func:`sound_key`) and the spelling.

With pronunciations, :meth:`PhoneticCorrector.correct_english` goes one step
further, after the context corrector: an English word that report sentences
never use (:meth:`PhoneticCorrector.unexpected`: "river", "feeling") and that
sounds almost like a term of at least :data:`MIN_ENGLISH_PHONEMES` phonemes
becomes the term ("a river lesion" -> a liver lesion), unless it is another
form of it ("enlargement"); with a word next to it, it may make one long term
("some pleural" -> subpleural, "cardio pulmonary" -> cardiopulmonary).
Statement words are never replaced or swallowed.  A frequent English word
(:func:`frequent`: "level", "collapse") is more likely said than misheard: it
becomes a term only if it sounds nearly exactly like it and a report sentence
holds the term with a word next to it (:data:`FREQUENT_RANK`).
What stays out of reach: a term heard as English that sounds quite different
("order" for aorta) and terms heard as several words ("and hand sing").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from rapidfuzz.distance import Levenshtein

from app.speech.phonemes import Phonemes, pronunciations, relative_phoneme_distance
from app.speech.vocabulary import (
    CHEST_CT_VOCABULARY,
    MUST_BE_HEARD,
    STATEMENT_WORDS,
    vocabulary_groups,
)

COMMON_WORDS_FILE = Path(__file__).with_name("common_words.txt")
"""Lower-case words, one a line: every whole word of the GPT-2 byte-pair vocabulary
that all English Whisper models share (a token "Ġword"), so a word Whisper writes in one
token is an English word, not an invention.  They stand in token-id order, which is the
order the byte-pair merges were learnt in, so a word nearer the top is more frequent in
English text ("the" 3rd, "level" 397th, "collapse" 4987th, "sentimental" 23087th)."""

MAX_KEY_DISTANCE = 0.34
"""Most sound-key edits per key letter of the longer key for a replacement."""
MAX_SPELLING_DISTANCE = 0.5
"""Most letter edits per letter of the longer spelling for a replacement."""
MAX_SCORE = 0.6
"""Most key distance plus spelling distance for a replacement."""
NEIGHBOUR_COST = 0.1
"""Added to a match that swallows a known word next to the invented one."""
MIN_LETTERS = 4
MIN_KEY = 3
"""Shorter inventions (in letters, in sound-key letters) are too ambiguous to map."""
MUST_BE_HEARD_SLACK = 2
"""Letters at the end of a negation, side or change word that a heard spelling may miss."""
MAX_INVENTED_DISTANCE = 0.3
"""With pronunciations (:mod:`app.speech.phonemes`): most relative phoneme distance between
an invented word (alone or with a neighbour) and the term it becomes."""
MAX_ENGLISH_DISTANCE = 0.22
"""Most relative phoneme distance between an unexpected English word and its term."""
MIN_PHONEMES = 5
"""Shorter heard words (in phonemes) are too ambiguous to map by sound."""
PREFILTER_KEY_DISTANCE = 0.67
"""Terms whose sound key is further than this from the heard key are not compared by
pronunciation (it saves most of the time and changed no correction on the development and
tuning sets; 0.6 lost one)."""
MIN_SHARED_STEM = 6
"""An English word that starts with this many letters of a term is another form of it, and
so is an invented one that is also two letters longer or shorter."""
MIN_MERGED_LETTERS = 3
MIN_MERGE_PHONEMES = 8
"""An unexpected English word merged with a report word next to it ("high pneumothorax" ->
hydropneumothorax) becomes only a term at least this long."""
SPELLING_WEIGHT = 0.5
"""Weight of the spelling distance beside the phoneme distance when ranking terms."""
MIN_ENGLISH_PHONEMES = 5
"""An unexpected English word becomes only a term of at least this many phonemes (short
terms are reached by too many words: "assist" is not "cyst")."""
FREQUENT_RANK = 10_000
"""An English word among this many most frequent (:func:`word_ranks`) is more likely said
than misheard: it becomes a term only within :data:`MAX_FREQUENT_DISTANCE` and where the
corpus has a sentence (or the vocabulary a line, :func:`vocabulary_groups`) with the term
and a telling neighbour of the word (:data:`MIN_NEIGHBOUR_RANK`): "a river lesion" -> liver
lesion ("lesion in the liver"), "feeling defects" -> filling defects ("thrombus thrombosis
filling defect"), but "lobe collapse" is not "lobe clips" and "fluid level" is not "fluid
liver"."""
MAX_FREQUENT_DISTANCE = 0.12
"""Most relative phoneme distance between a frequent English word and its term: near-exact
("river" and "liver" 0.10, "feeling" and "filling" 0.08; "level" and "liver" 0.18)."""
MIN_NEIGHBOUR_RANK = 500
"""Neighbours among this many most frequent words ("the", "with", "this", "left", "small") go
with any term: they support none."""
MIN_STEM = 4
"""Letters a word keeps when its plural ending goes ("lesions" -> lesion, "is" stays)."""

_WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")
_VOWELS = frozenset("aeiou")
# An inflected form of a known word is known: (suffix, what may replace it).
_SUFFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ies", ("y",)),
    ("es", ("", "e")),
    ("s", ("",)),
    ("ed", ("", "e")),
    ("ing", ("", "e")),
    ("ly", ("",)),
    ("er", ("", "e")),
    ("ity", ("", "e")),
    ("ness", ("",)),
)
_VERB_ENDINGS = ("ed", "ing", "s", "es")
"""Endings of one verb's forms: a word whose stem takes another of them to make a known word
is a form of that word."""


@cache
def word_ranks() -> Mapping[str, int]:
    """Each common word's place in :data:`COMMON_WORDS_FILE`, 0 the most frequent."""
    words = COMMON_WORDS_FILE.read_text(encoding="utf-8").split()
    return {word: rank for rank, word in enumerate(words)}


@cache
def common_words() -> frozenset[str]:
    return frozenset(word_ranks())


def frequent(word: str) -> bool:
    """Among the :data:`FREQUENT_RANK` most frequent English words (or an inflection of one:
    "collapsed", "levels")."""
    lower = word.lower()
    ranks = word_ranks()
    stems = [lower] + [
        lower[: -len(suffix)] + ending
        for suffix, endings in _SUFFIXES
        if lower.endswith(suffix) and len(lower) - len(suffix) >= 3
        for ending in endings
    ]
    return any(ranks.get(stem, FREQUENT_RANK) < FREQUENT_RANK for stem in stems)


def sound_key(word: str) -> str:
    """A Metaphone-like key: letters that sound alike share a code, inner vowels go."""
    text = re.sub(r"[^a-z]", "", word.lower())
    if not text:
        return ""
    for start, sound in (("kn", "n"), ("gn", "n"), ("pn", "n"), ("ps", "s"), ("wr", "r")):
        if text.startswith(start):
            text = sound + text[len(start) :]
    if text.startswith("x"):
        text = "s" + text[1:]
    for group, sound in (
        ("tch", "x"),
        ("sch", "sk"),
        ("tion", "xn"),
        ("sion", "xn"),
        ("cia", "xa"),
        ("ph", "f"),
        ("ck", "k"),
        ("sh", "x"),
        ("ch", "k"),
        ("th", "0"),
        ("dg", "j"),
        ("gh", ""),
        ("wh", "w"),
        ("qu", "kw"),
    ):
        text = text.replace(group, sound)
    text = re.sub(r"c(?=[eiy])", "s", text)
    text = re.sub(r"g(?=[eiy])", "j", text)
    text = text.translate(str.maketrans("cqxzdgvy", "kksstkfi"))
    text = text.replace("ks", "s")
    key = [text[0]] if text[0] in _VOWELS else []
    for index, letter in enumerate(text):
        if letter in _VOWELS or (letter in "hw" and index > 0):
            continue
        if key and key[-1] == letter and index > 0:
            continue
        key.append(letter)
    return "".join(key).upper()


def edit_distance(first: str, second: str) -> int:
    """Levenshtein distance (rapidfuzz's; the correctors call it hundreds of thousands of
    times per dictation, and the pure-Python loop was a tenth of transcription's CPU)."""
    return int(Levenshtein.distance(first, second))


def relative_distance(first: str, second: str, limit: float) -> float | None:
    """Edit distance over the longer length, or None when it is over ``limit``."""
    longest = max(len(first), len(second), 1)
    if abs(len(first) - len(second)) > limit * longest:
        return None  # the length difference alone is too far
    distance = edit_distance(first, second) / longest
    return distance if distance <= limit else None


@dataclass(frozen=True, slots=True)
class SoundedWord:
    """A word a corrector may write, with its ``sound_key``."""

    word: str
    key: str

    @classmethod
    def of(cls, word: str) -> SoundedWord:
        return cls(word, sound_key(word))


@dataclass(frozen=True, slots=True)
class PhoneticCorrector:
    """Replaces invented words with the vocabulary term they sound like."""

    terms: tuple[SoundedWord, ...]
    known: frozenset[str]
    expected: frozenset[str] = frozenset()
    """Report English (the context model's corpus words): never replaced."""
    sounds: Mapping[str, Phonemes] = field(default_factory=dict, hash=False, compare=False)
    """The terms' pronunciations; without them sound keys and spellings are compared and
    only invented words are replaced."""
    together: frozenset[tuple[str, str]] = frozenset()
    """Pairs of words (stems, see :func:`_stem`) that share a report sentence or a vocabulary
    line: what supports a frequent English word's term (:data:`FREQUENT_RANK`)."""
    _found: dict[tuple[Phonemes, str, bool, bool, bool, int], tuple[float, str] | None] = field(
        default_factory=dict, hash=False, compare=False, repr=False
    )

    @classmethod
    def build(
        cls,
        vocabulary: Iterable[str],
        common: Iterable[str],
        *,
        expected: Iterable[str] = (),
        sentences: Iterable[str] = (),
        pronounce: bool = False,
    ) -> PhoneticCorrector:
        words = sorted({word for word in vocabulary if "-" not in word})
        terms = tuple(SoundedWord.of(word) for word in words if len(word) >= MIN_LETTERS)
        sounds = pronunciations(term.word for term in terms) if pronounce else {}
        together: set[tuple[str, str]] = set()
        for sentence in sentences:
            stems = {_stem(word) for word in re.findall(r"[a-z]+", sentence.lower())}
            together.update((a, b) for a in stems for b in stems if a != b)
        return cls(
            terms=terms,
            known=frozenset(common) | frozenset(words) | frozenset(expected),
            expected=frozenset(expected) | frozenset(words),
            sounds=sounds,
            together=frozenset(together),
        )

    def correct(self, text: str) -> str:
        """``text`` with the words Whisper hyphenated into one apart again (see
        :meth:`split_chains`), each term Whisper split after its prefix joined again (see
        :func:`join_prefixes`) and each invented word (and maybe a neighbour) replaced by a
        term."""
        return self._correct(join_prefixes(self.split_chains(text), self.terms), english=False)

    def split_chains(self, text: str) -> str:
        """``text`` with each hyphenated chain that holds a statement word and either three
        or more words or an invented one written as separate words: tiny.en joins dictated
        words with hyphens ("Small-right-hidrop pneumothorax"), and the correctors can mend
        a word only where it stands alone ("hidrop pneumothorax" -> hydropneumothorax).
        Compounds stay ("left-sided", "ground-glass", "tree-in-bud")."""

        def apart(match: re.Match[str]) -> str:
            chain = match.group(0)
            parts = chain.split("-")
            if len(parts) < 2 or not any(part.lower() in STATEMENT_WORDS for part in parts):
                return chain
            if len(parts) >= 3 or any(self.invented(part) for part in parts):
                return " ".join(parts)
            return chain

        return _WORD.sub(apart, text)

    def correct_english(self, text: str) -> str:
        """``text`` with each unexpected English word (see :meth:`unexpected`) that sounds
        almost like a term replaced by it; nothing without pronunciations.  Meant to run after
        the context corrector, which knows report phrases ("media still" -> mediastinal)."""
        return self._correct(text, english=True) if self.sounds else text

    def _correct(self, text: str, *, english: bool) -> str:
        matches = list(_WORD.finditer(text))
        heard = self._heard(matches, english=english)
        out: list[str] = []
        position = 0
        taken = -1  # index of the last word already replaced
        for index, match in enumerate(matches):
            word = match.group(0)
            suspect = word.lower() in heard and self.unexpected(word) if english else None
            if index <= taken or not (suspect if english else self.invented(word)):
                continue
            found = self._best_span(matches, index, first_free=taken + 1, heard=heard)
            if found is None:
                continue
            first, last, word = found
            out.append(text[position : matches[first].start()])
            out.append(_cased(word, matches[first]))
            position = matches[last].end()
            taken = last
        out.append(text[position:])
        return "".join(out)

    def _heard(self, matches: Sequence[re.Match[str]], *, english: bool) -> dict[str, Phonemes]:
        """Pronunciations of the suspect words and their neighbours (one espeak-ng run)."""
        if not self.sounds:
            return {}
        suspects = [
            index
            for index, match in enumerate(matches)
            if (self.unexpected(match.group(0)) if english else self.invented(match.group(0)))
        ]
        wanted = {i for index in suspects for i in (index - 1, index, index + 1)}
        return pronunciations(
            matches[i].group(0).lower() for i in sorted(wanted) if 0 <= i < len(matches)
        )

    def unexpected(self, word: str) -> bool:
        """English, but not report English: in neither the corpus of report sentences nor the
        vocabulary (nor an inflection of either), nor a statement word.  In a chest dictation
        such a word is more likely a term misheard ("feeling defects" for filling defects,
        "sentimental arteries" for segmental) than what was said, if it sounds almost like one."""
        lower = word.lower()
        return (
            bool(self.sounds)
            and lower.isalpha()
            and len(lower) >= MIN_LETTERS
            and lower not in STATEMENT_WORDS
            and not _inflection_of(lower, self.expected)
        )

    def _best_span(
        self,
        matches: Sequence[re.Match[str]],
        index: int,
        *,
        first_free: int,
        heard: Mapping[str, Phonemes],
    ) -> tuple[int, int, str] | None:
        """(first, last, term): the closest term for the invention at ``index`` alone or with
        a neighbour; taking in a known neighbour costs :data:`NEIGHBOUR_COST`.  An unexpected
        English word takes in only unexpected or invented neighbours."""
        best: tuple[tuple[int, float], int, int, str] | None = None
        for first, last in ((index, index), (index - 1, index), (index, index + 1)):
            if first < first_free or last >= len(matches):
                continue
            span = matches[first : last + 1]
            if not _adjacent(span):
                continue
            if any(m.group(0).lower() in STATEMENT_WORDS for m in span):
                continue  # "pleel are" must not become "pleura": "are" was said
            invented = sum(self.invented(m.group(0)) for m in span)
            spelled = "".join(m.group(0).lower() for m in span).replace("-", "")
            if self.sounds and all(m.group(0).lower() in heard for m in span):
                unexpected = sum(self.unexpected(m.group(0)) for m in span)
                if not invented and not unexpected:
                    continue
                merging = not invented and unexpected < len(span)
                if merging and any(len(m.group(0)) < MIN_MERGED_LETTERS for m in span):
                    continue  # "on reconstruction" is not "reconstructions"
                sound = tuple(p for m in span for p in heard[m.group(0).lower()])
                everyday = not invented and len(span) == 1 and frequent(spelled)
                found = self.closest_sound(
                    sound,
                    spelled,
                    english=not invented,
                    merging=merging,
                    everyday=everyday,
                    words=len(span),
                )
                if found and merging and found[1] in {m.group(0).lower() for m in span}:
                    found = None
                if found and everyday and not self._supported(matches, index, found[1]):
                    found = None  # "lobe collapse" is what was said, not "lobe clips"
            else:
                found = self.closest(spelled) if invented else None
            if found is not None and not _may_write(found[1], spelled, len(span)):
                found = None
            if found is None:
                continue
            # explaining two inventions at once beats explaining one
            cost = (-invented, found[0] + NEIGHBOUR_COST * (len(span) - invented))
            if best is None or cost < best[0]:
                best = (cost, first, last, found[1])
        return None if best is None else best[1:]

    def _supported(self, matches: Sequence[re.Match[str]], index: int, term: str) -> bool:
        """Whether a report sentence or vocabulary line holds ``term`` with a word next to
        ``index`` (one not among the :data:`MIN_NEIGHBOUR_RANK` most frequent words, with
        no punctuation between)."""
        for low, high, other in ((index - 1, index, index - 1), (index, index + 1, index + 1)):
            if low < 0 or high >= len(matches) or not _adjacent(matches[low : high + 1]):
                continue
            neighbour = matches[other].group(0).lower()
            if word_ranks().get(neighbour, MIN_NEIGHBOUR_RANK) < MIN_NEIGHBOUR_RANK:
                continue  # "the", "with", "left": any term goes with them
            if (_stem(term), _stem(neighbour)) in self.together:
                return True
        return False

    def invented(self, word: str) -> bool:
        """Neither common English nor chest CT vocabulary (nor an inflection of either)."""
        return any(
            len(part) >= MIN_LETTERS and not self._known(part) for part in word.lower().split("-")
        )

    def _known(self, word: str) -> bool:
        """Known, an inflection of a known word, or another inflection of a known word's stem
        ("thickened" beside the term "thickening": said as it is, not misheard)."""
        if word in self.known:
            return True
        for suffix, replacements in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                stem = word[: -len(suffix)]
                if any(stem + ending in self.known for ending in replacements):
                    return True
                if len(stem) >= MIN_SHARED_STEM and any(
                    stem + other in self.known for other in _VERB_ENDINGS if other != suffix
                ):
                    return True
        return False

    def closest_sound(
        self,
        sound: Phonemes,
        spelled: str,
        *,
        english: bool,
        merging: bool = False,
        everyday: bool = False,
        words: int = 1,
    ) -> tuple[float, str] | None:
        """(score, term) of the term whose pronunciation is closest to ``sound``, if within
        :data:`MAX_INVENTED_DISTANCE` (or :data:`MAX_ENGLISH_DISTANCE` for English words,
        :data:`MAX_FREQUENT_DISTANCE` for :func:`frequent` ones: ``everyday``); ``spelled``
        is the heard ``words`` words written together."""
        key = (sound, spelled, english, merging, everyday, words)
        if key not in self._found:
            shortest = MIN_MERGE_PHONEMES if merging else MIN_ENGLISH_PHONEMES
            if not english:
                limit = MAX_INVENTED_DISTANCE
            else:
                limit = MAX_FREQUENT_DISTANCE if everyday else MAX_ENGLISH_DISTANCE
            self._found[key] = _closest_sound(
                self, sound, spelled, english, shortest, limit, words=words
            )
        return self._found[key]

    def closest(self, spelled: str) -> tuple[float, str] | None:
        """(distance, term) of the vocabulary term that ``spelled`` most sounds like, if close."""
        key = sound_key(spelled)
        if len(spelled) < MIN_LETTERS or len(key) < MIN_KEY:
            return None
        best: tuple[float, str] | None = None
        for term in self.terms:
            key_distance = relative_distance(key, term.key, MAX_KEY_DISTANCE)
            if key_distance is None:
                continue
            spelling = edit_distance(spelled, term.word) / max(len(spelled), len(term.word))
            if spelling > MAX_SPELLING_DISTANCE:
                continue
            score = key_distance + spelling
            if score > MAX_SCORE:
                continue
            if best is None or score < best[0]:
                best = (score, term.word)
        return best


def _closest_sound(
    corrector: PhoneticCorrector,
    sound: Phonemes,
    spelled: str,
    english: bool,
    shortest: int,
    limit: float,
    *,
    words: int = 1,
) -> tuple[float, str] | None:
    """Within the phoneme ``limit``, the term with the least phoneme distance plus
    :data:`SPELLING_WEIGHT` times spelling distance ("lural": pleural, not lateral).  A
    heard word that starts as a term does and is two letters longer or shorter is another
    form of it, as said; heard words run together are no form of anything ("bronchic tase"
    -> bronchiectasis, not bronchiolitis)."""
    if len(sound) < MIN_PHONEMES:
        return None
    best: tuple[float, str] | None = None
    key = sound_key(spelled)
    for term in corrector.terms:
        said = corrector.sounds.get(term.word)
        if said is None or (english and len(said) < shortest):
            continue
        if relative_distance(key, term.key, PREFILTER_KEY_DISTANCE) is None:
            continue  # a cheap first look: far apart even in sound keys
        longest = max(len(said), len(sound))
        if abs(len(said) - len(sound)) > limit * longest:
            continue
        distance = relative_phoneme_distance(sound, said, limit=limit)
        if distance > limit:
            continue
        spelling = edit_distance(spelled, term.word) / max(len(spelled), len(term.word))
        if not english and spelling > MAX_SPELLING_DISTANCE:
            continue
        if (
            common_prefix(spelled, term.word) >= MIN_SHARED_STEM
            and spelled != term.word  # "cardio pulmonary": the term itself, merged
            and (english or (words == 1 and abs(len(spelled) - len(term.word)) >= 2))
        ):
            continue  # another form of the term ("enlargement", "reconstruction"): as said
        score = distance + SPELLING_WEIGHT * spelling
        if best is None or score < best[0]:
            best = (score, term.word)
    return best


def _may_write(term: str, spelled: str, words: int) -> bool:
    """A word of :data:`app.speech.vocabulary.MUST_BE_HEARD` (a negation, a side, a change,
    "normal") is written only for one heard word spelt nearly as it is ("unchange" ->
    unchanged), never for a word that merely sounds a bit like it ("Nerema" -> normal)."""
    if term not in MUST_BE_HEARD:
        return True
    return words == 1 and common_prefix(term, spelled) >= len(term) - MUST_BE_HEARD_SLACK


def _stem(word: str) -> str:
    """A word without a plural ending, so "lesion" and "lesions" go together."""
    for suffix in ("es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= MIN_STEM:
            return word[: -len(suffix)]
    return word


def common_prefix(first: str, second: str) -> int:
    """How many leading letters the two words share."""
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def _inflection_of(word: str, words: frozenset[str]) -> bool:
    if word in words:
        return True
    for suffix, replacements in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            if any(stem + ending in words for ending in replacements):
                return True
    return False


SPLIT_PREFIXES = (
    "non", "sub", "hydro", "peri", "para", "inter", "intra", "cardio", "multi", "micro", "semi",
    "hyper", "hypo", "pan", "pre", "extra", "uni", "bi", "contra", "supra", "retro", "endo",
    "broncho", "centri", "lymph", "gall", "pace", "main", "air",
)  # fmt: skip
"""Prefixes after which Whisper often puts a space or a hyphen ("non-contrast", "hydro
pneumothorax", "gall bladder"): a prefix and the next word that together spell a term are
that term.  Bound prefixes and the first halves of compound terms only, so that no two words
that stand on their own ("ground glass", "part solid") are glued."""
_PREFIXED = re.compile(rf"\b({'|'.join(SPLIT_PREFIXES)})(?:\s+|-)([A-Za-z]+)\b", re.IGNORECASE)


def join_prefixes(text: str, terms: Iterable[SoundedWord]) -> str:
    """``text`` with a prefix and the word after it joined where the two spell a term of
    ``terms`` ("Non-contrast CT" -> "Noncontrast CT", "hydro pneumothorax" ->
    hydropneumothorax)."""
    words = {term.word for term in terms}

    def joined(match: re.Match[str]) -> str:
        prefix, rest = match.group(1), match.group(2)
        whole = prefix + rest.lower()
        return whole if whole.lower() in words else match.group(0)

    return _PREFIXED.sub(joined, text)


def _adjacent(span: Sequence[re.Match[str]]) -> bool:
    """Words separated by spaces only (no punctuation between them)."""
    return all(
        span[i].string[span[i].end() : span[i + 1].start()].strip() == ""
        for i in range(len(span) - 1)
    )


def _cased(word: str, replaced: re.Match[str]) -> str:
    """Capitalized where a sentence starts (Whisper also capitalizes names it imagines)."""
    before = replaced.string[: replaced.start()].rstrip()
    starts_sentence = not before or before[-1] in ".?!:"
    return word[:1].upper() + word[1:] if starts_sentence else word


@cache
def chest_corrector() -> PhoneticCorrector:
    """The corrector for chest CT dictations (built once per process), comparing
    pronunciations where espeak-ng is installed."""
    from app.speech.context import read_corpus

    corpus = {word for line in read_corpus() for word in re.findall(r"[a-z]+", line.lower())}
    return PhoneticCorrector.build(
        CHEST_CT_VOCABULARY,
        common_words(),
        expected=corpus,
        sentences=[*read_corpus(), *vocabulary_groups()],
        pronounce=True,
    )
