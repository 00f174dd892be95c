"""Everything that defines one synthetic study, sampled from a seed.

``sample_study_spec(seed)`` draws a patient (identity, body plan), an
acquisition (vendor, kernel, dose, contrast, geometry) and a set of findings
with their parameters.  Rendering the spec (``generator.render_study``) is
deterministic, so a seed names a study.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from pydicom.uid import generate_uid

from models.findings import Finding
from models.synthetic.anatomy import Anatomy, BodyPlan, sample_body_plan
from models.synthetic.finding_plans import (
    SMALL_NODULE_MM,
    FindingPlan,
    choose_findings,
    number,
    records,
    sample_params,
)
from models.synthetic.geometry import FEET_FIRST_SUPINE, HEAD_FIRST_SUPINE, ScanGeometry
from models.synthetic.scanner import (
    KERNEL_FAMILY_WEIGHTS,
    KERNEL_MODELS,
    LOW_DOSE_MAS,
    VENDOR_WEIGHTS,
    VENDORS,
    KernelFamily,
    Vendor,
    noise_sd_hu,
)
from models.synthetic.tissues import Phase

SYNTHETIC_FAMILY_NAME = "SYNTHETIC"
MRN_ISSUER = "RADSCRIBE-SYNTH"
GIVEN_NAMES = {
    "M": (
        "ADAM",
        "BORIS",
        "CARLOS",
        "DAVID",
        "EMRE",
        "FELIX",
        "GEORG",
        "HUGO",
        "IVAN",
        "JONAS",
        "KENJI",
        "LUCA",
        "OMAR",
        "PAVEL",
    ),
    "F": (
        "ANNA",
        "BEATRIZ",
        "CLARA",
        "DENIZ",
        "ELIF",
        "FATIMA",
        "GRETA",
        "HANNA",
        "IRIS",
        "JULIA",
        "KARIN",
        "LENA",
        "MAYA",
        "NORA",
    ),
}
CONTRAST_AGENTS = ("OMNIPAQUE 350", "ULTRAVIST 370", "IOMERON 400", "VISIPAQUE 320", "ISOVUE 370")
THICKNESSES = (0.625, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)
THICKNESS_WEIGHTS = (0.1, 0.25, 0.15, 0.1, 0.1, 0.1, 0.1, 0.1)
MAX_SLICES = 1200
STUDY_EPOCH = datetime(2023, 1, 2, 7, 0, 0)
UID_NAMESPACE = "radscribe-synthetic"


@dataclass(frozen=True)
class StudyIdentity:
    patient_id: str
    given_name: str
    sex: str
    age: int
    birth_date: str  # YYYYMMDD
    accession_number: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    study_datetime: datetime

    @property
    def patient_name(self) -> str:
        """DICOM person name: obviously synthetic."""
        return f"{SYNTHETIC_FAMILY_NAME}^{self.given_name}"


@dataclass(frozen=True)
class Acquisition:
    manufacturer: str
    model: str
    kernel_name: str
    kernel_family: KernelFamily
    kvp: int
    mas: float  # effective mAs (Exposure)
    tube_current_ma: int
    ctdi_vol: float
    phase: Phase
    contrast_agent: str | None
    geometry: ScanGeometry
    noise_sd: float  # HU in soft tissue at the acquired thickness
    vendor_index: int

    @property
    def vendor(self) -> Vendor:
        return VENDORS[self.vendor_index]

    @property
    def low_dose(self) -> bool:
        return self.mas < LOW_DOSE_MAS


@dataclass(frozen=True)
class StudySpec:
    seed: int
    identity: StudyIdentity
    plan: BodyPlan
    acquisition: Acquisition
    findings: tuple[FindingPlan, ...]
    hard_reasons: tuple[str, ...]

    @property
    def present(self) -> frozenset[Finding]:
        return frozenset(f.finding for f in self.findings)

    @property
    def hard(self) -> bool:
        return bool(self.hard_reasons)


def seed_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent random streams of one study, so each part is stable on its own."""
    names = ("spec", "anatomy", "trees", "findings", "noise", "text", "audio")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: np.random.default_rng(c) for n, c in zip(names, children, strict=True)}


