"""Dynamic modality weighting: quality estimates in, one weight per modality out.

Inputs per study:

* image: ``ImageQuality.to_vector()`` (noise, lung volume, truncation, coverage,
  metal, slice spacing);
* EMR text: present, log length;
* dictation: present, log length, transcription confidence, no-speech probability,
  SNR (``dictation_quality_vector``).

The gate's weights w in (0, 1) enter attention as a log(w) bias on every key of
that modality, which multiplies the modality's share of attention by w.  An absent
modality gets w = 0 exactly (a -inf bias: masked), whatever the network says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.config import DICTATION_QUALITY_DIM, IMAGE_QUALITY_DIM, ModelConfig

SNR_SCALE_DB = 40.0
LENGTH_SCALE = math.log(512.0)


@dataclass(frozen=True)
class DictationQuality:
    """What the speech side knows about a transcript's trustworthiness."""

    confidence: float
    """Mean token probability (exp of Whisper's avg_logprob), 0..1."""
    no_speech_prob: float
    snr_db: float


def dictation_quality_vector(quality: DictationQuality | None) -> list[float]:
    if quality is None:
        return [0.0, 1.0, 0.0]
    return [
        min(max(quality.confidence, 0.0), 1.0),
        min(max(quality.no_speech_prob, 0.0), 1.0),
        min(max(quality.snr_db / SNR_SCALE_DB, -1.0), 2.0),
    ]


class ModalityGate(nn.Module):
    """Small MLP: quality features -> (B, 3) weights for image, EMR, dictation."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        inputs = IMAGE_QUALITY_DIM + 2 + 2 + DICTATION_QUALITY_DIM
        self.net = nn.Sequential(
            nn.Linear(inputs, config.gate_hidden),
            nn.GELU(),
            nn.Linear(config.gate_hidden, 3),
        )
        final = self.net[2]
        assert isinstance(final, nn.Linear)
        nn.init.zeros_(final.weight)
        nn.init.constant_(final.bias, 2.0)  # start near w = 0.88 for every modality

    def forward(
        self,
        *,
        image_quality: torch.Tensor,
        emr_present: torch.Tensor,
        emr_length: torch.Tensor,
        dictation_present: torch.Tensor,
        dictation_length: torch.Tensor,
        dictation_quality: torch.Tensor,
    ) -> torch.Tensor:
        emr_on = emr_present.to(image_quality.dtype)
        dictation_on = dictation_present.to(image_quality.dtype)
        features = torch.cat(
            [
                image_quality,
                emr_on[:, None],
                (torch.log1p(emr_length.to(image_quality.dtype)) / LENGTH_SCALE * emr_on)[:, None],
                dictation_on[:, None],
                (
                    torch.log1p(dictation_length.to(image_quality.dtype))
                    / LENGTH_SCALE
                    * dictation_on
                )[:, None],
                dictation_quality * dictation_on[:, None],
            ],
            dim=1,
        )
        weights = torch.sigmoid(self.net(features))
        presence = torch.stack(
            [torch.ones_like(emr_on), emr_on, dictation_on], dim=1
        )  # the image is always there
        return weights * presence


def log_weight_bias(weights: torch.Tensor) -> torch.Tensor:
    """log(w) with log(0) = -inf (masked), for attention biases."""
    return torch.where(weights > 0, torch.log(weights.clamp_min(1e-12)), float("-inf"))
