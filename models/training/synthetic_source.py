"""Synthetic training studies through ``models.synthetic``'s fast path (model resolution).

A study is named by its seed.  ``prepare_synthetic`` renders the seed directly on a
grid near the model's spacing (``generator.model_grid_geometry``), wraps the
canonical array as a ``SliceStack`` in patient coordinates and sends it through
``models.preprocess.prepare_stack``: the same placement, resampling, windowing and
quality estimates as a DICOM series at inference.  Texts come from the generator's
clinical context (EMR) and reference report; nodule truth from its lesions.

The grid is never finer than the acquisition (a coarse matrix or widely spaced slices
stay coarse), and a configurable share of studies is acquired on a smaller matrix, so
the model also learns the small series of demonstrations and tests.

Seeds: split ``train`` uses ``TRAIN_SEED0 + i`` and so on, so splits never share a
study.  Unusual reconstruction kernels are left out of train and valid, so the
hard split's "unseen kernels" are really unseen.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from models.config import LOBES, NODULE_TYPES
from models.findings import FINDINGS
from models.losses import IGNORE_INDEX, NoduleTarget
from models.preprocess import PreprocessSpec, prepare_stack
from models.training.records import StudyRecord
from models.training.volume_cache import PreparedStudy, study_from_prepared
from models.volume import LPS_TO_RAS, SliceRef, SliceStack

if TYPE_CHECKING:
    from models.synthetic.generator import RenderedStudy
    from models.synthetic.spec import StudySpec

SPLIT_SEED0 = {"train": 1_000_000, "valid": 2_000_000, "test": 3_000_000}
UNSEEN_KERNEL_REASON = "unusual kernel"
FAST_PATH_SPACING_MM = 2.25
FAST_PATH_MATRIX = 160
SEARCH_FACTOR = 3
"""Seeds examined per wanted study when unusual kernels are skipped."""
FULL_MATRIX = 512
COARSE_MATRICES = (96, 128, 192, 256, 384)
"""Matrices of the coarse share of studies (``DataConfig.synthetic_coarse_fraction``): the
demonstration and test series are small, and a hospital may send reduced series."""
MATRIX_KEY = "matrix"


def synthetic_records(split: str, count: int, *, coarse_fraction: float = 0.0) -> list[StudyRecord]:
    """``count`` studies of ``split`` (labels are the planned findings; texts come at render).

    A ``coarse_fraction`` of them (chosen by seed, so the split never changes between
    runs) is acquired on a smaller matrix than 512, drawn from ``COARSE_MATRICES``.
    """
    return list(_synthetic_records(split, count, coarse_fraction))


def study_matrix(seed: int, coarse_fraction: float) -> int:
    """The acquisition matrix of the synthetic study ``seed`` (its own random stream)."""
    rng = np.random.default_rng([seed, 512])
    if rng.random() >= coarse_fraction:
        return FULL_MATRIX
    return int(rng.choice(COARSE_MATRICES))


@functools.lru_cache(maxsize=8)
def _synthetic_records(
    split: str, count: int, coarse_fraction: float = 0.0
) -> tuple[StudyRecord, ...]:
    from models.synthetic.spec import sample_study_spec

    if split not in SPLIT_SEED0:
        raise ValueError(f"unknown split {split!r}")
    records: list[StudyRecord] = []
    seed = SPLIT_SEED0[split]
    limit = seed + SEARCH_FACTOR * count + 100
    while len(records) < count and seed < limit:
        spec = sample_study_spec(seed)
        seed += 1
        if split != "test" and UNSEEN_KERNEL_REASON in spec.hard_reasons:
            continue
        present = spec.present
        matrix = study_matrix(spec.seed, coarse_fraction)
        records.append(
            StudyRecord(
                study_id=f"synthetic_{spec.seed}",
                split=split,
                labels=tuple(float(f in present) for f in FINDINGS),
                seed=spec.seed,
                hard_reasons=spec.hard_reasons,
                extra={} if matrix == FULL_MATRIX else {MATRIX_KEY: str(matrix)},
            )
        )
    return tuple(records)


def canonical_stack(hu: np.ndarray, geometry: object, *, description: str) -> SliceStack:
    """The generator's canonical array [slice, row, column] as a stack in LPS millimetres.

    Columns run to patient left (+x LPS), rows to posterior (+y), slices upwards (+z).
    """
    g = geometry.output_grid()  # type: ignore[attr-defined]
    offset = geometry.patient_offset  # type: ignore[attr-defined]
    k = np.arange(hu.shape[0], dtype=np.float64)
    origins = np.stack(
        [
            np.full_like(k, g.origin[0] + offset[0]),
            np.full_like(k, g.origin[1] + offset[1]),
            g.origin[2] + k * g.spacing[2] + offset[2],
        ],
        axis=1,
    )
    return SliceStack(
        pixels=hu,
        origins_lps=origins,
        row_direction=np.array([1.0, 0.0, 0.0]),
        column_direction=np.array([0.0, 1.0, 0.0]),
        pixel_spacing_mm=(float(g.spacing[1]), float(g.spacing[0])),
        slices=[
            SliceRef(instance_number=int(i) + 1, sop_instance_uid=None, file_name=None) for i in k
        ],
        description=description,
    )


def render_fast_path(
    study_spec: StudySpec, *, threads: int | None = None
) -> tuple[RenderedStudy, SliceStack]:
    """The study rendered as training sees it (model resolution, never finer than acquired)."""
    from models.synthetic.generator import model_grid_geometry, render_study

    geometry = model_grid_geometry(
        study_spec, spacing_mm=FAST_PATH_SPACING_MM, matrix=FAST_PATH_MATRIX
    )
    rendered = render_study(
        study_spec,
        geometry=geometry,
        with_masks=False,
        acquired_pixel_mm=study_spec.acquisition.geometry.pixel_spacing,
        threads=threads,
    )
    return rendered, canonical_stack(
        rendered.hu, rendered.geometry, description=str(study_spec.seed)
    )


def prepare_synthetic(record: StudyRecord, spec: PreprocessSpec) -> PreparedStudy:
    """Render the record's seed at model resolution and preprocess it like a scan."""
    from models.findings import Finding
    from models.synthetic.spec import sample_study_spec
    from models.synthetic.study_files import describe

    if record.seed is None:
        raise ValueError(f"{record.study_id} is not a synthetic study")
    study_spec = sample_study_spec(
        record.seed, matrix=int(record.extra.get(MATRIX_KEY, FULL_MATRIX))
    )
    rendered, stack = render_fast_path(study_spec, threads=1)  # one study per worker process
    described = describe(rendered)
    prepared = prepare_stack(stack, spec)
    nodules = []
    for lesion in rendered.lesions:
        if lesion.finding is not Finding.LUNG_NODULE:
            continue
        lps = np.asarray(rendered.geometry.anatomical_to_patient(lesion.centre_mm))
        kind = str(lesion.measurements.get("type", "solid"))
        nodules.append(
            NoduleTarget(
                centre_ras=tuple(float(v) for v in lps * LPS_TO_RAS),  # type: ignore[arg-type]
                diameter_mm=float(lesion.measurements["diameter_mm"]),
                type_index=NODULE_TYPES.index(kind) if kind in NODULE_TYPES else IGNORE_INDEX,
                lobe_index=LOBES.index(lesion.lobe) if lesion.lobe in LOBES else IGNORE_INDEX,
            )
        )
    report = " ".join(p for p in (described.report.findings, described.report.impression) if p)
    emr = described.clinical.clinical_information or None
    labels = tuple(float(f in rendered.present) for f in FINDINGS)
    assert not any(math.isnan(v) for v in labels)
    return study_from_prepared(
        prepared,
        record,
        emr_text=emr,
        report_text=report,
        nodules=tuple(nodules),
        labels=labels,
        hard_reasons=study_spec.hard_reasons,
    )
