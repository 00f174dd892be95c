"""Which series of a study is drafted: pure rules over header summaries.

A series is *eligible* when it is an axial stack of original CT slices that
can form one volume: modality CT, CT Image Storage, ImageType ORIGINAL and
PRIMARY, no localizer, no secondary capture or dose screen, enough slices at
distinct positions, one orientation and one matrix.  A tilted gantry is
allowed and flagged.  Eligible series are ranked: a 0.5-3 mm soft-tissue or
lung reconstruction first; irregular spacing, mixed thickness, gaps and tilt
cost points.
"""

from __future__ import annotations

import enum
import itertools
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from dicom_node.header import InstanceHeader

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_STORAGE_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}
)
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
DOSE_IMAGE_TYPES = frozenset({"DOSE_INFO", "DOSE_REPORT", "SCREEN SAVE", "SCREEN_SAVE"})
DOSE_DESCRIPTION = re.compile(r"\b(DOSE|SCREEN ?SAVE|PATIENT PROTOCOL)\b", re.IGNORECASE)

ORIENTATION_TOLERANCE = 0.01
SAME_POSITION_MM = 0.01
SPACING_TOLERANCE = 1.01
THICKNESS_TOLERANCE_MM = 0.1

BASE_SCORE = 50.0
THICKNESS_IN_RANGE_POINTS = 30.0
THICKNESS_THIN_POINTS = 15.0
THICKNESS_POINTS_LOST_PER_MM = 6.0
IRREGULAR_SPACING_PENALTY = 15.0
GAP_PENALTY = 10.0
MIXED_THICKNESS_PENALTY = 10.0
TILT_PENALTY = 5.0
SLICE_COUNT_POINTS_MAX = 5.0
SLICES_PER_POINT = 100.0
# The form of SliceSummary.to_record; a record of another version is read from the file.
SLICE_RECORD_VERSION = 1


class KernelClass(enum.StrEnum):
    SOFT_TISSUE = "soft_tissue"
    LUNG = "lung"
    BONE = "bone"
    UNKNOWN = "unknown"


KERNEL_POINTS = {
    KernelClass.SOFT_TISSUE: 20.0,
    KernelClass.LUNG: 18.0,
    KernelClass.UNKNOWN: 8.0,
    KernelClass.BONE: 0.0,
}
_LUNG_WORDS = re.compile(r"LUNG|PULM", re.IGNORECASE)
_BONE_WORDS = re.compile(r"BONE|SHARP|DETAIL|EDGE|ULTRA", re.IGNORECASE)
_SOFT_WORDS = re.compile(
    r"SOFT|STANDARD|\bSTD|BODY|ABD|MEDIASTIN|BRAIN|SMOOTH|\bSTND", re.IGNORECASE
)
# Siemens-style kernels: B30f, I40f, Br40d, Hr38 ... (sharper with the number).
_NUMBERED_KERNEL = re.compile(r"^[A-Z][a-z]?(\d{2})[a-z]?\b")
SOFT_KERNEL_MAX = 45
LUNG_KERNEL_MIN = 60
BONE_KERNEL_MIN = 75
# Canon/Toshiba FC kernels: FC01-FC19 body, FC50-FC59 lung, FC30-FC39 bone.
_FC_KERNEL = re.compile(r"^FC(\d{2})", re.IGNORECASE)


def classify_kernel(kernel: str, description: str) -> KernelClass:
    kernel = kernel.strip()
    numbered = _NUMBERED_KERNEL.match(kernel)
    if numbered:
        sharpness = int(numbered.group(1))
        if sharpness >= BONE_KERNEL_MIN:
            return KernelClass.BONE
        if sharpness >= LUNG_KERNEL_MIN:
            return KernelClass.LUNG
        if sharpness <= SOFT_KERNEL_MAX:
            return KernelClass.SOFT_TISSUE
    fc = _FC_KERNEL.match(kernel)
    if fc:
        number = int(fc.group(1))
        if 50 <= number <= 59:
            return KernelClass.LUNG
        if 30 <= number <= 39:
            return KernelClass.BONE
        if number <= 19:
            return KernelClass.SOFT_TISSUE
    for text in (kernel, description):
        if _LUNG_WORDS.search(text):
            return KernelClass.LUNG
        if _BONE_WORDS.search(text):
            return KernelClass.BONE
        if _SOFT_WORDS.search(text):
            return KernelClass.SOFT_TISSUE
    return KernelClass.UNKNOWN


