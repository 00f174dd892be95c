"""The node's pynetdicom acceptor (dicom_node.reactor): hand-encoded responses, PDV
parsing, and what an association that ends mid-transfer leaves behind."""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path
from typing import Any, cast

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE, Association, _config
from pynetdicom._validators import validate_ui
from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from dicom_node.reactor import (
    StoreCommand,
    _uid_is_valid,
    _validate_ui,
    decode_store_command,
    pdv_items,
    store_response_command,
)

from .conftest import dataset_bytes, wait_until, write_ct_series

MAX_PDU = 16_384


def _pynetdicom_encoded(primitive: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    (pdata,) = list(message.encode_msg(1, MAX_PDU))
    _context_id, pdv = pdata.presentation_data_value_list[0]
    return pdv[1:]  # after the message control header


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xA900, 0xC211, 0xB007])
@pytest.mark.parametrize("sop_instance", ["1.2.3.4", "1.2.826.0.1.3680043.8.498.123456789"])
def test_store_responses_are_encoded_as_pynetdicom_encodes_them(
    status: int, sop_instance: str
) -> None:
    response = C_STORE()
    response.MessageID = 7
    response.MessageIDBeingRespondedTo = 7
    response.AffectedSOPClassUID = CTImageStorage
    response.AffectedSOPInstanceUID = sop_instance
    response.Status = status
    assert store_response_command(response) == _pynetdicom_encoded(response)


def test_responses_with_more_than_a_status_are_left_to_pynetdicom() -> None:
    response = C_STORE()
    response.MessageIDBeingRespondedTo = 1
    response.AffectedSOPClassUID = CTImageStorage
    response.AffectedSOPInstanceUID = "1.2.3"
    response.Status = 0xC000
    response.ErrorComment = "cannot understand"  # type: ignore[assignment]
    assert store_response_command(response) is None
    request = C_STORE()  # a request, not a response
    request.MessageID = 1
    assert store_response_command(request) is None


def _request_command(**fields: Any) -> bytes:
    """A C-STORE request's command set as pynetdicom encodes it."""
    request = C_STORE()
    request.MessageID = fields.get("message_id", 7)
    request.AffectedSOPClassUID = fields.get("sop_class", CTImageStorage)
    request.AffectedSOPInstanceUID = fields.get("sop_instance", "1.2.3.4")
    request.Priority = fields.get("priority", 2)
    if "originator" in fields:
        request.MoveOriginatorApplicationEntityTitle = fields["originator"]
        request.MoveOriginatorMessageID = 3
    request.DataSet = io.BytesIO(b"\x08\x00\x18\x00\x00\x00\x00\x00")
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    pdata = next(iter(message.encode_msg(1, MAX_PDU)))
    _context_id, pdv = pdata.presentation_data_value_list[0]
    assert pdv[0] == 0x03  # the whole command set, last fragment
    return bytes(pdv[1:])


@pytest.mark.parametrize("priority", [0, 1, 2])
@pytest.mark.parametrize("sop_instance", ["1.2.3.4", "1.2.826.0.1.3680043.8.498.12345678901"])
def test_store_requests_are_decoded_as_pynetdicom_decodes_them(
    priority: int, sop_instance: str
) -> None:
    encoded = _request_command(message_id=513, sop_instance=sop_instance, priority=priority)
    decoded = decode_store_command(memoryview(encoded))
    assert decoded == StoreCommand(
        message_id=513,
        sop_class_uid=CTImageStorage,
        sop_instance_uid=sop_instance,
        priority=priority,
    )
    reference = dcmread(io.BytesIO(encoded), force=True)  # Implicit VR Little Endian
    assert decoded.sop_instance_uid == reference.AffectedSOPInstanceUID
    assert decoded.message_id == reference.MessageID


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0, element, len(value)) + value


def _replaced(encoded: bytes, element: int, value: bytes) -> bytes:
    """``encoded`` (a command set) with one element's value replaced."""
    out, offset = b"", 0
    while offset < len(encoded):
        _group, tag, length = struct.unpack_from("<HHI", encoded, offset)
        current = encoded[offset + 8 : offset + 8 + length]
        out += _element(tag, value if tag == element else current)
        offset += 8 + length
    assert out != encoded
    return out


@pytest.mark.parametrize(
    "encoded",
    [
        _request_command(originator="MOVESCU"),  # a C-MOVE originator: pynetdicom's
        _request_command()[:-3],  # cut short
        _request_command() + _element(0x0900, b"\x00\x00"),  # an element of responses
        _replaced(_request_command(), 0x0100, b"\x30\x00"),  # a C-ECHO request
        _replaced(_request_command(), 0x0800, b"\x01\x01"),  # no data set
        _replaced(_request_command(), 0x0700, b"\x03\x00"),  # no such priority
        _request_command(sop_instance="1.2.03.4"),  # not a conformant UID
        _replaced(_request_command(), 0x1000, b"1.2.3.x\0"),  # not a UID at all
        _replaced(_request_command(), 0x1000, b"1.2\\3.4\0"),  # two values
        _element(0x0100, b"\x01\x00"),  # required elements missing
    ],
)
def test_unusual_store_commands_are_left_to_pynetdicom(encoded: bytes) -> None:
    assert decode_store_command(encoded) is None


def _associate(port: int, *, max_pdu: int | None = None) -> Association:
    """A pynetdicom SCU's association to the node, for CT images in Explicit VR LE."""
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    if max_pdu is not None:
        ae.maximum_pdu_size = max_pdu
    assoc = ae.associate("127.0.0.1", port, ae_title="RADSCRIBE")
    assert assoc.is_established
    return assoc