def _uid(seed: int, what: str) -> str:
    return str(generate_uid(prefix=None, entropy_srcs=[UID_NAMESPACE, str(seed), what]))


def sample_study_spec(
    seed: int,
    *,
    findings: Sequence[Finding] | None = None,
    n_slices: int | None = None,
    matrix: int = 512,
    hard: bool | None = None,
    slice_thickness: float | None = None,
    kernel: KernelFamily | None = None,
    sex: str | None = None,
    contrast: bool | None = None,
    position: str | None = None,
) -> StudySpec:
    """A random study for ``seed``; keyword arguments pin parts of it.

    ``findings`` fixes the set (an empty sequence gives a normal study);
    ``hard`` forces (True) or forbids (False) a hard acquisition and subtle findings.
    """
    if seed < 0:
        raise ValueError("seed must be non-negative")
    if n_slices is not None and not 2 <= n_slices <= MAX_SLICES:
        raise ValueError(f"slices must be between 2 and {MAX_SLICES}")
    if not 16 <= matrix <= 1024:
        raise ValueError("matrix must be between 16 and 1024")
    rng = seed_streams(seed)["spec"]
    drawn_sex = "M" if rng.random() < 0.55 else "F"
    if sex is not None and sex not in ("M", "F"):
        raise ValueError("sex must be 'M' or 'F'")
    sex = sex or drawn_sex
    age = int(np.clip(rng.normal(62, 14), 18, 95))
    plan = sample_body_plan(rng, sex=sex, age=age)
    identity = _identity(rng, seed, sex, age)
    hard_draw = bool(rng.random() < 0.2) if hard is None else hard
    chosen = choose_findings(rng, age=age, forced=findings)
    plans = tuple(
        FindingPlan(f, sample_params(rng, f, hard=hard_draw and f is Finding.LUNG_NODULE))
        for f in chosen
    )
    plan = _apply_plan_findings(plan, plans)
    acquisition = _acquisition(
        rng,
        plan,
        hard=hard_draw if hard is not None else None,
        n_slices=n_slices,
        matrix=matrix,
        slice_thickness=slice_thickness,
        kernel=kernel,
        contrast=contrast,
        position=position,
    )
    reasons = []
    for fp in plans:
        if fp.finding is Finding.LUNG_NODULE:
            sizes = [number(n, "diameter_mm") for n in records(fp.params, "nodules")]
            if min(sizes) <= SMALL_NODULE_MM:
                reasons.append("small nodule")
    if acquisition.low_dose:
        reasons.append("low dose")
    if KERNEL_MODELS[acquisition.kernel_family].unusual:
        reasons.append("unusual kernel")
    return StudySpec(seed, identity, plan, acquisition, plans, tuple(reasons))


def _identity(rng: np.random.Generator, seed: int, sex: str, age: int) -> StudyIdentity:
    when = STUDY_EPOCH + timedelta(
        days=int(rng.integers(0, 900)), minutes=int(rng.integers(0, 12 * 60))
    )
    birth = when - timedelta(days=int(age * 365.25 + rng.integers(0, 365)))
    return StudyIdentity(
        patient_id=f"SYN{seed:08d}",
        given_name=str(rng.choice(GIVEN_NAMES[sex])),
        sex=sex,
        age=age,
        birth_date=birth.strftime("%Y%m%d"),
        accession_number=f"SA{seed:010d}",
        study_uid=_uid(seed, "study"),
        series_uid=_uid(seed, "series"),
        frame_of_reference_uid=_uid(seed, "frame"),
        study_datetime=when,
    )


def _apply_plan_findings(plan: BodyPlan, findings: tuple[FindingPlan, ...]) -> BodyPlan:
    """Findings that change the anatomy itself (an enlarged heart)."""
    for fp in findings:
        if fp.finding is Finding.CARDIOMEGALY:
            target = number(fp.params, "target_ctr")
            lo, hi = 1.0, 2.0
            for _ in range(30):  # bisection: CTR grows monotonically with the heart scale
                mid = 0.5 * (lo + hi)
                if (
                    Anatomy(dataclasses.replace(plan, heart_scale=mid)).cardiothoracic_ratio()
                    < target
                ):
                    lo = mid
                else:
                    hi = mid
            plan = dataclasses.replace(plan, heart_scale=round(0.5 * (lo + hi), 4))
    return plan


