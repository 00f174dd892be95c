"""One index writer for several receiver processes.

With ``radscribe dicom serve --workers N`` every receiver would otherwise
commit its own rows, and with SQLite the processes then queue for the write
lock (each commit its own fsync, plus SQLite's busy back-off).  Instead the
parent runs :class:`IndexServer`: receivers send each instance over a local
socket (``multiprocessing.connection``, authenticated), the parent's
:class:`SqlInstanceIndex` commits whatever arrived together in one
transaction (group commit), and each receiver gets its own result back before
it answers the sender.  Reads go straight to the database.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from app.services.dicom_index import SqlInstanceIndex
from dicom_node.index import (
    KnownInstance,
    ReadySeries,
    RecordResult,
    SeriesDecision,
    SeriesFile,
    StoredInstance,
)

log = logging.getLogger(__name__)

RECORD = "record"
CLOSE_SERIES = "close_series"
OK = "ok"
ERROR = "error"


@dataclass(frozen=True)
class IndexAddress:
    """Where receivers reach the index writer (picklable, passed to spawned processes)."""

    path: str
    authkey: bytes


@dataclass
class IndexServer:
    """The parent's side: answers record/close requests from receiver processes."""

    index: SqlInstanceIndex
    _folder: tempfile.TemporaryDirectory[str] = field(
        default_factory=lambda: tempfile.TemporaryDirectory(prefix="radscribe-index-")
    )
    _authkey: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _listener: Listener | None = field(default=None, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)

    @property
    def address(self) -> IndexAddress:
        return IndexAddress(str(Path(self._folder.name) / "index.sock"), self._authkey)

    def start(self) -> None:
        self._listener = Listener(self.address.path, family="AF_UNIX", authkey=self._authkey)
        os.chmod(self.address.path, 0o600)
        accept = threading.Thread(target=self._accept, name="dicom-index-accept", daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn = self._listener.accept()
            except (OSError, EOFError):
                if self._stopping.is_set():
                    return
                log.warning("index server: a receiver failed to connect")
                continue
            thread = threading.Thread(
                target=self._serve, args=(conn,), name="dicom-index-conn", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: Connection) -> None:
        with conn:
            while True:
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    return
                try:
                    if kind == RECORD:
                        reply: tuple[str, Any] = (OK, self.index.record_instance(payload))
                    elif kind == CLOSE_SERIES:
                        self.index.close_series(payload)
                        reply = (OK, None)
                    else:
                        reply = (ERROR, f"unknown request {kind!r}")
                except Exception as exc:  # the receiver answers with a failure status
                    reply = (ERROR, f"{type(exc).__name__}: {exc}")
                try:
                    conn.send(reply)
                except (OSError, EOFError):
                    return

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        self._folder.cleanup()


class RemoteInstanceIndex:
    """A receiver's index: writes go to the parent's :class:`IndexServer`, reads to the DB."""

    def __init__(self, local: SqlInstanceIndex, address: IndexAddress) -> None:
        self._local = local
        self._address = address
        self._connections = threading.local()

    def _call(self, kind: str, payload: object) -> Any:
        conn: Connection | None = getattr(self._connections, "conn", None)
        if conn is None:
            conn = Client(self._address.path, family="AF_UNIX", authkey=self._address.authkey)
            self._connections.conn = conn
        try:
            conn.send((kind, payload))
            status, value = conn.recv()
        except (OSError, EOFError):
            self._connections.conn = None
            raise
        if status != OK:
            raise RuntimeError(f"index writer: {value}")
        return value

    def record_instance(self, instance: StoredInstance) -> RecordResult:
        result: RecordResult = self._call(RECORD, instance)
        return result

    def close_series(self, series_instance_uids: Collection[str]) -> None:
        self._call(CLOSE_SERIES, list(series_instance_uids))

    def find_instance(self, sop_instance_uid: str) -> KnownInstance | None:
        return self._local.find_instance(sop_instance_uid)

    def claim_ready_series(
        self, *, quiet_before: datetime, stale_before: datetime
    ) -> list[ReadySeries]:
        return self._local.claim_ready_series(quiet_before=quiet_before, stale_before=stale_before)

    def series_files(self, series_instance_uid: str) -> list[SeriesFile]:
        return self._local.series_files(series_instance_uid)

    def ready_series_of_study(self, study_instance_uid: str) -> list[ReadySeries]:
        return self._local.ready_series_of_study(study_instance_uid)

    def record_selection(
        self, study_instance_uid: str, decisions: Sequence[SeriesDecision]
    ) -> None:
        self._local.record_selection(study_instance_uid, decisions)

    def unindexed_paths(self, storage_paths: Sequence[str]) -> set[str]:
        return self._local.unindexed_paths(storage_paths)

    def close(self) -> None:
        self._local.close()
