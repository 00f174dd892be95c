"""How good is a checkpoint: ``evaluate_checkpoint`` writes JSON, a markdown table and plots.

On one split (test by default):

* per-finding AUROC with bootstrap 95 % intervals, F1 at the checkpoint's stored
  thresholds, micro and macro averages, expected calibration error;
* an ablation over modality combinations: image only, + EMR, + dictation, all,
  and EMR text shuffled between studies (no dictation), each with its macro AUROC
  interval; plus the deployment mix (each text present with its usual probability);
* nodules (where the truth has them): detection sensitivity, false positives per
  study and diameter MAE of the refiner on matched detections;
* the hard split (small 3-6 mm nodules, low dose, unseen kernels) reported apart;
* the dictation gate: mean weight given to dictations recognised at a fixed SNR.

Dictations are simulated from the split's reports (``models.training.dictation``)
unless the data has real transcripts.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import nodule_measure
from models.checkpoint import load_checkpoint
from models.config import NODULE_TYPES
from models.findings import FINDINGS
from models.preprocess import unwindow
from models.training import metrics, nodules
from models.training.config import DataConfig, DictationConfig
from models.training.data import (
    StudyTable,
    StudyTexts,
    assign_texts,
    grid_patches,
    shuffled_emr,
    without,
)
from models.training.sources import open_split
from models.training.text_cache import TextEmbeddingStore, ensure_texts, text_encoder_id
from models.training.trainer import Distributed, autocast_dtype, predict, resolve_device

logger = logging.getLogger(__name__)

GATE_SNRS_DB = (-5.0, 0.0, 10.0, 30.0)
LOW_GATE_WEIGHT = 0.2
SMALL_NODULE_RANGE_MM = (3.0, 6.0)
SIZE_BINS_MM = ((3.0, 6.0), (6.0, 10.0), (10.0, 20.0), (20.0, 40.0))
REPORT_JSON = "evaluation.json"
REPORT_MARKDOWN = "evaluation.md"


@dataclass(frozen=True)
class EvaluationOptions:
    split: str = "test"
    batch_size: int = 8
    seed: int = 0
    bootstrap: int = metrics.BOOTSTRAP_SAMPLES
    device: str = "auto"
    amp: str = "bf16"
    progress: bool = True


def _scenario_metrics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    weights: np.ndarray,
    *,
    bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    per, macro, micro = metrics.bootstrap_aurocs(
        probabilities, labels, samples=bootstrap, seed=seed
    )
    f1, macro_f1, micro_f1 = metrics.f1_scores(probabilities, labels, thresholds)
    return {
        "auroc": {f.slug: per[i].to_json() for i, f in enumerate(FINDINGS)},
        "f1": {f.slug: _clean(f1[i]) for i, f in enumerate(FINDINGS)},
        "macro_auroc": macro.to_json(),
        "micro_auroc": micro.to_json(),
        "macro_f1": _clean(macro_f1),
        "micro_f1": _clean(micro_f1),
        "ece": _clean(metrics.expected_calibration_error(probabilities, labels)),
        "mean_modality_weights": [round(float(v), 4) for v in weights.mean(0)],
    }


def _clean(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def nodule_metrics(
    model: Any,
    table: StudyTable,
    maps: list[torch.Tensor],
    threshold: float,
    device: torch.device,
    spec: Any,
    subset: list[int] | None = None,
) -> dict[str, Any] | None:
    """Detection and diameter error over studies whose nodules are known."""
    studies = table.cached.studies
    chosen = [
        i
        for i in (subset if subset is not None else range(len(studies)))
        if studies[i].nodules is not None
    ]
    if not chosen:
        return None
    tp = fn = fp = 0
    measured: list[dict[str, Any]] = []
    centre_errors: list[float] = []
    measuring = nodule_measure.measuring_spec(spec)
    model.eval()
    false_stated: list[tuple[float, str]] = []
    for i in chosen:
        truth = studies[i].nodules or ()
        found = nodules.decode(maps[i], studies[i].grid, top=model.config.max_nodules)
        matched, false = nodules.match(truth, found, threshold)
        tp += len(matched)
        fn += len(truth) - len(matched)
        fp += false
        hits = {id(c) for _, c in matched}
        unmatched = [c for c in found if c.score >= threshold and id(c) not in hits]
        candidates = [c for _, c in matched] + unmatched
        if not candidates:
            continue
        image = table._images([i], device)
        centres = torch.tensor(np.array([c.centre_ras for c in candidates]), dtype=torch.float32)
        grids, rows = [studies[i].grid], [0] * len(candidates)
        patches = grid_patches(image, grids, centres, rows, spec)
        cubes = grid_patches(image, grids, centres, rows, measuring)[:, 0].cpu().numpy()
        with torch.inference_mode():
            refined = model.refiner(patches.to(device)).float().cpu()
        stated = [
            nodule_measure.nodule_diameter(
                float(torch.exp(out[0])),
                unwindow(cube, spec),
                head_mm=candidate.head_diameter_mm,
            )
            for candidate, out, cube in zip(candidates, refined, cubes, strict=True)
        ]
        false_stated += stated[len(matched) :]
        for (nodule, candidate), out, (diameter, source) in zip(
            matched, refined, stated, strict=False
        ):
            refiner_mm = float(torch.exp(out[0]))
            measured.append(
                {
                    "true_mm": nodule.diameter_mm,
                    "type_index": nodule.type_index,
                    "error": abs(diameter - nodule.diameter_mm),
                    "signed": diameter - nodule.diameter_mm,
                    "refiner_error": abs(refiner_mm - nodule.diameter_mm),
                    "source": source,
                }
            )
            corrected = candidate.centre_ras + out[4:7].numpy() * 10.0
            centre_errors.append(float(np.linalg.norm(corrected - np.asarray(nodule.centre_ras))))
    return {
        "studies": len(chosen),
        "true_nodules": tp + fn,
        "detected": tp,
        "sensitivity": _clean(tp / max(tp + fn, 1)),
        "false_positives_per_study": _clean(fp / len(chosen)),
        "diameter_mae_mm": _mae(measured),
        "diameter_mae_3_6mm": _mae(
            [
                m
                for m in measured
                if SMALL_NODULE_RANGE_MM[0] <= m["true_mm"] <= SMALL_NODULE_RANGE_MM[1]
            ]
        ),
        "diameter_mae_refiner_only_mm": _mae(measured, key="refiner_error"),
        "measured_share": _clean(sum(m["source"] == "measured" for m in measured) / len(measured))
        if measured
        else None,
        "diameter_by_size": _diameter_breakdown(
            measured,
            {
                f"{lo:g}-{hi:g} mm": (lambda m, lo=lo, hi=hi: lo <= m["true_mm"] < hi)
                for lo, hi in SIZE_BINS_MM
            },
        ),
        "diameter_by_type": _diameter_breakdown(
            measured,
            {kind: (lambda m, k=k: m["type_index"] == k) for k, kind in enumerate(NODULE_TYPES)},
        ),
        "false_candidates": {
            "count": len(false_stated),
            "measured": sum(source == "measured" for _, source in false_stated),
            "stated_diameter_mm_median": _clean(float(np.median([d for d, _ in false_stated])))
            if false_stated
            else None,
            "stated_diameter_mm_max": _clean(max(d for d, _ in false_stated))
            if false_stated
            else None,
        },
        "centre_error_mm_median": _clean(float(np.median(centre_errors)))
        if centre_errors
        else None,
        "threshold": threshold,
    }


def _mae(measured: list[dict[str, Any]], key: str = "error") -> float | None:
    return _clean(float(np.mean([m[key] for m in measured]))) if measured else None


def _diameter_breakdown(
    measured: list[dict[str, Any]], groups: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per group: count, MAE, mean signed error and the refiner's MAE alone."""
    out = {}
    for name, member in groups.items():
        chosen = [m for m in measured if member(m)]
        out[name] = {
            "matched": len(chosen),
            "mae_mm": _mae(chosen),
            "bias_mm": _clean(float(np.mean([m["signed"] for m in chosen]))) if chosen else None,
            "refiner_only_mae_mm": _mae(chosen, key="refiner_error"),
        }
    return out


