"""Kill -9 the node while storescu sends: nothing acknowledged is ever lost.

The node runs as ``radscribe dicom serve`` in its own process; storescu
reports each stored file.  After every kill the node restarts (recovering
its storage) and, at the end, every file storescu saw acknowledged is on
disk, equal after its File Meta to the sent file, and indexed; a full
re-send adds no duplicates.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import func, select

from app.core.db import make_engine, make_session_factory
from app.core.tables import Instance, Series
from dicom_node.storage import INCOMING_DIR
from tests.conftest import free_port

from .conftest import (  # type: ignore[import-not-found]
    DCMTK_ENV,
    STORESCU,
    NodeProcess,
    dataset_bytes,
    node_process_env,
    run_tool,
    write_ct_series,
)

SUCCESS_LINE = "Received Store Response (Success)"
SENDING_PREFIX = "I: Sending file: "
KILL_AFTER = (3, 11, 19)  # acknowledged stores seen before each kill -9


@pytest.fixture
def node_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield node_process_env(
        tmp_path,
        DICOM_ALLOWED_AES="STORESCU",
        DICOM_QUIET_SECONDS="0.3",
        DICOM_MIN_SERIES_SLICES="8",
        DICOM_MIN_FREE_BYTES="0",
        LOG_LEVEL="WARNING",
    )


def _send_and_kill(node: NodeProcess, folder: Path, kill_after: int) -> set[Path]:
    """storescu sends the folder; the node is killed after ``kill_after`` acknowledgements."""
    sender = subprocess.Popen(
        [STORESCU, "-v", "-aec", "RADSCRIBE", "127.0.0.1", str(node.port), "+sd", str(folder)],
        env=DCMTK_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    acknowledged: set[Path] = set()
    killed = threading.Event()
    current: Path | None = None
    assert sender.stdout is not None
    for line in sender.stdout:
        if line.startswith(SENDING_PREFIX):
            current = Path(line[len(SENDING_PREFIX) :].strip())
        elif SUCCESS_LINE in line and current is not None:
            acknowledged.add(current)
            if len(acknowledged) >= kill_after and not killed.is_set():
                node.kill()
                killed.set()
    sender.wait(timeout=60)
    if not killed.is_set():
        node.kill()
    return acknowledged


def test_kill_9_during_storescu_never_loses_an_acknowledged_instance(
    node_env: dict[str, str], tmp_path: Path
) -> None:
    series = write_ct_series(tmp_path / "series", slices=30, size=128)
    port = free_port()
    log = tmp_path / "node.log"
    acknowledged: set[Path] = set()
    for kill_after in KILL_AFTER:
        node = NodeProcess(node_env, port, log)
        acknowledged |= _send_and_kill(node, tmp_path / "series", kill_after)
    assert len(acknowledged) >= KILL_AFTER[-1]

    node = NodeProcess(node_env, port, log)
    try:
        engine = make_engine(node_env["RADSCRIBE_DATABASE_URL"])
        factory = make_session_factory(engine)
        storage = Path(node_env["RADSCRIBE_DATA_DIR"]) / "dicom"
        with factory() as session:
            rows = {row.sop_instance_uid: row for row in session.scalars(select(Instance)).all()}
        for path in acknowledged:
            sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            assert sop in rows, f"acknowledged {path.name} is not indexed"
            stored = storage / rows[sop].storage_path
            assert dataset_bytes(stored) == dataset_bytes(path), path.name
        # Nothing half-written is left once the node has restarted.
        leftovers = [p for p in (storage / INCOMING_DIR).rglob("*") if p.suffix == ".tmp"]
        assert leftovers == []

        resend = run_tool(
            [STORESCU, "-aec", "RADSCRIBE", "127.0.0.1", str(port), "+sd", str(tmp_path / "series")]
        )
        assert resend.returncode == 0, resend.stderr
        with factory() as session:
            assert session.scalar(select(func.count()).select_from(Instance)) == len(series.files)
            counted = session.scalar(
                select(Series.instance_count).where(Series.series_instance_uid == series.series_uid)
            )
        assert counted == len(series.files)
        files = [p for p in storage.rglob("*.dcm")]
        assert len(files) == len(series.files)
        engine.dispose()
    finally:
        node.stop()
