"""Start-up recovery: leftovers of interrupted writes, files without rows."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydicom import dcmread
from sqlalchemy.orm import Session, sessionmaker

from app.services.dicom_index import SqlInstanceIndex
from dicom_node.digest import digest_of
from dicom_node.header import encode_file_meta
from dicom_node.recovery import recover_storage
from dicom_node.storage import INCOMING_DIR, LOCK_NAME, InstanceStore, instance_relative_path

from .conftest import dataset_bytes, write_ct_series  # type: ignore[import-not-found]


def _place(store: InstanceStore, path: Path, *, sop: str, study: str, series: str) -> str:
    """Put a received-looking file at its canonical place without indexing it."""
    encoded = dataset_bytes(path)
    digest = digest_of(encoded)
    relative = instance_relative_path(
        study_instance_uid=study, series_instance_uid=series, sop_instance_uid=sop, digest=digest
    )
    meta = encode_file_meta(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid=sop,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        source_ae="STORESCU",
    )
    store.write(relative, (meta, encoded))
    return relative


def test_recovery_reindexes_orphans_and_removes_leftovers(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    series = write_ct_series(tmp_path / "src", slices=3)
    store = InstanceStore(root=tmp_path / "dicom")
    index = SqlInstanceIndex(session_factory)
    sops = [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in series.files]
    placed = [
        _place(store, path, sop=sop, study=series.study_uid, series=series.series_uid)
        for path, sop in zip(series.files, sops, strict=True)
    ]
    store.close()

    # A dead writer's half-written file, and an unreadable file in the tree.
    dead = store.root / INCOMING_DIR / "host-1-dead"
    dead.mkdir()
    (dead / LOCK_NAME).touch()
    (dead / "x.tmp").write_bytes(b"\0" * 100)
    junk = f"{series.study_uid}/{series.series_uid}/1.2.3.{'0' * 16}.dcm"
    (store.root / junk).write_bytes(b"not dicom")

    restarted = InstanceStore(root=tmp_path / "dicom")
    report = recover_storage(restarted, index)
    assert report.temporary_removed == 1
    assert report.reindexed == 3
    assert report.removed == 1
    assert not (store.root / junk).exists()
    assert not dead.exists()
    for relative, sop in zip(placed, sops, strict=True):
        known = index.find_instance(sop)
        assert known is not None and known.storage_path == relative
    # Re-indexed series are quiet (no association is open for them).
    now = datetime.now(UTC)
    claimed = index.claim_ready_series(
        quiet_before=now + timedelta(days=1), stale_before=now - timedelta(days=1)
    )
    assert len(claimed) == 1

    # A second run finds nothing to do.
    again = recover_storage(restarted, index)
    assert (again.reindexed, again.removed, again.temporary_removed) == (0, 0, 0)


def test_an_orphan_whose_uid_has_another_file_is_removed(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    """The loser of a replacement that crashed before (or after) its commit."""
    first = write_ct_series(tmp_path / "a", slices=1, seed=1)
    store = InstanceStore(root=tmp_path / "dicom")
    index = SqlInstanceIndex(session_factory)
    sop = str(dcmread(first.files[0], stop_before_pixels=True).SOPInstanceUID)
    kept = _place(store, first.files[0], sop=sop, study=first.study_uid, series=first.series_uid)
    recover_storage(store, index)
    ds = dcmread(first.files[0])
    ds.SeriesDescription = "CHANGED"
    changed = tmp_path / "changed.dcm"
    ds.save_as(changed, enforce_file_format=True)
    orphan = _place(store, changed, sop=sop, study=first.study_uid, series=first.series_uid)
    # The orphan is older than the indexed file: the leftover of a committed replacement.
    old = (store.root / kept).stat().st_mtime_ns
    os.utime(store.root / orphan, ns=(old - 10**9, old - 10**9))
    report = recover_storage(store, index)
    assert report.removed == 1
    assert not (store.root / orphan).exists()
    known = index.find_instance(sop)
    assert known is not None and known.storage_path == kept


def test_a_newer_orphan_is_a_replacement_whose_row_was_lost(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    first = write_ct_series(tmp_path / "a", slices=1, seed=2)
    store = InstanceStore(root=tmp_path / "dicom")
    index = SqlInstanceIndex(session_factory)
    sop = str(dcmread(first.files[0], stop_before_pixels=True).SOPInstanceUID)
    kept = _place(store, first.files[0], sop=sop, study=first.study_uid, series=first.series_uid)
    recover_storage(store, index)
    ds = dcmread(first.files[0])
    ds.SeriesDescription = "CORRECTED"
    changed = tmp_path / "changed.dcm"
    ds.save_as(changed, enforce_file_format=True)
    newer = _place(store, changed, sop=sop, study=first.study_uid, series=first.series_uid)
    old = (store.root / kept).stat().st_mtime_ns
    os.utime(store.root / newer, ns=(old + 10**9, old + 10**9))
    report = recover_storage(store, index)
    assert report.reindexed == 1
    known = index.find_instance(sop)
    assert known is not None and known.storage_path == newer
    assert not (store.root / kept).exists()
    assert dataset_bytes(store.root / newer) == dataset_bytes(changed)


def test_a_rename_lost_after_its_row_committed_is_completed(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    """The folder fsync runs beside the commit; a power loss can undo the rename only."""
    series = write_ct_series(tmp_path / "src", slices=1)
    path = series.files[0]
    sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    store = InstanceStore(root=tmp_path / "dicom")
    index = SqlInstanceIndex(session_factory)
    relative = _place(store, path, sop=sop, study=series.study_uid, series=series.series_uid)
    recover_storage(store, index)  # indexes it: the row now names `relative`
    store.close()
    # Undo the rename: the file is back under its temporary name in a dead writer's folder.
    dead = store.root / INCOMING_DIR / "host-2-dead"
    dead.mkdir()
    (dead / LOCK_NAME).touch()
    (store.root / relative).rename(dead / "abc.tmp")
    report = recover_storage(InstanceStore(root=tmp_path / "dicom"), index)
    assert (report.salvaged, report.temporary_removed) == (1, 0)
    assert dataset_bytes(store.root / relative) == dataset_bytes(path)
    assert not dead.exists()
