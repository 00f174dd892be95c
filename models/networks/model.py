"""``RadscribeModel``: image + EMR text + dictation -> findings, nodules, evidence, weights.

Forward contract (the trainer and inference both use it)::

    batch = ModelBatch(
        image=...,              # (B, 1, X, Y, Z) from models.preprocess, in [-1, 1]
        image_quality=...,      # (B, 6) ImageQuality.to_vector()
        emr=TextInput(...),     # reason for exam + history; token ids or precomputed embeddings
        dictation=TextInput(...),
        dictation_quality=...,  # (B, 3) dictation_quality_vector()
    )
    out = model(batch)          # ModelOutput

A text with ``present=False`` is masked everywhere and its content is swapped for
a fixed empty text before any layer sees it, so the output is bit-for-bit the same
whatever an absent text holds.  In training, ``modality_dropout`` hides each text
at random so every combination (image only, + EMR, + dictation, all) is learnt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.config import ModelConfig
from models.networks.fusion import Fusion
from models.networks.gating import ModalityGate, log_weight_bias
from models.networks.heads import FindingHead, NoduleHead, NoduleRefiner
from models.networks.image_encoder import ImageEncoder

CLS_TYPE, IMAGE_TYPE, EMR_TYPE, DICTATION_TYPE, TEXT_SUMMARY_TYPE = range(5)
CLS_TOKEN_ID = 101
SEP_TOKEN_ID = 102
PAD_TOKEN_ID = 0
"""WordPiece ids of MiniLM's (BERT uncased) vocabulary."""
EMPTY_TEXT_TOKENS = 2
"""An absent text is encoded as [CLS][SEP]."""
TEXT_LENGTH_BUCKET = 16
"""Text tensors are cut to the present texts' length, rounded up to a multiple of this."""


@dataclass
class TextInput:
    """One text modality for a batch: token ids *or* precomputed embeddings, plus masks."""

    present: torch.Tensor
    """(B,) bool: False means absent (masked, content ignored)."""
    attention_mask: torch.Tensor
    """(B, L) bool: True for real tokens."""
    token_ids: torch.Tensor | None = None
    """(B, L) int64 WordPiece ids."""
    embeddings: torch.Tensor | None = None
    """(B, L, text_dim) from ``RadscribeModel.encode_text`` (frozen text encoder)."""

    def __post_init__(self) -> None:
        if (self.token_ids is None) == (self.embeddings is None):
            raise ValueError("give exactly one of token_ids or embeddings")

    @classmethod
    def absent(cls, batch: int, *, device: torch.device | None = None) -> TextInput:
        """A batch in which this text is missing for every study."""
        ids = torch.tensor([[CLS_TOKEN_ID, SEP_TOKEN_ID]] * batch, device=device)
        return cls(
            present=torch.zeros(batch, dtype=torch.bool, device=device),
            attention_mask=torch.ones(batch, 2, dtype=torch.bool, device=device),
            token_ids=ids,
        )


def _fit_length(text: TextInput, length: int) -> TextInput:
    """Cut or pad (masked, with [PAD] / zero embeddings) every tensor to ``length`` tokens."""
    pad = length - text.attention_mask.shape[1]

    def fit(tensor: torch.Tensor, value: float) -> torch.Tensor:
        if pad <= 0:
            return tensor[:, :length]
        shape = (tensor.shape[0], pad, *tensor.shape[2:])
        return torch.cat([tensor, tensor.new_full(shape, value)], dim=1)

    return TextInput(
        present=text.present,
        attention_mask=fit(text.attention_mask, False),
        token_ids=None if text.token_ids is None else fit(text.token_ids, PAD_TOKEN_ID),
        embeddings=None if text.embeddings is None else fit(text.embeddings, 0.0),
    )


@dataclass
class ModelBatch:
    image: torch.Tensor
    image_quality: torch.Tensor
    emr: TextInput
    dictation: TextInput
    dictation_quality: torch.Tensor


@dataclass
class ModelOutput:
    finding_logits: torch.Tensor
    """(B, F) raw logits (the loss uses these)."""
    finding_probabilities: torch.Tensor
    """(B, F) calibrated probabilities."""
    evidence: torch.Tensor
    """(B, F, T) each finding's attention over the visual token grid."""
    modality_weights: torch.Tensor
    """(B, 3) gate weights for image, EMR, dictation (0 for an absent modality)."""
    nodule_map: torch.Tensor
    """(B, NODULE_CHANNELS, fx, fy, fz) dense nodule predictions, one per cell of the
    ``nodule_stride`` map."""
    image_only_logits: torch.Tensor | None = None
    """(B, F) training only, when ``image_only_aux``: the same visual tokens fused with
    both texts hidden, so the image pathway is taught even when a text gives the answer."""


