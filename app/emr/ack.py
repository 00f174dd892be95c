"""Which acknowledgment a message gets, by MSH-15/16, and reading the ACKs peers send.

Original mode (MSH-15 and MSH-16 empty): every message gets AA, AE or AR.
Enhanced mode: one reply per message on the connection.  The application
ACK (AA/AE/AR) when MSH-16 asks for it for this outcome; otherwise the
accept ACK (CA when the message is stored, CR when rejected, CE when it could
not be stored) when MSH-15 asks for it; otherwise none (NE).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from app.emr import parse as hl7parse

ALWAYS = "AL"
NEVER = "NE"
ON_ERROR = "ER"
ON_SUCCESS = "SU"
ACCEPTED_CODES = frozenset({"AA", "CA"})
CONTROL_ID_LENGTH = 20


class Outcome(enum.StrEnum):
    PROCESSED = "processed"  # stored and applied
    ERROR = "error"  # stored, processing failed
    REJECTED = "rejected"  # malformed or unsupported
    NOT_STORED = "not_stored"  # the database refused the raw message


APPLICATION_CODES = {
    Outcome.PROCESSED: "AA",
    Outcome.ERROR: "AE",
    Outcome.REJECTED: "AR",
    Outcome.NOT_STORED: "AE",
}
ACCEPT_CODES = {
    Outcome.PROCESSED: "CA",
    Outcome.ERROR: "CA",  # stored safely; the application error is a later concern
    Outcome.REJECTED: "CR",
    Outcome.NOT_STORED: "CE",
}


def new_control_id(prefix: str = "A") -> str:
    return (prefix + uuid.uuid4().hex.upper())[:CONTROL_ID_LENGTH]


def _wanted(condition: str, success: bool) -> bool:
    if condition == NEVER:
        return False
    if condition == ON_ERROR:
        return not success
    if condition == ON_SUCCESS:
        return success
    return True  # AL, or a value outside table 0155: answer rather than leave the peer waiting


def choose_ack_code(
    *, accept_ack_type: str, application_ack_type: str, outcome: Outcome
) -> str | None:
    """The MSA-1 code to answer with, or None when the sender asked for no reply."""
    if not accept_ack_type and not application_ack_type:
        return APPLICATION_CODES[outcome]
    application_success = outcome is Outcome.PROCESSED
    if application_ack_type and _wanted(application_ack_type, application_success):
        return APPLICATION_CODES[outcome]
    accept_success = outcome in (Outcome.PROCESSED, Outcome.ERROR)
    if accept_ack_type and _wanted(accept_ack_type, accept_success):
        return ACCEPT_CODES[outcome]
    return None


@dataclass(frozen=True)
class ReceivedAck:
    code: str
    control_id: str  # MSA-2
    text: str

    def accepts(self, sent_control_id: str) -> bool:
        return self.code in ACCEPTED_CODES and self.control_id == sent_control_id


class AckError(ValueError):
    """The reply is not an HL7 ACK with an MSA segment."""


def read_ack(raw: bytes) -> ReceivedAck:
    """MSA-1, MSA-2 and MSA-3 of a reply.

    The reply is decoded like any inbound message (BOM, separators, MSH-18)
    and MSA is split with the reply's own delimiters and unescaped.  This is
    on the sender's hot path, so it does not build hl7apy element trees:
    three fields do not need them, and hl7apy would triple the per-message cost.
    """
    try:
        decoded = hl7parse.decode(raw)
        header = hl7parse.read_header(raw)
    except hl7parse.MalformedMessage as exc:
        raise AckError(f"reply is not HL7: {exc}") from exc
    chars = header.encoding_chars
    msa = next(
        (
            line
            for line in decoded.text.split("\r")
            if line.startswith("MSA" + header.field_separator)
        ),
        None,
    )
    if msa is not None:
        fields = msa.split(header.field_separator)
        values = []
        for position in (1, 2, 3):
            value = fields[position] if position < len(fields) else ""
            first = value.split(chars[1])[0].split(chars[0])[0]
            values.append(hl7parse.unescape(first, escape=chars[2], encoding_chars=chars).strip())
        return ReceivedAck(code=values[0].upper(), control_id=values[1], text=values[2])
    raise AckError("reply has no MSA segment")
