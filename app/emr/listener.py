"""The inbound MLLP listener: the EMR tells Radscribe about patients and orders.

For every framed message, in the order it arrived on its connection:
1. the raw bytes are stored (committed) as an ``hl7_messages`` row;
2. the message is parsed and applied in one transaction (services.orders);
3. the row gets its outcome and the ACK code; then the ACK is written.

Database work runs in a worker thread so one slow transaction does not stall
other connections.  No exception escapes a connection handler: a failure
becomes AE (or CE), a malformed or unsupported message AR (or CR).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import Hl7MessageStatus
from app.core.tables import Hl7Message
from app.emr import metrics, mllp
from app.emr import parse as hl7parse
from app.emr.ack import Outcome, choose_ack_code, new_control_id
from app.emr.messages import (
    ERROR_APPLICATION_INTERNAL,
    ERROR_UNSUPPORTED_EVENT_CODE,
    ERROR_UNSUPPORTED_MESSAGE_TYPE,
    AckInfo,
    build_ack,
)
from app.services import orders

log = logging.getLogger(__name__)

STATUS_BY_OUTCOME = {
    Outcome.PROCESSED: Hl7MessageStatus.PROCESSED,
    Outcome.ERROR: Hl7MessageStatus.ERROR,
    Outcome.REJECTED: Hl7MessageStatus.REJECTED,
}
MESSAGE_TYPE_LENGTH = 16
CONTROL_ID_LENGTH = 64


@dataclass(frozen=True)
class Handled:
    message_id: int | None
    outcome: Outcome
    ack_code: str | None
    ack: bytes | None
    error: str | None


def _ack_bytes(
    header: hl7parse.Header | None,
    outcome: Outcome,
    *,
    error: str | None,
    error_code: str,
) -> tuple[str | None, bytes | None]:
    if header is None:
        code: str | None = "AR" if outcome is Outcome.REJECTED else "AE"
        answered = AckInfo(control_id="")
    else:
        code = choose_ack_code(
            accept_ack_type=header.accept_ack_type,
            application_ack_type=header.application_ack_type,
            outcome=outcome,
        )
        answered = header.ack_info()
    if code is None:
        return None, None
    text = build_ack(
        answered,
        code=code,
        control_id=new_control_id(),
        error_text=error,
        error_code=error_code,
    )
    return code, text.encode("utf-8")


def _store_raw(factory: sessionmaker[Session], raw: bytes, peer: str) -> int:
    try:
        header: hl7parse.Header | None = hl7parse.read_header(raw)
    except hl7parse.MalformedMessage:
        header = None
    with factory() as session, session.begin():
        row = Hl7Message(
            peer=peer,
            raw=raw,
            control_id=header.control_id[:CONTROL_ID_LENGTH] if header else None,
            message_type=header.message_type[:MESSAGE_TYPE_LENGTH] if header else None,
            status=Hl7MessageStatus.RECEIVED,
        )
        session.add(row)
        session.flush()
        return row.id


def _finish(
    factory: sessionmaker[Session],
    message_id: int,
    outcome: Outcome,
    ack_code: str | None,
    error: str | None,
) -> None:
    with factory() as session, session.begin():
        row = session.get(Hl7Message, message_id)
        if row is not None:
            row.status = STATUS_BY_OUTCOME[outcome]
            row.ack_code = ack_code
            row.error = error


def handle_message(factory: sessionmaker[Session], raw: bytes, *, peer: str) -> Handled:
    """Store, apply and acknowledge one inbound message (blocking; run it in a thread)."""
    try:
        message_id = _store_raw(factory, raw, peer)
    except SQLAlchemyError as exc:
        log.error("inbound HL7 message from %s could not be stored: %s", peer, type(exc).__name__)
        try:
            header: hl7parse.Header | None = hl7parse.read_header(raw)
        except hl7parse.MalformedMessage:
            header = None
        reason = "the message could not be stored; send it again"
        code, ack = _ack_bytes(
            header, Outcome.NOT_STORED, error=reason, error_code=ERROR_APPLICATION_INTERNAL
        )
        return Handled(None, Outcome.NOT_STORED, code, ack, reason)

    header = None
    error: str | None = None
    error_code = ERROR_APPLICATION_INTERNAL
    try:
        parsed = hl7parse.parse(raw)
        header = parsed.header
        if not orders.is_supported(header.message_code, header.trigger_event):
            raise orders.MessageRejected(
                f"message type {header.message_type} is not handled "
                "(ADT^A01/A04/A08/A40, ORM^O01 and OMI^O23 are)",
                code=ERROR_UNSUPPORTED_EVENT_CODE
                if header.message_code in orders.SUPPORTED_MESSAGE_CODES
                else ERROR_UNSUPPORTED_MESSAGE_TYPE,
            )
        with factory() as session, session.begin():
            applied = orders.apply_message(session, parsed, message_id=message_id)
            outcome = Outcome.PROCESSED
            code, ack = _ack_bytes(header, outcome, error=None, error_code=error_code)
            row = session.get(Hl7Message, message_id)
            if row is not None:
                row.status = Hl7MessageStatus.PROCESSED
                row.ack_code = code
        log.info(
            "HL7 %s %s from %s: %s", header.message_type, header.control_id, peer, applied.summary
        )
        metrics.INBOUND_MESSAGES.labels(ack_code=code or "none").inc()
        return Handled(message_id, outcome, code, ack, None)
    except hl7parse.MalformedMessage as exc:
        outcome, error, error_code = Outcome.REJECTED, str(exc), exc.code
        try:
            header = hl7parse.read_header(raw)
        except hl7parse.MalformedMessage:
            header = None
    except orders.MessageRejected as exc:
        outcome, error, error_code = Outcome.REJECTED, str(exc), exc.code
    except orders.ProcessingError as exc:
        outcome, error, error_code = Outcome.ERROR, str(exc), exc.code
    except Exception as exc:  # no exception escapes: the peer gets AE and the row the reason
        log.exception("HL7 message %s from %s failed", message_id, peer)
        outcome = Outcome.ERROR
        error = f"internal error while processing ({type(exc).__name__})"
        error_code = ERROR_APPLICATION_INTERNAL
    code, ack = _ack_bytes(header, outcome, error=error, error_code=error_code)
    try:
        _finish(factory, message_id, outcome, code, error)
    except SQLAlchemyError:
        log.exception("could not record the outcome of HL7 message %s", message_id)
    log.warning(
        "HL7 message %s (%s) from %s: %s %s",
        message_id,
        header.control_id if header else "?",
        peer,
        code,
        error,
    )
    metrics.INBOUND_MESSAGES.labels(ack_code=code or "none").inc()
    return Handled(message_id, outcome, code, ack, error)


class Hl7Listener:
    """An asyncio MLLP server; many messages per connection, answered in order."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        host: str,
        port: int,
        max_message_bytes: int = mllp.DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._factory = session_factory
        self._host = host
        self._port = port
        self._max_bytes = max_message_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self._host, self._port, limit=self._max_bytes + 1
        )
        log.info("HL7 listener on %s:%s", self._host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        address = writer.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        try:
            while True:
                try:
                    raw = await mllp.read_frame(reader, max_bytes=self._max_bytes)
                except mllp.MllpError as exc:
                    log.warning("MLLP framing error from %s: %s; closing", peer, exc)
                    break
                if raw is None:
                    break
                handled = await asyncio.to_thread(handle_message, self._factory, raw, peer=peer)
                if handled.ack is not None:
                    writer.write(mllp.frame(handled.ack))
                    await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("HL7 connection from %s ended: %s", peer, exc)
        except asyncio.CancelledError:
            pass
        finally:
            await mllp.close_writer(writer)
            if task is not None:
                self._connections.discard(task)
