"""`radscribe draft` end to end: a phantom study, an HL7 order file, a transcript."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli.main import main

ORDER = (
    "MSH|^~\\&|EMR|HOSP|RADSCRIBE|RAD|20260101120000||ORM^O01|MSG0001|P|2.5.1\r"
    "PID|1||MRN123^^^HOSP^MR||DOE^JANE||19600101|F\r"
    "ORC|NW|PL1001|FL1001\r"
    "OBR|1|PL1001|FL1001|71250^CT CHEST WO CONTRAST^CPT|||20260101115500|||||||"
    "Ex-smoker, 30 pack-years|||||ACC1001||||||||||||Persistent cough\r"
)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RADSCRIBE_ENV", "development")
    monkeypatch.setenv("RADSCRIBE_DATA_DIR", str(tmp_path / "data"))


def test_draft_prints_json_with_order_and_transcript(
    cli_env: None,
    tiny_checkpoint: Path,
    chest_studies: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    order = tmp_path / "order.hl7"
    order.write_bytes(ORDER.encode())
    status = main(
        [
            "draft",
            str(chest_studies[1]),
            "--order",
            str(order),
            "--transcript",
            "Solid nodule in the left lower lobe.",
            "--checkpoint",
            str(tiny_checkpoint),
            "--precision",
            "fp32",
            "--json",
        ]
    )
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["modalities_present"] == {"image": True, "emr": True, "dictation": True}
    assert result["model_version"] == "tiny-test-0"
    assert result["validated_for_clinical_use"] is False
    assert len(result["probabilities"]) == 18


def test_draft_text_summary_and_typed_errors(
    cli_env: None,
    tiny_checkpoint: Path,
    chest_studies: list[Path],
    tmp_path: Path,
    phantoms: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["draft", str(chest_studies[0]), "--checkpoint", str(tiny_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "NOT VALIDATED FOR CLINICAL USE" in out and "emr absent" in out
    phantoms.write_localizer(tmp_path / "loc")  # type: ignore[attr-defined]
    assert main(["draft", str(tmp_path / "loc"), "--checkpoint", str(tiny_checkpoint)]) == 3
    assert "localizer" in capsys.readouterr().err
    assert main(["draft", str(chest_studies[0]), "--checkpoint", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.hl7").write_bytes(b"this is not HL7")
    bad = ["draft", str(chest_studies[0]), "--order", str(tmp_path / "bad.hl7")]
    assert main([*bad, "--checkpoint", str(tiny_checkpoint)]) == 4


def test_draft_transcribes_a_dictation_with_the_speech_service(
    cli_env: None,
    tiny_checkpoint: Path,
    chest_studies: list[Path],
    shared_data: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("app.speech.transcriber")
    audio = shared_data / "audio" / "jfk.flac"
    status = main(
        [
            "draft", str(chest_studies[0]), "--dictation", str(audio),
            "--checkpoint", str(tiny_checkpoint), "--json",
        ]
    )  # fmt: skip
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["modalities_present"]["dictation"] is True
    assert 0.0 < result["modality_weights"]["dictation"] < 1.0
