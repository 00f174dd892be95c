"""Which findings a study has and their sampled parameters (before anything is drawn).

Parameters are plain JSON values so the plan can be written into the truth
file as it is.  Positions are chosen later, when the anatomy exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.findings import FINDINGS, Finding
from models.synthetic.anatomy import LOBES, Lobe

JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]

# Rough prevalence of each finding in an abnormal chest CT (CT-RATE-like), before age effects.
PREVALENCE: dict[Finding, float] = {
    Finding.MEDICAL_MATERIAL: 0.10,
    Finding.ARTERIAL_WALL_CALCIFICATION: 0.28,
    Finding.CARDIOMEGALY: 0.10,
    Finding.PERICARDIAL_EFFUSION: 0.07,
    Finding.CORONARY_ARTERY_WALL_CALCIFICATION: 0.24,
    Finding.HIATAL_HERNIA: 0.12,
    Finding.LYMPHADENOPATHY: 0.22,
    Finding.EMPHYSEMA: 0.18,
    Finding.ATELECTASIS: 0.22,
    Finding.LUNG_NODULE: 0.40,
    Finding.LUNG_OPACITY: 0.30,
    Finding.PULMONARY_FIBROTIC_SEQUELA: 0.22,
    Finding.PLEURAL_EFFUSION: 0.12,
    Finding.MOSAIC_ATTENUATION_PATTERN: 0.06,
    Finding.PERIBRONCHIAL_THICKENING: 0.10,
    Finding.CONSOLIDATION: 0.15,
    Finding.BRONCHIECTASIS: 0.10,
    Finding.INTERLOBULAR_SEPTAL_THICKENING: 0.08,
}
NORMAL_FRACTION = 0.22
AGE_DEPENDENT = (Finding.ARTERIAL_WALL_CALCIFICATION, Finding.CORONARY_ARTERY_WALL_CALCIFICATION)
SMALL_NODULE_MM = 6.0  # nodules up to this size make a study "hard"


def number(params: Mapping[str, JsonValue], key: str) -> float:
    """A numeric parameter (clear error when missing or not a number)."""
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"finding parameter {key!r} must be a number, got {value!r}")
    return float(value)


def records(params: Mapping[str, JsonValue], key: str) -> list[dict[str, JsonValue]]:
    """A list-of-objects parameter (nodules, nodes, devices, patches)."""
    value = params.get(key)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"finding parameter {key!r} must be a list of objects")
    return [v for v in value if isinstance(v, dict)]


@dataclass(frozen=True)
class FindingPlan:
    finding: Finding
    params: Mapping[str, JsonValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "finding": self.finding.value,
            "slug": self.finding.slug,
            "params": dict(self.params),
        }


def choose_findings(
    rng: np.random.Generator, *, age: int, forced: Sequence[Finding] | None
) -> list[Finding]:
    """Forced findings exactly, or a random set: sometimes none, often one to several."""
    if forced is not None:
        return [f for f in FINDINGS if f in set(forced)]
    if rng.random() < NORMAL_FRACTION:
        return []
    age_gain = float(np.clip((age - 35) / 30.0, 0.3, 2.0))
    while True:
        chosen = []
        for f in FINDINGS:
            p = PREVALENCE[f] * (age_gain if f in AGE_DEPENDENT else 1.0)
            if rng.random() < min(p, 0.9):
                chosen.append(f)
        if chosen:
            return chosen


def _lobe(rng: np.random.Generator, weights: Mapping[Lobe, float] | None = None) -> Lobe:
    w = np.array([(weights or {}).get(lobe, 1.0) for lobe in LOBES], dtype=float)
    return LOBES[int(rng.choice(len(LOBES), p=w / w.sum()))]


def _side(rng: np.random.Generator, bilateral: float = 0.3) -> str:
    r = rng.random()
    return (
        "bilateral"
        if r < bilateral
        else ("right" if r < bilateral + (1 - bilateral) * 0.55 else "left")
    )


def sample_params(
    rng: np.random.Generator, finding: Finding, *, hard: bool
) -> dict[str, JsonValue]:
    """Parameters for one finding; ``hard`` favours subtle presentations."""
    if finding is Finding.LUNG_NODULE:
        count = int(rng.choice([1, 1, 1, 2, 2, 3, 4]))
        nodules: list[JsonValue] = []
        for _ in range(count):
            if hard or rng.random() < 0.35:
                d = float(rng.uniform(3.0, SMALL_NODULE_MM))
            else:
                d = float(np.clip(rng.lognormal(np.log(11.0), 0.45), SMALL_NODULE_MM + 0.5, 32.0))
            kind = str(rng.choice(["solid", "solid", "solid", "part-solid", "ground-glass"]))
            if d < 5.0 and kind == "part-solid":
                kind = "solid"
            nodules.append(
                {
                    "diameter_mm": round(d, 1),
                    "type": kind,
                    "lobe": _lobe(rng, {Lobe.RUL: 1.6, Lobe.LUL: 1.4, Lobe.RML: 0.6}).name,
                }
            )
        return {"nodules": nodules}
    if finding is Finding.EMPHYSEMA:
        kind = str(rng.choice(["centrilobular", "centrilobular", "paraseptal", "panlobular"]))
        severity = str(rng.choice(["mild", "moderate", "severe"], p=[0.45, 0.35, 0.2]))
        return {"type": kind, "severity": severity}
    if finding is Finding.PLEURAL_EFFUSION:
        side = _side(rng, 0.35)
        depth = {
            s: round(float(rng.uniform(8, 55)), 1)
            for s in (["right", "left"] if side == "bilateral" else [side])
        }
        return {"side": side, "depth_mm": dict(depth)}
    if finding is Finding.CARDIOMEGALY:
        return {"target_ctr": round(float(rng.uniform(0.55, 0.66)), 3)}
    if finding is Finding.PERICARDIAL_EFFUSION:
        return {"thickness_mm": round(float(rng.uniform(6, 20)), 1)}
    if finding is Finding.LYMPHADENOPATHY:
        stations = rng.choice(
            ["2R", "4R", "4L", "5", "6", "7", "10R", "10L"],
            size=int(rng.integers(1, 5)),
            replace=False,
        )
        return {
            "nodes": [
                {"station": str(s), "short_axis_mm": round(float(rng.uniform(11.5, 26)), 1)}
                for s in stations
            ]
        }
    if finding is Finding.ATELECTASIS:
        kind = str(rng.choice(["linear", "dependent"]))
        lobe = _lobe(
            rng, {Lobe.RLL: 3.0, Lobe.LLL: 3.0, Lobe.RML: 1.5, Lobe.RUL: 0.3, Lobe.LUL: 0.8}
        )
        return {"type": kind, "lobe": lobe.name}
    if finding is Finding.LUNG_OPACITY:
        n = int(rng.integers(1, 5))
        return {
            "patches": [
                {"lobe": _lobe(rng).name, "radius_mm": round(float(rng.uniform(12, 35)), 1)}
                for _ in range(n)
            ],
            "density_hu": round(float(rng.uniform(200, 350)), 0),
        }
    if finding is Finding.CONSOLIDATION:
        lobe = _lobe(rng, {Lobe.RLL: 2.5, Lobe.LLL: 2.5, Lobe.RML: 1.5})
        return {
            "lobe": lobe.name,
            "extent": str(rng.choice(["segmental", "segmental", "lobar"])),
            "radius_mm": round(float(rng.uniform(22, 45)), 1),
        }
    if finding is Finding.PULMONARY_FIBROTIC_SEQUELA:
        lobe = _lobe(
            rng, {Lobe.RUL: 2.0, Lobe.LUL: 2.0, Lobe.RLL: 1.0, Lobe.LLL: 1.0, Lobe.RML: 0.6}
        )
        return {"lobe": lobe.name, "bands": int(rng.integers(2, 6))}
    if finding is Finding.MOSAIC_ATTENUATION_PATTERN:
        return {
            "extent": round(float(rng.uniform(0.3, 0.6)), 2),
            "contrast_hu": round(float(rng.uniform(70, 130)), 0),
        }
    if finding is Finding.PERIBRONCHIAL_THICKENING:
        lobes = sorted(
            {
                _lobe(rng, {Lobe.RLL: 2.0, Lobe.LLL: 2.0}).name
                for _ in range(int(rng.integers(1, 4)))
            }
        )
        return {"lobes": list(lobes), "wall_factor": round(float(rng.uniform(2.0, 3.0)), 2)}
    if finding is Finding.BRONCHIECTASIS:
        lobes = sorted(
            {
                _lobe(rng, {Lobe.RLL: 2.5, Lobe.LLL: 2.5, Lobe.RML: 1.5}).name
                for _ in range(int(rng.integers(1, 3)))
            }
        )
        return {
            "lobes": list(lobes),
            "dilation": round(float(rng.uniform(1.7, 2.6)), 2),
            "type": str(rng.choice(["cylindrical", "varicose"])),
        }
    if finding is Finding.INTERLOBULAR_SEPTAL_THICKENING:
        return {
            "zone": str(rng.choice(["basal", "basal", "diffuse"])),
            "cell_mm": round(float(rng.uniform(12, 20)), 1),
        }
    if finding is Finding.ARTERIAL_WALL_CALCIFICATION:
        return {"plaques": int(rng.integers(3, 26))}
    if finding is Finding.CORONARY_ARTERY_WALL_CALCIFICATION:
        vessels = sorted(
            {str(v) for v in rng.choice(["LAD", "LAD", "LCX", "RCA"], size=int(rng.integers(1, 4)))}
        )
        return {"vessels": list(vessels), "plaques": int(rng.integers(1, 9))}
    if finding is Finding.HIATAL_HERNIA:
        return {"size_mm": round(float(rng.uniform(28, 62)), 1), "gas": bool(rng.random() < 0.6)}
    if finding is Finding.MEDICAL_MATERIAL:
        kinds = ["port", "pacemaker", "sternotomy wires", "surgical clips"]
        chosen = sorted(
            {
                str(k)
                for k in rng.choice(
                    kinds, size=int(rng.choice([1, 1, 2])), p=[0.35, 0.25, 0.2, 0.2]
                )
            }
        )
        return {
            "devices": [{"kind": k, "side": str(rng.choice(["right", "left"]))} for k in chosen]
        }
    raise ValueError(f"no parameter sampler for {finding}")
