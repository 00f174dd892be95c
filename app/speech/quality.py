"""Signal quality of a recording and one confidence for a transcript.

The SNR estimate needs no model: the recording is cut into 30 ms frames; the
quietest frames (pauses between words) give the noise power and the louder half
gives speech plus noise.  It is an estimate (it reads low for speech without
pauses and is capped for digitally silent pauses), good enough to tell a clean
dictation from one made next to a running scanner.
"""

from __future__ import annotations

import math

import numpy as np

from app.speech.audio import AudioArray, frame_rms_dbfs

NOISE_PERCENTILE = 10.0
SPEECH_PERCENTILE = 50.0
SNR_MIN_DB = -10.0
SNR_MAX_DB = 60.0
# Below SNR_POOR_DB a recording is too noisy to trust; from SNR_GOOD_DB on noise no longer matters.
SNR_POOR_DB = 0.0
SNR_GOOD_DB = 25.0
SNR_WEIGHT = 0.5  # how much of the confidence bad noise can take away


def estimate_snr_db(samples: AudioArray) -> float:
    """Signal-to-noise ratio of a recording in dB, clipped to [SNR_MIN_DB, SNR_MAX_DB]."""
    levels = frame_rms_dbfs(samples)
    if levels.size < 2:
        return SNR_MIN_DB
    power = np.power(10.0, levels.astype(np.float64) / 10.0)
    noise_cut = np.percentile(power, NOISE_PERCENTILE)
    speech_cut = np.percentile(power, SPEECH_PERCENTILE)
    noise = float(np.mean(power[power <= noise_cut]))
    speech_and_noise = float(np.mean(power[power >= speech_cut]))
    speech = speech_and_noise - noise
    if speech <= 0.0:
        return SNR_MIN_DB
    snr = 10.0 * math.log10(speech / max(noise, 1e-12))
    return float(min(max(snr, SNR_MIN_DB), SNR_MAX_DB))


def transcript_confidence(*, mean_logprob: float, no_speech_prob: float, snr_db: float) -> float:
    """One number in [0, 1]: token certainty x speech presence x recording quality.

    ``exp(mean_logprob)`` is the geometric mean of the token probabilities; it is
    scaled by the probability that there is speech at all and by up to
    ``SNR_WEIGHT`` for a noisy recording.
    """
    token_certainty = math.exp(min(mean_logprob, 0.0))
    speech = 1.0 - min(max(no_speech_prob, 0.0), 1.0)
    clean = (snr_db - SNR_POOR_DB) / (SNR_GOOD_DB - SNR_POOR_DB)
    recording = 1.0 - SNR_WEIGHT * (1.0 - min(max(clean, 0.0), 1.0))
    return float(min(max(token_certainty * speech * recording, 0.0), 1.0))
