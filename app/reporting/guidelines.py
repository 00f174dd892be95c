"""Guideline follow-up suggestions for lung nodules.

- Screening orders: a suggested Lung-RADS v2022 category from the most
  suspicious nodule, with baseline rules only (no priors are available).
- Other orders: Fleischner Society 2017 follow-up for incidental nodules,
  given for low- and high-risk patients since the model does not know the risk.

These are suggestions for the radiologist to accept; they never enter the
report text by themselves, and they never advise medication.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.reporting.schema import Nodule, Suggestion

LUNG_RADS = "Lung-RADS v2022 (baseline)"
FLEISCHNER = "Fleischner Society 2017"

SOLID = "solid"
PART_SOLID = "part-solid"
GROUND_GLASS = "ground-glass"

_LUNG_RADS_MANAGEMENT = {
    "1": "Continue annual screening with LDCT in 12 months.",
    "2": "Continue annual screening with LDCT in 12 months.",
    "3": "LDCT in 6 months.",
    "4A": "LDCT in 3 months; PET/CT may be considered if there is a solid component "
    "of 8 mm or more.",
    "4B": "Diagnostic chest CT with or without contrast; PET/CT and/or tissue sampling "
    "depending on the probability of malignancy and comorbidities.",
}
_LUNG_RADS_RANK = {"1": 0, "2": 1, "3": 2, "4A": 3, "4B": 4}


def is_screening_order(procedure_text: str | None, reason_for_exam: str | None) -> bool:
    text = f"{procedure_text or ''} {reason_for_exam or ''}".lower()
    return any(
        cue in text for cue in ("screening", "ldct", "low dose", "low-dose", "lung cancer screen")
    )


def _lung_rads_category(nodule: Nodule) -> tuple[str, str]:
    """Baseline Lung-RADS category of one nodule, with a note on what it rests on."""
    size = round(nodule.diameter_mm, 1)
    if nodule.kind == GROUND_GLASS:
        return ("2", "") if size < 30 else ("3", "")
    if nodule.kind == PART_SOLID:
        if size < 6:
            return "2", ""
        # The category of a part-solid nodule of 6 mm or more depends on its solid
        # component, which the model does not measure: suggest the lowest it can be.
        return "3", " (at least; the solid component was not measured by the model)"
    if size < 6:
        return "2", ""
    if size < 8:
        return "3", ""
    if size < 15:
        return "4A", ""
    return "4B", ""


def lung_rads(nodules: Sequence[Nodule]) -> Suggestion:
    if not nodules:
        return Suggestion(
            guideline=LUNG_RADS,
            category="1",
            text="Lung-RADS 1: no lung nodules detected by the drafting model. "
            + _LUNG_RADS_MANAGEMENT["1"],
            based_on="no nodule detected",
        )
    graded = [(nodule, *_lung_rads_category(nodule)) for nodule in nodules]
    nodule, category, note = max(
        graded, key=lambda item: (_LUNG_RADS_RANK[item[1]], item[0].diameter_mm)
    )
    where = f" in the {nodule.lobe}" if nodule.lobe else ""
    based_on = f"{nodule.diameter_mm:.1f} mm {nodule.kind} nodule{where}"
    return Suggestion(
        guideline=LUNG_RADS,
        category=category,
        text=f"Lung-RADS {category}{note}: {_LUNG_RADS_MANAGEMENT[category]}",
        based_on=based_on,
    )


def _fleischner_solid(size: float, multiple: bool) -> str:
    if size < 6:
        return "Low risk: no routine follow-up. High risk: optional CT at 12 months."
    if size <= 8:
        if multiple:
            return (
                "Low risk: CT at 3-6 months, then consider CT at 18-24 months. "
                "High risk: CT at 3-6 months, then at 18-24 months."
            )
        return (
            "Low risk: CT at 6-12 months, then consider CT at 18-24 months. "
            "High risk: CT at 6-12 months, then at 18-24 months."
        )
    if multiple:
        return "CT at 3-6 months, then consider CT at 18-24 months (low and high risk)."
    return "Consider CT at 3 months, PET/CT, or tissue sampling (low and high risk)."


def _fleischner_subsolid(size: float, kind: str, multiple: bool) -> str:
    if multiple:
        if size < 6:
            return "CT at 3-6 months; if stable, consider CT at 2 and 4 years."
        return "CT at 3-6 months; further management based on the most suspicious nodule."
    if size < 6:
        return "No routine follow-up."
    if kind == GROUND_GLASS:
        return "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years."
    return (
        "CT at 3-6 months to confirm persistence; if unchanged and the solid component "
        "remains under 6 mm, annual CT for 5 years."
    )


def fleischner(nodules: Sequence[Nodule]) -> Suggestion | None:
    """Fleischner 2017 follow-up for the largest incidental nodule; None without nodules."""
    if not nodules:
        return None
    nodule = max(nodules, key=lambda n: n.diameter_mm)
    multiple = len(nodules) > 1
    if nodule.kind == SOLID:
        advice = _fleischner_solid(nodule.diameter_mm, multiple)
    else:
        advice = _fleischner_subsolid(nodule.diameter_mm, nodule.kind, multiple)
    count = f"{len(nodules)} nodules; largest " if multiple else ""
    where = f" in the {nodule.lobe}" if nodule.lobe else ""
    return Suggestion(
        guideline=FLEISCHNER,
        category=None,
        text=f"{advice} Applies to incidental nodules in adults 35 or older who are not "
        "immunocompromised and have no known cancer.",
        based_on=f"{count}{nodule.diameter_mm:.1f} mm {nodule.kind} nodule{where}",
    )


def suggest(
    nodules: Sequence[Nodule], *, procedure_text: str | None, reason_for_exam: str | None
) -> list[Suggestion]:
    if is_screening_order(procedure_text, reason_for_exam):
        return [lung_rads(nodules)]
    suggestion = fleischner(nodules)
    return [] if suggestion is None else [suggestion]
