"""Whisper's words to clean report text: corrections, measurements, dictation commands, sections.

The steps, in order:

1. the lexicon (:mod:`app.speech.lexicon`) fixes the confusions Whisper still
   makes with radiology words ("plural effusion" -> "pleural effusion"), and in
   a chest dictation words Whisper invented become the chest CT term they sound
   like (:mod:`app.speech.phonetic`: "stickulated" -> "spiculated"), and
   English words the sentence around them rules out become the chest CT word it
   calls for (:mod:`app.speech.context`: "the ascending order" -> "the
   ascending aorta"), and last English words no report uses that sound almost
   like a term become it ("a river lesion" -> "a liver lesion");
2. spoken measurements become report notation ("six by four millimeters" ->
   "6 x 4 mm", see :mod:`app.speech.numbers`);
3. spoken punctuation and commands act ("period", "comma", "new paragraph",
   "next section", "scratch that"); Whisper's own punctuation next to a spoken
   mark gives way to it;
4. section words said at the start of a sentence ("Findings.", "Impression:")
   start report sections; text before any section word belongs to findings;
5. sentences start with a capital letter.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from app.speech.context import ContextCorrector, chest_context_corrector
from app.speech.lexicon import CORRECTIONS, Correction, has_context
from app.speech.numbers import Measurement, match_measurement, split_spoken_number
from app.speech.phonetic import PhoneticCorrector, chest_corrector

T = TypeVar("T")

DEFAULT_SECTION = "findings"
SECTION_ORDER = (
    "indication",
    "technique",
    "comparison",
    "findings",
    "impression",
    "recommendations",
)
SECTION_LABELS = {
    "indication": "Indication",
    "technique": "Technique",
    "comparison": "Comparison",
    "findings": "Findings",
    "impression": "Impression",
    "recommendations": "Recommendations",
}
# Words that, said at the start of a sentence and followed by a pause, open a section.
SECTION_WORDS: dict[tuple[str, ...], str] = {
    ("indication",): "indication",
    ("indications",): "indication",
    ("clinical", "history"): "indication",
    ("clinical", "information"): "indication",
    ("history",): "indication",
    ("technique",): "technique",
    ("comparison",): "comparison",
    ("comparisons",): "comparison",
    ("findings",): "findings",
    ("finding",): "findings",  # tiny.en drops the s of a heading said alone
    ("impression",): "impression",
    ("impressions",): "impression",
    ("conclusion",): "impression",
    ("recommendation",): "recommendations",
    ("recommendations",): "recommendations",
}
HEARD_HEADINGS = {"finding": "findings"}
"""Headings as Whisper may write them (left), and as the report writes them."""
SPOKEN_MARKS: dict[tuple[str, ...], str] = {
    ("period",): ".",
    ("full", "stop"): ".",
    ("comma",): ",",
    ("semicolon",): ";",
    ("semi", "colon"): ";",
    ("question", "mark"): "?",
    ("open", "parenthesis"): "(",
    ("open", "paren"): "(",
    ("open", "bracket"): "(",
    ("close", "parenthesis"): ")",
    ("close", "paren"): ")",
    ("close", "bracket"): ")",
}
# "colon" is also the bowel: it is punctuation only right after a section word.
HEADING_COLON = ("colon",)
# "period" is a word after these ("a period of", "the follow-up period").
PERIOD_AS_WORD_BEFORE = frozenset(
    {"a", "the", "this", "that", "short", "long", "follow-up", "time"}
)
PERIOD_AS_WORD_AFTER = frozenset({"of"})


class Command(enum.Enum):
    NEW_PARAGRAPH = "new paragraph"
    NEW_LINE = "new line"
    NEXT_SECTION = "next section"
    SCRATCH_THAT = "scratch that"


COMMANDS: dict[tuple[str, ...], Command] = {
    ("new", "paragraph"): Command.NEW_PARAGRAPH,
    ("next", "paragraph"): Command.NEW_PARAGRAPH,
    ("new", "line"): Command.NEW_LINE,
    ("next", "line"): Command.NEW_LINE,
    ("next", "section"): Command.NEXT_SECTION,
    ("scratch", "that"): Command.SCRATCH_THAT,
    ("delete", "that"): Command.SCRATCH_THAT,
    ("strike", "that"): Command.SCRATCH_THAT,
}

SENTENCE_END = frozenset(".?!")
AUTO_MARKS = frozenset(".,;:?!")
CLOSING = frozenset(".,;:?!)%")
LOWERING_MARKS = frozenset(",;")
TOKEN = re.compile(
    r"(?P<number>\d+(?:\.\d+)?)"
    r"|(?P<word>[^\W\d_]+(?:['’][^\W\d_]+)*(?:-[^\W_]+)*)"
    r"|(?P<mark>[.,:;?!()])"
    r"|(?P<other>\S)"
)


class Kind(enum.Enum):
    WORD = "word"
    MARK = "mark"
    OTHER = "other"


TOKEN_KINDS = {"number": Kind.WORD, "word": Kind.WORD, "mark": Kind.MARK}


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    kind: Kind
    glued: bool = False  # no space before it in the source

    @property
    def lower(self) -> str:
        return self.text.lower()


@dataclass(frozen=True, slots=True)
class CorrectedText:
    """Post-processed dictation: the whole text and its report sections."""

    text: str
    sections: Mapping[str, str]


def correct_transcript(
    raw_text: str,
    *,
    corrections: Sequence[Correction] = CORRECTIONS,
    phonetic: PhoneticCorrector | None = None,
    context: ContextCorrector | None = None,
) -> CorrectedText:
    """Turn Whisper's raw text into report text and sections (see the module docstring)."""
    fixed = apply_lexicon(raw_text, corrections)
    if has_context(fixed):
        phonetic = phonetic or chest_corrector()
        fixed = phonetic.correct(fixed)
        fixed = (context or chest_context_corrector()).correct(fixed)
        fixed = phonetic.correct_english(fixed)
    tokens = convert_measurements(tokenize(fixed))
    return _Assembler().run(tokens)


