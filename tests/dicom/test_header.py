"""Header parsing and checks on the receive path: statuses for bad input, character sets."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.dsutils import split_dataset

from dicom_node.header import (
    RADSCRIBE_IMPLEMENTATION_UID,
    RADSCRIBE_IMPLEMENTATION_VERSION,
    InstanceHeader,
    RejectedInstance,
    encode_file_meta,
    parse_instance,
    read_header_file,
)
from dicom_node.status import StoreStatus

from .conftest import dataset_bytes, make_ct_slice  # type: ignore[import-not-found]


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def _parse(ds: Dataset, *, sop_class: str | None = None, sop: str | None = None) -> InstanceHeader:
    encoded = _encode(ds)
    sop_class = sop_class or str(ds.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2"))
    sop = sop or str(ds.get("SOPInstanceUID", "1.2.3"))
    meta = encode_file_meta(
        sop_class_uid=sop_class,
        sop_instance_uid=sop,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        source_ae="TEST",
    )
    return parse_instance(
        meta + encoded,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        affected_sop_class_uid=sop_class,
        affected_sop_instance_uid=sop,
    )


def _slice(**options: object) -> Dataset:
    ds = make_ct_slice(
        study_uid="1.2.826.0.1.3680043.8.498.1",
        series_uid="1.2.826.0.1.3680043.8.498.2",
        index=3,
        **options,  # type: ignore[arg-type]
    )
    del ds.file_meta
    return ds


def test_a_ct_slice_is_summarised_without_decoding_pixels() -> None:
    header = _parse(_slice(thickness=2.0))
    assert header.modality == "CT"
    assert header.rows == header.columns == 32
    assert header.image_type == ("ORIGINAL", "PRIMARY", "AXIAL")
    assert header.slice_thickness == 2.0
    assert header.slice_position == pytest.approx(6.0)
    assert header.has_pixel_data


def test_tilted_slices_are_positioned_along_the_tilted_normal() -> None:
    first = _parse(_slice(thickness=2.5, tilt_degrees=20.0))
    ds = _slice(thickness=2.5, tilt_degrees=20.0)
    ds.ImagePositionPatient = make_ct_slice(
        study_uid="1.2", series_uid="1.3", index=7, thickness=2.5, tilt_degrees=20.0
    ).ImagePositionPatient
    later = _parse(ds)
    assert first.slice_position is not None and later.slice_position is not None
    # Four slices further along the tilted normal, although z moved only cos(20°) as far.
    assert later.slice_position - first.slice_position == pytest.approx(4 * 2.5)
    assert first.gantry_tilt == pytest.approx(20.0)


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID"])
def test_a_missing_uid_is_refused_by_name(keyword: str) -> None:
    ds = _slice()
    delattr(ds, keyword)
    with pytest.raises(RejectedInstance) as caught:
        _parse(ds)
    assert caught.value.status is StoreStatus.MISSING_REQUIRED_UID
    assert keyword in caught.value.detail


def test_a_uid_that_could_name_a_path_is_refused() -> None:
    ds = _slice()
    ds.SeriesInstanceUID = "../../etc"
    with pytest.raises(RejectedInstance) as caught:
        _parse(ds)
    assert caught.value.status is StoreStatus.UNSAFE_UID


def test_the_data_set_must_match_the_request() -> None:
    ds = _slice()
    with pytest.raises(RejectedInstance) as caught:
        _parse(ds, sop="1.2.3.4")
    assert caught.value.status is StoreStatus.SOP_INSTANCE_MISMATCH
    with pytest.raises(RejectedInstance) as caught:
        _parse(ds, sop_class="1.2.840.10008.5.1.4.1.1.4")
    assert caught.value.status is StoreStatus.SOP_CLASS_MISMATCH


def test_absurd_dimensions_and_short_pixel_data_are_refused() -> None:
    ds = _slice()
    ds.Rows = ds.Columns = 46341
    with pytest.raises(RejectedInstance) as caught:
        _parse(ds)
    assert caught.value.status is StoreStatus.INVALID_IMAGE_ATTRIBUTES
    ds = _slice()
    ds.PixelData = ds.PixelData[:-64]
    with pytest.raises(RejectedInstance) as caught:
        _parse(ds)
    assert caught.value.status is StoreStatus.PIXEL_DATA_LENGTH_MISMATCH


@pytest.mark.parametrize(
    "body",
    [
        b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + b"\x01" * 30,  # broken sequence
        b"\xfe\xff\x00\xe0" + b"\x00" * 10,  # an item where an element should be
        b"\x08\x00\x18\x00UI\x40\x00" + b"1.2",  # a value cut short
    ],
)
def test_garbage_is_unparseable(body: bytes) -> None:
    meta = encode_file_meta(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid="1.2.3",
        transfer_syntax_uid=ExplicitVRLittleEndian,
        source_ae="",
    )
    with pytest.raises(RejectedInstance) as caught:
        parse_instance(
            meta + body,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            affected_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            affected_sop_instance_uid="1.2.3",
        )
    assert caught.value.status is StoreStatus.UNPARSEABLE_DATASET


@pytest.mark.parametrize(
    ("charset", "name", "description"),
    [
        ("ISO_IR 100", "Müller^Jürgen", "Thorax nativ"),
        ("ISO_IR 192", "Ødegård^Åse", "Поперечный"),
        ("ISO 2022 IR 87", "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎", "胸部"),
        ("ISO_IR 144", "Иванов^Иван", "Грудная клетка"),
    ],
)
def test_text_is_decoded_with_the_specific_character_set(
    charset: str, name: str, description: str
) -> None:
    ds = _slice(charset=charset, patient_name=name)
    ds.StudyDescription = description
    if charset == "ISO 2022 IR 87":
        ds.SpecificCharacterSet = ["ISO 2022 IR 13", "ISO 2022 IR 87"]
    encoded = _encode(ds)
    assert name.encode("utf-8") not in encoded or charset == "ISO_IR 192"
    header = _parse(ds)
    assert header.patient_name == name
    assert header.study_description == description


@pytest.mark.parametrize("title", ["STORESCU", "ODD", ""])
def test_file_meta_matches_what_pydicom_writes(title: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.123"
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    meta.ImplementationClassUID = RADSCRIBE_IMPLEMENTATION_UID
    meta.ImplementationVersionName = RADSCRIBE_IMPLEMENTATION_VERSION
    if title:
        meta.SourceApplicationEntityTitle = title
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    ours = encode_file_meta(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid="1.2.826.0.1.3680043.8.498.123",
        transfer_syntax_uid="1.2.840.10008.1.2.4.90",
        source_ae=title,
    )
    assert ours == b"\x00" * 128 + b"DICM" + buffer.getvalue()


def test_a_stored_file_header_reads_back(tmp_path: Path) -> None:
    ds = make_ct_slice(study_uid="1.2.3", series_uid="1.2.3.4", index=0)
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    header = read_header_file(path)
    assert header.sop_instance_uid == ds.SOPInstanceUID
    assert header.transfer_syntax_uid == ExplicitVRLittleEndian
    assert dataset_bytes(path)


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("OT_oob_rows_cols_46341.dcm", StoreStatus.INVALID_IMAGE_ATTRIBUTES),
        ("MR_truncated_pixel_data.dcm", StoreStatus.UNPARSEABLE_DATASET),
        ("RTDOSE_badVR.dcm", StoreStatus.INVALID_IMAGE_ATTRIBUTES),
        ("meta_missing_transfer_syntax.dcm", StoreStatus.MISSING_REQUIRED_UID),
        ("CT_bad_sequence_jpegLL.dcm", None),
    ],
)
def test_real_malformed_files_get_a_named_status(
    shared_data: Path, name: str, status: StoreStatus | None
) -> None:
    path = shared_data / "dicom" / "malformed" / name
    raw = path.read_bytes()
    meta, offset = split_dataset(path)
    syntax = str(meta.get("TransferSyntaxUID") or ExplicitVRLittleEndian)
    sop_class = str(meta.get("MediaStorageSOPClassUID") or "1.2.840.10008.5.1.4.1.1.7")
    sop = str(meta.get("MediaStorageSOPInstanceUID") or "1.2.3")
    if status is None:
        # This file's File Meta names another SOP Instance UID than its data set (an
        # anonymiser's slip); storescu sends the data set's own UIDs, so do the same.
        dataset = dcmread(path, stop_before_pixels=True)
        sop_class, sop = str(dataset.SOPClassUID), str(dataset.SOPInstanceUID)
    part10 = (
        encode_file_meta(
            sop_class_uid=sop_class, sop_instance_uid=sop, transfer_syntax_uid=syntax, source_ae=""
        )
        + raw[offset:]
    )
    if status is None:
        header = parse_instance(
            part10,
            transfer_syntax_uid=syntax,
            affected_sop_class_uid=sop_class,
            affected_sop_instance_uid=sop,
        )
        assert header.modality == "CT"
        return
    with pytest.raises(RejectedInstance) as caught:
        parse_instance(
            part10,
            transfer_syntax_uid=syntax,
            affected_sop_class_uid=sop_class,
            affected_sop_instance_uid=sop,
        )
    assert caught.value.status is status
