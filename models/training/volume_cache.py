"""Preprocessed volumes, cached once as a memory-mapped array, so an epoch reads no DICOM.

For one split and one ``PreprocessSpec``::

    CACHE/volumes/<split>-<fingerprint>/
        manifest.json     spec, study ids (the fingerprint covers both)
        images.npy        (N, X, Y, Z) float16 model input in [-1, 1] (np.load(mmap_mode="r"))
        status.npy        (N,) uint8: 0 pending, 1 done, 2 refused (bad input)
        info/<i>.json     per study: grid, image quality, labels, texts, nodules, or the error

Studies are prepared in worker processes that write straight into the memmap; the
build can stop (time budget, ^C) and continue later, and refused studies (a
localizer, a head CT) are listed with the reason instead of failing the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.errors import ModelInputError
from models.losses import NoduleTarget
from models.preprocess import PreparedImage, PreprocessSpec, load_stack, prepare_stack
from models.training.records import StudyRecord
from models.volume import GridGeometry, SliceStack

logger = logging.getLogger(__name__)

PENDING, DONE, REFUSED = 0, 1, 2
CACHE_FORMAT = 1
IMAGE_DTYPE = np.float16


@dataclass
class PreparedStudy:
    """What the cache keeps of one study (besides its image)."""

    image: torch.Tensor
    """(1, X, Y, Z) float in [-1, 1]."""
    grid: GridGeometry
    quality: list[float]
    labels: tuple[float, ...]
    emr_text: str | None
    report_text: str | None
    nodules: tuple[NoduleTarget, ...] | None
    hard_reasons: tuple[str, ...] = ()


Preparer = Callable[[StudyRecord, PreprocessSpec], PreparedStudy]


def adjust_stack(stack: SliceStack, record: StudyRecord) -> SliceStack:
    """Apply a record's rescale (raw values to HU) and metadata spacing to a loaded stack."""
    if record.rescale is not None:
        slope, intercept = record.rescale
        hu = np.rint(stack.pixels.astype(np.float32) * slope + intercept)
        stack.pixels = hu.clip(-32768, 32767).astype(np.int16)
    if record.spacing_mm is not None:
        sx, sy, sz = record.spacing_mm
        current = np.linalg.norm(np.diff(stack.origins_lps, axis=0), axis=1)
        header_z = float(np.median(current)) if len(current) else sz
        if abs(header_z - sz) > 0.01 * sz or abs(stack.pixel_spacing_mm[1] - sx) > 0.01 * sx:
            k = np.arange(stack.shape[0], dtype=np.float64)
            stack.origins_lps = stack.origins_lps[:1] + k[:, None] * sz * stack.normal[None, :]
            stack.pixel_spacing_mm = (sy, sx)
            stack.warnings.append("voxel spacing taken from metadata (the header disagreed)")
    return stack


def prepare_from_file(record: StudyRecord, spec: PreprocessSpec) -> PreparedStudy:
    """A NIfTI file or DICOM folder through the same preprocessing as inference."""
    if record.source is None:
        raise ValueError(f"{record.study_id} has no image source")
    stack = adjust_stack(load_stack(record.source, spec), record)
    prepared = prepare_stack(stack, spec)
    return study_from_prepared(prepared, record)


def study_from_prepared(
    prepared: PreparedImage,
    record: StudyRecord,
    *,
    emr_text: str | None = None,
    report_text: str | None = None,
    nodules: tuple[NoduleTarget, ...] | None = None,
    labels: tuple[float, ...] | None = None,
    hard_reasons: tuple[str, ...] | None = None,
) -> PreparedStudy:
    return PreparedStudy(
        image=prepared.image,
        grid=prepared.grid,
        quality=prepared.quality.to_vector(),
        labels=labels if labels is not None else record.labels,
        emr_text=emr_text if emr_text is not None else record.emr_text,
        report_text=report_text if report_text is not None else record.report_text,
        nodules=nodules if nodules is not None else record.nodules,
        hard_reasons=hard_reasons if hard_reasons is not None else record.hard_reasons,
    )


