"""Synthetic study benchmark: seconds to write one 300-slice 512x512 study.

Run from the repository root::

    .venv/bin/python bench/bench_synth.py                 # 3 runs, 2 threads (2 cores)
    .venv/bin/python bench/bench_synth.py --runs 5 --threads 1

A "study" is what ``radscribe synth study`` writes for the volume: the phantom
and its findings rendered at 512x512 with 300 slices, the DICOM CT series
(300 files) and truth.json.  Measured, medians over ``--runs``:

- render: spec sampling, anatomy and findings, kernel, noise, int16 volume;
- DICOM: writing the 300 files (template encoded once, per-slice bytes patched);
- study: both plus the reference report and truth.json (the goal's number);
- with masks: the same plus the finding-mask and lesion-id NIfTI files.

The process is pinned to ``--threads`` CPUs where the OS allows, so a bigger
machine measures the same "2 cores" as the goal.  Goal: study <= 5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from models.findings import Finding
from models.synthetic.generator import render_study
from models.synthetic.spec import sample_study_spec
from models.synthetic.study_files import describe, write_study

GOAL_SECONDS = 5.0
BENCH_FINDINGS = (
    Finding.LUNG_NODULE,
    Finding.EMPHYSEMA,
    Finding.PLEURAL_EFFUSION,
    Finding.ARTERIAL_WALL_CALCIFICATION,
)


def one_run(
    seed: int, *, slices: int, matrix: int, threads: int, masks: bool, root: Path
) -> dict[str, float]:
    out = root / f"study-{seed}-{masks}"
    t0 = time.perf_counter()
    spec = sample_study_spec(
        seed, findings=BENCH_FINDINGS, n_slices=slices, matrix=matrix, hard=False
    )
    rendered = render_study(spec, with_masks=masks, threads=threads)
    t1 = time.perf_counter()
    study = describe(rendered)
    write_study(study, out, dicom=True, masks=masks, threads=threads)
    t2 = time.perf_counter()
    files = sum(1 for _ in (out / "dicom").iterdir())
    if files != slices:
        raise RuntimeError(f"expected {slices} DICOM files, found {files}")
    shutil.rmtree(out)
    return {"render": t1 - t0, "write": t2 - t1, "study": t2 - t0}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--matrix", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[: max(1, args.threads)])
    root = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    try:
        one_run(
            args.seed, slices=32, matrix=128, threads=args.threads, masks=False, root=root
        )  # warm up
        plain = [
            one_run(
                args.seed,
                slices=args.slices,
                matrix=args.matrix,
                threads=args.threads,
                masks=False,
                root=root,
            )
            for _ in range(args.runs)
        ]
        masked = [
            one_run(
                args.seed,
                slices=args.slices,
                matrix=args.matrix,
                threads=args.threads,
                masks=True,
                root=root,
            )
            for _ in range(args.runs)
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"synthetic study {args.matrix}x{args.matrix}x{args.slices}, "
        f"{args.threads} threads on {n_cpus} CPUs, median of {args.runs}"
    )
    print(f"{'':28s}{'seconds':>10s}{'goal':>10s}")
    print(f"{'render (volume + truth)':28s}{med(plain, 'render'):10.2f}{'':>10s}")
    print(f"{'DICOM + truth.json':28s}{med(plain, 'write'):10.2f}{'':>10s}")
    print(f"{'study (render + write)':28s}{med(plain, 'study'):10.2f}{GOAL_SECONDS:10.1f}")
    print(f"{'study with mask NIfTIs':28s}{med(masked, 'study'):10.2f}{'':>10s}")
    ok = med(plain, "study") <= GOAL_SECONDS
    print("goal met" if ok else "goal NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
