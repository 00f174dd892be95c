"""Read and check the header of a received instance without decoding pixels.

:func:`parse_instance` turns the encoded data set (as the sender sent it) into
an :class:`InstanceHeader`, the summary the index and series selection use,
or raises :class:`RejectedInstance` with the status to send back.  Text
attributes are decoded with the data set's Specific Character Set.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID, generate_uid

from dicom_node.rawheader import UNDEFINED_LENGTH as RAW_UNDEFINED_LENGTH
from dicom_node.rawheader import PlainReader
from dicom_node.status import StoreStatus

log = logging.getLogger(__name__)

PREAMBLE = b"\x00" * 128 + b"DICM"
META_GROUP = 0x0002
META_VERSION = b"\x00\x01"
MAX_AE_TITLE_LENGTH = 16
# Conformant UIDs are digits and dots; real archives also hold letters, dashes
# and underscores (anonymisers, old systems).  Any of these is accepted, as it
# cannot form a path outside the storage root; "/", "\\", ".." and the like are not.
UID_PATTERN = re.compile(r"^[0-9A-Za-z_-][0-9A-Za-z._-]*$")
UNDEFINED_LENGTH = 0xFFFFFFFF
MAX_UID_LENGTH = 64
# Natively encoded pixel data is checked against these; compressed data
# (which cannot be sized without decoding) only against the dimensions.
MAX_ROWS_OR_COLUMNS = 16_384
MAX_FRAMES = 100_000
MAX_SAMPLES_PER_PIXEL = 4
ALLOWED_BITS_ALLOCATED = frozenset({1, 8, 16, 32, 64})
MAX_DECODED_BYTES = 8 * 1024**3
NATIVE_TRANSFER_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}
)
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
# Values longer than this are not read when parsing a received data set (pixel data).
DEFER_BYTES = 16_384
# VRs whose values are ASCII text whatever the character set (PS3.5 6.1.2, 6.2).
PLAIN_TEXT_VRS = frozenset({"UI", "CS", "DA", "TM", "IS", "DS"})
META_GROUP_LENGTH_TAG = 0x0000_0002  # (0002,0000) read as a little-endian uint32
META_GROUP_LENGTH_SIZE = 12  # tag, VR, length, UL value
# A UUID-derived (2.25) UID, stable across runs, naming the writer of the File Meta.
RADSCRIBE_IMPLEMENTATION_UID = generate_uid(prefix=None, entropy_srcs=["Radscribe DICOM node"])
RADSCRIBE_IMPLEMENTATION_VERSION = "RADSCRIBE_1"


class RejectedInstance(Exception):
    """The instance cannot be stored; ``status`` goes back to the sender."""

    def __init__(self, status: StoreStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class InstanceHeader:
    """What the node needs from one instance's header (no pixel values)."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    modality: str = ""
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str | None = None
    patient_sex: str | None = None
    accession_number: str = ""
    study_date: str | None = None
    study_time: str | None = None
    study_description: str = ""
    series_number: int | None = None
    series_description: str = ""
    instance_number: int | None = None
    image_type: tuple[str, ...] = ()
    rows: int | None = None
    columns: int | None = None
    frames: int = 1
    image_position: tuple[float, float, float] | None = None
    image_orientation: tuple[float, float, float, float, float, float] | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    convolution_kernel: str = ""
    gantry_tilt: float | None = None
    body_part: str = ""
    has_pixel_data: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def slice_normal(self) -> tuple[float, float, float] | None:
        return slice_normal(self.image_orientation)

    @property
    def slice_position(self) -> float | None:
        """Position along the slice normal (mm); orders slices, also when tilted."""
        normal = self.slice_normal
        if normal is None or self.image_position is None:
            return None
        return sum(p * n for p, n in zip(self.image_position, normal, strict=True))


