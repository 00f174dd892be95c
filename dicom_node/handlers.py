"""Event handlers of the storage SCP: plain functions bound to their dependencies.

:func:`store_instance` is the receive path without pynetdicom: check free
space, parse and check the header, write the file durably, index it, and
name the status to return.  The ``handle_*`` functions adapt pynetdicom
events to it; none lets an exception escape.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_ASSOCIATE

from dicom_node.access import AccessPolicy
from dicom_node.contexts import ContextTable
from dicom_node.digest import ALGORITHM, digest_of, named, new_hasher
from dicom_node.header import (
    InstanceHeader,
    RejectedInstance,
    encode_file_meta,
    parse_data_set,
    parse_data_set_start,
)
from dicom_node.index import InstanceIndex, RecordOutcome, StoredInstance
from dicom_node.metrics import ReceiveMetrics
from dicom_node.reactor import DataSetSink, LeanStore, StoreCommand, streamed_sink
from dicom_node.status import ECHO_SUCCESS, StoreStatus
from dicom_node.storage import (
    InstanceStore,
    TemporaryFile,
    TemporaryWriter,
    instance_relative_path,
)

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ fields (PS3.8 9.3.4).
REJECTED_PERMANENT = 0x01
SOURCE_SERVICE_USER = 0x01
DIAGNOSTIC_CALLING_AE_NOT_RECOGNIZED = 0x03
SOURCE_PRESENTATION = 0x03
DIAGNOSTIC_LOCAL_LIMIT_EXCEEDED = 0x02
STATE_AWAITING_CLOSE = "Sta13"
IO_THREADS = 8
REJECT_FLUSH_SECONDS = 2.0
POLL_SECONDS = 0.005
# The start of a received data set read for its header (the rest is pixel data).
START_BYTES = 64 * 1024


@dataclass
class _AssociationRecord:
    calling_ae: str
    series: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)


class AssociationTracker:
    """Open associations of this process and the series each has changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, _AssociationRecord] = {}

    def established(self, key: int, calling_ae: str) -> None:
        with self._lock:
            self._open[key] = _AssociationRecord(calling_ae)

    def count(self, key: int, outcome: str, series_uid: str | None) -> None:
        with self._lock:
            record = self._open.get(key)
            if record is None:
                return
            record.outcomes[outcome] += 1
            if series_uid is not None:
                record.series.add(series_uid)

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def ended(self, key: int) -> tuple[_AssociationRecord | None, set[str]]:
        """Forget an association; return it and the series no other open one touches."""
        with self._lock:
            record = self._open.pop(key, None)
            if record is None:
                return None, set()
            still_open: set[str] = set()
            for other in self._open.values():
                still_open |= other.series
            return record, record.series - still_open


@dataclass
class NodeServices:
    """The dependencies every handler receives."""

    store: InstanceStore
    index: InstanceIndex
    metrics: ReceiveMetrics
    access: AccessPolicy
    tracker: AssociationTracker = field(default_factory=AssociationTracker)
    contexts: ContextTable = field(default_factory=ContextTable)
    # Threads for file writes and hashes that overlap the handler's own work.
    io: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(IO_THREADS, thread_name_prefix="dicom-io")
    )


@dataclass(frozen=True)
class StoreOutcome:
    status: StoreStatus
    outcome: RecordOutcome | None = None
    header: InstanceHeader | None = None
    detail: str = ""


