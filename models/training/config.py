"""``TrainConfig``: a training run as data (YAML loaded into a pydantic model).

Example (``configs/train/shipped.yaml`` is the recipe of the shipped weights)::

    image_encoder: resnet18-half
    text_encoder: all-MiniLM-L6-v2
    fusion_method: co-attention
    batch_size: 16
    learning_rate: 3.0e-4
    epochs: 20
    amp: bf16
    gradient_accumulate_steps: 1
    modality_dropout: 0.3
    seed: 0
    data:
      layout: ctrate
      root: /data/ct-rate

Unknown keys are refused (a typo must not silently fall back to a default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.config import FUSION_METHODS, TEXT_ENCODERS, ModelConfig
from models.preprocess import PreprocessSpec

AmpMode = Literal["bf16", "fp16", "off"]
Layout = Literal["ctrate", "synthetic", "hospital"]
DecisionRule = Literal["specificity", "sensitivity", "youden"]

IMAGE_ENCODER_ALIASES: dict[str, tuple[str, float | None]] = {
    "resnet10": ("resnet10", None),
    "resnet18": ("resnet18", None),
    "resnet34": ("resnet34", None),
    "resnet10-half": ("resnet10", 0.5),
    "resnet18-half": ("resnet18", 0.5),
    "resnet34-half": ("resnet34", 0.5),
    "resnet10-quarter": ("resnet10", 0.25),
    "resnet18-quarter": ("resnet18", 0.25),
    "densenet121": ("monai-densenet121", None),
    "monai-densenet121": ("monai-densenet121", None),
    "seresnet50": ("monai-seresnet50", None),
    "monai-seresnet50": ("monai-seresnet50", None),
}
"""User-facing encoder names -> (ModelConfig.image_encoder, forced width or None)."""
DEFAULT_IMAGE_WIDTH = 1.0
"""Width of a plain ``resnet18`` (a suffix such as ``-half`` overrides ``image_width``)."""


class ConfigError(ValueError):
    """A training configuration that cannot be used (message says which key and why)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where the studies are and how to read them."""

    layout: Layout = "ctrate"
    root: Path | None = None
    """CT-RATE: the folder holding dataset/ (or train/, valid/ directly); hospital: the export;
    synthetic: where to write the cache (studies are generated from seeds)."""
    image_dir: Path | None = None
    """CT-RATE: the folder with train/ and valid/ volume folders (default ROOT/dataset)."""
    text_dir: Path | None = None
    """CT-RATE: the folder with *_reports.csv (default: radiology_text_reports under ROOT)."""
    label_dir: Path | None = None
    """CT-RATE: the folder with the multi-abnormality label CSVs."""
    metadata_dir: Path | None = None
    volumes_in_hu: bool = True
    """CT-RATE's fixed volumes are already HU; False applies the metadata's rescale slope and
    intercept."""
    cache_dir: Path | None = None
    """Preprocessed volumes and text embeddings (default: RUN_DIR/cache)."""
    train_split: str = "train"
    valid_split: str = "valid"
    valid_fraction: float = Field(default=0.1, ge=0.0, lt=0.5)
    """Hospital exports without a split column: this fraction (by study hash) validates."""
    synthetic_train: int = Field(default=64, ge=1)
    synthetic_valid: int = Field(default=16, ge=1)
    synthetic_test: int = Field(default=16, ge=0)
    synthetic_coarse_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of synthetic train and valid studies acquired on a matrix smaller than 512
    (the test split stays at 512, comparable between runs)."""
    limit: int | None = Field(default=None, ge=1)
    """Use at most this many studies per split (smoke runs)."""
    cache_workers: int = Field(default=2, ge=1)
    grow_train: bool = False
    """Train on the train studies cached so far and take in new ones at every epoch, while
    another process is still generating them (``models.training.recipe``)."""


class ThresholdConfig(_Strict):
    """How per-finding operating points are picked on the validation split."""

    decision_rule: DecisionRule = "specificity"
    decision_target: float = Field(default=0.9, gt=0.0, lt=1.0)
    """Specificity (or sensitivity) the decision threshold aims at."""
    verify_sensitivity: float = Field(default=0.95, gt=0.0, le=1.0)
    """The lower "verify" threshold keeps at least this sensitivity."""


class DictationConfig(_Strict):
    """How training dictations are simulated from report text (models.training.dictation)."""

    present_probability: float = Field(default=0.6, ge=0.0, le=1.0)
    emr_present_probability: float = Field(default=0.85, ge=0.0, le=1.0)
    sentence_keep: float = Field(default=0.75, gt=0.0, le=1.0)
    noisy_fraction: float = Field(default=0.35, ge=0.0, le=1.0)
    gate_supervision: float = Field(default=0.2, ge=0.0)
    """Weight of the auxiliary loss teaching the dictation gate the transcript's word accuracy."""
    gate_target_power: float = Field(default=1.0, gt=0.0)
    """The gate learns word accuracy to this power: 2 is the chance that a two-word finding
    phrase ("pleural effusion", "no nodule") comes through intact, which is what trusting a
    dictated statement needs."""


