"""Dictations: store an uploaded recording durably, and transcribe a pending one.

:func:`store_dictation` runs where the audio arrives (the web upload): it decodes
the audio first, so a file that is empty, silent, damaged, not audio or too long
is refused before anything is written; then the bytes go to
``DATA_DIR/dictations/<study>/`` (write, fsync, rename) and a ``Dictation`` row
(status pending) is committed.  Once it returns, the dictation is durable.

:func:`transcribe_dictation` runs in a worker, never in a web request: pending ->
transcribing -> done (transcript, sections, quality, model) or failed (why).
A failure of the machinery rather than of the audio puts the row back to
pending and re-raises, so the job that called it can retry; a worker killed
mid-transcription leaves the row transcribing until
:func:`release_stale_dictations` puts it back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import transaction
from app.core.domain import DictationStatus
from app.core.settings import Settings
from app.core.tables import Dictation, Study
from app.services import audit
from app.speech.audio import DEFAULT_MAX_SECONDS, AudioError, decode_audio
from app.speech.model import ModelOptions
from app.speech.transcriber import Transcriber
from app.speech.transcript import Transcript

log = logging.getLogger(__name__)

DICTATIONS_FOLDER = "dictations"
# The file name extension for each container PyAV reports.
CONTAINER_EXTENSIONS = {
    "wav": "wav",
    "flac": "flac",
    "mp3": "mp3",
    "ogg": "ogg",
    "matroska,webm": "webm",
    "mov,mp4,m4a,3gp,3g2,mj2": "m4a",
}
MAX_ERROR_CHARS = 2000


class DictationError(ValueError):
    """The dictation cannot be stored or transcribed as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class StoredDictation:
    id: int
    study_id: int
    audio_path: Path
    audio_format: str
    sha256: str
    duration: float


@dataclass(frozen=True, slots=True)
class TranscriptionResult:
    """What a worker learns: done with a transcript, or failed with the reason."""

    dictation_id: int
    status: DictationStatus
    transcript: Transcript | None
    error: str | None


def whisper_cache_dir(settings: Settings) -> Path:
    """Where split Whisper models are joined, once, for this installation."""
    return settings.data_dir / "models" / "whisper"


def make_transcriber(settings: Settings) -> Transcriber:
    """The process's transcriber, with the model the settings name (loaded once per process)."""
    return Transcriber.load(
        spec=settings.whisper_model_dir,
        cache_dir=whisper_cache_dir(settings),
        options=ModelOptions(
            device=settings.whisper_device,
            compute_type=settings.whisper_compute_type,
            cpu_threads=settings.whisper_cpu_threads,
            workers=settings.whisper_workers,
        ),
        bias=settings.whisper_second_look,
    )


