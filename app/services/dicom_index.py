"""The DICOM node's index over Radscribe's tables (studies, series, instances).

:class:`SqlInstanceIndex` implements :class:`dicom_node.index.InstanceIndex`.
Concurrent instances share a transaction (group commit: one commit, and on
PostgreSQL one WAL flush, for several associations); each caller still
returns only once its row is committed.  What a commit of instance rows
guarantees on SQLite is spelled out at ``_receive_transaction``.  Concurrent
receivers (threads or processes) are safe because the UIDs are unique keys
(a lost insert race is retried alone), counters are updated in SQL and state
changes are guarded UPDATEs.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    and_,
    bindparam,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, configure_mappers, sessionmaker

from app.core.db import updated_rows
from app.core.domain import SeriesState, StudyStatus
from app.core.tables import Instance, Series, Study, StudyStatusChange
from app.services import audit
from dicom_node.digest import same_content
from dicom_node.header import InstanceHeader
from dicom_node.index import (
    KnownInstance,
    ReadySeries,
    RecordOutcome,
    RecordResult,
    SeriesDecision,
    SeriesFile,
    StoredInstance,
)
from dicom_node.selection import SliceSummary

log = logging.getLogger(__name__)

INSERT_RETRIES = 3
MAX_BATCH = 64  # instances committed together at most
CLAIM_BATCH = 100
ACTOR_PREFIX = "dicom:"
REPLACED_ACTION = "dicom.instance_replaced"
_OPEN_STATES = (SeriesState.RECEIVING, SeriesState.QUIET)
_DONE_STATES = (SeriesState.READY, SeriesState.SELECTED, SeriesState.SKIPPED)


def _now() -> datetime:
    return datetime.now(UTC)


def _cut(value: str | None, length: int) -> str | None:
    return None if value is None else value[:length]


def _selection_of(text: str | None) -> SliceSummary | None:
    """The SliceSummary a row keeps as JSON text; None for none, or text not JSON."""
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return SliceSummary.from_record(record)


def _sop_of(storage_path: str) -> str:
    """``<study>/<series>/<sop>.<digest>.dcm`` -> ``<sop>``."""
    name = storage_path.rsplit("/", 1)[-1]
    return name.rsplit(".", 2)[0]


@dataclass
class _Pending:
    """One instance waiting for the group commit."""

    instance: StoredInstance
    # The instance's selection attributes as JSON text, encoded before the transaction
    # (what runs inside it holds SQLite's write lock, which other receivers wait for).
    selection: str = field(init=False)
    done: threading.Event = field(default_factory=threading.Event)
    result: RecordResult | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.selection = json.dumps(
            SliceSummary.from_header(self.instance.header).to_record(), separators=(",", ":")
        )

    def succeed(self, result: RecordResult) -> None:
        self.result = result
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()

    def outcome(self) -> RecordResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@dataclass(frozen=True)
class _Ids:
    study_id: int
    series_id: int


# Statements of the receive path, built once (every instance runs them).
_FIND_INSTANCE = select(
    Instance.id, Instance.content_digest, Instance.storage_path, Instance.series_id
).where(Instance.sop_instance_uid == bindparam("sop"))
_INSERT_INSTANCE = insert(Instance)
# Insert-if-absent in one statement where the dialect has it (a new instance is the
# common case; only a re-send or a correction needs the row that is already there).
_INSERT_NEW_INSTANCE = {
    "sqlite": sqlite_insert(Instance)
    .on_conflict_do_nothing(index_elements=[Instance.sop_instance_uid])
    .returning(Instance.id),
    "postgresql": postgresql_insert(Instance)
    .on_conflict_do_nothing(index_elements=[Instance.sop_instance_uid])
    .returning(Instance.id),
}
_UPDATE_INSTANCE = update(Instance).where(Instance.id == bindparam("instance_pk"))
_BUMP_SERIES = (
    update(Series)
    .where(Series.id == bindparam("series_pk"))
    .values(
        content_version=Series.content_version + 1,
        instance_count=Series.instance_count + bindparam("added"),
        last_instance_at=bindparam("now"),
        state=SeriesState.RECEIVING,
        updated_at=bindparam("now"),
    )
)
_REOPEN_STUDY = (
    update(Study)
    .where(Study.id == bindparam("study_pk"), Study.status == StudyStatus.READY)
    .values(status=StudyStatus.RECEIVING, updated_at=bindparam("now"))
)
# An association ended: its series go quiet (Core on a connection: no ORM session).
_CLOSE_SERIES = (
    update(Series)
    .where(
        Series.series_instance_uid.in_(bindparam("uids", expanding=True)),
        Series.state == SeriesState.RECEIVING,
    )
    .values(state=SeriesState.QUIET, updated_at=bindparam("now"))
)
_STUDY_ID = select(Study.id).where(Study.study_instance_uid == bindparam("uid"))
_SERIES_ID = select(Series.id).where(Series.series_instance_uid == bindparam("uid"))


_INSTANCE_COLUMNS = (
    "sop_instance_uid",
    "series_id",
    "sop_class_uid",
    "transfer_syntax_uid",
    "storage_path",
    "size_bytes",
    "content_digest",
    "instance_number",
    "slice_position",
    "selection_attributes",
    "calling_ae",
    "received_at",
)


class _Precompiled:
    """A statement compiled once, run on the DB-API cursor.

    SQLAlchemy's execute costs tens of microseconds of Python per statement
    (execution context, cache key, result); the receive path runs three per
    instance.  This keeps what SQLAlchemy would send: the dialect's SQL, the
    values the statement carries, the parameter order and the types' bind
    processors (datetimes, enums, floats).
    """

    def __init__(
        self, statement: Any, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        compiled = statement.compile(
            dialect=dialect, column_keys=list(column_keys) if column_keys else None
        )
        if compiled.positiontup is None:
            raise TypeError(f"{dialect.name} does not take positional parameters")
        self.sql = compiled.string
        self._order = tuple(compiled.positiontup)
        self._processors = dict(compiled._bind_processors)
        self._fixed = {
            key: value
            for key, value in compiled.construct_params(_check=False).items()
            if value is not None
        }

    def parameters(self, values: dict[str, Any]) -> list[Any]:
        merged = {**self._fixed, **values}
        processors = self._processors
        out = []
        for key in self._order:
            value = merged[key]
            processor = processors.get(key)
            out.append(value if processor is None or value is None else processor(value))
        return out


@dataclass(frozen=True)
class _RawStatements:
    """The new-instance statements of the receive path, for SQLite's DB-API."""

    insert_new: _Precompiled
    bump_series: _Precompiled
    reopen_study: _Precompiled

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> _RawStatements | None:
        if dialect.name != "sqlite" or dialect.paramstyle != "qmark":
            return None
        return cls(
            insert_new=_Precompiled(_INSERT_NEW_INSTANCE["sqlite"], dialect, _INSTANCE_COLUMNS),
            bump_series=_Precompiled(_BUMP_SERIES, dialect),
            reopen_study=_Precompiled(_REOPEN_STUDY, dialect),
        )