def fingerprint(split: str, spec: PreprocessSpec, records: Sequence[StudyRecord]) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps({"format": CACHE_FORMAT, "spec": spec.to_json()}, sort_keys=True).encode()
    )
    for r in records:
        extra = f"|{sorted(r.extra.items())}" if r.extra else ""
        digest.update(
            f"{r.study_id}|{r.source}|{r.seed}|{r.rescale}|{r.spacing_mm}{extra}\n".encode()
        )
    return f"{split}-{digest.hexdigest()[:16]}"


def _nodule_json(n: NoduleTarget) -> dict[str, Any]:
    return asdict(n)


def _nodule_from_json(data: dict[str, Any]) -> NoduleTarget:
    return NoduleTarget(
        centre_ras=tuple(float(v) for v in data["centre_ras"]),  # type: ignore[arg-type]
        diameter_mm=float(data["diameter_mm"]),
        type_index=int(data["type_index"]),
        lobe_index=int(data["lobe_index"]),
    )


@dataclass(frozen=True)
class CachedStudyInfo:
    index: int
    """Row in images.npy."""
    study_id: str
    grid: GridGeometry
    quality: tuple[float, ...]
    labels: tuple[float, ...]
    emr_text: str | None
    report_text: str | None
    nodules: tuple[NoduleTarget, ...] | None
    hard_reasons: tuple[str, ...]
    dictation_text: str | None = None
    dictation_quality: tuple[float, float, float] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CachedStudyInfo:
        grid = data["grid"]
        nodules = data.get("nodules")
        quality = data.get("dictation_quality")
        return cls(
            index=int(data["index"]),
            study_id=str(data["study_id"]),
            grid=GridGeometry(
                shape=tuple(grid["shape"]),
                spacing_mm=tuple(grid["spacing_mm"]),
                origin_ras=tuple(grid["origin_ras"]),
            ),
            quality=tuple(float(v) for v in data["quality"]),
            labels=tuple(float("nan") if v is None else float(v) for v in data["labels"]),
            emr_text=data.get("emr_text"),
            report_text=data.get("report_text"),
            nodules=None if nodules is None else tuple(_nodule_from_json(n) for n in nodules),
            hard_reasons=tuple(data.get("hard_reasons", ())),
            dictation_text=data.get("dictation_text"),
            dictation_quality=None if quality is None else tuple(quality),
        )


@dataclass
class CachedSplit:
    """A built (possibly partial) cache of one split: images memmap plus per-study info."""

    root: Path
    split: str
    images: np.ndarray
    studies: list[CachedStudyInfo]
    refused: dict[str, str]

    def __len__(self) -> int:
        return len(self.studies)

    def image(self, position: int) -> np.ndarray:
        """(X, Y, Z) float16 image of the study at ``position`` in ``studies``."""
        return np.asarray(self.images[self.studies[position].index])

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.labels for s in self.studies], dtype=np.float32)


# -- building ------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(
    root: str, records: Sequence[StudyRecord], spec: PreprocessSpec, prepare: Preparer
) -> None:
    torch.set_num_threads(1)
    _WORKER.update(root=Path(root), records=records, spec=spec, prepare=prepare)


def _write_info(root: Path, index: int, info: dict[str, Any]) -> None:
    path = root / "info" / f"{index}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(info))
    os.replace(temporary, path)


def _build_one(index: int, deadline: float | None = None) -> tuple[int, int, str]:
    if deadline is not None and time.time() > deadline:
        return index, PENDING, "time budget reached"
    root: Path = _WORKER["root"]
    record: StudyRecord = _WORKER["records"][index]
    spec: PreprocessSpec = _WORKER["spec"]
    try:
        study = _WORKER["prepare"](record, spec)
    except (ModelInputError, RuntimeError, ValueError) as exc:  # bad input or a failed render
        _write_info(root, index, {"index": index, "study_id": record.study_id, "error": str(exc)})
        _set_status(root, index, REFUSED)
        return index, REFUSED, str(exc)
    images = np.load(root / "images.npy", mmap_mode="r+")
    images[index] = study.image[0].numpy().astype(IMAGE_DTYPE)
    images.flush()
    del images
    labels = [None if np.isnan(v) else float(v) for v in study.labels]
    info = {
        "index": index,
        "study_id": record.study_id,
        "grid": study.grid.to_json(),
        "quality": [float(v) for v in study.quality],
        "labels": labels,
        "emr_text": study.emr_text,
        "report_text": study.report_text,
        "dictation_text": record.dictation_text,
        "dictation_quality": record.dictation_quality,
        "nodules": None if study.nodules is None else [_nodule_json(n) for n in study.nodules],
        "hard_reasons": list(study.hard_reasons),
    }
    _write_info(root, index, info)
    _set_status(root, index, DONE)
    return index, DONE, ""


