"""Which studies a split holds, for each data layout, and how their images are prepared."""

from __future__ import annotations

import time
from pathlib import Path

from models.preprocess import PreprocessSpec
from models.training.config import DataConfig
from models.training.records import StudyRecord, limit_records
from models.training.volume_cache import CachedSplit, Preparer, build_split_cache, prepare_from_file

SYNTHETIC_COUNTS = {
    "train": "synthetic_train",
    "valid": "synthetic_valid",
    "test": "synthetic_test",
}


def split_records(data: DataConfig, split: str) -> tuple[list[StudyRecord], Preparer]:
    """The split's records (in a stable order) and the function that prepares their images."""
    if data.layout == "synthetic":
        from models.training.synthetic_source import prepare_synthetic, synthetic_records

        count = int(getattr(data, SYNTHETIC_COUNTS.get(split, "synthetic_test")))
        coarse = data.synthetic_coarse_fraction if split != "test" else 0.0
        records = synthetic_records(split, count, coarse_fraction=coarse)
        return limit_records(records, data.limit), prepare_synthetic
    if data.layout == "hospital":
        from models.training.hospital import read_export

        if data.root is None:
            raise ValueError("a hospital export needs data.root")
        records = read_export(data.root, split, valid_fraction=data.valid_fraction)
        return limit_records(records, data.limit), prepare_from_file
    from models.training.ctrate import read_split, resolve_paths

    paths = resolve_paths(
        data.root,
        image_dir=data.image_dir,
        text_dir=data.text_dir,
        label_dir=data.label_dir,
        metadata_dir=data.metadata_dir,
    )
    records = read_split(paths, split, volumes_in_hu=data.volumes_in_hu)
    return limit_records(records, data.limit), prepare_from_file


def open_split(
    data: DataConfig,
    split: str,
    spec: PreprocessSpec,
    cache_dir: Path,
    *,
    time_budget_s: float | None = None,
    progress: bool = True,
    build: bool = True,
) -> CachedSplit:
    """Build (or reuse) the split's volume cache and open it."""
    records, prepare = split_records(data, split)
    deadline = None if time_budget_s is None else time.time() + time_budget_s
    return build_split_cache(
        cache_dir,
        split,
        records,
        spec,
        prepare=prepare,
        workers=data.cache_workers,
        deadline=deadline,
        progress=progress,
        build=build,
    )
