"""The dictation service on SQLite and PostgreSQL: stored durably, then transcribed by a worker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import transaction
from app.core.domain import DictationStatus
from app.core.tables import AuditEvent, Dictation, Study
from app.services.dictation import (
    DictationError,
    release_stale_dictations,
    store_dictation,
    transcribe_dictation,
)
from app.speech.audio import AudioError, NotAudioError, SilentAudioError
from app.speech.transcriber import Transcriber

Factory = sessionmaker[Session]


@pytest.fixture
def study_id(session_factory: Factory) -> int:
    with transaction(session_factory) as session:
        study = Study(study_instance_uid=f"2.25.{uuid.uuid4().int}", accession_number="ACC1")
        session.add(study)
        session.flush()
        return study.id


def _dictation(session_factory: Factory, dictation_id: int) -> Dictation:
    with session_factory() as session:
        row = session.get(Dictation, dictation_id)
        assert row is not None
        return row


def _count(session_factory: Factory, table: type[Dictation] | type[AuditEvent]) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def _stored_files(data_dir: Path) -> list[Path]:
    folder = data_dir / "dictations"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_store_is_durable_and_pending(
    session_factory: Factory, study_id: int, chest_wav: Path, tmp_path: Path
) -> None:
    audio = chest_wav.read_bytes()
    stored = store_dictation(session_factory, data_dir=tmp_path, study_id=study_id, audio=audio)
    assert stored.audio_path.read_bytes() == audio
    assert stored.audio_path.is_relative_to(tmp_path / "dictations" / str(study_id))
    assert _stored_files(tmp_path) == [stored.audio_path]  # no temporary file left
    row = _dictation(session_factory, stored.id)
    assert row.status is DictationStatus.PENDING
    assert row.study_id == study_id
    assert tmp_path / row.audio_path == stored.audio_path
    assert (row.audio_format, row.audio_sha256) == ("wav", stored.sha256)
    assert row.duration_seconds == pytest.approx(15.4, abs=0.5)
    assert row.transcript_text is None
    with session_factory() as session:
        actions = session.scalars(select(AuditEvent.action)).all()
    assert actions == ["dictation.store"]


@pytest.mark.parametrize(
    ("audio", "error"),
    [
        (b"", AudioError),
        (b"not audio at all\n" * 50, NotAudioError),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(8000), AudioError),
    ],
)
def test_bad_audio_stores_nothing(
    session_factory: Factory, study_id: int, tmp_path: Path, audio: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        store_dictation(session_factory, data_dir=tmp_path, study_id=study_id, audio=audio)
    assert _stored_files(tmp_path) == []
    assert _count(session_factory, Dictation) == 0


def test_silence_stores_nothing(
    session_factory: Factory, study_id: int, tmp_path: Path, chest_wav: Path
) -> None:
    header_and_silence = chest_wav.read_bytes()[:44] + bytes(32000 * 2)
    with pytest.raises(SilentAudioError):
        store_dictation(
            session_factory, data_dir=tmp_path, study_id=study_id, audio=header_and_silence
        )
    assert _stored_files(tmp_path) == []


def test_unknown_study_stores_nothing(
    session_factory: Factory, chest_wav: Path, tmp_path: Path
) -> None:
    with pytest.raises(DictationError, match="study 999999 does not exist"):
        store_dictation(
            session_factory, data_dir=tmp_path, study_id=999999, audio=chest_wav.read_bytes()
        )
    assert _stored_files(tmp_path) == []


def test_failed_commit_removes_the_file(
    session_factory: Factory, study_id: int, chest_wav: Path, tmp_path: Path
) -> None:
    with pytest.raises(IntegrityError):  # no such user: the row cannot be committed
        store_dictation(
            session_factory,
            data_dir=tmp_path,
            study_id=study_id,
            audio=chest_wav.read_bytes(),
            author_id=424242,
        )
    assert _stored_files(tmp_path) == []
    assert _count(session_factory, Dictation) == 0


def test_worker_transcribes_a_pending_dictation(
    session_factory: Factory,
    study_id: int,
    chest_wav: Path,
    tmp_path: Path,
    transcriber: Transcriber,
) -> None:
    stored = store_dictation(
        session_factory, data_dir=tmp_path, study_id=study_id, audio=chest_wav.read_bytes()
    )
    result = transcribe_dictation(
        session_factory, dictation_id=stored.id, transcriber=transcriber, data_dir=tmp_path
    )
    assert result.status is DictationStatus.DONE
    assert result.transcript is not None
    row = _dictation(session_factory, stored.id)
    assert row.status is DictationStatus.DONE
    assert row.transcript_text == result.transcript.text
    assert row.transcript_raw == result.transcript.raw_text
    assert row.sections is not None
    assert list(row.sections) == ["findings", "impression"]
    assert "6 mm" in row.sections["findings"]
    assert row.quality is not None
    assert 0.0 <= row.quality["confidence"] <= 1.0
    assert set(row.quality) >= {"mean_logprob", "no_speech_prob", "snr_db", "speech_seconds"}
    assert row.model_name == "tiny.en"
    assert row.error is None

    with pytest.raises(DictationError, match="is done, not pending"):
        transcribe_dictation(
            session_factory, dictation_id=stored.id, transcriber=transcriber, data_dir=tmp_path
        )


def test_audio_damaged_after_storage_fails_the_dictation(
    session_factory: Factory,
    study_id: int,
    chest_wav: Path,
    tmp_path: Path,
    transcriber: Transcriber,
) -> None:
    stored = store_dictation(
        session_factory, data_dir=tmp_path, study_id=study_id, audio=chest_wav.read_bytes()
    )
    stored.audio_path.write_bytes(b"overwritten by a broken disk\n" * 20)
    result = transcribe_dictation(
        session_factory, dictation_id=stored.id, transcriber=transcriber, data_dir=tmp_path
    )
    assert result.status is DictationStatus.FAILED
    assert result.transcript is None
    row = _dictation(session_factory, stored.id)
    assert row.status is DictationStatus.FAILED
    assert row.error is not None and "not a recognised audio format" in row.error
    assert row.transcript_text is None


def test_machinery_failure_returns_the_dictation_to_pending(
    session_factory: Factory,
    study_id: int,
    chest_wav: Path,
    tmp_path: Path,
    transcriber: Transcriber,
) -> None:
    stored = store_dictation(
        session_factory, data_dir=tmp_path, study_id=study_id, audio=chest_wav.read_bytes()
    )
    misconfigured = Transcriber(model=transcriber._model, model_name="tiny.en", beam_size=0)
    with pytest.raises(ValueError, match="beam size"):
        transcribe_dictation(
            session_factory, dictation_id=stored.id, transcriber=misconfigured, data_dir=tmp_path
        )
    row = _dictation(session_factory, stored.id)
    assert row.status is DictationStatus.PENDING  # the job can retry
    assert row.error is not None and "beam size" in row.error

    retried = transcribe_dictation(
        session_factory, dictation_id=stored.id, transcriber=transcriber, data_dir=tmp_path
    )
    assert retried.status is DictationStatus.DONE


def test_unknown_dictation(
    session_factory: Factory, transcriber: Transcriber, tmp_path: Path
) -> None:
    with pytest.raises(DictationError, match="does not exist"):
        transcribe_dictation(
            session_factory, dictation_id=31337, transcriber=transcriber, data_dir=tmp_path
        )


def test_a_dictation_left_transcribing_is_released(
    session_factory: Factory, study_id: int, chest_wav: Path, tmp_path: Path
) -> None:
    stored = store_dictation(
        session_factory, data_dir=tmp_path, study_id=study_id, audio=chest_wav.read_bytes()
    )
    with transaction(session_factory) as session:
        row = session.get(Dictation, stored.id)
        assert row is not None
        row.status = DictationStatus.TRANSCRIBING  # a worker claimed it, then was killed
    now = datetime.now(UTC)
    assert release_stale_dictations(session_factory, older_than=timedelta(minutes=10), now=now) == 0
    later = now + timedelta(minutes=11)
    assert (
        release_stale_dictations(session_factory, older_than=timedelta(minutes=10), now=later) == 1
    )
    row = _dictation(session_factory, stored.id)
    assert row.status is DictationStatus.PENDING
    assert row.error == "transcription interrupted; retried"
