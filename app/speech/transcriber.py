"""Whisper (faster-whisper) with the radiology prompt: audio in, :class:`Transcript` out.

Dictations are transcribed segment by segment: voice-activity detection (the
Silero model bundled with faster-whisper) finds the speech, the pauses between
phrases cut it into chunks of at most :data:`CHUNK_SECONDS`, and each chunk is
decoded on its own with the vocabulary prompt.  Whisper's own 30 s windowing
skips words at window edges, and a prompt given only to the first window fades
after it; short, pause-aligned chunks with the prompt on each avoid both.  The
quality signals of the chunks are combined, weighted by duration.

A :class:`Transcriber` holds the process's one loaded model; a worker builds it
once with :meth:`Transcriber.load`, never per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.speech.audio import SAMPLE_RATE, AudioArray, DecodedAudio, NoSpeechError
from app.speech.lexicon import VOCABULARY_PROMPT
from app.speech.model import ModelOptions, load_model, locate_model
from app.speech.postprocess import correct_transcript
from app.speech.quality import estimate_snr_db, transcript_confidence
from app.speech.transcript import Transcript, TranscriptQuality

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

LANGUAGE = "en"
BEAM_SIZE = 5
CHUNK_SECONDS = 28.0
"""Below Whisper's 30 s window, so a chunk is decoded in one pass."""
PAUSE_MS = 300
"""A pause this long between phrases is a place to cut."""
SPEECH_PAD_MS = 200


@dataclass(frozen=True, slots=True)
class RawTranscription:
    """Whisper's output before any correction."""

    text: str
    mean_logprob: float
    no_speech_prob: float
    speech_seconds: float


class Transcriber:
    """Transcribes dictations with one loaded Whisper model."""

    def __init__(
        self,
        *,
        model: WhisperModel,
        model_name: str,
        prompt: str | None = VOCABULARY_PROMPT,
        beam_size: int = BEAM_SIZE,
    ) -> None:
        self._model = model
        self.model_name = model_name
        self._prompt = prompt
        self._beam_size = beam_size

    @classmethod
    def load(
        cls,
        *,
        spec: str | Path | None,
        cache_dir: Path,
        options: ModelOptions | None = None,
        prompt: str | None = VOCABULARY_PROMPT,
    ) -> Transcriber:
        """Locate (and if need be assemble) the model and load it once for this process."""
        location = locate_model(spec, cache_dir=cache_dir)
        model = load_model(location, options or ModelOptions())
        return cls(model=model, model_name=location.name, prompt=prompt)

    def transcribe(self, audio: DecodedAudio) -> Transcript:
        """Transcribe and correct one dictation; :class:`NoSpeechError` if no words are found."""
        started = time.perf_counter()
        raw = self.transcribe_raw(audio)
        corrected = correct_transcript(raw.text)
        snr_db = estimate_snr_db(audio.samples)
        quality = TranscriptQuality(
            mean_logprob=raw.mean_logprob,
            no_speech_prob=raw.no_speech_prob,
            snr_db=snr_db,
            speech_seconds=raw.speech_seconds,
            confidence=transcript_confidence(
                mean_logprob=raw.mean_logprob, no_speech_prob=raw.no_speech_prob, snr_db=snr_db
            ),
        )
        log.info(
            "transcribed %.1f s of audio in %.2f s with %s (confidence %.2f)",
            audio.duration,
            time.perf_counter() - started,
            self.model_name,
            quality.confidence,
        )
        return Transcript(
            raw_text=raw.text,
            text=corrected.text,
            sections=dict(corrected.sections),
            quality=quality,
            model_name=self.model_name,
            duration=audio.duration,
        )

    def transcribe_raw(self, audio: DecodedAudio) -> RawTranscription:
        """Whisper's words and quality signals, chunk by chunk, without corrections."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        vad = VadOptions(
            min_silence_duration_ms=PAUSE_MS,
            speech_pad_ms=SPEECH_PAD_MS,
            max_speech_duration_s=CHUNK_SECONDS,
        )
        speech = get_speech_timestamps(audio.samples, vad)
        speech_seconds = sum(span["end"] - span["start"] for span in speech) / SAMPLE_RATE
        texts: list[str] = []
        weighted_logprob = 0.0
        weighted_no_speech = 0.0
        total_weight = 0.0
        for chunk in _chunks(audio.samples, speech):
            segments, _ = self._model.transcribe(
                chunk,
                language=LANGUAGE,
                beam_size=self._beam_size,
                initial_prompt=self._prompt,
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,
            )
            for segment in segments:
                text = segment.text.strip()
                if not text:
                    continue
                weight = max(segment.end - segment.start, 0.01)
                texts.append(text)
                weighted_logprob += weight * segment.avg_logprob
                weighted_no_speech += weight * segment.no_speech_prob
                total_weight += weight
        if not texts:
            raise NoSpeechError("no speech was recognised in the recording")
        return RawTranscription(
            text=" ".join(texts),
            mean_logprob=weighted_logprob / total_weight,
            no_speech_prob=weighted_no_speech / total_weight,
            speech_seconds=speech_seconds,
        )


def _chunks(samples: AudioArray, speech: list[dict[str, int]]) -> Iterator[AudioArray]:
    """Consecutive speech spans joined into chunks of at most CHUNK_SECONDS, cut at pauses."""
    limit = int(CHUNK_SECONDS * SAMPLE_RATE)
    start: int | None = None
    end = 0
    for span in speech:
        if start is not None and span["end"] - start > limit:
            yield samples[start:end]
            start = None
        if start is None:
            start = span["start"]
        end = span["end"]
    if start is not None:
        yield samples[start:end]
