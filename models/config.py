"""``ModelConfig``: everything needed to rebuild the network (stored in every checkpoint)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from models.findings import NUM_FINDINGS

FusionMethod = Literal["co-attention", "concat", "gated"]
FUSION_METHODS: tuple[str, ...] = ("co-attention", "concat", "gated")
IMAGE_ENCODERS: tuple[str, ...] = (
    "resnet10",
    "resnet18",
    "resnet34",
    "monai-seresnet50",
    "monai-densenet121",
)
IMAGE_BACKENDS: tuple[str, ...] = ("auto", "monai", "torch")
TEXT_ENCODERS: tuple[str, ...] = ("all-MiniLM-L6-v2", "tiny-random")
NODULE_TYPES: tuple[str, ...] = ("solid", "part-solid", "ground-glass")
LOBES: tuple[str, ...] = (
    "right upper lobe",
    "right middle lobe",
    "right lower lobe",
    "left upper lobe",
    "left lower lobe",
)
MODALITIES: tuple[str, ...] = ("image", "emr", "dictation")
IMAGE_QUALITY_DIM = 6
"""Length of ``models.preprocess.ImageQuality.to_vector()``."""
DICTATION_QUALITY_DIM = 3
"""Transcription confidence, no-speech probability, SNR (``dictation_quality_vector``)."""


NODULE_STRIDES = (8, 16)
"""Strides of the feature maps a nodule head can read (ResNet ``layer2``, ``layer3``)."""


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture hyper-parameters.  Defaults are the CPU-friendly production shape."""

    # image encoder: a 3D CNN whose last feature map becomes visual tokens
    image_encoder: str = "resnet18"
    image_backend: str = "auto"
    """``monai`` builds MONAI's network, ``torch`` the plain-torch twin (same weights), ``auto``
    MONAI when importable.  Only the ResNet family has a torch twin."""
    image_width: float = 0.5
    """Channel multiplier for the ResNet family (0.5: 8 M parameters for ResNet-18)."""
    stem_kernel: int = 7
    token_grid: tuple[int, int, int] = (5, 5, 4)
    """Visual tokens per axis (R, A, S): the feature map is average-pooled to this."""
    # fusion transformer
    d_model: int = 256
    layers: int = 4
    heads: int = 8
    ffn_mult: int = 4
    dropout: float = 0.1
    fusion_method: str = "co-attention"
    # text encoder (one shared encoder for EMR text and dictation)
    text_encoder: str = "all-MiniLM-L6-v2"
    text_dim: int = 384
    text_trainable: bool = False
    emr_max_tokens: int = 128
    dictation_max_tokens: int = 256
    # modality gating
    gate_hidden: int = 32
    dictation_gate_from_quality: bool = False
    """The dictation's weight is what the gate predicts from the speech quality alone: the
    findings loss does not move it (training teaches it the transcript's word accuracy)."""
    modality_dropout: float = 0.3
    """Training only: probability of hiding each text modality from a study."""
    # heads
    num_findings: int = NUM_FINDINGS
    max_nodules: int = 10
    nodule_stride: int = 16
    """Stride of the map the nodule head reads: 16 (``layer3``) or 8 (``layer2``, finer cells
    that keep small nodules; ResNets only)."""
    refiner_width: int = 8

    def __post_init__(self) -> None:
        if self.nodule_stride not in NODULE_STRIDES:
            raise ValueError(f"nodule_stride must be one of {NODULE_STRIDES}")
        if self.fusion_method not in FUSION_METHODS:
            raise ValueError(f"fusion_method must be one of {FUSION_METHODS}")
        if self.image_encoder not in IMAGE_ENCODERS:
            raise ValueError(f"image_encoder must be one of {IMAGE_ENCODERS}")
        if self.image_backend not in IMAGE_BACKENDS:
            raise ValueError(f"image_backend must be one of {IMAGE_BACKENDS}")
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}")
        if self.d_model % self.heads:
            raise ValueError("d_model must be divisible by heads")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError("modality_dropout must be in [0, 1)")
        if self.num_findings != NUM_FINDINGS:
            raise ValueError(f"num_findings must be {NUM_FINDINGS} (models.findings)")

    @property
    def num_visual_tokens(self) -> int:
        gx, gy, gz = self.token_grid
        return gx * gy * gz

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        values = dict(data)
        if "token_grid" in values:
            values["token_grid"] = tuple(values["token_grid"])
        return cls(**values)


def tiny_config(**overrides: Any) -> ModelConfig:
    """A tiny network for tests: fast on CPU, same code paths as production."""
    base: dict[str, Any] = {
        "image_encoder": "resnet10",
        "image_backend": "torch",
        "image_width": 0.125,
        "stem_kernel": 3,
        "token_grid": (2, 2, 2),
        "d_model": 32,
        "layers": 2,
        "heads": 4,
        "ffn_mult": 2,
        "dropout": 0.0,
        "text_encoder": "tiny-random",
        "text_dim": 32,
        "emr_max_tokens": 32,
        "dictation_max_tokens": 48,
        "gate_hidden": 8,
        "max_nodules": 4,
        "refiner_width": 4,
    }
    base.update(overrides)
    return ModelConfig(**base)
