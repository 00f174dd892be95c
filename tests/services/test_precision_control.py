"""Load-adaptive precision's rules: hysteresis on utilisation readings, and the form check.

The controller is the unit under test, fed deterministic readings: a hand-written sequence,
and the trace nvidia-smi recorded on an H200 under a known load (idle, full load, about 43 %,
about 20 %, idle; ``bench/bench_gpu_utilisation.py`` made it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.core.precision_control import (
    FormId,
    Hysteresis,
    ModelForm,
    PrecisionController,
    Refused,
    Switched,
    check_light_form,
)
from app.services.gpu_utilisation import TraceSource, parse_percent, parse_trace, visible_device

H200_TRACE = Path(__file__).parent / "data" / "h200-utilisation-trace.csv"
HYSTERESIS = Hysteresis(up_percent=85.0, down_percent=60.0, hold_seconds=10.0)


def run(controller: PrecisionController, readings: list[tuple[float, float | None]]) -> list:
    return [d for at, p in readings if (d := controller.observe(at, p)) is not None]


def test_the_lighter_form_needs_utilisation_held_above_the_threshold() -> None:
    controller = PrecisionController(HYSTERESIS, light_allowed=True)
    # Busy for 9 s, a dip to 80 % (between the thresholds) breaks the streak, then 10 s busy.
    readings = [(t, 95.0) for t in range(0, 10)] + [(10, 80.0)]
    readings += [(t, 90.0) for t in range(11, 22)]
    decisions = run(controller, readings)
    assert decisions == [Switched(ModelForm.FULL, ModelForm.LIGHT, 21, 90.0, 10)]
    assert controller.form is ModelForm.LIGHT


def test_the_full_form_comes_back_only_below_the_lower_threshold() -> None:
    controller = PrecisionController(HYSTERESIS, light_allowed=True)
    run(controller, [(t, 99.0) for t in range(0, 11)])
    assert controller.form is ModelForm.LIGHT
    # 70 % is below the upper threshold but not below the lower one: stays light.
    assert run(controller, [(t, 70.0) for t in range(11, 60)]) == []
    assert controller.form is ModelForm.LIGHT
    # A failed reading breaks a streak too.
    assert run(controller, [(60, 30.0), (65, None), (66, 30.0), (75, 30.0)]) == []
    (back,) = run(controller, [(76, 30.0)])
    assert back == Switched(ModelForm.LIGHT, ModelForm.FULL, 76, 30.0, 10)


def test_an_unvalidated_lighter_form_is_refused_once_per_busy_streak() -> None:
    controller = PrecisionController(
        HYSTERESIS, light_allowed=False, refusal_reason="lost 3 points of macro AUROC"
    )
    first = run(controller, [(t, 97.0) for t in range(0, 30)])
    assert first == [Refused(10, 97.0, 10, "lost 3 points of macro AUROC")]
    second = run(controller, [(30, 10.0)] + [(t, 97.0) for t in range(31, 45)])
    assert [d.at for d in second] == [41]
    assert controller.form is ModelForm.FULL


def test_a_recorded_h200_trace_switches_once_each_way() -> None:
    trace = TraceSource.from_nvidia_smi_csv(H200_TRACE)
    samples = trace.samples
    assert len(samples) > 100 and all(s.percent is not None for s in samples)
    controller = PrecisionController(
        Hysteresis(up_percent=85.0, down_percent=60.0, hold_seconds=2.0), light_allowed=True
    )
    decisions = run(controller, [(s.at, s.percent) for s in samples])
    assert [(d.from_form, d.to_form) for d in decisions] == [
        (ModelForm.FULL, ModelForm.LIGHT),
        (ModelForm.LIGHT, ModelForm.FULL),
    ]
    busy_from = next(s.at for s in samples if s.percent and s.percent > 85)
    calm_from = next(s.at for s in samples if s.at > busy_from and s.percent and s.percent < 60)
    assert decisions[0].at - busy_from == pytest.approx(2.0, abs=0.3)
    assert decisions[1].at - calm_from == pytest.approx(2.0, abs=0.3)
    # With a hold longer than the recorded busy spell (about 12 s) nothing changes.
    patient = PrecisionController(
        Hysteresis(up_percent=85.0, down_percent=60.0, hold_seconds=15.0), light_allowed=True
    )
    assert run(patient, [(s.at, s.percent) for s in samples]) == []


def test_thresholds_must_leave_a_gap() -> None:
    with pytest.raises(ValueError, match="down"):
        Hysteresis(up_percent=60.0, down_percent=60.0, hold_seconds=1.0)
    with pytest.raises(ValueError, match="hold"):
        Hysteresis(up_percent=85.0, down_percent=60.0, hold_seconds=-1.0)


FULL = FormId("radscribe-v2", "a" * 64, "bf16")
INT8 = FormId("radscribe-v2", "a" * 64, "int8")


def record(full: float, light: float, light_form: FormId = INT8) -> dict:
    forms = [(FULL, full), (light_form, light)]
    return {
        "forms": [
            {
                "name": f.precision,
                "model_version": f.model_version,
                "weights_sha256": f.weights_sha256,
                "precision": f.precision,
                "macro_auroc": auroc,
            }
            for f, auroc in forms
        ]
    }


def test_the_lighter_form_passes_within_the_tolerance() -> None:
    check = check_light_form(record(0.900, 0.893), FULL, INT8, tolerance=0.01)
    assert check.passed, check.reason
    assert (check.full_auroc, check.light_auroc) == (0.900, 0.893)


def test_the_lighter_form_is_refused_beyond_the_tolerance_or_without_evidence() -> None:
    lost = check_light_form(record(0.900, 0.870), FULL, INT8, tolerance=0.01)
    assert not lost.passed and "-0.0300" not in lost.reason and "0.0300 lost" in lost.reason
    other_weights = FormId("radscribe-v2", "b" * 64, "int8")
    missing = check_light_form(record(0.9, 0.9), FULL, other_weights, tolerance=0.01)
    assert not missing.passed and "no macro AUROC of the lighter form" in missing.reason
    fp32 = dataclasses.replace(INT8, precision="fp32")
    assert not check_light_form(record(0.9, 0.9), FULL, fp32, tolerance=0.01).passed
    not_lighter = check_light_form(record(0.9, 0.9), FULL, FULL, tolerance=0.01)
    assert not not_lighter.passed and "full form itself" in not_lighter.reason
    assert not check_light_form({}, FULL, INT8, tolerance=0.01).passed
    nan = check_light_form(record(0.9, float("nan")), FULL, INT8, tolerance=0.01)
    assert not nan.passed


def test_readings_parse_as_nvidia_smi_prints_them(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_percent("97\n") == 97.0
    assert parse_percent(" 43 %") == 43.0
    assert parse_percent("[N/A]") is None
    assert parse_percent("") is None
    assert parse_percent("250") is None
    samples = parse_trace(["2026/11/29 10:02:14.040, 0", "2026/11/29 10:02:14.292, 97"])
    assert [(round(s.at, 3), s.percent) for s in samples] == [(0.0, 0.0), (0.252, 97.0)]
    with pytest.raises(ValueError, match="line 1"):
        parse_trace(["yesterday, 12"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_device("cuda") == "0" and visible_device("cuda:1") == "1"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-3de77c81, 5")
    assert visible_device("cuda:0") == "GPU-3de77c81" and visible_device("cuda:1") == "5"
    with pytest.raises(ValueError, match="only 2"):
        visible_device("cuda:2")
