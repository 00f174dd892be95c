"""Nodule detection and diameter error on the synthetic test split, by size and type.

The nodule part of ``radscribe evaluate`` alone (all inputs given, the stored
objectness threshold), so it runs on a CPU in minutes: the diameter a draft states
(measured on the image from ``MIN_MEASURED_MM`` up, the refiner's reading below)
side by side with the refiner's reading alone, per size bin and per nodule type.

    .venv/bin/python bench/bench_nodule_diameter.py --count 500            # the test split
    .venv/bin/python bench/bench_nodule_diameter.py --count 100 --json out.json

Studies are generated (fast path, as in training) and cached under ``--cache``
the first time; 500 studies take about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from models.checkpoint import load_checkpoint  # noqa: E402
from models.nodule_measure import MIN_MEASURED_MM  # noqa: E402
from models.training.config import DataConfig, DictationConfig  # noqa: E402
from models.training.data import StudyTable, assign_texts  # noqa: E402
from models.training.evaluate import nodule_metrics  # noqa: E402
from models.training.sources import open_split  # noqa: E402
from models.training.text_cache import (  # noqa: E402
    TextEmbeddingStore,
    ensure_texts,
    text_encoder_id,
)
from models.training.trainer import predict  # noqa: E402

DEFAULT_CHECKPOINT = REPO / "models" / "weights" / "radscribe-synthetic-v1.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--count", type=int, default=500, help="test studies")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/radscribe-bench-nodules"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_checkpoint(args.checkpoint, device=device)
    model, meta = loaded.model, loaded.meta
    spec = meta.preprocess_spec
    data = DataConfig(
        layout="synthetic",
        root=args.cache / "data",
        synthetic_test=args.count,
        cache_workers=args.workers,
    )
    start = time.perf_counter()
    cached = open_split(data, "test", spec, args.cache / "cache", progress=False)
    generated_s = time.perf_counter() - start
    texts = assign_texts(cached.studies, seed=0, config=DictationConfig(), training=True)
    store = TextEmbeddingStore(args.cache / "cache", text_encoder_id(model))
    ensure_texts(store, texts, model=model, device=device)
    table = StudyTable(cached, texts, model_config=model.config, store=store)
    start = time.perf_counter()
    _, maps = predict(
        model, table, device, batch_size=4, amp_dtype=None, texts=texts, keep_nodule_maps=True
    )
    report = nodule_metrics(model, table, maps, meta.nodule_threshold, device, spec)
    run_s = time.perf_counter() - start
    if report is None:
        print("no study with known nodules", file=sys.stderr)
        return 1
    print(
        f"{meta.model_version}: {len(cached)} test studies ({generated_s:.0f} s to generate or "
        f"open, {run_s:.0f} s to run on {device.type})"
    )
    print(
        f"nodules {report['true_nodules']}, detected {report['detected']} "
        f"(sensitivity {report['sensitivity']}), false positives per study "
        f"{report['false_positives_per_study']}"
    )
    print(
        f"diameter MAE {report['diameter_mae_mm']} mm (measured from {MIN_MEASURED_MM:g} mm, "
        f"{report['measured_share']} of matches), refiner alone "
        f"{report['diameter_mae_refiner_only_mm']} mm; 3-6 mm: {report['diameter_mae_3_6mm']}"
    )
    false = report["false_candidates"]
    print(
        f"false candidates {false['count']}: {false['measured']} measured, stated diameter "
        f"median {false['stated_diameter_mm_median']} mm, largest {false['stated_diameter_mm_max']}"
    )
    print(f"{'group':<16} {'n':>4} {'MAE mm':>8} {'bias mm':>8} {'refiner MAE':>12}")
    for group in ("diameter_by_size", "diameter_by_type"):
        for name, g in report[group].items():
            print(
                f"{name:<16} {g['matched']:>4} {g['mae_mm']!s:>8} {g['bias_mm']!s:>8} "
                f"{g['refiner_only_mae_mm']!s:>12}"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
