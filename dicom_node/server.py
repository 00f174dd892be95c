"""The Application Entity: C-ECHO and C-STORE for every storage SOP class.

:class:`DicomNode` sets up a pynetdicom ``AE`` from a :class:`NodeConfig`,
binds the handlers of :mod:`dicom_node.handlers` to their dependencies
through pynetdicom's handler arguments, and runs the association server on a
thread.  Several receiver processes share one port through one listening
socket (:func:`listening_socket`, made by their parent and handed to each in
``NodeConfig.listener``); a process that is already serving associations
waits a little before taking a new connection, so an idle one takes it:
four associations land in four processes.
"""

from __future__ import annotations

import errno
import functools
import gc
import logging
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, evt
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node import handlers
from dicom_node.access import AccessPolicy
from dicom_node.contexts import VERIFICATION
from dicom_node.handlers import NodeServices
from dicom_node.header import configure_pydicom
from dicom_node.index import InstanceIndex
from dicom_node.metrics import ReceiveMetrics
from dicom_node.negotiation import install_remembered_negotiation
from dicom_node.reactor import (
    LeanStore,
    SinkFactory,
    StreamingRequestHandler,
    check_pynetdicom_version,
    install_uid_validation_cache,
)
from dicom_node.storage import InstanceStore

log = logging.getLogger(__name__)

DEFAULT_PORT = 11112
DEFAULT_MAX_PDU = 262_144
STOP_POLL_SECONDS = 0.05
LISTEN_BACKLOG = 128
BIND_RETRY_SECONDS = 15.0
BIND_RETRY_INTERVAL_SECONDS = 0.5
IDLE_STATE = "Sta1"  # the DUL state machine's: no transport connection
# On a shared listening socket, how long a process waits per association it already
# serves before taking a new connection (an idle process takes it meanwhile).
ACCEPT_DEFER_SECONDS = 0.01
MAX_ACCEPT_DEFER_SECONDS = 0.1
YOUNG_GENERATIONS = 1  # gc.collect(1): generations 0 and 1


@dataclass(frozen=True)
class TlsConfig:
    certificate: Path
    private_key: Path
    client_ca: Path | None = None  # when set, callers must present a certificate it signed

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.certificate, self.private_key)
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=self.client_ca)
        return context


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    ae_title: str = "RADSCRIBE"
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    access: AccessPolicy = field(default_factory=AccessPolicy)
    max_associations: int = 16
    max_pdu: int = DEFAULT_MAX_PDU
    tls: TlsConfig | None = None
    # A listening socket shared with other receiver processes (see listening_socket);
    # None: the node binds host:port itself.
    listener: socket.socket | None = None
    network_timeout: float = 60.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0


class _Server(ThreadedAssociationServer):
    """Association threads with :mod:`dicom_node.reactor`'s acceptors; C-STORE data
    sets go to ``data_set_sinks`` as they arrive, and ``lean_store`` serves the
    requests that take the reactor's lean path."""

    daemon_threads = True
    data_set_sinks: SinkFactory | None = None
    lean_store: LeanStore | None = None

    def service_actions(self) -> None:
        """Instead of pynetdicom's full ``gc.collect()`` every 30 s (a stall of the
        whole process, GIL held, of a fraction of a second with the application
        loaded): collect the young generations, where ended associations' cycles are,
        on pynetdicom's schedule (every 60th call; the loop calls it twice a second
        and after each new association).  Collecting on every call cost about 2% of
        the receiving process's Python time; the interpreter's own collections of the
        young generations run meanwhile as usual."""
        if self._gc[0] >= self._gc[1]:
            gc.collect(YOUNG_GENERATIONS)
            self._gc[0] = 0
            return
        self._gc[0] += 1


class _SharedListenerServer(_Server):
    """An association server on a listening socket that other processes share.

    Every process waiting on the socket wakes for a new connection; one that
    already serves N associations waits N x ``ACCEPT_DEFER_SECONDS`` before it
    tries to accept, so the least busy process takes it and the others find
    nothing (the socket is non-blocking; socketserver ignores the error).
    ``SO_REUSEPORT`` listeners instead hash each connection to a process
    whatever its load: four associations over four processes all land in
    different ones only 4!/4^4, about 9 %, of the time, and a process with two
    makes its senders wait on its GIL (the slowest association sets when a
    study is in).
    """

    def __init__(self, *args: Any, listener: socket.socket, **kwargs: Any) -> None:
        self._listener = listener
        self._starting = 0  # accepted connections whose association thread is not up yet
        self._starting_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        # socketserver made a fresh socket: use the shared one instead.
        cast(socket.socket, self.socket).close()
        self.socket = self._listener
        self.socket.setblocking(False)  # another process may take the connection first
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        """The shared socket already listens."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        busy = self._connected_associations() + self._starting
        if busy:
            time.sleep(min(busy * ACCEPT_DEFER_SECONDS, MAX_ACCEPT_DEFER_SECONDS))
        # The accepted socket blocks (Python gives it the default timeout, None) even
        # though the listener does not.
        return super().get_request()

    def process_request(self, request: Any, client_address: Any) -> None:
        # Counted as busy from here (the serving thread starts) until its association
        # thread runs: connections arriving together would otherwise all see an idle
        # process.
        with self._starting_lock:
            self._starting += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._started()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._started()

    def _connected_associations(self) -> int:
        """Associations of this process whose connection is open.  One whose peer closed
        the connection before asking for an association (a TCP health check, say) keeps
        its thread for pynetdicom's ACSE timeout, idle: not counted."""
        return sum(
            1
            for assoc in self.active_associations
            if assoc.dul.state_machine.current_state != IDLE_STATE
        )

    def _started(self) -> None:
        with self._starting_lock:
            self._starting -= 1


