"""pynetdicom's acceptor, made to wait for work instead of polling, and to stream C-STORE data.

pynetdicom 3.0 runs two threads per association that poll: the DUL thread
checks its socket and queues and sleeps ``_run_loop_delay`` when idle, the
association thread sleeps a millisecond before every look at its message
queue; and it reads the socket 4 KiB at a time.  Per received instance that
adds up to a couple of milliseconds of waiting and hundreds of system calls.
Here (subclasses, same state machine and DIMSE decoding):

- :class:`EventDrivenDUL` blocks in ``select`` on its socket and a wake-up
  socket that every queued primitive pokes (and on a timeout, for its timers);
- :class:`StreamingAssociation`'s reactor blocks until a message or an ACSE
  primitive arrives;
- :class:`BulkSocket` reads each PDU with as few ``recv_into`` calls as the
  kernel allows;
- :class:`StreamingDimse` hands the data set fragments of a C-STORE request to
  a :class:`DataSetSink` as they arrive (for the node: written to its
  temporary file and hashed while the rest is still on the wire), instead of
  collecting them in memory for the handler to write afterwards;
- the lean C-STORE path: a request whose command set arrives whole and is
  plain (:func:`decode_store_command`) is decoded by hand, its data set
  streamed to a sink, and served by a :class:`LeanStore` on the DUL thread,
  the response going straight to the socket, without pynetdicom's DIMSE
  messages, primitives, service class and event objects (a large part of its
  per-instance cost); anything unusual takes pynetdicom's path as before.

Everything else (negotiation, the state machine, events and handlers) is
pynetdicom's own.  The subclasses depend on pynetdicom 3.0 internals
(``_run_reactor``, ``_create_association``, the DUL loop) and are checked
against the installed version.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

import pydicom
import pynetdicom
from pydicom.uid import RE_VALID_UID, UID
from pynetdicom import _config, evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom._validators import validate_ui
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import (
    C_CANCEL,
    C_STORE,
    N_EVENT_REPORT,
    DimsePrimitiveType,
    DimseServiceType,
)
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class
from pynetdicom.transport import AssociationSocket, RequestHandler
from pynetdicom.utils import make_target

log = logging.getLogger(__name__)

SUPPORTED_PYNETDICOM = ("3.0.",)
SUPPORTED_PYDICOM = ("3.0.",)
# Longest a DUL waits for its socket or a primitive before checking its timers.
DUL_WAIT_SECONDS = 0.05
# Longest the association reactor waits before checking its network timeout.
REACTOR_WAIT_SECONDS = 0.05
DUL_IDLE_SLEEP_SECONDS = 0.001  # when there is no socket to wait on
LAST_FRAGMENT = 0x02
COMMAND_FRAGMENT = 0x01
NO_DATA_SET = 0x0101
C_STORE_RSP_FIELD = 0x8001
PDU_HEADER_LENGTH = 6
MAX_CANCEL_REQUESTS = 10  # as pynetdicom
PDV_LENGTH_SIZE = 4
P_DATA_TF_TYPE = 0x04
KNOWN_PDU_TYPES = frozenset(range(0x01, 0x08))
# Handlers on these would miss PDUs that take the P-DATA fast path.
_WATCHING_EVENTS = (evt.EVT_DATA_RECV, evt.EVT_PDU_RECV, evt.EVT_FSM_TRANSITION)
# ... and these, messages and PDUs of the lean C-STORE path.
_LEAN_WATCHING_EVENTS = (
    *_WATCHING_EVENTS,
    evt.EVT_DIMSE_RECV,
    evt.EVT_DIMSE_SENT,
    evt.EVT_DATA_SENT,
    evt.EVT_PDU_SENT,
)
HANDLER_EXCEPTION_STATUS = 0xC211  # as pynetdicom answers when a handler raises
LAST_COMMAND = bytes((COMMAND_FRAGMENT | LAST_FRAGMENT,))


UID_VALIDATION_CACHE = 4096


@functools.lru_cache(maxsize=UID_VALIDATION_CACHE)
def _validate_ui_cached(value: str, enforce_conformance: bool) -> tuple[bool, str]:
    return validate_ui(UID(value))


def _validate_ui(value: Any) -> tuple[bool, str]:
    """pynetdicom's UI validator, remembered per value: an association request is
    decoded, negotiated and answered with the same hundred or so UIDs validated
    several times each (a sixth of the node's CPU per association)."""
    if not isinstance(value, str):
        return validate_ui(value)
    return _validate_ui_cached(str(value), bool(_config.ENFORCE_UID_CONFORMANCE))


@functools.lru_cache(maxsize=UID_VALIDATION_CACHE)
def _uid_conformant(uid: str) -> bool:
    return len(uid) <= MAX_UID_CHARS and RE_VALID_UID.match(uid) is not None


def _uid_is_valid(uid: str) -> bool:
    """pydicom's ``UID.is_valid`` (at most 64 characters matching its UI pattern),
    remembered per value.  pydicom asks ``re.match`` with its compiled pattern,
    which first misses ``re``'s cache of patterns (an exception each time); an
    association request checks the same few hundred UIDs several times each
    (storescu offers every storage SOP class): remembering them took the node's
    CPU per one-instance association from 12.0 to 10.5 ms."""
    return _uid_conformant(str(uid))


def install_uid_validation_cache() -> None:
    """Use :func:`_validate_ui` for pynetdicom's UI checks (process-wide, through
    its documented ``_config.VALIDATORS`` hook; the results are the same), and
    :func:`_uid_is_valid` for pydicom's ``UID.is_valid`` (same results; only for
    the pydicom versions whose property it was checked against)."""
    _config.VALIDATORS["UI"] = _validate_ui
    if pydicom.__version__.startswith(SUPPORTED_PYDICOM) and isinstance(
        UID.__dict__.get("is_valid"), property
    ):
        UID.is_valid = property(_uid_is_valid)  # type: ignore[assignment,method-assign]


def check_pynetdicom_version() -> None:
    if not pynetdicom.__version__.startswith(SUPPORTED_PYNETDICOM):
        raise RuntimeError(
            f"dicom_node.reactor is written against pynetdicom {SUPPORTED_PYNETDICOM}; "
            f"{pynetdicom.__version__} is installed"
        )


class DataSetSink(Protocol):
    """Where the fragments of one C-STORE request's data set go as they arrive."""

    def write(self, fragment: memoryview) -> None:
        """Take the next fragment (must not raise: remember a failure for the handler)."""
        ...

    def finish(self) -> None:
        """The last fragment has arrived; called on the receiving thread before the
        request goes to its handler (it may block, for example to fsync)."""
        ...

    def discard(self) -> None:
        """The request will not be handled (association ended): drop what was kept."""
        ...


@dataclass(frozen=True)
class StoreCommand:
    """The command set of a C-STORE request, as far as the node uses it."""

    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    priority: int


# (association, presentation context ID, command) -> a sink, or None to receive this
# data set in memory as pynetdicom does.
SinkFactory = Callable[[Association, int, StoreCommand], DataSetSink | None]


@dataclass(frozen=True)
class LeanStore:
    """Serves C-STORE requests without pynetdicom's DIMSE and service-class layers.

    ``handler`` is the ``EVT_C_STORE`` handler that ``serve`` stands in for: the
    lean path is taken only while that very handler is the one bound.  ``serve``
    gets the association, the context ID, the command and the sink holding the
    streamed data set (finished), and returns the response status.
    """

    handler: Callable[..., Any]
    serve: Callable[[Association, int, StoreCommand, DataSetSink], int]


class _StreamedDataSet(io.BytesIO):
    """Stands in for the data set of a streamed C-STORE request; carries its sink."""

    def __init__(self, sink: DataSetSink) -> None:
        super().__init__()
        self.sink = sink


def streamed_sink(request: object) -> DataSetSink | None:
    """The sink a C-STORE request's data set was streamed into, or None."""
    data_set = getattr(request, "DataSet", None)
    return data_set.sink if isinstance(data_set, _StreamedDataSet) else None


class _WakingQueue(queue.Queue[Any]):
    """A queue that calls ``wake`` after every put."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


def _pending(waiting: queue.Queue[Any]) -> bool:
    """Whether anything is queued: ``not Queue.empty()`` without taking the queue's
    lock (a snapshot either way; checked for every PDU)."""
    return bool(waiting.queue)


def pdv_items(body: bytearray) -> list[tuple[int, memoryview]] | None:
    """The (context ID, control header + fragment) PDVs of a P-DATA-TF body, or None
    if the items do not tile the body exactly (PS3.8 9.3.5)."""
    view = memoryview(body)
    items: list[tuple[int, memoryview]] = []
    offset, end = 0, len(body)
    while offset < end:
        if end - offset < PDV_LENGTH_SIZE:
            return None
        (length,) = struct.unpack_from(">L", body, offset)
        start = offset + PDV_LENGTH_SIZE
        if length < 2 or start + length > end:
            return None
        items.append((body[start], view[start + 1 : start + length]))
        offset = start + length
    return items or None


class BulkSocket(AssociationSocket):
    """Reads a PDU with large ``recv_into`` calls instead of 4 KiB ``recv`` calls.

    On a plain blocking socket each call asks for everything still missing with
    ``MSG_WAITALL``: the kernel keeps filling the buffer as segments arrive
    instead of returning each one to Python (a system call, a GIL hand-off and
    often a context switch per segment; a 128 KiB PDU from DCMTK came in
    several).  TLS sockets take no flags and read as before.
    """

    def recv(self, nr_bytes: int) -> bytearray:
        sock = cast(socket.socket, self.socket)
        flags = 0
        if not isinstance(sock, ssl.SSLSocket) and sock.gettimeout() is None:
            flags = socket.MSG_WAITALL
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        received = 0
        while received < nr_bytes:
            count = sock.recv_into(view[received:], nr_bytes - received, flags)
            if not count:  # connection closed: return what arrived (as pynetdicom does)
                view.release()
                del buffer[received:]
                return buffer
            received += count
        view.release()
        return buffer


class EventDrivenDUL(DULServiceProvider):
    """The DUL reactor, waiting in ``select`` instead of sleeping between polls."""

    def __init__(self, assoc: Association) -> None:
        super().__init__(assoc)
        self._readable = False  # what the last wait saw of the socket
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self.to_provider_queue = _WakingQueue(self.wake)

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already awake) or closed (finished)
            self._wake_out.send(b"\0")

    def send_command(self, context_id: int, command: bytes) -> None:
        """Send a command set (one PDV, last fragment) to the peer.

        On the DUL thread in Sta6 with nothing else queued to send, the
        P-DATA-TF goes straight to the socket, which is what the state machine
        does for it (DT-1, staying in Sta6); otherwise it is queued as pynetdicom
        queues every primitive.
        """
        wrapper = self.socket
        if (
            wrapper is not None
            and threading.current_thread() is self
            and self.state_machine.current_state == "Sta6"
            and not _pending(self.to_provider_queue)
        ):
            item = struct.pack(">LB", 1 + len(LAST_COMMAND) + len(command), context_id)
            pdu_header = struct.pack(">BBL", P_DATA_TF_TYPE, 0, len(item) + 1 + len(command))
            wrapper.send(b"".join((pdu_header, item, LAST_COMMAND, command)))
            return
        self.send_pdu(_p_data(context_id, LAST_COMMAND + command))

    def kill_dul(self) -> None:
        super().kill_dul()
        self.wake()

    def stop_dul(self) -> bool:
        if self.state_machine.current_state == "Sta1":
            self._kill_thread = True
            self.wake()
            while self.is_alive():
                time.sleep(DUL_IDLE_SLEEP_SECONDS)
            return True
        return False

    def _wait_for_work(self) -> None:
        """Block until the socket is readable, a primitive is queued, or a timeout."""
        wrapper = self.socket
        sock = wrapper.socket if wrapper is not None else None
        if sock is None or not wrapper._is_connected:  # type: ignore[union-attr]
            time.sleep(DUL_IDLE_SLEEP_SECONDS)
            return
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return
        try:
            readable, _, _ = select.select([sock, self._wake_in], [], [], DUL_WAIT_SECONDS)
        except (OSError, ValueError):  # closed meanwhile: the loop notices
            return
        self._readable = sock in readable
        if self._wake_in in readable:
            with contextlib.suppress(OSError):
                while self._wake_in.recv(4096):
                    pass

    def run_reactor(self) -> None:
        """pynetdicom's DUL loop with :meth:`_wait_for_work` in place of its sleep."""
        try:
            self._run()
        finally:
            self._wake_in.close()
            self._wake_out.close()

    def _is_transport_event(self) -> bool:
        """pynetdicom's, without asking ``select`` again right after
        :meth:`_wait_for_work` saw the socket readable (once per PDU)."""
        readable, self._readable = self._readable, False
        wrapper = self.socket
        if (
            readable
            and wrapper is not None
            and wrapper._is_connected
            and self.state_machine.current_state != "Sta13"
        ):
            self._read_pdu_data()
            return True
        return super()._is_transport_event()

    def _read_pdu_data(self) -> None:
        """Read one PDU; P-DATA in Sta6 goes straight to DIMSE (see :meth:`_fast_p_data`).

        While a C-STORE data set is being streamed, the PDUs after it that are
        already on the wire are read here too (see :meth:`_next_streamed_header`),
        without a trip through the reactor loop (``select``, timers, queues) each.
        """
        wrapper = cast(AssociationSocket, self.socket)
        header: bytearray | None
        try:
            header = wrapper.recv(PDU_HEADER_LENGTH)
        except (OSError, TimeoutError):
            log.error("connection closed before the entire PDU was received")
            self.event_queue.put("Evt17")
            return
        while header is not None and self._read_pdu(wrapper, header):
            header = self._next_streamed_header(wrapper)

    def _next_streamed_header(self, wrapper: AssociationSocket) -> bytearray | None:
        """The header of the next PDU if the loop may go on reading at once, else None.

        Only in the middle of a data set streamed to a sink (the peer is sending
        the rest), in Sta6 with no event or primitive queued and the reactor not
        told to stop, on a plain socket, and only when the next header is already
        there: otherwise the reactor loop waits for it (with its timers).
        """
        sock = wrapper.socket
        if (
            cast(StreamingDimse, self.assoc.dimse).streaming is None
            or self._kill_thread
            or _pending(self.event_queue)
            or _pending(self.to_provider_queue)
            or not isinstance(sock, socket.socket)
            or isinstance(sock, ssl.SSLSocket)
            or self.state_machine.current_state != "Sta6"
        ):
            return None
        try:
            first = sock.recv(PDU_HEADER_LENGTH, socket.MSG_DONTWAIT)
        except OSError:  # nothing there yet (or an error the reactor loop will see)
            return None
        if not first:
            return None  # closed: the reactor loop sees it
        header = bytearray(first)
        if len(header) < PDU_HEADER_LENGTH:  # the rest of the header is on its way
            try:
                header += wrapper.recv(PDU_HEADER_LENGTH - len(header))
            except (OSError, TimeoutError):
                return bytearray()  # reported as a connection closed mid-PDU
        return header

    def _read_pdu(self, wrapper: AssociationSocket, header: bytearray) -> bool:
        """Read the body of the PDU with ``header`` and handle it; True if it was a
        P-DATA-TF that went straight to DIMSE (the caller may read on)."""
        if len(header) != PDU_HEADER_LENGTH:
            self.event_queue.put("Evt17")
            return False
        pdu_type, _, length = struct.unpack(">BBL", header)
        if pdu_type not in KNOWN_PDU_TYPES:
            log.error("unknown PDU type 0x%02X received", pdu_type)
            self.event_queue.put("Evt19")
            return False
        try:
            body = wrapper.recv(length)
        except (OSError, TimeoutError):
            log.error("connection closed before the entire PDU was received")
            self.event_queue.put("Evt17")
            return False
        if len(body) != length:
            log.error("the received PDU is shorter than expected")
            self.event_queue.put("Evt17")
            return False
        if pdu_type == P_DATA_TF_TYPE and self._fast_p_data(body):
            return True
        try:
            pdu, event = self._decode_pdu(header + body)
        except Exception:
            log.exception("unable to decode the received PDU")
            self.event_queue.put("Evt19")
            return False
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)
        return False

    def _fast_p_data(self, body: bytearray) -> bool:
        """Hand a P-DATA-TF's PDVs to DIMSE directly, as the state machine would.

        In Sta6 a P-DATA-TF (Evt10) always runs DT-2, which passes its PDVs to
        DIMSE and stays in Sta6; doing that here skips decoding the PDU into
        objects and the event round trip.  Only when nothing else is queued
        (so the order of events is kept), no handler watches received PDUs or
        transitions, and the PDV items are well formed; otherwise False.
        """
        if self.state_machine.current_state != "Sta6" or _pending(self.event_queue):
            return False
        assoc = self.assoc
        if any(assoc.get_handlers(event) for event in _WATCHING_EVENTS):
            return False
        fragments = pdv_items(body)
        if fragments is None:
            return False
        cast(StreamingDimse, assoc.dimse).receive_fragments(fragments)
        return True

    def _run(self) -> None:
        self._idle_timer.start()
        idle = False
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                idle = True
            if idle:
                self._wait_for_work()
            if self._kill_thread:
                break
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception:
                log.exception("exception in the DUL reactor, aborting the association")
                abort_pdu = A_ABORT_RQ()
                abort_pdu.source = 0x02
                abort_pdu.reason_diagnostic = 0x00
                with contextlib.suppress(Exception):
                    cast(AssociationSocket, self.socket).send(abort_pdu.encode())
                self.assoc.is_aborted = True
                self.assoc.is_established = False
                self.assoc._kill = True
                self._kill_thread = True
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                idle = True
                continue
            self.state_machine.do_action(event)
            idle = False