def evaluate_checkpoint(
    checkpoint: Path,
    data: DataConfig,
    out_dir: Path,
    *,
    cache_dir: Path,
    options: EvaluationOptions | None = None,
    dictation: DictationConfig | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``options.split`` of ``data``; writes reports to ``out_dir``."""
    options = options or EvaluationOptions()
    dictation = dictation or DictationConfig()
    device = resolve_device(options.device, Distributed())
    amp_dtype = autocast_dtype(options.amp, device)
    loaded = load_checkpoint(checkpoint, device=device)
    model, meta = loaded.model, loaded.meta
    spec = meta.preprocess_spec
    cached = open_split(data, options.split, spec, cache_dir, progress=options.progress)
    if len(cached) == 0:
        raise ValueError(f"split {options.split!r} has no usable studies")
    available = assign_texts(cached.studies, seed=options.seed, config=dictation, training=True)
    mixed = assign_texts(cached.studies, seed=options.seed, config=dictation, training=False)
    scenarios: dict[str, list[StudyTexts]] = {
        "image only": without(available, emr=True, dictation=True),
        "+ EMR": without(available, dictation=True),
        "+ dictation": without(available, emr=True),
        "all": available,
        "shuffled EMR": shuffled_emr(available, seed=options.seed + 1),
        "deployment mix": mixed,
    }
    gate_texts = {
        snr: without(
            assign_texts(
                cached.studies, seed=options.seed, config=dictation, training=False, snr_db=snr
            ),
            emr=True,
        )
        for snr in GATE_SNRS_DB
    }
    store = None
    if not model.config.text_trainable:
        store = TextEmbeddingStore(cache_dir, text_encoder_id(model))
        every = [t for group in [*scenarios.values(), *gate_texts.values()] for t in group]
        ensure_texts(store, every, model=model, device=device)
    table = StudyTable(cached, available, model_config=model.config, store=store)
    if device.type == "cuda":
        table.preload(device)
    labels = table.labels
    thresholds = np.array([meta.thresholds[f.slug] for f in FINDINGS])
    hard = [i for i, s in enumerate(cached.studies) if s.hard_reasons]
    easy = [i for i, s in enumerate(cached.studies) if not s.hard_reasons]
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model_version": meta.model_version,
        "validated_for_clinical_use": meta.validated_for_clinical_use,
        "split": options.split,
        "studies": len(cached),
        "refused": len(cached.refused),
        "prevalence": {
            f.slug: _clean(float(np.nanmean(labels[:, i]))) for i, f in enumerate(FINDINGS)
        },
        "thresholds": meta.thresholds,
        "verify_thresholds": meta.verify_thresholds,
        "scenarios": {},
    }
    outputs: dict[str, np.ndarray] = {}
    maps: list[torch.Tensor] = []
    for name, texts in scenarios.items():
        predictions, scenario_maps = predict(
            model,
            table,
            device,
            batch_size=options.batch_size,
            amp_dtype=amp_dtype,
            texts=texts,
            keep_nodule_maps=name == "all",
        )
        if name == "all":
            maps = scenario_maps
        outputs[name] = predictions.probabilities
        report["scenarios"][name] = _scenario_metrics(
            predictions.probabilities,
            labels,
            thresholds,
            predictions.modality_weights,
            bootstrap=options.bootstrap,
            seed=options.seed,
        )
        logger.info("%s: macro AUROC %s", name, report["scenarios"][name]["macro_auroc"])
    report["hard_split"] = {
        "studies": len(hard),
        "reasons": _count_reasons(cached.studies),
    }
    for name in ("all", "image only"):
        for subset_name, subset in (("hard", hard), ("not hard", easy)):
            if len(subset) >= 2:
                report["hard_split"][f"{subset_name} ({name})"] = _scenario_metrics(
                    outputs[name][subset],
                    labels[subset],
                    thresholds,
                    np.zeros((len(subset), 3)),
                    bootstrap=options.bootstrap,
                    seed=options.seed,
                )
    for reason in report["hard_split"]["reasons"]:
        members = [i for i, s in enumerate(cached.studies) if reason in s.hard_reasons]
        if len(members) >= 2:
            report["hard_split"][f"reason: {reason}"] = {
                "studies": len(members),
                "macro_auroc (all)": _clean(
                    metrics.macro_auroc(outputs["all"][members], labels[members])
                ),
                "macro_auroc (image only)": _clean(
                    metrics.macro_auroc(outputs["image only"][members], labels[members])
                ),
            }
    report["nodules"] = nodule_metrics(model, table, maps, meta.nodule_threshold, device, spec)
    if hard:
        report["hard_split"]["nodules"] = nodule_metrics(
            model, table, maps, meta.nodule_threshold, device, spec, subset=hard
        )
    gate: dict[str, Any] = {}
    for snr, texts in gate_texts.items():
        predictions, _ = predict(
            model, table, device, batch_size=options.batch_size, amp_dtype=amp_dtype, texts=texts
        )
        present = np.array([t.dictation is not None for t in texts])
        weights = predictions.modality_weights[present, 2]
        gate[f"{snr:g} dB"] = {
            "studies": int(present.sum()),
            "mean_weight": _clean(float(weights.mean())) if weights.size else None,
            "max_weight": _clean(float(weights.max())) if weights.size else None,
            f"fraction_below_{LOW_GATE_WEIGHT}": _clean(float((weights < LOW_GATE_WEIGHT).mean()))
            if weights.size
            else None,
            "macro_auroc": _clean(metrics.macro_auroc(predictions.probabilities, labels)),
        }
    report["dictation_gate"] = gate
    report["summary"] = summarise(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / REPORT_MARKDOWN).write_text(markdown(report))
    plot(report, outputs["all"], labels, out_dir)
    return report


def _count_reasons(studies: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in studies:
        for reason in s.hard_reasons:
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers the acceptance criteria name, side by side."""
    scenarios = report["scenarios"]
    all_auroc = scenarios["all"]["auroc"]
    image = scenarios["image only"]["macro_auroc"]
    shuffled = scenarios["shuffled EMR"]["macro_auroc"]["value"]
    at_least = sum(1 for v in all_auroc.values() if v["value"] is not None and v["value"] >= 0.95)
    gate = report["dictation_gate"]
    low = [
        g["mean_weight"]
        for key, g in gate.items()
        if float(key.split()[0]) <= 0 and g["mean_weight"] is not None
    ]
    nodule = report.get("nodules") or {}
    return {
        "findings_with_auroc_at_least_0.95 (all)": at_least,
        "findings_with_auroc_at_least_0.95 (image only)": sum(
            1
            for v in scenarios["image only"]["auroc"].values()
            if v["value"] is not None and v["value"] >= 0.95
        ),
        "macro_auroc": {name: s["macro_auroc"]["value"] for name, s in scenarios.items()},
        "image_only_interval": [image["low"], image["high"]],
        "shuffled_emr_within_image_only_interval": (
            shuffled is not None
            and image["low"] is not None
            and image["low"] <= shuffled <= image["high"]
        ),
        "text_raises_macro_auroc": {
            name: (scenarios[name]["macro_auroc"]["value"] or 0) > (image["value"] or 0)
            for name in ("+ EMR", "+ dictation", "all")
        },
        "nodule_diameter_mae_mm": nodule.get("diameter_mae_mm"),
        "dictation_weight_at_or_below_0dB": max(low) if low else None,
    }


def _fmt(interval: dict[str, float | None]) -> str:
    if interval["value"] is None:
        return "n/a"
    if interval["low"] is None:
        return f"{interval['value']:.3f}"
    return f"{interval['value']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def markdown(report: dict[str, Any]) -> str:
    s = report["scenarios"]
    lines = [
        f"# Evaluation of {report['model_version']} on {report['split']} "
        f"({report['studies']} studies)",
        "",
        f"Not validated for clinical use: {not report['validated_for_clinical_use']}.",
        "",
        "## Per finding (all modalities available)",
        "",
        "| finding | prevalence | AUROC [95% CI] | AUROC image only | F1 at threshold "
        "| threshold | verify |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in FINDINGS:
        lines.append(
            f"| {f.value} | {report['prevalence'][f.slug]} | {_fmt(s['all']['auroc'][f.slug])} | "
            f"{_fmt(s['image only']['auroc'][f.slug])} | {s['all']['f1'][f.slug]} | "
            f"{report['thresholds'][f.slug]:.3f} | {report['verify_thresholds'][f.slug]:.3f} |"
        )
    lines += [
        "",
        "## Modality ablation",
        "",
        "| inputs | macro AUROC [95% CI] | micro AUROC | macro F1 | ECE "
        "| mean weights (image, EMR, dictation) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in s.items():
        lines.append(
            f"| {name} | {_fmt(m['macro_auroc'])} | {_fmt(m['micro_auroc'])} | {m['macro_f1']} | "
            f"{m['ece']} | {m['mean_modality_weights']} |"
        )
    hard = report["hard_split"]
    lines += ["", f"## Hard split ({hard['studies']} studies: {hard['reasons']})", ""]
    lines += ["| subset | macro AUROC [95% CI] | micro AUROC |", "| --- | --- | --- |"]
    for key, value in hard.items():
        if (
            isinstance(value, dict)
            and "macro_auroc" in value
            and isinstance(value["macro_auroc"], dict)
        ):
            lines.append(f"| {key} | {_fmt(value['macro_auroc'])} | {_fmt(value['micro_auroc'])} |")
    for key, value in hard.items():
        if key.startswith("reason: "):
            lines.append(
                f"| {key} ({value['studies']}) | {value['macro_auroc (all)']} "
                f"(image only {value['macro_auroc (image only)']}) | |"
            )
    if report.get("nodules"):
        lines += [
            "",
            "## Nodules",
            "",
            "| subset | true | detected | sensitivity | FP/study | diameter MAE mm | MAE 3-6 mm |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, n in (("all", report["nodules"]), ("hard", hard.get("nodules"))):
            if n:
                lines.append(
                    f"| {name} | {n['true_nodules']} | {n['detected']} | {n['sensitivity']} | "
                    f"{n['false_positives_per_study']} | {n['diameter_mae_mm']} | "
                    f"{n['diameter_mae_3_6mm']} |"
                )
        nodule_all = report["nodules"]
        lines += [
            "",
            "Diameter: measured on the image where the nodule is at least "
            f"{nodule_measure.MIN_MEASURED_MM:g} mm (share measured: "
            f"{nodule_all.get('measured_share')}), the refiner's reading below; refiner "
            f"alone: MAE {nodule_all.get('diameter_mae_refiner_only_mm')} mm.",
            "",
            "| matched nodules | n | diameter MAE mm | mean error mm | refiner alone MAE mm |",
            "| --- | --- | --- | --- | --- |",
        ]
        for group in ("diameter_by_size", "diameter_by_type"):
            for name, g in (nodule_all.get(group) or {}).items():
                lines.append(
                    f"| {name} | {g['matched']} | {g['mae_mm']} | {g['bias_mm']} | "
                    f"{g['refiner_only_mae_mm']} |"
                )
    lines += [
        "",
        "## Dictation gate (dictation only, simulated at a fixed SNR)",
        "",
        "| SNR | mean weight | max weight | share below 0.2 | macro AUROC |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, g in report["dictation_gate"].items():
        lines.append(
            f"| {key} | {g['mean_weight']} | {g['max_weight']} | "
            f"{g[f'fraction_below_{LOW_GATE_WEIGHT}']} | {g['macro_auroc']} |"
        )
    lines += ["", "## Summary", "", "```", json.dumps(report["summary"], indent=2), "```", ""]
    return "\n".join(lines)


def plot(
    report: dict[str, Any], probabilities: np.ndarray, labels: np.ndarray, out_dir: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["scenarios"]
    names = [f.slug.replace("_", " ") for f in FINDINGS]
    figure, axis = plt.subplots(figsize=(12, 5))
    for offset, scenario, colour in ((-0.2, "image only", "C0"), (0.2, "all", "C1")):
        values = [s[scenario]["auroc"][f.slug] for f in FINDINGS]
        centre = [v["value"] or math.nan for v in values]
        low = [
            c - (v["low"] if v["low"] is not None else c)
            for c, v in zip(centre, values, strict=True)
        ]
        high = [
            (v["high"] if v["high"] is not None else c) - c
            for c, v in zip(centre, values, strict=True)
        ]
        axis.bar(
            np.arange(len(names)) + offset,
            centre,
            width=0.4,
            yerr=[low, high],
            label=scenario,
            color=colour,
        )
    axis.axhline(0.95, color="grey", linestyle="--", linewidth=1)
    axis.set_ylim(0.4, 1.01)
    axis.set_xticks(np.arange(len(names)), names, rotation=60, ha="right")
    axis.set_ylabel("AUROC (95% CI)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out_dir / "auroc_per_finding.png", dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 4))
    scenario_names = list(s)
    centre = [s[n]["macro_auroc"]["value"] or math.nan for n in scenario_names]
    low = [
        c - (s[n]["macro_auroc"]["low"] or c) for c, n in zip(centre, scenario_names, strict=True)
    ]
    high = [
        (s[n]["macro_auroc"]["high"] or c) - c for c, n in zip(centre, scenario_names, strict=True)
    ]
    axis.bar(scenario_names, centre, yerr=[low, high], color="C2")
    finite = [c for c in centre if not math.isnan(c)]
    axis.set_ylim(min(finite, default=0.5) - 0.05, 1.0)
    axis.set_ylabel("macro AUROC (95% CI)")
    plt.setp(axis.get_xticklabels(), rotation=30, ha="right")
    figure.tight_layout()
    figure.savefig(out_dir / "ablation.png", dpi=100)
    plt.close(figure)

    mean_p, freq, _ = metrics.reliability_curve(probabilities, labels)
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--")
    axis.plot(mean_p, freq, marker="o")
    axis.set_xlabel("predicted probability")
    axis.set_ylabel("observed frequency")
    axis.set_title(f"reliability (ECE {s['all']['ece']})")
    figure.tight_layout()
    figure.savefig(out_dir / "reliability.png", dpi=100)
    plt.close(figure)
