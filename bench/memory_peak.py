"""What is live on the GPU at a training step's memory peak.

Reads an allocator history written by ``bench_train_gpu.py --memory-snapshot FILE``
(``torch.cuda.memory._snapshot`` format, gzipped pickle), replays its alloc and free
events from the memory allocated when recording began, and prints:

- the peak and which phase of the step it falls in (forward, backward, optimizer);
- the memory curve at a few points of the step, with the phase boundaries;
- the blocks live at the peak, grouped by where they were allocated (the innermost
  frame in this repository and the innermost ATen/cuDNN frame), largest first.

Runs anywhere (no GPU needed)::

    python bench/memory_peak.py mem.bf16.pickle.gz [--top 25]
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OWN_CODE = ("/models/", "bench_train_gpu", "/app/")
OP_MARKERS = ("at::native::", "cudnn", "at::_ops::", "autograd::generated")
SKIPPED_OPS = ("empty", "allocator", "Allocator", "malloc", "c10::", "_ops::to", "copy_")


@dataclass(frozen=True)
class Peak:
    bytes: int
    index: int
    live: dict[int, dict[str, Any]]
    curve: list[tuple[int, int]]
    backward_start: int | None
    optimizer_start: int | None


def _frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    return list(event.get("frames") or [])


def _is_backward(event: dict[str, Any]) -> bool:
    return any("autograd::Engine" in str(f.get("name", "")) for f in _frames(event))


def _is_optimizer(event: dict[str, Any]) -> bool:
    return any("/optim/" in str(f.get("filename", "")) for f in _frames(event))


def replay(snapshot: dict[str, Any], points: int = 40) -> Peak:
    events = [e for e in snapshot["device_traces"][0] if e.get("action")]
    current = int(snapshot.get("radscribe_baseline_bytes", 0))
    live: dict[int, dict[str, Any]] = {}
    best, best_index, best_live = current, -1, dict(live)
    curve: list[tuple[int, int]] = []
    step = max(1, len(events) // points)
    backward_start = optimizer_start = None
    for index, event in enumerate(events):
        action = event["action"]
        if action == "alloc":
            live[event["addr"]] = event
            current += int(event["size"])
            if backward_start is None and _is_backward(event):
                backward_start = index
            if optimizer_start is None and _is_optimizer(event):
                optimizer_start = index
            if current > best:
                best, best_index, best_live = current, index, dict(live)
        elif action == "free_requested" and event["addr"] in live:
            current -= int(live.pop(event["addr"])["size"])
        if index % step == 0:
            curve.append((index, current))
    return Peak(best, best_index, best_live, curve, backward_start, optimizer_start)


def site(event: dict[str, Any]) -> str:
    """Where a block came from: own-code frame | innermost op frame."""
    frames = _frames(event)
    own = next(
        (
            f"{Path(str(f['filename'])).name}:{f['line']} {f['name']}"
            for f in frames
            if any(mark in str(f.get("filename", "")) for mark in OWN_CODE)
        ),
        "?",
    )
    op = next(
        (
            str(f["name"])[:90]
            for f in frames
            if any(mark in str(f.get("name", "")) for mark in OP_MARKERS)
            and not any(skip in str(f.get("name", "")) for skip in SKIPPED_OPS)
        ),
        "?",
    )
    return f"{own} | {op}"


def phase(index: int, peak: Peak) -> str:
    if peak.optimizer_start is not None and index >= peak.optimizer_start:
        return "optimizer"
    if peak.backward_start is not None and index >= peak.backward_start:
        return "backward"
    return "forward"


def report(snapshot: dict[str, Any], top: int) -> list[str]:
    peak = replay(snapshot)
    gib = 2**30
    baseline = int(snapshot.get("radscribe_baseline_bytes", 0))
    lines = [
        f"baseline (weights, optimizer state, inputs) {baseline / gib:.3f} GiB",
        f"peak {peak.bytes / gib:.3f} GiB at event {peak.index} ({phase(peak.index, peak)}); "
        f"backward from event {peak.backward_start}, optimizer from {peak.optimizer_start}",
        "curve (event: GiB): " + ", ".join(f"{i}: {b / gib:.2f}" for i, b in peak.curve),
    ]
    if peak.index >= 0:
        events = [e for e in snapshot["device_traces"][0] if e.get("action")]
        lines.append(f"allocation that made the peak: {site(events[peak.index])}")
    groups: dict[str, list[int]] = defaultdict(list)
    for event in peak.live.values():
        groups[site(event)].append(int(event["size"]))
    lines.append(f"{'MiB':>9} {'blocks':>6}  allocated at (own frame | op)")
    ranked = sorted(groups.items(), key=lambda item: -sum(item[1]))
    for name, sizes in ranked[:top]:
        lines.append(f"{sum(sizes) / 2**20:>9.1f} {len(sizes):>6}  {name}")
    rest = sum(sum(sizes) for _, sizes in ranked[top:])
    lines.append(f"{rest / 2**20:>9.1f}  (other sites)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshot", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for path in args.snapshot:
        with gzip.open(path, "rb") as handle:
            snapshot = pickle.load(handle)
        print(f"== {path}")
        for line in report(snapshot, args.top):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
