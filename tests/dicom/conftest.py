"""Fixtures for the DICOM node: generated CT series, a running node, DCMTK helpers.

Series are made with pydicom here (small: a few dozen 32x32 slices); shared
real files come only through the ``shared_data`` fixture.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom.dsutils import split_dataset
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core import migrate
from app.core.db import make_engine, make_session_factory
from app.core.settings import Settings, load_settings
from app.core.tables import Instance, Series, Study
from app.services.dicom_runtime import DicomComponent, build_node
from dicom_node.series import SeriesReadyEvent

STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"
ORTHANC = "/usr/sbin/Orthanc"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
TEST_AES = ("STORESCU", "ECHOSCU", "RADSCRIBE_SCU", "ORTHANC", "TESTSCU")
WAIT_SECONDS = 20.0
POLL_SECONDS = 0.02


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its File Meta Information."""
    _meta, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(POLL_SECONDS)


def run_tool(args: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), env=DCMTK_ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class CtSeries:
    study_uid: str
    series_uid: str
    files: list[Path]


def make_ct_slice(
    *,
    study_uid: str,
    series_uid: str,
    index: int,
    size: int = 32,
    thickness: float = 1.0,
    spacing: float | None = None,
    tilt_degrees: float = 0.0,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    series_number: int = 2,
    series_description: str = "AXIAL 1MM",
    kernel: str = "STANDARD",
    instance_number: int | None = None,
    patient_name: str = "TEST^PATIENT",
    charset: str | None = None,
    sop_class: str = CTImageStorage,
    modality: str = "CT",
    sop_uid: str | None = None,
    seed: int = 0,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    sop = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid + ".1"
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = "RS-TEST-1"
    ds.AccessionNumber = "ACC0001"
    ds.StudyDate = "20240102"
    ds.StudyDescription = "CT CHEST"
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.ImageType = list(image_type)
    ds.ConvolutionKernel = kernel
    ds.InstanceNumber = instance_number if instance_number is not None else index + 1
    ds.SliceThickness = thickness
    step = spacing if spacing is not None else thickness
    tilt = math.radians(tilt_degrees)
    # Columns run along y tilted about x; the slice normal tilts with them.
    column = (0.0, math.cos(tilt), -math.sin(tilt))
    normal = (0.0, math.sin(tilt), math.cos(tilt))
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, *column]
    ds.ImagePositionPatient = [-100.0, -100.0 + normal[1] * step * index, normal[2] * step * index]
    if tilt_degrees:
        ds.GantryDetectorTilt = tilt_degrees
    ds.PixelSpacing = [0.7, 0.7]
    ds.Rows = size
    ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    rng = np.random.default_rng(seed * 1000 + index)
    ds.PixelData = rng.integers(0, 2000, (size, size), dtype=np.uint16).tobytes()
    return ds


def write_ct_series(directory: Path, *, slices: int = 10, **options: Any) -> CtSeries:
    directory.mkdir(parents=True, exist_ok=True)
    study_uid = options.pop("study_uid", None) or generate_uid()
    series_uid = options.pop("series_uid", None) or generate_uid()
    files = []
    for index in range(slices):
        ds = make_ct_slice(study_uid=study_uid, series_uid=series_uid, index=index, **options)
        path = directory / f"slice{index:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return CtSeries(study_uid, series_uid, files)


@dataclass
class RunningNode:
    settings: Settings
    session_factory: sessionmaker[Session]
    component: DicomComponent
    events: list[SeriesReadyEvent] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.component.address[1]

    @property
    def storage(self) -> Path:
        return self.settings.dicom_storage_dir

    def storescu(
        self, *paths: Path | str, aet: str = "STORESCU", extra: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        return run_tool(
            [STORESCU, "-aet", aet, "-aec", "RADSCRIBE", *extra, "127.0.0.1", str(self.port)]
            + [str(p) for p in paths]
        )

    def instances(self) -> dict[str, Any]:
        with self.session_factory() as session:
            rows = session.execute(
                select(Instance, Series.series_instance_uid).join(
                    Series, Series.id == Instance.series_id
                )
            ).all()
        return {row[0].sop_instance_uid: row[0] for row in rows}

    def series(self, uid: str) -> Series:
        with self.session_factory() as session:
            found = session.scalar(select(Series).where(Series.series_instance_uid == uid))
        assert found is not None, uid
        return found

    def study(self, uid: str) -> Study:
        with self.session_factory() as session:
            found = session.scalar(select(Study).where(Study.study_instance_uid == uid))
        assert found is not None, uid
        return found

    def ready_events(self, series_uid: str) -> list[SeriesReadyEvent]:
        return [e for e in list(self.events) if e.series_instance_uid == series_uid]

    def wait_ready(self, series_uid: str, count: int = 1) -> list[SeriesReadyEvent]:
        return list(
            wait_until(
                lambda: (
                    len(self.ready_events(series_uid)) >= count and self.ready_events(series_uid)
                )
            )
        )


def node_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "development",
        "data_dir": data_dir,
        "database_url": database_url,
        "dicom_quiet_seconds": 0.3,
        "dicom_allowed_aes": TEST_AES,
        "dicom_min_series_slices": 8,
        "dicom_min_free_bytes": 0,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def start_node(tmp_path: Path, sqlite_url: str) -> Iterator[Callable[..., RunningNode]]:
    """Start a node (SQLite by default); pass ``database_url=`` or settings overrides."""
    started: list[tuple[RunningNode, Any]] = []

    def _start(database_url: str | None = None, **overrides: Any) -> RunningNode:
        url = database_url or sqlite_url
        migrate.upgrade(url)
        settings = node_settings(tmp_path / f"data{len(started)}", url, **overrides)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        events: list[SeriesReadyEvent] = []
        lock = threading.Lock()

        def _collect(event: SeriesReadyEvent) -> None:
            with lock:
                events.append(event)

        component = build_node(settings, factory, on_ready=_collect, port=0, scan_interval=0.05)
        component.start()
        node = RunningNode(settings, factory, component, events)
        started.append((node, engine))
        return node

    yield _start
    for node, engine in reversed(started):
        node.component.stop()
        engine.dispose()


# `radscribe dicom serve` without loading every other sub-command (faster start).
NODE_COMMAND = [sys.executable, "-m", "app.cli.dicom", "serve"]


def node_process_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a `radscribe dicom serve` process with its data and SQLite
    database under ``tmp_path``; ``settings`` add or override RADSCRIBE_ variables
    (named without the prefix, e.g. ``DICOM_QUIET_SECONDS="0.3"``)."""
    return {
        **os.environ,
        "RADSCRIBE_ENV": "development",
        "RADSCRIBE_DATA_DIR": str(tmp_path / "data"),
        "RADSCRIBE_DATABASE_URL": f"sqlite:///{tmp_path / 'node.db'}",
        **{f"RADSCRIBE_{name}": value for name, value in settings.items()},
    }


class NodeProcess:
    """`radscribe dicom serve` in its own process; killed or stopped by its own pid."""

    def __init__(
        self, env: dict[str, str], port: int, log: Path, workers: int = 1, metrics: bool = False
    ) -> None:
        self.port = port
        self._log = log.open("a")
        options = [] if metrics else ["--no-metrics"]
        self.process = subprocess.Popen(
            [*NODE_COMMAND, "--port", str(port), *options, "--workers", str(workers)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._listening, timeout=40)

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the node exited with {self.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
