"""Scanner vendors, reconstruction kernels, dose and the noise level they imply."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class KernelFamily(enum.StrEnum):
    SMOOTH = "smooth"  # very soft, unusual for chest
    SOFT = "soft"
    STANDARD = "standard"
    SHARP = "sharp"  # the usual lung kernel
    VERY_SHARP = "very_sharp"  # bone / ultra-high-resolution, unusual for chest


@dataclass(frozen=True)
class KernelModel:
    """How a reconstruction kernel family blurs, sharpens and colours noise (mm units)."""

    blur_mm: float  # Gaussian sigma of the system blur
    sharpen: float  # unsharp-mask gain: edge overshoot of sharp kernels
    sharpen_mm: float  # sigma of the unsharp mask
    noise_gain: float  # noise sd relative to the standard kernel at equal dose
    cutoff_per_mm: float  # noise power spectrum apodisation cut-off (cycles/mm)
    unusual: bool


KERNEL_MODELS: dict[KernelFamily, KernelModel] = {
    KernelFamily.SMOOTH: KernelModel(1.1, 0.0, 1.0, 0.55, 0.30, True),
    KernelFamily.SOFT: KernelModel(0.8, 0.0, 1.0, 0.8, 0.42, False),
    KernelFamily.STANDARD: KernelModel(0.6, 0.15, 1.2, 1.0, 0.55, False),
    KernelFamily.SHARP: KernelModel(0.4, 0.6, 1.2, 2.6, 0.90, False),
    KernelFamily.VERY_SHARP: KernelModel(0.3, 1.0, 1.0, 4.0, 1.20, True),
}

KERNEL_FAMILY_WEIGHTS: dict[KernelFamily, float] = {
    KernelFamily.SMOOTH: 0.05,
    KernelFamily.SOFT: 0.15,
    KernelFamily.STANDARD: 0.42,
    KernelFamily.SHARP: 0.32,
    KernelFamily.VERY_SHARP: 0.06,
}


@dataclass(frozen=True)
class Vendor:
    """How a manufacturer names kernels and stores pixels."""

    manufacturer: str
    models: tuple[str, ...]
    kernels: dict[KernelFamily, str]
    rescale_intercept: float
    signed: bool
    bits_stored: int
    padding_hu: float | None  # value outside the reconstruction circle, or None


VENDORS: tuple[Vendor, ...] = (
    Vendor(
        "SIEMENS",
        ("SOMATOM Definition AS+", "SOMATOM Force", "Sensation 64"),
        {
            KernelFamily.SMOOTH: "B10f",
            KernelFamily.SOFT: "B30f",
            KernelFamily.STANDARD: "B40f",
            KernelFamily.SHARP: "B70f",
            KernelFamily.VERY_SHARP: "B80f",
        },
        -1024.0,
        False,
        12,
        None,
    ),
    Vendor(
        "GE MEDICAL SYSTEMS",
        ("Revolution CT", "LightSpeed VCT", "Discovery CT750 HD"),
        {
            KernelFamily.SMOOTH: "SOFT",
            KernelFamily.SOFT: "SOFT",
            KernelFamily.STANDARD: "STANDARD",
            KernelFamily.SHARP: "LUNG",
            KernelFamily.VERY_SHARP: "BONEPLUS",
        },
        -1024.0,
        True,
        16,
        -3024.0,
    ),
    Vendor(
        "Philips",
        ("Brilliance 64", "iCT 256", "Ingenuity CT"),
        {
            KernelFamily.SMOOTH: "A",
            KernelFamily.SOFT: "B",
            KernelFamily.STANDARD: "C",
            KernelFamily.SHARP: "L",
            KernelFamily.VERY_SHARP: "YD",
        },
        -1024.0,
        False,
        12,
        None,
    ),
    Vendor(
        "TOSHIBA",
        ("Aquilion ONE", "Aquilion Prime"),
        {
            KernelFamily.SMOOTH: "FC01",
            KernelFamily.SOFT: "FC08",
            KernelFamily.STANDARD: "FC13",
            KernelFamily.SHARP: "FC52",
            KernelFamily.VERY_SHARP: "FC86",
        },
        0.0,
        True,
        16,
        None,
    ),
)

VENDOR_WEIGHTS = (0.4, 0.3, 0.2, 0.1)

REFERENCE_NOISE_HU = 14.0  # standard kernel, 120 kVp, 100 mAs, 5 mm, average adult
REFERENCE_MAS = 100.0
REFERENCE_THICKNESS_MM = 5.0
LOW_DOSE_MAS = 45.0
KVP_NOISE = {80: 1.9, 100: 1.35, 120: 1.0, 140: 0.82}


def noise_sd_hu(
    *,
    family: KernelFamily,
    mas: float,
    kvp: int,
    thickness_mm: float,
    body_scale: float,
    fat_mm: float,
) -> float:
    """Noise sd in soft tissue for one acquisition (quantum noise scales as 1/sqrt(dose))."""
    model = KERNEL_MODELS[family]
    size = float(np.exp(2.2 * (body_scale - 1.0) + (fat_mm - 15.0) / 70.0))
    return (
        REFERENCE_NOISE_HU
        * model.noise_gain
        * np.sqrt(REFERENCE_MAS / mas)
        * np.sqrt(REFERENCE_THICKNESS_MM / thickness_mm)
        * KVP_NOISE.get(kvp, 1.0)
        * size
    )


def noise_transfer(family: KernelFamily, frequencies: np.ndarray) -> np.ndarray:
    """Amplitude filter applied to white noise: a ramp times the kernel's apodisation."""
    model = KERNEL_MODELS[family]
    f = np.abs(frequencies)
    return np.sqrt(f) * np.exp(-((f / model.cutoff_per_mm) ** 2))


def band_limited_fraction(family: KernelFamily, acquired_mm: float, output_mm: float) -> float:
    """Fraction of noise sd kept when an image at acquired_mm is resampled to output_mm."""
    if output_mm <= acquired_mm:
        return 1.0
    f = np.linspace(0.0, 0.5 / acquired_mm, 2048)
    power = f * noise_transfer(family, f) ** 2  # radial 2-D integral
    kept = f <= 0.5 / output_mm
    return float(np.sqrt(power[kept].sum() / max(power.sum(), 1e-12)))
