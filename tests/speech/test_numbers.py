"""Spoken numbers and measurements as a report writes them."""

from __future__ import annotations

import pytest

from app.speech.numbers import match_measurement, parse_number


def _words(text: str) -> list[str]:
    return text.lower().split()


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        ("zero", "0"),
        ("one", "1"),
        ("six", "6"),
        ("twelve", "12"),
        ("nineteen", "19"),
        ("twenty", "20"),
        ("twenty two", "22"),
        ("twenty-two", "22"),
        ("ninety nine", "99"),
        ("one hundred", "100"),
        ("one hundred twenty", "120"),
        ("two hundred and five", "205"),
        ("one point five", "1.5"),
        ("point five", "0.5"),
        ("zero point seven five", "0.75"),
        ("three point zero", "3.0"),
        ("6", "6"),
        ("1.5", "1.5"),
    ],
)
def test_parse_number(spoken: str, written: str) -> None:
    words = _words(spoken)
    parsed = parse_number(words, 0)
    assert parsed is not None
    assert parsed.text == written
    assert parsed.end == len(words)


@pytest.mark.parametrize("spoken", ["nodule", "point", "a hundred", "and"])
def test_not_a_number(spoken: str) -> None:
    assert parse_number(_words(spoken), 0) is None


def test_number_stops_before_the_next_word() -> None:
    parsed = parse_number(_words("six nodules"), 0)
    assert parsed is not None
    assert (parsed.text, parsed.end) == ("6", 1)


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        ("six millimeter", "6 mm"),
        ("six millimeters", "6 mm"),
        ("6 millimeters", "6 mm"),
        ("6 mm", "6 mm"),
        ("one point five centimeters", "1.5 cm"),
        ("point five centimeter", "0.5 cm"),
        ("six by four millimeters", "6 x 4 mm"),
        ("6 x 4 mm", "6 x 4 mm"),
        ("three by two by one centimeters", "3 x 2 x 1 cm"),
        ("forty five hounsfield units", "45 HU"),
        ("minus ten hounsfield units", "-10 HU"),
        ("negative twenty HU", "-20 HU"),
        ("twenty cc", "20 cc"),
        ("fifteen cubic centimeters", "15 cc"),
        ("five hundred milliliters", "500 mL"),
        ("fifty percent", "50%"),
        ("twelve months", "12 months"),
        ("six , millimeter", "6 mm"),
        ("6 - mm", "6 mm"),
    ],
)
def test_measurements(spoken: str, written: str) -> None:
    words = _words(spoken)
    found = match_measurement(words, 0)
    assert found is not None
    assert found.text == written
    assert found.end == len(words)


@pytest.mark.parametrize(
    "spoken",
    [
        "two nodules",
        "six by",
        "by six mm",
        "negative six months",
        "minus for hounsfield",
        "increased by 2",
        "millimeter",
    ],
)
def test_not_a_measurement(spoken: str) -> None:
    assert match_measurement(_words(spoken), 0) is None


def test_a_dangling_by_ends_the_measurement() -> None:
    """'6 by CT' is no dimension: the number stands alone (and without a unit, no match)."""
    assert match_measurement(_words("six by ct"), 0) is None
    found = match_measurement(_words("six mm by ct"), 0)
    assert found is not None
    assert (found.text, found.end) == ("6 mm", 2)
