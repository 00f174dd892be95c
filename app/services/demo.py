"""The demonstration: the embedded system with a synthetic study pushed through it.

A synthetic chest CT study (DICOM, HL7 order, dictation audio, ground truth) is
generated; its order goes to the HL7 listener and its images to the DICOM node
the way an EMR and a PACS send them, and its dictation is uploaded the way the
web page stores it.  The drafting pipeline then links, transcribes, drafts and
stores an AI draft.  ``run_check`` waits for that draft and compares it with
the truth; the demo proper keeps the system running for a person to look at.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import FlagStatus, JobState, Role
from app.core.net import free_port
from app.core.settings import Settings, load_settings
from app.core.tables import Dictation, Job, Report, ReportFlag, ReportVersion, Study, User
from app.emr.client import send_messages_sync
from app.services.dictation import store_dictation
from app.services.runtime import Runtime
from app.services.users import create_user
from dicom_node.send import Destination, collect_files, send_files

DEMO_USER = "demo"
CHECK_SLICES = 64
CHECK_MATRIX = 128


class DemoError(RuntimeError):
    """The demonstration could not push its study through; the message says where."""


def demo_settings(*, data_dir: Path | None, free_ports: bool) -> Settings:
    """Development settings for the embedded system (free ports for --check)."""
    overrides: dict[str, Any] = {
        "env": "development",
        "data_dir": data_dir or Path(tempfile.mkdtemp(prefix="radscribe-demo-")),
        "order_wait_seconds": 30.0,
        "dicom_quiet_seconds": 1.0,
    }
    if free_ports:
        overrides.update(
            http_port=free_port(),
            dicom_port=free_port(),
            hl7_port=free_port(),
            http_host="127.0.0.1",
            dicom_host="127.0.0.1",
            hl7_host="127.0.0.1",
        )
    return load_settings(**overrides)


@dataclass
class PushedStudy:
    folder: Path
    truth: dict[str, Any]
    study_instance_uid: str
    instances: int
    acks: list[str] = field(default_factory=list)
    dictation_id: int | None = None


def generate(folder: Path, *, seed: int, slices: int | None, matrix: int) -> dict[str, Any]:
    from app.services.synthetic_study import write_synthetic_study

    return write_synthetic_study(folder, seed=seed, n_slices=slices, matrix=matrix, masks=False)


def push_study(
    settings: Settings, factory: sessionmaker[Session], folder: Path, truth: dict[str, Any]
) -> PushedStudy:
    """Order over HL7, images over DICOM, dictation through the upload service."""
    hl7 = truth.get("hl7") or {}
    messages = [(folder / hl7[key]).read_bytes() for key in ("adt", "orm") if hl7.get(key)]
    acks = send_messages_sync("127.0.0.1", settings.hl7_port, messages)
    if any(ack.code not in ("AA", "CA") for ack in acks):
        raise DemoError(f"the HL7 listener did not accept the order: {[a.code for a in acks]}")

    files = collect_files([folder / truth["files"]["dicom"]])
    results = send_files(
        files,
        Destination(
            host="127.0.0.1",
            port=settings.dicom_port,
            called_aet=settings.dicom_ae_title,
            calling_aet="DEMO_PACS",
        ),
    )
    failed = [r for r in results if not r.ok]
    if failed or not results:
        raise DemoError(f"{len(failed)} of {len(results)} DICOM instances were not stored")
    pushed = PushedStudy(
        folder,
        truth,
        str(truth["study"]["study_uid"]),
        len(results),
        [ack.code for ack in acks],
    )

    audio = (truth.get("dictation") or {}).get("audio")
    if audio:
        deadline = time.monotonic() + 60
        while (study_id := _study_id(factory, pushed.study_instance_uid)) is None:
            if time.monotonic() > deadline:
                raise DemoError("the study never appeared in the index")
            time.sleep(0.2)
        stored = store_dictation(
            factory,
            data_dir=settings.data_dir,
            study_id=study_id,
            audio=(folder / audio["file"]).read_bytes(),
            actor="demo",
        )
        pushed.dictation_id = stored.id
    return pushed


def _study_id(factory: sessionmaker[Session], uid: str) -> int | None:
    with factory() as session:
        return session.scalar(select(Study.id).where(Study.study_instance_uid == uid))


@dataclass(frozen=True)
class DraftOutcome:
    study_id: int
    status: str
    order_linked: bool
    version: int
    model_version: str | None
    findings: list[str]
    flags: list[str]
    job_timings: dict[str, float]
    dictation_in_draft: bool


def wait_for_draft(
    factory: sessionmaker[Session], pushed: PushedStudy, *, timeout: float
) -> DraftOutcome:
    """Wait until every job of the study is done and its draft includes the dictation."""
    deadline = time.monotonic() + timeout
    last = "nothing yet"
    while time.monotonic() < deadline:
        outcome, last = _draft_state(factory, pushed)
        if outcome is not None:
            return outcome
        time.sleep(0.5)
    raise DemoError(f"no complete draft within {timeout:.0f} s ({last})")


def _draft_state(
    factory: sessionmaker[Session], pushed: PushedStudy
) -> tuple[DraftOutcome | None, str]:
    with factory() as session:
        study = session.scalar(
            select(Study).where(Study.study_instance_uid == pushed.study_instance_uid)
        )
        if study is None:
            return None, "study not indexed"
        job_rows = session.scalars(select(Job).where(Job.study_id == study.id)).all()
        failed = [j for j in job_rows if j.state is JobState.FAILED]
        if failed:
            raise DemoError(f"drafting failed: {failed[-1].error}")
        if not job_rows or any(j.state is not JobState.DONE for j in job_rows):
            states = [j.state.value for j in job_rows]
            return None, f"study {study.status.value}, jobs {states or 'none'}"
        if pushed.dictation_id is not None:
            dictation = session.get_one(Dictation, pushed.dictation_id)
            if str(dictation.id) not in job_rows[-1].content_key.split("dictations=")[-1].split(
                ","
            ):
                return None, "waiting for a draft with the dictation"
        report = session.scalar(select(Report).where(Report.study_id == study.id))
        version = (
            session.scalar(
                select(ReportVersion)
                .where(ReportVersion.report_id == report.id)
                .order_by(ReportVersion.version_number.desc())
                .limit(1)
            )
            if report
            else None
        )
        if version is None:
            return None, "jobs done, no draft stored"
        structured = version.structured
        findings = [s["finding"] for sec in structured["sections"] for s in sec["statements"]]
        dictated = any(sec.get("dictated") for sec in structured["sections"]) or bool(
            structured.get("dictated_impression")
        )
        flags = session.scalars(
            select(ReportFlag.message).where(
                ReportFlag.study_id == study.id, ReportFlag.status == FlagStatus.OPEN
            )
        ).all()
        timings = dict(job_rows[-1].timings or {})
        return DraftOutcome(
            study.id,
            study.status.value,
            study.order_id is not None,
            version.version_number,
            version.model_version,
            findings,
            list(flags),
            timings,
            dictated,
        ), "done"


def ensure_demo_user(factory: sessionmaker[Session]) -> str | None:
    """A radiologist account for the demo; returns its new password (None if it exists)."""
    with factory() as session, session.begin():
        if session.scalar(select(User.id).where(User.username == DEMO_USER)) is not None:
            return None
        password = secrets.token_urlsafe(12)
        create_user(
            session,
            username=DEMO_USER,
            role=Role.RADIOLOGIST,
            password=password,
            display_name="Demo Radiologist",
            actor="demo",
        )
        return password


def summary(outcome: DraftOutcome, truth: dict[str, Any]) -> str:
    truth_findings = sorted(name for name, on in (truth.get("labels") or {}).items() if on)
    return json.dumps(
        {
            "study_id": outcome.study_id,
            "status": outcome.status,
            "order_linked": outcome.order_linked,
            "draft_version": outcome.version,
            "model_version": outcome.model_version,
            "drafted_findings": outcome.findings,
            "true_findings": truth_findings,
            "dictation_in_draft": outcome.dictation_in_draft,
            "open_flags": outcome.flags,
            "stage_seconds": outcome.job_timings,
        },
        indent=2,
    )


def start_runtime(settings: Settings) -> Runtime:
    from prometheus_client import REGISTRY

    from app.services.assembly import build_runtime

    runtime = build_runtime(settings, metrics_registry=REGISTRY)
    runtime.start()
    return runtime
