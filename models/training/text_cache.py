"""Frozen text-encoder embeddings, computed once per text and cached on disk.

With a frozen text encoder (the default), the embeddings of a text never change,
so each distinct EMR text and dictation is encoded once and every epoch reads the
token embeddings (L, text_dim) from a memory-mapped shard.  Keys hash the encoder
identity, the token limit and the text, so another encoder or limit never reads
a stale entry.

    CACHE/text/<encoder id>/shard-<n>.npy   (rows, text_dim) float32
    CACHE/text/<encoder id>/shard-<n>.json  {key: [first row, length]}
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.networks.model import RadscribeModel

ENCODE_BATCH = 64


def text_encoder_id(model: RadscribeModel) -> str:
    """A stable name for the model's text encoder weights."""
    config = model.config
    if config.text_encoder == "all-MiniLM-L6-v2" and not config.text_trainable:
        from models.checkpoint import _packaged_text_source

        return "minilm-" + _packaged_text_source()["sha256"][:16]
    if model.text_encoder is None:
        raise ValueError("the model was built without its text encoder")
    digest = hashlib.sha256()
    for name, tensor in sorted(model.text_encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return f"{config.text_encoder}-{digest.hexdigest()[:16]}"


def text_key(text: str, max_tokens: int) -> str:
    return hashlib.sha256(f"{max_tokens}\n{text}".encode()).hexdigest()[:32]


class TextEmbeddingStore:
    """Token embeddings of texts for one encoder; add missing texts with ``ensure``."""

    def __init__(self, root: Path, encoder_id: str) -> None:
        self.root = Path(root) / "text" / encoder_id
        self.root.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, tuple[int, int, int]] = {}
        self._shards: list[np.ndarray] = []
        self._load()

    def _load(self) -> None:
        self._index.clear()
        self._shards.clear()
        n = 0
        while (self.root / f"shard-{n}.json").is_file():
            rows = np.load(self.root / f"shard-{n}.npy", mmap_mode="r")
            entries = json.loads((self.root / f"shard-{n}.json").read_text())
            for key, (start, length) in entries.items():
                self._index[key] = (n, int(start), int(length))
            self._shards.append(rows)
            n += 1

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def get(self, text: str, max_tokens: int) -> np.ndarray:
        """(L, text_dim) float32 embeddings of ``text`` (KeyError when not cached)."""
        shard, start, length = self._index[text_key(text, max_tokens)]
        return np.asarray(self._shards[shard][start : start + length])

    def ensure(
        self,
        texts: Iterable[str],
        *,
        max_tokens: int,
        model: RadscribeModel,
        device: torch.device | str = "cpu",
        batch_size: int = ENCODE_BATCH,
    ) -> int:
        """Encode and store every text not cached yet; returns how many were added."""
        from models.networks.text_encoder import TextTokenizer

        missing: dict[str, str] = {}
        for text in texts:
            key = text_key(text, max_tokens)
            if key not in self._index and key not in missing:
                missing[key] = text
        if not missing:
            return 0
        tokenizer = TextTokenizer()
        if model.text_encoder is None:
            raise ValueError("the model was built without its text encoder")
        encoder = model.text_encoder.to(device).eval()
        items = sorted(missing.items(), key=lambda kv: len(kv[1]))  # similar lengths together
        rows: list[np.ndarray] = []
        entries: dict[str, tuple[int, int]] = {}
        offset = 0
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                ids, mask = tokenizer([t for _, t in chunk], max_tokens=max_tokens)
                hidden = encoder(ids.to(device), mask.to(device)).float().cpu().numpy()
                lengths = mask.sum(1).tolist()
                for (key, _), h, length in zip(chunk, hidden, lengths, strict=True):
                    rows.append(h[:length])
                    entries[key] = (offset, int(length))
                    offset += int(length)
        n = len(self._shards)
        data = np.concatenate(rows).astype(np.float32)
        temporary = self.root / f"shard-{n}.tmp.npy"
        np.save(temporary, data)
        os.replace(temporary, self.root / f"shard-{n}.npy")
        index_tmp = self.root / f"shard-{n}.json.tmp"
        index_tmp.write_text(json.dumps(entries))
        os.replace(index_tmp, self.root / f"shard-{n}.json")
        self._load()
        return len(missing)


def pad_embeddings(
    embeddings: Sequence[np.ndarray | None], text_dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack per-study embeddings to (B, L, D) with a mask; None is an absent text.

    Returns (embeddings, attention_mask, present).  Absent rows hold two zero tokens
    with a true mask, like ``TextInput.absent`` ([CLS][SEP]): the model ignores them.
    """
    lengths = [2 if e is None else len(e) for e in embeddings]
    length = max(max(lengths), 2)
    out = np.zeros((len(embeddings), length, text_dim), dtype=np.float32)
    mask = np.zeros((len(embeddings), length), dtype=bool)
    for i, e in enumerate(embeddings):
        if e is None:
            mask[i, :2] = True
        else:
            out[i, : len(e)] = e
            mask[i, : len(e)] = True
    present = torch.tensor([e is not None for e in embeddings], dtype=torch.bool)
    return torch.from_numpy(out), torch.from_numpy(mask), present


def ensure_texts(
    store: TextEmbeddingStore,
    texts: Sequence[Any],
    *,
    model: RadscribeModel,
    device: torch.device | str = "cpu",
) -> dict[str, int]:
    """Encode every EMR text and dictation of ``texts`` (``StudyTexts``) not cached yet;
    returns how many of each kind were added."""
    limits = {"emr": model.config.emr_max_tokens, "dictation": model.config.dictation_max_tokens}
    return {
        kind: store.ensure(
            {getattr(t, kind) for t in texts if getattr(t, kind)},
            max_tokens=limit,
            model=model,
            device=device,
        )
        for kind, limit in limits.items()
    }
