"""Reconstruction kernel (blur and edge enhancement) and CT-like quantum noise.

Noise is white noise shaped by the kernel's noise power spectrum (a ramp times
an apodisation window), so soft kernels give blotchy low-frequency noise and
sharp kernels fine grain.  A small bank of 2-D fields is made per study and
every slice takes a random crop and flip of one of them, which is far cheaper
than filtering a new field per slice and looks the same.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from models.synthetic.canvas import FloatArray
from models.synthetic.scanner import KERNEL_MODELS, KernelFamily, noise_transfer

BANK_SIZE = 3
OUTSIDE_BODY_NOISE = 0.55  # relative noise sd in the air around the patient
LATERAL_NOISE_GAIN = 0.25  # extra noise at the lateral body edge (long ray paths)


def apply_kernel(volume: FloatArray, family: KernelFamily, voxel_mm: float) -> None:
    """Blur (and for sharp kernels edge-enhance) each axial slice in place."""
    model = KERNEL_MODELS[family]
    # The render voxel already blurs by about voxel/sqrt(12); add what is missing.
    sigma_mm = float(np.sqrt(max(model.blur_mm**2 - voxel_mm**2 / 12.0, 0.0)))
    if sigma_mm > 0.05 * voxel_mm:
        ndimage.gaussian_filter(
            volume, sigma=(0, sigma_mm / voxel_mm, sigma_mm / voxel_mm), output=volume, truncate=3.0
        )
    if model.sharpen > 0:
        s = model.sharpen_mm / voxel_mm
        smooth = ndimage.gaussian_filter(volume, sigma=(0, s, s), truncate=3.0)
        smooth -= volume  # -(detail)
        smooth *= np.float32(-model.sharpen)
        volume += smooth


class NoiseBank:
    """Unit-variance CT noise fields for one study, cropped per slice."""

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        rows: int,
        cols: int,
        pixel_mm: float,
        family: KernelFamily,
    ) -> None:
        self.rows, self.cols = rows, cols
        h, w = 2 * rows, 2 * cols
        fy = np.fft.fftfreq(h, d=pixel_mm)[:, None]
        fx = np.fft.rfftfreq(w, d=pixel_mm)[None, :]
        transfer = noise_transfer(family, np.sqrt(fx * fx + fy * fy)).astype(np.float32)
        fields = []
        for _ in range(BANK_SIZE):
            white = rng.standard_normal((h, w), dtype=np.float32)
            shaped = np.fft.irfft2(np.fft.rfft2(white) * transfer, s=(h, w)).astype(np.float32)
            shaped /= shaped.std() + 1e-12
            fields.append(shaped)
        self.fields = fields

    def slice(self, rng: np.random.Generator) -> FloatArray:
        """A random crop and flip of one field (rng per slice keeps slices independent)."""
        f = self.fields[int(rng.integers(BANK_SIZE))]
        y0 = int(rng.integers(0, self.rows + 1))
        x0 = int(rng.integers(0, self.cols + 1))
        crop = f[y0 : y0 + self.rows, x0 : x0 + self.cols]
        flip = int(rng.integers(4))
        if flip & 1:
            crop = crop[::-1]
        if flip & 2:
            crop = crop[:, ::-1]
        return crop


def noise_sd_map(
    *,
    rows: int,
    cols: int,
    pixel_mm: float,
    centre: tuple[float, float],
    half_width: float,
    half_depth: float,
    sd: float,
) -> FloatArray:
    """Per-pixel noise sd: full inside the body, rising laterally, lower in the air outside."""
    y = (np.arange(rows) - (rows - 1) / 2) * pixel_mm + centre[1]
    x = (np.arange(cols) - (cols - 1) / 2) * pixel_mm + centre[0]
    xx = (x[None, :] / half_width) ** 2
    r = np.sqrt(xx + (y[:, None] / half_depth) ** 2)
    inside = np.clip((1.08 - r) / 0.08, 0.0, 1.0)
    rel = OUTSIDE_BODY_NOISE + (1 - OUTSIDE_BODY_NOISE) * inside
    rel = rel * (1.0 + LATERAL_NOISE_GAIN * np.minimum(xx, 1.0) * inside)
    return (rel * sd).astype(np.float32)