@dataclass(frozen=True)
class SliceSummary:
    """What selection needs of one instance's header, series attributes included (as
    the instance states them: a series summary takes its first slice's)."""

    sop_class_uid: str
    image_type: tuple[str, ...]
    orientation: tuple[float, ...] | None
    position: tuple[float, ...] | None
    thickness: float | None
    rows: int | None
    columns: int | None
    pixel_spacing: tuple[float, ...] | None
    gantry_tilt: float | None = None
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    kernel: str = ""

    @classmethod
    def from_header(cls, header: InstanceHeader) -> SliceSummary:
        return cls(
            sop_class_uid=header.sop_class_uid,
            image_type=header.image_type,
            orientation=header.image_orientation,
            position=header.image_position,
            thickness=header.slice_thickness,
            rows=header.rows,
            columns=header.columns,
            pixel_spacing=header.pixel_spacing,
            gantry_tilt=header.gantry_tilt,
            modality=header.modality,
            series_number=header.series_number,
            series_description=header.series_description,
            kernel=header.convolution_kernel,
        )

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready form, for the index to keep at receipt so that selection need
        not read every header from disk again (:meth:`from_record` reads it back)."""
        return {
            "v": SLICE_RECORD_VERSION,
            "sop_class_uid": self.sop_class_uid,
            "image_type": list(self.image_type),
            "orientation": _listed(self.orientation),
            "position": _listed(self.position),
            "thickness": self.thickness,
            "rows": self.rows,
            "columns": self.columns,
            "pixel_spacing": _listed(self.pixel_spacing),
            "gantry_tilt": self.gantry_tilt,
            "modality": self.modality,
            "series_number": self.series_number,
            "series_description": self.series_description,
            "kernel": self.kernel,
        }

    @classmethod
    def from_record(cls, record: Any) -> SliceSummary | None:
        """The summary :meth:`to_record` wrote; None for a record of another version or
        a damaged one (the caller reads the header instead)."""
        if not isinstance(record, dict) or record.get("v") != SLICE_RECORD_VERSION:
            return None
        try:
            return cls(
                sop_class_uid=_text(record["sop_class_uid"]),
                image_type=_texts(record["image_type"]),
                orientation=_numbers(record["orientation"]),
                position=_numbers(record["position"]),
                thickness=_number(record["thickness"]),
                rows=_integer(record["rows"]),
                columns=_integer(record["columns"]),
                pixel_spacing=_numbers(record["pixel_spacing"]),
                gantry_tilt=_number(record["gantry_tilt"]),
                modality=_text(record["modality"]),
                series_number=_integer(record["series_number"]),
                series_description=_text(record["series_description"]),
                kernel=_text(record["kernel"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _listed(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else list(values)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


def _texts(values: Any) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise TypeError("not a list")
    return tuple(_text(value) for value in values)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return float(value)


def _integer(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


def _numbers(values: Any) -> tuple[float, ...] | None:
    if values is None:
        return None
    if not isinstance(values, list):
        raise TypeError("not a list")
    numbers = tuple(_number(value) for value in values)
    if None in numbers:
        raise TypeError("a missing number")
    return cast(tuple[float, ...], numbers)


@dataclass(frozen=True)
class SeriesSummary:
    series_instance_uid: str
    content_version: int
    modality: str
    series_number: int | None
    description: str
    kernel: str
    slices: tuple[SliceSummary, ...]


@dataclass(frozen=True)
class SelectionRules:
    min_slices: int = 20
    preferred_thickness_mm: tuple[float, float] = (0.5, 3.0)
    max_tilt_degrees: float = 35.0  # beyond this the stack is not axial
    tilt_flag_degrees: float = 1.0
    irregular_spacing_ratio: float = 0.25  # (max - min) / median of slice gaps
    gap_ratio: float = 2.5  # a gap this many times the median means missing slices


@dataclass(frozen=True)
class Assessment:
    series_instance_uid: str
    content_version: int
    eligible: bool
    score: float | None
    reasons: tuple[str, ...] = ()  # why it is not eligible
    flags: tuple[str, ...] = ()  # eligible but worth a look (gantry_tilt, irregular_spacing ...)
    details: dict[str, Any] = field(default_factory=dict)


def _normal(orientation: Sequence[float]) -> tuple[float, float, float] | None:
    rx, ry, rz, cx, cy, cz = orientation
    n = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
    length = math.sqrt(sum(v * v for v in n))
    if not length:
        return None
    return (n[0] / length, n[1] / length, n[2] / length)


def _object_reasons(summary: SeriesSummary) -> list[str]:
    reasons: list[str] = []
    if summary.modality != "CT":
        reasons.append(f"not CT (modality {summary.modality or 'missing'})")
    classes = {s.sop_class_uid for s in summary.slices}
    if any(uid.startswith(SECONDARY_CAPTURE_PREFIX) for uid in classes):
        reasons.append("secondary capture")
    elif classes & ENHANCED_CT_STORAGE_CLASSES:
        reasons.append("enhanced multi-frame CT is not drafted")
    elif classes != {CT_IMAGE_STORAGE}:
        reasons.append("not a CT image object")
    types = [set(s.image_type) for s in summary.slices]
    if any("LOCALIZER" in t for t in types):
        reasons.append("localizer")
    if any(t & DOSE_IMAGE_TYPES for t in types) or DOSE_DESCRIPTION.search(summary.description):
        reasons.append("dose report or screen capture")
    if any(s.image_type[:2] != ("ORIGINAL", "PRIMARY") for s in summary.slices):
        reasons.append("not ORIGINAL/PRIMARY images")
    return reasons


def assess_series(summary: SeriesSummary, rules: SelectionRules = SelectionRules()) -> Assessment:
    """Decide whether one series can be drafted, and how well it fits."""
    reasons = _object_reasons(summary)
    flags: list[str] = []
    details: dict[str, Any] = {"slices": len(summary.slices)}
    kernel_class = classify_kernel(summary.kernel, summary.description)
    details["kernel_class"] = kernel_class.value

    def verdict() -> Assessment:
        return Assessment(
            summary.series_instance_uid,
            summary.content_version,
            False,
            None,
            tuple(reasons),
            tuple(flags),
            details,
        )

    if not summary.slices:
        reasons.append("no images")
        return verdict()
    slices = summary.slices
    if any(s.orientation is None or s.position is None for s in slices):
        reasons.append("missing slice geometry")
        return verdict()
    first = slices[0].orientation
    assert first is not None
    if any(
        max(abs(a - b) for a, b in zip(s.orientation or (), first, strict=True))
        > ORIENTATION_TOLERANCE
        for s in slices
    ):
        reasons.append("mixed slice orientations")
        return verdict()
    normal = _normal(first)
    if normal is None:
        reasons.append("degenerate orientation")
        return verdict()
    tilt = math.degrees(math.acos(min(1.0, abs(normal[2]))))
    details["tilt_degrees"] = round(tilt, 2)
    if tilt > rules.max_tilt_degrees:
        reasons.append(f"not axial ({tilt:.0f} degrees from axial)")
    elif tilt > rules.tilt_flag_degrees or any(abs(s.gantry_tilt or 0.0) > 0 for s in slices):
        flags.append("gantry_tilt")
    if len({(s.rows, s.columns) for s in slices}) > 1:
        reasons.append("mixed matrix sizes")
    spacings = [value for s in slices if s.pixel_spacing for value in s.pixel_spacing]
    if spacings and max(spacings) > SPACING_TOLERANCE * min(spacings) and len(set(spacings)) > 1:
        reasons.append("mixed pixel spacing")
    positions = sorted(
        sum(p * n for p, n in zip(s.position or (), normal, strict=True)) for s in slices
    )
    gaps = [b - a for a, b in itertools.pairwise(positions)]
    if any(gap < SAME_POSITION_MM for gap in gaps):
        reasons.append("duplicate slice positions")
    if len(slices) < rules.min_slices:
        reasons.append(f"too few slices ({len(slices)} < {rules.min_slices})")
    thicknesses = [s.thickness for s in slices if s.thickness]
    median_gap = statistics.median(gaps) if gaps else None
    if gaps and median_gap:
        details["median_spacing_mm"] = round(median_gap, 3)
        if (max(gaps) - min(gaps)) / median_gap > rules.irregular_spacing_ratio:
            flags.append("irregular_spacing")
        if max(gaps) > rules.gap_ratio * median_gap:
            flags.append("missing_slices")
    if thicknesses and max(thicknesses) - min(thicknesses) > THICKNESS_TOLERANCE_MM:
        flags.append("mixed_thickness")
    thickness = statistics.median(thicknesses) if thicknesses else median_gap
    details["thickness_mm"] = round(thickness, 3) if thickness else None
    if reasons:
        return verdict()
    score = BASE_SCORE + _thickness_points(thickness, rules) + KERNEL_POINTS[kernel_class]
    score -= IRREGULAR_SPACING_PENALTY * ("irregular_spacing" in flags)
    score -= GAP_PENALTY * ("missing_slices" in flags)
    score -= MIXED_THICKNESS_PENALTY * ("mixed_thickness" in flags)
    score -= TILT_PENALTY * ("gantry_tilt" in flags)
    score += min(SLICE_COUNT_POINTS_MAX, len(slices) / SLICES_PER_POINT)
    return Assessment(
        summary.series_instance_uid,
        summary.content_version,
        True,
        round(score, 3),
        (),
        tuple(flags),
        details,
    )


def _thickness_points(thickness: float | None, rules: SelectionRules) -> float:
    if thickness is None:
        return 0.0
    low, high = rules.preferred_thickness_mm
    if low <= thickness <= high:
        return THICKNESS_IN_RANGE_POINTS
    if thickness < low:
        return THICKNESS_THIN_POINTS
    return max(0.0, THICKNESS_IN_RANGE_POINTS - THICKNESS_POINTS_LOST_PER_MM * (thickness - high))


def rank_series(
    summaries: Sequence[SeriesSummary], rules: SelectionRules = SelectionRules()
) -> list[Assessment]:
    """All series, best candidate first; ineligible ones last (ties: more slices, lower number)."""
    numbers = {s.series_instance_uid: s.series_number for s in summaries}
    assessments = [assess_series(summary, rules) for summary in summaries]

    def key(item: Assessment) -> tuple[int, float, int, int, str]:
        number = numbers.get(item.series_instance_uid)
        return (
            0 if item.eligible else 1,
            -(item.score or 0.0),
            -int(item.details.get("slices", 0)),
            number if number is not None else 1_000_000,
            item.series_instance_uid,
        )

    return sorted(assessments, key=key)
