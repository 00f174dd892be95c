"""From cached studies to model batches: images, texts, labels, nodule targets.

A ``StudyTable`` holds one split: the memory-mapped images (or a copy on the GPU),
the per-study texts (EMR and a dictation, real or simulated), their cached frozen
embeddings and the labels.  ``StudyTable.batch`` builds the ``ModelBatch`` of the
forward contract plus what the losses need.  Evaluation builds its modality
ablations by passing other texts for the same studies.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from queue import Queue
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.config import ModelConfig
from models.losses import NoduleTarget
from models.networks.gating import DictationQuality, dictation_quality_vector
from models.networks.model import ModelBatch, TextInput
from models.preprocess import PreprocessSpec
from models.training.config import DictationConfig
from models.training.dictation import sample_snr, simulate_dictation, study_rng
from models.training.text_cache import TextEmbeddingStore, pad_embeddings
from models.training.volume_cache import CachedSplit, CachedStudyInfo
from models.volume import GridGeometry

AIR = -1.0
"""Windowed value of air: what fills a shifted image's edge."""
MAX_SHIFT_VOXELS = 4


@dataclass(frozen=True)
class StudyTexts:
    emr: str | None
    dictation: str | None
    dictation_quality: DictationQuality | None
    dictation_accuracy: float = math.nan
    """Fraction of dictated words recognised (simulated dictations); NaN when unknown."""


def assign_texts(
    studies: Sequence[CachedStudyInfo],
    *,
    seed: int,
    config: DictationConfig,
    training: bool,
    snr_db: float | None = None,
) -> list[StudyTexts]:
    """Each study's EMR text and dictation (deterministic per seed and study).

    Training uses every available text (the model's modality dropout hides them);
    evaluation splits have each text with the configured probability, as in practice.
    ``snr_db`` forces the simulated dictation's SNR (present for every study).
    """
    out = []
    for info in studies:
        rng = study_rng(seed, info.study_id, "texts")
        emr = info.emr_text
        if emr and not training and rng.random() >= config.emr_present_probability:
            emr = None
        dictation: str | None = None
        quality: DictationQuality | None = None
        accuracy = math.nan
        if info.dictation_text:
            dictation = info.dictation_text
            if info.dictation_quality is not None:
                quality = DictationQuality(*info.dictation_quality)
        elif info.report_text:
            wanted = training or snr_db is not None or rng.random() < config.present_probability
            snr = sample_snr(rng, config.noisy_fraction) if snr_db is None else snr_db
            if wanted:
                simulated = simulate_dictation(
                    info.report_text, rng, snr_db=snr, sentence_keep=config.sentence_keep
                )
                dictation, quality = simulated.text, simulated.quality
                accuracy = simulated.word_accuracy
        out.append(StudyTexts(emr, dictation, quality, accuracy))
    return out


def without(
    texts: Sequence[StudyTexts], *, emr: bool = False, dictation: bool = False
) -> list[StudyTexts]:
    """The same texts with EMR and/or dictation removed (ablations)."""
    return [
        replace(
            t,
            emr=None if emr else t.emr,
            dictation=None if dictation else t.dictation,
            dictation_quality=None if dictation else t.dictation_quality,
        )
        for t in texts
    ]


def shuffled_emr(texts: Sequence[StudyTexts], *, seed: int) -> list[StudyTexts]:
    """EMR texts permuted between studies (no study keeps its own), without dictation."""
    rng = np.random.default_rng(seed)
    n = len(texts)
    order = rng.permutation(n)
    for i in range(n if n > 1 else 0):
        if order[i] == i:
            j = (i + 1) % n
            order[i], order[j] = order[j], order[i]
    return [replace(texts[int(order[i])], dictation=None, dictation_quality=None) for i in range(n)]


@dataclass
class TrainingBatch:
    model: ModelBatch
    labels: torch.Tensor
    """(B, F) float, NaN unknown."""
    nodules: list[tuple[NoduleTarget, ...] | None]
    grids: list[GridGeometry]
    dictation_accuracy: torch.Tensor
    positions: list[int]


