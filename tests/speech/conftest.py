"""Speech test fixtures: dictations spoken by espeak-ng, converted by ffmpeg, one loaded Whisper.

The Whisper model (tiny.en, shipped in a PyPI package) is loaded once per test
session; each dictation is synthesized once and transcribed once, and the
tests that check different parts of the result share it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.speech.audio import DecodedAudio, decode_audio
from app.speech.model import ModelOptions
from app.speech.transcriber import Transcriber
from app.speech.transcript import Transcript

ESPEAK = shutil.which("espeak-ng")
FFMPEG = shutil.which("ffmpeg")
WHISPER_THREADS = 2
ACTIVE_LEVEL = 0.01  # samples above this count as speech when measuring its level

# A short chest CT dictation with spoken punctuation, a retraction and two sections.
CHEST_DICTATION = (
    "Findings. There is a six millimeter solid nodule in the right upper lobe period. "
    "The heart is enlarged period. Scratch that. "
    "No pleural effusion period. "
    "Impression. Six millimeter right upper lobe nodule period."
)

Speak = Callable[[str, Path], Path]
Convert = Callable[[Path, str], Path]


@pytest.fixture(scope="session")
def speak() -> Speak:
    """Say ``text`` with espeak-ng (en-us, 150 words a minute) into a WAV file."""
    if ESPEAK is None:
        pytest.skip("espeak-ng is not installed")

    def _speak(text: str, path: Path) -> Path:
        subprocess.run(
            [ESPEAK, "-v", "en-us", "-s", "150", "-w", str(path), text], check=True, timeout=30
        )
        return path

    return _speak


@pytest.fixture(scope="session")
def convert() -> Convert:
    """Re-encode a WAV with ffmpeg: ``suffix`` picks the format (mp3, flac, ogg, webm)."""
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed")
    codecs = {
        ".mp3": ["-c:a", "libmp3lame"],
        ".flac": ["-c:a", "flac"],
        ".ogg": ["-c:a", "libopus"],
        ".webm": ["-c:a", "libopus"],
        ".wav": ["-c:a", "pcm_s16le"],
    }

    def _convert(source: Path, suffix: str) -> Path:
        target = source.with_suffix(suffix)
        subprocess.run(
            [FFMPEG, "-loglevel", "error", "-y", "-i", str(source), *codecs[suffix], str(target)],
            check=True,
            timeout=60,
        )
        return target

    return _convert


@pytest.fixture(scope="session")
def transcriber(tmp_path_factory: pytest.TempPathFactory) -> Transcriber:
    """The packaged tiny.en model, loaded once for the whole test session."""
    return Transcriber.load(
        spec=None,
        cache_dir=tmp_path_factory.mktemp("whisper-cache"),
        options=ModelOptions(cpu_threads=WHISPER_THREADS),
    )


@pytest.fixture(scope="session")
def chest_wav(speak: Speak, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speak(CHEST_DICTATION, tmp_path_factory.mktemp("dictation") / "chest.wav")


@pytest.fixture(scope="session")
def chest_transcript(transcriber: Transcriber, chest_wav: Path) -> Transcript:
    return transcriber.transcribe(decode_audio(chest_wav))


AddNoise = Callable[[DecodedAudio, float], DecodedAudio]


@pytest.fixture(scope="session")
def add_noise() -> AddNoise:
    """The same speech with white noise ``snr_db`` below its speaking level (seeded)."""

    def _add_noise(audio: DecodedAudio, snr_db: float) -> DecodedAudio:
        samples = audio.samples
        active = samples[np.abs(samples) > ACTIVE_LEVEL]
        speech_power = float(np.mean(active * active))
        noise_power = speech_power / (10.0 ** (snr_db / 10.0))
        noise = np.random.default_rng(0).normal(0.0, np.sqrt(noise_power), len(samples))
        noisy = (samples + noise).astype(np.float32)
        return DecodedAudio(samples=noisy, container=audio.container, codec=audio.codec)

    return _add_noise
