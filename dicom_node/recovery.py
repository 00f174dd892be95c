"""Start-up recovery: clean up after an interrupted write, reconcile files and rows.

A crash can leave three things behind:

- a temporary file of an unfinished write: removed;
- a temporary file whose rename was lost although its index row committed
  (the folder fsync and the commit run side by side; a power loss between
  them can undo the rename): moved into the place its row names;
- a complete file without an index row: its commit never happened (nothing
  acknowledged), or, on SQLite where instance rows are committed without
  their own fsync (see :mod:`app.services.dicom_index`), a power loss took
  the row away.  Files are the durable record, so the row is rebuilt: an
  orphan whose SOP Instance UID has no row is indexed; one whose UID has a
  row replaces it if it is newer than the file that row names (a lost
  replacement), and is removed otherwise (the old version a committed
  replacement left behind), as is an orphan that does not parse.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pynetdicom.dsutils import split_dataset

from dicom_node.digest import algorithm_of, digest_of
from dicom_node.header import InstanceHeader, parse_instance
from dicom_node.index import InstanceIndex, StoredInstance
from dicom_node.storage import InstanceStore, instance_relative_path

log = logging.getLogger(__name__)

PATH_BATCH = 500


@dataclass
class RecoveryReport:
    temporary_removed: int = 0
    salvaged: int = 0
    files_checked: int = 0
    reindexed: int = 0
    removed: int = 0
    series: set[str] = field(default_factory=set)


def recover_storage(store: InstanceStore, index: InstanceIndex) -> RecoveryReport:
    """Clean interrupted writes and reconcile files without rows (run before serving)."""
    cleanup = store.clean_interrupted_writes(salvage=lambda path: _salvage(store, index, path))
    report = RecoveryReport(temporary_removed=cleanup.removed, salvaged=cleanup.salvaged)
    batch: list[str] = []
    for relative in store.iter_instance_files():
        batch.append(relative)
        if len(batch) >= PATH_BATCH:
            _reconcile(store, index, batch, report)
            batch = []
    if batch:
        _reconcile(store, index, batch, report)
    if report.series:
        # No association is open for them: let the quiet window make them ready.
        index.close_series(report.series)
    if report.temporary_removed or report.salvaged or report.reindexed or report.removed:
        log.info(
            "storage recovery: %d interrupted writes cleaned, %d renames completed, "
            "%d files re-indexed, %d removed",
            report.temporary_removed,
            report.salvaged,
            report.reindexed,
            report.removed,
        )
    return report


def _read(path: Path) -> tuple[InstanceHeader, bytes, bytes, str]:
    """Header, whole file, data set bytes and source AE of a stored or temporary file."""
    meta, offset = split_dataset(path)
    data = path.read_bytes()
    header = parse_instance(
        data,
        transfer_syntax_uid=str(meta.get("TransferSyntaxUID", "")),
        affected_sop_class_uid=str(meta.get("MediaStorageSOPClassUID", "")),
        affected_sop_instance_uid=str(meta.get("MediaStorageSOPInstanceUID", "")),
    )
    source = str(meta.get("SourceApplicationEntityTitle", "") or "").strip()
    return header, data, data[offset:], source


def _salvage(store: InstanceStore, index: InstanceIndex, path: Path) -> str | None:
    """The stored path a leftover temporary file belongs at, if its row says so."""
    try:
        header, _data, encoded, _source = _read(path)
    except Exception:  # an unfinished write does not parse: drop it
        return None
    known = index.find_instance(header.sop_instance_uid)
    if known is None:
        return None
    # Hashed as its row's digest was (a row from before BLAKE3 holds a SHA-256).
    digest = digest_of(encoded, algorithm_of(known.digest))
    relative = instance_relative_path(
        study_instance_uid=header.study_instance_uid,
        series_instance_uid=header.series_instance_uid,
        sop_instance_uid=header.sop_instance_uid,
        digest=digest,
    )
    if known.storage_path != relative or known.digest != digest:
        return None
    return None if store.exists(relative) else relative


def _reconcile(
    store: InstanceStore, index: InstanceIndex, paths: Sequence[str], report: RecoveryReport
) -> None:
    report.files_checked += len(paths)
    for relative in sorted(index.unindexed_paths(paths)):
        path = store.absolute(relative)
        try:
            header, data, encoded, source = _read(path)
        except Exception as exc:  # pydicom raises several kinds on broken files
            log.warning("removing unreadable orphan file %s: %s", relative, type(exc).__name__)
            store.remove(relative)
            report.removed += 1
            continue
        known = index.find_instance(header.sop_instance_uid)
        if known is not None and not _newer_than_indexed(store, path, known.storage_path):
            log.info("removing superseded orphan file %s", relative)
            store.remove(relative)
            report.removed += 1
            continue
        result = index.record_instance(
            StoredInstance(
                header=header,
                storage_path=relative,
                size_bytes=len(data),
                digest=digest_of(encoded),
                calling_ae=source,
                digest_by=functools.partial(digest_of, encoded),
            )
        )
        if result.previous_path and result.previous_path != relative:
            store.remove(result.previous_path)
        report.reindexed += 1
        report.series.add(header.series_instance_uid)


def _newer_than_indexed(store: InstanceStore, orphan: Path, indexed_path: str) -> bool:
    """Whether an orphan replaces the file its UID's row names.

    The orphan is the newer version when the indexed file is gone or older:
    a replacement whose row update was lost (or not yet committed).  Otherwise
    it is the old version that a committed replacement left behind.
    """
    try:
        indexed = store.absolute(indexed_path).stat().st_mtime_ns
    except (OSError, ValueError):
        return True
    return orphan.stat().st_mtime_ns > indexed
