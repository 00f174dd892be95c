"""Load-adaptive precision, the rules alone: when a busy GPU worker drafts with a lighter form.

Two forms of the drafting model: the full one and a lighter one (the INT8 form of the same
checkpoint, or a distilled student).  :class:`PrecisionController` decides with hysteresis:
the GPU must stay above ``up_percent`` for ``hold_seconds`` before the lighter form is taken,
and below ``down_percent`` for ``hold_seconds`` before the full form comes back.  Readings in
between the two thresholds, and failed readings, break a streak.  The lighter form is taken
only when it passed the full model's evaluation within a tolerance
(:func:`check_light_form`); otherwise the controller refuses, once per busy streak.

No clocks, threads, files or metrics here: readings come in with their time, decisions go
out as values (:class:`Switched`, :class:`Refused`), and the services act on them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ModelForm(enum.StrEnum):
    FULL = "full"
    LIGHT = "light"


@dataclass(frozen=True)
class Hysteresis:
    up_percent: float
    """Above this utilisation for ``hold_seconds``: take the lighter form."""
    down_percent: float
    """Below this utilisation for ``hold_seconds``: back to the full form."""
    hold_seconds: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.down_percent < self.up_percent <= 100.0:
            raise ValueError(
                f"thresholds need 0 <= down ({self.down_percent}) < up ({self.up_percent}) <= 100"
            )
        if not self.hold_seconds >= 0.0:
            raise ValueError("the hold time must not be negative")


@dataclass(frozen=True)
class Switched:
    """The controller changed form."""

    from_form: ModelForm
    to_form: ModelForm
    at: float
    percent: float
    held_seconds: float


@dataclass(frozen=True)
class Refused:
    """The GPU stayed busy, but the lighter form has not passed the evaluation."""

    at: float
    percent: float
    held_seconds: float
    reason: str


Decision = Switched | Refused


class PrecisionController:
    """Which form drafts now, from a stream of (time, utilisation) readings."""

    def __init__(
        self, hysteresis: Hysteresis, *, light_allowed: bool, refusal_reason: str = ""
    ) -> None:
        self.hysteresis = hysteresis
        self.light_allowed = light_allowed
        self.refusal_reason = refusal_reason or "the lighter form is not validated"
        self.form = ModelForm.FULL
        self._streak_since: float | None = None
        self._refused_this_streak = False

    def observe(self, at: float, percent: float | None) -> Decision | None:
        """Take one reading; a decision when the form changes or a change is refused."""
        h = self.hysteresis
        if percent is None or math.isnan(percent):
            self._end_streak()  # no evidence either way
            return None
        pressing = (
            percent > h.up_percent if self.form is ModelForm.FULL else percent < h.down_percent
        )
        if not pressing:
            self._end_streak()
            return None
        if self._streak_since is None:
            self._streak_since = at
        held = at - self._streak_since
        if held < h.hold_seconds:
            return None
        if self.form is ModelForm.LIGHT:
            self._end_streak()
            self.form = ModelForm.FULL
            return Switched(ModelForm.LIGHT, ModelForm.FULL, at, percent, held)
        if not self.light_allowed:
            if self._refused_this_streak:
                return None
            self._refused_this_streak = True
            return Refused(at, percent, held, self.refusal_reason)
        self._end_streak()
        self.form = ModelForm.LIGHT
        return Switched(ModelForm.FULL, ModelForm.LIGHT, at, percent, held)

    def _end_streak(self) -> None:
        self._streak_since = None
        self._refused_this_streak = False


# -- is the lighter form good enough? ---------------------------------------------------------


@dataclass(frozen=True)
class FormId:
    """One deployable form: a checkpoint (by version and weights hash) at a precision."""

    model_version: str
    weights_sha256: str
    precision: str

    def describe(self) -> str:
        return f"{self.model_version} {self.precision} (weights {self.weights_sha256[:12]})"


@dataclass(frozen=True)
class FormCheck:
    passed: bool
    reason: str
    full_auroc: float | None = None
    light_auroc: float | None = None


def _find(entries: list[Mapping[str, Any]], form: FormId) -> Mapping[str, Any] | None:
    for entry in entries:
        if (
            entry.get("model_version") == form.model_version
            and entry.get("weights_sha256") == form.weights_sha256
            and entry.get("precision") == form.precision
        ):
            return entry
    return None


def check_light_form(
    record: Mapping[str, Any], full: FormId, light: FormId, *, tolerance: float
) -> FormCheck:
    """Did the lighter form lose at most ``tolerance`` macro AUROC against the full one?

    ``record`` is one evaluation of several forms on the same studies, as
    ``models.training.distill.compare`` writes it: ``{"forms": [{"model_version",
    "weights_sha256", "precision", "macro_auroc"}, ...]}``.  Both forms must be in it.
    """
    if full == light:
        return FormCheck(False, f"the lighter form is the full form itself ({full.describe()})")
    entries = record.get("forms")
    if not isinstance(entries, list):
        return FormCheck(False, "the evaluation record lists no forms")
    found = {}
    for name, form in (("full", full), ("lighter", light)):
        entry = _find(entries, form)
        auroc = entry.get("macro_auroc") if entry is not None else None
        if not isinstance(auroc, int | float) or math.isnan(auroc):
            return FormCheck(
                False, f"the evaluation record has no macro AUROC of the {name} form "
                f"{form.describe()}"
            )  # fmt: skip
        found[name] = float(auroc)
    lost = found["full"] - found["lighter"]
    verdict = (
        f"macro AUROC {found['lighter']:.4f} ({light.describe()}) against "
        f"{found['full']:.4f} ({full.describe()}): {lost:+.4f} lost, tolerance {tolerance:.4f}"
    )
    return FormCheck(lost <= tolerance, verdict, found["full"], found["lighter"])
