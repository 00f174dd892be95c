"""Synthetic DICOM series: geometry and pixels round-trip through pydicom; DCMTK reads them."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.synthetic.dicom_writer import write_dicom_series
from models.synthetic.generator import RenderedStudy, render_study
from models.synthetic.preview import load_series, write_preview
from models.synthetic.spec import sample_study_spec
from tests.conftest import free_port

DCMDUMP = "/usr/bin/dcmdump"
ORTHANC = "/usr/sbin/Orthanc"


def _study(position: str, seed: int) -> RenderedStudy:
    spec = sample_study_spec(seed, matrix=96, n_slices=32, position=position, contrast=True)
    return render_study(spec, with_masks=False)


@pytest.mark.parametrize(("position", "seed"), [("HFS", 31), ("FFS", 32)])
def test_geometry_and_pixels_round_trip(tmp_path: Path, position: str, seed: int) -> None:
    study = _study(position, seed)
    paths = write_dicom_series(study, tmp_path / "dicom", threads=2)
    g = study.geometry
    assert len(paths) == g.n_slices == len(list((tmp_path / "dicom").glob("*.dcm")))
    datasets = [pydicom.dcmread(p) for p in paths]
    ident = study.spec.identity
    assert {str(d.StudyInstanceUID) for d in datasets} == {ident.study_uid}
    assert {str(d.SeriesInstanceUID) for d in datasets} == {ident.series_uid}
    assert len({str(d.SOPInstanceUID) for d in datasets}) == g.n_slices
    assert all(d.SOPClassUID == pydicom.uid.CTImageStorage for d in datasets)
    assert all(str(d.SOPInstanceUID) == d.file_meta.MediaStorageSOPInstanceUID for d in datasets)
    first = datasets[0]
    assert first.AccessionNumber == ident.accession_number
    assert str(first.PatientName).startswith("SYNTHETIC^") and first.PatientID.startswith("SYN")
    assert first.PatientPosition == position
    assert float(first.SliceThickness) == pytest.approx(g.slice_thickness)
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([g.pixel_spacing] * 2, abs=1e-5)
    assert first.ConvolutionKernel == study.spec.acquisition.kernel_name
    assert first.ContrastBolusAgent == study.spec.acquisition.contrast_agent
    assert int(first.KVP) == study.spec.acquisition.kvp
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    positions = sorted(
        float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])) for d in datasets
    )
    assert np.diff(positions) == pytest.approx(g.slice_spacing, abs=1e-3)
    # Pixels: stored values and rescale give back the generated HU (inside the FOV circle).
    hu = [
        d.pixel_array.astype(np.int32) * int(d.RescaleSlope) + int(d.RescaleIntercept)
        for d in datasets
    ]
    by_z = dict(zip([float(d.ImagePositionPatient[2]) for d in datasets], hu, strict=True))
    k = g.n_slices // 2
    image = by_z[round(g.slice_z_patient(k), 4)]
    if position == "FFS":
        image = image[:, ::-1]
    inside = image > -2000
    assert np.array_equal(image[inside], study.hu[k][inside].astype(np.int32))
    # The first pixel sits where ImagePositionPatient says: the patient's right for HFS.
    x_first = float(datasets[0].ImagePositionPatient[0])
    assert (iop[0] > 0) == (position == "HFS")
    assert x_first == pytest.approx(g.image_position(0)[0], abs=1e-3)


def test_preview_reorients_feet_first_to_the_display_convention(tmp_path: Path) -> None:
    study = _study("FFS", 32)
    write_dicom_series(study, tmp_path / "dicom")
    loaded = load_series(tmp_path / "dicom")
    assert loaded.hu.shape == study.hu.shape
    mid = study.hu.shape[0] // 2
    core = study.hu[mid] > -1000
    assert np.array_equal(loaded.hu[mid][core], study.hu[mid][core].astype(np.float32))
    png = write_preview(tmp_path / "dicom", tmp_path / "preview.png")
    assert png.stat().st_size > 10_000


@pytest.mark.skipif(not os.path.exists(DCMDUMP), reason="DCMTK dcmdump not installed")
def test_dcmtk_reads_a_generated_file(tmp_path: Path) -> None:
    study = _study("HFS", 33)
    paths = write_dicom_series(study, tmp_path / "dicom")
    env = {**os.environ, "TCP_NODELAY": "1"}
    result = subprocess.run(
        [DCMDUMP, "-E", str(paths[0])],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "CTImageStorage" in result.stdout
    assert study.spec.identity.accession_number in result.stdout
    assert "E:" not in result.stderr


@pytest.mark.skipif(not os.path.exists(ORTHANC), reason="Orthanc not installed")
def test_orthanc_stores_and_renders_a_generated_file(tmp_path: Path) -> None:
    study = _study("HFS", 35)
    paths = write_dicom_series(study, tmp_path / "dicom")
    http, dicom = free_port(), free_port()
    config = {
        "Name": "synth-test",
        "StorageDirectory": str(tmp_path / "orthanc"),
        "IndexDirectory": str(tmp_path / "orthanc"),
        "HttpPort": http,
        "DicomPort": dicom,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    env = {**os.environ, "TCP_NODELAY": "1"}
    log = open(tmp_path / "orthanc.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [ORTHANC, str(tmp_path / "orthanc.json")], stdout=log, stderr=log, env=env
    )
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/system", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, "Orthanc exited"
                assert time.monotonic() < deadline, "Orthanc did not start"
                time.sleep(0.1)
        request = urllib.request.Request(
            f"{base}/instances", data=paths[0].read_bytes(), method="POST"
        )
        stored = json.loads(urllib.request.urlopen(request, timeout=10).read())
        assert stored["Status"] == "Success"
        tags = json.loads(
            urllib.request.urlopen(
                f"{base}/instances/{stored['ID']}/simplified-tags", timeout=10
            ).read()
        )
        assert tags["AccessionNumber"] == study.spec.identity.accession_number
        assert tags["SeriesInstanceUID"] == study.spec.identity.series_uid
        png = urllib.request.urlopen(f"{base}/instances/{stored['ID']}/preview", timeout=10).read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
