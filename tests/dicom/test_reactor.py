"""The node's pynetdicom acceptor (dicom_node.reactor): hand-encoded responses, PDV
parsing, and what an association that ends mid-transfer leaves behind."""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path
from typing import Any, cast

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from dicom_node.reactor import pdv_items, store_response_command

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


def test_an_association_aborted_mid_data_set_leaves_nothing_behind(
    start_node: Any, tmp_path: Path
) -> None:
    node = start_node()
    series = write_ct_series(tmp_path / "series", slices=2, size=128)
    encoded = dataset_bytes(series.files[0])
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.maximum_pdu_size = MAX_PDU
    assoc = ae.associate("127.0.0.1", node.port, ae_title="RADSCRIBE")
    assert assoc.is_established
    try:
        context_id = cast(int, assoc.accepted_contexts[0].context_id)
        request = C_STORE()
        request.MessageID = 1
        request.AffectedSOPClassUID = CTImageStorage
        request.AffectedSOPInstanceUID = series.files[0].stem + ".1"
        request.Priority = 2
        request.DataSet = io.BytesIO(encoded)
        message = C_STORE_RQ()
        message.primitive_to_message(request)
        pdatas: list[P_DATA] = list(message.encode_msg(context_id, MAX_PDU))
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
