"""Dictation audio in, 16 kHz mono float32 out, or a typed error that says why not.

Everything a browser or a dictation device records (WAV, FLAC, MP3, OGG/Opus,
WebM/Opus) is decoded with PyAV (FFmpeg).  Decoding is also the validation: a
dictation is accepted only if it decodes cleanly, holds sound, and is not longer
than the configured limit, so a caller can decode first and store afterwards.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.logging
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
"""What Whisper expects."""

DEFAULT_MAX_SECONDS = 20 * 60.0
"""A dictation longer than this is refused unless the caller allows more."""

MIN_SECONDS = 0.25
"""Shorter than this cannot hold a word."""

SILENCE_DBFS = -50.0
"""Audio whose loudest 30 ms frame is quieter than this (RMS, dB full scale) is silent."""

FRAME_SECONDS = 0.03

_FFMPEG_ERROR_LEVEL = av.logging.ERROR

AudioArray = npt.NDArray[np.float32]


class AudioError(ValueError):
    """The input cannot be used as a dictation; the message says why, for the user."""


class EmptyAudioError(AudioError):
    """No bytes, or a container without a single audio sample."""


class NotAudioError(AudioError):
    """The bytes are not a recognised audio file (text, an image, a video without sound)."""


class CorruptAudioError(AudioError):
    """An audio file whose data is damaged, so decoding it would lose speech silently."""


class AudioTooLongError(AudioError):
    """Longer than the configured maximum dictation length."""


class SilentAudioError(AudioError):
    """Decodes, but holds no sound loud enough to be speech."""


class NoSpeechError(AudioError):
    """Holds sound, but Whisper found no words in it (noise, music, a cough)."""


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """A whole dictation as Whisper wants it, with where it came from."""

    samples: AudioArray
    container: str
    codec: str

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def decode_audio(source: Path | bytes, *, max_seconds: float = DEFAULT_MAX_SECONDS) -> DecodedAudio:
    """Decode and validate a dictation; raise an :class:`AudioError` subclass if unusable."""
    if max_seconds <= 0:
        raise ValueError("max_seconds must be positive")
    if isinstance(source, Path):
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise AudioError(f"cannot read the audio file: {exc.strerror or exc}") from exc
    else:
        data = source
    if not data:
        raise EmptyAudioError("the audio is empty (0 bytes)")

    _enable_ffmpeg_error_log()
    with av.logging.Capture(local=True) as ffmpeg_log:
        try:
            with av.open(io.BytesIO(data), mode="r") as container:
                if not container.streams.audio:
                    raise NotAudioError(
                        f"the file holds no audio (it is {_describe(container)}), "
                        "so it cannot be a dictation"
                    )
                stream = container.streams.audio[0]
                _refuse_declared_overlength(container, max_seconds)
                container_name = container.format.name
                codec_name = stream.codec_context.name
                samples = _decode_stream(container, stream, max_seconds)
        except AudioError:
            raise
        except (av.error.InvalidDataError, EOFError) as exc:
            if not ffmpeg_log and not _looks_like_started_audio(data):
                raise NotAudioError("the file is not a recognised audio format") from exc
            raise CorruptAudioError("the audio file is damaged and cannot be decoded") from exc
        except av.error.FFmpegError as exc:
            raise CorruptAudioError(f"the audio cannot be decoded: {exc.strerror}") from exc
    damage = [message.strip() for level, _, message in ffmpeg_log if level <= _FFMPEG_ERROR_LEVEL]
    if damage:
        raise CorruptAudioError(f"the audio file is damaged ({damage[0]}); please record again")
    audio = DecodedAudio(samples=samples, container=container_name, codec=codec_name)
    _check_content(audio)
    return audio


def _enable_ffmpeg_error_log() -> None:
    """FFmpeg reports damaged frames only through its log; PyAV keeps that off by default."""
    level = av.logging.get_level()
    if level is None or level < _FFMPEG_ERROR_LEVEL:
        av.logging.set_level(_FFMPEG_ERROR_LEVEL)


def _describe(container: av.container.InputContainer) -> str:
    kinds = sorted({stream.type for stream in container.streams})
    inside = ", ".join(kinds) if kinds else "no streams"
    return f"{container.format.long_name or container.format.name} with {inside}"


def _looks_like_started_audio(data: bytes) -> bool:
    """Magic numbers of the formats we accept: a broken one is corrupt, not 'not audio'."""
    head = data[:12]
    return (
        head.startswith((b"RIFF", b"fLaC", b"OggS", b"ID3", b"\x1a\x45\xdf\xa3"))
        or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)  # MPEG audio frame
    )


def _refuse_declared_overlength(container: av.container.InputContainer, max_seconds: float) -> None:
    if container.duration is not None:
        declared = container.duration / av.time_base
        if declared > max_seconds + 1.0:
            raise AudioTooLongError(_too_long_message(declared, max_seconds))


def _too_long_message(seconds: float, max_seconds: float) -> str:
    return (
        f"the dictation is {seconds / 60:.1f} minutes long; "
        f"the limit is {max_seconds / 60:.1f} minutes"
    )


def _decode_stream(
    container: av.container.InputContainer, stream: av.AudioStream, max_seconds: float
) -> AudioArray:
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[AudioArray] = []
    total = 0
    for chunk in _resampled(container, stream):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise AudioTooLongError(_too_long_message(total / SAMPLE_RATE, max_seconds))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def _resampled(
    container: av.container.InputContainer, stream: av.AudioStream
) -> Iterator[AudioArray]:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    for frame in container.decode(stream):
        frame.pts = None  # let the resampler count samples itself
        for out in resampler.resample(frame):
            yield _mono(out)
    for out in resampler.resample(None):
        yield _mono(out)


def _mono(frame: av.AudioFrame) -> AudioArray:
    return np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1)


def frame_rms_dbfs(samples: AudioArray, *, frame_seconds: float = FRAME_SECONDS) -> AudioArray:
    """RMS level of consecutive frames in dB full scale (silence is very negative, not -inf)."""
    size = max(1, int(frame_seconds * SAMPLE_RATE))
    count = len(samples) // size
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    frames = samples[: count * size].reshape(count, size).astype(np.float64)
    power = np.mean(frames * frames, axis=1)
    return (10.0 * np.log10(power + 1e-12)).astype(np.float32)


def _check_content(audio: DecodedAudio) -> None:
    if len(audio.samples) == 0:
        raise EmptyAudioError("the audio file holds no sound samples")
    if audio.duration < MIN_SECONDS:
        raise EmptyAudioError(
            f"the audio is only {audio.duration:.2f} s long; too short to hold a dictation"
        )
    if not np.all(np.isfinite(audio.samples)):
        raise CorruptAudioError("the audio decodes to invalid sample values")
    levels = frame_rms_dbfs(audio.samples)
    if levels.size == 0 or float(levels.max()) < SILENCE_DBFS:
        raise SilentAudioError(
            "the audio is silent; check that the microphone is connected and not muted"
        )
