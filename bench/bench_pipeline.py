"""From the last instance received to the draft stored, in the embedded mode.

A synthetic 300-slice 512x512 chest CT study (with its order and a dictation)
goes through ``radscribe serve``'s components in this process: the order over
MLLP, the dictation through the upload service, then the images with DCMTK's
storescu.  The clock starts when storescu returns (the last instance is
acknowledged and durable) and stops when the draft version is committed; the
job's stored stage timings give the breakdown.  Goal: at most the quiet
window plus 5 s.

    .venv/bin/python bench/bench_pipeline.py [--runs 3] [--slices 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from app.core.net import free_port
from app.core.settings import load_settings
from app.core.tables import Job, Report, ReportVersion, Study
from app.emr.client import send_messages_sync
from app.services.assembly import build_runtime
from app.services.dictation import store_dictation
from app.services.synthetic_study import write_synthetic_study

STORESCU = "/usr/bin/storescu"


def one_run(seed: int, slices: int, quiet: float, work: Path) -> dict[str, float]:
    settings = load_settings(
        env="development",
        data_dir=work / f"data-{seed}",
        http_port=free_port(),
        dicom_port=free_port(),
        hl7_port=free_port(),
        http_host="127.0.0.1",
        dicom_host="127.0.0.1",
        hl7_host="127.0.0.1",
        dicom_quiet_seconds=quiet,
        order_wait_seconds=30.0,
    )
    folder = work / f"study-{seed}"
    truth = write_synthetic_study(folder, seed=seed, n_slices=slices, matrix=512, masks=False)
    runtime = build_runtime(settings)
    runtime.start()
    try:
        factory = runtime.session_factory
        hl7 = [
            (folder / truth["hl7"][k]).read_bytes() for k in ("adt", "orm") if truth["hl7"].get(k)
        ]
        send_messages_sync("127.0.0.1", settings.hl7_port, hl7)
        # The first instance creates the study; the dictation is uploaded while images arrive.
        files = sorted((folder / truth["files"]["dicom"]).iterdir())
        env = {**os.environ, "TCP_NODELAY": "1"}
        base = [
            STORESCU,
            "-aet",
            "BENCH",
            "-aec",
            "RADSCRIBE",
            "127.0.0.1",
            str(settings.dicom_port),
        ]
        subprocess.run([*base, str(files[0])], check=True, env=env, capture_output=True)
        with factory() as session:
            study_id = session.scalar(
                select(Study.id).where(Study.study_instance_uid == truth["study"]["study_uid"])
            )
        audio = (truth.get("dictation") or {}).get("audio")
        if audio and study_id is not None:
            store_dictation(
                factory,
                data_dir=settings.data_dir,
                study_id=study_id,
                audio=(folder / audio["file"]).read_bytes(),
            )
        subprocess.run([*base, *map(str, files[1:])], check=True, env=env, capture_output=True)
        last_instance = time.perf_counter()
        while True:
            with factory() as session:
                version = session.scalar(
                    select(ReportVersion.id).join(Report).where(Report.study_id == study_id)
                )
                if version is not None:
                    job = session.scalars(
                        select(Job).where(Job.study_id == study_id).order_by(Job.id.desc())
                    ).first()
                    break
            if time.perf_counter() - last_instance > 600:
                raise RuntimeError("no draft within 600 s")
            time.sleep(0.05)
        total = time.perf_counter() - last_instance
        timings = dict(job.timings or {}) if job else {}
        return {"total": total, **{k: float(v) for k, v in timings.items()}}
    finally:
        runtime.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--quiet", type=float, default=2.0, help="quiet window (s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="radscribe-bench-") as tmp:
        runs = [one_run(1000 + i, args.slices, args.quiet, Path(tmp)) for i in range(args.runs)]
    keys = [
        "total",
        "context",
        "transcription",
        "load_model",
        "preprocess",
        "model",
        "report",
        "store",
    ]
    print(
        f"last instance -> draft stored, {args.slices} slices 512x512, quiet window "
        f"{args.quiet:g} s, {args.runs} runs (median)"
    )
    for key in keys:
        values = [r[key] for r in runs if key in r]
        if values:
            print(f"  {key:14s} {statistics.median(values):7.2f} s")
    waits = [r["total"] - sum(v for k, v in r.items() if k != "total") for r in runs]
    print(f"  {'quiet + queue':14s} {statistics.median(waits):7.2f} s  (total less the stages)")
    print("  totals:", " ".join(f"{r['total']:.2f}" for r in runs))
    median_total = statistics.median(r["total"] for r in runs)
    goal = args.quiet + 5.0
    verdict = "met" if median_total <= goal else "NOT met"
    print(f"goal: <= {goal:.1f} s (quiet window + 5 s): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
