"""Series selection: pure rules over header summaries, on generated and real series."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dicom_node.header import read_header_file
from dicom_node.index import ReadySeries, SeriesFile
from dicom_node.selection import (
    KernelClass,
    SelectionRules,
    SeriesSummary,
    SliceSummary,
    assess_series,
    classify_kernel,
    rank_series,
)
from dicom_node.series import decisions_from, order_slices, summarize_series

from .conftest import make_ct_slice  # type: ignore[import-not-found]

RULES = SelectionRules(min_slices=8)
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _summary(uid: str, slices: int = 12, **options: Any) -> SeriesSummary:
    headers = []
    for index in range(slices):
        ds = make_ct_slice(study_uid="1.2.9", series_uid=uid, index=index, **options)
        headers.append(_header(ds))
    return summarize_series(
        ReadySeries("1.2.9", uid, 1, "CT"), [SliceSummary.from_header(h) for h in headers]
    )


def _header(ds: Any) -> Any:
    from dicom_node.header import summarize

    return summarize(ds, transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID))


def test_a_thin_soft_tissue_axial_series_is_eligible() -> None:
    result = assess_series(_summary("1.1", thickness=1.0), RULES)
    assert result.eligible
    assert result.flags == ()
    assert result.details["kernel_class"] == "soft_tissue"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"image_type": ("ORIGINAL", "PRIMARY", "LOCALIZER")}, "localizer"),
        ({"image_type": ("DERIVED", "SECONDARY", "AXIAL")}, "not ORIGINAL/PRIMARY"),
        ({"sop_class": SECONDARY_CAPTURE}, "secondary capture"),
        ({"series_description": "Dose Report"}, "dose report"),
        ({"modality": "MR"}, "not CT"),
    ],
)
def test_objects_that_are_not_axial_ct_are_skipped(options: dict[str, Any], reason: str) -> None:
    result = assess_series(_summary("1.2", **options), RULES)
    assert not result.eligible
    assert any(reason in text for text in result.reasons), result.reasons


def test_too_few_slices_and_non_axial_stacks_are_skipped() -> None:
    few = assess_series(_summary("1.3", slices=4), RULES)
    assert any("too few slices" in r for r in few.reasons)
    sagittal = assess_series(_summary("1.4", tilt_degrees=90.0), RULES)
    assert any("not axial" in r for r in sagittal.reasons)


def test_a_tilted_gantry_is_allowed_and_flagged() -> None:
    result = assess_series(_summary("1.5", tilt_degrees=18.5), RULES)
    assert result.eligible
    assert "gantry_tilt" in result.flags
    assert result.details["tilt_degrees"] == pytest.approx(18.5, abs=0.01)


def test_duplicate_positions_and_mixed_matrices_are_not_one_volume() -> None:
    summary = _summary("1.6")
    duplicated = SeriesSummary(
        **{**summary.__dict__, "slices": summary.slices + summary.slices[:1]}
    )
    assert "duplicate slice positions" in assess_series(duplicated, RULES).reasons
    other = _summary("1.6", size=16)
    mixed = SeriesSummary(**{**summary.__dict__, "slices": summary.slices + other.slices[-1:]})
    assert not assess_series(mixed, RULES).eligible


def test_thin_soft_tissue_beats_thick_and_bone_reconstructions() -> None:
    thin_soft = _summary("2.1", thickness=1.0, kernel="B30f", series_number=3)
    thin_lung = _summary("2.2", thickness=1.0, kernel="B70f", series_number=4)
    thick_soft = _summary("2.3", thickness=5.0, kernel="B30f", series_number=2)
    thin_bone = _summary("2.4", thickness=0.6, kernel="BONE", series_number=5)
    localizer = _summary("2.5", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), series_number=1)
    ranked = rank_series([localizer, thick_soft, thin_bone, thin_lung, thin_soft], RULES)
    order = [a.series_instance_uid for a in ranked]
    # A thick soft-tissue series still beats a thin bone-kernel one.
    assert order == ["2.1", "2.2", "2.3", "2.4", "2.5"]
    decisions = decisions_from(ranked)
    assert [d.selected for d in decisions] == [True, False, False, False, False]
    assert decisions[1].skip_reason == "ranked below series 2.1"
    assert decisions[-1].skip_reason == "localizer"


@pytest.mark.parametrize(
    ("kernel", "description", "expected"),
    [
        ("B30f", "", KernelClass.SOFT_TISSUE),
        ("Br40d", "", KernelClass.SOFT_TISSUE),
        ("B70f", "", KernelClass.LUNG),
        ("B80f", "", KernelClass.BONE),
        ("LUNG", "", KernelClass.LUNG),
        ("STANDARD", "", KernelClass.SOFT_TISSUE),
        ("BONEPLUS", "", KernelClass.BONE),
        ("FC52", "", KernelClass.LUNG),
        ("FC08", "", KernelClass.SOFT_TISSUE),
        ("UB", "STD BRAIN 5MM", KernelClass.SOFT_TISSUE),
        ("YC", "", KernelClass.UNKNOWN),
    ],
)
def test_kernels_are_classified(kernel: str, description: str, expected: KernelClass) -> None:
    assert classify_kernel(kernel, description) is expected


def test_slices_are_ordered_by_position_not_instance_number() -> None:
    files = [
        SeriesFile("1.3", "c", instance_number=1, slice_position=20.0),
        SeriesFile("1.1", "a", instance_number=3, slice_position=-5.0),
        SeriesFile("1.2", "b", instance_number=2, slice_position=7.5),
        SeriesFile("1.4", "d", instance_number=4, slice_position=None),
    ]
    assert [f.sop_instance_uid for f in order_slices(files)] == ["1.1", "1.2", "1.3", "1.4"]


def _real_summary(folder: Path, uid: str = "real") -> SeriesSummary:
    headers = [read_header_file(path) for path in sorted(folder.iterdir()) if path.is_file()]
    headers.sort(key=lambda h: h.slice_position if h.slice_position is not None else 0.0)
    return summarize_series(
        ReadySeries("study", headers[0].series_instance_uid, 1, "CT"),
        [SliceSummary.from_header(h) for h in headers],
    )


def test_the_real_philips_study_selects_its_head_series(shared_data: Path) -> None:
    base = shared_data / "dicom" / "ct_series"
    head = _real_summary(base / "dcmqa_philips_ingenuity_head_5mm")
    localizer = _real_summary(base / "dcmqa_philips_ingenuity_localizer")
    summary_sc = _real_summary(base / "dcmqa_philips_ingenuity_exam_summary_sc")
    ranked = rank_series([summary_sc, localizer, head], SelectionRules())
    assert ranked[0].series_instance_uid == head.series_instance_uid
    assert ranked[0].eligible
    by_uid = {a.series_instance_uid: a for a in ranked}
    assert "localizer" in by_uid[localizer.series_instance_uid].reasons
    assert "secondary capture" in by_uid[summary_sc.series_instance_uid].reasons
    assert "dose report or screen capture" in by_uid[summary_sc.series_instance_uid].reasons


def test_the_real_tilted_head_ct_is_eligible_with_flags(shared_data: Path) -> None:
    folder = shared_data / "dicom" / "ct_series" / "dcmqa_ge_hispeed_head_tilt_varspacing"
    result = assess_series(_real_summary(folder), SelectionRules())
    assert result.eligible, result.reasons
    assert {"gantry_tilt", "mixed_thickness", "irregular_spacing"} <= set(result.flags)
    assert result.details["tilt_degrees"] == pytest.approx(18.5, abs=0.5)


def test_real_series_too_short_to_draft(shared_data: Path) -> None:
    folder = shared_data / "dicom" / "ct_series" / "pydicom_pcir_ct_head_16x16"
    result = assess_series(_real_summary(folder), SelectionRules())
    assert not result.eligible
    assert any("too few slices" in r for r in result.reasons)


def test_a_slice_summary_survives_its_json_record() -> None:
    ds = make_ct_slice(
        study_uid="1.2.9", series_uid="1.2.9.1", index=3, tilt_degrees=12.5, kernel="B30f"
    )
    summary = SliceSummary.from_header(_header(ds))
    assert summary.gantry_tilt and summary.kernel == "B30f" and summary.series_number == 2
    record = json.loads(json.dumps(summary.to_record()))
    assert SliceSummary.from_record(record) == summary
    bare = replace(summary, orientation=None, position=None, thickness=None, pixel_spacing=None)
    assert SliceSummary.from_record(json.loads(json.dumps(bare.to_record()))) == bare


@pytest.mark.parametrize(
    "damage",
    [
        {"v": 2},
        {"rows": "512"},
        {"orientation": [1.0, None, 0.0, 0.0, 1.0, 0.0]},
        {"image_type": "ORIGINAL"},
        {"thickness": True},
    ],
)
def test_a_record_of_another_version_or_damaged_is_not_read(damage: dict[str, Any]) -> None:
    ds = make_ct_slice(study_uid="1.2.9", series_uid="1.2.9.1", index=0)
    record = SliceSummary.from_header(_header(ds)).to_record()
    assert SliceSummary.from_record({**record, **damage}) is None
    assert SliceSummary.from_record({k: v for k, v in record.items() if k != "kernel"}) is None
    assert SliceSummary.from_record(None) is None