def _p_data(context_id: int, data: bytes) -> P_DATA:
    """A P-DATA primitive with one PDV (pynetdicom wants ``[ID, bytes]`` lists)."""
    primitive = P_DATA()
    primitive.presentation_data_value_list = cast(Any, [[context_id, data]])
    return primitive


def _store_primitive(command: StoreCommand, sink: DataSetSink) -> C_STORE:
    """The pynetdicom request of a C-STORE received on the lean path."""
    primitive = C_STORE()
    primitive.MessageID = command.message_id
    primitive.AffectedSOPClassUID = command.sop_class_uid
    primitive.AffectedSOPInstanceUID = command.sop_instance_uid
    primitive.Priority = command.priority
    primitive.DataSet = _StreamedDataSet(sink)
    return primitive


_service_classes: dict[str, bool] = {}
MAX_CACHED_CLASSES = 1024


def _storage_class(sop_class_uid: str) -> bool:
    """Whether pynetdicom serves this SOP class with its Storage Service Class (as
    ``Association._serve_request`` decides)."""
    known = _service_classes.get(sop_class_uid)
    if known is None:
        known = _config.UNRESTRICTED_STORAGE_SERVICE or (
            uid_to_service_class(sop_class_uid) is StorageServiceClass
        )
        if len(_service_classes) < MAX_CACHED_CLASSES:
            _service_classes[sop_class_uid] = known
    return known


