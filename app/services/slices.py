"""Slices of a study rendered as PNG with a CT window, for orientation in the browser.

The series shown is the one selected for drafting (else the largest); its
instances are ordered by slice position.  Rendering applies the rescale
slope and intercept, then the window; results are kept in a small in-memory
cache by instance content and window.  The images are for orientation only,
not for primary diagnosis: the hospital's own viewer is linked beside them.
"""

from __future__ import annotations

import enum
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError
from sqlalchemy import case, select
from sqlalchemy.orm import Session

from app.core.domain import SeriesState
from app.core.tables import Instance, Series

CACHE_BYTES = 64 * 1024 * 1024
PNG_COMPRESS_LEVEL = 1  # fast; the images are small and stay on the local network


class WindowPreset(enum.StrEnum):
    LUNG = "lung"
    MEDIASTINAL = "mediastinal"
    BONE = "bone"


@dataclass(frozen=True)
class Window:
    level: float
    width: float


WINDOWS: dict[WindowPreset, Window] = {
    WindowPreset.LUNG: Window(level=-600.0, width=1500.0),
    WindowPreset.MEDIASTINAL: Window(level=50.0, width=350.0),
    WindowPreset.BONE: Window(level=500.0, width=2000.0),
}


class SliceError(ValueError):
    """A slice cannot be shown; the message says why."""


@dataclass(frozen=True)
class SliceRef:
    instance_id: int
    storage_path: str
    digest: str


@dataclass(frozen=True)
class SeriesSlices:
    series_id: int
    description: str
    modality: str
    slices: list[SliceRef]


def display_series(session: Session, study_id: int) -> Series | None:
    """The series selected for drafting, else the one with the most instances."""
    return session.scalar(
        select(Series)
        .where(Series.study_id == study_id)
        .order_by(
            case((Series.state == SeriesState.SELECTED, 0), else_=1),
            Series.instance_count.desc(),
            Series.id,
        )
        .limit(1)
    )


def study_slices(session: Session, study_id: int) -> SeriesSlices | None:
    series = display_series(session, study_id)
    if series is None:
        return None
    rows = session.execute(
        select(Instance.id, Instance.storage_path, Instance.content_digest)
        .where(Instance.series_id == series.id)
        .order_by(
            Instance.slice_position.is_(None),
            Instance.slice_position,
            Instance.instance_number,
            Instance.id,
        )
    ).all()
    return SeriesSlices(
        series_id=series.id,
        description=series.series_description,
        modality=series.modality,
        slices=[SliceRef(r.id, r.storage_path, r.content_digest) for r in rows],
    )


def resolve_path(storage_dir: Path, storage_path: str) -> Path:
    """An instance file: relative paths live under the DICOM storage folder, never above it."""
    path = Path(storage_path)
    if path.is_absolute():
        return path
    root = storage_dir.resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise SliceError("instance path leaves the DICOM storage folder")
    return resolved


def windowed_png(path: Path, window: Window) -> bytes:
    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except (OSError, InvalidDicomError, AttributeError, ValueError, RuntimeError) as exc:
        raise SliceError(f"cannot read the image ({type(exc).__name__})") from None
    if pixels.ndim == 3 and int(getattr(dataset, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if pixels.ndim != 2:
        raise SliceError("only single-channel CT images are shown")
    slope = float(getattr(dataset, "RescaleSlope", 1) or 1)
    intercept = float(getattr(dataset, "RescaleIntercept", 0) or 0)
    values = pixels.astype(np.float32) * slope + intercept
    low = window.level - window.width / 2
    scaled = np.clip((values - low) * (255.0 / window.width), 0, 255).astype(np.uint8)
    if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":
        scaled = 255 - scaled
    buffer = io.BytesIO()
    Image.fromarray(scaled, mode="L").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


class SliceCache:
    """Rendered PNGs by (instance content, window), least recently used out first."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> bytes | None:
        with self._lock:
            png = self._items.get(key)
            if png is not None:
                self._items.move_to_end(key)
            return png

    def put(self, key: tuple[str, str], png: bytes) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = png
            self._size += len(png)
            while self._size > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._size -= len(dropped)


def render_slice(
    ref: SliceRef, preset: WindowPreset, *, storage_dir: Path, cache: SliceCache
) -> bytes:
    key = (f"{ref.instance_id}:{ref.digest}", preset.value)
    png = cache.get(key)
    if png is None:
        png = windowed_png(resolve_path(storage_dir, ref.storage_path), WINDOWS[preset])
        cache.put(key, png)
    return png
