"""Decoding dictation audio: every format browsers record, and every way input can be bad."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.speech.audio import (
    SAMPLE_RATE,
    AudioError,
    AudioTooLongError,
    CorruptAudioError,
    EmptyAudioError,
    NotAudioError,
    SilentAudioError,
    decode_audio,
)

LAVFI = ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i"]
Speak = Callable[[str, Path], Path]
Convert = Callable[[Path, str], Path]


@pytest.fixture(scope="module")
def spoken_wav(speak: Speak, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("formats")
    return speak("The lungs are clear. No pleural effusion.", folder / "clear.wav")


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg", ".webm"])
def test_each_format_decodes_to_16_khz_mono(
    spoken_wav: Path, convert: Convert, suffix: str
) -> None:
    source = decode_audio(spoken_wav)
    path = spoken_wav if suffix == ".wav" else convert(spoken_wav, suffix)
    audio = decode_audio(path.read_bytes())
    assert audio.sample_rate == SAMPLE_RATE
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    # lossy codecs pad a little; the length is still the recording's
    assert abs(audio.duration - source.duration) < 0.1
    assert 0.05 < float(np.abs(audio.samples).max()) <= 1.5


def test_webm_is_what_a_browser_records(spoken_wav: Path, convert: Convert) -> None:
    audio = decode_audio(convert(spoken_wav, ".webm"))
    assert audio.container == "matroska,webm"
    assert audio.codec == "opus"


def test_stereo_44k_flac_is_mixed_down(shared_data: Path) -> None:
    audio = decode_audio(shared_data / "audio" / "jfk.flac")
    assert audio.container == "flac"
    assert audio.duration == pytest.approx(11.0, abs=0.05)


def test_empty_input() -> None:
    with pytest.raises(EmptyAudioError, match="empty"):
        decode_audio(b"")


def test_header_without_samples(spoken_wav: Path) -> None:
    with pytest.raises(EmptyAudioError, match="no sound samples"):
        decode_audio(spoken_wav.read_bytes()[:44])


def test_too_short(tmp_path: Path) -> None:
    path = tmp_path / "click.wav"
    _lavfi(f"sine=frequency=440:sample_rate={SAMPLE_RATE}", 0.1, path)
    with pytest.raises(EmptyAudioError, match="too short"):
        decode_audio(path)


def test_silence(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    _lavfi(f"anullsrc=r={SAMPLE_RATE}:cl=mono", 3.0, path)
    with pytest.raises(SilentAudioError, match="silent"):
        decode_audio(path)


def test_text_is_not_audio() -> None:
    with pytest.raises(NotAudioError, match="not a recognised audio"):
        decode_audio(b"Findings: the lungs are clear.\n" * 40)


def test_video_without_sound_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    subprocess.run(
        [*LAVFI, "testsrc=size=64x64:rate=5", "-t", "1", str(path)], check=True, timeout=60
    )
    with pytest.raises(NotAudioError, match="holds no audio"):
        decode_audio(path)


@pytest.mark.parametrize("suffix", [".flac", ".ogg", ".mp3"])
def test_damaged_data_is_refused(spoken_wav: Path, convert: Convert, suffix: str) -> None:
    data = bytearray(convert(spoken_wav, suffix).read_bytes())
    for index in range(len(data) // 3, len(data) // 2):
        data[index] = (data[index] * 7 + 3) % 256
    with pytest.raises(CorruptAudioError, match="damaged"):
        decode_audio(bytes(data))


def test_truncated_header_is_corrupt(spoken_wav: Path, convert: Convert) -> None:
    data = convert(spoken_wav, ".flac").read_bytes()
    with pytest.raises(CorruptAudioError):
        decode_audio(data[:5000])


def test_too_long(spoken_wav: Path) -> None:
    with pytest.raises(AudioTooLongError, match="limit"):
        decode_audio(spoken_wav, max_seconds=1.0)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="cannot read"):
        decode_audio(tmp_path / "absent.wav")


def _lavfi(source: str, seconds: float, path: Path) -> None:
    subprocess.run([*LAVFI, source, "-t", str(seconds), str(path)], check=True, timeout=60)