def store_instance(
    services: NodeServices,
    *,
    encoded: bytes | None = None,
    transfer_syntax_uid: str,
    sop_class_uid: str,
    sop_instance_uid: str,
    calling_ae: str,
    peer_address: str = "",
    received: ReceivedDataSet | None = None,
) -> StoreOutcome:
    """Validate, store durably and index one received data set.

    Success is returned only after, in this order, the file is fsynced, renamed
    into place, its folder fsynced (:meth:`InstanceStore.commit`) and its index
    row committed.  A failure leaves no
    partial file behind (at most a complete file without a row, which is
    never acknowledged and which start-up recovery reconciles).

    ``encoded`` is the data set exactly as the sender encoded it; the file
    written is our File Meta followed by these bytes.  Or ``received``: its
    data set streamed into a fsynced temporary file while it arrived, which is
    placed instead (the caller discards it afterwards in any case).
    """
    started = time.perf_counter()
    metrics = services.metrics
    store = services.store
    if received is not None:
        size = received.size
    elif encoded is not None:
        size = len(encoded)
    else:
        raise TypeError("store_instance needs the encoded data set or the received one")
    try:
        if not store.has_room(size):
            raise RejectedInstance(
                StoreStatus.OUT_OF_RESOURCES,
                f"free disk space is below the floor of {store.min_free_bytes} bytes",
            )
        # Received in memory, the file is written and fsynced, and the data set hashed,
        # on I/O threads while this one parses; a rejected instance's temporary file
        # is dropped.
        if received is None:
            assert encoded is not None
            meta = encode_file_meta(
                sop_class_uid=sop_class_uid,
                sop_instance_uid=sop_instance_uid,
                transfer_syntax_uid=transfer_syntax_uid,
                source_ae=calling_ae,
            )
            writing = services.io.submit(store.write_temporary, (meta, encoded))
            hashing = services.io.submit(digest_of, encoded)
            durable: Callable[[], TemporaryFile] = writing.result
            digest_now: Callable[[], str] = hashing.result
            digest_by: Callable[[str], str] = functools.partial(digest_of, encoded)
        else:  # written while it arrived and fsynced by the receiving thread
            durable, digest_now, digest_by = received.durable, received.digest, received.digest_by
        try:
            if received is None:
                assert encoded is not None
                header = parse_data_set(
                    encoded,
                    transfer_syntax_uid=transfer_syntax_uid,
                    affected_sop_class_uid=sop_class_uid,
                    affected_sop_instance_uid=sop_instance_uid,
                )
            else:  # mostly from its first fragment: no copy of the pixel data
                header = parse_data_set_start(
                    received.start(),
                    size=size,
                    whole=received.encoded,
                    transfer_syntax_uid=transfer_syntax_uid,
                    affected_sop_class_uid=sop_class_uid,
                    affected_sop_instance_uid=sop_instance_uid,
                )
            digest = digest_now()
            # The path carries the digest: an identical re-send rewrites the same file
            # (harmless) and the index answers "identical"; a corrected instance gets a
            # new file and the old one is removed once the index points at the new one.
            relative = instance_relative_path(
                study_instance_uid=header.study_instance_uid,
                series_instance_uid=header.series_instance_uid,
                sop_instance_uid=header.sop_instance_uid,
                digest=digest,
            )
        except BaseException:
            _drop(store, durable)
            raise
        # Renamed into place and the rename durable (its folder fsynced), then the row:
        # no row ever names a file whose rename a power loss could take back.
        stored = store.commit(durable(), relative)
        if received is not None:
            received.placed()
        result = services.index.record_instance(
            StoredInstance(
                header=header,
                storage_path=stored.relative_path,
                size_bytes=stored.size_bytes,
                digest=digest,
                calling_ae=calling_ae,
                peer_address=peer_address,
                digest_by=digest_by,
            ),
        )
        outcome = result.outcome
        if result.previous_path and result.previous_path != stored.relative_path:
            _remove_superseded(store, result.previous_path)
    except RejectedInstance as rejected:
        metrics.failures.labels(rejected.status.reason).inc()
        log.warning(
            "C-STORE %s from %s refused with 0x%04X (%s): %s",
            sop_instance_uid,
            calling_ae,
            rejected.status,
            rejected.status.reason,
            _loggable(rejected),
        )
        log.debug("C-STORE %s rejection detail: %s", sop_instance_uid, rejected.detail)
        return StoreOutcome(rejected.status, detail=rejected.detail)
    except Exception as exc:  # storage or index failure: the sender must retry
        status = StoreStatus.PROCESSING_FAILURE
        metrics.failures.labels(status.reason).inc()
        log.error(
            "C-STORE %s from %s failed with 0x%04X (%s): %s",
            sop_instance_uid,
            calling_ae,
            status,
            status.reason,
            type(exc).__name__,
        )
        log.debug("C-STORE %s failure", sop_instance_uid, exc_info=True)
        return StoreOutcome(status, detail=type(exc).__name__)
    metrics.instances.labels(outcome.value).inc()
    metrics.bytes.inc(size)
    metrics.store_seconds.observe(time.perf_counter() - started)
    log.debug("C-STORE %s from %s: %s", header.sop_instance_uid, calling_ae, outcome.value)
    return StoreOutcome(StoreStatus.SUCCESS, outcome=outcome, header=header)