def _element(element: int, value: bytes) -> bytes:
    """One group-0000 element, Implicit VR Little Endian (PS3.7 6.3.1)."""
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _uid(value: object) -> bytes:
    raw = str(value).encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def encode_store_response(
    *, message_id: int, sop_class_uid: str | None, sop_instance_uid: str, status: int
) -> bytes:
    """The command set of a C-STORE response with a status and nothing else, Implicit VR
    Little Endian, byte for byte as pynetdicom encodes it (raises ``struct.error`` or
    ``UnicodeEncodeError`` for values it cannot carry)."""
    body = b"".join(
        (
            _element(0x0002, _uid(sop_class_uid)) if sop_class_uid is not None else b"",
            _element(0x0100, struct.pack("<H", C_STORE_RSP_FIELD)),
            _element(0x0120, struct.pack("<H", message_id)),
            _element(0x0800, struct.pack("<H", NO_DATA_SET)),
            _element(0x0900, struct.pack("<H", status)),
            _element(0x1000, _uid(sop_instance_uid)),
        )
    )
    return _element(0x0000, struct.pack("<I", len(body))) + body


def store_response_command(primitive: object) -> bytes | None:
    """The encoded command set of a C-STORE response, or None if it needs pynetdicom.

    Written by hand (pynetdicom builds and encodes a pydicom data set for every
    response, a large part of its per-instance cost): the same bytes, for a
    response with a status and no error comment or offending elements.
    """
    if not isinstance(primitive, C_STORE) or primitive.MessageIDBeingRespondedTo is None:
        return None
    if primitive.ErrorComment is not None or primitive.OffendingElement is not None:
        return None
    status = primitive.Status
    if not isinstance(status, int) or primitive.AffectedSOPInstanceUID is None:
        return None
    sop_class = primitive.AffectedSOPClassUID
    try:
        return encode_store_response(
            message_id=primitive.MessageIDBeingRespondedTo,
            sop_class_uid=None if sop_class is None else str(sop_class),
            sop_instance_uid=str(primitive.AffectedSOPInstanceUID),
            status=status,
        )
    except (struct.error, UnicodeEncodeError):
        return None


