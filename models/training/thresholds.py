"""Per-finding operating points chosen on the validation split.

Two thresholds per finding, on the calibrated probability:

* the decision threshold (the finding is drafted as present): by default the
  lowest threshold whose specificity reaches ``decision_target`` (a high-specificity
  operating point), or a stated sensitivity, or Youden's J;
* the verify threshold, never above the decision threshold: the highest threshold
  that keeps sensitivity at ``verify_sensitivity`` (~0.95).  A probability between
  the two is drafted as "verify" for the radiologist.

A finding without both classes in the validation labels keeps 0.5 for both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.calibration import choose_thresholds
from models.findings import FINDINGS

DEFAULT_THRESHOLD = 0.5


def threshold_at_sensitivity(p: np.ndarray, y: np.ndarray, target: float) -> float:
    """The highest threshold t with sensitivity(p >= t) >= target."""
    positives = np.sort(p[y])[::-1]
    needed = max(1, int(np.ceil(target * len(positives) - 1e-9)))
    return float(positives[needed - 1])


def threshold_at_specificity(p: np.ndarray, y: np.ndarray, target: float) -> float:
    """The lowest threshold t with specificity(p < t) >= target (strictly above those negatives)."""
    negatives = np.sort(p[~y])
    keep_below = int(np.ceil(target * len(negatives) - 1e-9))
    if keep_below == 0:
        return float(negatives[0])
    highest_negative = negatives[keep_below - 1]
    above = p[p > highest_negative]
    return float(above.min()) if above.size else float(np.nextafter(highest_negative, 2.0))


@dataclass(frozen=True)
class OperatingPoints:
    decision: dict[str, float]
    verify: dict[str, float]

    def to_json(self) -> dict[str, dict[str, float]]:
        return {"decision": self.decision, "verify": self.verify}


def choose_operating_points(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    decision_rule: str = "specificity",
    decision_target: float = 0.9,
    verify_sensitivity: float = 0.95,
) -> OperatingPoints:
    youden = choose_thresholds(probabilities, labels) if decision_rule == "youden" else None
    decision: dict[str, float] = {}
    verify: dict[str, float] = {}
    for f, finding in enumerate(FINDINGS):
        known = ~np.isnan(labels[:, f])
        p, y = probabilities[known, f], labels[known, f] > 0.5
        if y.all() or (~y).all():
            decision[finding.slug] = verify[finding.slug] = DEFAULT_THRESHOLD
            continue
        if youden is not None:
            d = youden[f]
        elif decision_rule == "sensitivity":
            d = threshold_at_sensitivity(p, y, decision_target)
        elif decision_rule == "specificity":
            d = threshold_at_specificity(p, y, decision_target)
        else:
            raise ValueError(f"unknown decision rule {decision_rule!r}")
        v = min(threshold_at_sensitivity(p, y, verify_sensitivity), d)
        decision[finding.slug] = float(d)
        verify[finding.slug] = float(v)
    return OperatingPoints(decision=decision, verify=verify)