class ReceivedDataSet:
    """A C-STORE data set written to its temporary file as it arrives.

    The :class:`dicom_node.reactor.DataSetSink` of the node: fragments come
    from the association's DUL thread, which hashes each as it is written;
    once the last one is in, the file is fsynced on that thread (see
    :meth:`finish`); the temporary file starts with our File Meta.  The
    fragments are kept (as views of the received PDUs, no copy) for the
    header parse.  A write error is kept for the handler, which
    then answers with a failure status.
    """

    def __init__(self, writer: TemporaryWriter, meta: bytes) -> None:
        self._writer = writer
        self._fragments: list[memoryview] = []
        self._hasher = new_hasher()
        self._size = 0
        self._error: BaseException | None = None
        self._file: TemporaryFile | None = None
        self._finished = False
        writer.write(meta)

    def write(self, fragment: memoryview) -> None:
        self._fragments.append(fragment)
        # Hashed here as it comes rather than on an I/O thread once all is in: 1.13x
        # the images/s at four associations (paired by round, bench_dicom_receive
        # --variant) and 0.3 ms less CPU per image, the hand-over costing more than
        # it overlapped.
        self._hasher.update(fragment)
        self._size += len(fragment)
        if self._error is None:
            try:
                self._writer.write(fragment)
            except OSError as exc:
                self._error = exc

    def finish(self) -> None:
        """Write out what is staged and fsync the file, here."""
        try:
            if self._error is None:
                self._file = self._writer.finish()
        except BaseException as exc:
            self._error = exc
        finally:
            self._finished = True

    def placed(self) -> None:
        """The fsynced file was renamed into its place: nothing left to discard."""
        self._file = None

    def discard(self) -> None:
        self._fragments.clear()
        if self._finished:
            if self._file is not None:  # fsynced but never placed
                self._file.path.unlink(missing_ok=True)
                self._file = None
        else:
            self._writer.abandon()

    @property
    def size(self) -> int:
        """Bytes of the data set received so far (all of it once finished)."""
        return self._size

    def start(self) -> bytes | memoryview:
        """The data set's first fragments, at least ``START_BYTES`` of it where it is
        that long (the first fragment itself, not a copy, when that is enough)."""
        fragments = self._fragments
        if not fragments:
            return b""
        if len(fragments) == 1 or len(fragments[0]) >= START_BYTES:
            return fragments[0]
        collected: list[memoryview] = []
        total = 0
        for fragment in fragments:
            collected.append(fragment)
            total += len(fragment)
            if total >= START_BYTES:
                break
        return b"".join(collected)

    def encoded(self) -> bytes:
        """The whole data set (a copy)."""
        return b"".join(self._fragments)

    def digest(self) -> str:
        """The data set's digest (:mod:`dicom_node.digest`), once :meth:`finish` was called."""
        return named(ALGORITHM, self._hasher.hexdigest())

    def digest_by(self, algorithm: str) -> str:
        """The data set's digest by another algorithm (until :meth:`discard`)."""
        return digest_of(self._fragments, algorithm)

    def durable(self) -> TemporaryFile:
        """The fsynced temporary file (or the error of writing it), after :meth:`finish`."""
        if not self._finished:
            raise RuntimeError("the data set has not been finished")
        if self._error is not None:
            raise self._error
        assert self._file is not None
        return self._file


