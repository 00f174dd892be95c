"""The SQL index behind the node, on SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core import migrate
from app.core.db import make_engine, make_session_factory
from app.core.domain import SeriesState, StudyStatus
from app.core.tables import AuditEvent, Instance, Series, Study, StudyStatusChange
from app.services.dicom_index import SqlInstanceIndex
from dicom_node.digest import digest_of
from dicom_node.header import summarize
from dicom_node.index import RecordOutcome, SeriesDecision, StoredInstance
from dicom_node.selection import SliceSummary

from .conftest import make_ct_slice  # type: ignore[import-not-found]

STUDY = "1.2.826.0.1.3680043.8.498.100"
SERIES = "1.2.826.0.1.3680043.8.498.101"
FUTURE = datetime.now(UTC) + timedelta(days=1)
PAST = datetime.now(UTC) - timedelta(days=1)


def _stored(
    index: int, *, digest: str = "a", series: str = SERIES, **options: Any
) -> StoredInstance:
    ds = make_ct_slice(
        study_uid=STUDY, series_uid=series, index=index, sop_uid=f"{series}.{index}", **options
    )
    header = summarize(ds, transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID))
    hex_digits = (digest * 64)[:64]
    return StoredInstance(
        header=header,
        storage_path=f"{STUDY}/{series}/{header.sop_instance_uid}.{hex_digits[:16]}.dcm",
        size_bytes=100,
        digest=f"blake3:{hex_digits}",
        calling_ae="TESTSCU",
        peer_address="127.0.0.1",
    )


def _series(factory: sessionmaker[Session], uid: str = SERIES) -> Series:
    with factory() as session:
        row = session.scalar(select(Series).where(Series.series_instance_uid == uid))
    assert row is not None
    return row


def test_new_identical_and_replaced_instances(session_factory: sessionmaker[Session]) -> None:
    index = SqlInstanceIndex(session_factory)
    assert index.record_instance(_stored(0)).outcome is RecordOutcome.NEW
    assert index.record_instance(_stored(1)).outcome is RecordOutcome.NEW
    assert index.record_instance(_stored(1)).outcome is RecordOutcome.IDENTICAL
    series = _series(session_factory)
    assert (series.instance_count, series.content_version) == (2, 2)

    replaced = index.record_instance(_stored(1, digest="b"))
    assert replaced.outcome is RecordOutcome.REPLACED
    assert replaced.previous_path == _stored(1).storage_path
    series = _series(session_factory)
    assert (series.instance_count, series.content_version) == (2, 3)
    known = index.find_instance(f"{SERIES}.1")
    assert known is not None and known.digest == "blake3:" + "b" * 64
    with session_factory() as session:
        audit = session.scalars(select(AuditEvent)).all()
        assert [(a.action, a.object_id, a.actor) for a in audit] == [
            ("dicom.instance_replaced", f"{SERIES}.1", "dicom:TESTSCU")
        ]
        assert audit[0].detail and audit[0].detail["previous_digest"] == "blake3:" + "a" * 64
        study = session.scalar(select(Study))
        assert study is not None
        assert (study.accession_number, study.dicom_patient_name) == ("ACC0001", "TEST^PATIENT")


def test_rows_from_before_blake3_compare_by_their_sha256(
    session_factory: sessionmaker[Session],
) -> None:
    """A row written with a bare SHA-256 digest (before BLAKE3): an identical re-send is
    identical, not an audited replacement; other bytes still replace it."""
    index = SqlInstanceIndex(session_factory)
    data_set = b"the data set as first sent"
    legacy = _stored(0)
    legacy = replace(legacy, digest=hashlib.sha256(data_set).hexdigest())
    assert index.record_instance(legacy).outcome is RecordOutcome.NEW

    again = replace(
        _stored(0),
        digest=digest_of(data_set),
        digest_by=functools.partial(digest_of, data_set),
    )
    assert again.digest.startswith("blake3:")
    assert index.record_instance(again).outcome is RecordOutcome.IDENTICAL
    corrected = b"the data set, corrected"
    changed = replace(
        _stored(0),
        digest=digest_of(corrected),
        digest_by=functools.partial(digest_of, corrected),
    )
    assert index.record_instance(changed).outcome is RecordOutcome.REPLACED
    known = index.find_instance(legacy.header.sop_instance_uid)
    assert known is not None and known.digest == digest_of(corrected)
    with session_factory() as session:
        actions = session.scalars(select(AuditEvent.action)).all()
    assert actions == ["dicom.instance_replaced"]


def test_a_corrected_instance_can_move_to_another_series(
    session_factory: sessionmaker[Session],
) -> None:
    index = SqlInstanceIndex(session_factory)
    index.record_instance(_stored(0))
    index.record_instance(_stored(1))
    moved = _stored(1, digest="c", series=SERIES + ".9")
    moved = StoredInstance(
        header=moved.header.__class__(
            **{**moved.header.__dict__, "sop_instance_uid": f"{SERIES}.1"}
        ),
        storage_path=moved.storage_path,
        size_bytes=moved.size_bytes,
        digest=moved.digest,
        calling_ae=moved.calling_ae,
    )
    assert index.record_instance(moved).outcome is RecordOutcome.REPLACED
    assert _series(session_factory).instance_count == 1
    assert _series(session_factory, SERIES + ".9").instance_count == 1


def test_ready_claims_fire_once_per_content_version(
    session_factory: sessionmaker[Session],
) -> None:
    index = SqlInstanceIndex(session_factory)
    for i in range(3):
        index.record_instance(_stored(i))
    # Still receiving (association open): not ready, not even after the quiet window.
    assert index.claim_ready_series(quiet_before=FUTURE, stale_before=PAST) == []
    index.close_series([SERIES])
    assert _series(session_factory).state is SeriesState.QUIET
    # Quiet but the window has not passed yet.
    assert index.claim_ready_series(quiet_before=PAST, stale_before=PAST) == []
    claimed = index.claim_ready_series(quiet_before=FUTURE, stale_before=PAST)
    assert [(c.series_instance_uid, c.content_version) for c in claimed] == [(SERIES, 3)]
    assert index.claim_ready_series(quiet_before=FUTURE, stale_before=FUTURE) == []
    # A late instance reopens the series; it fires again with the new version.
    index.record_instance(_stored(3))
    assert _series(session_factory).state is SeriesState.RECEIVING
    index.close_series([SERIES])
    again = index.claim_ready_series(quiet_before=FUTURE, stale_before=PAST)
    assert [c.content_version for c in again] == [4]


def test_a_series_whose_association_never_ended_becomes_ready_when_stale(
    session_factory: sessionmaker[Session],
) -> None:
    index = SqlInstanceIndex(session_factory)
    index.record_instance(_stored(0))
    assert index.claim_ready_series(quiet_before=FUTURE, stale_before=PAST) == []
    assert len(index.claim_ready_series(quiet_before=PAST, stale_before=FUTURE)) == 1


def test_concurrent_claimers_claim_each_series_once(
    session_factory: sessionmaker[Session],
) -> None:
    writer = SqlInstanceIndex(session_factory)
    for series in range(6):
        writer.record_instance(_stored(0, series=f"{SERIES}.{series}"))
        writer.close_series([f"{SERIES}.{series}"])
    results: list[Any] = []
    barrier = threading.Barrier(3)

    def claim() -> None:
        index = SqlInstanceIndex(session_factory)
        barrier.wait()
        results.extend(index.claim_ready_series(quiet_before=FUTURE, stale_before=PAST))

    threads = [threading.Thread(target=claim) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.series_instance_uid for r in results) == [f"{SERIES}.{i}" for i in range(6)]


def test_concurrent_receivers_create_one_study_and_series(
    session_factory: sessionmaker[Session],
) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def receive(offset: int) -> None:
        index = SqlInstanceIndex(session_factory)
        barrier.wait()
        try:
            for i in range(offset, 20, 4):
                index.record_instance(_stored(i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=receive, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 1
        assert session.scalar(select(func.count()).select_from(Series)) == 1
        assert session.scalar(select(func.count()).select_from(Instance)) == 20
    assert _series(session_factory).instance_count == 20


def test_selection_marks_series_and_the_study_ready(
    session_factory: sessionmaker[Session],
) -> None:
    index = SqlInstanceIndex(session_factory)
    index.record_instance(_stored(0))
    index.record_instance(_stored(0, series=SERIES + ".2"))
    index.close_series([SERIES, SERIES + ".2"])
    claimed = index.claim_ready_series(quiet_before=FUTURE, stale_before=PAST)
    assert len(claimed) == 2
    ready = index.ready_series_of_study(STUDY)
    assert {r.series_instance_uid for r in ready} == {SERIES, SERIES + ".2"}
    index.record_selection(
        STUDY,
        [
            SeriesDecision(SERIES, 1, True, 90.0, None, {"flags": []}),
            SeriesDecision(SERIES + ".2", 1, False, None, "localizer", {"flags": []}),
        ],
    )
    assert _series(session_factory).state is SeriesState.SELECTED
    skipped = _series(session_factory, SERIES + ".2")
    assert (skipped.state, skipped.skip_reason) == (SeriesState.SKIPPED, "localizer")
    with session_factory() as session:
        study = session.scalar(select(Study))
        assert study is not None and study.status is StudyStatus.READY
    # A late instance puts the study back to receiving, with a status-change row.
    index.record_instance(_stored(5))
    with session_factory() as session:
        study = session.scalar(select(Study))
        assert study is not None and study.status is StudyStatus.RECEIVING
        changes = session.scalars(
            select(StudyStatusChange.to_status).order_by(StudyStatusChange.id)
        ).all()
    assert changes == [StudyStatus.RECEIVING, StudyStatus.READY, StudyStatus.RECEIVING]


def test_stale_selection_decisions_do_not_overwrite_newer_content(
    session_factory: sessionmaker[Session],
) -> None:
    index = SqlInstanceIndex(session_factory)
    index.record_instance(_stored(0))
    index.close_series([SERIES])
    index.claim_ready_series(quiet_before=FUTURE, stale_before=PAST)
    index.record_instance(_stored(1))  # arrives between claim and selection
    index.record_selection(STUDY, [SeriesDecision(SERIES, 1, True, 1.0, None, {})])
    assert _series(session_factory).state is SeriesState.RECEIVING


def test_unindexed_paths(session_factory: sessionmaker[Session]) -> None:
    index = SqlInstanceIndex(session_factory)
    stored = _stored(0)
    index.record_instance(stored)
    orphan = stored.storage_path.replace(".aaaa", ".bbbb")
    other = f"{STUDY}/{SERIES}/1.2.3.4.{'c' * 16}.dcm"
    assert index.unindexed_paths([stored.storage_path, orphan, other]) == {orphan, other}


def test_sqlite_connections_return_to_the_pool_with_full_sync(sqlite_url: str) -> None:
    """Instance rows commit without their own fsync; every other commit stays FULL."""
    migrate.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        index = SqlInstanceIndex(make_session_factory(engine))
        index.record_instance(_stored(0))
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        engine.dispose()


def test_a_new_instance_row_holds_what_was_recorded(session_factory: sessionmaker[Session]) -> None:
    """The receive path's statements (on SQLite run on the DB-API cursor) store every
    column as SQLAlchemy's types read it back."""
    index = SqlInstanceIndex(session_factory)
    before = datetime.now(UTC)
    stored = _stored(3)
    assert index.record_instance(stored).outcome is RecordOutcome.NEW
    with session_factory() as session:
        row = session.scalar(select(Instance))
        study = session.scalar(select(Study))
        assert row is not None and study is not None
        raw_times = session.execute(
            select(
                func.cast(Instance.received_at, Instance.storage_path.type),
                func.cast(Series.last_instance_at, Instance.storage_path.type),
                func.cast(Series.created_at, Instance.storage_path.type),
                func.cast(Series.state, Instance.storage_path.type),
            ).join(Series, Series.id == Instance.series_id)
        ).one()
    header = stored.header
    assert (row.sop_instance_uid, row.sop_class_uid, row.transfer_syntax_uid) == (
        header.sop_instance_uid,
        header.sop_class_uid,
        header.transfer_syntax_uid,
    )
    assert (row.storage_path, row.size_bytes, row.content_digest, row.calling_ae) == (
        stored.storage_path,
        stored.size_bytes,
        stored.digest,
        "TESTSCU",
    )
    assert (row.instance_number, row.slice_position) == (
        header.instance_number,
        header.slice_position,
    )
    assert row.selection_attributes is not None
    selection = SliceSummary.from_record(json.loads(row.selection_attributes))
    assert selection == SliceSummary.from_header(header)
    received = row.received_at.replace(tzinfo=row.received_at.tzinfo or UTC)
    assert before - timedelta(seconds=1) <= received <= datetime.now(UTC)
    series = _series(session_factory)
    assert (series.state, series.instance_count, series.content_version) == (
        SeriesState.RECEIVING,
        1,
        1,
    )
    assert study.status is StudyStatus.RECEIVING
    received_text, last_text, created_text, state_text = raw_times
    assert state_text == "receiving"
    if session_factory.kw["bind"].dialect.name == "sqlite":
        # Times written by the receive path and by SQLAlchemy: the same textual form
        # (SQLite keeps the text; PostgreSQL's output trims trailing zeros).
        assert len(received_text) == len(last_text) == len(created_text)


def test_warm_up_leaves_nothing_behind(session_factory: sessionmaker[Session]) -> None:
    """The start-up warm-up records a made-up instance and rolls it back."""
    index = SqlInstanceIndex(session_factory)
    index.warm_up()
    index.warm_up()  # again: nothing of the first is left to collide with
    with session_factory() as session:
        for table in (Study, Series, Instance, StudyStatusChange, AuditEvent):
            assert session.scalar(select(func.count()).select_from(table)) == 0, table
    assert index.record_instance(_stored(0)).outcome is RecordOutcome.NEW
    assert _series(session_factory).instance_count == 1
