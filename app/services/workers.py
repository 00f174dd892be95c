"""Background execution in the embedded mode: a worker pool and periodic duties.

Both are runtime components (start/stop/describe).  The worker pool polls the
jobs table; periodic duties (series-ready scan, enqueueing drafts, the outbox
sender) run under a database lease so exactly one process performs each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from app.services import jobs, leases

log = logging.getLogger(__name__)

JobHandler = Callable[[jobs.ClaimedJob], object]


@dataclass
class WorkerPool:
    """Threads that claim runnable jobs (STAT first) and hand them to ``handler``."""

    session_factory: sessionmaker[Session]
    handler: JobHandler
    threads: int = 1
    poll_seconds: float = 0.5
    warm_up: Callable[[], None] | None = None
    """Loads what jobs need (models) when the pool starts, not in the first job."""
    name: str = "workers"
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _wake: threading.Event = field(default_factory=threading.Event, init=False)

    def start(self) -> None:
        self._stop.clear()
        if self.warm_up is not None:
            threading.Thread(target=self._warm, name="worker-warm-up", daemon=True).start()
        for index in range(self.threads):
            owner = f"{leases.process_identity()}:worker-{index}"
            thread = threading.Thread(
                target=self._loop, args=(owner,), name=f"worker-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _warm(self) -> None:
        try:
            if self.warm_up is not None:
                self.warm_up()
        except Exception:  # a job will report the same problem with its study
            log.exception("loading the drafting models failed")

    def wake(self) -> None:
        """Look for work now instead of at the next poll (called after an enqueue)."""
        self._wake.set()

    def _loop(self, owner: str) -> None:
        while not self._stop.is_set():
            try:
                claimed = jobs.claim_next(self.session_factory, owner)
            except Exception:
                log.exception("claiming a job failed")
                claimed = None
            if claimed is None:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                continue
            try:
                self.handler(claimed)
            except Exception:  # the handler records failures; this is the last guard
                log.exception("job %s crashed its handler", claimed.id)
                jobs.fail(self.session_factory, claimed.id, "internal error", retryable=True)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()

    def describe(self) -> str:
        return f"workers  {self.threads} in-process drafting worker(s)"


@dataclass
class PeriodicDuty:
    """Run ``action`` every ``interval_seconds`` while this process holds lease ``name``."""

    session_factory: sessionmaker[Session]
    name: str
    action: Callable[[], None]
    interval_seconds: float = 1.0
    lease_seconds: float = 15.0
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _owner: str = field(default_factory=leases.process_identity, init=False)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"duty-{self.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if leases.acquire(
                    self.session_factory, self.name, self._owner, ttl_seconds=self.lease_seconds
                ):
                    self.action()
            except Exception:
                log.exception("periodic duty %s failed", self.name)
            self._stop.wait(self.interval_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            leases.release(self.session_factory, self.name, self._owner)
        except Exception:
            log.exception("releasing lease %s failed", self.name)

    def describe(self) -> str:
        return f"duty     {self.name} every {self.interval_seconds:g} s (one process at a time)"