# Recorded once at start-up and rolled back (see SqlInstanceIndex.warm_up): every
# column a CT header usually fills, so the statements compiled are the ones it uses.
_WARM_UP_UID = "2.25.275315855599175984168337153511532491472"  # a UUID-derived UID (PS3.5 B.2)
_WARM_UP_INSTANCE = StoredInstance(
    header=InstanceHeader(
        sop_instance_uid=_WARM_UP_UID,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        study_instance_uid=_WARM_UP_UID,
        series_instance_uid=_WARM_UP_UID,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        modality="CT",
        patient_id="WARMUP",
        patient_name="WARM^UP",
        patient_birth_date="19700101",
        patient_sex="O",
        accession_number="WARMUP",
        study_date="19700101",
        study_time="000000",
        study_description="warm-up",
        series_number=1,
        series_description="warm-up",
        instance_number=1,
        image_position=(0.0, 0.0, 0.0),
        image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    ),
    storage_path=f"{_WARM_UP_UID}/{_WARM_UP_UID}/{_WARM_UP_UID}.{'0' * 16}.dcm",
    size_bytes=0,
    digest=f"blake3:{'0' * 64}",
    calling_ae="WARMUP",
)


def _engine_of(session_factory: sessionmaker[Session]) -> Engine:
    bind = session_factory.kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError("the session factory must be bound to an Engine")
    return bind


