"""A drafting job waits for a dictation another worker is transcribing, then gives up in time.

The drafting job must not draft without a dictation that is being transcribed at that
moment (its sentences would be missing from the draft), nor hold its worker for ever.  The
other worker here is a real thread finishing the real row, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import transaction
from app.core.domain import DictationStatus
from app.core.settings import load_settings
from app.core.tables import Dictation, Study
from app.services import drafting, jobs
from app.services.drafting import DraftingServices

Factory = sessionmaker[Session]


def _services(tmp_path: Path, session_factory: Factory) -> DraftingServices:
    def no_model() -> drafting.Drafter:
        raise AssertionError("waiting for a transcript needs no model")

    settings = load_settings(env="development", data_dir=tmp_path / "data")
    return DraftingServices(settings=settings, session_factory=session_factory, drafter=no_model)


def _study_with_dictation(session_factory: Factory, status: DictationStatus) -> tuple[int, int]:
    with transaction(session_factory) as session:
        study = Study(study_instance_uid=f"2.25.{uuid.uuid4().int}", accession_number="ACC9")
        session.add(study)
        session.flush()
        dictation = Dictation(study_id=study.id, audio_path="a.wav", status=status)
        session.add(dictation)
        session.flush()
        return study.id, dictation.id


def _finish(session_factory: Factory, dictation_id: int, after: float) -> threading.Thread:
    def finish() -> None:
        time.sleep(after)
        with transaction(session_factory) as session:
            session.execute(
                update(Dictation)
                .where(Dictation.id == dictation_id)
                .values(
                    status=DictationStatus.DONE,
                    transcript_text="Small left pleural effusion.",
                    sections={"findings": "Small left pleural effusion."},
                )
            )

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_the_job_takes_the_transcript_finished_while_it_waited(
    tmp_path: Path, session_factory: Factory
) -> None:
    services = _services(tmp_path, session_factory)
    study_id, dictation_id = _study_with_dictation(session_factory, DictationStatus.TRANSCRIBING)
    other_worker = _finish(session_factory, dictation_id, after=0.4)
    started = time.monotonic()
    sections, transcript, _ = drafting._dictations(services, study_id)
    waited = time.monotonic() - started
    other_worker.join()
    assert sections == {"findings": "Small left pleural effusion."}
    assert transcript == "Small left pleural effusion."
    assert 0.3 < waited < drafting.DICTATION_WAIT_SECONDS


def test_the_job_gives_its_worker_back_when_the_transcription_takes_too_long(
    tmp_path: Path, session_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drafting, "DICTATION_WAIT_SECONDS", 0.3)
    services = _services(tmp_path, session_factory)
    study_id, _ = _study_with_dictation(session_factory, DictationStatus.TRANSCRIBING)
    with pytest.raises(jobs.DeferJob) as deferred:
        drafting._dictations(services, study_id)
    assert deferred.value.seconds == drafting.DICTATION_RETRY_SECONDS
    assert "transcribed" in deferred.value.reason


def test_no_wait_without_a_dictation_in_progress(tmp_path: Path, session_factory: Factory) -> None:
    services = _services(tmp_path, session_factory)
    study_id, _ = _study_with_dictation(session_factory, DictationStatus.FAILED)
    started = time.monotonic()
    assert drafting._dictations(services, study_id) == ({}, None, None)
    assert time.monotonic() - started < 0.3
