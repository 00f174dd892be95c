"""Send HL7 messages over MLLP and read their ACKs (the `hl7 send` command, the demo)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from app.emr import mllp
from app.emr.ack import ReceivedAck, read_ack


async def send_messages(
    host: str, port: int, payloads: Sequence[bytes], *, timeout: float
) -> list[ReceivedAck]:
    """Send each message on one connection, in order; one ACK per message."""
    acks = []
    reader, writer = await mllp.open_connection(host, port, timeout=timeout)
    try:
        for payload in payloads:
            reply = await mllp.exchange(reader, writer, payload, timeout=timeout)
            acks.append(read_ack(reply))
    finally:
        await mllp.close_writer(writer)
    return acks


def send_messages_sync(
    host: str, port: int, payloads: Sequence[bytes], *, timeout: float = 30.0
) -> list[ReceivedAck]:
    return asyncio.run(send_messages(host, port, payloads, timeout=timeout))
