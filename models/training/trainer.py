"""``MultiModalTrainer``: fit the Radscribe model to a data set, resumably, on CPU, GPU or DDP.

::

    trainer = MultiModalTrainer(load_train_config(Path("train.yaml")))
    result = trainer.train(image_dir=..., text_dir=..., label_dir=..., epochs=20)

One run lives in ``run_dir``:

    cache/                 preprocessed volumes (memmap) and text embeddings
    checkpoints/epoch-NNN.{safetensors,json,optim.pt}   every epoch: weights, sidecar
                           (model config, preprocessing spec, thresholds, metrics) and
                           optimizer state
    checkpoints/best.*     the epoch with the lowest validation loss
    resume.pt              everything needed to continue (also mid-epoch)
    metrics.csv, curves.png

Each epoch: train (mixed precision on CUDA, gradient accumulation, modality
dropout, refiner on nodule patches, the dictation gate taught the transcript's
word accuracy), validate, fit Platt calibration and pick per-finding decision and
verify thresholds on validation, checkpoint, and stop early when validation loss
has not improved for ``early_stopping_patience`` epochs.  ``time_limit_minutes``
stops cleanly with ``resume.pt`` so a long run can go in chunks.

Under ``torchrun`` each process takes its share of every epoch's order and
gradients are averaged by DDP; rank 0 validates, writes and decides.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.calibration import fit_platt
from models.checkpoint import save_checkpoint
from models.config import ModelConfig
from models.losses import NoduleTarget, nodule_cell_targets, radscribe_loss, refiner_loss
from models.networks.model import ModelBatch, ModelOutput, RadscribeModel
from models.training import metrics, nodules
from models.training.config import TrainConfig, load_train_config
from models.training.data import (
    StudyTable,
    TrainingBatch,
    assign_texts,
    augment,
    batches,
    grid_patches,
)
from models.training.sources import open_split
from models.training.text_cache import TextEmbeddingStore, ensure_texts, text_encoder_id
from models.training.thresholds import OperatingPoints, choose_operating_points
from models.training.volume_cache import CachedSplit

logger = logging.getLogger(__name__)

PATCH_JITTER_MM = 2.0
PRELOAD_FRACTION = 0.25
STATE_FILE = "resume.pt"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
KEEP_EPOCH_CHECKPOINTS = 2
GROW_EPOCH_FACTOR = 10
"""A growing train split may take up to this many times the configured passes."""
TIME_MARGIN_S = 20.0
"""Stop this long before the time limit (saving takes a few seconds)."""


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    epochs_done: int
    finished: bool
    """False when the time limit stopped the run (continue with resume=True)."""
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


MIN_CALIBRATION_CLASS = 5
"""Fewer positives (or negatives) than this in validation and a finding keeps (1, 0)."""
MAX_TEMPERATURE = 20.0
MAX_BIAS = 10.0


def fit_calibration(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Platt scaling per finding, each fitted on its own so one cannot spoil the others.

    A finding with too few positives or negatives, or whose fit does not converge to
    finite values, keeps the identity (temperature 1, bias 0).
    """
    findings = logits.shape[1]
    temperature, bias = torch.ones(findings), torch.zeros(findings)
    for f in range(findings):
        column = labels[:, f]
        known = column[~torch.isnan(column)]
        if min(int((known > 0.5).sum()), int((known <= 0.5).sum())) < MIN_CALIBRATION_CLASS:
            continue
        t, b = fit_platt(logits[:, f : f + 1], labels[:, f : f + 1])
        if bool(torch.isfinite(t).all() and torch.isfinite(b).all()):
            temperature[f] = float(t.clamp(max=MAX_TEMPERATURE)[0])
            bias[f] = float(b.clamp(-MAX_BIAS, MAX_BIAS)[0])
    return temperature, bias


class TrainingModule(nn.Module):
    """The model plus its refiner in one forward, so DDP sees every parameter used."""

    def __init__(self, model: RadscribeModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, batch: ModelBatch, patches: torch.Tensor | None
    ) -> tuple[ModelOutput, torch.Tensor | None]:
        out = self.model(batch)
        refined = None if patches is None else self.model.refiner(patches)
        return out, refined


