"""C-STORE SCU: send DICOM files and folders to a storage SCP.

Files are sent exactly as they are on disk (the data set after the File Meta
is streamed unchanged, in the file's own transfer syntax); nothing is
transcoded, so a peer that refuses a file's transfer syntax gets a clear
per-file error.  Used by ``radscribe dicom send``, the demo and the tests.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import AE, _config
from pynetdicom.dsutils import split_dataset

from dicom_node.server import DEFAULT_MAX_PDU

log = logging.getLogger(__name__)

MAX_CONTEXTS_PER_ASSOCIATION = 128
WARNING_STATUS_RANGE = range(0xB000, 0xC000)
SUCCESS = 0x0000


@dataclass(frozen=True)
class Destination:
    host: str
    port: int
    called_aet: str = "RADSCRIBE"
    calling_aet: str = "RADSCRIBE_SCU"
    max_pdu: int = DEFAULT_MAX_PDU
    tls: ssl.SSLContext | None = None
    timeout_seconds: float = 60.0


@dataclass(frozen=True)
class SendResult:
    path: Path
    sop_instance_uid: str | None
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and (
            self.status == SUCCESS or self.status in WARNING_STATUS_RANGE
        )


@dataclass(frozen=True)
class _Prepared:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """Every regular file named, and every file below each folder named, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        else:
            found.append(path)
    return found


def _prepare(path: Path) -> _Prepared | SendResult:
    try:
        meta, _offset = split_dataset(path)
    except Exception as exc:  # pydicom raises several kinds on non-DICOM input
        return SendResult(path, None, None, f"not a DICOM Part 10 file ({type(exc).__name__})")
    required = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
    missing = [keyword for keyword in required if not meta.get(keyword)]
    if missing:
        return SendResult(path, None, None, f"File Meta lacks {', '.join(missing)}")
    return _Prepared(
        path,
        str(meta.MediaStorageSOPClassUID),
        str(meta.MediaStorageSOPInstanceUID),
        str(meta.TransferSyntaxUID),
    )


def _batches(items: Sequence[_Prepared]) -> list[list[_Prepared]]:
    """Split so each association proposes at most 128 presentation contexts."""
    batches: list[list[_Prepared]] = []
    current: list[_Prepared] = []
    contexts: set[tuple[str, str]] = set()
    for item in items:
        key = (item.sop_class_uid, item.transfer_syntax_uid)
        if key not in contexts and len(contexts) == MAX_CONTEXTS_PER_ASSOCIATION:
            batches.append(current)
            current, contexts = [], set()
        contexts.add(key)
        current.append(item)
    if current:
        batches.append(current)
    return batches


def send_files(paths: Iterable[Path], destination: Destination) -> list[SendResult]:
    """Send every file (folders are walked); one result per file, in order."""
    # Stream each data set from its file unchanged instead of decoding and re-encoding it.
    _config.STORE_SEND_CHUNKED_DATASET = True
    results: dict[Path, SendResult] = {}
    prepared: list[_Prepared] = []
    files = collect_files(paths)
    for path in files:
        item = _prepare(path)
        if isinstance(item, SendResult):
            results[path] = item
        else:
            prepared.append(item)
    for batch in _batches(prepared):
        for result in _send_batch(batch, destination):
            results[result.path] = result
    return [results[path] for path in files]


def _send_batch(batch: Sequence[_Prepared], destination: Destination) -> list[SendResult]:
    ae = AE(ae_title=destination.calling_aet)
    ae.maximum_pdu_size = destination.max_pdu
    ae.acse_timeout = destination.timeout_seconds
    ae.dimse_timeout = destination.timeout_seconds
    ae.network_timeout = destination.timeout_seconds
    for key in dict.fromkeys((item.sop_class_uid, item.transfer_syntax_uid) for item in batch):
        ae.add_requested_context(key[0], [key[1]])
    tls_args = (destination.tls, destination.host) if destination.tls else None
    assoc = ae.associate(
        destination.host, destination.port, ae_title=destination.called_aet, tls_args=tls_args
    )
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        return [
            SendResult(item.path, item.sop_instance_uid, None, f"association {why}")
            for item in batch
        ]
    results: list[SendResult] = []
    try:
        for item in batch:
            if not assoc.is_established:
                results.append(
                    SendResult(item.path, item.sop_instance_uid, None, "association lost")
                )
                continue
            try:
                response = assoc.send_c_store(item.path)
            except ValueError as exc:  # no accepted presentation context for this file
                results.append(SendResult(item.path, item.sop_instance_uid, None, str(exc)))
                continue
            status = int(response.Status) if response and "Status" in response else None
            error = None if status is not None else "no response from the peer"
            results.append(SendResult(item.path, item.sop_instance_uid, status, error))
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
    return results