def open_received(
    services: NodeServices, assoc: Association, context_id: int, command: StoreCommand
) -> ReceivedDataSet | None:
    """A :data:`dicom_node.reactor.SinkFactory`: stream a C-STORE data set to disk.

    None (receive it in memory) when the disk is below its floor: the handler
    then refuses the instance with out-of-resources without writing anything.
    """
    if not services.store.has_room(0):
        return None
    meta = encode_file_meta(
        sop_class_uid=command.sop_class_uid,
        sop_instance_uid=command.sop_instance_uid,
        transfer_syntax_uid=str(assoc._accepted_cx[context_id].transfer_syntax[0]),
        source_ae=str(assoc.requestor.ae_title).strip(),
    )
    # A lone association waits for the disk with nothing else to do: overlap the
    # writes with the rest arriving.  With several, the others use that time and
    # fewer, larger writes cost less CPU.
    alone = services.tracker.open_count() <= 1
    writer = services.store.open_temporary(early_writes=alone)
    try:
        return ReceivedDataSet(writer, meta)
    except BaseException:
        writer.abandon()
        raise


def _drop(store: InstanceStore, durable: Callable[[], TemporaryFile]) -> None:
    """Remove the temporary file of an instance that will not be stored."""
    with contextlib.suppress(Exception):  # a failed write left nothing to remove
        store.discard(durable())


def _loggable(rejected: RejectedInstance) -> str:
    """The detail, except for parse errors: their messages may quote header values."""
    if rejected.status is not StoreStatus.UNPARSEABLE_DATASET:
        return rejected.detail
    cause = rejected.__cause__
    return f"data set cannot be parsed ({type(cause).__name__ if cause else 'error'})"


def _remove_superseded(store: InstanceStore, relative_path: str) -> None:
    try:
        store.remove(relative_path)
    except Exception as exc:  # the new file is committed; an old one left over is harmless
        log.warning("could not remove superseded file %s: %s", relative_path, type(exc).__name__)


def handle_store(event: Event, services: NodeServices) -> int:
    """``EVT_C_STORE``: a request pynetdicom decoded (its data set streamed or in memory)."""
    request = cast(C_STORE, event.request)
    assoc = event.assoc
    sink = streamed_sink(request)
    received = sink if isinstance(sink, ReceivedDataSet) else None
    try:
        try:
            encoded = None if received is not None else event.encoded_dataset(include_meta=False)
            transfer_syntax = str(event.context.transfer_syntax)
            sop_class = str(request.AffectedSOPClassUID)
            sop_instance = str(request.AffectedSOPInstanceUID)
        except Exception as exc:
            services.metrics.failures.labels(StoreStatus.UNPARSEABLE_DATASET.reason).inc()
            log.warning(
                "C-STORE from %s without a usable request: %s",
                str(assoc.requestor.ae_title).strip(),
                type(exc).__name__,
            )
            return int(StoreStatus.UNPARSEABLE_DATASET)
        return _store_and_count(
            services,
            assoc,
            encoded=encoded,
            transfer_syntax_uid=transfer_syntax,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            received=received,
        )
    finally:
        if sink is not None:
            sink.discard()  # a stored file was renamed away: this only frees memory


def serve_lean_store(
    services: NodeServices,
    assoc: Association,
    context_id: int,
    command: StoreCommand,
    sink: DataSetSink,
) -> int:
    """The :class:`dicom_node.reactor.LeanStore` of the node: :func:`handle_store` for a
    request whose command set the reactor decoded by hand, its data set streamed
    into ``sink`` (one that :func:`open_received` opened)."""
    received = cast(ReceivedDataSet, sink)  # the reactor discards it afterwards
    return _store_and_count(
        services,
        assoc,
        encoded=None,
        transfer_syntax_uid=str(assoc._accepted_cx[context_id].transfer_syntax[0]),
        sop_class_uid=command.sop_class_uid,
        sop_instance_uid=command.sop_instance_uid,
        received=received,
    )


def lean_store(services: NodeServices) -> LeanStore:
    """The lean C-STORE path, standing in for :func:`handle_store` bound to ``services``."""
    return LeanStore(handler=handle_store, serve=functools.partial(serve_lean_store, services))


