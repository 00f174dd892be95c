"""How close synthetic studies come to a real chest CT: tissue HU and body/lung size.

The same threshold-and-geometry segmentation runs on the real series and on
synthetic studies rendered with the real series' acquisition (matrix, field
of view, slice thickness, kernel, no contrast):

- body: the largest air-excluding component of each slice, holes filled;
- lung: low-attenuation components inside the body (HU < -400), eroded 2 px;
- fat: -190..-30 HU inside the body, away from the lungs;
- muscle: -29..150 HU in the outer 4-35 mm of the body (chest wall);
- blood: 0..150 HU (unenhanced) in the central third between the lungs, on
  slices through the middle of the lungs (heart and great vessels);
- bone: > 200 HU inside the body.

For each tissue it reports median, 5th and 95th percentiles, and the overlap
of the normalised histograms (1 = identical distributions), and it reports the
noise (sd of fat after removing its smooth component) and body and lung sizes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from models.synthetic.generator import render_study
from models.synthetic.geometry import ScanGeometry
from models.synthetic.preview import load_series
from models.synthetic.scanner import VENDORS, KernelFamily, noise_sd_hu
from models.synthetic.spec import StudySpec, sample_study_spec
from models.synthetic.tissues import Phase

FloatArray = npt.NDArray[np.float32]
TISSUES = ("lung", "fat", "muscle", "blood", "bone")
HIST_RANGE = {
    "lung": (-1000, -500),
    "fat": (-190, -30),
    "muscle": (-29, 150),
    "blood": (-20, 150),
    "bone": (200, 1800),
}
HIST_BINS = 40
SIEMENS = 0
KERNEL_FAMILY_OF = {
    "B10f": KernelFamily.SMOOTH,
    "B30f": KernelFamily.SOFT,
    "B40f": KernelFamily.STANDARD,
    "B70f": KernelFamily.SHARP,
    "B80f": KernelFamily.VERY_SHARP,
}


@dataclass(frozen=True)
class VolumeStats:
    label: str
    samples: dict[str, FloatArray]  # tissue -> HU samples
    sizes: dict[str, float]  # mm / mL
    noise_sd: float


def segment(hu: FloatArray, pixel_mm: float, slice_mm: float) -> dict[str, npt.NDArray[np.bool_]]:
    """Tissue masks of one volume (z ascending, display orientation)."""
    body = np.zeros(hu.shape, dtype=bool)
    for k in range(hu.shape[0]):
        lab, n = ndimage.label(hu[k] > -500)
        if n == 0:
            continue
        sizes = ndimage.sum(np.ones_like(lab), lab, index=np.arange(1, n + 1))
        body[k] = ndimage.binary_fill_holes(lab == (int(np.argmax(sizes)) + 1))
    low = (hu < -400) & body
    lab, n = ndimage.label(low)
    lung = np.zeros(hu.shape, dtype=bool)
    if n:
        sizes = ndimage.sum(np.ones_like(lab), lab, index=np.arange(1, n + 1))
        keep = np.nonzero(sizes >= 0.1 * sizes.max())[0] + 1
        lung = np.isin(lab, keep)
    lung_core = ndimage.binary_erosion(lung, structure=np.ones((1, 5, 5), dtype=bool))
    near_lung = ndimage.binary_dilation(lung, structure=np.ones((1, 7, 7), dtype=bool))
    depth = np.stack(
        [ndimage.distance_transform_edt(body[k]) * pixel_mm for k in range(hu.shape[0])]
    )
    fat = body & ~near_lung & (hu >= -190) & (hu <= -30) & (depth > 4)
    muscle = body & ~near_lung & (hu > -30) & (hu <= 150) & (depth > 4) & (depth < 35)
    # Blood: central region between the lungs, on slices through the middle of the lungs.
    blood = np.zeros(hu.shape, dtype=bool)
    lung_slices = np.nonzero(lung.reshape(hu.shape[0], -1).sum(axis=1) > 0)[0]
    if lung_slices.size:
        lo, hi = np.percentile(lung_slices, [35, 75]).astype(int)
        for k in range(lo, hi + 1):
            cols = np.nonzero(body[k].any(axis=0))[0]
            if cols.size == 0:
                continue
            c0, c1 = cols[0], cols[-1]
            centre = np.zeros(hu.shape[1:], dtype=bool)
            third = (c1 - c0) // 6
            mid = (c0 + c1) // 2
            centre[:, mid - third : mid + third] = True
            blood[k] = centre & (depth[k] > 40) & ~near_lung[k] & (hu[k] > 0) & (hu[k] <= 150)
    bone = body & (hu > 200)
    return {
        "body": body,
        "lung": lung_core,
        "lung_full": lung,
        "fat": fat,
        "muscle": muscle,
        "blood": blood,
        "bone": bone,
    }


def measure(label: str, hu: FloatArray, pixel_mm: float, slice_mm: float) -> VolumeStats:
    masks = segment(hu, pixel_mm, slice_mm)
    samples = {t: hu[masks[t]].astype(np.float32) for t in TISSUES}
    lung = masks["lung_full"]
    area = lung.reshape(hu.shape[0], -1).sum(axis=1)
    k = int(np.argmax(area))
    sizes: dict[str, float] = {}
    body_cols = np.nonzero(masks["body"][k].any(axis=0))[0]
    body_rows = np.nonzero(masks["body"][k].any(axis=1))[0]
    lung_cols = np.nonzero(lung[k].any(axis=0))[0]
    lung_rows = np.nonzero(lung[k].any(axis=1))[0]
    if body_cols.size and lung_cols.size:
        sizes["body width (mm)"] = float(body_cols[-1] - body_cols[0] + 1) * pixel_mm
        sizes["body depth (mm)"] = float(body_rows[-1] - body_rows[0] + 1) * pixel_mm
        sizes["lungs width (mm)"] = float(lung_cols[-1] - lung_cols[0] + 1) * pixel_mm
        sizes["lung depth (mm)"] = float(lung_rows[-1] - lung_rows[0] + 1) * pixel_mm
        sizes["lungs / body width"] = sizes["lungs width (mm)"] / sizes["body width (mm)"]
    z = np.nonzero(area > 0)[0]
    sizes["lung height in scan (mm)"] = float(z[-1] - z[0] + 1) * slice_mm if z.size else 0.0
    sizes["lung volume in scan (mL)"] = float(lung.sum()) * pixel_mm * pixel_mm * slice_mm / 1000.0
    fat = masks["fat"]
    smooth = ndimage.uniform_filter(hu, size=(1, 7, 7))
    core_fat = ndimage.binary_erosion(fat, structure=np.ones((1, 7, 7), dtype=bool))
    noise = (
        float(np.std((hu - smooth)[core_fat])) * 7 / np.sqrt(48) if core_fat.any() else float("nan")
    )
    return VolumeStats(label, samples, sizes, noise)


def matched_spec(
    seed: int, *, rows: int, slice_mm: float, kernel: str, sex: str | None
) -> StudySpec:
    """A normal study acquired like the real series (Siemens, no contrast, same matrix,
    slice thickness and kernel; the field of view fits the synthetic patient as a
    technologist would set it)."""
    family = KERNEL_FAMILY_OF.get(kernel, KernelFamily.STANDARD)
    spec = sample_study_spec(
        seed, findings=[], matrix=rows, slice_thickness=slice_mm, kernel=family, hard=False, sex=sex
    )
    acq = spec.acquisition
    g = acq.geometry
    coverage = g.z_last - g.z_first
    geometry = dataclasses.replace(
        g,
        slice_thickness=slice_mm,
        slice_spacing=slice_mm,
        n_slices=max(2, int(coverage // slice_mm) + 1),
        patient_position="HFS",
    )
    mas = 95.0
    sd = noise_sd_hu(
        family=family,
        mas=mas,
        kvp=120,
        thickness_mm=slice_mm,
        body_scale=spec.plan.scale,
        fat_mm=spec.plan.fat_mm,
    )
    acquisition = dataclasses.replace(
        acq,
        manufacturer=VENDORS[SIEMENS].manufacturer,
        vendor_index=SIEMENS,
        kernel_name=kernel,
        kernel_family=family,
        kvp=120,
        mas=mas,
        phase=Phase.NONE,
        contrast_agent=None,
        geometry=geometry,
        noise_sd=round(float(sd), 2),
    )
    return dataclasses.replace(spec, acquisition=acquisition)


def _geometry_of(spec: StudySpec) -> ScanGeometry:
    return spec.acquisition.geometry


def histogram_overlap(a: FloatArray, b: FloatArray, tissue: str) -> float:
    lo, hi = HIST_RANGE[tissue]
    if a.size == 0 or b.size == 0:
        return float("nan")
    ha, _ = np.histogram(a, bins=HIST_BINS, range=(lo, hi))
    hb, _ = np.histogram(b, bins=HIST_BINS, range=(lo, hi))
    ha = ha / max(ha.sum(), 1)
    hb = hb / max(hb.sum(), 1)
    return float(np.minimum(ha, hb).sum())


def compare(
    real_dirs: Sequence[Path], *, seeds: Sequence[int], sex: str | None = None
) -> list[str]:
    """Measure each real series and matched synthetic studies; returns printable lines."""
    lines: list[str] = []
    for real_dir in real_dirs:
        series = load_series(real_dir)
        kernel = series.description.split()[-1] if series.description else "B40f"
        real = measure(f"real {kernel}", series.hu, series.pixel_mm[1], series.slice_mm)
        synth: list[VolumeStats] = []
        for seed in seeds:
            spec = matched_spec(
                seed, rows=series.hu.shape[1], slice_mm=series.slice_mm, kernel=kernel, sex=sex
            )
            rendered = render_study(spec, with_masks=False)
            g = _geometry_of(spec)
            synth.append(
                measure(
                    f"synthetic {kernel}",
                    rendered.hu.astype(np.float32),
                    g.pixel_spacing,
                    g.slice_spacing,
                )
            )
        lines += _table(real_dir, real, synth)
    return lines


def _pct(x: FloatArray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else float("nan")


def _table(real_dir: Path, real: VolumeStats, synth: list[VolumeStats]) -> list[str]:
    pooled = {t: np.concatenate([s.samples[t] for s in synth]) for t in TISSUES}
    out = [
        "",
        f"{real.label} ({real_dir}) vs {len(synth)} matched synthetic normal studies",
        f"{'tissue HU':18s}{'real med':>10s}{'synth med':>10s}{'real p5':>9s}{'synth p5':>9s}"
        f"{'real p95':>9s}{'synth p95':>10s}{'overlap':>9s}",
    ]
    for t in TISSUES:
        r, s = real.samples[t], pooled[t]
        out.append(
            f"{t:18s}{_pct(r, 50):10.0f}{_pct(s, 50):10.0f}{_pct(r, 5):9.0f}{_pct(s, 5):9.0f}"
            f"{_pct(r, 95):9.0f}{_pct(s, 95):10.0f}{histogram_overlap(r, s, t):9.2f}"
        )
    noise = np.nanmedian([s.noise_sd for s in synth])
    out.append(f"{'noise sd in fat':18s}{real.noise_sd:10.1f}{noise:10.1f}")
    out.append(f"{'size':28s}{'real':>10s}{'synth median':>14s}{'synth range':>18s}")
    for key, value in real.sizes.items():
        vals = [s.sizes.get(key, float("nan")) for s in synth]
        fmt = ".2f" if "/" in key else ".0f"
        out.append(
            f"{key:28s}{value:10{fmt}}{np.median(vals):14{fmt}}"
            f"{min(vals):9{fmt}} - {max(vals):<8{fmt}}"
        )
    return out