# The elements a C-STORE request's command set may have for the lean path; anything
# else (a C-MOVE originator, private or unknown elements) goes through pynetdicom.
_GROUP_LENGTH = 0x0000
_AFFECTED_SOP_CLASS = 0x0002
_COMMAND_FIELD = 0x0100
_MESSAGE_ID = 0x0110
_PRIORITY = 0x0700
_DATA_SET_TYPE = 0x0800
_AFFECTED_SOP_INSTANCE = 0x1000
_LEAN_ELEMENTS = frozenset(
    (
        _GROUP_LENGTH,
        _AFFECTED_SOP_CLASS,
        _COMMAND_FIELD,
        _MESSAGE_ID,
        _PRIORITY,
        _DATA_SET_TYPE,
        _AFFECTED_SOP_INSTANCE,
    )
)
_REQUIRED_ELEMENTS = _LEAN_ELEMENTS - {_GROUP_LENGTH}
C_STORE_RQ_FIELD = 0x0001
PRIORITIES = frozenset((0x0000, 0x0001, 0x0002))  # medium, high, low
MAX_UID_CHARS = 64
_ELEMENT_HEADER = struct.Struct("<HHL")
_US = struct.Struct("<H")
_UID_CHARS = frozenset(b"0123456789.")


def _conformant_uid(raw: bytes) -> str | None:
    """A UI value without its padding, if it is a conformant UID (PS3.5 9.1)."""
    value = raw.rstrip(b"\0 ")
    if not value or len(value) > MAX_UID_CHARS or not _UID_CHARS.issuperset(value):
        return None
    for component in value.split(b"."):
        if not component or (len(component) > 1 and component[0] == 0x30):  # "0" leading
            return None
    return value.decode("ascii")