def store_dictation(
    session_factory: sessionmaker[Session],
    *,
    data_dir: Path,
    study_id: int,
    audio: bytes,
    author_id: int | None = None,
    actor: str = audit.SYSTEM_ACTOR,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> StoredDictation:
    """Validate, then store durably; raise :class:`AudioError` or :class:`DictationError`."""
    decoded = decode_audio(audio, max_seconds=max_seconds)
    with session_factory() as session:
        if session.get(Study, study_id) is None:
            raise DictationError(f"study {study_id} does not exist")
    extension = CONTAINER_EXTENSIONS.get(decoded.container, "audio")
    relative = Path(DICTATIONS_FOLDER) / str(study_id) / f"{uuid.uuid4().hex}.{extension}"
    path = data_dir / relative
    digest = hashlib.sha256(audio).hexdigest()
    _write_durably(path, audio)
    try:
        with transaction(session_factory) as session:
            row = Dictation(
                study_id=study_id,
                author_id=author_id,
                audio_path=relative.as_posix(),
                audio_format=extension,
                audio_sha256=digest,
                duration_seconds=round(decoded.duration, 3),
                status=DictationStatus.PENDING,
            )
            session.add(row)
            session.flush()
            dictation_id = row.id
            audit.record(
                session,
                actor=actor,
                action="dictation.store",
                object_type="dictation",
                object_id=dictation_id,
                user_id=author_id,
                study_id=study_id,
                detail={"format": extension, "seconds": round(decoded.duration, 1)},
            )
    except BaseException:
        path.unlink(missing_ok=True)  # no row, so no file either
        raise
    log.info("stored dictation %s for study %s (%.1f s)", dictation_id, study_id, decoded.duration)
    return StoredDictation(
        id=dictation_id,
        study_id=study_id,
        audio_path=path,
        audio_format=extension,
        sha256=digest,
        duration=decoded.duration,
    )


def transcribe_dictation(
    session_factory: sessionmaker[Session],
    *,
    dictation_id: int,
    transcriber: Transcriber,
    data_dir: Path,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> TranscriptionResult:
    """Transcribe one pending dictation and record the outcome (see the module docstring)."""
    with transaction(session_factory) as session:
        row = session.get(Dictation, dictation_id, with_for_update=True)
        if row is None:
            raise DictationError(f"dictation {dictation_id} does not exist")
        if row.status is not DictationStatus.PENDING:
            raise DictationError(f"dictation {dictation_id} is {row.status.value}, not pending")
        row.status = DictationStatus.TRANSCRIBING
        row.error = None
        audio_path = data_dir / row.audio_path
        study_id = row.study_id

    try:
        transcript = transcriber.transcribe(decode_audio(audio_path, max_seconds=max_seconds))
    except AudioError as exc:
        error = str(exc)[:MAX_ERROR_CHARS]
        _finish(session_factory, dictation_id, study_id, status=DictationStatus.FAILED, error=error)
        log.warning("dictation %s failed: %s", dictation_id, error)
        return TranscriptionResult(dictation_id, DictationStatus.FAILED, None, error)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        _finish(
            session_factory, dictation_id, study_id, status=DictationStatus.PENDING, error=error
        )
        raise

    _finish(
        session_factory, dictation_id, study_id, status=DictationStatus.DONE, transcript=transcript
    )
    return TranscriptionResult(dictation_id, DictationStatus.DONE, transcript, None)


def release_stale_dictations(
    session_factory: sessionmaker[Session], *, older_than: timedelta, now: datetime | None = None
) -> int:
    """Put dictations left transcribing (a worker died) back to pending; return how many."""
    cutoff = (now or datetime.now(UTC)) - older_than
    with transaction(session_factory) as session:
        result = session.execute(
            update(Dictation)
            .where(Dictation.status == DictationStatus.TRANSCRIBING, Dictation.updated_at < cutoff)
            .values(status=DictationStatus.PENDING, error="transcription interrupted; retried")
        )
        released = int(getattr(result, "rowcount", 0) or 0)
    if released:
        log.warning("released %d dictation(s) left transcribing", released)
    return released


def _finish(
    session_factory: sessionmaker[Session],
    dictation_id: int,
    study_id: int,
    *,
    status: DictationStatus,
    transcript: Transcript | None = None,
    error: str | None = None,
) -> None:
    with transaction(session_factory) as session:
        row = session.get(Dictation, dictation_id, with_for_update=True)
        if row is None:  # deleted meanwhile; nothing to record
            return
        row.status = status
        row.error = error
        if transcript is not None:
            row.transcript_raw = transcript.raw_text
            row.transcript_text = transcript.text
            row.sections = dict(transcript.sections)
            row.quality = transcript.quality.to_dict()
            row.model_name = transcript.model_name
            if row.duration_seconds is None:
                row.duration_seconds = round(transcript.duration, 3)
        if status is not DictationStatus.PENDING:
            audit.record(
                session,
                actor=audit.SYSTEM_ACTOR,
                action=f"dictation.{status.value}",
                object_type="dictation",
                object_id=dictation_id,
                study_id=study_id,
                detail={"model": transcript.model_name} if transcript else {"error": error},
            )


def _write_durably(path: Path, data: bytes) -> None:
    """Write, fsync, rename into place, fsync the folder: after this the file survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with temporary.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
