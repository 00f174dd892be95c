"""Association set-up benchmark: a receiver's CPU per association, against DCMTK and Orthanc.

Run from the repository root::

    .venv/bin/python bench/bench_association.py                  # 60 associations, 3 rounds
    .venv/bin/python bench/bench_association.py --peers radscribe --variant old=/tmp/old

PACS and modalities often open an association per series, or even per image, so
what a receiver spends on setting one up counts as much as what it spends per
instance.  DCMTK ``storescu`` (TCP_NODELAY=1) sends one small CT instance
(64x64) per association, ``--associations`` times in a row, to each receiver
started fresh with empty storage (the same receivers as
``bench_dicom_receive.py``: ``radscribe`` with its durability on, DCMTK
``storescp``, Orthanc).  storescu proposes 128 storage SOP classes with three
transfer syntaxes each, as it does by default whatever it sends; the receiver
has to decode, negotiate and answer all of them.

Printed per receiver: its CPU time per association (its process tree from
``/proc``, less what it spends idle over the same time, measured for a few
seconds before the round) and the median wall time of one storescu run (mostly
storescu's own start-up).  Medians over ``--rounds``, peers interleaved in each
round; ``--variant NAME=DIR`` adds radscribe from another source tree and
prints its CPU per association over this checkout's, paired by round.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import bench_dicom_receive as receive

IDLE_SECONDS = 3.0
SIZE = 64


def associations_cost(receiver: receive.Receiver, files: Sequence[Path]) -> tuple[float, float]:
    """(CPU seconds per association less idle CPU, median wall seconds per storescu run)."""
    sender = [receive.STORESCU, "-aet", "STORESCU", "-aec", "RADSCRIBE", "127.0.0.1"]
    pid = receiver.process.pid
    before = receive.tree_cpu_seconds(pid)
    time.sleep(IDLE_SECONDS)
    idle_rate = (receive.tree_cpu_seconds(pid) - before) / IDLE_SECONDS
    walls = []
    cpu_start, wall_start = receive.tree_cpu_seconds(pid), time.perf_counter()
    for path in files:
        started = time.perf_counter()
        subprocess.run(
            [*sender, str(receiver.port), str(path)],
            env=receive.TOOL_ENV,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        walls.append(time.perf_counter() - started)
    elapsed = time.perf_counter() - wall_start
    cpu = receive.tree_cpu_seconds(pid) - cpu_start - idle_rate * elapsed
    return cpu / len(files), statistics.median(walls)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--associations", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", default="radscribe,storescp,orthanc")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--work", type=Path, default=None, help="folder for data (default: tmp)")
    args = parser.parse_args(argv)
    peers, variants = receive.parse_peers(parser, args.peers, args.variant)
    work = Path(tempfile.mkdtemp(prefix="bench-assoc-", dir=args.work))
    files = receive.write_series(work / "series", args.associations, SIZE)
    print(
        f"{args.associations} associations of one {SIZE}x{SIZE} CT instance each; "
        f"rounds: {args.rounds}",
        flush=True,
    )
    cpu: dict[str, list[float]] = {peer: [] for peer in peers}
    wall: dict[str, list[float]] = {peer: [] for peer in peers}
    for round_number in range(1, args.rounds + 1):
        order = peers[round_number - 1 :] + peers[: round_number - 1]
        for peer in order:
            folder = work / f"round{round_number}-{peer}"
            folder.mkdir()
            receiver = receive.start(peer, folder, 1, 1, variants)
            try:
                per_association, median_wall = associations_cost(receiver, files)
                problem = receiver.check(len(files)) if receiver.check else ""
            finally:
                receiver.stop()
            if problem:
                print(f"{peer}: {problem}", file=sys.stderr)
                return 1
            cpu[peer].append(per_association)
            wall[peer].append(median_wall)
            print(
                f"  round {round_number} {peer:22s} {per_association * 1000:6.2f} ms CPU/assoc"
                f"   storescu run {median_wall * 1000:6.1f} ms",
                flush=True,
            )
    print(f"\n{'receiver':24s} {'CPU ms/assoc':>12s} {'storescu ms':>12s}   (median of rounds)")
    for peer in peers:
        print(
            f"{peer:24s} {statistics.median(cpu[peer]) * 1000:12.2f} "
            f"{statistics.median(wall[peer]) * 1000:12.1f}"
        )
    if "radscribe" in cpu:
        for peer in peers:
            if peer != "radscribe":
                ratios = [
                    mine / theirs for mine, theirs in zip(cpu["radscribe"], cpu[peer], strict=True)
                ]
                print(
                    f"radscribe CPU per association / {peer}: "
                    f"{statistics.median(ratios):.2f}x (paired by round)"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
