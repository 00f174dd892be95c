"""Write a rendered study as a CT Image Storage series (one file per slice).

One template dataset carries every series-level attribute; each slice only
swaps SOPInstanceUID, InstanceNumber, ImagePositionPatient, SliceLocation and
PixelData, so writing is dominated by the pixel bytes.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from models.synthetic.generator import RenderedStudy
from models.synthetic.geometry import FEET_FIRST_SUPINE
from models.synthetic.tissues import Phase

INSTITUTION = "RADSCRIBE SYNTHETIC"
IMAGE_COMMENT = "SYNTHETIC PHANTOM - NOT A PATIENT"
WINDOW_CENTRES = [40, -600]
WINDOW_WIDTHS = [400, 1500]


def procedure_text(phase: Phase) -> str:
    return "CT CHEST WITHOUT CONTRAST" if phase is Phase.NONE else "CT CHEST WITH CONTRAST"


def series_description(study: RenderedStudy) -> str:
    acq = study.spec.acquisition
    g = study.geometry
    return f"Thorax {g.slice_thickness:g}mm {acq.kernel_name}"


def stored_pixels(study: RenderedStudy) -> npt.NDArray[np.integer]:
    """The HU volume as stored values of the vendor's representation (canonical orientation)."""
    vendor = study.spec.acquisition.vendor
    stored = study.hu.astype(np.int32) - int(vendor.rescale_intercept)
    g = study.geometry
    if vendor.padding_hu is not None:
        yy = (np.arange(g.rows) - (g.rows - 1) / 2)[:, None]
        xx = (np.arange(g.cols) - (g.cols - 1) / 2)[None, :]
        outside = (yy * yy + xx * xx) > (min(g.rows, g.cols) / 2) ** 2
        stored[:, outside] = int(vendor.padding_hu - vendor.rescale_intercept)
    if vendor.signed:
        return stored.astype(np.int16)
    return np.clip(stored, 0, (1 << vendor.bits_stored) - 1).astype(np.uint16)


def _template(study: RenderedStudy) -> Dataset:
    spec = study.spec
    ident = spec.identity
    acq = spec.acquisition
    vendor = acq.vendor
    g = study.geometry
    when = ident.study_datetime
    series_time = when + timedelta(minutes=4)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = series_time.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = series_time.strftime("%H%M%S")
    ds.AccessionNumber = ident.accession_number
    ds.Modality = "CT"
    ds.Manufacturer = vendor.manufacturer
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = "SYNTHETIC^REFERRER"
    ds.StationName = "SYNTHCT01"
    ds.StudyDescription = procedure_text(acq.phase)
    ds.SeriesDescription = series_description(study)
    ds.ManufacturerModelName = acq.model
    ds.PatientName = ident.patient_name
    ds.PatientID = ident.patient_id
    ds.IssuerOfPatientID = "RADSCRIBE-SYNTH"
    ds.PatientBirthDate = ident.birth_date
    ds.PatientSex = ident.sex
    ds.PatientAge = f"{ident.age:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = f"{g.slice_thickness:g}"
    ds.SpacingBetweenSlices = f"{g.slice_spacing:.6g}"
    ds.KVP = str(acq.kvp)
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = f"{g.fov_mm:.2f}"
    ds.DistanceSourceToDetector = "1085.6"
    ds.DistanceSourceToPatient = "595"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = f"{-g.patient_offset[1]:.1f}"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = str(acq.tube_current_ma)
    ds.Exposure = str(round(acq.mas))
    ds.CTDIvol = acq.ctdi_vol
    ds.ConvolutionKernel = acq.kernel_name
    ds.PatientPosition = g.patient_position
    if acq.contrast_agent:
        ds.ContrastBolusAgent = acq.contrast_agent
        ds.ContrastBolusRoute = "IV"
    ds.StudyInstanceUID = ident.study_uid
    ds.SeriesInstanceUID = ident.series_uid
    ds.StudyID = ident.accession_number[-8:]
    ds.SeriesNumber = "2"
    ds.AcquisitionNumber = "1"
    ds.FrameOfReferenceUID = ident.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [f"{v:g}" for v in g.image_orientation()]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = g.rows
    ds.Columns = g.cols
    ds.PixelSpacing = [f"{g.pixel_spacing:.6g}", f"{g.pixel_spacing:.6g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = vendor.bits_stored
    ds.HighBit = vendor.bits_stored - 1
    ds.PixelRepresentation = 1 if vendor.signed else 0
    if vendor.padding_hu is not None:
        ds.PixelPaddingValue = int(vendor.padding_hu - vendor.rescale_intercept)
    ds.WindowCenter = WINDOW_CENTRES
    ds.WindowWidth = WINDOW_WIDTHS
    ds.RescaleIntercept = f"{vendor.rescale_intercept:g}"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.ImageComments = IMAGE_COMMENT
    ds.BurnedInAnnotation = "NO"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def instance_uid(series_uid: str, number: int) -> str:
    return str(generate_uid(prefix=None, entropy_srcs=[series_uid, str(number)]))


def write_dicom_series(study: RenderedStudy, out_dir: Path) -> list[Path]:
    """Write the series into ``out_dir`` (created); returns the file paths in instance order.

    Files are written under temporary names and renamed, so a reader never
    sees a half-written file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    g = study.geometry
    pixels = stored_pixels(study)
    if g.patient_position == FEET_FIRST_SUPINE:
        pixels = pixels[:, :, ::-1]
        order = list(range(g.n_slices))  # feet first: scanned from the feet upwards
    else:
        order = list(range(g.n_slices - 1, -1, -1))  # head first: top slice first
    ds = _template(study)
    series_uid = study.spec.identity.series_uid
    paths: list[Path] = []
    for number, k in enumerate(order, start=1):
        uid = instance_uid(series_uid, number)
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = str(number)
        ipp = g.image_position(k)
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        ds.SliceLocation = f"{ipp[2]:.4f}"
        ds.PixelData = np.ascontiguousarray(pixels[k]).tobytes()
        path = out_dir / f"CT{number:05d}.dcm"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            dcmwrite(fh, ds, enforce_file_format=True)
        os.replace(tmp, path)
        paths.append(path)
    return paths
