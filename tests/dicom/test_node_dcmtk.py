"""The node against DCMTK's echoscu and storescu (real peers on 127.0.0.1)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AE
from pynetdicom.dsutils import split_dataset
from sqlalchemy import select

from app.core.domain import SeriesState, StudyStatus
from app.core.tables import AuditEvent
from dicom_node.send import Destination, send_files

from .conftest import (
    DCMTK_ENV,
    ECHOSCU,
    STORESCU,
    RunningNode,
    dataset_bytes,
    run_tool,
    wait_until,
    write_ct_series,
)

StartNode = Callable[..., RunningNode]


def _metric(node: RunningNode, name: str, labels: dict[str, str] | None = None) -> float:
    registry = node.component.node.services.metrics.registry
    value = registry.get_sample_value(name, labels or {})
    return float(value or 0.0)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_echo_and_a_series_stored_byte_for_byte(
    start_node: StartNode, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = None if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    node = start_node(database_url=url)
    echo = run_tool([ECHOSCU, "-aec", "RADSCRIBE", "127.0.0.1", str(node.port)])
    assert echo.returncode == 0, echo.stderr

    series = write_ct_series(tmp_path / "series", slices=10)
    sent = node.storescu("+sd", tmp_path / "series")
    assert sent.returncode == 0, sent.stderr

    rows = node.instances()
    assert len(rows) == 10
    for path in series.files:
        sop = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        stored = node.storage / rows[sop].storage_path
        # The data set after the File Meta is exactly what storescu sent.
        assert dataset_bytes(stored) == dataset_bytes(path)
        meta, _ = split_dataset(stored)
        assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert meta.SourceApplicationEntityTitle == "STORESCU"
        assert rows[sop].transfer_syntax_uid == ExplicitVRLittleEndian
    assert _metric(node, "radscribe_dicom_instances_received_total", {"outcome": "new"}) == 10

    events = node.wait_ready(series.series_uid)
    assert events[0].selected and events[0].content_version == 10
    time.sleep(node.settings.dicom_quiet_seconds * 3)
    assert len(node.ready_events(series.series_uid)) == 1  # exactly once
    assert node.series(series.series_uid).state is SeriesState.SELECTED
    assert node.study(series.study_uid).status is StudyStatus.READY


def test_unknown_calling_ae_titles_are_rejected_at_association(start_node: StartNode) -> None:
    node = start_node(dicom_allowed_aes="ECHOSCU@127.0.0.1,TESTSCU@192.0.2.7")
    ok = run_tool([ECHOSCU, "-aet", "ECHOSCU", "127.0.0.1", str(node.port)])
    assert ok.returncode == 0, ok.stderr
    for title in ("INTRUDER", "TESTSCU"):  # unknown title; known title from the wrong host
        refused = run_tool([ECHOSCU, "-aet", title, "127.0.0.1", str(node.port)])
        assert refused.returncode != 0
        assert "Association Rejected" in refused.stdout + refused.stderr
    assert (
        _metric(
            node,
            "radscribe_dicom_associations_rejected_total",
            {"reason": "calling_ae_not_allowed"},
        )
        == 2
    )
    # The node keeps serving.
    assert run_tool([ECHOSCU, "-aet", "ECHOSCU", "127.0.0.1", str(node.port)]).returncode == 0


def test_production_settings_reject_everyone_unless_listed(start_node: StartNode) -> None:
    node = start_node(env="production", secret_key="s" * 40, dicom_allowed_aes="")
    assert node.settings.dicom_effective_allowed_aes == ()
    refused = run_tool([ECHOSCU, "-aet", "ECHOSCU", "127.0.0.1", str(node.port)])
    assert refused.returncode != 0


def test_identical_resend_is_idempotent_and_a_corrected_instance_replaces(
    start_node: StartNode, tmp_path: Path
) -> None:
    node = start_node()
    series = write_ct_series(tmp_path / "series", slices=8)
    assert node.storescu("+sd", tmp_path / "series").returncode == 0
    node.wait_ready(series.series_uid)

    again = node.storescu("+sd", tmp_path / "series")
    assert again.returncode == 0
    assert len(node.instances()) == 8
    assert _metric(node, "radscribe_dicom_instances_received_total", {"outcome": "identical"}) == 8
    time.sleep(node.settings.dicom_quiet_seconds * 3)
    assert len(node.ready_events(series.series_uid)) == 1  # nothing changed, nothing fires

    corrected = dcmread(series.files[3])
    old_path = node.storage / node.instances()[corrected.SOPInstanceUID].storage_path
    corrected.SeriesDescription = "AXIAL 1MM CORRECTED"
    corrected_path = tmp_path / "corrected.dcm"
    corrected.save_as(corrected_path, enforce_file_format=True)
    assert node.storescu(corrected_path).returncode == 0

    row = node.instances()[corrected.SOPInstanceUID]
    assert len(node.instances()) == 8
    assert dataset_bytes(node.storage / row.storage_path) == dataset_bytes(corrected_path)
    assert not old_path.exists()
    with node.session_factory() as session:
        actions = session.scalars(select(AuditEvent.action)).all()
    assert actions == ["dicom.instance_replaced"]
    events = node.wait_ready(series.series_uid, count=2)
    assert [e.content_version for e in events] == [8, 9]


def test_a_late_instance_reopens_its_series(start_node: StartNode, tmp_path: Path) -> None:
    node = start_node()
    series = write_ct_series(tmp_path / "series", slices=9, seed=1)
    first, late = series.files[:8], series.files[8]
    assert node.storescu(*first).returncode == 0
    node.wait_ready(series.series_uid)
    assert node.series(series.series_uid).state is SeriesState.SELECTED
    assert node.storescu(late).returncode == 0
    events = node.wait_ready(series.series_uid, count=2)
    assert [e.content_version for e in events] == [8, 9]
    assert node.series(series.series_uid).instance_count == 9


def test_no_ready_event_while_the_association_is_open(
    start_node: StartNode, tmp_path: Path
) -> None:
    node = start_node()
    series = write_ct_series(tmp_path / "series", slices=8)
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(dcmread(series.files[0]).SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="RADSCRIBE")
    assert assoc.is_established
    try:
        for path in series.files:
            assert assoc.send_c_store(dcmread(path)).Status == 0
        time.sleep(node.settings.dicom_quiet_seconds * 4)
        assert node.ready_events(series.series_uid) == []
    finally:
        assoc.release()
    node.wait_ready(series.series_uid)


def test_below_the_free_disk_floor_instances_are_refused(
    start_node: StartNode, tmp_path: Path
) -> None:
    node = start_node(dicom_min_free_bytes=2**62)
    write_ct_series(tmp_path / "series", slices=2)
    refused = node.storescu("+sd", tmp_path / "series", extra=["-v"])
    assert refused.returncode != 0
    assert "Refused: OutOfResources" in refused.stdout + refused.stderr
    assert node.instances() == {}
    assert list(node.storage.rglob("*.dcm")) == []
    assert (
        _metric(node, "radscribe_dicom_store_failures_total", {"reason": "out_of_resources"}) == 1
    )


# File, storescu option proposing its transfer syntax.
COMPRESSED = [
    ("CTImage_JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm", "-xs"),
    ("CTImage_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm", "-xt"),
    ("CTImage_JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm", "-xu"),
    ("CTImage_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm", "-xv"),
    ("CTImage_JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91.dcm", "-xw"),
    ("CTImage_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm", "-xr"),
    ("CTImage_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm", "-xd"),
    ("CTImage_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm", "-xb"),
    ("CTImage_LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm", "-xi"),
]


def test_compressed_files_sent_by_storescu_keep_their_syntax(
    start_node: StartNode, shared_data: Path
) -> None:
    node = start_node()
    folder = shared_data / "dicom" / "ct_transfer_syntaxes"
    for name, option in COMPRESSED:
        path = folder / name
        sent = node.storescu(path, extra=[option])
        assert sent.returncode == 0, (name, sent.stdout, sent.stderr)
        meta, _ = split_dataset(path)
        row = node.instances()[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)]
        assert row.transfer_syntax_uid == meta.TransferSyntaxUID, name
        stored = dcmread(node.storage / row.storage_path)
        # storescu pads odd-length fragments of some of these files, so compare what
        # the pixels decode to (the node itself never decodes them).
        assert np.array_equal(stored.pixel_array, dcmread(path).pixel_array), name


def test_compressed_files_sent_as_they_are_are_stored_byte_for_byte(
    start_node: StartNode, shared_data: Path
) -> None:
    node = start_node()
    folder = shared_data / "dicom" / "ct_transfer_syntaxes"
    names = [
        *(name for name, _ in COMPRESSED),
        "CTImage_JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57.dcm",
    ]
    destination = Destination("127.0.0.1", node.port, calling_aet="TESTSCU")
    for name in names:
        [result] = send_files([folder / name], destination)
        assert result.ok, (name, result)
        row = node.instances()[str(result.sop_instance_uid)]
        assert dataset_bytes(node.storage / row.storage_path) == dataset_bytes(folder / name)


@pytest.mark.parametrize(
    ("name", "option"),
    [
        ("CTImage_JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm", "-xy"),
        ("CTImage_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm", "-xx"),
        ("CTImage_JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm", "-x="),
        ("CTImage_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm", "-x="),
    ],
)
def test_undecodable_syntaxes_are_refused_and_the_node_keeps_serving(
    start_node: StartNode, shared_data: Path, name: str, option: str
) -> None:
    node = start_node()
    path = shared_data / "dicom" / "ct_transfer_syntaxes" / name
    refused = node.storescu(path, extra=["-v", option])
    assert refused.returncode != 0
    assert node.instances() == {}
    assert run_tool([ECHOSCU, "-aec", "RADSCRIBE", "127.0.0.1", str(node.port)]).returncode == 0


def test_negotiation_prefers_lossless_and_lets_the_sender_fall_back(
    start_node: StartNode, tmp_path: Path
) -> None:
    node = start_node()
    series = write_ct_series(tmp_path / "series", slices=1)
    ds = dcmread(series.files[0])
    ae = AE(ae_title="TESTSCU")
    # One context offering lossy JPEG first with an uncompressed fallback, one offering
    # JPEG baseline only, and an SR with a private syntax (accepted as offered).
    ae.add_requested_context(ds.SOPClassUID, [JPEGBaseline8Bit, ExplicitVRLittleEndian])
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4", [JPEGBaseline8Bit])
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.88.33", ["1.2.826.0.1.3680043.99.1"])
    assoc = ae.associate("127.0.0.1", node.port, ae_title="RADSCRIBE")
    assert assoc.is_established
    try:
        accepted = {
            str(cx.abstract_syntax): cx.transfer_syntax[0] for cx in assoc.accepted_contexts
        }
        assert accepted[ds.SOPClassUID] == ExplicitVRLittleEndian
        assert accepted["1.2.840.10008.5.1.4.1.1.88.33"] == "1.2.826.0.1.3680043.99.1"
        assert [cx.abstract_syntax for cx in assoc.rejected_contexts] == [
            "1.2.840.10008.5.1.4.1.1.4"
        ]
        assert assoc.send_c_store(ds).Status == 0
    finally:
        assoc.release()


def test_node_metrics_count_associations(start_node: StartNode) -> None:
    node = start_node()
    assert run_tool([ECHOSCU, "-aec", "RADSCRIBE", "127.0.0.1", str(node.port)]).returncode == 0
    wait_until(lambda: _metric(node, "radscribe_dicom_associations_accepted_total") == 1)
    wait_until(lambda: _metric(node, "radscribe_dicom_associations_active") == 0)


def test_non_ct_objects_are_stored_and_listed_but_not_drafted(
    start_node: StartNode, shared_data: Path
) -> None:
    node = start_node()
    mr = shared_data / "dicom" / "non_ct" / "mr_series_dcm4che_16slices"
    sr = shared_data / "dicom" / "non_ct" / "SR_basic_text_no_pixel_data.dcm"
    enhanced = shared_data / "dicom" / "ct_multiframe" / "eCT_Supplemental_enhancedCT_2frames.dcm"
    for paths in ([mr], [sr], [enhanced]):
        sent = node.storescu("+sd", *paths)
        assert sent.returncode == 0, sent.stderr
    rows = node.instances()
    assert len(rows) == 16 + 1 + 1
    expected = {
        mr: "not CT (modality MR)",
        sr: "not CT (modality SR)",
        enhanced: "enhanced multi-frame CT is not drafted",
    }
    for path, reason in expected.items():
        first = path if path.is_file() else sorted(path.iterdir())[0]
        series_uid = str(dcmread(first, stop_before_pixels=True).SeriesInstanceUID)
        [event] = node.wait_ready(series_uid)
        assert not event.selected
        series = node.series(series_uid)
        assert series.state is SeriesState.SKIPPED
        assert reason in (series.skip_reason or ""), series.skip_reason


def test_association_and_pdu_limits(start_node: StartNode) -> None:
    node = start_node(dicom_max_associations=1, dicom_max_pdu=65536)
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    first = ae.associate("127.0.0.1", node.port, ae_title="RADSCRIBE")
    assert first.is_established
    try:
        assert first.acceptor.maximum_length == 65536
        refused = run_tool([ECHOSCU, "-aec", "RADSCRIBE", "127.0.0.1", str(node.port)])
        assert refused.returncode != 0
        assert "Association Rejected" in refused.stdout + refused.stderr
    finally:
        first.release()
    assert (
        _metric(
            node, "radscribe_dicom_associations_rejected_total", {"reason": "association_limit"}
        )
        == 1
    )
    wait_until(
        lambda: (
            run_tool([ECHOSCU, "-aec", "RADSCRIBE", "127.0.0.1", str(node.port)]).returncode == 0
        )
    )


def test_concurrent_senders_in_small_pdus_are_stored_byte_for_byte(
    start_node: StartNode, tmp_path: Path
) -> None:
    """Four storescu at once, each data set in 4 KiB PDUs (read back to back as they
    queue up), the header spread over many of them; one series has private elements
    after its pixel data, so its header is read from the whole data set."""
    node = start_node()
    plain = write_ct_series(tmp_path / "plain", slices=12, size=256)
    padded = write_ct_series(tmp_path / "padded", slices=4, size=256)
    for path in padded.files:
        ds = dcmread(path)
        ds.add_new(0x7FE10010, "LO", "RADSCRIBE TEST")
        ds.add_new(0x7FE11001, "OB", b"\1" * 8)
        ds.save_as(path, enforce_file_format=True)
    files = plain.files + padded.files
    command = [STORESCU, "-aet", "STORESCU", "-aec", "RADSCRIBE", "--max-send-pdu", "4096"]
    senders = [
        subprocess.Popen(
            [*command, "127.0.0.1", str(node.port), *map(str, files[part::4])],
            env=DCMTK_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for part in range(4)
    ]
    for sender in senders:
        _out, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err
    rows = node.instances()
    assert len(rows) == len(files)
    for path in files:
        sop = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        stored = node.storage / rows[sop].storage_path
        assert dataset_bytes(stored) == dataset_bytes(path), path
    assert {node.series(s.series_uid).instance_count for s in (plain, padded)} == {12, 4}
