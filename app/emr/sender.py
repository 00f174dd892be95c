"""The outbox sender: delivers signed reports to the EMR over MLLP.

At least once and in order: a message counts as delivered only when the
EMR answers AA or CA with MSA-2 equal to the message's MSH-10, and that is
committed before the message is forgotten.  Timeouts, AE/CE and connection
errors are retried with exponential backoff, always with the same control
ID; AR/CR is final and dead-letters the message at once.  Each patient's
messages go in id order, and a failure stops that patient's queue until the
retry.  Only the holder of the ``hl7-outbox-sender`` lease sends, so several
Radscribe processes never deliver side by side.

Outcomes of a batch are committed together (one fsync per batch rather than
per message); a crash before that commit only means the batch is sent again
with the same control IDs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from app.emr import metrics, mllp
from app.emr.ack import AckError, read_ack
from app.services import leases
from app.services import outbox as outbox_service
from app.services.outbox import Delivery, DeliveryResult, RetryPolicy

log = logging.getLogger(__name__)

LEASE_NAME = "hl7-outbox-sender"
BATCH_SIZE = 200
LEASE_RENEW_FRACTION = 3  # renew when a third of the lease is left
FINAL_REJECTIONS = frozenset({"AR", "CR"})


@dataclass(frozen=True)
class SenderConfig:
    host: str
    port: int
    ack_timeout_seconds: float
    poll_seconds: float
    lease_seconds: float
    policy: RetryPolicy


class OutboxSender:
    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        config: SenderConfig,
        owner: str | None = None,
    ) -> None:
        self._factory = session_factory
        self._config = config
        self._owner = owner or leases.process_identity()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lease_until = 0.0
        self.wake = asyncio.Event()

    @property
    def owner(self) -> str:
        return self._owner

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; database errors are logged and retried."""
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                try:
                    delivered_any = await self._cycle(loop)
                except Exception:  # keep the sender alive: the outbox is the source of truth
                    log.exception("outbox sender cycle failed")
                    await self._disconnect()
                    delivered_any = False
                if not delivered_any:
                    await self._sleep(stop, self._config.poll_seconds)
        finally:
            await self._disconnect()
            try:
                await asyncio.to_thread(leases.release, self._factory, LEASE_NAME, self._owner)
            except Exception:
                log.exception("could not release the outbox lease")

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            self.wake.clear()

    async def _hold_lease(self, loop: asyncio.AbstractEventLoop) -> bool:
        now = loop.time()
        if now < self._lease_until - self._config.lease_seconds / LEASE_RENEW_FRACTION:
            return True
        held = await asyncio.to_thread(
            leases.acquire,
            self._factory,
            LEASE_NAME,
            self._owner,
            ttl_seconds=self._config.lease_seconds,
        )
        self._lease_until = now + self._config.lease_seconds if held else 0.0
        return held

    async def _cycle(self, loop: asyncio.AbstractEventLoop) -> bool:
        if not await self._hold_lease(loop):
            await self._disconnect()
            return False
        batch = await asyncio.to_thread(self._load_batch)
        if not batch:
            return False
        results = await self._deliver_batch(batch)
        now = datetime.now(UTC)
        dead = await asyncio.to_thread(
            outbox_service.record_results,
            self._factory,
            results,
            policy=self._config.policy,
            now=now,
        )
        for result in results:
            if result.accepted:
                metrics.OUTBOX_DELIVERED.inc()
        by_id = {item.id: item for item in batch}
        for result in results:
            if result.accepted and result.id in by_id:
                age = (now - by_id[result.id].created_at).total_seconds()
                metrics.OUTBOX_DELIVERY_SECONDS.observe(max(age, 0.0))
        if dead:
            metrics.OUTBOX_DEAD_LETTERS.inc(len(dead))
            log.error("outbox messages %s moved to dead-letter", dead)
            count = await asyncio.to_thread(self._dead_count)
            metrics.OUTBOX_DEAD_NOW.set(count)
        return any(result.accepted for result in results)

    def _load_batch(self) -> list[Delivery]:
        with self._factory() as session:
            return outbox_service.due_batch(session, now=datetime.now(UTC), limit=BATCH_SIZE)

    def _dead_count(self) -> int:
        with self._factory() as session:
            return outbox_service.dead_letter_count(session)

    async def _deliver_batch(self, batch: list[Delivery]) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        stopped_keys: set[str] = set()
        for item in batch:
            if item.ordering_key in stopped_keys:
                continue
            result, connection_failed = await self._deliver(item)
            results.append(result)
            if not result.accepted:
                stopped_keys.add(item.ordering_key)
                if connection_failed:
                    break  # the EMR is away: leave the rest untouched until the retry
        return results

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await mllp.open_connection(
                self._config.host, self._config.port, timeout=self._config.ack_timeout_seconds
            )
        return self._reader, self._writer

    async def _disconnect(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            await mllp.close_writer(writer)

    async def _deliver(self, item: Delivery) -> tuple[DeliveryResult, bool]:
        sent_at = datetime.now(UTC)
        try:
            reader, writer = await self._connect()
            reply = await mllp.exchange(
                reader, writer, item.payload, timeout=self._config.ack_timeout_seconds
            )
        except TimeoutError:
            await self._disconnect()  # a late ACK must not be read as the next message's
            metrics.OUTBOX_FAILED_ATTEMPTS.labels(reason="timeout").inc()
            error = f"no ACK within {self._config.ack_timeout_seconds} s"
            return DeliveryResult(item.id, False, None, error, sent_at=sent_at), True
        except (OSError, ConnectionError, mllp.MllpError) as exc:
            await self._disconnect()
            metrics.OUTBOX_FAILED_ATTEMPTS.labels(reason="connection").inc()
            error = f"connection to {self._config.host}:{self._config.port} failed: {exc}"
            return DeliveryResult(item.id, False, None, error, sent_at=sent_at), True
        try:
            ack = read_ack(reply)
        except AckError as exc:
            await self._disconnect()
            metrics.OUTBOX_FAILED_ATTEMPTS.labels(reason="bad_ack").inc()
            return DeliveryResult(item.id, False, None, str(exc), sent_at=sent_at), False
        if ack.accepts(item.control_id):
            return DeliveryResult(item.id, True, ack.code, None, sent_at=sent_at), False
        if ack.control_id != item.control_id:
            await self._disconnect()
            metrics.OUTBOX_FAILED_ATTEMPTS.labels(reason="wrong_control_id").inc()
            error = f"ACK {ack.code} answers {ack.control_id!r}, not {item.control_id!r}"
            return DeliveryResult(item.id, False, ack.code, error, sent_at=sent_at), False
        final = ack.code in FINAL_REJECTIONS
        metrics.OUTBOX_FAILED_ATTEMPTS.labels(reason=ack.code.lower() or "unknown").inc()
        error = f"EMR answered {ack.code}: {ack.text or 'no reason given'}"
        return (
            DeliveryResult(item.id, False, ack.code, error, retryable=not final, sent_at=sent_at),
            False,
        )
