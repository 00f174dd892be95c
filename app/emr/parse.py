"""Tolerant reading of inbound HL7 v2: bytes in, typed content out.

Real interfaces send byte-order marks, LF or CRLF between segments, text in
the character set MSH-18 names (or none), versions hl7apy does not know and
segments their version does not define.  :func:`decode` turns the bytes into
ER7 text with ``\\r`` separators; :func:`parse` splits it into segments with
hl7apy (segment by segment, so one unknown segment does not sink the
message) and extracts what Radscribe uses: the header, the patient (PID),
a merge (MRG) and the imaging orders (ORC/OBR/NTE/IPC).

Errors are :class:`MalformedMessage` (the ACK is AR) with an HL7 table 0357
code; nothing here touches the database.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from hl7apy import SUPPORTED_LIBRARIES
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Segment
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_segment

from app.emr.messages import (
    ERROR_REQUIRED_FIELD_MISSING,
    ERROR_SEGMENT_SEQUENCE,
    ERROR_UNSUPPORTED_VERSION,
    AckInfo,
    OrderInfo,
    PatientInfo,
)

UTF8_BOM = codecs.BOM_UTF8
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
DEFAULT_ENCODING_CHARS = "^~\\&"
FALLBACK_VERSION = "2.5.1"
SEX_CODES = frozenset({"M", "F", "O", "U"})
STAT_PRIORITY = "S"
ROUTINE_PRIORITY = "R"
BIRTH_DATE_LENGTH = 8

# MSH-18 (HL7 table 0211) to Python codecs.
CHARSETS: dict[str, str] = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "latin-1",
    "ISO IR100": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "ISO IR192": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "GB 18030-2000": "gb18030",
    "BIG-5": "big5",
    "KS X 1001": "euc-kr",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_2",
}
_HEX_ESCAPE = re.compile(r"^X([0-9A-Fa-f]+)$")


class MalformedMessage(ValueError):
    """The bytes are not an HL7 v2 message Radscribe can read (answered with AR)."""

    def __init__(self, reason: str, *, code: str = ERROR_SEGMENT_SEQUENCE) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True)
class Header:
    """MSH fields an ACK and the dispatcher need."""

    field_separator: str
    encoding_chars: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_code: str
    trigger_event: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str
    application_ack_type: str
    charset: str

    @property
    def message_type(self) -> str:
        return (
            f"{self.message_code}^{self.trigger_event}" if self.trigger_event else self.message_code
        )

    def ack_info(self) -> AckInfo:
        return AckInfo(
            control_id=self.control_id,
            sending_application=self.sending_application,
            sending_facility=self.sending_facility,
            receiving_application=self.receiving_application,
            receiving_facility=self.receiving_facility,
            trigger_event=self.trigger_event,
            version=self.version,
            processing_id=self.processing_id,
        )


@dataclass(frozen=True)
class DecodedMessage:
    text: str  # ER7 with "\r" segment separators
    charset: str  # the Python codec used
    repairs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedMessage:
    header: Header
    patient: PatientInfo | None
    prior_patient: tuple[str, str] | None  # MRG-1: (mrn, issuer)
    orders: tuple[OrderInfo, ...]
    segment_names: tuple[str, ...]
    skipped_segments: tuple[str, ...] = field(default=())
    repairs: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- bytes to text


def _header_fields(raw: bytes) -> list[str]:
    first = re.split(rb"\r\n|\r|\n", raw, maxsplit=1)[0]
    line = first.decode("latin-1")
    if not line.startswith("MSH") or len(line) < 8:
        raise MalformedMessage("the message does not start with an MSH segment")
    separator = line[3]
    return line.split(separator)


def charset_of(raw: bytes) -> str:
    """The Python codec MSH-18 names (first repetition); utf-8 when none is given."""
    fields = _header_fields(raw)
    declared = fields[17].split("~")[0].strip().upper() if len(fields) > 17 else ""
    if not declared:
        return "utf-8"
    return CHARSETS.get(declared, "utf-8")


def decode(raw: bytes) -> DecodedMessage:
    """Strip a BOM, decode by MSH-18 and make every segment end in ``\\r``."""
    repairs: list[str] = []
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
        repairs.append("utf-8 byte-order mark removed")
    elif raw[:2] in UTF16_BOMS:
        raw = raw.decode("utf-16").encode("utf-8")
        repairs.append("utf-16 text re-encoded")
    raw = raw.lstrip(b"\r\n\t ")
    charset = charset_of(raw)
    try:
        text = raw.decode(charset)
    except UnicodeDecodeError:
        fallback = "utf-8" if charset != "utf-8" else "cp1252"
        try:
            text = raw.decode(fallback)
        except UnicodeDecodeError:
            fallback = "latin-1"
            text = raw.decode(fallback)
        repairs.append(f"text is not {charset}; decoded as {fallback}")
        charset = fallback
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
        repairs.append("LF segment separators")
    segments = [segment for segment in text.split("\r") if segment.strip()]
    return DecodedMessage(text="\r".join(segments), charset=charset, repairs=tuple(repairs))


# --------------------------------------------------------------------------- ER7 values


def unescape(
    value: str, *, escape: str = "\\", encoding_chars: str = DEFAULT_ENCODING_CHARS
) -> str:
    """Resolve HL7 escape sequences (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh\\``)."""
    if escape not in value:
        return value
    chars = (encoding_chars + DEFAULT_ENCODING_CHARS)[:4]
    component, repetition, subcomponent = chars[0], chars[1], chars[3]
    replacements = {
        "F": "|",
        "S": component,
        "T": subcomponent,
        "R": repetition,
        "E": escape,
        ".br": "\n",
        "H": "",
        "N": "",
    }
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        end = value.find(escape, index + 1) if char == escape else -1
        if char == escape and end > index:
            sequence = value[index + 1 : end]
            hex_match = _HEX_ESCAPE.match(sequence)
            if sequence in replacements:
                out.append(replacements[sequence])
            elif hex_match:
                out.append(bytes.fromhex(hex_match.group(1)).decode("latin-1"))
            else:
                out.append(value[index : end + 1])
            index = end + 1
        else:
            out.append(char)
            index += 1
    return "".join(out)


class Fields:
    """Field access on one hl7apy segment, by HL7 position, with components split."""

    def __init__(self, segment: Segment, encoding_chars: str) -> None:
        self.name: str = segment.name
        self.segment = segment
        self._chars = encoding_chars
        self._by_name: dict[str, list[str]] = {}
        for child in segment.children:
            if child.name:  # fields past the version's definition have no name; unused
                self._by_name.setdefault(child.name.upper(), []).append(child.to_er7())

    def repetitions(self, position: int) -> list[str]:
        return self._by_name.get(f"{self.name}_{position}", [])

    def raw(self, position: int) -> str:
        reps = self.repetitions(position)
        return reps[0] if reps else ""

    def text(self, position: int) -> str:
        return self.unescape(self.raw(position)).strip()

    def component(self, position: int, component: int, subcomponent: int = 1) -> str:
        return self.part(self.raw(position), component, subcomponent)

    def part(self, value: str, component: int, subcomponent: int = 1) -> str:
        components = value.split(self._chars[0])
        if component > len(components):
            return ""
        subcomponents = components[component - 1].split(self._chars[3])
        if subcomponent > len(subcomponents):
            return ""
        return self.unescape(subcomponents[subcomponent - 1]).strip()

    def unescape(self, value: str) -> str:
        return unescape(value, escape=self._chars[2], encoding_chars=self._chars)


# --------------------------------------------------------------------------- segments


def hl7apy_version(version: str) -> str:
    """The hl7apy library to read a message of ``version`` with.

    An unknown 2.x version (2.9, 2.5.2) is read with the nearest known one at
    or below it; hl7apy rejects versions it has no tables for otherwise.
    """
    if version in SUPPORTED_LIBRARIES:
        return version
    if not version.startswith("2."):
        raise MalformedMessage(
            f"HL7 version {version or '(none)'} is not v2", code=ERROR_UNSUPPORTED_VERSION
        )

    def key(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", text))

    wanted = key(version)
    known = sorted(SUPPORTED_LIBRARIES, key=key)
    candidates = [known_version for known_version in known if key(known_version) <= wanted]
    return candidates[-1] if candidates else known[0]


def _encoding_dict(separator: str, chars: str) -> dict[str, str]:
    return {
        "FIELD": separator,
        "COMPONENT": chars[0],
        "REPETITION": chars[1],
        "ESCAPE": chars[2],
        "SUBCOMPONENT": chars[3],
        "GROUP": "\r",
        "SEGMENT": "\r",
    }


def _split_header(text: str) -> tuple[str, str, list[str], list[str]]:
    """Field separator, encoding characters (repaired), MSH fields and the repairs."""
    repairs: list[str] = []
    msh_line = text.split("\r", 1)[0]
    if not msh_line.startswith("MSH") or len(msh_line) < 8:
        raise MalformedMessage("the message does not start with an MSH segment")
    separator = msh_line[3]
    fields = msh_line.split(separator)
    chars = fields[1]
    if chars == "^~\\\\&":  # a Java/C string literal left its backslash doubled
        chars = DEFAULT_ENCODING_CHARS
        repairs.append("doubled backslash in MSH-2")
    if len(chars) != len(DEFAULT_ENCODING_CHARS) or len(set(chars + separator)) != 5:
        raise MalformedMessage(f"MSH-2 encoding characters {chars!r} are not four distinct ones")
    fields[1] = chars
    return separator, chars, fields, repairs


def parse(raw: bytes) -> ParsedMessage:
    """Bytes from the wire to the content Radscribe acts on; raises MalformedMessage."""
    decoded = decode(raw)
    separator, chars, msh_fields, repairs = _split_header(decoded.text)
    header = _header(msh_fields, separator, chars, decoded.charset)
    version = hl7apy_version(header.version)
    encoding = _encoding_dict(separator, chars)
    lines = decoded.text.split("\r")
    lines[0] = separator.join(msh_fields)
    segments: list[Fields] = []
    skipped: list[str] = []
    for line in lines:
        name = line[:3]
        try:
            segment = parse_segment(
                line,
                version=version,
                encoding_chars=encoding,
                validation_level=VALIDATION_LEVEL.TOLERANT,
            )
        except (HL7apyException, ValueError, IndexError, KeyError) as exc:
            if name in ("MSH", "PID", "MRG", "ORC", "OBR", "IPC"):
                raise MalformedMessage(f"segment {name} cannot be parsed: {exc}") from exc
            skipped.append(name)
            continue
        segments.append(Fields(segment, chars))
    patient = _patient(next((s for s in segments if s.name == "PID"), None))
    mrg = next((s for s in segments if s.name == "MRG"), None)
    prior = _identifier(mrg, 1) if mrg is not None else None
    return ParsedMessage(
        header=header,
        patient=patient,
        prior_patient=prior,
        orders=tuple(_orders(segments)),
        segment_names=tuple(s.name for s in segments),
        skipped_segments=tuple(skipped),
        repairs=(*decoded.repairs, *repairs),
    )


def read_header(raw: bytes) -> Header:
    """Only the MSH of a message (for an ACK when the rest cannot be read)."""
    decoded = decode(raw)
    separator, chars, fields, _ = _split_header(decoded.text)
    return _header(fields, separator, chars, decoded.charset)


def _header(fields: list[str], separator: str, chars: str, charset: str) -> Header:
    def msh(position: int) -> str:
        index = position - 1
        return fields[index] if index < len(fields) else ""

    def first(value: str, component: int = 1) -> str:
        parts = value.split(chars[1])[0].split(chars[0])
        text = parts[component - 1] if component <= len(parts) else ""
        return unescape(text, escape=chars[2], encoding_chars=chars).strip()

    header = Header(
        field_separator=separator,
        encoding_chars=chars,
        sending_application=first(msh(3)),
        sending_facility=first(msh(4)),
        receiving_application=first(msh(5)),
        receiving_facility=first(msh(6)),
        message_code=first(msh(9), 1).upper(),
        trigger_event=first(msh(9), 2).upper(),
        control_id=first(msh(10)),
        processing_id=first(msh(11)),
        version=first(msh(12)),
        accept_ack_type=first(msh(15)).upper(),
        application_ack_type=first(msh(16)).upper(),
        charset=charset,
    )
    if not header.message_code:
        raise MalformedMessage("MSH-9 (message type) is empty", code=ERROR_REQUIRED_FIELD_MISSING)
    if not header.control_id:
        raise MalformedMessage("MSH-10 (control ID) is empty", code=ERROR_REQUIRED_FIELD_MISSING)
    return header


# --------------------------------------------------------------------------- content


def _identifier(segment: Fields, position: int) -> tuple[str, str] | None:
    """A CX list (PID-3, MRG-1): the MR repetition, else the first; (id, assigning authority)."""
    reps = segment.repetitions(position)
    if not reps:
        return None
    chosen = next((rep for rep in reps if segment.part(rep, 5).upper() == "MR"), reps[0])
    identifier = segment.part(chosen, 1)
    if not identifier:
        return None
    issuer = segment.part(chosen, 4, 1) or segment.part(chosen, 4, 2)
    return identifier, issuer


def _patient(pid: Fields | None) -> PatientInfo | None:
    if pid is None:
        return None
    identifier = _identifier(pid, 3)
    if identifier is None:
        return None
    name = pid.raw(5).split(pid._chars[1])[0] if pid.raw(5) else ""
    birth = re.sub(r"\D", "", pid.component(7, 1))[:BIRTH_DATE_LENGTH]
    sex = pid.component(8, 1).upper()[:1]
    return PatientInfo(
        mrn=identifier[0],
        issuer=identifier[1],
        family_name=pid.part(name, 1, 1),
        given_name=pid.part(name, 2),
        birth_date=birth if len(birth) == BIRTH_DATE_LENGTH else "",
        sex=sex if sex in SEX_CODES else "U",
    )


@dataclass
class _OrderParts:
    orc: Fields | None = None
    obr: Fields | None = None
    ipc: Fields | None = None
    notes: list[str] = field(default_factory=list)
    tq1_priority: str = ""


def _orders(segments: list[Fields]) -> list[OrderInfo]:
    groups: list[_OrderParts] = []
    current: _OrderParts | None = None
    for segment in segments:
        if segment.name == "ORC":
            current = _OrderParts(orc=segment)
            groups.append(current)
        elif segment.name == "OBR":
            if current is None or current.obr is not None:
                current = _OrderParts(orc=current.orc if current else None)
                groups.append(current)
            current.obr = segment
        elif current is not None and segment.name == "NTE" and current.obr is not None:
            comment = "\n".join(segment.unescape(rep) for rep in segment.repetitions(3)).strip()
            if comment:
                current.notes.append(comment)
        elif current is not None and segment.name == "IPC" and current.ipc is None:
            current.ipc = segment
        elif current is not None and segment.name == "TQ1":
            current.tq1_priority = segment.component(9, 1).upper()
    return [_order(parts) for parts in groups if parts.obr is not None or parts.orc is not None]


def _order(parts: _OrderParts) -> OrderInfo:
    orc, obr, ipc = parts.orc, parts.obr, parts.ipc
    control = orc.component(1, 1).upper() if orc else "NW"
    placer = (orc.component(2, 1) if orc else "") or (obr.component(2, 1) if obr else "")
    filler = (orc.component(3, 1) if orc else "") or (obr.component(3, 1) if obr else "")
    filler_ns = (orc.component(3, 2) if orc else "") or (obr.component(3, 2) if obr else "")
    accession, issuer = "", ""
    if ipc is not None and ipc.component(1, 1):
        accession, issuer = ipc.component(1, 1), ipc.component(1, 2)
    elif obr is not None and obr.text(18):
        accession = obr.component(18, 1)
        issuer = filler_ns if filler == accession else ""
    elif filler:  # the filler order number is the RIS's accession number
        accession, issuer = filler, filler_ns
    priorities = {
        obr.component(5, 1).upper() if obr else "",
        obr.component(27, 6).upper() if obr else "",
        orc.component(7, 6).upper() if orc else "",
        parts.tq1_priority,
    }
    reasons: list[str] = []
    if obr is not None:
        for rep in obr.repetitions(31):
            reason = obr.part(rep, 2) or obr.part(rep, 1)
            if reason:
                reasons.append(reason)
    history = [obr.text(13)] if obr is not None and obr.text(13) else []
    history.extend(parts.notes)
    provider_source = orc if orc is not None and orc.raw(12) else obr
    provider_field = 12 if provider_source is orc else 16
    provider = ""
    if provider_source is not None and provider_source.raw(provider_field):
        identifier = provider_source.component(provider_field, 1)
        family = provider_source.component(provider_field, 2, 1)
        given = provider_source.component(provider_field, 3)
        provider = "^".join([identifier, family, given]).rstrip("^")
    return OrderInfo(
        accession_number=accession,
        accession_issuer=issuer,
        placer_order_number=placer,
        procedure_code=obr.component(4, 1) if obr else "",
        procedure_text=(obr.component(4, 2) or obr.component(4, 5)) if obr else "",
        priority=STAT_PRIORITY if STAT_PRIORITY in priorities else ROUTINE_PRIORITY,
        reason_for_exam="; ".join(reasons) or None,
        clinical_history="\n".join(history) or None,
        ordering_provider=provider or None,
        order_control=control or "NW",
    )
