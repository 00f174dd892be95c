"""Content digest benchmark: BLAKE3 (the node's) against SHA-256 (its former), per CT slice.

Run from the repository root::

    .venv/bin/python bench/bench_digest.py
    .venv/bin/python bench/bench_digest.py --size 256 --repeats 2000

Hashes a ``--size`` x ``--size`` 16-bit slice's worth of bytes, fed in the
128 KiB fragments that storescu's PDUs carry, as the receive path does
(``dicom_node.digest``), and prints the median milliseconds per slice of
each algorithm over ``--rounds`` rounds of ``--repeats`` slices, and their
ratio.  SHA-256 runs on OpenSSL (with the CPU's SHA extensions where it has
them), BLAKE3 on the ``blake3`` package (SIMD, one thread).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence

from dicom_node.digest import ALGORITHM, LEGACY_ALGORITHM, digest_of

FRAGMENT = 128 * 1024 - 12  # a storescu P-DATA-TF's data bytes


def per_slice_ms(algorithm: str, fragments: Sequence[memoryview], repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        digest_of(fragments, algorithm)
    return (time.perf_counter() - started) / repeats * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    data = os.urandom(args.size * args.size * 2 + 1200)  # pixels and a header
    view = memoryview(data)
    fragments = [view[i : i + FRAGMENT] for i in range(0, len(data), FRAGMENT)]
    timings: dict[str, list[float]] = {ALGORITHM: [], LEGACY_ALGORITHM: []}
    for _ in range(args.rounds):
        for algorithm, values in timings.items():  # interleaved: same machine state
            values.append(per_slice_ms(algorithm, fragments, args.repeats))
    medians = {name: statistics.median(values) for name, values in timings.items()}
    print(f"slice: {len(data) / 1e3:.0f} kB in {len(fragments)} fragments; rounds: {args.rounds}")
    for name, value in medians.items():
        print(f"  {name:<8} {value:7.3f} ms per slice  {len(data) / value / 1e6:6.2f} GB/s")
    ratio = medians[ALGORITHM] / medians[LEGACY_ALGORITHM]
    print(f"{ALGORITHM} / {LEGACY_ALGORITHM}: {ratio:.2f}x the time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
