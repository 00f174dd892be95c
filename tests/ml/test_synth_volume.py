"""Synthetic volumes: tissues have their HU, every finding is where the truth says, seeds repeat."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from models.findings import FINDINGS, Finding
from models.synthetic.finding_plans import FindingPlan
from models.synthetic.generator import RenderedStudy, model_grid_geometry, render_study
from models.synthetic.spec import sample_study_spec
from models.synthetic.tissues import Tissue

# Mean HU of eroded tissue regions in an unenhanced study.
TISSUE_RANGES = {
    (Tissue.LUNG,): (-900, -760),
    (Tissue.FAT,): (-135, -60),
    (Tissue.MUSCLE,): (15, 75),
    (Tissue.BLOOD, Tissue.MYOCARDIUM): (15, 75),
    (Tissue.LIVER,): (30, 90),
    (Tissue.BONE_MARROW, Tissue.BONE_CORTEX): (150, 1200),
}


@pytest.fixture(scope="module")
def normal_study() -> RenderedStudy:
    spec = sample_study_spec(101, findings=[], contrast=False, hard=False, matrix=128, n_slices=48)
    return render_study(spec)


@pytest.fixture(scope="module")
def every_finding() -> RenderedStudy:
    spec = sample_study_spec(
        202, findings=list(FINDINGS), contrast=False, hard=False, matrix=128, n_slices=48
    )
    plans = []
    for fp in spec.findings:
        if fp.finding is Finding.LUNG_NODULE:  # known nodules to measure
            fp = FindingPlan(
                Finding.LUNG_NODULE,
                {
                    "nodules": [
                        {"diameter_mm": 16.0, "type": "solid", "lobe": "RLL"},
                        {"diameter_mm": 18.0, "type": "ground-glass", "lobe": "LUL"},
                    ]
                },
            )
        plans.append(fp)
    return render_study(dataclasses.replace(spec, findings=tuple(plans)))


def _mean_hu(study: RenderedStudy, labels: tuple[Tissue, ...]) -> float:
    assert study.tissue is not None
    mask = np.isin(study.tissue, labels)
    core = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), dtype=bool))
    assert core.sum() > 50, f"too few {labels} voxels"
    return float(study.hu[core].mean())


@pytest.mark.parametrize("labels", list(TISSUE_RANGES))
def test_tissues_have_their_hu(normal_study: RenderedStudy, labels: tuple[Tissue, ...]) -> None:
    lo, hi = TISSUE_RANGES[labels]
    assert lo <= _mean_hu(normal_study, labels) <= hi


def test_air_outside_the_patient_and_scanner_range(normal_study: RenderedStudy) -> None:
    assert normal_study.tissue is not None
    air = normal_study.tissue == Tissue.AIR
    assert normal_study.hu[air].mean() < -950
    assert normal_study.hu.min() >= -1024 and normal_study.hu.max() <= 3071


def test_normal_study_has_no_findings(normal_study: RenderedStudy) -> None:
    assert normal_study.present == frozenset()
    assert normal_study.finding_bits is not None and not normal_study.finding_bits.any()
    assert 0.38 < normal_study.measurements["cardiothoracic_ratio"] < 0.5


def test_every_finding_is_drawn_and_masked(every_finding: RenderedStudy) -> None:
    assert every_finding.present == frozenset(FINDINGS)
    assert every_finding.finding_bits is not None
    for n, finding in enumerate(FINDINGS):
        voxels = int(((every_finding.finding_bits >> n) & 1).sum())
        assert voxels > 0, f"{finding} has no voxels on the output grid"


def _lesion_voxels(study: RenderedStudy, kind: str) -> tuple[np.ndarray, float]:
    lesion = next(les for les in study.lesions if les.kind == kind)
    assert study.instances is not None
    mask = study.instances == lesion.instance_id
    return study.hu[mask], float(lesion.measurements["diameter_mm"])


def test_nodules_are_where_and_as_large_as_the_truth_says(every_finding: RenderedStudy) -> None:
    g = every_finding.geometry
    voxel = g.pixel_spacing**2 * g.slice_spacing
    solid, d_solid = _lesion_voxels(every_finding, "solid nodule")
    ggo, d_ggo = _lesion_voxels(every_finding, "ground-glass nodule")
    assert solid.mean() > -300, "a solid nodule is soft-tissue dense"
    assert -780 < ggo.mean() < -350, "a ground-glass nodule is between lung and soft tissue"
    for values, diameter in ((solid, d_solid), (ggo, d_ggo)):
        measured = (6 * values.size * voxel / np.pi) ** (1 / 3)
        assert abs(measured - diameter) / diameter < 0.35
    # The nodule's centre voxel (from the truth) lies in its own mask.
    lesion = next(les for les in every_finding.lesions if les.kind == "solid nodule")
    k, j, i = g.voxel_of(lesion.centre_mm)
    assert every_finding.instances is not None
    window = every_finding.instances[max(k - 1, 0) : k + 2, j - 1 : j + 2, i - 1 : i + 2]
    assert (window == lesion.instance_id).any()


def test_finding_densities_match_their_kind(every_finding: RenderedStudy) -> None:
    bits = every_finding.finding_bits
    assert bits is not None

    def values(f: Finding) -> np.ndarray:
        return every_finding.hu[((bits >> FINDINGS.index(f)) & 1).astype(bool)]

    assert -80 < np.median(values(Finding.PLEURAL_EFFUSION)) < 80
    assert values(Finding.ARTERIAL_WALL_CALCIFICATION).max() > 300
    assert values(Finding.MEDICAL_MATERIAL).max() > 1000
    assert np.median(values(Finding.CONSOLIDATION)) > -300
    assert -60 < np.median(values(Finding.LYMPHADENOPATHY)) < 120
    assert every_finding.tissue is not None
    emphysema = ((bits >> FINDINGS.index(Finding.EMPHYSEMA)) & 1).astype(bool)
    lung = (every_finding.tissue == Tissue.LUNG) & ~emphysema
    assert np.median(values(Finding.EMPHYSEMA)) < np.median(every_finding.hu[lung]) - 25
    assert every_finding.measurements["cardiothoracic_ratio"] > 0.5
    assert every_finding.measurements["laa950_percent"] > 0.3


def test_same_seed_same_study_and_fast_path_matches_anatomy() -> None:
    spec = sample_study_spec(7, matrix=64, n_slices=24)
    a = render_study(spec, with_masks=False)
    b = render_study(sample_study_spec(7, matrix=64, n_slices=24), with_masks=False)
    c = render_study(sample_study_spec(8, matrix=64, n_slices=24), with_masks=False)
    assert np.array_equal(a.hu, b.hu)
    assert not np.array_equal(a.hu, c.hu) if a.hu.shape == c.hu.shape else True
    fine = sample_study_spec(7, matrix=256, n_slices=24)
    fast = render_study(
        fine,
        geometry=model_grid_geometry(fine, spacing_mm=4.0, matrix=96),
        acquired_pixel_mm=fine.acquisition.geometry.pixel_spacing,
        with_masks=False,
    )
    assert fast.hu.shape[1:] == (96, 96)
    assert fast.present == a.present
    # a 64 matrix has pixels coarser than 4 mm: the fast path keeps them
    coarse = model_grid_geometry(spec, spacing_mm=4.0, matrix=96)
    assert coarse.pixel_spacing == spec.acquisition.geometry.pixel_spacing > 4.0
    assert coarse.rows < 96
