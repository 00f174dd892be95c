"""Write a rendered study as a CT Image Storage series (one file per slice).

One template dataset carries every series-level attribute; each slice only
swaps SOPInstanceUID, InstanceNumber, ImagePositionPatient, SliceLocation and
PixelData, so writing is dominated by the pixel bytes.
"""

from __future__ import annotations

import copy
import io
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
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


INSTANCE_DIGITS = 5  # instance numbers are written with a fixed width, up to 99999 slices
IS_WIDTH = 6  # zero-padded, so every slice has the same byte layout
DS_WIDTH = 12


def instance_uid(series_uid: str, number: int) -> str:
    """SOP Instance UID derived from the series UID (fixed length within a series)."""
    return f"{series_uid}.1{number:0{INSTANCE_DIGITS}d}"


def _ds(value: float) -> str:
    text = f"{value:+0{DS_WIDTH}.4f}"
    if len(text) != DS_WIDTH:
        raise ValueError(f"position {value} does not fit a {DS_WIDTH}-character DS")
    return text


class _EncodedSeries:
    """The template encoded once; each slice patches a few fixed-width values and appends pixels.

    Every per-slice value has a fixed width (instance UIDs from the series UID,
    space-padded IS and DS), so byte offsets do not move between slices.  The
    offsets are found by encoding the template with probe values and locating them.
    """

    PROBE_NUMBER = 42424
    PROBE_IPP = (-4242.4242, -4343.4343, -4444.4444)

    def __init__(self, template: Dataset, series_uid: str, pixel_bytes: int) -> None:
        self.series_uid = series_uid
        ds = copy.deepcopy(template)
        uid = instance_uid(series_uid, self.PROBE_NUMBER)
        ds.SOPInstanceUID = UID(uid)
        ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
        ds.InstanceNumber = f"{self.PROBE_NUMBER:0{IS_WIDTH}d}"
        ds.ImagePositionPatient = [_ds(v) for v in self.PROBE_IPP]
        ds.SliceLocation = _ds(self.PROBE_IPP[2])
        ds.PixelData = bytes(pixel_bytes)
        buf = io.BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
        encoded = buf.getvalue()
        self.header = bytearray(encoded[: len(encoded) - pixel_bytes])
        self.uid_at = self._find(uid.encode(), 2)
        self.number_at = self._find(f"{self.PROBE_NUMBER:0{IS_WIDTH}d}".encode(), 1)
        ipp = "\\".join(_ds(v) for v in self.PROBE_IPP).encode()
        self.ipp_at = self._find(ipp, 1)
        self.location_at = [
            p
            for p in self._find(_ds(self.PROBE_IPP[2]).encode(), 2)
            if p not in range(self.ipp_at[0], self.ipp_at[0] + len(ipp))
        ]

    def _find(self, needle: bytes, expected: int) -> list[int]:
        found = []
        start = 0
        while (at := self.header.find(needle, start)) >= 0:
            found.append(at)
            start = at + 1
        if len(found) != expected:
            raise RuntimeError(
                f"template probe {needle!r} found {len(found)} times, expected {expected}"
            )
        return found

    def encode(self, number: int, ipp: list[float]) -> bytearray:
        out = bytearray(self.header)
        uid = instance_uid(self.series_uid, number).encode()
        for at in self.uid_at:
            out[at : at + len(uid)] = uid
        num = f"{number:0{IS_WIDTH}d}".encode()
        out[self.number_at[0] : self.number_at[0] + len(num)] = num
        ipp_b = "\\".join(_ds(v) for v in ipp).encode()
        out[self.ipp_at[0] : self.ipp_at[0] + len(ipp_b)] = ipp_b
        loc = _ds(ipp[2]).encode()
        for at in self.location_at:
            out[at : at + len(loc)] = loc
        return out


def write_dicom_series(study: RenderedStudy, out_dir: Path, *, threads: int = 1) -> list[Path]:
    """Write the series into ``out_dir`` (created); returns the file paths in instance order.

    Files are written under temporary names and renamed, so a reader never
    sees a half-written file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    g = study.geometry
    if g.n_slices >= 10**INSTANCE_DIGITS:
        raise ValueError(f"at most {10**INSTANCE_DIGITS - 1} slices per series")
    pixels = stored_pixels(study)
    if g.patient_position == FEET_FIRST_SUPINE:
        pixels = pixels[:, :, ::-1]
        order = list(range(g.n_slices))  # feet first: scanned from the feet upwards
    else:
        order = list(range(g.n_slices - 1, -1, -1))  # head first: top slice first
    encoder = _EncodedSeries(_template(study), study.spec.identity.series_uid, g.rows * g.cols * 2)
    numbered = list(enumerate(order, start=1))
    paths = [out_dir / f"CT{number:05d}.dcm" for number, _ in numbered]

    def write(part: list[tuple[int, int]]) -> None:
        for number, k in part:
            path = out_dir / f"CT{number:05d}.dcm"
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                fh.write(encoder.encode(number, g.image_position(k)))
                fh.write(np.ascontiguousarray(pixels[k]).tobytes())
            os.replace(tmp, path)

    parts = [numbered[i::threads] for i in range(max(1, threads))]
    if len(parts) == 1:
        write(parts[0])
    else:
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            for future in [pool.submit(write, part) for part in parts]:
                future.result()
    return paths
