"""`radscribe dicom send`, `radscribe studies list --json` and `dicom serve --workers N`."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import threading
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from app.cli.main import main as radscribe
from app.core.db import make_engine, make_session_factory
from app.core.domain import SeriesState
from app.core.tables import Instance, Series
from tests.conftest import free_port

from .conftest import (  # type: ignore[import-not-found]
    ECHOSCU,
    STORESCU,
    NodeProcess,
    RunningNode,
    node_process_env,
    run_tool,
    wait_until,
    write_ct_series,
)

StartNode = Callable[..., RunningNode]


def test_send_then_list_studies(
    start_node: StartNode,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    node = start_node()
    axial = write_ct_series(tmp_path / "study" / "axial", slices=8)
    write_ct_series(
        tmp_path / "study" / "scout",
        slices=1,
        study_uid=axial.study_uid,
        series_number=1,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )
    to = f"127.0.0.1:{node.port}"
    assert radscribe(["dicom", "send", str(tmp_path / "study"), "--to", to, "--quiet"]) == 0
    assert "sent 9 of 9 files" in capsys.readouterr().out

    refused = radscribe(
        [
            "dicom",
            "send",
            str(tmp_path / "study"),
            "--to",
            to,
            "--calling-aet",
            "STRANGER",
            "--quiet",
        ]
    )
    assert refused == 1
    assert "FAILED association rejected" in capsys.readouterr().out

    node.wait_ready(axial.series_uid)
    wait_until(lambda: all(s["ready"] for s in _listed(monkeypatch, node, capsys)[0]["series"]))
    [study] = _listed(monkeypatch, node, capsys)
    assert study["study_instance_uid"] == axial.study_uid
    assert study["instance_count"] == 9
    assert study["status"] == "ready"
    assert study["selected_series_uid"] == axial.series_uid
    by_number = {s["series_number"]: s for s in study["series"]}
    assert by_number[2]["selected"] and by_number[2]["instance_count"] == 8
    assert not by_number[1]["selected"] and "localizer" in by_number[1]["skip_reason"]
    assert "dicom_patient_name" not in json.dumps(study)


def _listed(
    monkeypatch: pytest.MonkeyPatch, node: RunningNode, capsys: pytest.CaptureFixture[str]
) -> list[dict]:  # type: ignore[type-arg]
    monkeypatch.setenv("RADSCRIBE_ENV", "development")
    monkeypatch.setenv("RADSCRIBE_DATA_DIR", str(node.settings.data_dir))
    monkeypatch.setenv("RADSCRIBE_DATABASE_URL", node.settings.effective_database_url)
    capsys.readouterr()
    assert radscribe(["studies", "list", "--json"]) == 0
    studies: list[dict] = json.loads(capsys.readouterr().out)["studies"]  # type: ignore[type-arg]
    return studies


def test_several_receiver_processes_share_one_port(tmp_path: Path) -> None:
    env = node_process_env(
        tmp_path,
        DICOM_ALLOWED_AES="STORESCU,ECHOSCU",
        DICOM_QUIET_SECONDS="0.3",
        DICOM_MIN_SERIES_SLICES="8",
        DICOM_MIN_FREE_BYTES="0",
        LOG_LEVEL="WARNING",
    )
    database = env["RADSCRIBE_DATABASE_URL"]
    port, metrics_port = free_port(), free_port()
    env["RADSCRIBE_METRICS_PORT"] = str(metrics_port)
    series = [write_ct_series(tmp_path / f"s{i}", slices=8, seed=i) for i in range(4)]
    node = NodeProcess(env, port, tmp_path / "node.log", workers=2, metrics=True)
    try:
        # Workers bind after the parent starts; wait until both answer.
        wait_until(
            lambda: (
                run_tool(
                    [
                        ECHOSCU,
                        "-aec",
                        "RADSCRIBE",
                        "127.0.0.1",
                        str(port),
                    ]
                ).returncode
                == 0
            )
        )
        results: list[subprocess.CompletedProcess[str]] = []
        threads = [
            threading.Thread(
                target=lambda s=s: results.append(
                    run_tool(
                        [STORESCU, "-aec", "RADSCRIBE", "127.0.0.1", str(port)]
                        + [str(f) for f in s.files]
                    )
                )
            )
            for s in series
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        engine = make_engine(database)
        factory = make_session_factory(engine)

        def selected() -> bool:
            with factory() as session:
                states = session.scalars(select(Series.state)).all()
            return len(states) == 4 and all(s is SeriesState.SELECTED for s in states)

        wait_until(selected)
        with factory() as session:
            assert len(session.scalars(select(Instance.id)).all()) == 32
        engine.dispose()
        # One /metrics for all receivers (prometheus-client multiprocess mode).
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        samples = [line for line in text.splitlines() if line.startswith("radscribe_dicom")]
        assert 'radscribe_dicom_instances_received_total{outcome="new"} 32.0' in samples
        assert "radscribe_dicom_series_ready_total 4.0" in samples
        families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
        assert len(families) == len(set(families))
    finally:
        node.stop()
    assert node.process.returncode == 0


def _children(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:  # gone meanwhile
                continue
            if ppid == parent:
                children.append(int(entry.name))
    return children


def _connection_owners(port: int, pids: list[int]) -> Counter[int]:
    """How many established TCP connections to ``port`` each of ``pids`` holds (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    owners: Counter[int] = Counter()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    owners[pid] += 1
    return owners


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_receiver_processes_take_one_association_each(tmp_path: Path) -> None:
    """Four associations to four receiver processes land in four processes (an idle
    process takes a new connection first), not hashed as SO_REUSEPORT would."""
    env = node_process_env(tmp_path, DICOM_ALLOWED_AES="STORESCU", LOG_LEVEL="INFO")
    port = free_port()
    log = tmp_path / "node.log"
    node = NodeProcess(env, port, log, workers=4)
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(Verification)
    associations = []
    try:
        wait_until(lambda: log.read_text().count(" listening on ") >= 4)
        for _ in range(4):  # one after another: each is established before the next
            association = ae.associate("127.0.0.1", port, ae_title="RADSCRIBE")
            assert association.is_established
            associations.append(association)
        workers = _children(node.process.pid)

        def all_four() -> Counter[int] | None:
            found = _connection_owners(port, workers)
            return found if sum(found.values()) == 4 else None

        owners = wait_until(all_four)
        assert sorted(owners.values()) == [1, 1, 1, 1], owners
        assert all(a.send_c_echo().Status == 0x0000 for a in associations)
    finally:
        for association in associations:
            association.release()
        node.stop()
    assert node.process.returncode == 0


def test_the_shared_port_is_bound_again_once_the_old_holder_lets_go() -> None:
    """A restarted node's receivers find the port still held by the killed node's ones for
    a moment: binding waits for it (up to its limit) instead of failing at once."""
    from dicom_node.server import listening_socket

    held = listening_socket("127.0.0.1", 0)
    port = held.getsockname()[1]
    with pytest.raises(OSError) as refused:
        listening_socket("127.0.0.1", port, retry_seconds=0.2)
    assert refused.value.errno == errno.EADDRINUSE
    threading.Timer(0.3, held.close).start()
    shared = listening_socket("127.0.0.1", port, retry_seconds=10)
    try:
        assert shared.getsockname()[1] == port
    finally:
        shared.close()
