"""What a transcription returns: plain frozen data, no framework types."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class TranscriptQuality:
    """How far to trust a transcript; stored with it and handed to the fusion model.

    ``mean_logprob`` is Whisper's mean token log-probability (0 is certain),
    ``no_speech_prob`` its probability that the audio holds no speech, ``snr_db``
    the estimated signal-to-noise ratio of the recording, ``speech_seconds`` how
    much of it is speech, and ``confidence`` all of these in one number in [0, 1].
    """

    mean_logprob: float
    no_speech_prob: float
    snr_db: float
    speech_seconds: float
    confidence: float

    def to_dict(self) -> dict[str, float]:
        return {key: round(value, 4) for key, value in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class Transcript:
    """One dictation transcribed: Whisper's words, the corrected report text and its sections."""

    raw_text: str
    text: str
    sections: dict[str, str]
    quality: TranscriptQuality
    model_name: str
    duration: float
