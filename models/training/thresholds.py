"""Per-finding operating points chosen on the validation split.

Two thresholds per finding, on the calibrated probability:

* the decision threshold (the finding is drafted as present): by default the
  best sensitivity whose specificity reaches ``decision_target`` (a high-specificity
  operating point; where the classes separate better than that, the threshold moves
  into the gap rather than drafting the target's share of normal studies as
  abnormal), or a stated sensitivity, or Youden's J;
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
    """The threshold with the best sensitivity at specificity >= target and, among those,
    the best specificity: midway between the lowest positive it keeps and the next lower
    score.  (The lowest admissible threshold alone would call ``1 - target`` of the
    negatives positive even when every negative scores below every positive.)"""
    negatives = np.sort(p[~y])
    keep_below = int(np.ceil(target * len(negatives) - 1e-9))
    if keep_below == 0:
        lowest = float(negatives[0])
    else:
        highest_negative = negatives[keep_below - 1]
        above = p[p > highest_negative]
        if not above.size:
            return float(np.nextafter(highest_negative, 2.0))
        lowest = float(above.min())
    kept = np.sort(p[y][p[y] >= lowest])
    if not kept.size:
        return lowest
    top = float(kept[0])  # the same positives are kept by any threshold in (below, top]
    below = p[p < top]
    below = below[below >= lowest]
    return float((top + below.max()) / 2) if below.size else top


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
