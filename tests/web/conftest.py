"""The web app's test fixtures: a migrated database with users, studies, small DICOM series
and AI drafts written as the real services write them, and a logged-in test client."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core import migrate
from app.core.db import make_engine, make_session_factory, transaction
from app.core.domain import (
    FlagStatus,
    OrderStatus,
    Priority,
    ReportKind,
    Role,
    SeriesState,
    StudyStatus,
)
from app.core.settings import Settings, load_settings
from app.core.tables import (
    Instance,
    Order,
    Patient,
    Report,
    ReportFlag,
    ReportVersion,
    Series,
    Study,
    StudyStatusChange,
    User,
)
from app.reporting.draft import FindingScore, ModelOutput, Technique, build_draft
from app.reporting.render import render_text
from app.reporting.schema import Evidence
from app.services.users import create_user
from app.web.app import create_app
from models.findings import Finding

PASSWORD = "correct horse battery"
SLICES = 12
PIXELS = 64
MODEL_VERSION = "radscribe-test-1"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Seeder:
    """Writes rows the way the DICOM, HL7 and drafting sides would."""

    factory: sessionmaker[Session]
    storage_dir: Path
    counter: int = 0

    def user(self, username: str, role: Role) -> int:
        with transaction(self.factory) as session:
            return create_user(
                session,
                username=username,
                role=role,
                password=PASSWORD,
                display_name=f"Dr {username.title()}",
            ).id

    def study(
        self,
        *,
        patient_name: str = "DOE^JANE",
        mrn: str = "MRN0001",
        priority: Priority = Priority.ROUTINE,
        status: StudyStatus = StudyStatus.DRAFT_READY,
        acquired_minutes_ago: float = 30.0,
        description: str = "CT CHEST WITH CONTRAST",
        slices: int = 0,
        linked: bool = True,
    ) -> int:
        self.counter += 1
        n = self.counter
        family, given = [*patient_name.split("^"), ""][:2]
        acquired = datetime.now(UTC) - timedelta(minutes=acquired_minutes_ago)
        with transaction(self.factory) as session:
            patient = Patient(
                mrn=mrn + str(n),
                issuer="HOSP",
                family_name=family,
                given_name=given,
                birth_date="19600101",
                sex="F",
            )
            session.add(patient)
            session.flush()
            order = Order(
                patient_id=patient.id,
                accession_number=f"ACC{n:05d}",
                accession_issuer="HOSP",
                placer_order_number=f"PL{n}",
                filler_order_number=f"FL{n}",
                procedure_text="CT chest with contrast",
                priority=priority,
                reason_for_exam="Cough and weight loss",
                clinical_history="Former smoker",
                ordering_provider="1234^House^Gregory",
                status=OrderStatus.OPEN,
            )
            session.add(order)
            session.flush()
            study = Study(
                study_instance_uid=generate_uid(),
                dicom_patient_id=mrn + str(n),
                dicom_patient_name=patient_name,
                dicom_birth_date="19600101",
                dicom_sex="F",
                accession_number=f"ACC{n:05d}",
                accession_issuer="HOSP",
                study_description=description,
                status=status,
                priority=priority,
                patient_id=patient.id if linked else None,
                order_id=order.id if linked else None,
                acquired_at=acquired,
            )
            session.add(study)
            session.flush()
            session.add(
                StudyStatusChange(
                    study_id=study.id, from_status=None, to_status=status, at=acquired
                )
            )
            if slices:
                self._series(session, study, slices)
            return study.id

    def _series(self, session: Session, study: Study, count: int) -> None:
        series = Series(
            study_id=study.id,
            series_instance_uid=generate_uid(),
            modality="CT",
            series_number=2,
            series_description="Axial 1.0 mm",
            state=SeriesState.SELECTED,
            instance_count=count,
        )
        session.add(series)
        session.flush()
        folder = self.storage_dir / study.study_instance_uid
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            uid = generate_uid()
            path = folder / f"{uid}.dcm"
            write_ct_slice(path, study=study, series=series, sop_uid=uid, index=index)
            session.add(
                Instance(
                    series_id=series.id,
                    sop_instance_uid=uid,
                    sop_class_uid=CTImageStorage,
                    transfer_syntax_uid=ExplicitVRLittleEndian,
                    storage_path=str(path.relative_to(self.storage_dir)),
                    size_bytes=path.stat().st_size,
                    content_digest=f"blake3:{index:064d}",
                    instance_number=index + 1,
                    # stored out of order: the viewer must sort by position
                    slice_position=float((index * 7) % count) * 2.5,
                )
            )

    def draft(self, study_id: int, *, uncertain: Finding | None = Finding.PLEURAL_EFFUSION) -> None:
        """An AI draft as the drafting pipeline writes it, with its flags."""
        scores = []
        for finding in Finding:
            probability = 0.05
            if finding is Finding.LUNG_NODULE:
                probability = 0.91
            if finding is uncertain:
                probability = 0.5
            scores.append(
                FindingScore(
                    finding=finding,
                    probability=probability,
                    low=0.3,
                    high=0.7,
                    evidence=Evidence(slice_index=7, location="right upper lobe")
                    if finding is Finding.LUNG_NODULE
                    else Evidence(slice_index=3),
                )
            )
        draft = build_draft(
            ModelOutput(
                scores=scores,
                model_version=MODEL_VERSION,
                modality_weights={"image": 0.7, "text": 0.2, "dictation": 0.1},
            ),
            technique=Technique(slice_thickness_mm=1.0, contrast_agent="iohexol"),
            order=None,
        )
        with transaction(self.factory) as session:
            report = Report(study_id=study_id)
            session.add(report)
            session.flush()
            version = ReportVersion(
                report_id=report.id,
                version_number=1,
                kind=ReportKind.DRAFT,
                ai_generated=True,
                structured=draft.report.model_dump(mode="json"),
                rendered_text=render_text(draft.report),
                model_version=MODEL_VERSION,
            )
            session.add(version)
            session.flush()
            for flag in draft.flags:
                session.add(
                    ReportFlag(
                        study_id=study_id,
                        report_version_id=version.id,
                        kind=flag.kind,
                        finding=flag.finding.value if flag.finding else None,
                        message=flag.message,
                        status=FlagStatus.OPEN,
                    )
                )


def write_ct_slice(path: Path, *, study: Study, series: Series, sop_uid: str, index: int) -> None:
    """A small CT slice: a disc of soft tissue in air, brighter with the index."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study.study_instance_uid
    ds.SeriesInstanceUID = series.series_instance_uid
    ds.Modality = "CT"
    ds.PatientName = study.dicom_patient_name
    ds.PatientID = study.dicom_patient_id
    ds.InstanceNumber = index + 1
    ds.Rows = ds.Columns = PIXELS
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    yy, xx = np.mgrid[:PIXELS, :PIXELS]
    disc = (yy - PIXELS / 2) ** 2 + (xx - PIXELS / 2) ** 2 < (PIXELS / 3) ** 2
    hu = np.where(disc, 40 + 60 * index, -1000).astype(np.int16)
    ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def web_settings(tmp_path: Path, url: str, **overrides: object) -> Settings:
    return load_settings(
        env="development",
        data_dir=tmp_path / "data",
        database_url=url,
        viewer_url_template="https://pacs.example.org/viewer?study={study_instance_uid}",
        **overrides,
    )


