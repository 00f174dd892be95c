"""Inference: a study folder (plus optional EMR text and transcript) to a typed result.

    drafter = get_drafter(Path("model.safetensors"))      # once per process (cached)
    result = drafter.draft(study_dir, emr_text=..., transcript=..., dictation_quality=...)
    result.to_json()

Each result carries calibrated probabilities, per-finding decisions (checkpoint
thresholds), detected nodules (diameter from the full-resolution refiner, type,
lobe, location, slice), per-finding evidence (the slice and location the finding's
attention peaked on), modality weights, the model version, the precision, timings
and ``validated_for_clinical_use``.  Bad input raises ``models.errors.ModelInputError``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import LoadedCheckpoint, load_checkpoint
from models.config import LOBES, MODALITIES, NODULE_TYPES
from models.errors import NotChestError
from models.findings import FINDINGS
from models.networks.gating import DictationQuality, dictation_quality_vector
from models.networks.heads import (
    NODULE_LOBE,
    NODULE_LOG_DIAMETER,
    NODULE_OBJECTNESS,
    NODULE_OFFSET,
    NODULE_TYPE,
)
from models.networks.model import ModelBatch, ModelOutput, RadscribeModel, TextInput
from models.nodule_measure import measuring_spec, nodule_diameter
from models.preprocess import PreparedImage, extract_patch, preprocess, unwindow
from models.quantize import Precision, default_precision, prepare_for_inference
from models.volume import LPS_TO_RAS

MIN_LUNG_VOLUME_L = 0.5
"""Less air-filled lung than this and the series is not a chest CT the model can read."""
EVIDENCE_SHARE = 0.5
"""Tokens with at least this share of the peak attention form the evidence centroid."""
REFINER_CENTRE_SCALE_MM = 10.0


@dataclass(frozen=True)
class SliceLocation:
    slice_index: int
    """Index in the series sorted along the slice normal (0 = first)."""
    instance_number: int | None
    sop_instance_uid: str | None
    centre_ras_mm: tuple[float, float, float]


@dataclass(frozen=True)
class NoduleResult:
    probability: float
    diameter_mm: float
    nodule_type: str
    type_probabilities: dict[str, float]
    lobe: str
    lobe_probability: float
    location: SliceLocation
    diameter_source: str = "refiner"
    """"measured" on the image (``models.nodule_measure``) or the "refiner" network's reading."""


@dataclass(frozen=True)
class Evidence:
    finding: str
    attention_peak: float
    location: SliceLocation


