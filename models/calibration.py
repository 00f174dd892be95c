"""Post-hoc calibration and per-finding decision thresholds (fitted on validation data).

``fit_platt`` fits a temperature and a bias per finding (Platt scaling on logits);
``choose_thresholds`` picks per-finding thresholds on calibrated probabilities.  Both
go into the checkpoint (``models.checkpoint``): calibration as buffers of the
finding head, thresholds in the JSON sidecar.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_THRESHOLD = 0.5
MIN_TEMPERATURE = 0.05
PLATT_STEPS = 200


def platt_targets(labels: torch.Tensor) -> torch.Tensor:
    """Platt's (1999) smoothed targets: (N+ + 1) / (N+ + 2) for positives, 1 / (N- + 2) for
    negatives, per finding.  Hard 0/1 targets on a validation split the model separates
    perfectly drive the temperature to zero and every probability to exactly 0 or 1."""
    known = ~torch.isnan(labels)
    positive = (torch.nan_to_num(labels.float(), nan=0.0) > 0.5) & known
    n_pos = positive.sum(0).float()
    n_neg = (known & ~positive).sum(0).float()
    high = (n_pos + 1) / (n_pos + 2)
    low = 1 / (n_neg + 2)
    return torch.where(positive, high.expand_as(labels), low.expand_as(labels))


def fit_platt(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-finding (temperature, bias) minimising BCE of sigmoid(logit / T + b) against
    Platt's smoothed targets (``platt_targets``).

    ``labels`` may hold NaN for unknown; a finding with no known label keeps (1, 0).
    """
    logits = logits.detach().float()
    known = ~torch.isnan(labels)
    y = platt_targets(labels)
    log_t = torch.zeros(logits.shape[1], requires_grad=True)
    bias = torch.zeros(logits.shape[1], requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t, bias], lr=0.5, max_iter=PLATT_STEPS)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        z = logits / log_t.exp() + bias
        loss = (F.binary_cross_entropy_with_logits(z, y, reduction="none") * known).sum()
        loss = loss / known.sum().clamp_min(1)
        loss.backward()
        return loss

    optimiser.step(closure)
    temperature = log_t.detach().exp().clamp_min(MIN_TEMPERATURE)
    fitted_bias = bias.detach()
    unseen = known.sum(0) == 0
    temperature[unseen], fitted_bias[unseen] = 1.0, 0.0
    return temperature, fitted_bias


def choose_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> list[float]:
    """Per finding, the threshold maximising Youden's J (sensitivity + specificity - 1).

    A finding without both classes in the validation labels keeps 0.5.
    """
    thresholds: list[float] = []
    for f in range(probabilities.shape[1]):
        known = ~np.isnan(labels[:, f])
        p, y = probabilities[known, f], labels[known, f] > 0.5
        if y.all() or (~y).all():
            thresholds.append(DEFAULT_THRESHOLD)
            continue
        candidates = np.unique(p)
        best, best_j = DEFAULT_THRESHOLD, -1.0
        for t in candidates:
            predicted = p >= t
            j = float((predicted & y).sum() / y.sum() + (~predicted & ~y).sum() / (~y).sum() - 1)
            if j > best_j:
                best, best_j = float(t), j
        thresholds.append(best)
    return thresholds
