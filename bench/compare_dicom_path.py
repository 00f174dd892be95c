"""Image-only findings of checkpoints on synthetic studies that go through the DICOM path.

Training and ``radscribe evaluate`` render synthetic studies at model resolution (the
fast path).  The product drafts DICOM files at their own resolution through
``models.preprocess``.  This renders ``--count`` studies as DICOM files (``--slices`` x
``--matrix``^2, seeds from ``--first-seed``, kept under ``--work`` for reuse), drafts each
from its images alone with every checkpoint given, and prints per checkpoint the macro
AUROC and the false positives and negatives per finding at the checkpoint's own decision
thresholds.  ``--fast-path`` also drafts the same studies as training renders them
(``models.training.synthetic_source``): where the two paths agree, the domain gap is
closed and what errors remain are the image pathway's own.

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
from models.preprocess import PreparedImage, PreprocessSpec, prepare_stack
from models.training.metrics import auroc
from models.training.synthetic_source import render_fast_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, action="append", required=True)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--slices", type=int, default=160)
    parser.add_argument("--matrix", type=int, default=256)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/radscribe-dicom-path"))
    parser.add_argument("--fast-path", action="store_true", help="also the training render")
    args = parser.parse_args()
    drafters = {
        str(path): Drafter(load_checkpoint(path), device="cpu", precision="fp32")
        for path in args.checkpoint
    }
    paths = ["DICOM", "fast"] if args.fast_path else ["DICOM"]
    probabilities: dict[tuple[str, str], list[list[float]]] = {
        (name, path): [] for name in drafters for path in paths
    }
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
        inputs = {"DICOM": folder / truth["files"]["dicom"]}
        if args.fast_path:
            inputs["fast"] = fast_path_image(seed, args.slices, args.matrix)
        for name, drafter in drafters.items():
            for path, image in inputs.items():
                result = drafter.draft(image)
                probabilities[name, path].append([result.probabilities[f.slug] for f in FINDINGS])
    y = np.array(labels)
    print(f"{len(y)} studies, {args.slices} x {args.matrix}^2, images only")
    for (name, path), rows in probabilities.items():
        p = np.array(rows)
        thresholds = np.array([drafters[name].meta.thresholds[f.slug] for f in FINDINGS])
        positive, truth = p >= thresholds, y > 0.5
        false_pos, false_neg = (positive & ~truth).sum(0), (~positive & truth).sum(0)
        aurocs = [auroc(p[:, j], y[:, j]) for j in range(len(FINDINGS))]
        known = [a for a in aurocs if not np.isnan(a)]
        print(
            f"{name} [{path} path]: macro AUROC {np.mean(known):.3f} over {len(known)} findings;"
            f" {int(false_pos.sum())} false positives, {int(false_neg.sum())} false negatives"
        )
        print(
            "  false positives:",
            {f.slug: int(e) for f, e in zip(FINDINGS, false_pos, strict=True) if e},
        )
        print(
            "  false negatives:",
            {f.slug: int(e) for f, e in zip(FINDINGS, false_neg, strict=True) if e},
        )


def fast_path_image(seed: int, slices: int, matrix: int) -> PreparedImage:
    """The study as training renders it: the same spec, straight onto the model's grid."""
    from models.synthetic.spec import sample_study_spec

    _, stack = render_fast_path(sample_study_spec(seed, n_slices=slices, matrix=matrix))
    return prepare_stack(stack, PreprocessSpec())


if __name__ == "__main__":
    main()
