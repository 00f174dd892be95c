"""Real peers: a study goes from storescu, mllp_send and an upload to a draft.

The study's order is sent with python-hl7's ``mllp_send``, its images with
DCMTK's ``storescu``; a radiologist logs in over HTTP, claims the study and
uploads a dictation (espeak-ng speech) through the JSON API.  The draft must
come from all three: linked order as clinical information, the shipped model's
findings matching the study's ground truth where the model's own evaluation
says the image decides them, the dictated sentences in their sections, and a
discrepancy flag where the dictation contradicts the model.

The flow runs twice: embedded (one process, SQLite, in-process worker) and
scaled out (PostgreSQL, jobs on a `radscribe worker` process over Redis).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.core.domain import FlagKind, FlagStatus, Role
from app.core.settings import Settings, load_settings
from app.core.tables import Job, Report, ReportFlag, ReportVersion, Study
from app.services.assembly import build_runtime
from app.services.runtime import Runtime
from app.services.study_overview import list_studies
from app.services.synthetic_study import synthesize_speech, write_wav
from app.services.users import create_user
from models.checkpoint import shipped_checkpoint_path
from tests.conftest import free_port
from tests.pipeline.conftest import redis_or_skip, start_worker, wait_for

STORESCU = "/usr/bin/storescu"
REDIS_URL = "redis://127.0.0.1:6379/12"
DECIDED_BY_IMAGE_AUROC = 0.99
"""Findings whose image-only AUROC in the shipped evaluation reaches this must match truth."""
PASSWORD = "correct horse battery staple"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
# Findings with plain words that a dictation can contradict, and how to say each.
SAYABLE = {
    "Pleural effusion": "pleural effusion",
    "Cardiomegaly": "cardiomegaly",
    "Emphysema": "emphysema",
    "Consolidation": "consolidation",
}


def _mllp_send() -> Path:
    """python-hl7's sender, installed beside this interpreter."""
    return Path(sys.executable).parent / "mllp_send"


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return load_settings(
        env="development",
        data_dir=tmp_path / "data",
        http_host="127.0.0.1",
        http_port=free_port(),
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        hl7_host="127.0.0.1",
        hl7_port=free_port(),
        dicom_quiet_seconds=0.5,
        order_wait_seconds=30.0,
        **extra,
    )


@pytest.fixture(params=["embedded", "celery"])
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Settings, Runtime]]:
    """The whole system, in one process or with drafting on a Celery worker."""
    if request.param == "embedded":
        settings = _settings(tmp_path)
        built = build_runtime(settings)
        built.start()
        yield settings, built
        built.stop()
        return
    from app.services.celery_app import ROUTINE_QUEUE, STAT_QUEUE

    redis_or_skip(REDIS_URL).delete(STAT_QUEUE, ROUTINE_QUEUE, "unacked", "unacked_index")
    settings = _settings(
        tmp_path,
        database_url=request.getfixturevalue("postgres_url"),
        celery_broker_url=REDIS_URL,
    )
    built = build_runtime(settings, only=["web", "dicom", "hl7", "draft-requests"])
    built.start()
    worker = start_worker(settings, tmp_path / "worker.log", free_port(), order_wait_seconds=30.0)
    try:
        yield settings, built
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        built.stop()


def _image_decided_findings() -> set[str]:
    """Findings the shipped checkpoint's evaluation shows the image alone decides."""
    report = json.loads((shipped_checkpoint_path().parent / "evaluation.json").read_text())
    image_only = report["scenarios"]["image only"]["auroc"]
    from models.findings import FINDINGS

    return {
        f.value
        for f in FINDINGS
        if (image_only.get(f.slug) or {}).get("value", 0.0) >= DECIDED_BY_IMAGE_AUROC
    }


