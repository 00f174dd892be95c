"""Classification metrics for multi-label findings: AUROC (with bootstrap intervals), F1, ECE.

Labels are (N, F) arrays of 0/1 with NaN for unknown; every metric skips unknown
labels per finding.  A finding whose known labels hold one class only has no
AUROC (NaN), and averages skip it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

BOOTSTRAP_SAMPLES = 1000
ECE_BINS = 15


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks); NaN if one class only."""
    known = ~np.isnan(labels)
    s, y = scores[known], labels[known] > 0.5
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _auroc_columns(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([auroc(scores[:, f], labels[:, f]) for f in range(scores.shape[1])])


def macro_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    values = _auroc_columns(scores, labels)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def micro_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    return auroc(scores.reshape(-1), labels.reshape(-1))


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def to_json(self) -> dict[str, float | None]:
        def clean(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 4)

        return {"value": clean(self.value), "low": clean(self.low), "high": clean(self.high)}


def bootstrap_aurocs(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[list[Interval], Interval, Interval]:
    """Per-finding, macro and micro AUROC with percentile bootstrap intervals over studies."""
    rng = np.random.default_rng(seed)
    n, f = scores.shape
    per = np.full((samples, f), np.nan)
    macro = np.full(samples, np.nan)
    micro = np.full(samples, np.nan)
    for b in range(samples):
        pick = rng.integers(0, n, n)
        s, y = scores[pick], labels[pick]
        per[b] = _auroc_columns(s, y)
        if np.isfinite(per[b]).any():
            macro[b] = np.nanmean(per[b])
        micro[b] = micro_auroc(s, y)
    alpha = (1 - level) / 2

    def interval(value: float, draws: np.ndarray) -> Interval:
        draws = draws[np.isfinite(draws)]
        if math.isnan(value) or draws.size == 0:
            return Interval(value, math.nan, math.nan)
        low, high = np.quantile(draws, [alpha, 1 - alpha])
        return Interval(value, float(low), float(high))

    point = _auroc_columns(scores, labels)
    per_finding = [interval(float(point[i]), per[:, i]) for i in range(f)]
    return (
        per_finding,
        interval(macro_auroc(scores, labels), macro),
        interval(micro_auroc(scores, labels), micro),
    )


def f1_scores(
    probabilities: np.ndarray, labels: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """Per-finding F1 at the thresholds, macro F1 and micro F1."""
    known = ~np.isnan(labels)
    y = labels > 0.5
    predicted = probabilities >= thresholds[None, :]
    tp = ((predicted & y) & known).sum(0).astype(float)
    fp = ((predicted & ~y) & known).sum(0).astype(float)
    fn = ((~predicted & y) & known).sum(0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    micro_den = 2 * tp.sum() + fp.sum() + fn.sum()
    micro = float(2 * tp.sum() / micro_den) if micro_den else math.nan
    macro = float(np.nanmean(per)) if np.isfinite(per).any() else math.nan
    return per, macro, micro


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, *, bins: int = ECE_BINS
) -> float:
    """ECE over every known (study, finding) prediction, equal-width bins."""
    known = ~np.isnan(labels)
    p, y = probabilities[known], (labels[known] > 0.5).astype(float)
    if p.size == 0:
        return math.nan
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() / p.size * abs(float(p[inside].mean()) - float(y[inside].mean()))
    return float(total)


def reliability_curve(
    probabilities: np.ndarray, labels: np.ndarray, *, bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed frequency, count) per bin, for the reliability plot."""
    known = ~np.isnan(labels)
    p, y = probabilities[known], (labels[known] > 0.5).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    mean_p = np.array([p[which == b].mean() if (which == b).any() else np.nan for b in range(bins)])
    freq = np.array([y[which == b].mean() if (which == b).any() else np.nan for b in range(bins)])
    count = np.array([(which == b).sum() for b in range(bins)])
    return mean_p, freq, count