def test_a_store_with_a_move_originator_goes_through_pynetdicom(
    start_node: Any, tmp_path: Path
) -> None:
    """A request the hand decoder leaves alone is served as pynetdicom decodes it."""
    node = start_node()
    series = write_ct_series(tmp_path / "series", slices=2, size=64)
    assoc = _associate(node.port)
    try:
        for path in series.files:
            status = assoc.send_c_store(dcmread(path), originator_aet="MOVESCU", originator_id=9)
            assert status.Status == 0x0000
    finally:
        assoc.release()
    stored = node.instances()
    assert len(stored) == 2
    for path in series.files:
        row = stored[dcmread(path).SOPInstanceUID]
        assert dataset_bytes(node.storage / row.storage_path) == dataset_bytes(path)


@pytest.mark.parametrize("enforce", [False, True])
@pytest.mark.parametrize(
    "value", ["1.2.840.10008.1.2.1", "1.2.03.4", "", "1." + "2" * 70, "1.2.x", b"1.2.3", None]
)
def test_remembered_uid_checks_answer_as_pynetdicom(
    value: object, enforce: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_config, "ENFORCE_UID_CONFORMANCE", enforce)
    for _ in range(2):  # the second answer comes from the cache
        assert _validate_ui(value) == validate_ui(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("1.2.840.10008.1.2.1", True),
        ("1.2.03.4", False),  # a component with a leading zero
        ("", False),
        ("1." + "2" * 70, False),  # over 64 characters
        ("1.2.x", False),
        ("1.2.3.", False),
    ],
)
def test_remembered_uid_validity_answers_as_the_standard(value: str, valid: bool) -> None:
    from pydicom.uid import UID

    for _ in range(2):  # the second answer comes from the cache
        assert _uid_is_valid(UID(value)) is valid


def _item(context_id: int, data: bytes) -> bytes:
    return struct.pack(">LB", len(data) + 1, context_id) + data


def test_pdv_items_of_a_p_data_body() -> None:
    body = bytearray(_item(1, b"\x01command") + _item(3, b"\x02data"))
    assert [(cx, bytes(data)) for cx, data in pdv_items(body) or []] == [
        (1, b"\x01command"),
        (3, b"\x02data"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",  # no item at all
        b"\x00\x00\x00",  # a length cut short
        b"\x00\x00\x00\x01\x01",  # an item without its control header
        _item(1, b"\x02data")[:-1],  # an item longer than the body
        _item(1, b"\x02data") + b"\x00",  # trailing bytes that are not an item
    ],
)
def test_malformed_pdv_items_are_left_to_pynetdicom(body: bytes) -> None:
    assert pdv_items(bytearray(body)) is None


def _temporary_files(storage: Path) -> list[Path]:
    incoming = storage / ".incoming"
    return [p for p in incoming.rglob("*") if p.is_file() and p.name != ".lock"]


def _store_pdus(context_id: int, instance_uid: str, encoded: bytes) -> list[P_DATA]:
    """A C-STORE request for a CT image as the P-DATA PDUs an SCU sends: command, then data."""
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = CTImageStorage
    request.AffectedSOPInstanceUID = instance_uid
    request.Priority = 2
    request.DataSet = io.BytesIO(encoded)
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    return list(message.encode_msg(context_id, MAX_PDU))


def test_an_association_aborted_mid_data_set_leaves_nothing_behind(
    start_node: Any, tmp_path: Path
) -> None:
    node = start_node()
    series = write_ct_series(tmp_path / "series", slices=2, size=128)
    encoded = dataset_bytes(series.files[0])
    assoc = _associate(node.port, max_pdu=MAX_PDU)
    try:
        context_id = cast(int, assoc.accepted_contexts[0].context_id)
        pdatas = _store_pdus(context_id, series.files[0].stem + ".1", encoded)
        assert len(pdatas) > 3  # a command and several data fragments
        for pdata in pdatas[:-1]:  # everything but the last fragment
            assoc.dul.send_pdu(pdata)
        # The node writes the fragments to a temporary file as they arrive.
        wait_until(lambda: _temporary_files(node.storage))
        time.sleep(0.1)
    finally:
        assoc.abort()
    wait_until(lambda: not _temporary_files(node.storage))
    assert node.instances() == {}
    # The node keeps serving: the whole series goes through afterwards.
    result = node.storescu(*series.files)
    assert result.returncode == 0, result.stderr
    assert len(node.instances()) == 2


def test_a_command_inside_a_data_set_aborts_and_leaves_nothing_behind(
    start_node: Any, tmp_path: Path
) -> None:
    node = start_node()
    series = write_ct_series(tmp_path / "series", slices=1, size=128)
    assoc = _associate(node.port, max_pdu=MAX_PDU)
    try:
        context_id = cast(int, assoc.accepted_contexts[0].context_id)
        instance_uid = dcmread(series.files[0]).SOPInstanceUID
        command, first_data, *_rest = _store_pdus(
            context_id, instance_uid, dataset_bytes(series.files[0])
        )
        assoc.dul.send_pdu(command)
        assoc.dul.send_pdu(first_data)
        wait_until(lambda: _temporary_files(node.storage))
        assoc.dul.send_pdu(command)  # a new command before the data set ended
        wait_until(lambda: assoc.is_aborted)
    finally:
        if assoc.is_established:
            assoc.abort()
    wait_until(lambda: not _temporary_files(node.storage))
    assert node.instances() == {}
