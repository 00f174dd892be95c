"""The HL7 side in one process: the MLLP listener and the outbox sender.

:class:`Hl7Component` fits ``app.services.runtime.Component`` (``start``,
``stop``, ``describe``): ``radscribe serve`` adds it to its components and
``radscribe hl7 serve`` runs it alone.  Both run on one asyncio loop in a
background thread; ``stop`` ends them cleanly (the sender releases its lease).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future

from sqlalchemy.orm import Session, sessionmaker

from app.core.settings import Settings
from app.emr.listener import Hl7Listener
from app.emr.sender import OutboxSender, SenderConfig
from app.services.outbox import RetryPolicy

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 15.0


def sender_config(settings: Settings) -> SenderConfig | None:
    """The sender's configuration, or None when no EMR address is set."""
    if not settings.emr_hl7_host or not settings.emr_hl7_port:
        return None
    return SenderConfig(
        host=settings.emr_hl7_host,
        port=settings.emr_hl7_port,
        ack_timeout_seconds=settings.hl7_ack_timeout_seconds,
        poll_seconds=settings.hl7_outbox_poll_seconds,
        lease_seconds=settings.hl7_lease_seconds,
        policy=RetryPolicy(
            max_attempts=settings.hl7_max_attempts,
            base_seconds=settings.hl7_retry_base_seconds,
            max_seconds=settings.hl7_retry_max_seconds,
        ),
    )


class Hl7Component:
    name = "hl7"

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        *,
        listen: bool = True,
        send: bool = True,
    ) -> None:
        self._settings = settings
        self._factory = session_factory
        self._listen = listen
        self._config = sender_config(settings) if send else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started: Future[None] = Future()
        self.listener: Hl7Listener | None = None
        self.sender: OutboxSender | None = None

    @property
    def listen_port(self) -> int | None:
        return self.listener.port if self.listener is not None else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_thread, name="hl7", daemon=True)
        self._thread.start()
        self._started.result(timeout=START_TIMEOUT_SECONDS)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
            self._thread = None

    def wake_sender(self) -> None:
        """Look at the outbox now instead of at the next poll (after a signature)."""
        if self._loop is not None and self.sender is not None:
            self._loop.call_soon_threadsafe(self.sender.wake.set)

    def describe(self) -> str:
        parts = []
        if self._listen:
            parts.append(f"MLLP listener {self._settings.hl7_host}:{self.listen_port}")
        if self._config is not None:
            parts.append(f"outbox -> {self._config.host}:{self._config.port}")
        else:
            parts.append("outbox sender off (RADSCRIBE_EMR_HL7_HOST/PORT not set)")
        return "hl7      " + "; ".join(parts)

    def _run_thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)
            else:
                log.exception("the HL7 runtime stopped with an error")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if self._listen:
            self.listener = Hl7Listener(
                session_factory=self._factory,
                host=self._settings.hl7_host,
                port=self._settings.hl7_port,
                max_message_bytes=self._settings.hl7_max_message_bytes,
            )
            await self.listener.start()
        if self._config is not None:
            self.sender = OutboxSender(session_factory=self._factory, config=self._config)
            tasks.append(asyncio.create_task(self.sender.run(self._stop)))
        self._started.set_result(None)
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                await asyncio.wait_for(task, timeout=STOP_TIMEOUT_SECONDS)
            if self.listener is not None:
                await self.listener.stop()