def decode_store_command(command: bytes | memoryview) -> StoreCommand | None:
    """A C-STORE request's command set (Implicit VR Little Endian, PS3.7 9.3.1.1) with a
    data set, decoded by hand; None for anything else or anything unusual, which is
    then left to pynetdicom (so it is judged exactly as before)."""
    values: dict[int, bytes] = {}
    offset, end = 0, len(command)
    while offset < end:
        if end - offset < _ELEMENT_HEADER.size:
            return None
        group, element, length = _ELEMENT_HEADER.unpack_from(command, offset)
        offset += _ELEMENT_HEADER.size
        if group != 0 or length > end - offset or element not in _LEAN_ELEMENTS:
            return None
        if element in values:
            return None
        values[element] = bytes(command[offset : offset + length])
        offset += length
    if not _REQUIRED_ELEMENTS.issubset(values):
        return None
    us = {}
    for element in (_COMMAND_FIELD, _MESSAGE_ID, _PRIORITY, _DATA_SET_TYPE):
        if len(values[element]) != _US.size:
            return None
        (us[element],) = _US.unpack(values[element])
    if (
        us[_COMMAND_FIELD] != C_STORE_RQ_FIELD
        or us[_DATA_SET_TYPE] == NO_DATA_SET
        or us[_PRIORITY] not in PRIORITIES
    ):
        return None
    sop_class = _conformant_uid(values[_AFFECTED_SOP_CLASS])
    sop_instance = _conformant_uid(values[_AFFECTED_SOP_INSTANCE])
    if sop_class is None or sop_instance is None:
        return None
    return StoreCommand(
        message_id=us[_MESSAGE_ID],
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        priority=us[_PRIORITY],
    )