class StudyTable:
    """One cached split with texts, ready to batch."""

    def __init__(
        self,
        cached: CachedSplit,
        texts: Sequence[StudyTexts],
        *,
        model_config: ModelConfig,
        store: TextEmbeddingStore | None,
    ) -> None:
        if len(texts) != len(cached):
            raise ValueError("one StudyTexts per cached study is needed")
        self.cached = cached
        self.texts = list(texts)
        self.config = model_config
        self.store = store
        self.labels = cached.labels
        self.device_images: torch.Tensor | None = None
        self._tokenizer: Any = None

    def __len__(self) -> int:
        return len(self.cached)

    def all_texts(self) -> tuple[list[str], list[str]]:
        emr = sorted({t.emr for t in self.texts if t.emr})
        dictation = sorted({t.dictation for t in self.texts if t.dictation})
        return emr, dictation

    def preload(self, device: torch.device, *, reuse: StudyTable | None = None) -> None:
        """Copy every image to ``device`` (float16) so batches need no host reads.

        Images that ``reuse`` (an earlier table of the same cache) already holds on the
        device are copied from there.
        """
        held: dict[int, int] = {}
        if reuse is not None and reuse.device_images is not None:
            held = {s.index: i for i, s in enumerate(reuse.cached.studies)}
        rows = [s.index for s in self.cached.studies]
        chunks = []
        start = 0
        while start < len(rows):
            if rows[start] in held and reuse is not None and reuse.device_images is not None:
                stop = start
                while stop < len(rows) and rows[stop] in held and stop - start < 256:
                    stop += 1
                index = torch.tensor([held[r] for r in rows[start:stop]], device=device)
                chunks.append(reuse.device_images.index_select(0, index))
            else:
                stop = start
                while stop < len(rows) and rows[stop] not in held and stop - start < 64:
                    stop += 1
                block = np.stack([self.cached.images[i] for i in rows[start:stop]])
                chunks.append(torch.from_numpy(block).to(device))
            start = stop
        self.device_images = torch.cat(chunks)

    def image_bytes(self) -> int:
        return len(self) * int(np.prod(self.cached.images.shape[1:])) * 2

    def _images(self, positions: Sequence[int], device: torch.device) -> torch.Tensor:
        if self.device_images is not None:
            index = torch.as_tensor(positions, device=self.device_images.device)
            return self.device_images.index_select(0, index).to(device).float()[:, None]
        block = np.stack([self.cached.image(p) for p in positions]).astype(np.float32)
        tensor = torch.from_numpy(block)[:, None]
        if device.type == "cuda":
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=True)

    def _text_input(
        self, values: Sequence[str | None], max_tokens: int, device: torch.device
    ) -> TextInput:
        if self.store is not None:
            embeddings = [None if v is None else self.store.get(v, max_tokens) for v in values]
            hidden, mask, present = pad_embeddings(embeddings, self.config.text_dim)
            return TextInput(
                present=present.to(device),
                attention_mask=mask.to(device),
                embeddings=hidden.to(device),
            )
        if self._tokenizer is None:
            from models.networks.text_encoder import TextTokenizer

            self._tokenizer = TextTokenizer()
        ids, mask = self._tokenizer([v or "" for v in values], max_tokens=max_tokens)
        present = torch.tensor([v is not None for v in values], dtype=torch.bool)
        return TextInput(
            present=present.to(device), attention_mask=mask.to(device), token_ids=ids.to(device)
        )

    def batch(
        self,
        positions: Sequence[int],
        device: torch.device,
        *,
        texts: Sequence[StudyTexts] | None = None,
    ) -> TrainingBatch:
        """The batch of the studies at ``positions`` (texts: per-study overrides)."""
        chosen = [(texts or self.texts)[p] for p in positions]
        studies = [self.cached.studies[p] for p in positions]
        quality = torch.tensor([s.quality for s in studies], dtype=torch.float32)
        dictation_quality = torch.tensor(
            [dictation_quality_vector(t.dictation_quality) for t in chosen], dtype=torch.float32
        )
        return TrainingBatch(
            model=ModelBatch(
                image=self._images(positions, device),
                image_quality=quality.to(device),
                emr=self._text_input([t.emr for t in chosen], self.config.emr_max_tokens, device),
                dictation=self._text_input(
                    [t.dictation for t in chosen], self.config.dictation_max_tokens, device
                ),
                dictation_quality=dictation_quality.to(device),
            ),
            labels=torch.from_numpy(self.labels[list(positions)]).to(device),
            nodules=[s.nodules for s in studies],
            grids=[s.grid for s in studies],
            dictation_accuracy=torch.tensor(
                [t.dictation_accuracy for t in chosen], dtype=torch.float32, device=device
            ),
            positions=list(positions),
        )


