"""The ready scanner ranks a study's series from the index, reading files only for rows
indexed without the attributes selection needs."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.core.tables import Instance
from app.services.dicom_index import SqlInstanceIndex
from dicom_node.digest import digest_of
from dicom_node.header import read_header_file
from dicom_node.index import SeriesDecision
from dicom_node.recovery import recover_storage
from dicom_node.selection import SelectionRules, SliceSummary
from dicom_node.series import ReadyScanner
from dicom_node.storage import InstanceStore, instance_relative_path

from .conftest import write_ct_series  # type: ignore[import-not-found]

RULES = SelectionRules(min_slices=8)
STUDY = "1.2.826.0.1.3680043.8.498.300"


def _store_series(store: InstanceStore, folder: Path, **options: object) -> str:
    """Write a CT series and put its files where the store keeps them (not indexed)."""
    series = write_ct_series(folder, study_uid=STUDY, size=16, **options)
    for path in series.files:
        header = read_header_file(path)
        target = store.absolute(
            instance_relative_path(
                study_instance_uid=STUDY,
                series_instance_uid=series.series_uid,
                sop_instance_uid=header.sop_instance_uid,
                digest=digest_of(path.read_bytes()),
            )
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return series.series_uid


def _decisions(index: SqlInstanceIndex, store: InstanceStore) -> list[SeriesDecision]:
    # A fresh scanner each time: the scanner remembers summaries per content version.
    return ReadyScanner(index=index, store=store, rules=RULES).select_study(STUDY)


def test_series_are_ranked_from_the_index_without_their_files(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    index = SqlInstanceIndex(session_factory)
    store = InstanceStore(root=tmp_path / "store")
    thin = _store_series(store, tmp_path / "thin", slices=10, thickness=1.0)
    tilted = _store_series(store, tmp_path / "tilted", slices=10, tilt_degrees=15.0)
    short = _store_series(store, tmp_path / "short", slices=4)
    # Indexed as the node indexes files without rows at start-up (parsed as on receipt).
    assert recover_storage(store, index).reindexed == 24
    scanner = ReadyScanner(index=index, store=store, rules=RULES, quiet_seconds=0.0)
    events = {event.series_instance_uid: event for event in scanner.scan_once()}
    assert events[thin].selected
    assert events[tilted].flags == ("gantry_tilt",)
    assert events[short].skip_reason is not None and "too few slices" in events[short].skip_reason

    with_files = _decisions(index, store)
    # What the rows hold is what the headers say.
    files = index.series_files(tilted)
    assert [f.selection for f in files] == [
        SliceSummary.from_header(read_header_file(store.absolute(f.storage_path))) for f in files
    ]
    shutil.rmtree(store.root / STUDY)
    assert _decisions(index, store) == with_files


def test_rows_indexed_without_the_attributes_are_read_from_their_files(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    index = SqlInstanceIndex(session_factory)
    store = InstanceStore(root=tmp_path / "store")
    _store_series(store, tmp_path / "thin", slices=10, thickness=1.0)
    recover_storage(store, index)
    ReadyScanner(index=index, store=store, rules=RULES, quiet_seconds=0.0).scan_once()
    with_rows = _decisions(index, store)
    for unusable in (None, "{not json", '{"v": 99}'):
        with session_factory() as session, session.begin():
            session.execute(update(Instance).values(selection_attributes=unusable))
        assert _decisions(index, store) == with_rows  # from the files
    shutil.rmtree(store.root / STUDY)
    without_either = _decisions(index, store)
    assert not without_either[0].selected
    assert without_either[0].skip_reason is not None
