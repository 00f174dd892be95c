"""Deployment forms: INT8 (CPU) and bf16 stay close to fp32; the MONAI-free encoder is the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_checkpoint
from models.config import tiny_config
from models.inference import Drafter, StudyInput
from models.networks.image_encoder import ImageEncoder

INT8_TOLERANCE = 0.02
BF16_TOLERANCE = 0.05
TEXTS = [
    ("Persistent cough, 30 pack-years.", "Solid nodule right upper lobe, 8 mm."),
    (None, "No effusion. Mild emphysema."),
    ("Follow-up of known nodule.", None),
    (None, None),
    ("Dyspnoea; history of heart failure.", "Cardiomegaly and small bilateral effusions."),
    ("Trauma.", "Rib fractures, no pneumothorax."),
]


def _probabilities(drafter: Drafter, studies: list[Path]) -> torch.Tensor:
    inputs = [
        StudyInput(image=study, emr_text=emr, transcript=dictation)
        for study, (emr, dictation) in zip(studies, TEXTS[: len(studies)], strict=True)
    ]
    results = drafter.draft_batch(inputs)
    return torch.tensor([list(r.probabilities.values()) for r in results])


def test_int8_probabilities_stay_within_tolerance_of_fp32(
    tiny_checkpoint: Path, chest_studies: list[Path]
) -> None:
    fp32 = Drafter(load_checkpoint(tiny_checkpoint), precision="fp32")
    int8 = Drafter(load_checkpoint(tiny_checkpoint), precision="int8")
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    quantized = [m for m in int8.model.modules() if isinstance(m, DynamicQuantizedLinear)]
    assert len(quantized) > 20  # really quantized: text encoder, fusion and heads
    a, b = _probabilities(fp32, chest_studies), _probabilities(int8, chest_studies)
    difference = float((a - b).abs().max())
    assert difference < INT8_TOLERANCE, difference
    assert difference > 0.0  # a different computation, not the same model twice


def test_bf16_probabilities_stay_close_to_fp32(
    tiny_checkpoint: Path, chest_studies: list[Path]
) -> None:
    fp32 = Drafter(load_checkpoint(tiny_checkpoint), precision="fp32")
    bf16 = Drafter(load_checkpoint(tiny_checkpoint), precision="bf16")
    a, b = _probabilities(fp32, chest_studies[:2]), _probabilities(bf16, chest_studies[:2])
    assert float((a - b).abs().max()) < BF16_TOLERANCE


def test_monai_and_plain_torch_resnets_share_weights_and_outputs() -> None:
    pytest.importorskip("monai")
    config = tiny_config(image_encoder="resnet18", image_width=0.25, stem_kernel=7)
    torch.manual_seed(0)
    monai_encoder = ImageEncoder(
        tiny_config(**{**config.to_json(), "image_backend": "monai"})
    ).eval()
    torch_encoder = ImageEncoder(
        tiny_config(**{**config.to_json(), "image_backend": "torch"})
    ).eval()
    assert type(monai_encoder.trunk).__name__ == "_MonaiResNetTrunk"
    assert type(torch_encoder.trunk).__name__ == "ResNet3dFeatures"
    state = monai_encoder.state_dict()
    assert set(state) == set(torch_encoder.state_dict())
    torch_encoder.load_state_dict(state)
    image = torch.randn(1, 1, 64, 64, 48)
    with torch.inference_mode():
        tokens_a, fine_a = monai_encoder(image)
        tokens_b, fine_b = torch_encoder(image)
    assert torch.allclose(tokens_a, tokens_b, atol=1e-5)
    assert torch.allclose(fine_a, fine_b, atol=1e-5)


def test_the_network_builds_and_runs_without_monai_or_transformers_imported() -> None:
    """What the GPU box has: torch only.  Block both packages and build the image path."""
    code = """
import sys
sys.modules["monai"] = None
sys.modules["transformers"] = None
import torch
from models.config import ModelConfig
from models.networks.image_encoder import ImageEncoder
from models.networks.fusion import Fusion
encoder = ImageEncoder(ModelConfig(image_backend="auto", image_width=0.125)).eval()
assert type(encoder.trunk).__name__ == "ResNet3dFeatures"
tokens, fine = encoder(torch.randn(1, 1, 64, 64, 64))
print(tuple(tokens.shape))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 100, 256)"
