"""Render a :class:`StudySpec` into a CT volume in Hounsfield units with its ground truth.

Pipeline: normal anatomy and findings are painted on a render grid (at most
about 1.15 mm in-plane), the kernel blurs/sharpens it, then every output
slice is a slab average of render slices, upsampled to the output matrix,
with CT noise added, clipped to the scanner range and stored as int16.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from models.findings import FINDINGS, Finding
from models.synthetic import (
    body_wall,
    findings_airway,
    findings_chest,
    findings_lung,
    skeleton,
    thorax,
)
from models.synthetic.abdomen import paint_abdomen
from models.synthetic.anatomy import Anatomy
from models.synthetic.canvas import Canvas, Grid
from models.synthetic.draw_context import DrawContext
from models.synthetic.finding_plans import number
from models.synthetic.geometry import ScanGeometry, upsample_slice
from models.synthetic.noise import NoiseBank, apply_kernel, noise_sd_map
from models.synthetic.scanner import band_limited_fraction
from models.synthetic.spec import StudySpec, seed_streams
from models.synthetic.tissues import Tissue, tissue_hu
from models.synthetic.trees import grow_bronchovascular_tree, paint_airways, paint_vessels
from models.synthetic.truth import FindingMasks, Lesion

HU_MIN, HU_MAX = -1024, 3071
ANATOMY_SLABS = 2  # fixed, so the result does not depend on the number of threads


@dataclass
class RenderedStudy:
    """A generated volume (canonical orientation, int16 HU) with its truth."""

    spec: StudySpec
    geometry: ScanGeometry
    hu: npt.NDArray[np.int16]  # (slices, rows, columns)
    lesions: list[Lesion]
    present: frozenset[Finding]
    measurements: dict[str, Any]
    finding_bits: npt.NDArray[np.uint32] | None  # output grid
    instances: npt.NDArray[np.uint16] | None
    tissue: npt.NDArray[np.uint8] | None  # tissue labels on the output grid
    noise_sd: float  # noise sd actually added in soft tissue (HU)


def render_study(
    spec: StudySpec,
    *,
    geometry: ScanGeometry | None = None,
    with_masks: bool = True,
    acquired_pixel_mm: float | None = None,
    threads: int | None = None,
) -> RenderedStudy:
    """Generate the volume of ``spec`` (optionally on another geometry, e.g. a model grid).

    ``acquired_pixel_mm`` is the in-plane pixel of the emulated acquisition when the
    output grid is coarser (the fast path); noise is then reduced as by resampling.
    """
    geom = geometry or spec.acquisition.geometry
    acq = spec.acquisition
    streams = seed_streams(spec.seed)
    anatomy = Anatomy(spec.plan)
    hu = tissue_hu(streams["anatomy"], acq.phase)
    render = geom.render_grid()
    canvas = Canvas(render, background_hu=hu[Tissue.AIR], background_label=Tissue.AIR)
    params = {fp.finding: fp.params for fp in spec.findings}
    pericardial = (
        number(params[Finding.PERICARDIAL_EFFUSION], "thickness_mm")
        if Finding.PERICARDIAL_EFFUSION in params
        else 0.0
    )
    r_min = max(0.6, 0.5 * render.voxel_mm)
    tree = grow_bronchovascular_tree(streams["trees"], anatomy, r_min=r_min)
    masks = FindingMasks(render)
    ctx = DrawContext(canvas, anatomy, hu, acq.phase, tree, streams["findings"], masks)
    visible_lumen = max(r_min * 1.3, 0.8)
    airway_sel: dict[Finding, npt.NDArray[np.bool_]] = {}
    if Finding.BRONCHIECTASIS in params:
        airway_sel[Finding.BRONCHIECTASIS] = findings_airway.prepare_bronchiectasis(
            tree.airways, params[Finding.BRONCHIECTASIS], ctx.rng, visible_lumen
        )
    if Finding.PERIBRONCHIAL_THICKENING in params:
        airway_sel[Finding.PERIBRONCHIAL_THICKENING] = findings_airway.prepare_peribronchial(
            tree.airways, params[Finding.PERIBRONCHIAL_THICKENING]
        )

    # Normal anatomy: slabs of slices painted in parallel (numpy releases the GIL);
    # every slab draws the same random numbers, so the seams are invisible.
    anatomy_seed = int(streams["anatomy"].integers(2**62))
    workers = threads or default_threads()

    def paint_slab(part: Canvas) -> None:
        seeded = np.random.default_rng(anatomy_seed)
        body_wall.paint_table(part, anatomy)
        body_wall.paint_body_wall(part, anatomy, hu)
        paint_abdomen(part, anatomy, hu)
        thorax.paint_lungs(part, anatomy, hu, np.random.default_rng([anatomy_seed, 1]))
        skeleton.paint_skeleton(part, anatomy, hu)
        thorax.paint_mediastinum(part, anatomy, hu, seeded, pericardial_fluid_mm=pericardial)
        paint_vessels(part, tree.arteries, hu[Tissue.PULMONARY_VESSEL])
        paint_vessels(part, tree.veins, hu[Tissue.BLOOD])
        paint_airways(part, tree.airways, hu)
        thorax.paint_fissures(part, anatomy)

    _run_parallel(paint_slab, canvas.split_z(ANATOMY_SLABS), workers)

    if Finding.PERICARDIAL_EFFUSION in params:
        findings_chest.register_pericardial_effusion(ctx, pericardial)
    if Finding.CARDIOMEGALY in params:
        findings_chest.register_cardiomegaly(ctx)
    for finding, sel in airway_sel.items():
        findings_airway.register_airway_finding(
            ctx,
            finding,
            sel,
            params[finding],
            walls_only=finding is Finding.PERIBRONCHIAL_THICKENING,
        )

    drawers = {
        Finding.EMPHYSEMA: findings_lung.draw_emphysema,
        Finding.MOSAIC_ATTENUATION_PATTERN: findings_lung.draw_mosaic,
        Finding.INTERLOBULAR_SEPTAL_THICKENING: findings_lung.draw_septal_thickening,
        Finding.LUNG_OPACITY: findings_lung.draw_opacity,
        Finding.PULMONARY_FIBROTIC_SEQUELA: findings_lung.draw_fibrosis,
        Finding.CONSOLIDATION: findings_lung.draw_consolidation,
        Finding.ATELECTASIS: findings_lung.draw_atelectasis,
        Finding.LUNG_NODULE: findings_lung.draw_nodules,
        Finding.PLEURAL_EFFUSION: findings_chest.draw_pleural_effusion,
        Finding.LYMPHADENOPATHY: findings_chest.draw_lymphadenopathy,
        Finding.HIATAL_HERNIA: findings_chest.draw_hiatal_hernia,
        Finding.ARTERIAL_WALL_CALCIFICATION: findings_chest.draw_arterial_calcification,
        Finding.CORONARY_ARTERY_WALL_CALCIFICATION: findings_chest.draw_coronary_calcification,
        Finding.MEDICAL_MATERIAL: findings_chest.draw_medical_material,
    }
    for finding, draw in drawers.items():
        if finding in params:
            draw(ctx, params[finding])

    measurements = _measure(canvas, anatomy, masks, render.voxel_volume_mm3)
    present = frozenset(masks.present())
    missing = set(params) - masks.registered
    if missing:
        raise RuntimeError(
            f"findings planned but not drawn (no voxels): {sorted(f.value for f in missing)}"
        )

    apply_kernel(canvas.hu, acq.kernel_family, render.voxel_mm)
    sd = _noise_level(spec, geom, acquired_pixel_mm)
    out = _to_output(canvas, geom, render, streams["noise"], spec, anatomy, sd, workers)
    finding_bits = instances = tissue = None
    if with_masks:
        finding_bits = _nearest(masks.bits, geom, render)
        instances = _nearest(masks.instances, geom, render)
        tissue = _nearest(canvas.label, geom, render)
    return RenderedStudy(
        spec, geom, out, masks.lesions, present, measurements, finding_bits, instances, tissue, sd
    )


def _noise_level(spec: StudySpec, geom: ScanGeometry, acquired_pixel_mm: float | None) -> float:
    acq = spec.acquisition
    sd = acq.noise_sd * float(np.sqrt(acq.geometry.slice_thickness / geom.slice_thickness))
    if acquired_pixel_mm is not None:
        sd *= band_limited_fraction(acq.kernel_family, acquired_pixel_mm, geom.pixel_spacing)
    return float(sd)


def _to_output(
    canvas: Canvas,
    geom: ScanGeometry,
    render: Grid,
    rng: np.random.Generator,
    spec: StudySpec,
    anatomy: Anatomy,
    sd: float,
    workers: int,
) -> npt.NDArray[np.int16]:
    weights = geom.slice_weights(render)
    rows, cols = geom.upsample_axes(render)
    bank = NoiseBank(
        rng,
        rows=geom.rows,
        cols=geom.cols,
        pixel_mm=geom.pixel_spacing,
        family=spec.acquisition.kernel_family,
    )
    noise_seed = int(rng.integers(2**62))
    sd_map = noise_sd_map(
        rows=geom.rows,
        cols=geom.cols,
        pixel_mm=geom.pixel_spacing,
        centre=geom.fov_centre,
        half_width=anatomy.body_half_width(),
        half_depth=0.5 * (anatomy.body_posterior_y() + anatomy.body_anterior_y()),
        sd=sd,
    )
    out = np.empty((geom.n_slices, geom.rows, geom.cols), dtype=np.int16)

    def make(ks: range) -> None:
        for k in ks:
            idx, w = weights[k]
            slab = (
                canvas.hu[idx[0]] * w[0]
                if len(idx) == 1
                else np.tensordot(w, canvas.hu[idx], axes=1)
            )
            image = upsample_slice(slab, rows, cols)
            image = image + bank.slice(np.random.default_rng([noise_seed, k])) * sd_map
            np.clip(image, HU_MIN, HU_MAX, out=image)
            np.rint(image, out=image)
            out[k] = image

    _run_parallel(make, _chunks(geom.n_slices, workers), workers)
    return out


def default_threads() -> int:
    """Threads for one study: the cores this process may use, at most 2 by default."""
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def _chunks(n: int, parts: int) -> list[range]:
    edges = np.linspace(0, n, max(1, parts) + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


T = TypeVar("T")


def _run_parallel(fn: Callable[[T], None], items: Sequence[T], workers: int) -> None:
    if workers <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


def _nearest(values: npt.NDArray[Any], geom: ScanGeometry, render: Grid) -> npt.NDArray[Any]:
    ks = geom.nearest_render_slice(render)
    rows, cols = geom.upsample_axes(render)
    return values[ks][:, rows.nearest][:, :, cols.nearest]


def _measure(
    canvas: Canvas, anatomy: Anatomy, masks: FindingMasks, voxel_volume: float
) -> dict[str, Any]:
    """Whole-study measurements from the noise-free render."""
    lung = np.isin(
        canvas.label,
        [
            Tissue.LUNG,
            Tissue.PULMONARY_VESSEL,
            Tissue.AIRWAY_WALL,
            Tissue.AIRWAY_LUMEN,
            Tissue.LESION,
        ],
    )
    emphysema_lung = canvas.label == Tissue.LUNG
    return {
        "lung_volume_ml": round(float(lung.sum()) * voxel_volume / 1000.0, 1),
        "laa950_percent": findings_lung.low_attenuation_percent(canvas.hu, emphysema_lung),
        "cardiothoracic_ratio": round(anatomy.cardiothoracic_ratio(), 3),
        "heart_scale": round(anatomy.plan.heart_scale, 3),
    }


def model_grid_geometry(
    spec: StudySpec, *, spacing_mm: float = 2.25, matrix: int = 160
) -> ScanGeometry:
    """The study's scan range on a model-resolution grid (the fast path for training sets).

    The grid is never finer than the acquisition: a coarse matrix keeps its pixels and
    widely spaced slices keep their spacing, so the model sees what ``models.preprocess``
    makes of such a series (interpolated up), not detail the scanner never recorded.
    The field of view stays ``matrix`` x ``spacing_mm``.
    """
    g = spec.acquisition.geometry
    coverage = g.z_last - g.z_first
    pixel = max(spacing_mm, g.pixel_spacing)
    z_spacing = max(spacing_mm, g.slice_spacing)
    n = max(2, round(coverage / z_spacing) + 1)
    size = max(8, round(matrix * spacing_mm / pixel))
    return dataclasses.replace(
        g,
        rows=size,
        cols=size,
        pixel_spacing=pixel,
        slice_spacing=z_spacing,
        slice_thickness=max(g.slice_thickness, spacing_mm),
        n_slices=n,
    )


def finding_names(present: frozenset[Finding]) -> list[str]:
    return [f.value for f in FINDINGS if f in present]
