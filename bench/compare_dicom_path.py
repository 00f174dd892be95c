"""Image-only findings of checkpoints on synthetic studies that go through the DICOM path.

Training and ``radscribe evaluate`` render synthetic studies at model resolution (the
fast path).  The product drafts DICOM files at their own resolution through
``models.preprocess``.  This renders ``--count`` studies as DICOM files (``--slices`` x
``--matrix``^2, seeds from ``--first-seed``, kept under ``--work`` for reuse), drafts each
from its images alone with every checkpoint given, and prints per checkpoint the macro
AUROC and the errors per finding at the checkpoint's own decision thresholds.

    .venv/bin/python bench/compare_dicom_path.py \
        --checkpoint models/weights/radscribe-synthetic-v1.json --checkpoint OTHER.json \
        --count 30 --slices 160 --matrix 256
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from app.services.synthetic_study import write_synthetic_study
from models.checkpoint import load_checkpoint
from models.findings import FINDINGS
from models.inference import Drafter
from models.training.metrics import auroc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, action="append", required=True)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--slices", type=int, default=160)
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/radscribe-dicom-path"))
    args = parser.parse_args()
    drafters = {
        str(path): Drafter(load_checkpoint(path), device="cpu", precision="fp32")
        for path in args.checkpoint
    }
    probabilities: dict[str, list[list[float]]] = {name: [] for name in drafters}
    labels: list[list[float]] = []
    for seed in range(args.first_seed, args.first_seed + args.count):
        folder = args.work / f"{args.slices}-{args.matrix}-{seed}"
        if (folder / "truth.json").is_file():
            truth = json.loads((folder / "truth.json").read_text())
        else:
            truth = write_synthetic_study(
                folder,
                seed=seed,
                n_slices=args.slices,
                matrix=args.matrix,
                masks=False,
                audio=False,
            )
        labels.append([float(truth["labels"][f.value]) for f in FINDINGS])
        for name, drafter in drafters.items():
            result = drafter.draft(folder / truth["files"]["dicom"])
            probabilities[name].append([result.probabilities[f.slug] for f in FINDINGS])
    y = np.array(labels)
    print(f"{len(y)} studies, {args.slices} x {args.matrix}^2, images only")
    for name, drafter in drafters.items():
        p = np.array(probabilities[name])
        thresholds = np.array([drafter.meta.thresholds[f.slug] for f in FINDINGS])
        errors = ((p >= thresholds) != (y > 0.5)).sum(0)
        aurocs = [auroc(p[:, j], y[:, j]) for j in range(len(FINDINGS))]
        known = [a for a in aurocs if not np.isnan(a)]
        print(f"{name}: macro AUROC {np.mean(known):.3f} over {len(known)} findings")
        print(
            "  errors at thresholds:",
            {f.slug: int(e) for f, e in zip(FINDINGS, errors, strict=True) if e},
        )


if __name__ == "__main__":
    main()