def listening_socket(
    host: str, port: int, *, retry_seconds: float = BIND_RETRY_SECONDS
) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, for receiver processes to share
    (pass it in ``NodeConfig.listener``); port 0 picks a free port.

    While the port is in use, binding is retried for ``retry_seconds``: receivers of a
    node that was killed keep the old socket until they notice their parent is gone
    (a second or so) and their open associations end.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + retry_seconds
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(LISTEN_BACKLOG)
            return sock
        except BaseException as exc:
            sock.close()
            in_use = isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
            if not in_use or time.monotonic() >= deadline:
                raise
        log.warning("port %d is in use; retrying", port)
        time.sleep(BIND_RETRY_INTERVAL_SECONDS)


class DicomNode:
    """A running storage SCP; :meth:`start` returns once it listens."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        store: InstanceStore,
        index: InstanceIndex,
        metrics: ReceiveMetrics | None = None,
    ) -> None:
        self.config = config
        self.services = NodeServices(
            store=store,
            index=index,
            metrics=metrics if metrics is not None else ReceiveMetrics(),
            access=config.access,
        )
        self._server: ThreadedAssociationServer | None = None
        self._thread: threading.Thread | None = None
        self.ae = self._build_ae()

    def _build_ae(self) -> AE:
        # pynetdicom's per-PDU logging handlers cost CPU on every PDU even when
        # their output is filtered; the node logs per association instead.
        _config.LOG_HANDLER_LEVEL = "none"
        check_pynetdicom_version()
        install_uid_validation_cache()
        install_remembered_negotiation()
        configure_pydicom()
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_associations = self.config.max_associations
        ae.maximum_pdu_size = self.config.max_pdu
        ae.network_timeout = self.config.network_timeout
        ae.acse_timeout = self.config.acse_timeout
        ae.dimse_timeout = self.config.dimse_timeout
        ae.require_called_aet = False
        # Only Verification here: each association gets the storage contexts it
        # asks for in the EVT_REQUESTED handler (see ContextTable).
        ae.add_supported_context(VERIFICATION, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        return ae

    def _handlers(self) -> list[Any]:
        services = self.services
        return [
            (evt.EVT_REQUESTED, handlers.handle_requested, [services]),
            (evt.EVT_ESTABLISHED, handlers.handle_established, [services]),
            (evt.EVT_REJECTED, handlers.handle_rejected, [services]),
            (evt.EVT_C_ECHO, handlers.handle_echo),
            (evt.EVT_C_STORE, handlers.handle_store, [services]),
            (evt.EVT_CONN_CLOSE, handlers.handle_connection_closed, [services]),
        ]

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the DICOM node is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the DICOM node is already running")
        ssl_context = self.config.tls.server_context() if self.config.tls else None
        listener = self.config.listener
        shared: dict[str, Any] = {} if listener is None else {"listener": listener}
        server = self.ae.make_server(
            (self.config.host, self.config.port),
            ae_title=self.config.ae_title,
            ssl_context=ssl_context,
            evt_handlers=self._handlers(),
            server_class=_Server if listener is None else _SharedListenerServer,
            request_handler=StreamingRequestHandler,
            **shared,
        )
        cast(_Server, server).data_set_sinks = functools.partial(
            handlers.open_received, self.services
        )
        cast(_Server, server).lean_store = handlers.lean_store(self.services)
        self.ae._servers.append(server)  # as AE.start_server does, so shutdown() finds it
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="dicom-node-accept", daemon=True
        )
        self._thread.start()
        host, port = self.address
        log.info(
            "DICOM node %s listening on %s:%d (TLS %s)",
            self.config.ae_title,
            host,
            port,
            "on" if ssl_context else "off",
        )

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop accepting, let open associations finish (up to the grace), then abort them."""
        server = self._server
        if server is None:
            return
        # Stop accepting first (serve_forever returns, the listening socket closes),
        # then give open associations the grace period before aborting them.
        socketserver.BaseServer.shutdown(server)
        server.server_close()
        deadline = time.monotonic() + grace_seconds
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(STOP_POLL_SECONDS)
        for assoc in server.active_associations:
            assoc.abort()
        server.shutdown()  # pynetdicom's: also forgets the server in the AE
        if self._thread is not None:
            self._thread.join(timeout=grace_seconds)
        self._server = None
        self.services.io.shutdown(wait=True)
        self.services.store.close()
        log.info("DICOM node %s stopped", self.config.ae_title)