@dataclass
class DraftResult:
    probabilities: dict[str, float]
    decisions: dict[str, bool]
    thresholds: dict[str, float]
    nodules: list[NoduleResult]
    evidence: dict[str, Evidence]
    modality_weights: dict[str, float]
    modalities_present: dict[str, bool]
    image_quality: dict[str, float]
    series_instance_uid: str | None
    model_version: str
    precision: str
    device: str
    validated_for_clinical_use: bool
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    verify_thresholds: dict[str, float] = field(default_factory=dict)
    """Per finding, the lower threshold: probabilities from it up to the decision threshold
    are flagged for the radiologist to verify (``findings_to_verify``)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def positive_findings(self) -> list[str]:
        return [slug for slug, on in self.decisions.items() if on]

    @property
    def findings_to_verify(self) -> list[str]:
        """Findings below the decision threshold but at or above the verify threshold."""
        return [
            slug
            for slug, p in self.probabilities.items()
            if not self.decisions[slug] and p >= self.verify_thresholds.get(slug, 1.0 + p)
        ]


@dataclass(frozen=True)
class StudyInput:
    """One study for batch drafting."""

    image: Path | PreparedImage
    emr_text: str | None = None
    transcript: str | None = None
    dictation_quality: DictationQuality | None = None
    findings_only: bool = False
    """Only the findings' probabilities and decisions: no nodule measurement on the
    full-resolution image and no evidence (about 1.8 s of a 300-slice study's CPU time),
    for a second reading that is only compared with the first."""


def _has_text(text: str | None) -> bool:
    return bool(text and text.strip())


class Drafter:
    """A loaded checkpoint in one deployment form; drafts one study or a batch."""

    def __init__(
        self,
        checkpoint: LoadedCheckpoint,
        *,
        device: str | torch.device = "cpu",
        precision: Precision | None = None,
        compile_model: bool = False,
    ) -> None:
        from models.networks.text_encoder import TextTokenizer

        self.meta = checkpoint.meta
        self.device = torch.device(device)
        self.precision: Precision = precision or default_precision(self.device)
        self.model: RadscribeModel = prepare_for_inference(
            checkpoint.model,
            device=self.device,
            precision=self.precision,
            compile_model=compile_model,
        )
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.tokenizer = TextTokenizer()
        self.spec = self.meta.preprocess_spec
        self.config = self.meta.model_config

    @property
    def batch_invariant(self) -> bool:
        """Whether a study's result is the same whatever else is in its batch.

        Not for INT8: dynamic quantization picks each layer's activation scale from the
        whole batch, so batch-mates move a result (by 0.1 in probability, measured)."""
        return self.precision != "int8"

    # -- inputs ---------------------------------------------------------------
    def _text(self, texts: Sequence[str | None], max_tokens: int) -> TextInput:
        present = torch.tensor([_has_text(t) for t in texts], dtype=torch.bool)
        ids, mask = self.tokenizer([t or "" for t in texts], max_tokens=max_tokens)
        return TextInput(
            present=present.to(self.device),
            attention_mask=mask.to(self.device),
            token_ids=ids.to(self.device),
        )

    def _batch(
        self, prepared: Sequence[PreparedImage], studies: Sequence[StudyInput]
    ) -> ModelBatch:
        image = torch.stack([p.image for p in prepared]).to(self.device, self.dtype)
        quality = torch.tensor([p.quality.to_vector() for p in prepared], dtype=torch.float32)
        dictation_quality = torch.tensor(
            [dictation_quality_vector(s.dictation_quality) for s in studies], dtype=torch.float32
        )
        return ModelBatch(
            image=image,
            image_quality=quality.to(self.device),
            emr=self._text([s.emr_text for s in studies], self.config.emr_max_tokens),
            dictation=self._text([s.transcript for s in studies], self.config.dictation_max_tokens),
            dictation_quality=dictation_quality.to(self.device),
        )

    def _prepare(self, image: Path | PreparedImage) -> PreparedImage:
        prepared = image if isinstance(image, PreparedImage) else preprocess(Path(image), self.spec)
        if prepared.spec != self.spec:
            raise ValueError("the image was preprocessed with another spec than the checkpoint's")
        if prepared.quality.lung_volume_l < MIN_LUNG_VOLUME_L:
            raise NotChestError(
                f"series {prepared.stack.series_instance_uid} shows "
                f"{prepared.quality.lung_volume_l:.2f} L of lung; not a chest CT the model can read"
            )
        return prepared

    # -- public ---------------------------------------------------------------
    def draft(
        self,
        image: Path | PreparedImage,
        *,
        emr_text: str | None = None,
        transcript: str | None = None,
        dictation_quality: DictationQuality | None = None,
    ) -> DraftResult:
        study = StudyInput(
            image=image,
            emr_text=emr_text,
            transcript=transcript,
            dictation_quality=dictation_quality,
        )
        return self.draft_batch([study])[0]

    def draft_batch(self, studies: Sequence[StudyInput]) -> list[DraftResult]:
        """Preprocess each study, run the network once for the batch, decode each result.

        A form that is not batch-invariant (INT8) runs each study alone, so no result
        depends on what else was in the call."""
        if not self.batch_invariant and len(studies) > 1:
            return [result for study in studies for result in self.draft_batch([study])]
        start = time.perf_counter()
        prepared = [self._prepare(s.image) for s in studies]
        preprocess_s = time.perf_counter() - start
        start = time.perf_counter()
        batch = self._batch(prepared, studies)
        with torch.inference_mode():
            output = self.model(batch)
            model_s = time.perf_counter() - start
            start = time.perf_counter()
            results = [
                self._decode(output, i, prepared[i], batch, studies[i].findings_only)
                for i in range(len(studies))
            ]
        decode_s = time.perf_counter() - start
        for result, item in zip(results, prepared, strict=True):
            result.timings = {
                **{f"preprocess_{k}": round(v, 4) for k, v in item.timings.items()},
                "preprocess_batch_s": round(preprocess_s, 4),
                "model_batch_s": round(model_s, 4),
                "nodules_and_evidence_batch_s": round(decode_s, 4),
            }
        return results

    # -- outputs --------------------------------------------------------------
    def _location(self, prepared: PreparedImage, voxel: np.ndarray) -> SliceLocation:
        ras = prepared.grid.voxel_to_ras(voxel)
        stack = prepared.stack
        index = stack.nearest_slice(ras * LPS_TO_RAS)
        ref = stack.slices[index] if index < len(stack.slices) else None
        return SliceLocation(
            slice_index=index,
            instance_number=ref.instance_number if ref else None,
            sop_instance_uid=ref.sop_instance_uid if ref else None,
            centre_ras_mm=(
                round(float(ras[0]), 1),
                round(float(ras[1]), 1),
                round(float(ras[2]), 1),
            ),
        )

    def _evidence(self, attention: torch.Tensor, prepared: PreparedImage) -> dict[str, Evidence]:
        grid_shape = np.array(self.config.token_grid)
        cell = np.array(prepared.grid.shape) / grid_shape
        evidence = {}
        weights = attention.float().cpu().numpy()  # (F, T), tokens x-major
        token_index = np.stack(
            np.unravel_index(np.arange(weights.shape[1]), tuple(grid_shape)), axis=1
        ).astype(np.float64)
        for f, finding in enumerate(FINDINGS):
            w = weights[f]
            strong = w >= EVIDENCE_SHARE * w.max()
            centre_tokens = (token_index[strong] * w[strong, None]).sum(0) / w[strong].sum()
            voxel = (centre_tokens + 0.5) * cell - 0.5
            evidence[finding.slug] = Evidence(
                finding=finding.slug,
                attention_peak=round(float(w.max()), 4),
                location=self._location(prepared, voxel),
            )
        return evidence

    def _nodules(self, nodule_map: torch.Tensor, prepared: PreparedImage) -> list[NoduleResult]:
        maps = nodule_map.float().cpu()
        objectness = torch.sigmoid(maps[NODULE_OBJECTNESS]).flatten()
        k = min(self.config.max_nodules, objectness.numel())
        scores, order = objectness.topk(k)
        keep = scores >= self.meta.nodule_threshold
        if not bool(keep.any()):
            return []
        map_shape = tuple(maps.shape[1:])
        cell = np.array(prepared.grid.shape) / np.array(map_shape)
        candidates = []
        for score, flat in zip(scores[keep].tolist(), order[keep].tolist(), strict=True):
            x, y, z = np.unravel_index(flat, map_shape)
            offset = torch.tanh(maps[NODULE_OFFSET, x, y, z]).numpy()
            voxel = (np.array([x, y, z]) + offset + 0.5) * cell - 0.5
            candidates.append(
                (
                    float(score),
                    prepared.grid.voxel_to_ras(voxel),
                    float(torch.exp(maps[NODULE_LOG_DIAMETER, x, y, z])),
                    torch.softmax(maps[NODULE_TYPE, x, y, z], 0),
                    torch.softmax(maps[NODULE_LOBE, x, y, z], 0),
                )
            )
        # One nodule seen from two cells: keep the stronger when centres lie within a radius.
        kept: list[tuple[float, np.ndarray, float, torch.Tensor, torch.Tensor]] = []
        for candidate in candidates:
            if all(
                np.linalg.norm(candidate[1] - other[1]) > max(candidate[2], other[2]) / 2
                for other in kept
            ):
                kept.append(candidate)
        patches = torch.stack([extract_patch(prepared, c[1]) for c in kept])
        refined = self.model.refiner(patches.to(self.device, self.dtype)).float().cpu()
        results = []
        measuring = measuring_spec(prepared.spec)
        for (score, centre, head_mm, _, lobe_p), out in zip(kept, refined, strict=True):
            centre_ras = centre + out[4:7].numpy() * REFINER_CENTRE_SCALE_MM
            type_p = torch.softmax(out[1:4], 0)
            lobe = int(lobe_p.argmax())
            cube = extract_patch(prepared, centre, spec=measuring)[0].numpy()
            diameter, source = nodule_diameter(
                float(torch.exp(out[0])),
                unwindow(cube, prepared.spec),
                head_mm=head_mm,
            )
            results.append(
                NoduleResult(
                    probability=round(score, 4),
                    diameter_mm=round(diameter, 1),
                    diameter_source=source,
                    nodule_type=NODULE_TYPES[int(type_p.argmax())],
                    type_probabilities={
                        t: round(float(p), 4) for t, p in zip(NODULE_TYPES, type_p, strict=True)
                    },
                    lobe=LOBES[lobe],
                    lobe_probability=round(float(lobe_p[lobe]), 4),
                    location=self._location(prepared, prepared.grid.ras_to_voxel(centre_ras)),
                )
            )
        return results

    def _decode(
        self,
        output: ModelOutput,
        i: int,
        prepared: PreparedImage,
        batch: ModelBatch,
        findings_only: bool = False,
    ) -> DraftResult:
        probabilities = output.finding_probabilities[i].float().cpu().tolist()
        thresholds = self.meta.thresholds
        weights = output.modality_weights[i].float().cpu().tolist()
        present = [True, bool(batch.emr.present[i]), bool(batch.dictation.present[i])]
        return DraftResult(
            probabilities={
                f.slug: round(p, 5) for f, p in zip(FINDINGS, probabilities, strict=True)
            },
            decisions={
                f.slug: p >= thresholds[f.slug]
                for f, p in zip(FINDINGS, probabilities, strict=True)
            },
            thresholds=dict(thresholds),
            verify_thresholds=dict(self.meta.verify_thresholds or thresholds),
            nodules=[] if findings_only else self._nodules(output.nodule_map[i], prepared),
            evidence={} if findings_only else self._evidence(output.evidence[i], prepared),
            modality_weights={m: round(w, 4) for m, w in zip(MODALITIES, weights, strict=True)},
            modalities_present=dict(zip(MODALITIES, present, strict=True)),
            image_quality=prepared.quality.to_json(),
            series_instance_uid=prepared.stack.series_instance_uid,
            model_version=self.meta.model_version,
            precision=self.precision,
            device=str(self.device),
            validated_for_clinical_use=self.meta.validated_for_clinical_use,
            warnings=list(prepared.warnings),
        )


@functools.lru_cache(maxsize=4)
def get_drafter(
    checkpoint: Path,
    *,
    device: str = "cpu",
    precision: Precision | None = None,
    compile_model: bool = False,
) -> Drafter:
    """The process-wide drafter for a checkpoint (loaded once, then reused)."""
    loaded = load_checkpoint(Path(checkpoint), device="cpu")
    return Drafter(loaded, device=device, precision=precision, compile_model=compile_model)


def draft_study(
    study: Path,
    *,
    checkpoint: Path,
    emr_text: str | None = None,
    transcript: str | None = None,
    dictation_quality: DictationQuality | None = None,
    device: str = "cpu",
    precision: Precision | None = None,
) -> DraftResult:
    """One call from a study folder to a result, with the cached drafter."""
    drafter = get_drafter(Path(checkpoint).resolve(), device=device, precision=precision)
    return drafter.draft(
        study, emr_text=emr_text, transcript=transcript, dictation_quality=dictation_quality
    )
