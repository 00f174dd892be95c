"""Spoken measurements to report notation: "six by four millimeters" -> "6 x 4 mm".

Only the numbers radiologists dictate are handled: zero to ninety-nine, hundreds
("one hundred twenty"), decimals ("one point five", "point five"), negatives
before Hounsfield units ("minus ten Hounsfield units"), and dimensions joined by
"by" or "x".  A number is written as digits only where a unit follows it (length,
volume, density, percent, time), so "two nodules" stays as said.  Works on word
tokens (see :mod:`app.speech.postprocess`), whatever mix of words and digits
Whisper wrote.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

ONES: dict[str, int] = {
    name: value
    for value, name in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
}
TENS: dict[str, int] = {
    name: 10 * value
    for value, name in enumerate(
        ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], start=2
    )
}
HUNDRED = "hundred"
POINT = "point"
DIMENSION_JOINERS = frozenset({"by", "x", "times"})
NEGATIVE_WORDS = frozenset({"minus", "negative"})
MAX_DIMENSIONS = 3
UNIT_SEPARATORS = frozenset({"-", ","})
DIGITS = re.compile(r"^\d+(?:\.\d+)?$")
SPOKEN_NUMBER_PARTS = frozenset([*ONES, *TENS, HUNDRED, POINT, *DIMENSION_JOINERS])
"""Words a hyphenated spoken measurement may be made of ("two-by-one", "one-point-five")."""

# Unit phrases (lower-case word sequences) and how a report writes them.
UNITS: dict[tuple[str, ...], str] = {
    **{(word,): "mm" for word in ("mm", "millimeter", "millimeters", "millimetre", "millimetres")},
    **{(word,): "cm" for word in ("cm", "centimeter", "centimeters", "centimetre", "centimetres")},
    ("cc",): "cc",
    ("ccs",): "cc",
    ("cubic", "centimeters"): "cc",
    ("cubic", "centimeter"): "cc",
    **{(word,): "mL" for word in ("ml", "milliliter", "milliliters", "millilitre", "millilitres")},
    ("hu",): "HU",
    ("hounsfield", "units"): "HU",
    ("hounsfield", "unit"): "HU",
    ("hounsfield",): "HU",
    ("percent",): "%",
    ("per", "cent"): "%",
}
# Time units keep their word; only the number before them becomes digits.
TIME_UNITS = frozenset(
    [
        "day",
        "days",
        "week",
        "weeks",
        "month",
        "months",
        "year",
        "years",
        "hour",
        "hours",
        "minute",
        "minutes",
    ]
)
DENSITY_UNIT = "HU"


def split_spoken_number(word: str) -> list[str]:
    """``word``'s parts if Whisper hyphenated a spoken number ("two-by-one"), else ``[word]``."""
    parts = word.lower().split("-")
    if len(parts) > 1 and all(part in SPOKEN_NUMBER_PARTS for part in parts):
        return parts
    return [word]


@dataclass(frozen=True, slots=True)
class ParsedNumber:
    text: str  # as a report writes it: "6", "1.5", "0.5", "120"
    end: int  # index after the last word used


def parse_number(words: Sequence[str], start: int) -> ParsedNumber | None:
    """Read one number starting at ``words[start]`` (lower-case words or digit strings)."""
    if start >= len(words):
        return None
    word = words[start]
    if DIGITS.match(word):
        return ParsedNumber(text=_tidy_digits(word), end=start + 1)
    integer = _parse_integer(words, start)
    if integer is None:
        if word == POINT:
            fraction = _parse_fraction(words, start + 1)
            if fraction is not None:
                digits, end = fraction
                return ParsedNumber(text=f"0.{digits}", end=end)
        return None
    value, end = integer
    if end < len(words) and words[end] == POINT:
        fraction = _parse_fraction(words, end + 1)
        if fraction is not None:
            digits, end = fraction
            return ParsedNumber(text=f"{value}.{digits}", end=end)
    return ParsedNumber(text=str(value), end=end)


def _tidy_digits(text: str) -> str:
    return "0" + text if text.startswith(".") else text


def _below_hundred(words: Sequence[str], index: int) -> tuple[int, int] | None:
    if index >= len(words):
        return None
    word = words[index]
    if "-" in word:  # "twenty-two"
        head, _, tail = word.partition("-")
        if head in TENS and tail in ONES and 0 < ONES[tail] < 10:
            return TENS[head] + ONES[tail], index + 1
        return None
    if word in ONES:
        return ONES[word], index + 1
    if word in TENS:
        tens = TENS[word]
        if index + 1 < len(words) and 0 < ONES.get(words[index + 1], 0) < 10:
            return tens + ONES[words[index + 1]], index + 2
        return tens, index + 1
    return None


def _parse_integer(words: Sequence[str], start: int) -> tuple[int, int] | None:
    first = _below_hundred(words, start)
    if first is None:
        return None
    value, end = first
    if end < len(words) and words[end] == HUNDRED and 0 < value < 10:
        value *= 100
        end += 1
        rest_start = end + 1 if end < len(words) and words[end] == "and" else end
        rest = _below_hundred(words, rest_start)
        if rest is not None and rest[0] > 0:
            value += rest[0]
            end = rest[1]
    return value, end


def _parse_fraction(words: Sequence[str], start: int) -> tuple[str, int] | None:
    digits = []
    index = start
    while index < len(words) and ONES.get(words[index], 10) < 10:
        digits.append(str(ONES[words[index]]))
        index += 1
    if not digits and index < len(words) and words[index].isdigit():
        return words[index], index + 1
    return ("".join(digits), index) if digits else None


def match_unit(words: Sequence[str], start: int) -> tuple[str, int] | None:
    """The unit phrase at ``words[start]`` as a report writes it, and where it ends."""
    for length in (2, 1):
        phrase = tuple(words[start : start + length])
        if len(phrase) == length and phrase in UNITS:
            return UNITS[phrase], start + length
    if start < len(words) and words[start] in TIME_UNITS:
        return words[start], start + 1
    return None


@dataclass(frozen=True, slots=True)
class Measurement:
    text: str  # "6 x 4 mm", "-10 HU", "12 months", "50%"
    start: int
    end: int


def match_measurement(words: Sequence[str], start: int) -> Measurement | None:
    """A spoken measurement at ``words[start]``: number(s) then a unit; else None."""
    index = start
    sign = ""
    if index < len(words) and words[index] in NEGATIVE_WORDS:
        sign = "-"
        index += 1
    numbers: list[str] = []
    while True:
        parsed = parse_number(words, index)
        if parsed is None:
            return None
        numbers.append(parsed.text)
        index = parsed.end
        joined = (
            len(numbers) < MAX_DIMENSIONS
            and index + 1 < len(words)
            and words[index] in DIMENSION_JOINERS
            and parse_number(words, index + 1) is not None
        )
        if not joined:
            break
        index += 1
    if index < len(words) and words[index] in UNIT_SEPARATORS:  # "6-mm", "six, millimeter"
        index += 1
    unit = match_unit(words, index)
    if unit is None:
        return None
    unit_text, end = unit
    if sign and unit_text != DENSITY_UNIT:
        return None  # "negative six months" is not a measurement
    value = " x ".join(numbers)
    if unit_text == "%":
        return Measurement(text=f"{sign}{value}%", start=start, end=end)
    return Measurement(text=f"{sign}{value} {unit_text}", start=start, end=end)