def _zero_touch(out: ModelOutput, refined: torch.Tensor | None) -> torch.Tensor:
    """Zero times every output, so each parameter that made an output gets a gradient.

    DDP (``find_unused_parameters``) treats a parameter that reaches an output as used
    and waits for its gradient; an output the loss left out (the nodule map of a batch
    without annotated nodules, as in CT-RATE) would leave that wait open and fail the
    next step.  The gradients this adds are exact zeros, as DDP gives unused parameters.
    """
    tensors = [getattr(out, f.name) for f in dataclasses.fields(out)] + [refined]
    touched = [t.float().sum() for t in tensors if isinstance(t, torch.Tensor) and t.requires_grad]
    return torch.stack(touched).sum() * 0.0 if touched else torch.zeros(())


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def _distributed_from_env() -> Distributed:
    """This process's place among torchrun's (one process of one without torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return Distributed(rank=rank, world=world, local_rank=local_rank)


def _join_process_group(dist: Distributed, device: torch.device) -> None:
    """NCCL bound to this rank's GPU (before the first barrier, so NCCL never guesses
    it), gloo on CPU."""
    if dist.world <= 1 or torch.distributed.is_initialized():
        return
    if device.type == "cuda":
        torch.distributed.init_process_group(backend="nccl", device_id=device)
    else:
        torch.distributed.init_process_group(backend="gloo")


def resolve_device(name: str, dist: Distributed) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def training_layout(model: RadscribeModel) -> RadscribeModel:
    """Weights channels-last for cuDNN on the CUDA volumes, except the refiner's.

    The refiner reads contiguous patches (:func:`nodule_patches`), and cuDNN gives the
    weight of its one-channel first convolution a contiguous gradient: stored
    channels-last (strides (27, 1, 9, 3, 1) against the gradient's (27, 27, 9, 3, 1)
    on an H200), DDP warned and copied that gradient into its bucket every step.
    """
    model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    model.refiner.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return model


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def batch_seed(seed: int, epoch: int, index: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + index) % (2**62)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no decay for biases, norms, embeddings and learned tokens."""
    decay, plain = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or "norm" in name or "embedding" in name or name.endswith("_token"):
            plain.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Any:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def nodule_patches(
    batch: TrainingBatch,
    spec: Any,
    *,
    limit: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Jittered patches around the batch's true nodules: (patches, diameter, type, centre error)."""
    picks: list[tuple[int, NoduleTarget]] = [
        (i, n) for i, study in enumerate(batch.nodules) if study for n in study
    ]
    if not picks or limit <= 0:
        return None
    if len(picks) > limit:
        chosen = torch.randperm(len(picks), generator=generator)[:limit].tolist()
        picks = [picks[i] for i in chosen]
    true = torch.tensor([n.centre_ras for _, n in picks], dtype=torch.float32)
    jitter = torch.randn(true.shape, generator=generator) * PATCH_JITTER_MM
    centres = true + jitter
    device = batch.model.image.device
    patches = grid_patches(batch.model.image, batch.grids, centres, [i for i, _ in picks], spec)
    return (
        patches,
        torch.tensor([n.diameter_mm for _, n in picks], dtype=torch.float32, device=device),
        torch.tensor([n.type_index for _, n in picks], dtype=torch.long, device=device),
        (true - centres).to(device),
    )


def training_losses(
    out: ModelOutput,
    refined: torch.Tensor | None,
    batch: TrainingBatch,
    patch_targets: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    config: TrainConfig,
    teacher_probabilities: torch.Tensor | None = None,
    distill_alpha: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Findings BCE, nodule detection losses (studies with known nodules), refiner, gate."""
    losses = radscribe_loss(out, finding_labels=batch.labels)
    total = losses["total"]
    if out.image_only_logits is not None and config.image_only_loss_weight > 0:
        labelled = ~torch.isnan(batch.labels)
        bce = F.binary_cross_entropy_with_logits(
            out.image_only_logits.float(), torch.nan_to_num(batch.labels), reduction="none"
        )
        losses["image_only"] = (bce * labelled).sum() / labelled.sum().clamp_min(1)
        total = total + config.image_only_loss_weight * losses["image_only"]
    if teacher_probabilities is not None and distill_alpha > 0:
        soft = F.binary_cross_entropy_with_logits(
            out.finding_logits.float(), teacher_probabilities.float()
        )
        losses["distill"] = soft
        total = (1 - distill_alpha) * total + distill_alpha * soft
    known = [i for i, n in enumerate(batch.nodules) if n is not None]
    if known and config.nodule_loss_weight > 0:
        nodule_map = out.nodule_map[known]
        targets = nodule_cell_targets(
            [batch.nodules[i] or () for i in known],
            [batch.grids[i] for i in known],
            tuple(nodule_map.shape[2:]),  # type: ignore[arg-type]
            device=nodule_map.device,
        )
        sub = ModelOutput(
            finding_logits=out.finding_logits[known],
            finding_probabilities=out.finding_probabilities[known],
            evidence=out.evidence[known],
            modality_weights=out.modality_weights[known],
            nodule_map=nodule_map,
        )
        nan_labels = torch.full_like(batch.labels[known], float("nan"))
        nodule = radscribe_loss(sub, finding_labels=nan_labels, nodule_targets=targets)
        for name in ("objectness", "offset", "diameter", "nodule_type", "lobe"):
            losses[name] = nodule[name]
        total = total + config.nodule_loss_weight * (nodule["total"] - nodule["findings"])
    if refined is not None and patch_targets is not None:
        diameter, kind, centre_error = patch_targets
        losses["refiner"] = refiner_loss(
            refined.float(), diameter_mm=diameter, type_index=kind, centre_error_mm=centre_error
        )
        total = total + losses["refiner"]
    if config.dictation.gate_supervision > 0:
        weight = out.modality_weights[:, 2].float()
        target = batch.dictation_accuracy.clamp(0.0, 1.0) ** config.dictation.gate_target_power
        mask = (weight > 0) & torch.isfinite(target)
        if bool(mask.any()):
            losses["gate"] = F.binary_cross_entropy(
                weight[mask].clamp(1e-4, 1 - 1e-4), target[mask].clamp(0.0, 1.0)
            )
            total = total + config.dictation.gate_supervision * losses["gate"]
    losses["total"] = total
    return losses


@dataclass
class Predictions:
    logits: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    modality_weights: np.ndarray
    loss: float


def predict(
    model: RadscribeModel,
    table: StudyTable,
    device: torch.device,
    *,
    batch_size: int,
    amp_dtype: torch.dtype | None,
    texts: Sequence[Any] | None = None,
    config: TrainConfig | None = None,
    keep_nodule_maps: bool = False,
) -> tuple[Predictions, list[torch.Tensor]]:
    """Run the model over a table in eval mode; loss includes nodule terms when ``config``."""
    model.eval()
    logits, probabilities, weights = [], [], []
    maps: list[torch.Tensor] = []
    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in batches(table, list(range(len(table))), batch_size, device, texts=texts):
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                out = model(batch.model)
            if config is not None:
                losses = training_losses(out, None, batch, None, config)
                total += float(losses["total"]) * len(batch.positions)
                count += len(batch.positions)
            logits.append(out.finding_logits.float().cpu())
            probabilities.append(out.finding_probabilities.float().cpu())
            weights.append(out.modality_weights.float().cpu())
            if keep_nodule_maps:
                maps.extend(out.nodule_map.float().cpu())
    return (
        Predictions(
            logits=torch.cat(logits).numpy(),
            probabilities=torch.cat(probabilities).numpy(),
            labels=table.labels,
            modality_weights=torch.cat(weights).numpy(),
            loss=total / max(count, 1),
        ),
        maps,
    )


class MultiModalTrainer:
    """Trains ``RadscribeModel`` from a ``TrainConfig`` (a YAML file, a dict or the model)."""

    def __init__(self, config: TrainConfig | dict[str, Any] | Path | str) -> None:
        if isinstance(config, (str, Path)):
            config = load_train_config(Path(config))
        elif isinstance(config, dict):
            config = TrainConfig.model_validate(config)
        self.config: TrainConfig = config
        self.teacher: RadscribeModel | None = None
        self.distill_alpha = 0.0
        self.batch_modality_dropout = 0.0
        """Distillation: modality dropout applied to the batch, so teacher and student agree."""
        self.model_config_override: ModelConfig | None = None
        self.progress = True

    # -- set-up ---------------------------------------------------------------
    def _data_config(self, **paths: Any) -> TrainConfig:
        data = self.config.data.model_dump()
        data.update({k: v for k, v in paths.items() if v is not None})
        return self.config.with_overrides(data=data)

    def train(
        self,
        *,
        image_dir: Path | str | None = None,
        text_dir: Path | str | None = None,
        label_dir: Path | str | None = None,
        data_root: Path | str | None = None,
        epochs: int | None = None,
        run_dir: Path | str | None = None,
        resume: bool = False,
    ) -> TrainResult:
        """Train (or continue with ``resume``) and return where the checkpoints are."""
        self.config = self._data_config(
            image_dir=image_dir, text_dir=text_dir, label_dir=label_dir, root=data_root
        ).with_overrides(epochs=epochs, run_dir=run_dir)
        return _Run(self).execute(resume=resume)


class _Run:
    """One call of ``MultiModalTrainer.train`` (keeps the loop's state in one place)."""

    def __init__(self, trainer: MultiModalTrainer) -> None:
        self.trainer = trainer
        self.config = trainer.config
        self.started = time.monotonic()
        self.dist = _distributed_from_env()
        self.device = resolve_device(self.config.device, self.dist)
        _join_process_group(self.dist, self.device)
        self.amp_dtype = autocast_dtype(self.config.amp, self.device)
        self.run_dir = Path(self.config.run_dir)
        self.cache_dir = Path(self.config.data.cache_dir or self.run_dir / "cache")
        self.spec = self.config.preprocess_spec()
        self.history: list[dict[str, float]] = []
        self._epoch_stats: dict[str, Any] = {}
        self._points: OperatingPoints | None = None
        self._store: TextEmbeddingStore | None = None
        self._preloaded = 0
        self._nodule_threshold = nodules.DEFAULT_NODULE_THRESHOLD

    # -- data -----------------------------------------------------------------
    def _open(self, split: str, *, build: bool = True) -> CachedSplit:
        """Open (rank 0 builds first) a split's volume cache."""
        if self.dist.main:
            cached = open_split(
                self.config.data,
                split,
                self.spec,
                self.cache_dir,
                progress=self.trainer.progress,
                build=build,
            )
        self.dist.barrier()
        if not self.dist.main:
            cached = open_split(
                self.config.data, split, self.spec, self.cache_dir, progress=False, build=False
            )
        if len(cached) == 0:
            raise ValueError(f"the {split} split has no usable studies")
        if cached.refused:
            logger.warning("%s: %d studies refused", split, len(cached.refused))
        return cached

    def _table(
        self,
        model: RadscribeModel,
        cached: CachedSplit,
        *,
        training: bool,
        previous: StudyTable | None = None,
    ) -> StudyTable:
        """Texts assigned and embedded, images on the GPU when they fit."""
        config = self.config
        texts = assign_texts(
            cached.studies, seed=config.seed, config=config.dictation, training=training
        )
        if self._store is None and not model.config.text_trainable:
            self._store = TextEmbeddingStore(self.cache_dir, text_encoder_id(model))
        if self._store is not None:
            if self.dist.main:
                added = ensure_texts(self._store, texts, model=model, device=self.device)
                for kind, count in added.items():
                    if count:
                        logger.info("embedded %d %s texts", count, kind)
            self.dist.barrier()
            self._store = TextEmbeddingStore(self.cache_dir, text_encoder_id(model))
        table = StudyTable(cached, texts, model_config=model.config, store=self._store)
        if self.device.type == "cuda" and config.preload != "no":
            free, _ = torch.cuda.mem_get_info(self.device)
            total = cached.images.shape[0] * int(np.prod(cached.images.shape[1:])) * 2
            if config.preload == "yes" or total < PRELOAD_FRACTION * (free + self._preloaded):
                table.preload(self.device, reuse=previous)
                self._preloaded = max(self._preloaded, table.image_bytes())
        return table

    def _train_table(
        self, model: RadscribeModel, members: list[int] | None, previous: StudyTable | None
    ) -> StudyTable:
        """The train split as cached now (growing data), or the given cache rows (resume)."""
        cached = self._open(self.config.data.train_split, build=not self.config.data.grow_train)
        if members is not None:
            wanted = set(members)
            cached = dataclasses.replace(
                cached, studies=[s for s in cached.studies if s.index in wanted]
            )
            if len(cached.studies) != len(wanted):
                raise ValueError("the train cache lost studies this run was using")
        return self._table(model, cached, training=True, previous=previous)

    def _model(self) -> RadscribeModel:
        torch.manual_seed(self.config.seed)
        model_config = self.trainer.model_config_override or self.config.model_config_()
        model = RadscribeModel(model_config).to(self.device)
        if self.device.type == "cuda":
            training_layout(model)
        return model

    # -- loop -----------------------------------------------------------------
    def execute(self, *, resume: bool) -> TrainResult:
        config = self.config
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        model = self._model()
        valid = self._table(model, self._open(config.data.valid_split), training=False)
        train_cache = self._open(config.data.train_split, build=not config.data.grow_train)
        planned = train_cache.images.shape[0] if config.data.grow_train else len(train_cache)
        module: nn.Module = TrainingModule(model)
        if self.dist.world > 1:
            module = nn.parallel.DistributedDataParallel(
                module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        optimizer = torch.optim.AdamW(
            parameter_groups(model, config.weight_decay), lr=config.learning_rate, betas=(0.9, 0.95)
        )
        per_rank = planned // self.dist.world
        steps_per_epoch = max(1, math.ceil(per_rank / config.batch_size))
        logger.info(
            "rank %d of %d: %d of %d train studies per epoch, %d steps of %d",
            self.dist.rank,
            self.dist.world,
            per_rank,
            planned,
            steps_per_epoch,
            config.batch_size,
        )
        updates_per_epoch = math.ceil(steps_per_epoch / config.gradient_accumulate_steps)
        total_updates = max(1, config.epochs * updates_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(total_updates, config.warmup_fraction)
        )
        scaler = torch.amp.GradScaler(enabled=self.amp_dtype == torch.float16)
        state: dict[str, Any] = {
            "epoch": 0,
            "batch": 0,
            "best_loss": math.inf,
            "best_epoch": -1,
            "bad_epochs": 0,
            "stopped_early": False,
            "contrastive_done": False,
            "epoch_members": None,
        }
        state_path = self.run_dir / STATE_FILE
        if resume and state_path.is_file():
            saved = torch.load(state_path, map_location=self.device, weights_only=False)
            if saved["model_config"] != model.config.to_json():
                raise ValueError(f"{state_path} was written for another model config")
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            scaler.load_state_dict(saved["scaler"])
            state.update(saved["state"])
            self.history = list(saved["history"])
            logger.info("resumed at epoch %d, batch %d", state["epoch"], state["batch"])
        elif resume:
            logger.info("no %s to resume from; starting fresh", state_path)
        members = state["epoch_members"] if state["batch"] else None
        train = self._train_table(model, members, None)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(
            json.dumps(config.model_dump(mode="json"), indent=2)
        )

        if config.contrastive_epochs and not state["contrastive_done"]:
            from models.training.contrastive import align

            align(
                model,
                train,
                config,
                self.device,
                self.amp_dtype,
                self.cache_dir,
                progress=self.trainer.progress and self.dist.main,
            )
            state["contrastive_done"] = True

        finished = True
        last_checkpoint = self._latest_checkpoint()
        fresh = True

        def more() -> bool:
            # Epochs are passes over the planned study count: a growing train split has
            # shorter passes at first, so it runs until the planned updates are done.
            limit = config.epochs * (GROW_EPOCH_FACTOR if config.data.grow_train else 1)
            return (
                scheduler.last_epoch < total_updates
                and state["epoch"] < limit
                and not state["stopped_early"]
            )

        while more():
            epoch = int(state["epoch"])
            if state["batch"] == 0:
                if config.data.grow_train and not fresh:
                    train = self._train_table(model, None, train)
                    logger.info("epoch %d: %d train studies", epoch + 1, len(train))
                state["epoch_members"] = [s.index for s in train.cached.studies]
            fresh = False
            completed = self._train_epoch(
                module, model, optimizer, scheduler, scaler, train, state, steps_per_epoch
            )
            if not completed:
                finished = False
                self._save_state(state_path, model, optimizer, scheduler, scaler, state)
                break
            row = self._end_epoch(model, valid, epoch, state)
            last_checkpoint = self._checkpoint(
                model, optimizer, scheduler, scaler, state, epoch, row, valid
            )
            state["epoch"] = epoch + 1
            state["batch"] = 0
            self._save_state(state_path, model, optimizer, scheduler, scaler, state)
            if self._out_of_time():
                finished = not more()
                break
        best = self.run_dir / "checkpoints" / "best.json"
        return TrainResult(
            run_dir=self.run_dir,
            best_checkpoint=best if best.is_file() else None,
            last_checkpoint=last_checkpoint,
            epochs_done=int(state["epoch"]),
            finished=finished,
            stopped_early=bool(state["stopped_early"]),
            history=self.history,
        )

    def _out_of_time(self) -> bool:
        limit = self.config.time_limit_minutes
        if limit is None:
            return False
        return time.monotonic() - self.started > limit * 60 - TIME_MARGIN_S

    def _train_epoch(
        self,
        module: nn.Module,
        model: RadscribeModel,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        train: StudyTable,
        state: dict[str, Any],
        steps_per_epoch: int,
    ) -> bool:
        """Train from ``state['batch']`` to the epoch's end; False when the time ran out."""
        from tqdm import tqdm

        config = self.config
        epoch = int(state["epoch"])
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train))
        per_rank = len(order) // self.dist.world
        order = order[self.dist.rank :: self.dist.world][:per_rank]
        start_batch = int(state["batch"])
        groups = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        accumulate = config.gradient_accumulate_steps
        module.train()
        model.image_only_aux = config.image_only_loss_weight > 0
        teacher = self.trainer.teacher
        sums: dict[str, float] = dict(state.get("partial_sums", {}))
        seen = int(state.get("partial_seen", 0))
        start_seen = seen
        tick = time.perf_counter()
        bar = tqdm(
            total=len(groups),
            initial=start_batch,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (self.trainer.progress and self.dist.main),
            unit="batch",
            mininterval=5.0,
        )
        iterator = batches(
            train, [int(i) for g in groups[start_batch:] for i in g], config.batch_size, self.device
        )
        for index, batch in enumerate(iterator, start=start_batch):
            seed = batch_seed(config.seed, epoch, index)
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            if config.augment:
                batch = augment(batch, generator)
            if self.trainer.batch_modality_dropout > 0:
                batch = _drop_texts(batch, self.trainer.batch_modality_dropout, generator)
            if config.emr_mismatch > 0:
                batch = mismatch_emr(batch, config.emr_mismatch, generator)
            if self.device.type == "cuda":
                batch.model.image = batch.model.image.contiguous(
                    memory_format=torch.channels_last_3d
                )
            patch = nodule_patches(
                batch, self.spec, limit=config.refiner_batch, generator=generator
            )
            if self.amp_dtype == torch.bfloat16:
                # The first convolution casts the image to bf16 under autocast anyway;
                # casting it here keeps no fp32 copy alive through the step.
                batch.model.image = batch.model.image.to(torch.bfloat16)
            teacher_probabilities = None
            if teacher is not None:
                with (
                    torch.no_grad(),
                    torch.autocast(
                        self.device.type,
                        dtype=self.amp_dtype or torch.float32,
                        enabled=self.amp_dtype is not None,
                    ),
                ):
                    teacher_probabilities = (
                        teacher(batch.model).finding_probabilities.float().clone()
                    )
            update = (index + 1) % accumulate == 0 or index + 1 == len(groups)
            sync = update or self.dist.world == 1
            context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            if isinstance(module, nn.parallel.DistributedDataParallel) and not sync:
                context = module.no_sync()
            with context:
                with torch.autocast(
                    self.device.type,
                    dtype=self.amp_dtype or torch.float32,
                    enabled=self.amp_dtype is not None,
                ):
                    out, refined = module(batch.model, None if patch is None else patch[0])
                losses = training_losses(
                    out,
                    refined,
                    batch,
                    None if patch is None else patch[1:],
                    config,
                    teacher_probabilities=teacher_probabilities,
                    distill_alpha=self.trainer.distill_alpha,
                )
                total = losses["total"]
                if isinstance(module, nn.parallel.DistributedDataParallel):
                    total = total + _zero_touch(out, refined)
                scaler.scale(total / accumulate).backward()
            if update:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
            n = len(batch.positions)
            seen += n
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) * n
            bar.update(1)
            bar.set_postfix(loss=f"{sums['total'] / seen:.3f}")
            state["batch"] = index + 1
            state["partial_sums"], state["partial_seen"] = dict(sums), seen
            if self._out_of_time() and index + 1 < len(groups):
                bar.close()
                logger.info("time limit: stopping in epoch %d at batch %d", epoch + 1, index + 1)
                return False
        bar.close()
        elapsed = time.perf_counter() - tick
        self._epoch_stats = {
            "seen": seen - start_seen,
            "sums": sums,
            "all_seen": seen,
            "seconds": elapsed,
            "lr": float(optimizer.param_groups[0]["lr"]),
        }
        state["partial_sums"], state["partial_seen"] = {}, 0
        return True

    def _end_epoch(
        self, model: RadscribeModel, valid: StudyTable, epoch: int, state: dict[str, Any]
    ) -> dict[str, float]:
        stats = self._epoch_stats
        all_seen = max(int(stats["all_seen"]), 1)
        row: dict[str, float] = {"epoch": epoch + 1}
        row.update({f"train_{k}": v / all_seen for k, v in stats["sums"].items()})
        row["samples_per_s"] = (
            int(stats["seen"]) * self.dist.world / max(float(stats["seconds"]), 1e-9)
        )
        row["lr"] = float(stats["lr"])
        if self.dist.main:
            predictions, maps = predict(
                model,
                valid,
                self.device,
                batch_size=self.config.batch_size,
                amp_dtype=self.amp_dtype,
                config=self.config,
                keep_nodule_maps=True,
            )
            studies = valid.cached.studies
            candidates = [
                nodules.decode(m, s.grid, top=model.config.max_nodules)
                for m, s in zip(maps, studies, strict=True)
            ]
            self._nodule_threshold = nodules.choose_threshold(
                [s.nodules for s in studies], candidates
            )
            row["val_loss"] = predictions.loss
            row["val_macro_auroc"] = metrics.macro_auroc(
                predictions.probabilities, predictions.labels
            )
            self._calibrate(model, predictions)
        flag = torch.tensor([row.get("val_loss", 0.0)], device=self.device)
        if self.dist.world > 1:
            torch.distributed.broadcast(flag, 0)
        val_loss = float(flag[0])
        row["val_loss"] = val_loss
        row["elapsed_s"] = time.monotonic() - self.started
        if val_loss < state["best_loss"] - 1e-6:
            state["best_loss"], state["best_epoch"], state["bad_epochs"] = val_loss, epoch + 1, 0
        else:
            state["bad_epochs"] += 1
            if state["bad_epochs"] >= self.config.early_stopping_patience:
                state["stopped_early"] = True
                logger.info(
                    "early stop: no validation improvement for %d epochs", state["bad_epochs"]
                )
        self.history.append(row)
        if self.dist.main:
            logger.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in row.items()})
            write_metrics(self.run_dir, self.history)
        return row

    def _calibrate(self, model: RadscribeModel, predictions: Predictions) -> None:
        """Platt scaling on validation logits, then decision and verify thresholds."""
        logits = torch.from_numpy(predictions.logits)
        labels = torch.from_numpy(predictions.labels)
        temperature, bias = fit_calibration(logits, labels)
        model.finding_head.calibration_temperature.copy_(temperature.to(self.device))
        model.finding_head.calibration_bias.copy_(bias.to(self.device))
        calibrated = torch.sigmoid(logits / temperature + bias).numpy()
        t = self.config.thresholds
        self._points = choose_operating_points(
            calibrated,
            predictions.labels,
            decision_rule=t.decision_rule,
            decision_target=t.decision_target,
            verify_sensitivity=t.verify_sensitivity,
        )

    def _checkpoint(
        self,
        model: RadscribeModel,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        state: dict[str, Any],
        epoch: int,
        row: dict[str, float],
        valid: StudyTable,
    ) -> Path | None:
        if not self.dist.main or self._points is None:
            return None
        folder = self.run_dir / "checkpoints"
        name = folder / f"epoch-{epoch + 1:03d}"
        training = {
            "epoch": epoch + 1,
            "metrics": row,
            "history": self.history,
            "config": self.config.model_dump(mode="json"),
            "valid_studies": len(valid),
            "best_epoch": state["best_epoch"],
        }
        save_checkpoint(
            name,
            model,
            model_version=f"{self.config.model_version}-e{epoch + 1}",
            spec=self.spec,
            thresholds=self._points.decision,
            verify_thresholds=self._points.verify,
            nodule_threshold=self._nodule_threshold,
            training=training,
        )
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "state": dict(state),
            },
            name.with_name(name.name + ".optim.pt"),
        )
        if state["best_epoch"] == epoch + 1:
            save_checkpoint(
                folder / "best",
                model,
                model_version=self.config.model_version,
                spec=self.spec,
                thresholds=self._points.decision,
                verify_thresholds=self._points.verify,
                nodule_threshold=self._nodule_threshold,
                training=training,
            )
        for old in sorted(folder.glob("epoch-*.json"))[:-KEEP_EPOCH_CHECKPOINTS]:
            stem = old.with_suffix("")
            for suffix in (".json", ".safetensors", ".optim.pt"):
                stem.with_name(stem.name + suffix).unlink(missing_ok=True)
        return name.with_name(name.name + ".json")

    def _latest_checkpoint(self) -> Path | None:
        found = sorted((self.run_dir / "checkpoints").glob("epoch-*.json"))
        return found[-1] if found else None

    def _save_state(
        self,
        path: Path,
        model: RadscribeModel,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        state: dict[str, Any],
    ) -> None:
        if not self.dist.main:
            return
        temporary = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "model_config": model.config.to_json(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "state": dict(state),
                "history": self.history,
            },
            temporary,
        )
        os.replace(temporary, path)


