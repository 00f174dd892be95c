"""Output heads: findings (with evidence attention), nodule detection, nodule refinement."""

from __future__ import annotations

import math

import torch
from torch import nn

from models.config import LOBES, NODULE_TYPES, ModelConfig

# Channels of the nodule map, per cell of the stride-8 or -16 feature map.
NODULE_OBJECTNESS = 0
NODULE_OFFSET = slice(1, 4)
"""Centre offset from the cell centre, in cells, through tanh (so within +-1 cell)."""
NODULE_LOG_DIAMETER = 4
"""log(diameter in mm)."""
NODULE_TYPE = slice(5, 5 + len(NODULE_TYPES))
NODULE_LOBE = slice(5 + len(NODULE_TYPES), 5 + len(NODULE_TYPES) + len(LOBES))
NODULE_CHANNELS = 5 + len(NODULE_TYPES) + len(LOBES)
NODULE_PRIOR = 0.01
"""Initial objectness probability (focal-loss style prior)."""
TYPICAL_NODULE_MM = 8.0


class FindingHead(nn.Module):
    """One learned query per finding attends over the fused visual tokens.

    The attention map (B, F, T) is the finding's evidence: which part of the chest
    drove it.  Logits come from the attended features plus [CLS], one linear read-out
    per finding.  Calibration (temperature and bias per finding, Platt scaling) is
    kept as buffers so it travels with the weights.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, f = config.d_model, config.num_findings
        self.queries = nn.Parameter(torch.randn(f, d) * d**-0.5)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.readout = nn.Parameter(torch.randn(f, d) * d**-0.5)
        self.readout_bias = nn.Parameter(torch.zeros(f))
        self.calibration_temperature: torch.Tensor
        self.calibration_bias: torch.Tensor
        self.register_buffer("calibration_temperature", torch.ones(f))
        self.register_buffer("calibration_bias", torch.zeros(f))
        self.scale = d**-0.5

    def forward(self, visual: torch.Tensor, cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, d), (B, d) -> logits (B, F), evidence attention (B, F, T)."""
        keys = self.key(visual)
        scores = torch.einsum("fd,btd->bft", self.queries.to(keys.dtype), keys) * self.scale
        attention = scores.softmax(dim=-1)
        pooled = torch.einsum("bft,btd->bfd", attention, self.value(visual))
        hidden = self.norm(pooled + cls[:, None, :])
        logits = (hidden * self.readout.to(hidden.dtype)).sum(-1) + self.readout_bias.to(
            hidden.dtype
        )
        return logits, attention

    def calibrate(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities from raw logits."""
        temperature = self.calibration_temperature.to(logits.dtype)
        return torch.sigmoid(logits / temperature + self.calibration_bias.to(logits.dtype))


class NoduleHead(nn.Module):
    """Dense nodule detection on the fine (stride-8 or -16) map: objectness, offset, size,
    type, lobe."""

    def __init__(self, *, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(in_channels, hidden, 3, padding=1),
            nn.GroupNorm(1, hidden),
            nn.GELU(),
            nn.Conv3d(hidden, NODULE_CHANNELS, 1),
        )
        final = self.body[3]
        assert isinstance(final, nn.Conv3d) and final.bias is not None
        nn.init.normal_(final.weight, std=0.01)
        nn.init.zeros_(final.bias)
        with torch.no_grad():
            final.bias[NODULE_OBJECTNESS] = math.log(NODULE_PRIOR / (1 - NODULE_PRIOR))
            final.bias[NODULE_LOG_DIAMETER] = math.log(TYPICAL_NODULE_MM)

    def forward(self, fine: torch.Tensor) -> torch.Tensor:
        """(B, C, fx, fy, fz) -> (B, NODULE_CHANNELS, fx, fy, fz)."""
        out: torch.Tensor = self.body(fine)
        return out


REFINER_OUTPUTS = 1 + len(NODULE_TYPES) + 3
"""log diameter (mm), type logits, centre correction (mm, RAS)."""


class NoduleRefiner(nn.Module):
    """Measures a candidate on its full-resolution patch (``preprocess.extract_patch``)."""

    def __init__(self, *, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for level in range(4):
            out = width * 2**level
            layers += [
                nn.Conv3d(channels, out, 3, stride=2 if level else 1, padding=1),
                nn.GroupNorm(1, out),
                nn.GELU(),
            ]
            channels = out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.out = nn.Linear(channels, REFINER_OUTPUTS)
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[0] = math.log(TYPICAL_NODULE_MM)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, 1, P, P, P) -> (N, REFINER_OUTPUTS)."""
        out: torch.Tensor = self.out(self.body(patches))
        return out
