"""The header values the node summarises, read straight from a data set's bytes.

:func:`read_plain_values` walks the top-level elements of a Little Endian
data set (explicit or implicit VR) with ``struct``, skipping sequences and
bulk values, and decodes the values :func:`dicom_node.header.summarize`
asks for, without building a pydicom ``Dataset`` (on the receive path that
was a fifth of the node's Python time per instance).

It gives up (returns None) on anything it cannot decode exactly as the
pydicom path does: another byte order, deflate, text outside printable
ASCII, a backslash in a name, an unusual VR for a summarised attribute,
elements out of order, a value running past the end, a deferred-size value
of a summarised attribute, malformed sequences.  The caller then parses
with pydicom as before, so every such data set is judged exactly as it was.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.valuerep import EXPLICIT_VR_LENGTH_16, EXPLICIT_VR_LENGTH_32

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
# Transfer syntaxes whose data set is not Explicit VR Little Endian.
NOT_EXPLICIT_LITTLE = frozenset(
    {IMPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
)
UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM_GROUP = 0xFFFE
ITEM_TAG = 0xFFFEE000
ITEM_DELIMITER_TAG = 0xFFFEE00D
SEQUENCE_DELIMITER_TAG = 0xFFFEE0DD
# Explicit VRs with a 2-byte reserved field and a 4-byte length, and the other
# standard ones (PS3.5 7.1.2), as pydicom reads them.
LONG_VRS = frozenset(str(vr).encode("ascii") for vr in EXPLICIT_VR_LENGTH_32)
SHORT_VRS = frozenset(str(vr).encode("ascii") for vr in EXPLICIT_VR_LENGTH_16)
# VRs decoded as ASCII whatever the character set (as dicom_node.header's _plain_value).
PLAIN_TEXT_VRS = frozenset({"UI", "CS", "DA", "TM", "IS", "DS"})
# Names and descriptions: taken here only when they are printable ASCII without a
# backslash (one value), which every character set below decodes as ASCII.
TEXT_VRS = frozenset({"PN", "LO", "SH"})
EMPTY_AS_NONE_VRS = frozenset({"DS", "IS", "US"})
ASCII_CHARACTER_SETS = frozenset(
    {
        "", "ISO_IR 6", "ISO 2022 IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109",
        "ISO_IR 110", "ISO_IR 126", "ISO_IR 127", "ISO_IR 138", "ISO_IR 144", "ISO_IR 148",
        "ISO_IR 166", "ISO_IR 192", "ISO 2022 IR 100", "ISO 2022 IR 101", "ISO 2022 IR 109",
        "ISO 2022 IR 110", "ISO 2022 IR 126", "ISO 2022 IR 127", "ISO 2022 IR 138",
        "ISO 2022 IR 144", "ISO 2022 IR 148", "ISO 2022 IR 166", "ISO 2022 IR 87",
        "ISO 2022 IR 159", "ISO 2022 IR 149", "ISO 2022 IR 58", "GB18030", "GBK",
    }
)  # fmt: skip
PRINTABLE_ASCII = frozenset(range(0x20, 0x7F))
BACKSLASH = 0x5C
SPECIFIC_CHARACTER_SET = "SpecificCharacterSet"
MAX_NESTING = 64

_TAG_LENGTH = struct.Struct("<HHL")  # group, element, 4-byte length (implicit VR, items)
_EXPLICIT = struct.Struct("<HH2sH")  # group, element, VR, 2-byte length
_LONG_LENGTH = struct.Struct("<L")


class _Unreadable(Exception):
    """This reader does not take the data set (pydicom's path judges it)."""


@dataclass(frozen=True)
class PlainValues:
    """Decoded values by keyword, presence and declared lengths of elements, as the
    pydicom path would give them to the summary."""

    values: dict[str, Any]
    lengths: dict[str, int]

    def value(self, keyword: str) -> Any:
        return self.values.get(keyword)

    def has(self, keyword: str) -> bool:
        return keyword in self.lengths

    def length(self, keyword: str) -> int:
        return self.lengths.get(keyword, 0)


@dataclass(frozen=True)
class _Wanted:
    keyword: str
    vr: str  # from the dictionary, for implicit VR


def _wanted(keywords: Iterable[str]) -> dict[int, _Wanted]:
    table: dict[int, _Wanted] = {}
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise KeyError(keyword)
        table[tag] = _Wanted(keyword, str(dictionary_VR(tag)))
    return table


class PlainReader:
    """Reads ``keywords`` (and ``SpecificCharacterSet``) from data sets; bulk values
    (over ``defer_bytes``) of ``sized_keywords`` are only measured."""

    def __init__(self, keywords: Iterable[str], sized_keywords: Iterable[str], defer_bytes: int):
        self._wanted = _wanted([*keywords, SPECIFIC_CHARACTER_SET])
        self._sized = _wanted(sized_keywords)
        self._defer_bytes = defer_bytes

    def read(
        self, encoded: bytes | memoryview, transfer_syntax_uid: str, size: int | None = None
    ) -> PlainValues | None:
        """The values, or None where the pydicom path has to read this data set.

        ``encoded`` may be only the start of a data set of ``size`` bytes: enough
        when the last element (pixel data) starts in it; otherwise None.
        """
        if transfer_syntax_uid in NOT_EXPLICIT_LITTLE and (
            transfer_syntax_uid != IMPLICIT_VR_LITTLE_ENDIAN
        ):
            return None
        explicit = transfer_syntax_uid != IMPLICIT_VR_LITTLE_ENDIAN
        data = memoryview(encoded)
        try:
            raw, lengths = self._elements(data, len(data) if size is None else size, explicit)
            return self._decode(raw, lengths)
        except (_Unreadable, struct.error, RecursionError, UnicodeDecodeError):
            return None

    def _elements(
        self, data: memoryview, size: int, explicit: bool
    ) -> tuple[dict[str, tuple[str, bytes]], dict[str, int]]:
        """(VR, value) of the wanted elements and declared lengths of the sized ones,
        from ``data``, the start of a data set of ``size`` bytes."""
        wanted, sized = self._wanted, self._sized
        raw: dict[str, tuple[str, bytes]] = {}
        lengths: dict[str, int] = {}
        end = len(data)
        if end > size:
            raise _Unreadable("more bytes than the data set's size")
        offset = 0
        previous = -1
        while offset < size:
            if offset >= end:
                raise _Unreadable("elements beyond the bytes at hand")
            if end - offset < 8:
                raise _Unreadable("a partial element at the end")
            group, element, vr_bytes, short_length = _EXPLICIT.unpack_from(data, offset)
            tag = group << 16 | element
            if tag <= previous or group == ITEM_GROUP:
                raise _Unreadable("elements out of order, or an item at the top level")
            previous = tag
            if explicit:
                if vr_bytes in LONG_VRS:
                    if end - offset < 12:
                        raise _Unreadable("a partial element header")
                    (length,) = _LONG_LENGTH.unpack_from(data, offset + 8)
                    start = offset + 12
                elif vr_bytes in SHORT_VRS:
                    length, start = short_length, offset + 8
                else:
                    raise _Unreadable("an unknown VR")
                vr = vr_bytes.decode("ascii")
            else:
                (length,) = _LONG_LENGTH.unpack_from(data, offset + 4)
                start, vr = offset + 8, ""
            if length == UNDEFINED_LENGTH:
                if (
                    tag in wanted
                    or (explicit and vr not in ("SQ", "OB"))
                    or (not explicit and tag in sized)
                ):
                    raise _Unreadable("an undefined length where a value is read")
                offset = _skip_sequence(data, start, explicit, 0)
                if tag in sized:  # encapsulated pixel data
                    lengths[sized[tag].keyword] = UNDEFINED_LENGTH
                continue
            offset = start + length
            if offset > end and (offset != size or tag in wanted):
                raise _Unreadable("a value running past the end, or past the bytes at hand")
            entry = wanted.get(tag)
            if entry is not None:
                if length > self._defer_bytes:
                    raise _Unreadable("a long value of a summarised attribute")
                raw[entry.keyword] = (vr or entry.vr, bytes(data[start:offset]))
                lengths[entry.keyword] = length
            elif tag in sized:
                lengths[sized[tag].keyword] = length
        return raw, lengths

    def _decode(
        self, raw: dict[str, tuple[str, bytes]], lengths: dict[str, int]
    ) -> PlainValues | None:
        charset = raw.pop(SPECIFIC_CHARACTER_SET, None)
        lengths.pop(SPECIFIC_CHARACTER_SET, None)
        if charset is not None:
            if charset[0] != "CS":
                return None
            terms = [term.strip("\x00 ") for term in charset[1].decode("ascii").split("\\")]
            if not all(term in ASCII_CHARACTER_SETS for term in terms):
                return None
        values: dict[str, Any] = {}
        for keyword, (vr, value) in raw.items():
            values[keyword] = _plain(vr, value)
        return PlainValues(values, lengths)


def _plain(vr: str, raw: bytes) -> Any:
    """A value as dicom_node.header's ``_value`` gives it on the pydicom path."""
    if not raw:  # pydicom's empty value: None for numbers, "" for text
        if vr in EMPTY_AS_NONE_VRS:
            return None
        if vr in PLAIN_TEXT_VRS or vr in TEXT_VRS:
            return ""
        raise _Unreadable(f"an empty value with VR {vr}")
    if vr in PLAIN_TEXT_VRS:
        text = raw.decode("ascii")  # UnicodeDecodeError: not taken
        if "\\" in text:
            return [item.strip("\x00 ") for item in text.split("\\")]
        return text.strip("\x00 ")
    if vr == "US":
        if len(raw) != 2:
            raise _Unreadable("a US value that is not 2 bytes")
        return int.from_bytes(raw, "little")
    if vr in TEXT_VRS:
        stripped = raw.rstrip(b"\x00 ")
        if BACKSLASH in stripped or not PRINTABLE_ASCII.issuperset(stripped):
            raise _Unreadable("text that needs its character set")
        return stripped.decode("ascii").strip(" ")
    raise _Unreadable(f"a summarised attribute with VR {vr}")


def _skip_sequence(data: memoryview, offset: int, explicit: bool, depth: int) -> int:
    """The offset after the items of an undefined-length value (a sequence, or
    encapsulated pixel data) and its delimiter."""
    if depth > MAX_NESTING:
        raise _Unreadable("sequences nested too deep")
    end = len(data)
    while True:
        if end - offset < 8:
            raise _Unreadable("a sequence without its delimiter")
        group, element, length = _TAG_LENGTH.unpack_from(data, offset)
        tag = group << 16 | element
        offset += 8
        if tag == SEQUENCE_DELIMITER_TAG:
            return offset
        if tag != ITEM_TAG:
            raise _Unreadable("a sequence holding something other than items")
        if length == UNDEFINED_LENGTH:
            offset = _skip_item(data, offset, explicit, depth + 1)
        else:
            offset += length
            if offset > end:
                raise _Unreadable("an item running past the end")


def _skip_item(data: memoryview, offset: int, explicit: bool, depth: int) -> int:
    """The offset after an undefined-length item's elements and its delimiter."""
    end = len(data)
    while True:
        if end - offset < 8:
            raise _Unreadable("an item without its delimiter")
        group, element, vr_bytes, short_length = _EXPLICIT.unpack_from(data, offset)
        tag = group << 16 | element
        if tag == ITEM_DELIMITER_TAG:
            return offset + 8
        if group == ITEM_GROUP:
            raise _Unreadable("an item or delimiter inside an item")
        nested_explicit = explicit
        if explicit:
            if vr_bytes in LONG_VRS:
                if end - offset < 12:
                    raise _Unreadable("a partial element header")
                (length,) = _LONG_LENGTH.unpack_from(data, offset + 8)
                start = offset + 12
                nested_explicit = vr_bytes != b"UN"  # an implicit VR sequence inside UN
            elif vr_bytes in SHORT_VRS:
                length, start = short_length, offset + 8
            else:
                raise _Unreadable("an unknown VR")
        else:
            (length,) = _LONG_LENGTH.unpack_from(data, offset + 4)
            start = offset + 8
        if length == UNDEFINED_LENGTH:
            if explicit and vr_bytes not in (b"SQ", b"UN", b"OB"):
                raise _Unreadable("an undefined length on a VR that cannot have one")
            offset = _skip_sequence(data, start, nested_explicit, depth + 1)
            continue
        offset = start + length
        if offset > end:
            raise _Unreadable("a value running past the end")