def _send_order(folder: Path, truth: dict[str, Any], port: int) -> None:
    framed = folder / "order.mllp"
    files = [folder / truth["hl7"][key] for key in ("adt", "orm") if truth["hl7"].get(key)]
    framed.write_bytes(b"".join(b"\x0b" + f.read_bytes() + b"\x1c\r" for f in files))
    result = subprocess.run(
        [str(_mllp_send()), "--file", str(framed), "--port", str(port), "127.0.0.1"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.count(b"MSA|AA") == len(files), result.stdout


def _storescu(folder: Path, port: int) -> None:
    result = subprocess.run(
        [
            STORESCU,
            "-aet",
            "TEST_PACS",
            "-aec",
            "RADSCRIBE",
            "+sd",
            "+r",
            "127.0.0.1",
            str(port),
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]


def _login(client: httpx.Client) -> str:
    token = TOKEN.search(client.get("/login").text)
    assert token
    response = client.post(
        "/login", data={"username": "reader", "password": PASSWORD, "csrf_token": token.group(1)}
    )
    assert response.status_code == 303, response.text
    found = TOKEN.search(client.get("/worklist").text)
    assert found
    return found.group(1)


def _latest_draft(runtime: Runtime, study_id: int, dictation_id: int) -> dict[str, Any] | None:
    """The structured draft once every job is done and the newest includes the dictation."""
    with runtime.session_factory() as session:
        jobs = session.scalars(select(Job).where(Job.study_id == study_id)).all()
        if not jobs or any(j.state.value not in ("done", "failed") for j in jobs):
            return None
        if f"{dictation_id}" not in jobs[-1].content_key.rsplit("dictations=", 1)[-1].split(","):
            return None
        version = session.scalar(
            select(ReportVersion)
            .join(Report)
            .where(Report.study_id == study_id)
            .order_by(ReportVersion.version_number.desc())
            .limit(1)
        )
        return None if version is None else dict(version.structured)


def _first_draft(runtime: Runtime, study_id: int) -> dict[str, Any] | None:
    with runtime.session_factory() as session:
        version = session.scalar(
            select(ReportVersion).join(Report).where(Report.study_id == study_id).limit(1)
        )
        return None if version is None else dict(version.structured)


@pytest.mark.timeout(420)
def test_storescu_mllp_send_and_upload_become_one_draft(
    system: tuple[Settings, Runtime],
    small_study_factory: Callable[[int], tuple[Path, dict[str, Any]]],
    tmp_path: Path,
) -> None:
    settings, runtime = system
    decided = _image_decided_findings()
    assert decided, "the shipped evaluation names no finding the image decides"
    seed = next(s for s in range(100, 200) if _useful(small_study_factory, s, decided))
    folder, truth = small_study_factory(seed)
    with runtime.session_factory() as session, session.begin():
        create_user(session, username="reader", role=Role.RADIOLOGIST, password=PASSWORD)

    _send_order(folder, truth, settings.hl7_port)
    _storescu(folder / truth["files"]["dicom"], settings.dicom_port)

    def study_id() -> int | None:
        with runtime.session_factory() as session:
            return session.scalar(
                select(Study.id).where(Study.study_instance_uid == truth["study"]["study_uid"])
            )

    study_uid = truth["study"]["study_uid"]
    sid = wait_for(study_id, timeout=60, what="the study in the index")
    first = wait_for(lambda: _first_draft(runtime, sid), timeout=180, what="the first draft")
    reason = truth["clinical"]["reason_for_exam"]
    if reason:
        assert reason.split()[0] in first["clinical_information"]
    assert "No order linked" not in first["clinical_information"]
    assert first["ai_generated"] and not first["verified"]
    drafted = {s["finding"] for sec in first["sections"] for s in sec["statements"]}
    not_detected = {f for sec in first["sections"] for f in sec["not_detected"]}
    for finding in decided:
        if truth["labels"][finding]:
            assert finding in drafted, (finding, "missed", drafted)
        else:
            assert finding in not_detected and finding not in drafted, (finding, drafted)

    # Dictate the opposite of what the model said about one plainly spoken finding.
    finding, spoken = next(iter(SAYABLE.items()))
    # Spoken punctuation, as radiologists dictate: tiny.en otherwise hears "effusion.
    # The liver" as "effusion that liver" and the liver sentence lands in the pleura.
    claim = f"There is no {spoken}" if finding in drafted else f"There is a large {spoken}"
    sentence = (
        f"Findings. {claim} period. The liver is unremarkable period. "
        "Impression. Follow up as clinically indicated."
    )
    wav = tmp_path / "dictation.wav"
    write_wav(wav, synthesize_speech(sentence, voice="en-us", speed_wpm=140))

    base = f"http://127.0.0.1:{settings.http_port}"
    with httpx.Client(base_url=base, timeout=30) as client:
        csrf = _login(client)
        headers = {"X-CSRF-Token": csrf}
        assert client.post(f"/api/studies/{sid}/claim", headers=headers).status_code == 200
        upload = client.post(
            f"/api/studies/{sid}/dictations",
            headers=headers,
            files={"audio": ("dictation.wav", wav.read_bytes(), "audio/wav")},
        )
        assert upload.status_code == 201, upload.text
        dictation_id = upload.json()["id"]

    draft = wait_for(
        lambda: _latest_draft(runtime, sid, dictation_id),
        timeout=180,
        what="a draft with the dictation",
    )
    dictated = {sec["key"]: sec.get("dictated") or "" for sec in draft["sections"]}
    assert spoken in dictated["pleura" if finding == "Pleural effusion" else "lungs"].lower()
    assert "liver" in dictated["upper_abdomen"].lower()
    with runtime.session_factory() as session:
        flags = session.scalars(
            select(ReportFlag).where(
                ReportFlag.study_id == sid, ReportFlag.status == FlagStatus.OPEN
            )
        ).all()
    assert any(f.kind is FlagKind.DISCREPANCY and f.finding == finding for f in flags), [
        (f.kind, f.finding, f.message) for f in flags
    ]
    # `radscribe studies list --json` shows the job's state and timings and the newest draft.
    with runtime.session_factory() as session:
        (listed,) = [s for s in list_studies(session) if s.study_instance_uid == study_uid]
    assert listed.job is not None and listed.job.state == "done"
    assert listed.job.timings and listed.job.timings["model"] > 0
    assert listed.report is not None and listed.report.version_number >= 2
    assert listed.report.kind == "draft" and listed.report.ai_generated
    # Times carry their zone on SQLite (which hands them back naive) as on PostgreSQL.
    assert listed.report.created_at is not None and listed.job.finished_at is not None
    for moment in (listed.report.created_at, listed.job.finished_at):
        assert datetime.fromisoformat(moment).utcoffset() == timedelta(0), moment


def _useful(
    factory: Callable[[int], tuple[Path, dict[str, Any]]], seed: int, decided: set[str]
) -> bool:
    """A study with an order and at least one image-decided finding present."""
    _, truth = factory(seed)
    has_order = truth["clinical"]["order_present"] and truth["hl7"].get("orm")
    return bool(has_order and any(truth["labels"][f] for f in decided))