def slice_normal(
    orientation: Sequence[float] | None,
) -> tuple[float, float, float] | None:
    if orientation is None or len(orientation) != 6:
        return None
    rx, ry, rz, cx, cy, cz = orientation
    nx, ny, nz = ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx
    length = math.sqrt(nx * nx + ny * ny + nz * nz)
    if not length or not math.isfinite(length):
        return None
    return (nx / length, ny / length, nz / length)


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    """One group-0002 element, Explicit VR Little Endian (PS3.5 7.1.2)."""
    if vr == b"OB":
        return struct.pack("<HH2sHI", META_GROUP, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", META_GROUP, element, vr, len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    raw = text.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def encode_file_meta(
    *, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_ae: str
) -> bytes:
    """Preamble, ``DICM`` and File Meta Information for a received data set.

    Written by hand (it is on every instance's path and has a fixed layout):
    the same bytes pydicom's ``write_file_meta_info`` produces, about 40 times faster.
    """
    body = [
        _meta_element(0x0001, b"OB", META_VERSION),
        _meta_element(0x0002, b"UI", _padded(sop_class_uid, b"\x00")),
        _meta_element(0x0003, b"UI", _padded(sop_instance_uid, b"\x00")),
        _meta_element(0x0010, b"UI", _padded(transfer_syntax_uid, b"\x00")),
        _meta_element(0x0012, b"UI", _padded(RADSCRIBE_IMPLEMENTATION_UID, b"\x00")),
        _meta_element(0x0013, b"SH", _padded(RADSCRIBE_IMPLEMENTATION_VERSION, b" ")),
    ]
    title = source_ae.strip()[:MAX_AE_TITLE_LENGTH]
    if title:
        body.append(_meta_element(0x0016, b"AE", _padded(title, b" ")))
    elements = b"".join(body)
    group_length = _meta_element(0x0000, b"UL", struct.pack("<I", len(elements)))
    return PREAMBLE + group_length + elements


def check_uid(value: object, keyword: str) -> str:
    if value is None or str(value).strip("\x00 ") == "":
        raise RejectedInstance(StoreStatus.MISSING_REQUIRED_UID, f"{keyword} is missing")
    uid = str(value).strip("\x00 ")
    if len(uid) > MAX_UID_LENGTH or not UID_PATTERN.match(uid) or ".." in uid:
        raise RejectedInstance(StoreStatus.UNSAFE_UID, f"{keyword} {uid[:80]!r} is not a valid UID")
    return uid


def parse_instance(
    part10: bytes,
    *,
    transfer_syntax_uid: str,
    affected_sop_class_uid: str,
    affected_sop_instance_uid: str,
) -> InstanceHeader:
    """Parse and check a received instance: File Meta from :func:`encode_file_meta`
    followed by the data set exactly as the sender encoded it."""
    return parse_data_set(
        part10[_data_set_offset(part10) :],
        transfer_syntax_uid=transfer_syntax_uid,
        affected_sop_class_uid=affected_sop_class_uid,
        affected_sop_instance_uid=affected_sop_instance_uid,
    )


def _data_set_offset(part10: bytes) -> int:
    """Where the data set starts after a File Meta that opens with its group length."""
    start = len(PREAMBLE)
    if part10[:start] != PREAMBLE or len(part10) < start + META_GROUP_LENGTH_SIZE:
        raise RejectedInstance(StoreStatus.UNPARSEABLE_DATASET, "no File Meta Information")
    tag, vr, _length, value = struct.unpack_from("<I2sHI", part10, start)
    if tag != META_GROUP_LENGTH_TAG or vr != b"UL":
        raise RejectedInstance(
            StoreStatus.UNPARSEABLE_DATASET, "the File Meta Information has no group length"
        )
    return start + META_GROUP_LENGTH_SIZE + int(value)


class HeaderValues(Protocol):
    """The values of a data set that :func:`summarize` reads, by keyword."""

    def value(self, keyword: str) -> Any:
        """The element's value (None if absent), as :func:`_value` gives it."""
        ...

    def has(self, keyword: str) -> bool:
        """Whether the element is present."""
        ...

    def length(self, keyword: str) -> int:
        """The length of its value, without reading a deferred one."""
        ...