class SqlInstanceIndex:
    """``InstanceIndex`` over the engine of ``session_factory``.

    The receive path runs prebuilt Core statements on a connection (one
    transaction per instance); the rest uses sessions.
    """

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._factory = session_factory
        self._engine = _engine_of(session_factory)
        # UID -> id, filled only after commits (rows are never deleted by the node).
        self._study_ids: dict[str, int] = {}
        self._series_ids: dict[str, int] = {}
        self._turn = threading.Condition()
        self._waiting: list[_Pending] = []
        self._committing = False
        self._closed = False
        self._receive_conn: Connection | None = None  # used by the commit leader only
        self._raw = _RawStatements.for_dialect(self._engine.dialect)

    # -- receiving ---------------------------------------------------------------
    def warm_up(self) -> None:
        """Configure the ORM mappers and compile the receive path's statements now, so
        the first instance a receiver gets does not pay for them.

        The lookups run as reads; the study, series and instance inserts run once
        for a made-up instance in a transaction that is rolled back (on
        PostgreSQL the id sequences advance).  Compiling the study and series
        inserts on the first instance was 5-6 % of a fresh receiver's Python
        time over a 200-slice series (py-spy, scratch, 2026-11-30).
        """
        configure_mappers()
        with self._engine.connect() as conn:
            conn.execute(_FIND_INSTANCE, {"sop": ""}).first()
            conn.execute(_STUDY_ID, {"uid": ""}).first()
            conn.execute(_SERIES_ID, {"uid": ""}).first()
            try:
                self._record(conn, _Pending(_WARM_UP_INSTANCE), {})
            finally:
                conn.rollback()

    def find_instance(self, sop_instance_uid: str) -> KnownInstance | None:
        with self._engine.connect() as conn:
            row = conn.execute(_FIND_INSTANCE, {"sop": sop_instance_uid}).first()
        return None if row is None else KnownInstance(row.content_digest, row.storage_path)

    def record_instance(self, instance: StoredInstance) -> RecordResult:
        """Commit the instance's row, sharing the transaction with concurrent callers.

        Leader/follower group commit: a caller that finds no commit in progress
        commits itself plus everything queued meanwhile; callers arriving during
        a commit wait for the next one (led by one of them).  A lone sender
        therefore pays no thread hand-off, several share one fsync.
        """
        pending = _Pending(instance)
        with self._turn:
            if self._closed:
                raise RuntimeError("the instance index is closed")
            self._waiting.append(pending)
            while not pending.done.is_set() and self._committing:
                self._turn.wait()
            if pending.done.is_set():
                return pending.outcome()
            self._committing = True
            self._waiting.remove(pending)
            others = self._waiting[: MAX_BATCH - 1]
            del self._waiting[: MAX_BATCH - 1]
        try:
            self._commit_batch([pending, *others])
        finally:
            with self._turn:
                self._committing = False
                self._turn.notify_all()
        return pending.outcome()

    def close(self) -> None:
        with self._turn:
            self._closed = True
            while self._committing:
                self._turn.wait()
            self._drop_receive_connection()

    def _commit_batch(self, batch: list[_Pending]) -> None:
        if len(batch) > 1:
            created: dict[str, int] = {}
            try:
                with self._receive_transaction() as conn:
                    results = [self._record(conn, p, created) for p in batch]
            except IntegrityError:
                pass  # an insert race with another process: redo them one by one
            except Exception as exc:
                for pending in batch:
                    pending.fail(exc)
                return
            else:
                self._remember(created)
                for pending, result in zip(batch, results, strict=True):
                    pending.succeed(result)
                return
        for pending in batch:
            try:
                pending.succeed(self._record_alone(pending))
            except Exception as exc:
                pending.fail(exc)

    def _record_alone(self, pending: _Pending) -> RecordResult:
        instance = pending.instance
        for attempt in range(INSERT_RETRIES):
            created: dict[str, int] = {}
            try:
                with self._receive_transaction() as conn:
                    result = self._record(conn, pending, created)
            except IntegrityError:
                # Another receiver inserted the same study, series or instance first.
                self._study_ids.pop(instance.header.study_instance_uid, None)
                self._series_ids.pop(instance.header.series_instance_uid, None)
                if attempt == INSERT_RETRIES - 1:
                    raise
                continue
            self._remember(created)
            return result
        raise RuntimeError("unreachable")  # pragma: no cover

    @contextmanager
    def _receive_transaction(self) -> Iterator[Connection]:
        """A transaction for instance rows, on the connection kept for them.

        Only the group-commit leader runs one at a time, so one connection
        serves every receiving thread (no pool checkout per instance).

        What a commit guarantees: on SQLite (WAL) this connection commits
        with ``synchronous=NORMAL``: the row is committed and visible and
        survives a crash of any process, but it reaches the disk with the next
        checkpoint or FULL commit (the scan's, for example), not on its own,
        so a power loss or kernel crash can take the last rows away.  The
        instance *file* is the durable record (written, fsynced, renamed and
        its folder fsynced before Success), and start-up recovery rebuilds a
        missing row (and a lost replacement, with its audit entry) from the
        files, so no acknowledged instance is lost; a WAL fsync per instance
        would be a third disk flush in the path of every acknowledgement.
        PostgreSQL commits normally (durable): its crash does not restart the
        node's recovery.
        """
        conn = self._receive_connection()
        try:
            with conn.begin():
                yield conn
        except BaseException:
            if conn.invalidated or conn.closed:
                self._drop_receive_connection()
            raise

    def _receive_connection(self) -> Connection:
        conn = self._receive_conn
        if conn is None or conn.closed:
            conn = self._engine.connect()
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
            conn.commit()  # ends SQLAlchemy's autobegun transaction
            self._receive_conn = conn
        return conn

    def _drop_receive_connection(self) -> None:
        conn, self._receive_conn = self._receive_conn, None
        if conn is not None:
            with suppress(Exception):
                conn.close()

    def _remember(self, created: dict[str, int]) -> None:
        for key, id_ in created.items():
            kind, uid = key.split(":", 1)
            (self._study_ids if kind == "study" else self._series_ids)[uid] = id_

    def _ids(self, conn: Connection, header: InstanceHeader, created: dict[str, int]) -> _Ids:
        study_id = self._study_ids.get(header.study_instance_uid)
        if study_id is None:
            study_id = conn.scalar(_STUDY_ID, {"uid": header.study_instance_uid})
            if study_id is None:
                study_id = self._insert_study(conn, header)
            created[f"study:{header.study_instance_uid}"] = study_id
        series_id = self._series_ids.get(header.series_instance_uid)
        if series_id is None:
            series_id = conn.scalar(_SERIES_ID, {"uid": header.series_instance_uid})
            if series_id is None:
                series_id = self._insert_series(conn, header, study_id)
            created[f"series:{header.series_instance_uid}"] = series_id
        return _Ids(study_id, series_id)

    @staticmethod
    def _insert_study(conn: Connection, header: InstanceHeader) -> int:
        now = _now()
        study_id = conn.scalar(
            insert(Study)
            .values(
                study_instance_uid=header.study_instance_uid,
                dicom_patient_id=_cut(header.patient_id, 64) or "",
                dicom_patient_name=_cut(header.patient_name, 255) or "",
                dicom_birth_date=_cut(header.patient_birth_date, 8),
                dicom_sex=_cut(header.patient_sex, 16),
                accession_number=_cut(header.accession_number, 64) or "",
                study_date=_cut(header.study_date, 8),
                study_time=_cut(header.study_time, 16),
                study_description=_cut(header.study_description, 255) or "",
                status=StudyStatus.RECEIVING,
                created_at=now,
                updated_at=now,
            )
            .returning(Study.id)
        )
        assert study_id is not None
        conn.execute(
            insert(StudyStatusChange).values(
                study_id=study_id, from_status=None, to_status=StudyStatus.RECEIVING, at=now
            )
        )
        return int(study_id)

    @staticmethod
    def _insert_series(conn: Connection, header: InstanceHeader, study_id: int) -> int:
        now = _now()
        series_id = conn.scalar(
            insert(Series)
            .values(
                study_id=study_id,
                series_instance_uid=header.series_instance_uid,
                modality=_cut(header.modality, 16) or "",
                series_number=header.series_number,
                series_description=_cut(header.series_description, 255) or "",
                state=SeriesState.RECEIVING,
                content_version=0,
                instance_count=0,
                created_at=now,
                updated_at=now,
            )
            .returning(Series.id)
        )
        assert series_id is not None
        return int(series_id)

    def _record(self, conn: Connection, pending: _Pending, created: dict[str, int]) -> RecordResult:
        instance = pending.instance
        header = instance.header
        ids = self._ids(conn, header, created)
        now = _now()
        values: dict[str, Any] = {
            "series_id": ids.series_id,
            "sop_class_uid": header.sop_class_uid,
            "transfer_syntax_uid": header.transfer_syntax_uid[:64],
            "storage_path": instance.storage_path,
            "size_bytes": instance.size_bytes,
            "content_digest": instance.digest,
            "instance_number": header.instance_number,
            "slice_position": header.slice_position,
            "selection_attributes": pending.selection,
            "calling_ae": instance.calling_ae[:16] or None,
            "received_at": now,
        }
        row = {"sop_instance_uid": header.sop_instance_uid, **values}
        if self._raw is not None:
            if self._record_new_raw(conn, self._raw, row, ids, now):
                return RecordResult(RecordOutcome.NEW)
            existing = self._existing(conn, header.sop_instance_uid)
        else:
            insert_new = _INSERT_NEW_INSTANCE.get(conn.dialect.name)
            if insert_new is not None:
                inserted = conn.execute(insert_new, row).first() is not None
                existing = None if inserted else self._existing(conn, header.sop_instance_uid)
            else:
                existing = self._existing(conn, header.sop_instance_uid)
                if existing is None:
                    conn.execute(_INSERT_INSTANCE, row)
        if existing is None:
            self._bump_series(conn, ids.series_id, now, added=1)
            self._reopen_study(conn, ids.study_id, now)
            return RecordResult(RecordOutcome.NEW)
        if same_content(existing.content_digest, instance.digest, instance.digest_by):
            if existing.storage_path != instance.storage_path:
                conn.execute(
                    _UPDATE_INSTANCE,
                    {"instance_pk": existing.id, "storage_path": instance.storage_path},
                )
                return RecordResult(RecordOutcome.IDENTICAL, previous_path=existing.storage_path)
            return RecordResult(RecordOutcome.IDENTICAL)
        conn.execute(_UPDATE_INSTANCE, {"instance_pk": existing.id, **values})
        moved = existing.series_id != ids.series_id
        if moved:
            self._bump_series(conn, existing.series_id, now, added=-1)
        self._bump_series(conn, ids.series_id, now, added=1 if moved else 0)
        self._reopen_study(conn, ids.study_id, now)
        with Session(bind=conn) as session:
            audit.record(
                session,
                actor=f"{ACTOR_PREFIX}{instance.calling_ae}",
                action=REPLACED_ACTION,
                object_type="instance",
                object_id=header.sop_instance_uid,
                study_id=ids.study_id,
                client_address=instance.peer_address or None,
                detail={
                    "series_instance_uid": header.series_instance_uid,
                    "previous_digest": existing.content_digest,
                    "digest": instance.digest,
                    "previous_path": existing.storage_path,
                    "storage_path": instance.storage_path,
                },
            )
            session.flush()
        log.info(
            "instance %s replaced by a corrected version; series %s reopened",
            header.sop_instance_uid,
            header.series_instance_uid,
        )
        return RecordResult(RecordOutcome.REPLACED, previous_path=existing.storage_path)

    @staticmethod
    def _record_new_raw(
        conn: Connection, raw: _RawStatements, row: dict[str, Any], ids: _Ids, now: datetime
    ) -> bool:
        """Insert the row if its UID is new, bump its series and reopen its study, on
        the DB-API cursor (in the connection's transaction); False if the UID exists
        (nothing changed)."""
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if (
                cursor.execute(raw.insert_new.sql, raw.insert_new.parameters(row)).fetchone()
                is None
            ):
                return False
            cursor.execute(
                raw.bump_series.sql,
                raw.bump_series.parameters({"series_pk": ids.series_id, "added": 1, "now": now}),
            )
            cursor.execute(
                raw.reopen_study.sql,
                raw.reopen_study.parameters({"study_pk": ids.study_id, "now": now}),
            )
            if cursor.rowcount:
                conn.execute(
                    insert(StudyStatusChange).values(
                        study_id=ids.study_id,
                        from_status=StudyStatus.READY,
                        to_status=StudyStatus.RECEIVING,
                        at=now,
                    )
                )
        finally:
            cursor.close()
        return True

    @staticmethod
    def _existing(conn: Connection, sop_instance_uid: str) -> Row[int, str, str, int] | None:
        """The id, digest, path and series of the row already holding this UID."""
        return conn.execute(_FIND_INSTANCE, {"sop": sop_instance_uid}).first()

    @staticmethod
    def _bump_series(conn: Connection, series_id: int, now: datetime, *, added: int) -> None:
        conn.execute(_BUMP_SERIES, {"series_pk": series_id, "added": added, "now": now})

    @staticmethod
    def _reopen_study(conn: Connection, study_id: int, now: datetime) -> None:
        """A study that was ready receives more: back to receiving."""
        reopened = updated_rows(conn.execute(_REOPEN_STUDY, {"study_pk": study_id, "now": now}))
        if reopened:
            conn.execute(
                insert(StudyStatusChange).values(
                    study_id=study_id,
                    from_status=StudyStatus.READY,
                    to_status=StudyStatus.RECEIVING,
                    at=now,
                )
            )

    def close_series(self, series_instance_uids: Collection[str]) -> None:
        uids = list(series_instance_uids)
        if not uids:
            return
        with self._engine.begin() as conn:
            conn.execute(_CLOSE_SERIES, {"uids": uids, "now": _now()})

    # -- ready and selection -----------------------------------------------------
    def claim_ready_series(
        self, *, quiet_before: datetime, stale_before: datetime
    ) -> list[ReadySeries]:
        now = _now()
        claimed: list[ReadySeries] = []
        with self._factory() as session, session.begin():
            candidates = session.execute(
                select(
                    Series.id,
                    Series.series_instance_uid,
                    Series.content_version,
                    Series.modality,
                    Study.study_instance_uid,
                )
                .join(Study, Study.id == Series.study_id)
                .where(
                    or_(
                        and_(
                            Series.state == SeriesState.QUIET,
                            Series.last_instance_at <= quiet_before,
                        ),
                        and_(
                            Series.state == SeriesState.RECEIVING,
                            Series.last_instance_at <= stale_before,
                        ),
                    ),
                    or_(
                        Series.ready_version.is_(None),
                        Series.ready_version != Series.content_version,
                    ),
                )
                .order_by(Series.last_instance_at)
                .limit(CLAIM_BATCH)
            ).all()
            for row in candidates:
                won = updated_rows(
                    session.execute(
                        update(Series)
                        .where(
                            Series.id == row.id,
                            Series.content_version == row.content_version,
                            Series.state.in_(_OPEN_STATES),
                        )
                        .values(
                            state=SeriesState.READY,
                            ready_version=row.content_version,
                            ready_at=now,
                            updated_at=now,
                        )
                    )
                )
                if won:
                    claimed.append(
                        ReadySeries(
                            study_instance_uid=row.study_instance_uid,
                            series_instance_uid=row.series_instance_uid,
                            content_version=row.content_version,
                            modality=row.modality,
                        )
                    )
        return claimed

    def series_files(self, series_instance_uid: str) -> list[SeriesFile]:
        with self._factory() as session:
            rows = session.execute(
                select(
                    Instance.sop_instance_uid,
                    Instance.storage_path,
                    Instance.instance_number,
                    Instance.slice_position,
                    Instance.selection_attributes,
                )
                .join(Series, Series.id == Instance.series_id)
                .where(Series.series_instance_uid == series_instance_uid)
                .order_by(
                    Instance.slice_position.is_(None),
                    Instance.slice_position,
                    Instance.instance_number,
                    Instance.sop_instance_uid,
                )
            ).all()
        return [
            SeriesFile(
                r.sop_instance_uid,
                r.storage_path,
                r.instance_number,
                r.slice_position,
                _selection_of(r.selection_attributes),
            )
            for r in rows
        ]

    def ready_series_of_study(self, study_instance_uid: str) -> list[ReadySeries]:
        with self._factory() as session:
            rows = session.execute(
                select(Series.series_instance_uid, Series.content_version, Series.modality)
                .join(Study, Study.id == Series.study_id)
                .where(
                    Study.study_instance_uid == study_instance_uid,
                    Series.state.in_(_DONE_STATES),
                    Series.ready_version == Series.content_version,
                )
                .order_by(Series.series_number, Series.series_instance_uid)
            ).all()
        return [
            ReadySeries(study_instance_uid, r.series_instance_uid, r.content_version, r.modality)
            for r in rows
        ]

    def record_selection(
        self, study_instance_uid: str, decisions: Sequence[SeriesDecision]
    ) -> None:
        now = _now()
        with self._factory() as session, session.begin():
            for decision in decisions:
                session.execute(
                    update(Series)
                    .where(
                        Series.series_instance_uid == decision.series_instance_uid,
                        Series.content_version == decision.content_version,
                        Series.ready_version == decision.content_version,
                    )
                    .values(
                        state=SeriesState.SELECTED if decision.selected else SeriesState.SKIPPED,
                        skip_reason=decision.skip_reason,
                        selection_score=decision.score,
                        selection_notes=decision.notes,
                        updated_at=now,
                    )
                )
            study_id = session.scalar(
                select(Study.id).where(Study.study_instance_uid == study_instance_uid)
            )
            if study_id is None:
                return
            still_open = exists().where(Series.study_id == study_id, Series.state.in_(_OPEN_STATES))
            ready = updated_rows(
                session.execute(
                    update(Study)
                    .where(
                        Study.id == study_id,
                        Study.status == StudyStatus.RECEIVING,
                        ~still_open,
                    )
                    .values(status=StudyStatus.READY, updated_at=now)
                )
            )
            if ready:
                session.execute(
                    insert(StudyStatusChange).values(
                        study_id=study_id,
                        from_status=StudyStatus.RECEIVING,
                        to_status=StudyStatus.READY,
                        at=now,
                    )
                )

    # -- recovery ----------------------------------------------------------------
    def unindexed_paths(self, storage_paths: Sequence[str]) -> set[str]:
        by_sop = {_sop_of(path): path for path in storage_paths}
        with self._factory() as session:
            rows = session.execute(
                select(Instance.sop_instance_uid, Instance.storage_path).where(
                    Instance.sop_instance_uid.in_(list(by_sop))
                )
            ).all()
        indexed = {row.storage_path for row in rows}
        return {path for path in storage_paths if path not in indexed}
