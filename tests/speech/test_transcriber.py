"""Whisper on real and synthesized speech: corrected sections, quality signals, long audio."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.speech.audio import SAMPLE_RATE, DecodedAudio, NoSpeechError, decode_audio
from app.speech.model import ModelOptions
from app.speech.transcriber import CHUNK_SECONDS, Transcriber, _chunks
from app.speech.transcript import Transcript

JFK_REFERENCE = (  # /work/shared/data/SOURCES.md
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
Speak = Callable[[str, Path], Path]
Convert = Callable[[Path, str], Path]
AddNoise = Callable[[DecodedAudio, float], DecodedAudio]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower())


def _wer(reference: str, hypothesis: str) -> float:
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1] / len(ref)


def test_dictation_becomes_report_sections(chest_transcript: Transcript) -> None:
    sections = chest_transcript.sections
    assert list(sections) == ["findings", "impression"]
    findings, impression = sections["findings"], sections["impression"]
    assert "6 mm" in findings
    assert "nodule in the right upper lobe" in findings
    assert "No pleural effusion." in findings
    assert "enlarged" not in findings  # "scratch that" took it back
    assert "6 mm right upper lobe nodule" in impression
    for spoken in ("period", "scratch", "millimeter"):
        assert spoken not in chest_transcript.text.lower()
    assert chest_transcript.text.startswith("Findings: ")
    assert "\n\nImpression: " in chest_transcript.text


def test_chest_terms_whisper_does_not_know(
    transcriber: Transcriber, speak: Speak, tmp_path: Path
) -> None:
    """tiny.en spells some terms as it hears them; the corrected findings hold the terms."""
    spoken = (
        "Findings. A spiculated mass in the lingula. Small hiatal hernia. "
        "Enlarged mediastinal lymph nodes."
    )
    transcript = transcriber.transcribe(decode_audio(speak(spoken, tmp_path / "terms.wav")))
    findings = transcript.sections["findings"].lower()
    for term in ("spiculated mass", "hiatal hernia", "mediastinal lymph nodes"):
        assert term in findings, transcript.raw_text


def test_raw_text_is_whispers_own(chest_transcript: Transcript) -> None:
    assert "period" in chest_transcript.raw_text.lower()
    assert chest_transcript.raw_text != chest_transcript.text
    assert chest_transcript.model_name == "tiny.en"


def test_quality_signals_of_a_clean_dictation(chest_transcript: Transcript) -> None:
    quality = chest_transcript.quality
    assert -1.0 < quality.mean_logprob < 0.0
    assert 0.0 <= quality.no_speech_prob < 0.3
    assert quality.snr_db > 30.0  # synthesized speech with digital silence between words
    assert 0.8 * chest_transcript.duration < quality.speech_seconds <= chest_transcript.duration
    assert 0.6 < quality.confidence <= 1.0
    assert set(quality.to_dict()) == {
        "mean_logprob",
        "no_speech_prob",
        "snr_db",
        "speech_seconds",
        "confidence",
    }


def test_noise_lowers_snr_and_confidence(
    transcriber: Transcriber, chest_wav: Path, chest_transcript: Transcript, add_noise: AddNoise
) -> None:
    noisy = transcriber.transcribe(add_noise(decode_audio(chest_wav), 5.0))
    assert noisy.quality.snr_db == pytest.approx(5.0, abs=4.0)
    assert noisy.quality.confidence < chest_transcript.quality.confidence - 0.2
    assert 0.0 <= noisy.quality.confidence <= 1.0


def test_browser_webm_gives_the_same_sections(
    transcriber: Transcriber, chest_wav: Path, convert: Convert, chest_transcript: Transcript
) -> None:
    webm = transcriber.transcribe(decode_audio(convert(chest_wav, ".webm")))
    assert list(webm.sections) == ["findings", "impression"]
    assert "6 mm" in webm.sections["findings"]
    assert _wer(chest_transcript.text, webm.text) < 0.15


def test_jfk(transcriber: Transcriber, shared_data: Path) -> None:
    transcript = transcriber.transcribe(decode_audio(shared_data / "audio" / "jfk.flac"))
    assert _wer(JFK_REFERENCE, transcript.text) <= 0.10
    assert transcript.quality.confidence > 0.6
    assert 8.0 < transcript.quality.speech_seconds <= 11.0


LONG_FINDINGS = [
    "The lungs are clear.",
    "There is no pleural effusion.",
    "The heart is normal in size.",
    "There is no pericardial effusion.",
    "The thoracic aorta is normal in caliber.",
    "The central airways are patent.",
    "There is no pneumothorax.",
    "The thyroid gland is normal.",
    "The visualized upper abdomen is unremarkable.",
    "The bones show mild degenerative change.",
    "There is no axillary lymph node enlargement.",
    "The esophagus is normal.",
    "The pulmonary arteries are normal in size.",
    "There is no hiatal hernia.",
    "The liver and spleen are unremarkable.",
]


@pytest.fixture(scope="module")
def long_audio(speak: Speak, tmp_path_factory: pytest.TempPathFactory) -> DecodedAudio:
    spoken = "Findings. " + " ".join(LONG_FINDINGS) + " Impression. Normal chest CT."
    audio = decode_audio(speak(spoken, tmp_path_factory.mktemp("long") / "long.wav"))
    assert audio.duration > CHUNK_SECONDS + 5.0  # at least two chunks
    return audio


@pytest.fixture(scope="module")
def long_transcript(transcriber: Transcriber, long_audio: DecodedAudio) -> Transcript:
    return transcriber.transcribe(long_audio)


def test_long_dictation_is_transcribed_segment_by_segment(long_transcript: Transcript) -> None:
    transcript = long_transcript
    findings = transcript.sections["findings"]
    assert findings.startswith("The lungs are clear.")
    assert findings.endswith("are unremarkable.")  # the last chunk too
    assert _wer(" ".join(LONG_FINDINGS), findings) < 0.2  # nothing skipped at chunk edges
    assert transcript.sections["impression"] == "Normal chest CT."


def test_noise_without_speech_is_refused(transcriber: Transcriber) -> None:
    noise = np.random.default_rng(1).normal(0.0, 0.03, 5 * SAMPLE_RATE).astype(np.float32)
    with pytest.raises(NoSpeechError, match="no speech"):
        transcriber.transcribe(DecodedAudio(samples=noise, container="wav", codec="pcm_f32le"))


def test_chunks_decoded_at_once_give_the_same_text(
    long_audio: DecodedAudio, long_transcript: Transcript, tmp_path: Path
) -> None:
    """Two workers of one thread decode the chunks side by side, in order, to the same words."""
    parallel = Transcriber.load(
        spec=None, cache_dir=tmp_path, options=ModelOptions(cpu_threads=1, workers=2)
    )
    transcript = parallel.transcribe(long_audio)
    assert transcript.raw_text == long_transcript.raw_text
    assert transcript.quality.speech_seconds == long_transcript.quality.speech_seconds


def _seconds(chunks: list[list[tuple[int, int]]]) -> list[list[tuple[float, float]]]:
    return [[(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in chunk] for chunk in chunks]


def _samples(spans: list[tuple[float, float]]) -> list[tuple[int, int]]:
    return [(int(a * SAMPLE_RATE), int(b * SAMPLE_RATE)) for a, b in spans]


def test_a_short_last_chunk_joins_the_one_before() -> None:
    """Speech spans are cut into chunks of at most CHUNK_SECONDS at pauses; the last few
    seconds of a dictation join the chunk before when both fit in one Whisper window."""
    spans = _samples([(0.0, 16.0), (17.0, 36.0), (36.5, 40.0)])
    assert _seconds(list(_chunks(spans))) == [[(0.0, 16.0)], [(17.0, 36.0), (36.5, 40.0)]]
    long_tail = _samples([(0.0, 10.0), (11.0, 30.0), (31.0, 38.0)])
    assert len(list(_chunks(long_tail))) == 3  # 7 s is a chunk of its own
    too_long = _samples([(0.0, 9.0), (10.0, 30.0), (33.0, 38.5)])
    assert len(list(_chunks(too_long))) == 3  # 20 s, a pause, 5.5 s: 28.5 s in all
    assert _seconds(list(_chunks(_samples([(0.0, 5.0)])))) == [[(0.0, 5.0)]]


@pytest.mark.parametrize("second_look", [True, False])
def test_the_second_look_setting_decides_the_decoder_passes(
    second_look: bool, chest_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RADSCRIBE_WHISPER_SECOND_LOOK: on, each chest chunk gets a quick first look and then
    its beam search; off, the beam search alone (a third less CPU time on the tuning set,
    2026-11-30: bench/bench_transcribe.py --set tuning [--no-bias])."""
    from app.core.settings import load_settings
    from app.services.dictation import make_transcriber
    from app.speech import nbest

    settings = load_settings(
        env="development", data_dir=tmp_path, whisper_second_look=second_look, whisper_workers=1
    )
    transcriber = make_transcriber(settings)
    beams: list[int] = []
    real_generate = nbest.generate

    def counted(*args: object, **kwargs: object) -> object:
        beams.append(int(kwargs["beam_size"]))  # type: ignore[call-overload]
        return real_generate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(nbest, "generate", counted)
    transcript = transcriber.transcribe(decode_audio(chest_wav))
    assert "nodule" in transcript.text.lower()
    first_looks = beams.count(1)
    if second_look:
        assert first_looks >= 1 and len(beams) >= 2 * first_looks
    else:
        assert first_looks == 0 and beams
