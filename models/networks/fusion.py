"""Fusion Transformers over [CLS], visual tokens, EMR tokens and dictation tokens.

Every attention takes a per-key additive bias (B, L_keys): 0 for always-visible
tokens, log(w_modality) for a modality's tokens (the gate's weight), and -inf for
padding and absent modalities, so a masked token contributes exactly nothing.

* ``concat``: one stream, self-attention over everything.
* ``co-attention``: an image stream [CLS, visual] and a text stream [TXT, EMR,
  dictation]; in each layer both self-attend, then each cross-attends to the other.
* ``gated``: the image stream self-attends and reads the text through cross-attention
  scaled by tanh(alpha), alpha starting at 0 (Flamingo-style): training starts from
  the image alone and opens the gate as text helps.

The [TXT] token is always visible, so an attention over text keys never has only
masked keys (which would be NaN), even when both texts are absent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.config import ModelConfig


class Attention(nn.Module):
    """Multi-head attention on torch's fused kernel, with an additive key bias."""

    def __init__(self, *, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        # (B, L, heads * head_dim) -> (B, heads, L, head_dim)
        b, length, d = x.shape
        return x.view(b, length, self.heads, d // self.heads).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, key_bias: torch.Tensor
    ) -> torch.Tensor:
        q, k, v = (
            self._split(self.query(x)),
            self._split(self.key(context)),
            self._split(self.value(context)),
        )
        mask = key_bias[:, None, None, :].to(
            q.dtype
        )  # (B, 1, 1, L_keys) broadcast over heads, queries
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        b, _, length, _ = y.shape
        # (B, heads, L, head_dim) -> (B, L, heads * head_dim)
        out: torch.Tensor = self.out(y.transpose(1, 2).reshape(b, length, -1))
        return out


class FusionBlock(nn.Module):
    """Pre-norm block: self-attention, optional (gated) cross-attention, feed-forward."""

    def __init__(self, config: ModelConfig, *, cross: bool, gated: bool = False) -> None:
        super().__init__()
        d = config.d_model
        self.norm_self = nn.LayerNorm(d)
        self.self_attention = Attention(d_model=d, heads=config.heads, dropout=config.dropout)
        self.cross_attention: Attention | None = None
        if cross:
            self.norm_cross = nn.LayerNorm(d)
            self.norm_context = nn.LayerNorm(d)
            self.cross_attention = Attention(d_model=d, heads=config.heads, dropout=config.dropout)
        self.gate = nn.Parameter(torch.zeros(1)) if gated else None
        self.norm_ffn = nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, config.ffn_mult * d),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.ffn_mult * d, d),
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor,
        context: torch.Tensor | None = None,
        context_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.norm_self(x)
        x = x + self.drop(self.self_attention(h, h, bias))
        if self.cross_attention is not None and context is not None and context_bias is not None:
            update = self.cross_attention(
                self.norm_cross(x), self.norm_context(context), context_bias
            )
            if self.gate is not None:
                update = torch.tanh(self.gate) * update
            x = x + self.drop(update)
        return x + self.drop(self.ffn(self.norm_ffn(x)))


class Fusion(nn.Module):
    """Runs the configured fusion; returns ([CLS] (B, d), visual tokens (B, T, d))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.method = config.fusion_method
        n = config.layers
        if self.method == "concat":
            self.image_blocks = nn.ModuleList(FusionBlock(config, cross=False) for _ in range(n))
            self.text_blocks = nn.ModuleList()
        elif self.method == "co-attention":
            self.image_blocks = nn.ModuleList(FusionBlock(config, cross=True) for _ in range(n))
            self.text_blocks = nn.ModuleList(FusionBlock(config, cross=True) for _ in range(n))
        else:  # gated
            self.image_blocks = nn.ModuleList(
                FusionBlock(config, cross=True, gated=True) for _ in range(n)
            )
            self.text_blocks = nn.ModuleList()
        self.norm = nn.LayerNorm(config.d_model)

    def forward(
        self,
        *,
        image: torch.Tensor,
        image_bias: torch.Tensor,
        text: torch.Tensor,
        text_bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` is [CLS, visual...], ``text`` is [TXT, EMR..., dictation...]."""
        if self.method == "concat":
            x = torch.cat([image, text], dim=1)
            bias = torch.cat([image_bias, text_bias], dim=1)
            for block in self.image_blocks:
                x = block(x, bias)
            x = self.norm(x)
            return x[:, 0], x[:, 1 : image.shape[1]]
        if self.method == "co-attention":
            for image_block, text_block in zip(self.image_blocks, self.text_blocks, strict=True):
                image, text = (
                    image_block(image, image_bias, text, text_bias),
                    text_block(text, text_bias, image, image_bias),
                )
        else:
            for block in self.image_blocks:
                image = block(image, image_bias, text, text_bias)
        image = self.norm(image)
        return image[:, 0], image[:, 1:]