def report_logprob(raw_text: str) -> float:
    """How likely the chest CT language model finds Whisper's text once the lexicon and
    phonetic corrections are made (so what they fix anyway costs nothing)."""
    fixed = apply_lexicon(raw_text, CORRECTIONS)
    if has_context(fixed):
        fixed = chest_corrector().correct(fixed)
    return chest_context_corrector().model.text_logprob(fixed)


def apply_lexicon(text: str, corrections: Sequence[Correction]) -> str:
    context = has_context(text)
    for correction in corrections:
        if correction.needs_context and not context:
            continue
        text = correction.pattern.sub(partial(_keep_case, right=correction.right), text)
    return text


def _keep_case(match: re.Match[str], *, right: str) -> str:
    """A capital stays where a sentence starts (Whisper also capitalizes names it imagines)."""
    before = match.string[: match.start()].rstrip()
    starts_sentence = not before or before[-1] in ".?!:"
    if starts_sentence and match.group(0)[:1].isupper() and right[:1].islower():
        return right[:1].upper() + right[1:]
    return right


def tokenize(text: str) -> list[Token]:
    tokens = []
    previous_end = -1
    for match in TOKEN.finditer(text):
        group = match.lastgroup
        kind = TOKEN_KINDS.get(group or "", Kind.OTHER)
        tokens.append(Token(match.group(0), kind, glued=match.start() == previous_end))
        previous_end = match.end()
    return tokens


def convert_measurements(tokens: Sequence[Token]) -> list[Token]:
    words = [token.lower for token in tokens]
    out: list[Token] = []
    index = 0
    while index < len(tokens):
        measurement = _hyphenated_measurement(tokens, words, index) or match_measurement(
            words, index
        )
        if measurement is None:
            out.append(tokens[index])
            index += 1
            continue
        out.append(Token(measurement.text, Kind.WORD, glued=tokens[index].glued))
        index = measurement.end
    return out


def _hyphenated_measurement(
    tokens: Sequence[Token], words: Sequence[str], index: int
) -> Measurement | None:
    """A measurement that starts with a word Whisper hyphenated: "two-by-one point five cm"."""
    parts = split_spoken_number(words[index]) if tokens[index].kind is Kind.WORD else []
    if len(parts) < 2:
        return None
    found = match_measurement([*parts, *words[index + 1 :]], 0)
    if found is None or found.end < len(parts):
        return None
    return Measurement(text=found.text, start=index, end=index + 1 + found.end - len(parts))


class ItemKind(enum.Enum):
    WORD = "word"
    MARK = "mark"
    BREAK = "break"
    HEADING = "heading"


@dataclass(slots=True)
class _Item:
    kind: ItemKind
    text: str
    section: str
    glued: bool = False


