"""The receive path's own header reader gives pydicom's summary, or leaves the data set to it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import split_dataset

from dicom_node.header import (
    InstanceHeader,
    RejectedInstance,
    _plain_summary,
    _read_data_set,
    _summarize_checked,
    configure_pydicom,
    parse_data_set_start,
)
from dicom_node.status import StoreStatus

from .conftest import make_ct_slice

configure_pydicom()

Outcome = InstanceHeader | StoreStatus | None


def _pydicom_outcome(encoded: bytes, syntax: str) -> InstanceHeader | StoreStatus:
    try:
        dataset, size = _read_data_set(encoded, syntax)
        return _summarize_checked(dataset, transfer_syntax_uid=syntax, size=size)
    except RejectedInstance as rejected:
        return rejected.status


def _plain_outcome(encoded: bytes, syntax: str) -> Outcome:
    try:
        return _plain_summary(encoded, syntax)
    except RejectedInstance as rejected:
        return rejected.status


def _assert_same_or_left(encoded: bytes, syntax: str) -> Outcome:
    """The plain reader's outcome is pydicom's, or None (left to pydicom)."""
    plain = _plain_outcome(encoded, syntax)
    if plain is not None:
        assert plain == _pydicom_outcome(encoded, syntax)
    return plain


def _encode(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    """The data set alone (no File Meta), as a C-STORE carries it."""
    del ds.file_meta
    buffer = io.BytesIO()
    ds.save_as(
        buffer,
        enforce_file_format=False,
        implicit_vr=syntax == ImplicitVRLittleEndian,
        little_endian=True,
    )
    return buffer.getvalue()


def _slice(**options: object) -> Dataset:
    return make_ct_slice(
        study_uid="1.2.826.0.1.3680043.8.498.1",
        series_uid="1.2.826.0.1.3680043.8.498.2",
        index=4,
        **options,
    )


def _with_undefined_length_sequences(ds: Dataset) -> Dataset:
    inner = Dataset()
    inner.CodeValue = "T-D3000"
    inner.CodeMeaning = "Chest"
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5"
    item.AnatomicRegionSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.ReferencedImageSequence.is_undefined_length = True
    item.is_undefined_length_sequence_item = True
    item.AnatomicRegionSequence.is_undefined_length = True
    return ds


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize(
    "variant",
    ["plain", "sequences", "empty values", "latin-1 ascii text", "multi-valued"],
)
def test_plain_data_sets_are_read_as_pydicom_summarises_them(syntax: str, variant: str) -> None:
    ds = _slice(charset="ISO_IR 100" if variant == "latin-1 ascii text" else None)
    if variant == "sequences":
        _with_undefined_length_sequences(ds)
    elif variant == "empty values":
        for keyword in ("SeriesNumber", "SliceThickness", "StudyDescription", "PatientName"):
            setattr(ds, keyword, None)
        ds.ImageType = ""
        ds.AccessionNumber = ""
    elif variant == "multi-valued":
        ds.ConvolutionKernel = ["B30f", "3"]  # not a plain name: left to pydicom
    outcome = _assert_same_or_left(_encode(ds, syntax), syntax)
    if variant == "multi-valued":
        assert outcome is None
    else:
        assert isinstance(outcome, InstanceHeader)


@pytest.mark.parametrize(
    ("charset", "name"),
    [("ISO_IR 100", "Müller^Jürgen"), ("ISO_IR 13", "TANAKA^TARO"), ("ISO_IR 192", "Ødegård")],
)
def test_text_that_needs_its_character_set_is_left_to_pydicom(charset: str, name: str) -> None:
    encoded = _encode(_slice(charset=charset, patient_name=name))
    assert _plain_outcome(encoded, ExplicitVRLittleEndian) is None


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"Rows": 20_000}, StoreStatus.INVALID_IMAGE_ATTRIBUTES),
        ({"SOPInstanceUID": "1.2/../3"}, StoreStatus.UNSAFE_UID),
        ({"StudyInstanceUID": ""}, StoreStatus.MISSING_REQUIRED_UID),
        ({"PixelData": b"\0" * 100}, StoreStatus.PIXEL_DATA_LENGTH_MISMATCH),
    ],
)
def test_refusals_are_the_same(change: dict[str, object], status: StoreStatus) -> None:
    ds = _slice()
    for keyword, value in change.items():
        setattr(ds, keyword, value)
    assert _assert_same_or_left(_encode(ds), ExplicitVRLittleEndian) is status


@pytest.mark.parametrize(
    "cut",
    [
        lambda encoded: encoded[:-10],  # pixel data cut short
        lambda encoded: encoded + b"\x01\x02\x03",  # a partial element after the last
        lambda encoded: encoded[:200],  # cut inside the header
    ],
)
def test_truncated_data_sets_are_left_to_pydicom(cut: object) -> None:
    encoded = _encode(_with_undefined_length_sequences(_slice()))
    assert _plain_outcome(cut(encoded), ExplicitVRLittleEndian) is None  # type: ignore[operator]


def test_other_byte_orders_and_deflate_are_left_to_pydicom() -> None:
    encoded = _encode(_slice())
    for syntax in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
        assert _plain_outcome(encoded, syntax) is None


def test_every_shared_file_is_read_as_pydicom_reads_it(shared_data: Path) -> None:
    taken = 0
    for path in sorted((shared_data / "dicom").rglob("*")):
        if not path.is_file():
            continue
        try:
            meta, offset = split_dataset(path)
        except Exception:
            continue  # not a Part 10 file (licences, notes)
        syntax = str(meta.get("TransferSyntaxUID") or ExplicitVRLittleEndian)
        encoded = path.read_bytes()[offset:]
        taken += _assert_same_or_left(encoded, syntax) is not None
    assert taken >= 20  # most of them are plain enough


def _whole_not_wanted() -> bytes:
    raise AssertionError("the whole data set was asked for")


def test_the_start_of_a_data_set_is_enough_when_pixel_data_ends_it() -> None:
    encoded = _encode(_with_undefined_length_sequences(_slice(size=256)))
    expected = _pydicom_outcome(encoded, ExplicitVRLittleEndian)
    assert isinstance(expected, InstanceHeader)
    header = parse_data_set_start(
        memoryview(encoded)[:4096],
        size=len(encoded),
        whole=_whole_not_wanted,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        affected_sop_class_uid=expected.sop_class_uid,
        affected_sop_instance_uid=expected.sop_instance_uid,
    )
    assert header == expected


@pytest.mark.parametrize("extra", ["after the pixel data", "short", "long"])
def test_the_whole_data_set_is_read_when_its_start_is_not_enough(extra: str) -> None:
    ds = _slice(size=256)
    if extra == "after the pixel data":
        ds.DataSetTrailingPadding = b"\0" * 16
    encoded = _encode(ds)
    start = memoryview(encoded)[:4096]
    size = len(encoded) + {"after the pixel data": 0, "short": -2, "long": 2}[extra]
    expected = _pydicom_outcome(encoded, ExplicitVRLittleEndian)
    assert isinstance(expected, InstanceHeader)
    asked: list[bool] = []

    def whole() -> bytes:
        asked.append(True)
        return encoded

    header = parse_data_set_start(
        start,
        size=size,
        whole=whole,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        affected_sop_class_uid=expected.sop_class_uid,
        affected_sop_instance_uid=expected.sop_instance_uid,
    )
    assert asked and header == expected
