"""GPU utilisation readings under a known load: NVML and nvidia-smi side by side.

    python bench/bench_gpu_utilisation.py [--out trace.csv] [--device cuda:0]

Runs bf16 matrix products on the GPU in phases of known duty cycle (idle, full load,
70 %, 30 %, idle) and, every half second, reads the GPU's utilisation through both sources
of ``app.services.gpu_utilisation`` (NVML through pynvml, and nvidia-smi, the peer), printing
per phase the median reading of each and how long one reading takes.  Meanwhile
``nvidia-smi -lms 250`` records the trace the load-adaptive precision tests replay
(``--out``).  Needs torch with CUDA and an NVIDIA driver; nothing from Radscribe's
dependencies beyond this repository on the path.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.services.gpu_utilisation import (
    NvidiaSmiSource,
    NvmlSource,
    Unavailable,
    UtilisationSource,
)

WINDOW_SECONDS = 0.2
READ_EVERY_SECONDS = 0.5
MATRIX = 8192
PHASES: tuple[tuple[str, float, float], ...] = (
    ("idle", 4.0, 0.0),
    ("full load", 12.0, 1.0),
    ("70% duty", 8.0, 0.7),
    ("30% duty", 8.0, 0.3),
    ("idle again", 6.0, 0.0),
)


@dataclass
class Reading:
    phase: str
    source: str
    percent: float | None
    seconds: float


def load(device: str, phases: tuple[tuple[str, float, float], ...], now: list[str]) -> None:
    """Keep the GPU busy for ``duty`` of every window, phase after phase."""
    import torch

    a = torch.randn(MATRIX, MATRIX, device=device, dtype=torch.bfloat16)
    b = torch.randn(MATRIX, MATRIX, device=device, dtype=torch.bfloat16)
    torch.cuda.synchronize(device)
    for name, seconds, duty in phases:
        now[0] = name
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            window_end = time.monotonic() + WINDOW_SECONDS
            busy_until = time.monotonic() + WINDOW_SECONDS * duty
            while time.monotonic() < busy_until:
                a @ b
                torch.cuda.synchronize(device)
            time.sleep(max(0.0, window_end - time.monotonic()))
    now[0] = "done"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--out", type=Path, default=Path("gpu-utilisation-trace.csv"))
    args = parser.parse_args()

    sources: dict[str, UtilisationSource] = {}
    for label, opener in (("NVML", NvmlSource.open), ("nvidia-smi", NvidiaSmiSource.open)):
        opened = opener(args.device)
        if isinstance(opened, Unavailable):
            print(f"{label}: unavailable ({opened.reason})")
        else:
            sources[label] = opened
            print(f"{label}: {opened.describe()}")
    if not sources:
        return 1

    recorder = None
    smi = shutil.which("nvidia-smi")
    if smi:
        recorder = subprocess.Popen(
            [smi, "--query-gpu=timestamp,utilization.gpu", "--format=csv,noheader,nounits",
             "-lms", "250", "--id=0"],
            stdout=args.out.open("w"),
        )  # fmt: skip
    phase = ["starting"]
    worker = threading.Thread(target=load, args=(args.device, PHASES, phase), daemon=True)
    worker.start()
    readings: list[Reading] = []
    while worker.is_alive():
        for label, source in sources.items():
            start = time.perf_counter()
            sample = source.read()
            readings.append(Reading(phase[0], label, sample.percent, time.perf_counter() - start))
        time.sleep(READ_EVERY_SECONDS)
    if recorder is not None:
        recorder.terminate()
        recorder.wait(timeout=10)

    print(f"\n{'phase':>12} {'duty':>5} " + " ".join(f"{s + ' %':>14}" for s in sources))
    for name, _, duty in PHASES:
        row = []
        for label in sources:
            values = [
                r.percent
                for r in readings
                if r.phase == name and r.source == label and r.percent is not None
            ] or [0.0]
            row.append(f"{statistics.median(values):>14.0f}")
        print(f"{name:>12} {duty:>5.0%} " + " ".join(row))
    print("\nseconds per reading (median, max):")
    for label in sources:
        times = [r.seconds for r in readings if r.source == label]
        failed = sum(1 for r in readings if r.source == label and r.percent is None)
        print(
            f"  {label:>10}: {statistics.median(times) * 1000:.2f} ms, {max(times) * 1000:.2f} ms"
            f" ({len(times)} readings, {failed} failed)"
        )
    if recorder is not None:
        print(f"\ntrace: {args.out} ({len(args.out.read_text().splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