class StreamingDimse(DIMSEServiceProvider):
    """DIMSE decoding that hands C-STORE data set fragments to a sink as they arrive."""

    def __init__(
        self, assoc: Association, sinks: SinkFactory | None, lean: LeanStore | None = None
    ) -> None:
        super().__init__(assoc)
        self._sinks = sinks
        self._lean = lean
        self._sink: DataSetSink | None = None
        self._decided = False  # whether the current message's sink was asked for
        # The C-STORE request being streamed on the lean path, if any.
        self._lean_request: tuple[int, StoreCommand] | None = None

    @property
    def streaming(self) -> DataSetSink | None:
        """The sink of the data set being received, while more of it is to come."""
        return self._sink

    def receive_primitive(self, primitive: P_DATA) -> None:
        self.receive_fragments(
            [
                (context_id, memoryview(data))
                for context_id, data in primitive.presentation_data_value_list
            ]
        )

    def receive_fragments(self, fragments: list[tuple[int, memoryview]]) -> None:
        """Take the PDVs of one P-DATA (each: message control header, then the fragment)."""
        for context_id, data in fragments:
            control = data[0]
            sink = self._sink
            if sink is None or control & COMMAND_FRAGMENT:
                if self._lean_request is not None:  # a command inside a data set
                    self._protocol_error("a command fragment inside a C-STORE data set")
                    return
                if control & LAST_COMMAND[0] == LAST_COMMAND[0] and self._start_lean(
                    context_id, data
                ):
                    continue
                self._receive_one(context_id, bytes(data))
                continue
            sink.write(data[1:])
            if not control & LAST_FRAGMENT:
                continue
            self._sink = None
            sink.finish()
            lean, self._lean_request = self._lean_request, None
            if lean is not None:
                cast(StreamingAssociation, self.assoc).serve_lean(lean[0], lean[1], sink)
                continue
            # Completes the message as pynetdicom would, with no bytes left to add.
            self._receive_one(context_id, bytes((control,)))

    def _start_lean(self, context_id: int, data: memoryview) -> bool:
        """A whole C-STORE request command in one PDV: decode it by hand and stream its
        data set to a sink, without pynetdicom's DIMSE layer (see :class:`LeanStore`).
        False (nothing done) where pynetdicom's path has to judge it."""
        if self._lean is None or self._sinks is None or self.message is not None:
            return False
        assoc = cast(StreamingAssociation, self.assoc)
        if not assoc.lean_allowed(context_id):
            return False
        command = decode_store_command(data[1:])
        if command is None or not _storage_class(command.sop_class_uid):
            return False
        try:
            sink = self._sinks(assoc, context_id, command)
        except Exception:
            log.exception("could not open a sink for a C-STORE data set")
            return False
        if sink is None:
            return False
        self._sink = sink
        self._lean_request = (context_id, command)
        return True

    def _protocol_error(self, what: str) -> None:
        """Drop what is being received and abort the association (as for an invalid PDU)."""
        log.error("received %s; aborting the association", what)
        sink, self._sink, self._lean_request = self._sink, None, None
        if sink is not None:
            sink.discard()
        self.dul.event_queue.put("Evt19")

    def _receive_one(self, context_id: int, data: bytes) -> None:
        """pynetdicom's ``receive_primitive`` for one PDV, and a sink once a C-STORE
        request's command set is complete."""
        message = self.message
        if message is None:  # the first fragment of a new message
            message = self.message = DIMSEMessage()
            self._decided = False
        if message.decode_msg(_p_data(context_id, data), self.assoc):
            self.message = None
            self._complete(message)
            return
        if self._decided or self._sinks is None or not isinstance(message, C_STORE_RQ):
            return
        # The command set of a C-STORE request with a data set is complete.
        self._decided = True
        command_set = message.command_set
        try:
            sink = self._sinks(
                self.assoc,
                context_id,
                StoreCommand(
                    message_id=int(command_set.MessageID),
                    sop_class_uid=str(command_set.AffectedSOPClassUID),
                    sop_instance_uid=str(command_set.AffectedSOPInstanceUID),
                    priority=int(command_set.Priority),
                ),
            )
        except Exception:
            log.exception("could not open a sink for a C-STORE data set")
            sink = None
        if sink is not None:
            self._sink = sink
            message.data_set = _StreamedDataSet(sink)

    def _complete(self, message: DIMSEMessage) -> None:
        """A message is decoded: deliver it (as pynetdicom's ``receive_primitive`` does,
        except that requests go through :meth:`StreamingAssociation.deliver`)."""
        evt.trigger(self.assoc, evt.EVT_DIMSE_RECV, {"message": message})
        context_id = cast(int, message.context_id)
        try:
            primitive = message.message_to_primitive()
        except Exception:
            log.exception("received an invalid DIMSE message")
            self.dul.event_queue.put("Evt19")
            return
        if isinstance(primitive, C_CANCEL) and len(self.cancel_req) < MAX_CANCEL_REQUESTS:
            self.cancel_req[cast(int, primitive.MessageIDBeingRespondedTo)] = primitive
        elif isinstance(primitive, N_EVENT_REPORT) and primitive.is_valid_request:
            # pynetdicom serves these on a thread of their own (not to block the DUL).
            threading.Thread(
                target=make_target(self.assoc._serve_request), args=(primitive, context_id)
            ).start()
        else:
            cast(StreamingAssociation, self.assoc).deliver(
                cast(DimseServiceType, primitive), context_id
            )

    def send_msg(self, primitive: DimsePrimitiveType, context_id: int) -> None:
        """Send a DIMSE message; a plain C-STORE response is encoded by hand."""
        command = store_response_command(primitive)
        if command is None or self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
            super().send_msg(primitive, context_id)
            return
        self.dul.send_pdu(_p_data(context_id, LAST_COMMAND + command))

    def discard_pending(self) -> None:
        """Drop the sinks of requests that will not be handled (association ended)."""
        sink, self._sink, self._lean_request = self._sink, None, None
        if sink is not None:
            sink.discard()
        while True:
            try:
                _context_id, request = self.msg_queue.get(block=False)
            except queue.Empty:
                return
            pending = streamed_sink(request)
            if pending is not None:
                pending.discard()