def _set_status(root: Path, index: int, value: int) -> None:
    status = np.load(root / "status.npy", mmap_mode="r+")
    status[index] = value
    status.flush()


def build_split_cache(
    cache_dir: Path,
    split: str,
    records: Sequence[StudyRecord],
    spec: PreprocessSpec,
    *,
    prepare: Preparer = prepare_from_file,
    workers: int = 1,
    deadline: float | None = None,
    progress: bool = True,
    build: bool = True,
) -> CachedSplit:
    """Prepare every pending study of ``records`` (in order) and open the cache.

    ``deadline`` (a ``time.time()`` value) stops starting new studies; the cache is
    then partial and a later call continues it.  ``build=False`` only opens what is
    there (another process is building it).
    """
    if not records:
        raise ValueError(f"split {split!r} has no studies")
    root = Path(cache_dir) / "volumes" / fingerprint(split, spec, records)
    (root / "info").mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.json"
    if not build:
        if not manifest.is_file():
            raise ValueError(f"no cache of split {split!r} at {root} (build it first)")
        return open_split_cache(root)
    if not manifest.is_file():
        shape = (len(records), *spec.grid_shape)
        np.lib.format.open_memmap(root / "images.npy", mode="w+", dtype=IMAGE_DTYPE, shape=shape)
        np.save(root / "status.npy", np.zeros(len(records), dtype=np.uint8))
        manifest.write_text(
            json.dumps(
                {
                    "format": CACHE_FORMAT,
                    "split": split,
                    "spec": spec.to_json(),
                    "study_ids": [r.study_id for r in records],
                },
                indent=1,
            )
        )
    status = np.load(root / "status.npy")
    pending = [int(i) for i in np.flatnonzero(status == PENDING)]
    if pending:
        logger.info("caching %d of %d %s studies in %s", len(pending), len(records), split, root)
        _run_builds(root, records, spec, prepare, pending, workers, deadline, progress, split)
    return open_split_cache(root)


def _run_builds(
    root: Path,
    records: Sequence[StudyRecord],
    spec: PreprocessSpec,
    prepare: Preparer,
    pending: list[int],
    workers: int,
    deadline: float | None,
    progress: bool,
    split: str,
) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(pending), desc=f"cache {split}", disable=not progress, unit="study")
    refused = 0
    if workers <= 1:
        _init_worker(str(root), records, spec, prepare)
        results = (_build_one(i, deadline) for i in pending)
        for _, state, _ in results:
            refused += state == REFUSED
            bar.update(1)
    else:
        context = mp.get_context("fork")
        with context.Pool(
            workers, initializer=_init_worker, initargs=(str(root), records, spec, prepare)
        ) as pool:
            jobs = [(i, deadline) for i in pending]
            for _, state, _ in pool.imap_unordered(_star_build, jobs, chunksize=1):
                refused += state == REFUSED
                bar.update(1)
    bar.close()
    if refused:
        logger.warning("%d %s studies were refused (see info/*.json)", refused, split)


def _star_build(job: tuple[int, float | None]) -> tuple[int, int, str]:
    return _build_one(*job)


def open_split_cache(root: Path) -> CachedSplit:
    manifest = json.loads((root / "manifest.json").read_text())
    status = np.load(root / "status.npy")
    images = np.load(root / "images.npy", mmap_mode="r")
    studies: list[CachedStudyInfo] = []
    refused: dict[str, str] = {}
    for index in range(len(status)):
        if status[index] == PENDING:
            continue
        data = json.loads((root / "info" / f"{index}.json").read_text())
        if status[index] == REFUSED:
            refused[str(data["study_id"])] = str(data.get("error", ""))
        else:
            studies.append(CachedStudyInfo.from_json(data))
    return CachedSplit(
        root=root, split=str(manifest["split"]), images=images, studies=studies, refused=refused
    )