def _drop_texts(
    batch: TrainingBatch, probability: float, generator: torch.Generator
) -> TrainingBatch:
    """Hide each text of each study with ``probability`` (batch-level modality dropout)."""
    from dataclasses import replace

    b = len(batch.positions)
    keep_emr = (torch.rand(b, generator=generator) >= probability).to(
        batch.model.emr.present.device
    )
    keep_dictation = (torch.rand(b, generator=generator) >= probability).to(
        batch.model.emr.present.device
    )
    emr = replace(batch.model.emr, present=batch.model.emr.present & keep_emr)
    dictation = replace(
        batch.model.dictation, present=batch.model.dictation.present & keep_dictation
    )
    return replace(batch, model=replace(batch.model, emr=emr, dictation=dictation))


def mismatch_emr(
    batch: TrainingBatch, probability: float, generator: torch.Generator
) -> TrainingBatch:
    """Give each chosen study (``probability``) the EMR text of another study in the batch.

    The chosen studies pass their texts round in a cycle, so each gets one that is not its
    own (with a single chosen study, it takes the next study's); their labels stay their own.
    """
    from dataclasses import replace

    b = len(batch.positions)
    if b < 2:
        return batch
    chosen = torch.nonzero(torch.rand(b, generator=generator) < probability).flatten().tolist()
    if not chosen:
        return batch
    source = list(range(b))
    donors = chosen[1:] + chosen[:1] if len(chosen) > 1 else [(chosen[0] + 1) % b]
    for receiver, donor in zip(chosen, donors, strict=True):
        source[receiver] = donor
    index = torch.tensor(source, device=batch.model.emr.present.device)
    emr = batch.model.emr
    moved = replace(
        emr,
        present=emr.present[index],
        attention_mask=emr.attention_mask[index],
        token_ids=None if emr.token_ids is None else emr.token_ids[index],
        embeddings=None if emr.embeddings is None else emr.embeddings[index],
    )
    return replace(batch, model=replace(batch.model, emr=moved))


METRIC_COLUMNS = ("train_total", "val_loss")


def write_metrics(run_dir: Path, history: Sequence[dict[str, float]]) -> None:
    """metrics.csv (one row per epoch) and curves.png (losses and validation AUROC)."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    with (run_dir / METRICS_FILE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in columns})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in METRIC_COLUMNS:
        left.plot(epochs, [row.get(key, math.nan) for row in history], marker="o", label=key)
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(
        epochs, [row.get("val_macro_auroc", math.nan) for row in history], marker="o", color="C2"
    )
    right.set_xlabel("epoch")
    right.set_ylabel("validation macro AUROC")
    figure.tight_layout()
    figure.savefig(run_dir / CURVES_FILE, dpi=100)
    plt.close(figure)
