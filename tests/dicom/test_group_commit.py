"""Group commit with real peers: several storescu associations at once, one node.

Every instance of every association is stored byte for byte and indexed, and
for each one the node kept the order the Success status depends on: a flush
that started after its file was complete ended before the file was renamed,
one that started after the rename ended before its row was committed, and
the row before the Success response went to the socket.  The flushes are shared: fewer than one
per instance where one for the bytes and one for the rename of each would be
two.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_node import storage as storage_module
from dicom_node.index import RecordResult, StoredInstance
from dicom_node.reactor import EventDrivenDUL
from dicom_node.storage import TemporaryFile, _FileSystemSync, _libc_syncfs

from .conftest import (  # type: ignore[import-not-found]
    DCMTK_ENV,
    STORESCU,
    RunningNode,
    dataset_bytes,
    write_ct_series,
)

StartNode = Callable[..., RunningNode]
ASSOCIATIONS = 4
SLICES = 40
# Each flush made to take this much longer than the disk needs (still flushing
# for real), so instances of the four associations arrive during it.
FLUSH_DELAY_SECONDS = 0.01


class _Steps:
    """The real steps of the node's receive path, spied on in time order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, node: RunningNode) -> None:
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        real_submit = storage_module._CommitGroup.submit
        real_syncfs = _FileSystemSync.__call__
        real_replace = os.replace
        index = node.component.node.services.index
        real_record = index.record_instance
        real_send_command = EventDrivenDUL.send_command

        def submit(group: storage_module._CommitGroup, temporary: TemporaryFile) -> None:
            self.note("complete", str(temporary.path))
            real_submit(group, temporary)

        def syncfs(flush: _FileSystemSync) -> None:
            self.note("flush-start", "")
            time.sleep(FLUSH_DELAY_SECONDS)
            real_syncfs(flush)
            self.note("flush-end", "")

        def replace(source: str | Path, destination: str | Path) -> None:
            real_replace(source, destination)
            self.note("rename", f"{source} -> {destination}")

        def record_instance(instance: StoredInstance) -> RecordResult:
            self.note("row", instance.storage_path)
            result = real_record(instance)
            self.note("row-committed", instance.storage_path)
            return result

        def send_command(dul: EventDrivenDUL, context_id: int, command: bytes) -> None:
            self.note("response", command.decode("latin-1"))
            real_send_command(dul, context_id, command)

        monkeypatch.setattr(storage_module._CommitGroup, "submit", submit)
        monkeypatch.setattr(_FileSystemSync, "__call__", syncfs)
        monkeypatch.setattr(storage_module.os, "replace", replace)
        monkeypatch.setattr(index, "record_instance", record_instance)
        monkeypatch.setattr(EventDrivenDUL, "send_command", send_command)

    def note(self, kind: str, detail: str) -> None:
        with self._lock:
            self.events.append((kind, detail))

    def flush_between(self, after: int, before: int) -> bool:
        """Whether a whole flush ran between two events (started after, ended before)."""
        for first in range(after + 1, before):
            if self.events[first][0] == "flush-start":
                return ("flush-end", "") in self.events[first + 1 : before]
        return False

    def count(self, kind: str) -> int:
        return sum(1 for event in self.events if event[0] == kind)


@pytest.mark.skipif(_libc_syncfs() is None, reason="the group flush is syncfs (Linux)")
def test_four_associations_at_once_are_stored_indexed_and_durable_before_their_rows(
    start_node: StartNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = start_node()
    series = write_ct_series(tmp_path / "series", slices=SLICES, size=64)
    steps = _Steps(monkeypatch, node)
    parts = [series.files[i::ASSOCIATIONS] for i in range(ASSOCIATIONS)]
    senders = [
        subprocess.Popen(
            [STORESCU, "-aet", "STORESCU", "-aec", "RADSCRIBE", "127.0.0.1", str(node.port)]
            + [str(p) for p in part],
            env=DCMTK_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for part in parts
    ]
    for sender in senders:
        _out, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err

    rows = node.instances()
    assert len(rows) == SLICES
    storage = node.storage
    for path in series.files:
        sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        relative = rows[sop].storage_path
        assert dataset_bytes(storage / relative) == dataset_bytes(path)
        destination = node.component.node.services.store.absolute(relative)
        renamed_at, source = next(
            (at, detail.partition(" -> ")[0])
            for at, (kind, detail) in enumerate(steps.events)
            if kind == "rename" and detail.endswith(f" -> {destination}")
        )
        completed_at = steps.events.index(("complete", source))
        row_at = steps.events.index(("row", relative))
        assert steps.flush_between(completed_at, renamed_at), f"{sop}: renamed before durable"
        assert steps.flush_between(renamed_at, row_at), f"{sop}: row before the rename flush"
        committed_at = steps.events.index(("row-committed", relative))
        responded_at = next(
            at
            for at, (kind, detail) in enumerate(steps.events)
            if kind == "response" and sop in detail
        )
        assert row_at < committed_at < responded_at, f"{sop}: Success before its row"
    assert steps.count("flush-start") < SLICES
