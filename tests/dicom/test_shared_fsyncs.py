"""Shared folder fsyncs with real peers: several storescu associations at once, one node.

Every instance of every association is stored byte for byte and indexed, and
for each one the node kept the order the Success status depends on: its file
fsynced before it was renamed, an fsync of its folder that started after the
rename ended before its row was committed, and the row before the Success
response went to the socket.  The folder fsyncs are shared: fewer than one
per instance.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from dicom_node import storage as storage_module
from dicom_node.index import RecordResult, StoredInstance
from dicom_node.reactor import EventDrivenDUL, StreamingDimse

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
# Each folder fsync made to take this much longer than the disk needs (still
# syncing for real), so instances of the four associations arrive during it.
FLUSH_DELAY_SECONDS = 0.01


class _Steps:
    """The real steps of the node's receive path, spied on in time order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, node: RunningNode) -> None:
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        real_fsync = os.fsync
        real_fsync_directory = storage_module.fsync_directory
        real_replace = os.replace
        index = node.component.node.services.index
        real_record = index.record_instance
        real_send_command = EventDrivenDUL.send_command
        real_send_msg = StreamingDimse.send_msg

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            real_fsync(fd)
            self.note("fsynced", path)

        def fsync_directory(path: Path) -> None:
            self.note("folder-start", str(path))
            time.sleep(FLUSH_DELAY_SECONDS)
            real_fsync_directory(path)
            self.note("folder-end", str(path))

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

        # A request that found the association thread busy is served there, the
        # response going out through pynetdicom's DIMSE layer instead.
        def send_msg(dimse: StreamingDimse, primitive: Any, context_id: int) -> None:
            self.note("response", str(getattr(primitive, "AffectedSOPInstanceUID", "")))
            real_send_msg(dimse, primitive, context_id)

        monkeypatch.setattr(storage_module.os, "fsync", fsync)
        monkeypatch.setattr(storage_module, "fsync_directory", fsync_directory)
        monkeypatch.setattr(storage_module.os, "replace", replace)
        monkeypatch.setattr(index, "record_instance", record_instance)
        monkeypatch.setattr(EventDrivenDUL, "send_command", send_command)
        monkeypatch.setattr(StreamingDimse, "send_msg", send_msg)

    def note(self, kind: str, detail: str) -> None:
        with self._lock:
            self.events.append((kind, detail))

    def folder_synced_between(self, folder: str, after: int, before: int) -> bool:
        """Whether a whole fsync of ``folder`` ran between two events."""
        for first in range(after + 1, before):
            if self.events[first] == ("folder-start", folder):
                return ("folder-end", folder) in self.events[first + 1 : before]
        return False


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
        assert steps.events.index(("fsynced", source)) < renamed_at, f"{sop}: not durable"
        row_at = steps.events.index(("row", relative))
        folder = str(destination.parent)
        assert steps.folder_synced_between(folder, renamed_at, row_at), f"{sop}: row too early"
        committed_at = steps.events.index(("row-committed", relative))
        responded_at = next(
            at
            for at, (kind, detail) in enumerate(steps.events)
            if kind == "response" and sop in detail
        )
        assert row_at < committed_at < responded_at, f"{sop}: Success before its row"
    series_folder = str(node.storage.resolve() / series.study_uid / series.series_uid)
    assert 1 <= steps.events.count(("folder-start", series_folder)) < SLICES