class StreamingAssociation(Association):
    """An acceptor association with :class:`EventDrivenDUL` and :class:`StreamingDimse`."""

    def __init__(
        self, ae: Any, mode: str, sinks: SinkFactory | None, lean: LeanStore | None = None
    ) -> None:
        super().__init__(ae, mode)
        self._work = threading.Event()
        self._serving = threading.Lock()  # held while a request is served
        self._lean = lean
        self.dul = EventDrivenDUL(self)
        self.dimse = StreamingDimse(self, sinks, lean)
        self.dimse.msg_queue = _WakingQueue(self._work.set)
        self.dul.to_user_queue = _WakingQueue(self._work.set)
        # The timers live in the DUL: apply the AE's timeouts to the new one.
        self.acse_timeout = self.acse_timeout
        self.network_timeout = self.network_timeout

    def run(self) -> None:
        try:
            super().run()
        finally:
            cast(StreamingDimse, self.dimse).discard_pending()

    def _serve_request(self, msg: Any, context_id: int) -> None:
        try:
            super()._serve_request(msg, context_id)
        finally:
            sink = streamed_sink(msg)
            if sink is not None:  # no-op if the handler stored (or dropped) it already
                sink.discard()

    def deliver(self, request: DimseServiceType, context_id: int) -> None:
        """A request arrived (on the DUL thread): serve a C-STORE right here, else queue it.

        Serving on the thread that received it saves two thread hand-offs per
        instance (and the GIL convoys they cause on a busy machine); the peer
        waits for the response anyway.  Only when nothing is queued or being
        served by the association thread (so requests stay in order), for an
        accepted context, and while the association is established; anything
        else goes to the association thread as in pynetdicom.
        """
        if (
            isinstance(request, C_STORE)
            and request.is_valid_request
            and context_id in self._accepted_cx
            and self.is_established
            and not self._sent_release
            and self._serving.acquire(blocking=False)
        ):
            try:
                if not _pending(self.dimse.msg_queue):
                    self._serve_request(request, context_id)
                    return
            finally:
                self._serving.release()
        self.dimse.msg_queue.put((context_id, request))

    def lean_allowed(self, context_id: int) -> bool:
        """Whether a C-STORE request on this context may take the lean path: the lean
        store's handler is the bound one, nobody watches DIMSE messages, data or
        PDUs, the context is accepted, and no SOP Class Common Extended
        Negotiation changes which service serves it."""
        lean = self._lean
        if lean is None or context_id not in self._accepted_cx:
            return False
        bound = self.get_handlers(evt.EVT_C_STORE)
        if not isinstance(bound, tuple) or bound[0] is not lean.handler:
            return False
        if self.acceptor.accepted_common_extended:
            return False
        return not any(self.get_handlers(event) for event in _LEAN_WATCHING_EVENTS)

    def serve_lean(self, context_id: int, command: StoreCommand, sink: DataSetSink) -> None:
        """A C-STORE request received on the lean path, its data set in ``sink``.

        Served here (on the DUL thread) as :meth:`deliver` would serve it, with
        what pynetdicom's ``_serve_request`` and Storage SCP do around the
        handler: no C-CANCEL carried over, the handler's status (0xC211 if it
        raises), and the response sent unless the association ended meanwhile.
        When it cannot be served here (something queued or being served, the
        association releasing), it becomes a pynetdicom request like any other.
        """
        lean = cast(LeanStore, self._lean)
        if not (
            self.is_established
            and not self._sent_release
            and context_id in self._accepted_cx
            and self._serving.acquire(blocking=False)
        ):
            self.dimse.msg_queue.put((context_id, _store_primitive(command, sink)))
            return
        try:
            if _pending(self.dimse.msg_queue):
                self.dimse.msg_queue.put((context_id, _store_primitive(command, sink)))
                return
            self.dimse.cancel_req = {}
            self._is_paused = True
            try:
                status = lean.serve(self, context_id, command, sink)
            except Exception:
                log.exception("exception in the C-STORE handler")
                status = HANDLER_EXCEPTION_STATUS
            finally:
                self._is_paused = False
                sink.discard()  # no-op once the handler stored (or dropped) it
            self.dimse.cancel_req = {}
            if not self.is_established:
                return
            cast(EventDrivenDUL, self.dul).send_command(
                context_id,
                encode_store_response(
                    message_id=command.message_id,
                    sop_class_uid=command.sop_class_uid,
                    sop_instance_uid=command.sop_instance_uid,
                    status=status,
                ),
            )
        finally:
            self._serving.release()

    def _run_reactor(self) -> None:
        """pynetdicom's acceptor loop, waiting on its queues instead of sleeping 1 ms."""
        self._is_paused = False
        served = False
        while not self._kill:
            if not served:
                self._work.wait(REACTOR_WAIT_SECONDS)
            self._work.clear()
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            with self._serving:
                context_id, msg = self.dimse.get_msg(block=False)
                served = msg is not None
                if msg:
                    self._serve_request(msg, cast(int, context_id))
            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                log.debug("association released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return
            if self.acse.is_aborted():
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return
            if not self.dul.is_alive():
                self.kill()
                return
            if self.dul.idle_timer_expired():
                log.error("network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()
                self.kill()
                return


class StreamingRequestHandler(RequestHandler):
    """Creates :class:`StreamingAssociation` acceptors on :class:`BulkSocket` sockets.

    The server's ``data_set_sinks`` attribute (a :data:`SinkFactory` or None)
    decides where C-STORE data sets go, its ``lean_store`` (a :class:`LeanStore`
    or None) who serves C-STORE requests that take the lean path.
    """

    def _create_association(self) -> Association:
        sinks: SinkFactory | None = getattr(self.server, "data_set_sinks", None)
        lean: LeanStore | None = getattr(self.server, "lean_store", None)
        assoc = StreamingAssociation(self.ae, MODE_ACCEPTOR, sinks, lean)
        assoc._server = self.server
        timestamp = datetime.strftime(datetime.now(), "%Y%m%d%H%M%S")
        assoc.name = f"AcceptorThread@{timestamp}"
        request = cast(socket.socket, self.request)
        with contextlib.suppress(OSError):  # responses are small: send them at once
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assoc.set_socket(BulkSocket(assoc, client_socket=request))
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = self.server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = deepcopy(self.server.contexts)
        assoc.requestor.address_info = self.remote
        for event in self.server._handlers:
            if event.is_intervention and self.server._handlers[event]:
                assoc.bind(event, *self.server._handlers[event])
            elif isinstance(event, evt.NotificationEvent):
                for handler in self.server._handlers[event]:
                    handler = cast(evt._HandlerBase, handler)
                    assoc.bind(event, handler[0], handler[1])
        return assoc