@pytest.fixture
def web_engine(sqlite_url: str) -> Iterator[Engine]:
    """SQLite for most web tests (PostgreSQL where concurrency matters)."""
    migrate.upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def web_factory(web_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(web_engine)


@pytest.fixture
def web_config(tmp_path: Path, sqlite_url: str) -> Settings:
    return web_settings(tmp_path, sqlite_url)


@pytest.fixture
def seed(web_factory: sessionmaker[Session], web_config: Settings) -> Seeder:
    return Seeder(factory=web_factory, storage_dir=web_config.dicom_storage_dir)


@pytest.fixture
def app(web_config: Settings, web_factory: sessionmaker[Session]) -> FastAPI:
    return create_app(web_config, web_factory)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    page = client.get("/login")
    token = TOKEN.search(page.text)
    assert token, "login form has no CSRF token"
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    worklist = client.get("/worklist")
    found = TOKEN.search(worklist.text)
    assert found
    return found.group(1)


def client_for(app: FastAPI) -> TestClient:
    return TestClient(app, base_url="http://testserver", follow_redirects=False)


def user_named(factory: sessionmaker[Session], username: str) -> User:
    with factory() as session:
        user = session.query(User).filter_by(username=username).one()
        session.expunge(user)
        return user


@dataclass
class Web:
    """The app under test with its database: clients, logins and seeded rows."""

    app: FastAPI
    factory: sessionmaker[Session]
    seed: Seeder
    settings: Settings

    def client(self) -> TestClient:
        return client_for(self.app)

    def login(self, client: TestClient, username: str, password: str = PASSWORD) -> str:
        return login(client, username, password)

    def user(self, username: str) -> User:
        return user_named(self.factory, username)


@pytest.fixture
def web(
    app: FastAPI, web_factory: sessionmaker[Session], seed: Seeder, web_config: Settings
) -> Web:
    return Web(app=app, factory=web_factory, seed=seed, settings=web_config)


DICTATION_TEXT = "Findings. Small right pleural effusion. Impression. Pleural effusion."


@pytest.fixture(scope="session")
def dictation_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short chest dictation spoken by espeak-ng."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("dictation") / "dictation.wav"
    subprocess.run(
        [espeak, "-v", "en-us", "-s", "150", "-w", str(path), DICTATION_TEXT],
        check=True,
        timeout=30,
    )
    return path