class TrainConfig(_Strict):
    """One training run.  ``model_config_()`` turns it into the network's ``ModelConfig``."""

    image_encoder: str = "resnet18-half"
    image_width: float | None = Field(default=None, gt=0.0, le=2.0)
    text_encoder: str = "all-MiniLM-L6-v2"
    fusion_method: str = "co-attention"
    model: dict[str, Any] = Field(default_factory=dict)
    """Further ``ModelConfig`` fields (d_model, layers, heads, token_grid, ...)."""
    preprocess: dict[str, Any] = Field(default_factory=dict)
    """``PreprocessSpec`` fields (grid_shape, grid_spacing_mm, ...)."""
    batch_size: int = Field(default=8, ge=1)
    learning_rate: float = Field(default=3e-4, gt=0.0)
    weight_decay: float = Field(default=0.05, ge=0.0)
    epochs: int = Field(default=20, ge=1)
    warmup_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    amp: AmpMode = "bf16"
    gradient_accumulate_steps: int = Field(default=1, ge=1)
    grad_clip: float = Field(default=1.0, gt=0.0)
    modality_dropout: float = Field(default=0.3, ge=0.0, lt=1.0)
    seed: int = 0
    early_stopping_patience: int = Field(default=5, ge=1)
    time_limit_minutes: float | None = Field(default=None, gt=0.0)
    """Stop (with a resumable checkpoint) before this much wall time has passed."""
    num_workers: int = Field(default=0, ge=0)
    preload: Literal["auto", "yes", "no"] = "auto"
    """Hold the cached training volumes on the GPU (auto: when they fit in a quarter of it)."""
    augment: bool = True
    contrastive_epochs: int = Field(default=0, ge=0)
    """Optional first stage: CLIP-style alignment of image and report embeddings."""
    emr_mismatch: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Training only: probability that a study is given another study's EMR text (as a
    misfiled order would be), so the model does not take the order's word over the image."""
    nodule_loss_weight: float = Field(default=1.0, ge=0.0)
    image_only_loss_weight: float = Field(default=0.0, ge=0.0)
    """Also fuse each study's visual tokens with both texts hidden and add this weight times
    that prediction's findings loss, so the image pathway learns even when a text answers."""
    refiner_batch: int = Field(default=16, ge=0)
    """Nodule patches per step for the refiner (0: do not train it)."""
    device: str = "auto"
    run_dir: Path = Path("runs/radscribe")
    model_version: str = "radscribe-dev"
    data: DataConfig = Field(default_factory=DataConfig)
    thresholds: ThresholdConfig = Field(default_factory=ThresholdConfig)
    dictation: DictationConfig = Field(default_factory=DictationConfig)

    @field_validator("image_encoder")
    @classmethod
    def _known_encoder(cls, value: str) -> str:
        if value not in IMAGE_ENCODER_ALIASES:
            raise ValueError(f"image_encoder must be one of {sorted(IMAGE_ENCODER_ALIASES)}")
        return value

    @field_validator("text_encoder")
    @classmethod
    def _known_text_encoder(cls, value: str) -> str:
        if value not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}")
        return value

    @field_validator("fusion_method")
    @classmethod
    def _known_fusion(cls, value: str) -> str:
        if value not in FUSION_METHODS:
            raise ValueError(f"fusion_method must be one of {FUSION_METHODS}")
        return value

    @model_validator(mode="after")
    def _buildable(self) -> TrainConfig:
        try:
            self.model_config_()
            self.preprocess_spec()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"model or preprocess settings are invalid: {exc}") from None
        return self

    def model_config_(self) -> ModelConfig:
        """The network's configuration (name ends in _ to keep clear of pydantic's model_config)."""
        encoder, forced_width = IMAGE_ENCODER_ALIASES[self.image_encoder]
        width = forced_width or self.image_width or DEFAULT_IMAGE_WIDTH
        values: dict[str, Any] = {
            "image_encoder": encoder,
            "image_width": width,
            "text_encoder": self.text_encoder,
            "fusion_method": self.fusion_method,
            "modality_dropout": self.modality_dropout,
        }
        if self.text_encoder == "tiny-random":
            values["text_dim"] = 32
        values.update(self.model)
        if "token_grid" in values:
            values["token_grid"] = tuple(values["token_grid"])
        return ModelConfig(**values)

    def preprocess_spec(self) -> PreprocessSpec:
        values = dict(self.preprocess)
        for key in ("grid_shape", "grid_spacing_mm", "hu_window", "patch_shape"):
            if key in values:
                values[key] = tuple(values[key])
        return PreprocessSpec(**values)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        """A copy with top-level keys replaced (validated again)."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return TrainConfig.model_validate(data)


def load_train_config(path: Path) -> TrainConfig:
    """Read and validate a YAML training config; errors name the file and the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(raw).__name__}")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
