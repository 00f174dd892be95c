"""Simulated dictations: what a radiologist's transcribed dictation of a report looks like.

Training data rarely comes with dictation audio, so a dictation is made from the
report: the radiologist dictates some of its sentences, and speech recognition at
a sampled signal-to-noise ratio drops, swaps and inserts words.  The word error
rate follows the SNR (about 3 % at 20 dB, 40 % at 10 dB, over 85 % at 0 dB), and
the quality vector the model's gate sees (confidence, no-speech probability, SNR)
is what the speech side would report for such a transcript.

Substituted and inserted words come from ``CONFUSION_WORDS``: radiology words, so
a noisy transcript can wrongly mention a finding, as real recognisers do.
Everything is seeded by (seed, study id): the same study gets the same dictation.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

import numpy as np

from models.networks.gating import DictationQuality

WER_MIDPOINT_DB = 8.0
WER_SLOPE_DB = 3.5
MIN_WER = 0.01
MAX_WER = 0.97
CLEAN_SNR_DB = (15.0, 40.0)
NOISY_SNR_DB = (-10.0, 15.0)
CONFUSION_WORDS: tuple[str, ...] = (
    "no", "not", "with", "without", "and", "the", "a", "of", "in", "is", "are", "there",
    "right", "left", "bilateral", "upper", "lower", "middle", "lobe", "lung", "lungs",
    "nodule", "nodules", "mass", "effusion", "pleural", "pericardial", "consolidation",
    "opacity", "atelectasis", "emphysema", "fibrosis", "fibrotic", "bronchiectasis",
    "thickening", "septal", "peribronchial", "mosaic", "attenuation", "cardiomegaly",
    "calcification", "coronary", "aortic", "hernia", "hiatal", "lymph", "node", "nodes",
    "enlarged", "catheter", "pacemaker", "stent", "port", "mm", "small", "large", "mild",
    "moderate", "seen", "noted", "present", "stable", "new", "normal", "heart", "size",
)  # fmt: skip
_SENTENCES = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class SimulatedDictation:
    text: str
    quality: DictationQuality
    word_accuracy: float
    """Dictated words recognised, over dictated plus inserted words (the gate's teaching signal)."""


def word_error_rate(snr_db: float) -> float:
    """Expected word error rate of speech recognition at this SNR."""
    rate = 1.0 / (1.0 + math.exp((snr_db - WER_MIDPOINT_DB) / WER_SLOPE_DB))
    return min(max(rate, MIN_WER), MAX_WER)


def study_rng(seed: int, study_id: str, purpose: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{purpose}:{study_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def sample_snr(rng: np.random.Generator, noisy_fraction: float) -> float:
    low, high = NOISY_SNR_DB if rng.random() < noisy_fraction else CLEAN_SNR_DB
    return float(rng.uniform(low, high))


def corrupt(words: list[str], wer: float, rng: np.random.Generator) -> tuple[list[str], int, int]:
    """Apply recognition errors; returns the words, how many originals survived and insertions."""
    out: list[str] = []
    kept = inserted = 0
    for word in words:
        if rng.random() >= wer:
            out.append(word)
            kept += 1
            continue
        kind = rng.random()
        if kind < 0.4:
            continue  # deletion
        replacement = str(CONFUSION_WORDS[int(rng.integers(len(CONFUSION_WORDS)))])
        if kind < 0.8:
            out.append(replacement)  # substitution
        else:
            out.extend([word, replacement])  # insertion
            kept += 1
            inserted += 1
    return out, kept, inserted


def simulate_dictation(
    report: str,
    rng: np.random.Generator,
    *,
    snr_db: float,
    sentence_keep: float = 0.75,
) -> SimulatedDictation:
    """A transcript of a dictation of ``report`` recognised at ``snr_db``."""
    sentences = [s for s in _SENTENCES.split(report.strip()) if s]
    chosen = [s for s in sentences if rng.random() < sentence_keep] or sentences[:1]
    words = " ".join(chosen).lower().replace(",", " ").split()
    wer = word_error_rate(snr_db)
    heard, kept, inserted = corrupt(words, wer, rng)
    if not heard:
        heard = [str(CONFUSION_WORDS[int(rng.integers(len(CONFUSION_WORDS)))])]
    accuracy = kept / max(len(words) + inserted, 1)
    confidence = float(np.clip(1.0 - wer + rng.normal(0.0, 0.05), 0.0, 1.0))
    no_speech = float(
        np.clip(1.0 / (1.0 + math.exp((snr_db - 2.0) / 3.0)) + rng.normal(0, 0.03), 0, 1)
    )
    return SimulatedDictation(
        text=" ".join(heard),
        quality=DictationQuality(confidence=confidence, no_speech_prob=no_speech, snr_db=snr_db),
        word_accuracy=float(accuracy),
    )
