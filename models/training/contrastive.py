"""Optional first stage: CLIP-style alignment of image and report embeddings.

The image encoder's visual tokens (mean-pooled) and the frozen text encoder's
report embeddings (mean-pooled) are projected to a shared space and trained with
the symmetric InfoNCE loss, so the image encoder starts the supervised stage
already organised by what reports say.  Only the image encoder keeps what it
learns here; the projections are discarded.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.networks.model import RadscribeModel
from models.training.config import TrainConfig
from models.training.data import StudyTable
from models.training.text_cache import TextEmbeddingStore, pad_embeddings, text_encoder_id

logger = logging.getLogger(__name__)

PROJECTION_DIM = 128
INITIAL_TEMPERATURE = 0.07


class _Heads(nn.Module):
    def __init__(self, d_model: int, text_dim: int) -> None:
        super().__init__()
        self.image = nn.Linear(d_model, PROJECTION_DIM)
        self.text = nn.Linear(text_dim, PROJECTION_DIM)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / INITIAL_TEMPERATURE)))


def clip_loss(image: torch.Tensor, text: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    image = F.normalize(image.float(), dim=-1)
    text = F.normalize(text.float(), dim=-1)
    logits = image @ text.T * log_scale.exp().clamp(max=100.0)
    target = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def align(
    model: RadscribeModel,
    table: StudyTable,
    config: TrainConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    cache_dir: Path,
    *,
    progress: bool = True,
) -> list[float]:
    """Run ``config.contrastive_epochs`` of alignment; returns the mean loss per epoch."""
    from tqdm import tqdm

    limit = model.config.dictation_max_tokens
    positions = [i for i, s in enumerate(table.cached.studies) if s.report_text]
    if len(positions) < 2:
        raise ValueError("contrastive alignment needs at least two studies with report text")
    store = TextEmbeddingStore(cache_dir, text_encoder_id(model))
    reports = [table.cached.studies[i].report_text or "" for i in positions]
    store.ensure(reports, max_tokens=limit, model=model, device=device)
    heads = _Heads(model.config.d_model, model.config.text_dim).to(device)
    parameters = list(model.image_encoder.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    batch_size = max(2, config.batch_size)
    losses = []
    model.train()
    for epoch in range(config.contrastive_epochs):
        order = np.random.default_rng([config.seed, 7919, epoch]).permutation(len(positions))
        total, steps = 0.0, 0
        groups = [order[i : i + batch_size] for i in range(0, len(order) - 1, batch_size)]
        for group in tqdm(groups, desc=f"align {epoch + 1}", disable=not progress, mininterval=5.0):
            if len(group) < 2:
                continue
            chosen = [positions[int(g)] for g in group]
            image = table._images(chosen, device)
            hidden, mask, _ = pad_embeddings(
                [store.get(reports[int(g)], limit) for g in group], model.config.text_dim
            )
            hidden, mask = hidden.to(device), mask.to(device)
            text = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                visual, _ = model.image_encoder(image)
                loss = clip_loss(heads.image(visual.mean(1)), heads.text(text), heads.log_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
            optimizer.step()
            total += float(loss.detach())
            steps += 1
        losses.append(total / max(steps, 1))
        logger.info("alignment epoch %d: loss %.4f", epoch + 1, losses[-1])
    return losses
