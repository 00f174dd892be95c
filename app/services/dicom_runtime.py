"""The DICOM node wired to Radscribe: settings, tables, ready scan, receiver processes.

``build_node(settings, session_factory)`` returns a :class:`DicomComponent`
(``start``/``stop``/``describe``, like every runtime component) that runs
the storage SCP on a thread and, unless told otherwise, the series-ready scan
on another.  ``radscribe serve`` runs it in-process; ``radscribe dicom serve
--workers N`` runs N receiver processes on one listening socket (an idle
process takes each new association first), each committing its own rows
(group commit among its threads), and in the parent the scan and the
metrics (:class:`ReceiverPool`).

The ready scan is safe with several processes (claims are guarded UPDATEs)
and additionally runs under a database lease, so one process at a time ranks
a study's series.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, multiprocess
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import make_engine, make_session_factory
from app.core.logging import configure_logging
from app.core.settings import Settings
from app.services import leases
from app.services.dicom_index import SqlInstanceIndex
from dicom_node.access import AccessPolicy
from dicom_node.metrics import ReadyMetrics, ReceiveMetrics
from dicom_node.recovery import RecoveryReport, recover_storage
from dicom_node.selection import SelectionRules
from dicom_node.series import DEFAULT_SCAN_INTERVAL, ReadyScanner, SeriesReadyEvent
from dicom_node.server import DicomNode, NodeConfig, TlsConfig, listening_socket
from dicom_node.storage import InstanceStore

log = logging.getLogger(__name__)

READY_SCAN_LEASE = "dicom-ready-scan"
READY_SCAN_LEASE_SECONDS = 15.0
LEASE_RENEW_FRACTION = 1 / 3  # renew once this much of the lease has passed
WORKER_STOP_SECONDS = 10.0
SUPERVISE_SECONDS = 1.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

ReadyCallback = Callable[[SeriesReadyEvent], None]


def freeze_heap() -> None:
    """Move everything allocated so far (modules, settings) out of the GC's reach.

    A receiver allocates a few hundred objects per instance; the cyclic GC's
    full collections would otherwise walk the whole start-up heap (SQLAlchemy,
    pydicom's dictionaries) each time, holding the GIL.  Call once, after the
    imports and before serving.
    """
    gc.collect()
    gc.freeze()


def tls_config(settings: Settings) -> TlsConfig | None:
    if settings.dicom_tls_certificate is None or settings.dicom_tls_private_key is None:
        return None
    return TlsConfig(
        certificate=settings.dicom_tls_certificate,
        private_key=settings.dicom_tls_private_key,
        client_ca=settings.dicom_tls_client_ca,
    )


def node_config(
    settings: Settings,
    *,
    port: int | None = None,
    ae_title: str | None = None,
    listener: socket.socket | None = None,
    max_associations: int | None = None,
) -> NodeConfig:
    return NodeConfig(
        ae_title=ae_title or settings.dicom_ae_title,
        host=settings.dicom_host,
        port=settings.dicom_port if port is None else port,
        access=AccessPolicy.from_entries(settings.dicom_effective_allowed_aes),
        max_associations=max_associations or settings.dicom_max_associations,
        max_pdu=settings.dicom_max_pdu,
        tls=tls_config(settings),
        listener=listener,
    )


def selection_rules(settings: Settings) -> SelectionRules:
    return SelectionRules(min_slices=settings.dicom_min_series_slices)


def instance_store(settings: Settings) -> InstanceStore:
    return InstanceStore(
        root=settings.dicom_storage_dir, min_free_bytes=settings.dicom_min_free_bytes
    )


@dataclass
class DicomComponent:
    """The DICOM node as a runtime component (receiver and/or ready scan)."""

    settings: Settings
    session_factory: sessionmaker[Session]
    _: KW_ONLY
    on_ready: ReadyCallback | None = None
    registry: CollectorRegistry | None = None
    port: int | None = None
    ae_title: str | None = None
    receive: bool = True
    recover: bool = True
    detect_ready: bool = True  # ready scanner and its metrics (off in receiver processes)
    scan: bool = True  # run the ready scan on a thread (else call scan_ready() yourself)
    listener: socket.socket | None = None  # shared with other receiver processes
    max_associations: int | None = None
    scan_interval: float = DEFAULT_SCAN_INTERVAL
    name: str = "dicom"
    recovery: RecoveryReport | None = field(default=None, init=False)
    node: DicomNode | None = field(default=None, init=False)
    scanner: ReadyScanner | None = field(default=None, init=False)
    _store: InstanceStore | None = field(default=None, init=False)
    _index: SqlInstanceIndex | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _scan_thread: threading.Thread | None = field(default=None, init=False)
    _owner: str = field(default_factory=leases.process_identity, init=False)
    _lease_renew_at: float = field(default=0.0, init=False)  # time.monotonic()

    def start(self) -> None:
        store = self._store = instance_store(self.settings)
        index = self._index = SqlInstanceIndex(self.session_factory)
        if self.recover:
            self.recovery = recover_storage(store, index)
        if self.receive:
            index.warm_up()
            if not self.settings.dicom_effective_allowed_aes:
                log.warning(
                    "RADSCRIBE_DICOM_ALLOWED_AES is empty: every association will be rejected"
                )
            self.node = DicomNode(
                config=node_config(
                    self.settings,
                    port=self.port,
                    ae_title=self.ae_title,
                    listener=self.listener,
                    max_associations=self.max_associations,
                ),
                store=store,
                index=index,
                metrics=ReceiveMetrics(self.registry),
            )
            self.node.start()
        if not self.detect_ready:
            return
        self.scanner = ReadyScanner(
            index=index,
            store=store,
            quiet_seconds=self.settings.dicom_quiet_seconds,
            stale_seconds=self.settings.dicom_stale_seconds,
            rules=selection_rules(self.settings),
            on_ready=self.on_ready,
            metrics=ReadyMetrics(self.registry),
        )
        if self.scan:
            self._stop.clear()
            self._scan_thread = threading.Thread(
                target=self._scan_loop, name="dicom-ready-scan", daemon=True
            )
            self._scan_thread.start()

    def scan_ready(self) -> list[SeriesReadyEvent]:
        """One ready scan, if this process holds the scan lease (call it periodically)."""
        if self.scanner is None:
            raise RuntimeError("the DICOM component is not started or does not detect ready")
        if not self._hold_scan_lease():
            return []
        return self.scanner.scan_once()

    def _hold_scan_lease(self) -> bool:
        """Take or renew the scan lease, renewing only once a third of it has passed.

        Renewing is a committed (fsynced) write: doing it on every scan (four
        times a second) would put a disk flush beside every few instances received.
        """
        now = time.monotonic()
        if now < self._lease_renew_at:
            return True
        held = leases.acquire(
            self.session_factory,
            READY_SCAN_LEASE,
            self._owner,
            ttl_seconds=READY_SCAN_LEASE_SECONDS,
        )
        self._lease_renew_at = (
            now + READY_SCAN_LEASE_SECONDS * LEASE_RENEW_FRACTION if held else 0.0
        )
        return held

    def _scan_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan_ready()
            except Exception:
                log.exception("ready scan failed")
            self._stop.wait(self.scan_interval)

    @property
    def index(self) -> SqlInstanceIndex:
        if self._index is None:
            raise RuntimeError("the DICOM component is not started")
        return self._index

    @property
    def address(self) -> tuple[str, int]:
        if self.node is None:
            raise RuntimeError("the DICOM node is not receiving")
        return self.node.address

    def stop(self) -> None:
        self._stop.set()
        if self._scan_thread is not None:
            self._scan_thread.join(timeout=WORKER_STOP_SECONDS)
            self._scan_thread = None
        if self.node is not None:
            self.node.stop()
            self.node = None
        if self._index is not None:
            self._index.close()
        if self._store is not None:
            self._store.close()
        if self.scanner is not None:
            self._lease_renew_at = 0.0
            try:
                leases.release(self.session_factory, READY_SCAN_LEASE, self._owner)
            except Exception:
                log.warning("could not release the ready-scan lease")

    def describe(self) -> str:
        if self.node is None:
            return "dicom    ready scan only"
        host, port = self.address
        title = self.node.config.ae_title
        tls = " TLS" if self.node.config.tls else ""
        return f"dicom    {title}@{host}:{port}{tls} (storage {self.settings.dicom_storage_dir})"


def build_node(
    settings: Settings,
    session_factory: sessionmaker[Session],
    *,
    on_ready: ReadyCallback | None = None,
    registry: CollectorRegistry | None = None,
    **options: Any,
) -> DicomComponent:
    """The DICOM node for ``settings``; call ``start()``/``stop()`` (it runs on threads).

    Pass ``registry=prometheus_client.REGISTRY`` to expose its metrics with the
    process's others (a fresh registry is used otherwise, so tests can build many).
    """
    return DicomComponent(
        settings, session_factory, on_ready=on_ready, registry=registry, **options
    )


# -- several receiver processes ------------------------------------------------------


def _worker_main(
    settings_values: dict[str, Any],
    listener: socket.socket,
    ae_title: str | None,
    max_associations: int,
) -> None:
    """Entry point of one receiver process (spawned); it exits when its parent is gone."""
    parent = os.getppid()
    settings = Settings(**settings_values)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    engine = make_engine(settings.effective_database_url)
    stop = threading.Event()

    def _handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    component = DicomComponent(
        settings,
        make_session_factory(engine),
        ae_title=ae_title,
        recover=False,
        detect_ready=False,
        scan=False,
        listener=listener,
        max_associations=max_associations,
    )
    try:
        freeze_heap()  # before listening: a collection would stall the first senders
        component.start()
        while not stop.wait(SUPERVISE_SECONDS):
            if os.getppid() != parent:
                log.error("the parent process is gone; this receiver stops")
                break
    finally:
        component.stop()
        engine.dispose()


@dataclass
class ReceiverPool:
    """N receiver processes on one listening socket, plus the ready scan in this process.

    This process binds the port (so it is in use before any receiver starts,
    and ``port=0`` picks a free one: see :attr:`address`) and never accepts;
    each receiver inherits the socket.
    """

    settings: Settings
    session_factory: sessionmaker[Session]
    _: KW_ONLY
    workers: int
    port: int
    ae_title: str | None = None
    on_ready: ReadyCallback | None = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _processes: list[BaseProcess] = field(default_factory=list, init=False)
    _scan: DicomComponent | None = field(default=None, init=False)
    _metrics_dir: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False)
    _listener: socket.socket | None = field(default=None, init=False)

    def start(self) -> None:
        # Recovery once, before any receiver writes; then the scan runs here.
        self._scan = DicomComponent(
            self.settings,
            self.session_factory,
            on_ready=self.on_ready,
            registry=self.registry,
            receive=False,
        )
        self._scan.start()
        self._metrics_dir = tempfile.TemporaryDirectory(prefix="radscribe-dicom-metrics-")
        os.environ[MULTIPROC_ENV] = self._metrics_dir.name
        multiprocess.MultiProcessCollector(self.registry, path=self._metrics_dir.name)
        self._listener = listening_socket(self.settings.dicom_host, self.port)
        for _ in range(self.workers):
            self._processes.append(self._spawn())

    def _spawn(self) -> BaseProcess:
        per_worker = max(1, self.settings.dicom_max_associations // self.workers)
        process = multiprocessing.get_context("spawn").Process(
            target=_worker_main,
            args=(
                self.settings.model_dump(),
                self._listener,
                self.ae_title,
                per_worker,
            ),
            name="dicom-receiver",
            daemon=False,
        )
        process.start()
        return process

    def supervise(self) -> None:
        """Restart receivers that died (call periodically)."""
        for position, process in enumerate(self._processes):
            if not process.is_alive():
                log.error(
                    "receiver process %s exited (%s); restarting", process.pid, process.exitcode
                )
                if self._metrics_dir is not None and process.pid is not None:
                    multiprocess.mark_process_dead(process.pid, self._metrics_dir.name)
                self._processes[position] = self._spawn()

    def stop(self) -> None:
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self._processes:
            process.join(timeout=WORKER_STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        self._processes.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._scan is not None:
            self._scan.stop()
        os.environ.pop(MULTIPROC_ENV, None)
        if self._metrics_dir is not None:
            self._metrics_dir.cleanup()

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError("the receiver pool is not started")
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def describe(self) -> str:
        title = self.ae_title or self.settings.dicom_ae_title
        host, port = self.address
        return (
            f"dicom    {title}@{host}:{port} "
            f"({self.workers} receiver processes, storage {Path(self.settings.dicom_storage_dir)})"
        )
