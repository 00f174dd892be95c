"""Lung-RADS v2022 baseline categories and Fleischner 2017 size bands."""

from __future__ import annotations

import pytest

from app.reporting.guidelines import fleischner, is_screening_order, lung_rads
from app.reporting.schema import Nodule


@pytest.mark.parametrize(
    ("diameter", "kind", "category"),
    [
        (4.0, "solid", "2"),
        (5.9, "solid", "2"),
        (6.0, "solid", "3"),
        (7.9, "solid", "3"),
        (8.0, "solid", "4A"),
        (14.9, "solid", "4A"),
        (15.0, "solid", "4B"),
        (5.0, "part-solid", "2"),
        (12.0, "part-solid", "3"),
        (29.0, "ground-glass", "2"),
        (31.0, "ground-glass", "3"),
    ],
)
def test_lung_rads_baseline_categories(diameter: float, kind: str, category: str) -> None:
    assert lung_rads([Nodule(diameter_mm=diameter, kind=kind)]).category == category


def test_lung_rads_takes_the_most_suspicious_nodule() -> None:
    nodules = [Nodule(diameter_mm=20, kind="ground-glass"), Nodule(diameter_mm=9, kind="solid")]
    suggestion = lung_rads(nodules)
    assert suggestion.category == "4A" and "9.0 mm solid" in suggestion.based_on


def test_lung_rads_without_nodules_is_1() -> None:
    assert lung_rads([]).category == "1"


@pytest.mark.parametrize(
    ("diameter", "kind", "count", "expected"),
    [
        (4, "solid", 1, "no routine follow-up"),
        (7, "solid", 1, "CT at 6-12 months"),
        (7, "solid", 2, "CT at 3-6 months"),
        (12, "solid", 1, "PET/CT"),
        (4, "ground-glass", 1, "No routine follow-up"),
        (8, "ground-glass", 1, "every 2 years"),
        (8, "part-solid", 1, "annual CT for 5 years"),
        (4, "ground-glass", 3, "2 and 4 years"),
    ],
)
def test_fleischner_bands(diameter: float, kind: str, count: int, expected: str) -> None:
    nodules = [Nodule(diameter_mm=diameter, kind=kind)] * count
    suggestion = fleischner(nodules)
    assert suggestion is not None and expected in suggestion.text


def test_screening_orders_are_recognised() -> None:
    assert is_screening_order("CT LOW DOSE LUNG CANCER SCREENING", None)
    assert is_screening_order(None, "annual LDCT")
    assert not is_screening_order("CT chest with contrast", "cough")