class RadscribeModel(nn.Module):
    """The whole network.  ``with_text_encoder=False`` leaves the text encoder out: the
    model then takes precomputed text embeddings only (training with a frozen encoder,
    and the GPU box, which has torch but not transformers)."""

    def __init__(self, config: ModelConfig, *, with_text_encoder: bool = True) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.image_encoder = ImageEncoder(config)
        self.text_encoder: nn.Module | None = None
        if with_text_encoder:
            from models.networks.text_encoder import TextEncoder  # imports transformers

            self.text_encoder = TextEncoder(config)
        self.text_project = nn.Linear(config.text_dim, d)
        self.text_norm = nn.LayerNorm(d)
        self.type_embedding = nn.Embedding(5, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.text_summary_token = nn.Parameter(torch.zeros(1, 1, d))
        self.gate = ModalityGate(config)
        self.fusion = Fusion(config)
        self.finding_head = FindingHead(config)
        self.nodule_head = NoduleHead(in_channels=self.image_encoder.fine_channels, hidden=d)
        self.refiner = NoduleRefiner(width=config.refiner_width)
        self.image_only_aux = False
        """Training switch (not part of the config): also return ``image_only_logits``."""
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.text_summary_token, std=0.02)

    # -- text -----------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, token_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Contextual embeddings (B, L, text_dim) for precomputing with a frozen encoder."""
        if self.text_encoder is None:
            raise RuntimeError("this model was built without its text encoder")
        hidden: torch.Tensor = self.text_encoder(token_ids, attention_mask)
        return hidden

    def _text_hidden(
        self, text: TextInput, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings with absent rows replaced by the empty text, and the key mask.

        The padded length is cut to what the *present* texts use, so an absent
        text cannot change tensor shapes (and with them the float summation order).
        """
        keep = present[:, None]
        used = (text.attention_mask & keep).any(0).nonzero()
        length = max(EMPTY_TEXT_TOKENS, int(used.max()) + 1 if used.numel() else 0)
        text = _fit_length(text, -(-length // TEXT_LENGTH_BUCKET) * TEXT_LENGTH_BUCKET)
        if text.token_ids is not None:
            empty = torch.full_like(text.token_ids, PAD_TOKEN_ID)
            empty[:, 0] = CLS_TOKEN_ID
            empty[:, 1] = SEP_TOKEN_ID
            empty_mask = torch.zeros_like(text.attention_mask)
            empty_mask[:, :2] = True
            ids = torch.where(keep, text.token_ids, empty)
            encoder_mask = torch.where(keep, text.attention_mask, empty_mask)
            if self.text_encoder is None:
                raise RuntimeError("built without a text encoder: pass text embeddings")
            hidden = self.text_encoder(ids, encoder_mask)
        else:
            assert text.embeddings is not None
            hidden = torch.where(
                keep[..., None], text.embeddings, torch.zeros_like(text.embeddings)
            )
        return hidden, text.attention_mask & keep

    def _text_tokens(self, hidden: torch.Tensor, kind: int) -> torch.Tensor:
        tokens = self.text_norm(self.text_project(hidden.to(self.text_norm.weight.dtype)))
        return tokens + self.type_embedding.weight[kind]

    def _drop_modalities(self, present: torch.Tensor) -> torch.Tensor:
        if not self.training or self.config.modality_dropout <= 0:
            return present
        keep = torch.rand(present.shape, device=present.device) >= self.config.modality_dropout
        return present & keep

    # -- forward --------------------------------------------------------------
    def forward(self, batch: ModelBatch) -> ModelOutput:
        """Text preparation (eager: trimming, text encoder), then the fixed-shape ``fuse``."""
        emr_present = self._drop_modalities(batch.emr.present.bool())
        dictation_present = self._drop_modalities(batch.dictation.present.bool())
        emr_hidden, emr_mask = self._text_hidden(batch.emr, emr_present)
        dictation_hidden, dictation_mask = self._text_hidden(batch.dictation, dictation_present)
        return self.fuse(
            batch.image,
            batch.image_quality,
            emr_hidden,
            emr_mask,
            emr_present,
            dictation_hidden,
            dictation_mask,
            dictation_present,
            batch.dictation_quality,
        )

    def fuse(
        self,
        image: torch.Tensor,
        image_quality: torch.Tensor,
        emr_hidden: torch.Tensor,
        emr_mask: torch.Tensor,
        emr_present: torch.Tensor,
        dictation_hidden: torch.Tensor,
        dictation_mask: torch.Tensor,
        dictation_present: torch.Tensor,
        dictation_quality: torch.Tensor,
    ) -> ModelOutput:
        """Everything after the text encoder: tensors in, no host syncs, so one compiled graph.

        Text lengths are padded to ``TEXT_LENGTH_BUCKET`` multiples by ``_text_hidden``, so a
        compiled ``fuse`` sees few distinct shapes.
        """
        visual, fine = self.image_encoder(image)
        nodule_map = self.nodule_head(fine)
        logits, evidence, weights = self._fuse_visual(
            visual,
            image_quality,
            emr_hidden,
            emr_mask,
            emr_present,
            dictation_hidden,
            dictation_mask,
            dictation_present,
            dictation_quality,
        )
        image_only_logits = None
        if self.training and self.image_only_aux:
            image_only_logits, _, _ = self._fuse_visual(
                visual,
                image_quality,
                torch.zeros_like(emr_hidden),
                torch.zeros_like(emr_mask),
                torch.zeros_like(emr_present),
                torch.zeros_like(dictation_hidden),
                torch.zeros_like(dictation_mask),
                torch.zeros_like(dictation_present),
                dictation_quality,
            )
        return ModelOutput(
            finding_logits=logits,
            finding_probabilities=self.finding_head.calibrate(logits.float()),
            evidence=evidence,
            modality_weights=weights,
            nodule_map=nodule_map,
            image_only_logits=image_only_logits,
        )

    def _fuse_visual(
        self,
        visual: torch.Tensor,
        image_quality: torch.Tensor,
        emr_hidden: torch.Tensor,
        emr_mask: torch.Tensor,
        emr_present: torch.Tensor,
        dictation_hidden: torch.Tensor,
        dictation_mask: torch.Tensor,
        dictation_present: torch.Tensor,
        dictation_quality: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gate, fusion Transformer and finding head over the visual tokens and the texts."""
        b = visual.shape[0]
        weights = self.gate(
            image_quality=image_quality.to(visual.dtype),
            emr_present=emr_present,
            emr_length=emr_mask.sum(1),
            dictation_present=dictation_present,
            dictation_length=dictation_mask.sum(1),
            dictation_quality=dictation_quality.to(visual.dtype),
        )
        fused_weights = weights
        if self.config.dictation_gate_from_quality:
            fused_weights = torch.cat([weights[:, :2], weights[:, 2:].detach()], dim=1)
        log_w = log_weight_bias(fused_weights.float()).to(visual.dtype)  # (B, 3)
        neg_inf = torch.tensor(float("-inf"), dtype=visual.dtype, device=visual.device)
        zero = visual.new_zeros(b, 1)

        image_tokens = torch.cat(
            [
                self.cls_token.to(visual.dtype).expand(b, -1, -1)
                + self.type_embedding.weight[CLS_TYPE].to(visual.dtype),
                visual + self.type_embedding.weight[IMAGE_TYPE].to(visual.dtype),
            ],
            dim=1,
        )
        image_bias = torch.cat([zero, log_w[:, :1].expand(b, visual.shape[1])], dim=1)
        text_tokens = torch.cat(
            [
                self.text_summary_token.to(visual.dtype).expand(b, -1, -1)
                + self.type_embedding.weight[TEXT_SUMMARY_TYPE].to(visual.dtype),
                self._text_tokens(emr_hidden, EMR_TYPE).to(visual.dtype),
                self._text_tokens(dictation_hidden, DICTATION_TYPE).to(visual.dtype),
            ],
            dim=1,
        )
        text_bias = torch.cat(
            [
                zero,
                torch.where(emr_mask, log_w[:, 1:2], neg_inf),
                torch.where(dictation_mask, log_w[:, 2:3], neg_inf),
            ],
            dim=1,
        )
        cls, fused_visual = self.fusion(
            image=image_tokens, image_bias=image_bias, text=text_tokens, text_bias=text_bias
        )
        logits, evidence = self.finding_head(fused_visual, cls)
        return logits, evidence, weights
