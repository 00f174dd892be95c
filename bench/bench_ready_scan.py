"""Series selection benchmark: ranking a ready series from index rows against reading
every header from its file (how the node ranked series before revision 0007).

Run from the repository root::

    .venv/bin/python bench/bench_ready_scan.py                  # 200 x 512x512, 5 rounds
    .venv/bin/python bench/bench_ready_scan.py --slices 1000 --rounds 3

Generates a CT series (as ``bench_dicom_receive.py`` does), copies it into an
instance store and indexes it in a fresh SQLite database (migrated to head)
with the node's start-up recovery, which parses and records each file as the
receive path does.  Then, for ``--rounds`` rounds, a fresh
``ReadyScanner`` ranks the study (``select_study``: the index query, the
slice summaries and the selection rules) in two ways:

- ``rows``: from what the index kept of each header (``selection_attributes``);
- ``files``: the same rows with those attributes cleared, so the scanner reads
  each instance's header from its file (warm page cache, no pixel data read).

Prints the median milliseconds and CPU milliseconds per ranking, per slice,
and files over rows.  The ranking is checked to be the same both ways.  The
ready scanner runs in the node's main process, beside the receivers, once
per series content version: its CPU is taken from receiving the next series.

On the 2-CPU VM, 2026-11-30, 200 x 512x512, 5 rounds: 11.4 ms from rows
against 156.6 ms from files (0.78 ms per slice), 13.8x; a 3-round run gave 12.4
against 193.7 ms (15.6x).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench_dicom_receive import write_series
from sqlalchemy import select, update

from app.core import migrate
from app.core.db import make_engine, make_session_factory
from app.core.tables import Instance
from app.services.dicom_index import SqlInstanceIndex
from dicom_node.digest import digest_of
from dicom_node.header import read_header_file
from dicom_node.index import SeriesDecision
from dicom_node.recovery import recover_storage
from dicom_node.series import ReadyScanner
from dicom_node.storage import InstanceStore, instance_relative_path


def store_series(store: InstanceStore, files: Sequence[Path]) -> str:
    """Put the files where the store keeps them (the node indexes them at start-up)."""
    study = ""
    for path in files:
        header = read_header_file(path)
        target = store.absolute(
            instance_relative_path(
                study_instance_uid=header.study_instance_uid,
                series_instance_uid=header.series_instance_uid,
                sop_instance_uid=header.sop_instance_uid,
                digest=digest_of(path.read_bytes()),
            )
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        study = header.study_instance_uid
    return study


def rank(
    index: SqlInstanceIndex, store: InstanceStore, study: str
) -> tuple[float, float, list[SeriesDecision]]:
    scanner = ReadyScanner(index=index, store=store)  # fresh: no remembered summaries
    wall, cpu = time.perf_counter(), time.process_time()
    decisions = scanner.select_study(study)
    return time.perf_counter() - wall, time.process_time() - cpu, decisions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-ready-scan-") as folder:
        work = Path(folder)
        files = write_series(work / "series", args.slices, args.size)
        url = f"sqlite:///{work / 'radscribe.db'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        index = SqlInstanceIndex(factory)
        store = InstanceStore(root=work / "store")
        study = store_series(store, files)
        recover_storage(store, index)  # indexed as on receipt, the series closed
        ReadyScanner(index=index, store=store, quiet_seconds=0.0).scan_once()  # now ready

        with factory() as session:
            kept = session.execute(select(Instance.id, Instance.selection_attributes)).all()

        times: dict[str, list[tuple[float, float]]] = {"rows": [], "files": []}
        expected: list[SeriesDecision] | None = None
        for _round in range(args.rounds):
            for way in ("rows", "files"):
                with factory() as session, session.begin():
                    for row_id, attributes in kept:
                        session.execute(
                            update(Instance)
                            .where(Instance.id == row_id)
                            .values(selection_attributes=attributes if way == "rows" else None)
                        )
                wall, cpu, decisions = rank(index, store, study)
                if expected is None:
                    expected = decisions
                elif decisions != expected:
                    raise RuntimeError(f"ranking from {way} differs: {decisions} != {expected}")
                times[way].append((wall, cpu))
        engine.dispose()

    print(f"series: {args.slices} slices {args.size}x{args.size}; rounds: {args.rounds}")
    medians = {}
    for way, samples in times.items():
        wall = statistics.median(s[0] for s in samples) * 1000
        cpu = statistics.median(s[1] for s in samples) * 1000
        medians[way] = (wall, cpu)
        print(
            f"  from {way:<5}  {wall:8.1f} ms  {cpu:8.1f} ms CPU"
            f"  ({wall / args.slices:.3f} ms per slice)"
        )
    print(f"files / rows: {medians['files'][0] / medians['rows'][0]:.1f}x time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
