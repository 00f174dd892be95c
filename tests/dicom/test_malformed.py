"""Bad input over the network: a named failure status, nothing partial, the node keeps serving."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian

from dicom_node.send import Destination, send_files
from dicom_node.status import StoreStatus
from dicom_node.storage import INCOMING_DIR

from .conftest import ECHOSCU, RunningNode, run_tool  # type: ignore[import-not-found]

StartNode = Callable[..., RunningNode]


def _part10(path: Path, body: bytes, *, sop: str = "1.2.826.0.1.3680043.8.498.77") -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with path.open("wb") as handle:
        handle.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(handle, meta, enforce_standard=True)  # type: ignore[arg-type]
        handle.write(body)
    return path


def _assert_nothing_stored(node: RunningNode) -> None:
    assert node.instances() == {}
    assert list(node.storage.rglob("*.dcm")) == []
    assert [p for p in (node.storage / INCOMING_DIR).rglob("*.tmp")] == []
    echo = run_tool([ECHOSCU, "-aec", "RADSCRIBE", "127.0.0.1", str(node.port)])
    assert echo.returncode == 0


def test_shared_malformed_files_get_named_statuses(
    start_node: StartNode, shared_data: Path
) -> None:
    node = start_node()
    folder = shared_data / "dicom" / "malformed"
    destination = Destination("127.0.0.1", node.port, calling_aet="TESTSCU")
    results = {r.path.name: r for r in send_files([folder], destination)}
    expected = {
        "MR_truncated_pixel_data.dcm": StoreStatus.UNPARSEABLE_DATASET,
        "OT_oob_rows_cols_46341.dcm": StoreStatus.INVALID_IMAGE_ATTRIBUTES,
        "RTDOSE_badVR.dcm": StoreStatus.INVALID_IMAGE_ATTRIBUTES,
        # Its File Meta names another SOP Instance than its data set.
        "CT_bad_sequence_jpegLL.dcm": StoreStatus.SOP_INSTANCE_MISMATCH,
    }
    for name, status in expected.items():
        assert results[name].status == status, (name, results[name])
    # Files the client cannot send as Part 10 are refused before any association.
    assert "not a DICOM Part 10 file" in (results["CT_no_file_meta.dcm"].error or "")
    assert "TransferSyntaxUID" in (results["meta_missing_transfer_syntax.dcm"].error or "")
    _assert_nothing_stored(node)
    registry = node.component.node.services.metrics.registry  # type: ignore[union-attr]
    assert (
        registry.get_sample_value(
            "radscribe_dicom_store_failures_total", {"reason": "invalid_image_attributes"}
        )
        == 2
    )


def test_garbage_and_missing_uids_are_refused(start_node: StartNode, tmp_path: Path) -> None:
    node = start_node()
    destination = Destination("127.0.0.1", node.port, calling_aet="TESTSCU")
    garbage = _part10(
        tmp_path / "garbage.dcm", b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + b"\x01" * 64
    )
    no_uids = _part10(tmp_path / "no_uids.dcm", b"\x08\x00\x60\x00CS\x02\x00CT")
    results = send_files([garbage, no_uids], destination)
    assert [r.status for r in results] == [
        StoreStatus.UNPARSEABLE_DATASET,
        StoreStatus.MISSING_REQUIRED_UID,
    ]
    _assert_nothing_stored(node)
