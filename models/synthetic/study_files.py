"""One synthetic study on disk: DICOM series, truth JSON, finding masks, optional NIfTI.

``generate_study`` renders a seed with its EMR context and reference report;
``write_study`` puts it in a folder.  The folder is assembled under a
temporary name and renamed at the end, so it is either complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt

from models.findings import Finding
from models.synthetic.clinical import ClinicalContext, sample_clinical_context
from models.synthetic.dicom_writer import write_dicom_series
from models.synthetic.generator import RenderedStudy, render_study
from models.synthetic.geometry import FEET_FIRST_SUPINE, ScanGeometry
from models.synthetic.report_text import ReferenceReport, reference_report, technique_text
from models.synthetic.spec import sample_study_spec, seed_streams
from models.synthetic.truth import MASK_ENCODING, SCHEMA_VERSION, json_safe, labels_vector

TRUTH_FILE = "truth.json"
MASKS_FILE = "masks.nii.gz"
INSTANCES_FILE = "lesions.nii.gz"
VOLUME_FILE = "volume.nii.gz"
DICOM_DIR = "dicom"


class StudyExistsError(FileExistsError):
    """The output folder already holds files."""


@dataclass
class GeneratedStudy:
    rendered: RenderedStudy
    clinical: ClinicalContext
    report: ReferenceReport


def generate_study(
    seed: int,
    *,
    findings: Sequence[Finding] | None = None,
    n_slices: int | None = None,
    matrix: int = 512,
    hard: bool | None = None,
    with_masks: bool = True,
) -> GeneratedStudy:
    spec = sample_study_spec(seed, findings=findings, n_slices=n_slices, matrix=matrix, hard=hard)
    rendered = render_study(spec, with_masks=with_masks)
    return describe(rendered)


def describe(rendered: RenderedStudy) -> GeneratedStudy:
    """Clinical context and reference report for a rendered study (deterministic by seed)."""
    spec = rendered.spec
    text_rng = seed_streams(spec.seed)["text"]
    acq = spec.acquisition
    clinical = sample_clinical_context(
        text_rng,
        present=rendered.present,
        phase=acq.phase,
        age=spec.identity.age,
        sex=spec.identity.sex,
    )
    technique = technique_text(
        phase=acq.phase, thickness_mm=acq.geometry.slice_thickness, kernel=acq.kernel_name
    )
    report = reference_report(
        rendered.lesions, present=rendered.present, technique=technique, rng=text_rng
    )
    return GeneratedStudy(rendered, clinical, report)


def instance_number(geometry: ScanGeometry, k: int) -> int:
    """DICOM InstanceNumber of canonical slice k (see dicom_writer ordering)."""
    return k + 1 if geometry.patient_position == FEET_FIRST_SUPINE else geometry.n_slices - k


def truth_document(study: GeneratedStudy, *, files: dict[str, str | None]) -> dict[str, Any]:
    r = study.rendered
    spec = r.spec
    ident = spec.identity
    acq = spec.acquisition
    g = r.geometry
    lesions = []
    for lesion in r.lesions:
        k, j, i = g.voxel_of(lesion.centre_mm)
        lesions.append(
            {
                "id": lesion.instance_id,
                "finding": lesion.finding.value,
                "slug": lesion.finding.slug,
                "kind": lesion.kind,
                "location": lesion.location,
                "side": lesion.side,
                "lobe": lesion.lobe,
                "centre_patient_mm": g.anatomical_to_patient(lesion.centre_mm),
                "centre_voxel": [k, j, i],
                "dicom_instance_number": instance_number(g, k) if 0 <= k < g.n_slices else None,
                "measurements": lesion.measurements,
            }
        )
    doc = {
        "schema_version": SCHEMA_VERSION,
        "synthetic": True,
        "seed": spec.seed,
        "patient": {
            "id": ident.patient_id,
            "issuer": "RADSCRIBE-SYNTH",
            "name": ident.patient_name,
            "sex": ident.sex,
            "age": ident.age,
            "birth_date": ident.birth_date,
        },
        "study": {
            "accession_number": ident.accession_number,
            "study_uid": ident.study_uid,
            "series_uid": ident.series_uid,
            "frame_of_reference_uid": ident.frame_of_reference_uid,
            "study_datetime": ident.study_datetime.isoformat(),
            "procedure_code": study.clinical.procedure_code,
            "procedure_text": study.clinical.procedure_text,
        },
        "acquisition": {
            "manufacturer": acq.manufacturer,
            "model": acq.model,
            "kernel": acq.kernel_name,
            "kernel_family": acq.kernel_family.value,
            "kvp": acq.kvp,
            "mas": acq.mas,
            "ctdi_vol": acq.ctdi_vol,
            "contrast_phase": acq.phase.value,
            "contrast_agent": acq.contrast_agent,
            "noise_sd_hu": round(r.noise_sd, 2),
            "rescale_intercept": acq.vendor.rescale_intercept,
            "rescale_slope": 1.0,
        },
        "geometry": {
            "array": (
                "canonical [slice, row, column]: slices ascending in z, rows anterior to "
                "posterior, columns patient right to left"
            ),
            "rows": g.rows,
            "columns": g.cols,
            "slices": g.n_slices,
            "pixel_spacing_mm": g.pixel_spacing,
            "slice_thickness_mm": g.slice_thickness,
            "slice_spacing_mm": g.slice_spacing,
            "patient_position": g.patient_position,
            "image_orientation": g.image_orientation(),
            "first_slice_position": g.image_position(0),
            "affine_ras": g.nifti_affine().tolist(),
        },
        "difficulty": {"hard": spec.hard, "reasons": list(spec.hard_reasons)},
        "labels": labels_vector(r.present),
        "findings_plan": [fp.to_json() for fp in spec.findings],
        "lesions": lesions,
        "measurements": r.measurements,
        "masks": {
            "file": files.get("masks"),
            "instances_file": files.get("instances"),
            "encoding": MASK_ENCODING,
            "instance_ids": "lesions[].id",
        },
        "clinical": {
            "relation_to_findings": study.clinical.relation,
            "reason_for_exam": study.clinical.reason_for_exam,
            "clinical_history": study.clinical.clinical_history,
            "priority": study.clinical.priority,
            "ordering_provider": study.clinical.ordering_provider,
            "order_present": study.clinical.order_present,
        },
        "report": study.report.to_json(),
        "files": files,
        "dictation": None,
        "hl7": None,
    }
    safe: dict[str, Any] = json_safe(doc)
    return safe


def write_nifti(volume: npt.NDArray[Any], geometry: ScanGeometry, path: Path) -> None:
    """Canonical array [slice, row, column] as NIfTI data[i, j, k] with a RAS affine."""
    img = nib.Nifti1Image(
        np.ascontiguousarray(volume.transpose(2, 1, 0)), geometry.nifti_affine().astype(np.float64)
    )
    img.header.set_data_dtype(volume.dtype)
    img.header.set_slope_inter(1.0, 0.0)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


def write_study(
    study: GeneratedStudy,
    out_dir: Path,
    *,
    dicom: bool = True,
    masks: bool = True,
    volume_nifti: bool = False,
    threads: int = 2,
) -> dict[str, Any]:
    """Write the study folder; returns the truth document written to truth.json."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise StudyExistsError(f"{out_dir} is not empty")
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    r = study.rendered
    files: dict[str, str | None] = {
        "dicom": None,
        "masks": None,
        "instances": None,
        "volume": None,
        "truth": TRUTH_FILE,
    }
    if dicom:
        write_dicom_series(r, partial / DICOM_DIR, threads=threads)
        files["dicom"] = DICOM_DIR
    if masks and r.finding_bits is not None and r.instances is not None:
        write_nifti(r.finding_bits, r.geometry, partial / MASKS_FILE)
        write_nifti(r.instances, r.geometry, partial / INSTANCES_FILE)
        files["masks"], files["instances"] = MASKS_FILE, INSTANCES_FILE
    if volume_nifti:
        write_nifti(r.hu, r.geometry, partial / VOLUME_FILE)
        files["volume"] = VOLUME_FILE
    doc = truth_document(study, files=files)
    write_json(partial / TRUTH_FILE, doc)
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(partial, out_dir)
    return doc


def write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_truth(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / TRUTH_FILE).read_text(encoding="utf-8"))
    return data
