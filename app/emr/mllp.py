"""MLLP framing (``<VT> message <FS><CR>``) over asyncio streams.

Used by the inbound listener (read a frame, write an ACK), the outbox sender
and ``radscribe hl7 send`` (write a frame, read the ACK).
"""

from __future__ import annotations

import asyncio
import contextlib

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\r"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class MllpError(Exception):
    """The peer broke MLLP framing (oversized frame, closed mid-frame)."""


def frame(payload: bytes) -> bytes:
    return START_BLOCK + payload + END_BLOCK + CARRIAGE_RETURN


async def read_frame(
    reader: asyncio.StreamReader, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> bytes | None:
    """The next message between <VT> and <FS>; None when the peer closed cleanly.

    Bytes before <VT> (stray CR/LF between frames) are skipped; the <CR> after
    <FS> is consumed when it is there, as it is before the next <VT> anyway.
    """
    try:
        await reader.readuntil(START_BLOCK)  # skips stray bytes between frames
    except asyncio.IncompleteReadError:
        return None  # closed between frames (stray bytes after the last one are dropped)
    except asyncio.LimitOverrunError as exc:
        raise MllpError("no MLLP start block in the reader's limit") from exc
    try:
        body = await reader.readuntil(END_BLOCK)
    except asyncio.IncompleteReadError as exc:
        raise MllpError("connection closed inside an MLLP frame") from exc
    except asyncio.LimitOverrunError as exc:
        raise MllpError("MLLP frame larger than the reader's limit") from exc
    if len(body) - 1 > max_bytes:
        raise MllpError(f"MLLP frame of {len(body) - 1} bytes is over the {max_bytes} limit")
    return body[:-1]


async def open_connection(
    host: str, port: int, *, timeout: float, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(host, port, limit=max_bytes + 1), timeout=timeout
    )


async def exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    payload: bytes,
    *,
    timeout: float,
) -> bytes:
    """Send one framed message and wait up to ``timeout`` seconds for the reply frame."""
    writer.write(frame(payload))
    await writer.drain()
    reply = await asyncio.wait_for(read_frame(reader), timeout=timeout)
    if reply is None:
        raise MllpError("the peer closed the connection before acknowledging")
    return reply


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