def batches(
    table: StudyTable,
    order: Sequence[int],
    batch_size: int,
    device: torch.device,
    *,
    texts: Sequence[StudyTexts] | None = None,
    prefetch: int = 2,
) -> Iterator[TrainingBatch]:
    """Batches in ``order``, built one ahead in a thread (memmap reads release the GIL)."""
    groups = [list(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    if table.device_images is not None or prefetch <= 0:
        for group in groups:
            yield table.batch(group, device, texts=texts)
        return
    queue: Queue[TrainingBatch | BaseException | None] = Queue(maxsize=prefetch)
    stop = threading.Event()

    def produce() -> None:
        try:
            for group in groups:
                if stop.is_set():
                    return
                queue.put(table.batch(group, device, texts=texts))
        except BaseException as exc:  # handed to the consumer
            queue.put(exc)
            return
        queue.put(None)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while (item := queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not queue.empty():
            queue.get_nowait()
        worker.join(timeout=5)


def augment(batch: TrainingBatch, generator: torch.Generator) -> TrainingBatch:
    """Whole-voxel shifts (grids move with them), intensity jitter and a little noise."""
    image = batch.model.image
    b = image.shape[0]
    grids = []
    shifted = torch.empty_like(image)
    shifts = torch.randint(-MAX_SHIFT_VOXELS, MAX_SHIFT_VOXELS + 1, (b, 3), generator=generator)
    for i in range(b):
        sx, sy, sz = (int(v) for v in shifts[i])
        shifted[i] = _shift(image[i], (sx, sy, sz))
        grid = batch.grids[i]
        origin = np.asarray(grid.origin_ras) - np.array([sx, sy, sz]) * np.asarray(grid.spacing_mm)
        grids.append(
            GridGeometry(
                shape=grid.shape,
                spacing_mm=grid.spacing_mm,
                origin_ras=(float(origin[0]), float(origin[1]), float(origin[2])),
            )
        )
    scale = 1.0 + 0.05 * (torch.rand(b, 1, 1, 1, 1, generator=generator) * 2 - 1)
    offset = 0.03 * (torch.rand(b, 1, 1, 1, 1, generator=generator) * 2 - 1)
    sigma = 0.02 * torch.rand(b, 1, 1, 1, 1, generator=generator)
    device = image.device
    noise = (
        torch.randn(image.shape, generator=generator).to(device)
        if device.type == "cpu"
        else torch.randn_like(image)
    )
    shifted = (shifted * scale.to(device) + offset.to(device) + noise * sigma.to(device)).clamp(
        -1.0, 1.0
    )
    model = replace(batch.model, image=shifted)
    return replace(batch, model=model, grids=grids)


def _shift(volume: torch.Tensor, shift: tuple[int, int, int]) -> torch.Tensor:
    """Move (C, X, Y, Z) content by whole voxels; the uncovered edge becomes air."""
    out = torch.full_like(volume, AIR)
    src = [slice(None)]
    dst = [slice(None)]
    for s, n in zip(shift, volume.shape[1:], strict=True):
        if s >= 0:
            src.append(slice(0, n - s))
            dst.append(slice(s, n))
        else:
            src.append(slice(-s, n))
            dst.append(slice(0, n + s))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def grid_patches(
    images: torch.Tensor,
    grids: Sequence[GridGeometry],
    centres_ras: torch.Tensor,
    batch_index: Sequence[int],
    spec: PreprocessSpec,
) -> torch.Tensor:
    """Cubes (N, 1, P, P, P) at ``patch_spacing_mm`` around RAS points, cut from grid images.

    The same sampling serves the refiner's training and evaluation.  Outside the
    grid is air.
    """
    p = spec.patch_shape
    spacing = spec.patch_spacing_mm
    device = images.device
    axes = [
        (torch.arange(n, device=device, dtype=torch.float32) - (n - 1) / 2) * spacing for n in p
    ]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (P, P, P, 3) mm RAS
    samples = []
    for n, b in enumerate(batch_index):
        grid = grids[b]
        origin = torch.tensor(grid.origin_ras, device=device, dtype=torch.float32)
        step = torch.tensor(grid.spacing_mm, device=device, dtype=torch.float32)
        shape = torch.tensor(grid.shape, device=device, dtype=torch.float32)
        voxel = (mesh + centres_ras[n].to(device) - origin) / step  # (P, P, P, 3) (x, y, z)
        normalised = voxel / (shape - 1) * 2 - 1
        # grid_sample wants (W, H, D) = (z, y, x) coordinate order for a (X, Y, Z) volume
        coords = normalised.flip(-1)[None]
        sample = F.grid_sample(
            images[b : b + 1].float() - AIR,
            coords,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=True,
        )
        samples.append(sample + AIR)
    return torch.cat(samples)