@dataclass(slots=True)
class _Assembler:
    items: list[_Item] = field(default_factory=list)
    section: str = DEFAULT_SECTION
    lower_next: bool = False

    def run(self, tokens: Sequence[Token]) -> CorrectedText:
        index = 0
        while index < len(tokens):
            index = self._step(tokens, index)
        return self._render()

    # -- one token (or phrase) at a time ------------------------------------------------
    def _step(self, tokens: Sequence[Token], index: int) -> int:
        token = tokens[index]
        if token.kind is Kind.MARK:
            self._add(ItemKind.MARK, token.text, glued=True)
            return index + 1
        if token.kind is Kind.OTHER:
            self._add(
                ItemKind.MARK if token.text == "%" else ItemKind.WORD, token.text, token.glued
            )
            return index + 1
        heading = _phrase(tokens, index, SECTION_WORDS)
        if heading is not None and self._heading_here(token) and _pause_after(tokens, heading[1]):
            section, end = heading
            return self._open_section(section, _spoken_label(tokens[index:end]), tokens, end)
        command = _phrase(tokens, index, COMMANDS)
        if command is not None:
            return self._command(command[0], tokens, command[1])
        mark = _phrase(tokens, index, SPOKEN_MARKS)
        if mark is not None and not _period_is_word(tokens, index, mark[1]):
            return self._spoken_mark(mark[0], tokens, mark[1])
        text = token.text
        if self.lower_next and text[:1].isupper() and text[1:].islower():
            text = text.lower()
        self.lower_next = False
        self._add(ItemKind.WORD, text, token.glued)
        return index + 1

    def _add(self, kind: ItemKind, text: str, glued: bool = False) -> None:
        self.items.append(_Item(kind, text, self.section, glued))

    def _heading_here(self, token: Token) -> bool:
        """At a sentence start, or capitalized mid-sentence (Whisper missed the pause)."""
        return self._at_sentence_start() or token.text[:1].isupper()

    def _at_sentence_start(self) -> bool:
        for item in reversed(self.items):
            if item.kind is ItemKind.MARK and item.text in ("(", ")"):
                continue
            return item.kind is not ItemKind.WORD and (
                item.kind is not ItemKind.MARK or item.text in SENTENCE_END or item.text == ":"
            )
        return True

    def _open_section(self, section: str, label: str, tokens: Sequence[Token], index: int) -> int:
        self._close_sentence()
        self.section = section
        self._add(ItemKind.HEADING, label)
        colon = _phrase(tokens, index, {HEADING_COLON: True})
        if colon is not None:
            index = colon[1]
        return _skip_marks(tokens, index)

    def _command(self, command: Command, tokens: Sequence[Token], index: int) -> int:
        if command is Command.SCRATCH_THAT:
            self._scratch()
        elif command is Command.NEXT_SECTION:
            position = SECTION_ORDER.index(self.section)
            if position + 1 < len(SECTION_ORDER):
                self._close_sentence()
                self.section = SECTION_ORDER[position + 1]
                self._add(ItemKind.HEADING, SECTION_LABELS[self.section])
        else:
            self._close_sentence()
            self._add(ItemKind.BREAK, "\n\n" if command is Command.NEW_PARAGRAPH else "\n")
        self.lower_next = False
        return _skip_marks(tokens, index)

    def _spoken_mark(self, mark: str, tokens: Sequence[Token], index: int) -> int:
        removed = self._drop_trailing_marks() if mark != "(" else ""
        if mark != "(" and not self._ends_with_text():
            return _skip_marks(tokens, index)  # nothing to punctuate
        self._add(ItemKind.MARK, mark, glued=mark != "(")
        if mark == "(":
            return index
        after = _skip_marks(tokens, index)
        skipped = {token.text for token in tokens[index:after]}
        ended = bool(removed and removed in SENTENCE_END) or bool(skipped & SENTENCE_END)
        self.lower_next = mark in LOWERING_MARKS and ended
        return after

    def _drop_trailing_marks(self) -> str:
        """Remove Whisper's marks at the end (a spoken mark or heading replaces them)."""
        removed = ""
        while self.items and _is_mark(self.items[-1], AUTO_MARKS):
            removed = self.items.pop().text
        return removed

    def _ends_with_text(self) -> bool:
        last = self.items[-1] if self.items else None
        return last is not None and (last.kind is ItemKind.WORD or _is_mark(last, ")%"))

    def _close_sentence(self) -> None:
        """End the sentence being dictated with a period (before a heading or paragraph)."""
        while self.items and _is_mark(self.items[-1], ",;:"):
            self.items.pop()
        if self._ends_with_text():
            self._add(ItemKind.MARK, ".", glued=True)

    def _scratch(self) -> None:
        """Delete the sentence being dictated, or the last one if it was finished."""
        while self.items and self.items[-1].kind in (ItemKind.MARK, ItemKind.BREAK):
            self.items.pop()
        while self.items:
            last = self.items[-1]
            if last.kind is ItemKind.HEADING or last.kind is ItemKind.BREAK:
                break
            if last.kind is ItemKind.MARK and last.text in SENTENCE_END:
                break
            self.items.pop()

    # -- output -----------------------------------------------------------------------
    def _render(self) -> CorrectedText:
        self._close_sentence()
        _capitalize_sentences(self.items)
        text = _join(self.items, with_headings=True)
        sections: dict[str, str] = {}
        for name in _sections_in_order(self.items):
            body = _join([item for item in self.items if item.section == name], with_headings=False)
            if body:
                sections[name] = body
        return CorrectedText(text=text, sections=sections)