class DatasetValues:
    """:class:`HeaderValues` of a pydicom data set."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def value(self, keyword: str) -> Any:
        return _value(self.dataset, keyword)

    def has(self, keyword: str) -> bool:
        return keyword in self.dataset

    def length(self, keyword: str) -> int:
        return _value_length(self.dataset, keyword)


# The keywords summarize() reads; pixel data is only measured.
SUMMARY_KEYWORDS = (
    "SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows",
    "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated", "PixelSpacing",
    "ImagePositionPatient", "ImageOrientationPatient", "ConvolutionKernel", "Modality",
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber",
    "StudyDate", "StudyTime", "StudyDescription", "SeriesNumber", "SeriesDescription",
    "InstanceNumber", "ImageType", "SliceThickness", "GantryDetectorTilt", "BodyPartExamined",
)  # fmt: skip


@functools.cache
def _plain_reader() -> PlainReader:
    return PlainReader(SUMMARY_KEYWORDS, PIXEL_DATA_KEYWORDS, DEFER_BYTES)


def parse_data_set(
    encoded: bytes,
    *,
    transfer_syntax_uid: str,
    affected_sop_class_uid: str,
    affected_sop_instance_uid: str,
) -> InstanceHeader:
    """Parse and check a received data set (the bytes after the File Meta).

    The values are read by :mod:`dicom_node.rawheader` where it can; any data
    set it does not take is parsed with pydicom (same summary, same checks).
    """
    header = _plain_summary(encoded, transfer_syntax_uid)
    if header is None:
        dataset, size = _read_data_set(encoded, transfer_syntax_uid)
        header = _summarize_checked(dataset, transfer_syntax_uid=transfer_syntax_uid, size=size)
    return _matching_request(header, affected_sop_class_uid, affected_sop_instance_uid)


def parse_data_set_start(
    start: bytes | memoryview,
    *,
    size: int,
    whole: Callable[[], bytes],
    transfer_syntax_uid: str,
    affected_sop_class_uid: str,
    affected_sop_instance_uid: str,
) -> InstanceHeader:
    """:func:`parse_data_set` from the ``start`` of a data set of ``size`` bytes, which
    is enough where its last element (the pixel data) starts in it; otherwise the
    ``whole`` data set is asked for and parsed."""
    header = _plain_summary(start, transfer_syntax_uid, size)
    if header is None:
        return parse_data_set(
            whole(),
            transfer_syntax_uid=transfer_syntax_uid,
            affected_sop_class_uid=affected_sop_class_uid,
            affected_sop_instance_uid=affected_sop_instance_uid,
        )
    return _matching_request(header, affected_sop_class_uid, affected_sop_instance_uid)


def _matching_request(
    header: InstanceHeader, affected_sop_class_uid: str, affected_sop_instance_uid: str
) -> InstanceHeader:
    """``header``, once its UIDs are those of the request."""
    if header.sop_class_uid != str(affected_sop_class_uid):
        raise RejectedInstance(
            StoreStatus.SOP_CLASS_MISMATCH,
            f"SOPClassUID {header.sop_class_uid} differs from the request's "
            f"{affected_sop_class_uid}",
        )
    if header.sop_instance_uid != str(affected_sop_instance_uid).strip("\x00 "):
        raise RejectedInstance(
            StoreStatus.SOP_INSTANCE_MISMATCH,
            f"SOPInstanceUID {header.sop_instance_uid} differs from the request's "
            f"{affected_sop_instance_uid}",
        )
    return header


def _plain_summary(
    encoded: bytes | memoryview, transfer_syntax_uid: str, size: int | None = None
) -> InstanceHeader | None:
    """The summary from :mod:`dicom_node.rawheader`'s values, or None where pydicom
    has to read the data set (a refusal of the summary's checks is raised).
    ``encoded`` may be the start of a data set of ``size`` bytes."""
    values = _plain_reader().read(encoded, transfer_syntax_uid, size)
    if values is None:
        return None
    if transfer_syntax_uid in NATIVE_TRANSFER_SYNTAXES and any(
        values.length(keyword) == RAW_UNDEFINED_LENGTH for keyword in PIXEL_DATA_KEYWORDS
    ):
        return None  # encapsulated pixel data in a native syntax: pydicom judges it
    with _decoding_errors_as_status():
        return _summary(values, transfer_syntax_uid=transfer_syntax_uid)


def read_header_file(path: Path) -> InstanceHeader:
    """Read a stored Part 10 file's header (pixels are not decoded)."""
    with path.open("rb") as handle:
        dataset = _read(handle, what=str(path), stop_before_pixels=True)
    transfer_syntax = str(getattr(dataset.file_meta, "TransferSyntaxUID", "") or "")
    return _summarize_checked(dataset, transfer_syntax_uid=transfer_syntax, check_pixels=False)


def _summarize_checked(
    dataset: Dataset, *, transfer_syntax_uid: str, check_pixels: bool = True, size: int = 0
) -> InstanceHeader:
    """:func:`summarize`, with errors of pydicom's lazy element decoding made a status.

    ``size``: of the bytes the data set was read from (where deferred values end)."""
    with _decoding_errors_as_status():
        if check_pixels:
            _check_not_truncated(dataset, size)
        return summarize(
            dataset, transfer_syntax_uid=transfer_syntax_uid, check_pixels=check_pixels
        )


@contextmanager
def _decoding_errors_as_status() -> Iterator[None]:
    """Any error but a refusal, raised while values are decoded, is an unparseable data set."""
    try:
        yield
    except RejectedInstance:
        raise
    except Exception as exc:
        raise RejectedInstance(
            StoreStatus.UNPARSEABLE_DATASET,
            f"data set cannot be decoded: {type(exc).__name__}: {exc}",
        ) from exc


def _read_data_set(encoded: bytes, transfer_syntax_uid: str) -> tuple[Dataset, int]:
    """The data set's elements, bulk values (pixel data) left unread (deferred), and
    the size of the (inflated) bytes they were read from.

    Read straight from the bytes in the transfer syntax's encoding, as
    ``dcmread`` would after the File Meta; values over ``DEFER_BYTES`` are
    skipped (their length and position kept), so no pixel data is copied.
    """
    implicit = transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN
    little = transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN
    data = encoded
    try:
        if transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            data = zlib.decompress(encoded, -zlib.MAX_WBITS)
        dataset = read_dataset(io.BytesIO(data), implicit, little, defer_size=DEFER_BYTES)
    except Exception as exc:  # pydicom raises many kinds of errors on bad input
        raise RejectedInstance(
            StoreStatus.UNPARSEABLE_DATASET,
            f"received data set cannot be parsed: {type(exc).__name__}: {exc}",
        ) from exc
    dataset.set_original_encoding(implicit, little, dataset._character_set)
    # Where pydicom reads a deferred value from, should one be asked for.
    dataset.filename, dataset.buffer, dataset.timestamp = None, io.BytesIO(data), None
    dataset.fileobj_type = io.BytesIO
    return dataset, len(data)


def _read(source: Any, *, what: str, stop_before_pixels: bool = False) -> Dataset:
    try:
        dataset = dcmread(source, stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # pydicom raises many kinds of errors on bad input
        raise RejectedInstance(
            StoreStatus.UNPARSEABLE_DATASET, f"{what} cannot be parsed: {type(exc).__name__}: {exc}"
        ) from exc
    return dataset


@functools.cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag


def _value(dataset: Dataset, keyword: str) -> Any:
    """An element's value by keyword, looked up by tag (cheaper on this hot path).

    Values of the plain ASCII VRs (UIDs, code strings, dates, numbers as text,
    unsigned shorts) are decoded here from the raw element, the same values
    pydicom's conversion gives as far as the summary is concerned (strings,
    lists for several values); the rest (names and descriptions in the
    data set's character set) go through pydicom.
    """
    tag = _tag(keyword)
    element = dataset.get_item(tag, keep_deferred=True)
    if element is None:
        return None
    if isinstance(element, RawDataElement) and element.value is not None:
        value = _plain_value(element, tag)
        if value is not _NOT_PLAIN:
            return value
    element = dataset.get(tag)
    return None if element is None else element.value


_NOT_PLAIN = object()


def _plain_value(element: RawDataElement, tag: int) -> Any:
    vr = element.VR or _dictionary_vr(tag)
    raw = element.value or b""
    if vr in PLAIN_TEXT_VRS:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            return _NOT_PLAIN
        if "\\" in text:
            return [item.strip("\x00 ") for item in text.split("\\")]
        return text.strip("\x00 ")
    if vr == "US" and len(raw) == 2:
        return int.from_bytes(raw, "little" if element.is_little_endian else "big")
    return _NOT_PLAIN


@functools.cache
def _dictionary_vr(tag: int) -> str:
    return str(dictionary_VR(tag))


def _value_length(dataset: Dataset, keyword: str) -> int:
    """The length of an element's value, without reading a deferred value."""
    element = dataset.get_item(_tag(keyword), keep_deferred=True)
    if element is None:
        return 0
    if isinstance(element, RawDataElement):
        return element.length if element.value is None else len(element.value)
    return len(element.value or b"")


def configure_pydicom() -> None:
    """Skip pydicom's per-value validation when reading (process-wide).

    In its default (warn) mode pydicom checks every value it converts against
    its VR's rules and warns; that doubles the cost of summarising a header on
    the receive path, and the node keeps non-conformant values anyway (it
    checks what it relies on itself).  Reading is otherwise unchanged.
    """
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE


def _check_not_truncated(dataset: Dataset, size: int) -> None:
    """Refuse a last element that is shorter than its declared length (pydicom keeps
    it) or, when it has no value, that cannot be decoded (garbage read as an element)."""
    tags = list(dataset.keys())
    if not tags:
        return
    last = dataset.get_item(tags[-1], keep_deferred=True)
    if not isinstance(last, RawDataElement) or last.length == UNDEFINED_LENGTH:
        return
    # A deferred value was not read: what is there is what follows its position.
    deferred = last.value is None and last.length > DEFER_BYTES
    present = max(0, size - last.value_tell) if deferred else len(last.value or b"")
    if present < last.length:
        raise RejectedInstance(
            StoreStatus.UNPARSEABLE_DATASET,
            f"data set is truncated: element {last.tag} declares {last.length} bytes, "
            f"{present} present",
        )
    if last.value is None and not deferred:
        dataset[tags[-1]]  # decodes it; raises on an element that is not one


def _text(values: HeaderValues, keyword: str) -> str:
    try:
        value = values.value(keyword)
    except Exception:  # a value that cannot be decoded in its character set
        return ""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1", "replace").strip("\x00 ")
    try:
        return str(value).strip("\x00 ")
    except Exception:
        return ""


def _optional_text(values: HeaderValues, keyword: str) -> str | None:
    return _text(values, keyword) or None


def _int(values: HeaderValues, keyword: str) -> int | None:
    value = values.value(keyword)
    if value is None or value == "":
        return None
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number != int(number):
        return None
    return int(number)


def _float(values: HeaderValues, keyword: str) -> float | None:
    value = values.value(keyword)
    if value is None or value == "":
        return None
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _floats(values: HeaderValues, keyword: str, count: int) -> tuple[float, ...] | None:
    value = values.value(keyword)
    if value is None:
        return None
    try:
        numbers = tuple(float(item) for item in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
        return None
    return numbers


def _strings(values: HeaderValues, keyword: str) -> tuple[str, ...]:
    value = values.value(keyword)
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(str(item).strip().upper() for item in items)


def _image_attributes(
    values: HeaderValues, *, transfer_syntax_uid: str, check_pixels: bool
) -> tuple[int | None, int | None, int, bool]:
    """Check dimensions against limits and native pixel data against its size."""
    pixel_keyword = next((kw for kw in PIXEL_DATA_KEYWORDS if values.has(kw)), None)
    rows_value, columns_value = values.value("Rows"), values.value("Columns")
    frames_value = values.value("NumberOfFrames")
    rows, columns = _int(values, "Rows"), _int(values, "Columns")
    frames = 1 if frames_value in (None, "") else _int(values, "NumberOfFrames")
    if pixel_keyword is None and rows_value is None and columns_value is None:
        return None, None, frames or 1, False
    if frames is None:
        raise RejectedInstance(
            StoreStatus.INVALID_IMAGE_ATTRIBUTES,
            f"NumberOfFrames {str(frames_value)[:20]!r} is invalid",
        )
    if pixel_keyword is None:
        return rows, columns, frames, False
    samples = _int(values, "SamplesPerPixel") or 1
    bits = _int(values, "BitsAllocated")
    if rows is None or columns is None or bits is None:
        raise RejectedInstance(
            StoreStatus.INVALID_IMAGE_ATTRIBUTES,
            "pixel data without Rows, Columns or BitsAllocated",
        )
    if pixel_keyword == "FloatPixelData":
        bits = 32
    elif pixel_keyword == "DoubleFloatPixelData":
        bits = 64
    if not (1 <= rows <= MAX_ROWS_OR_COLUMNS and 1 <= columns <= MAX_ROWS_OR_COLUMNS):
        raise RejectedInstance(
            StoreStatus.INVALID_IMAGE_ATTRIBUTES,
            f"image size {rows}x{columns} is outside 1..{MAX_ROWS_OR_COLUMNS}",
        )
    if not 1 <= frames <= MAX_FRAMES:
        raise RejectedInstance(
            StoreStatus.INVALID_IMAGE_ATTRIBUTES,
            f"NumberOfFrames {frames} is outside 1..{MAX_FRAMES}",
        )
    if not 1 <= samples <= MAX_SAMPLES_PER_PIXEL or bits not in ALLOWED_BITS_ALLOCATED:
        raise RejectedInstance(
            StoreStatus.INVALID_IMAGE_ATTRIBUTES,
            f"SamplesPerPixel {samples} / BitsAllocated {bits} are not supported",
        )
    expected_bits = rows * columns * frames * samples * bits
    expected = (expected_bits + 7) // 8
    if expected > MAX_DECODED_BYTES:
        raise RejectedInstance(
            StoreStatus.INVALID_IMAGE_ATTRIBUTES,
            f"decoded pixel data would be {expected} bytes (limit {MAX_DECODED_BYTES})",
        )
    if check_pixels and transfer_syntax_uid in NATIVE_TRANSFER_SYNTAXES:
        actual = values.length(pixel_keyword)
        # Native pixel data is padded to an even length.
        if actual < expected or actual > expected + 1:
            raise RejectedInstance(
                StoreStatus.PIXEL_DATA_LENGTH_MISMATCH,
                f"{pixel_keyword} holds {actual} bytes but {rows}x{columns}x{frames} "
                f"x{samples}x{bits} bits need {expected}",
            )
    return rows, columns, frames, True


def summarize(
    dataset: Dataset, *, transfer_syntax_uid: str, check_pixels: bool = True
) -> InstanceHeader:
    """Build the checked header summary of a parsed data set."""
    return _summary(
        DatasetValues(dataset), transfer_syntax_uid=transfer_syntax_uid, check_pixels=check_pixels
    )


def _summary(
    values: HeaderValues, *, transfer_syntax_uid: str, check_pixels: bool = True
) -> InstanceHeader:
    """The checked header summary, from the values of a data set."""
    sop_instance = check_uid(values.value("SOPInstanceUID"), "SOPInstanceUID")
    sop_class = check_uid(values.value("SOPClassUID"), "SOPClassUID")
    study = check_uid(values.value("StudyInstanceUID"), "StudyInstanceUID")
    series = check_uid(values.value("SeriesInstanceUID"), "SeriesInstanceUID")
    rows, columns, frames, has_pixels = _image_attributes(
        values, transfer_syntax_uid=transfer_syntax_uid, check_pixels=check_pixels
    )
    spacing = _floats(values, "PixelSpacing", 2)
    position = _floats(values, "ImagePositionPatient", 3)
    orientation = _floats(values, "ImageOrientationPatient", 6)
    kernel_value = values.value("ConvolutionKernel")
    if kernel_value is not None and not isinstance(kernel_value, str):
        kernel = "\\".join(str(item) for item in kernel_value)
    else:
        kernel = _text(values, "ConvolutionKernel")
    return InstanceHeader(
        sop_instance_uid=sop_instance,
        sop_class_uid=sop_class,
        study_instance_uid=study,
        series_instance_uid=series,
        transfer_syntax_uid=str(UID(transfer_syntax_uid)) if transfer_syntax_uid else "",
        modality=_text(values, "Modality").upper(),
        patient_id=_text(values, "PatientID"),
        patient_name=_text(values, "PatientName"),
        patient_birth_date=_optional_text(values, "PatientBirthDate"),
        patient_sex=_optional_text(values, "PatientSex"),
        accession_number=_text(values, "AccessionNumber"),
        study_date=_optional_text(values, "StudyDate"),
        study_time=_optional_text(values, "StudyTime"),
        study_description=_text(values, "StudyDescription"),
        series_number=_int(values, "SeriesNumber"),
        series_description=_text(values, "SeriesDescription"),
        instance_number=_int(values, "InstanceNumber"),
        image_type=_strings(values, "ImageType"),
        rows=rows,
        columns=columns,
        frames=frames,
        image_position=position,  # type: ignore[arg-type]
        image_orientation=orientation,  # type: ignore[arg-type]
        pixel_spacing=spacing,  # type: ignore[arg-type]
        slice_thickness=_float(values, "SliceThickness"),
        convolution_kernel=kernel,
        gantry_tilt=_float(values, "GantryDetectorTilt"),
        body_part=_text(values, "BodyPartExamined").upper(),
        has_pixel_data=has_pixels,
    )
