"""Orthanc as the PACS: it pushes a study to the node through its REST API."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from tests.conftest import free_port

from .conftest import (  # type: ignore[import-not-found]
    DCMTK_ENV,
    ORTHANC,
    RunningNode,
    dataset_bytes,
    wait_until,
    write_ct_series,
)

StartNode = Callable[..., RunningNode]


class Orthanc:
    def __init__(self, root: Path, node_port: int) -> None:
        self.dicom_port = free_port()
        self.http_port = free_port()
        storage = root / "orthanc-storage"
        storage.mkdir(parents=True)
        config = {
            "Name": "RadscribeTestPACS",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            "StableAge": 60,
            "DicomScuTimeout": 30,
            "DicomModalities": {"radscribe": ["RADSCRIBE", "127.0.0.1", node_port]},
        }
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps(config))
        self.log = (root / "orthanc.log").open("w")
        self.process = subprocess.Popen(
            [ORTHANC, str(self.config)], env=DCMTK_ENV, stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_until(self._up, timeout=30)

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"Orthanc exited with {self.process.returncode}")
        try:
            self.get("/system")
        except OSError:
            return False
        return True

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: bytes) -> Any:
        return self._request("POST", path, body)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[[int], Orthanc]]:
    started: list[Orthanc] = []

    def _start(node_port: int) -> Orthanc:
        server = Orthanc(tmp_path / f"orthanc{len(started)}", node_port)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


def test_orthanc_pushes_a_study_to_the_node(
    start_node: StartNode, orthanc_factory: Callable[[int], Orthanc], tmp_path: Path
) -> None:
    node = start_node()
    orthanc = orthanc_factory(node.port)
    axial = write_ct_series(tmp_path / "axial", slices=12, series_number=2)
    scout = write_ct_series(
        tmp_path / "scout",
        slices=1,
        study_uid=axial.study_uid,
        series_number=1,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        series_description="SCOUT",
    )
    files = axial.files + scout.files
    for path in files:
        orthanc.post("/instances", path.read_bytes())
    [study_id] = orthanc.get("/studies")

    result = orthanc.post("/modalities/radscribe/store", study_id.encode())
    assert result["FailedInstancesCount"] == 0
    assert result["InstancesCount"] == len(files)

    rows = node.instances()
    assert len(rows) == len(files)
    for path in files:
        row = rows[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)]
        assert row.calling_ae == "ORTHANC"
        assert dataset_bytes(node.storage / row.storage_path) == dataset_bytes(path)
    [axial_event] = node.wait_ready(axial.series_uid)
    [scout_event] = node.wait_ready(scout.series_uid)
    assert axial_event.selected
    assert not scout_event.selected
    assert node.series(scout.series_uid).skip_reason is not None
    assert "localizer" in (node.series(scout.series_uid).skip_reason or "")