def _acquisition(
    rng: np.random.Generator,
    plan: BodyPlan,
    *,
    hard: bool | None,
    n_slices: int | None,
    matrix: int,
    slice_thickness: float | None,
    kernel: KernelFamily | None,
    contrast: bool | None,
    position: str | None,
) -> Acquisition:
    vendor_index = int(rng.choice(len(VENDORS), p=VENDOR_WEIGHTS))
    vendor = VENDORS[vendor_index]
    families = list(KERNEL_FAMILY_WEIGHTS)
    weights = np.array([KERNEL_FAMILY_WEIGHTS[f] for f in families])
    if hard is False:
        weights = weights * np.array([0.0 if KERNEL_MODELS[f].unusual else 1.0 for f in families])
    family = kernel or families[int(rng.choice(len(families), p=weights / weights.sum()))]
    kvp = int(rng.choice([80, 100, 120, 140], p=[0.03, 0.2, 0.7, 0.07]))
    mas = float(np.clip(rng.lognormal(np.log(110), 0.45), 15, 350))
    if hard is True and rng.random() < 0.5:
        mas = float(rng.uniform(15, 40))
    elif hard is False:
        mas = max(mas, 50.0)
    drawn_contrast = bool(rng.random() < 0.35)
    contrast = drawn_contrast if contrast is None else contrast
    phase = (Phase.ARTERIAL if rng.random() < 0.4 else Phase.VENOUS) if contrast else Phase.NONE
    agent = str(rng.choice(CONTRAST_AGENTS)) if contrast else None
    anatomy = Anatomy(plan)
    z_bottom, z_top = anatomy.coverage(rng)
    coverage = z_top - z_bottom
    thickness = slice_thickness or float(rng.choice(THICKNESSES, p=THICKNESS_WEIGHTS))
    if n_slices is None:
        spacing = thickness * (0.8 if rng.random() < 0.2 else 1.0)
        count = min(MAX_SLICES, math.floor(coverage / spacing) + 1)
    else:
        count = n_slices
        spacing = coverage / (count - 1)
        if slice_thickness is None:
            fitting = [t for t in THICKNESSES if t <= spacing * 1.05]
            thickness = max(fitting) if fitting else THICKNESSES[0]
    body_width = 2 * anatomy.body_half_width()
    fov = float(np.clip(body_width * rng.uniform(1.06, 1.25), 300.0, 500.0))
    pixel = round(fov / matrix, 6)
    body_centre_y = 0.5 * (anatomy.body_posterior_y() - anatomy.body_anterior_y())
    fov_centre = (float(rng.uniform(-10, 10)), float(body_centre_y + rng.uniform(-12, 12)))
    recon_y = float(rng.uniform(-180, 0))
    offset = (
        -fov_centre[0] + float(rng.uniform(-6, 6)),
        recon_y - fov_centre[1],
        float(rng.uniform(-650, 150)),
    )
    drawn_position = FEET_FIRST_SUPINE if rng.random() < 0.08 else HEAD_FIRST_SUPINE
    position = position or drawn_position
    geometry = ScanGeometry(
        rows=matrix,
        cols=matrix,
        pixel_spacing=pixel,
        slice_thickness=float(thickness),
        slice_spacing=round(float(spacing), 6),
        n_slices=int(count),
        fov_centre=fov_centre,
        z_first=float(z_bottom),
        patient_offset=offset,
        patient_position=position,
    )
    sd = noise_sd_hu(
        family=family,
        mas=mas,
        kvp=kvp,
        thickness_mm=float(thickness),
        body_scale=plan.scale,
        fat_mm=plan.fat_mm,
    )
    rotation = 0.5
    return Acquisition(
        manufacturer=vendor.manufacturer,
        model=str(rng.choice(vendor.models)),
        kernel_name=vendor.kernels[family],
        kernel_family=family,
        kvp=kvp,
        mas=round(mas, 1),
        tube_current_ma=round(mas / rotation),
        ctdi_vol=round(mas * 0.075 * (kvp / 120.0) ** 2.5, 2),
        phase=phase,
        contrast_agent=agent,
        geometry=geometry,
        noise_sd=round(float(sd), 2),
        vendor_index=vendor_index,
    )