def _phrase(
    tokens: Sequence[Token], index: int, table: Mapping[tuple[str, ...], T]
) -> tuple[T, int] | None:
    """The longest phrase of consecutive words at ``index`` that is a key of ``table``."""
    for length in (2, 1):
        words = tokens[index : index + length]
        if len(words) < length or any(token.kind is not Kind.WORD for token in words):
            continue
        key = tuple(token.lower.strip("'’") for token in words)
        if key in table:
            return table[key], index + length
    return None


def _pause_after(tokens: Sequence[Token], index: int) -> bool:
    """A section word is a heading if a pause (a mark, "colon", the end) or a sentence follows."""
    if index >= len(tokens):
        return True
    following = tokens[index]
    if following.kind is Kind.MARK:
        return following.text in ".,:;-"
    if following.kind is Kind.OTHER:
        return following.text in "-–—"
    if following.lower in ("colon", "period"):
        return True
    return following.text[:1].isupper() and following.text != "I"


def _period_is_word(tokens: Sequence[Token], index: int, end: int) -> bool:
    if tokens[index].lower != "period":
        return False
    before = tokens[index - 1].lower if index > 0 else ""
    after = tokens[end].lower if end < len(tokens) else ""
    return before in PERIOD_AS_WORD_BEFORE or after in PERIOD_AS_WORD_AFTER


def _is_mark(item: _Item, marks: Iterable[str]) -> bool:
    return item.kind is ItemKind.MARK and item.text in marks


def _is_auto_mark(token: Token) -> bool:
    return token.kind is Kind.MARK and token.text in AUTO_MARKS


def _skip_marks(tokens: Sequence[Token], index: int) -> int:
    while index < len(tokens) and _is_auto_mark(tokens[index]):
        index += 1
    return index


def _spoken_label(tokens: Sequence[Token]) -> str:
    words = " ".join(token.lower for token in tokens)
    words = HEARD_HEADINGS.get(words, words)
    return words[:1].upper() + words[1:]


def _capitalize_sentences(items: list[_Item]) -> None:
    start = True
    for item in items:
        if item.kind is ItemKind.WORD:
            if start and item.text[:1].islower():
                item.text = item.text[:1].upper() + item.text[1:]
            start = False
        elif item.kind is ItemKind.MARK:
            if item.text in SENTENCE_END:
                start = True
        else:
            start = True


def _sections_in_order(items: Iterable[_Item]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item.kind is not ItemKind.HEADING and item.section not in seen:
            seen.append(item.section)
    return seen


def _join(items: Sequence[_Item], *, with_headings: bool) -> str:
    parts: list[str] = []
    previous: _Item | None = None
    for item in items:
        if item.kind is ItemKind.HEADING:
            if not with_headings:
                continue
            parts.append(("\n\n" if parts else "") + item.text + ":")
            previous = item
            continue
        if item.kind is ItemKind.BREAK:
            _strip_end(parts)
            if parts:
                parts.append(item.text)
            previous = item
            continue
        if parts and not _no_space_before(item, previous):
            parts.append(" ")
        parts.append(item.text)
        previous = item
    text = "".join(parts).strip()
    return re.sub(r"[ \t]+\n", "\n", text)


def _strip_end(parts: list[str]) -> None:
    while parts and parts[-1] == " ":
        parts.pop()


def _no_space_before(item: _Item, previous: _Item | None) -> bool:
    if previous is None or previous.kind is ItemKind.BREAK:
        return True
    if item.kind is ItemKind.MARK and item.text in CLOSING:
        return True
    if previous.kind is ItemKind.MARK and previous.text == "(":
        return True
    return item.glued and item.kind is ItemKind.WORD and previous.kind is ItemKind.WORD