def _store_and_count(
    services: NodeServices,
    assoc: Association,
    *,
    encoded: bytes | None,
    transfer_syntax_uid: str,
    sop_class_uid: str,
    sop_instance_uid: str,
    received: ReceivedDataSet | None,
) -> int:
    result = store_instance(
        services,
        encoded=encoded,
        transfer_syntax_uid=transfer_syntax_uid,
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        calling_ae=str(assoc.requestor.ae_title).strip(),
        peer_address=str(assoc.requestor.address),
        received=received,
    )
    changed = result.outcome in (RecordOutcome.NEW, RecordOutcome.REPLACED)
    services.tracker.count(
        id(assoc),
        result.outcome.value if result.outcome else result.status.reason,
        result.header.series_instance_uid if changed and result.header else None,
    )
    return int(result.status)


def handle_echo(event: Event) -> int:
    return ECHO_SUCCESS


def handle_requested(event: Event, services: NodeServices) -> None:
    """Before negotiation: check the caller and give the association its contexts."""
    assoc = event.assoc
    try:
        primitive = cast(A_ASSOCIATE, assoc.requestor.primitive)
        calling_ae = str(primitive.calling_ae_title).strip()
        peer = str(assoc.requestor.address)
        if not services.access.allows(calling_ae, peer):
            services.metrics.rejected_associations.labels("calling_ae_not_allowed").inc()
            log.warning(
                "association from %r at %s rejected: calling AE title not allowed", calling_ae, peer
            )
            assoc.acse.send_reject(
                REJECTED_PERMANENT, SOURCE_SERVICE_USER, DIAGNOSTIC_CALLING_AE_NOT_RECOGNIZED
            )
            _wait_for_reject_sent(assoc)
            return
        offered = primitive.presentation_context_definition_list
        assoc.acceptor.supported_contexts = services.contexts.for_offered(offered)
    except Exception:
        log.exception("association request handling failed")


def _wait_for_reject_sent(assoc: object) -> None:
    """Give the DUL thread time to put the A-ASSOCIATE-RJ on the wire."""
    deadline = time.monotonic() + REJECT_FLUSH_SECONDS
    dul = getattr(assoc, "dul", None)
    while dul is not None and time.monotonic() < deadline:
        if dul.state_machine.current_state == STATE_AWAITING_CLOSE:
            return
        time.sleep(POLL_SECONDS)


def handle_established(event: Event, services: NodeServices) -> None:
    calling_ae = str(event.assoc.requestor.ae_title).strip()
    services.tracker.established(id(event.assoc), calling_ae)
    services.metrics.associations.inc()
    services.metrics.active_associations.inc()
    log.debug("association from %s at %s established", calling_ae, event.assoc.requestor.address)


def handle_rejected(event: Event, services: NodeServices) -> None:
    """pynetdicom's own rejections (for example the association limit)."""
    primitive = event.assoc.acceptor.primitive
    source = getattr(primitive, "result_source", None)
    diagnostic = getattr(primitive, "diagnostic", None)
    if (source, diagnostic) == (SOURCE_PRESENTATION, DIAGNOSTIC_LOCAL_LIMIT_EXCEEDED):
        reason = "association_limit"
    else:
        reason = "negotiation"
    services.metrics.rejected_associations.labels(reason).inc()
    log.warning(
        "association from %s at %s rejected: %s",
        event.assoc.requestor.ae_title,
        event.assoc.requestor.address,
        reason.replace("_", " "),
    )


def handle_connection_closed(event: Event, services: NodeServices) -> None:
    """End of an association: its series may now go quiet."""
    record, series = services.tracker.ended(id(event.assoc))
    if record is None:
        return
    services.metrics.active_associations.dec()
    summary = ", ".join(f"{name} {count}" for name, count in sorted(record.outcomes.items()))
    log.info("association from %s closed: %s", record.calling_ae, summary or "nothing stored")
    if series:
        try:
            services.index.close_series(series)
        except Exception as exc:  # the stale window still makes them ready later
            log.error("could not mark %d series quiet: %s", len(series), type(exc).__name__)
