"""The study-level generator: HL7 orders, dictation text and audio, the CLI and the data set."""

from __future__ import annotations

import csv
import json
import wave
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from hl7apy.parser import parse_message

from app.cli.main import main
from app.services.synthetic_dictation import TEMPLATE_SETS, make_dictation, spoken_form
from app.services.synthetic_study import (
    SAMPLE_RATE,
    make_noise,
    mix_at_snr,
    write_synthetic_dataset,
    write_synthetic_study,
)
from models.findings import FINDINGS, Finding
from models.synthetic.dataset import DatasetOptions, assign_splits

STUDY_SEED = 4  # has an order with a reason for exam and a dictation


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "study"
    write_synthetic_study(
        out,
        seed=STUDY_SEED,
        findings=[Finding.LUNG_NODULE, Finding.PLEURAL_EFFUSION],
        n_slices=32,
        matrix=96,
    )
    return out


def _truth(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "truth.json").read_text())
    return data


def test_study_folder_holds_everything(study_dir: Path) -> None:
    truth = _truth(study_dir)
    assert len(list((study_dir / "dicom").glob("*.dcm"))) == truth["geometry"]["slices"] == 32
    assert (
        truth["labels"][Finding.LUNG_NODULE.value] == 1
        and truth["labels"][Finding.PLEURAL_EFFUSION.value] == 1
    )
    assert sum(truth["labels"].values()) == 2
    assert list(truth["labels"]) == [f.value for f in FINDINGS]
    masks = nib.load(study_dir / truth["masks"]["file"])
    assert isinstance(masks, nib.Nifti1Image)
    bits = np.asarray(masks.dataobj)
    assert bits.shape == (96, 96, 32)
    nodule_bit = 1 << FINDINGS.index(Finding.LUNG_NODULE)
    assert (bits & nodule_bit).any()
    assert truth["report"]["impression"] and truth["report"]["findings"]
    assert not (study_dir.parent / "study.partial").exists()


def _er7(path: Path) -> str:
    """HL7 text as written: segments separated by carriage returns (no newline translation)."""
    text = path.read_bytes().decode("utf-8")
    assert "\n" not in text and text.count("\r") >= 3
    return text


def test_hl7_messages_parse_and_carry_the_accession(study_dir: Path) -> None:
    truth = _truth(study_dir)
    assert truth["clinical"]["order_present"] and truth["clinical"]["reason_for_exam"]
    accession = truth["study"]["accession_number"]
    adt = parse_message(_er7(study_dir / truth["hl7"]["adt"]), find_groups=False)
    assert adt.msh.msh_9.to_er7() == "ADT^A01^ADT_A01"
    assert adt.pid.pid_3.to_er7().startswith(truth["patient"]["id"])
    assert adt.pid.pid_5.to_er7().startswith("SYNTHETIC^")
    orm = parse_message(_er7(study_dir / truth["hl7"]["orm"]), find_groups=False)
    assert orm.msh.msh_9.to_er7() == "ORM^O01^ORM_O01"
    assert orm.obr.obr_3.to_er7().split("^")[0] == accession
    assert accession in orm.orc.orc_3.to_er7()
    assert truth["clinical"]["reason_for_exam"] in orm.obr.obr_31.to_er7()


def test_dictation_text_and_audio(study_dir: Path) -> None:
    truth = _truth(study_dir)
    dictation = truth["dictation"]
    assert dictation["present"], "seed STUDY_SEED is chosen to have a dictation"
    text = dictation["text"]
    assert "period" in text and "colon" in text and "new paragraph" in text
    assert text.lower().startswith("findings")
    audio = dictation["audio"]
    with wave.open(str(study_dir / audio["file"]), "rb") as w:
        assert w.getnchannels() == 1 and w.getframerate() == SAMPLE_RATE and w.getsampwidth() == 2
        assert w.getnframes() / SAMPLE_RATE == pytest.approx(audio["duration_s"], abs=0.02)
    assert 5.0 <= audio["snr_db"] <= 30.0


def test_noise_is_mixed_at_the_stated_snr() -> None:
    rng = np.random.default_rng(0)
    speech = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32) * 0.3
    for kind in ("white", "pink", "hum", "babble"):
        noise = make_noise(rng, kind, speech.size)
        mixed = mix_at_snr(speech, noise, 12.5)
        residual = mixed - speech
        snr = 10 * np.log10(
            np.mean(speech.astype(np.float64) ** 2) / np.mean(residual.astype(np.float64) ** 2)
        )
        assert snr == pytest.approx(12.5, abs=0.01)


def test_template_families_are_held_apart() -> None:
    lexicon = {t for ts in TEMPLATE_SETS["lexicon"].values() for t in ts}
    heldout = {t for ts in TEMPLATE_SETS["heldout"].values() for t in ts}
    assert not lexicon & heldout
    assert set(TEMPLATE_SETS["lexicon"]) == set(TEMPLATE_SETS["heldout"]) == set(FINDINGS)
    assert (
        spoken_form("Findings: A, b.\n\nImpression: C.")
        == "Findings colon A comma b period new paragraph Impression colon C period"
    )
    truth = {
        "lesions": [
            {
                "finding": Finding.LUNG_NODULE.value,
                "lobe": "right upper lobe",
                "measurements": {"diameter_mm": 6.0, "type": "solid"},
            }
        ]
    }
    texts = {
        make_dictation(truth, np.random.default_rng(s), template_set="heldout") for s in range(30)
    } - {None}
    assert texts and all(d is not None and d.template_set == "heldout" for d in texts)


def test_cli_study_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-study"
    rc = main(
        [
            "synth",
            "study",
            "--out",
            str(out),
            "--seed",
            "9",
            "--slices",
            "24",
            "--matrix",
            "64",
            "--finding",
            "consolidation",
            "--no-audio",
        ]
    )
    assert rc == 0
    truth = _truth(out)
    assert truth["labels"][Finding.CONSOLIDATION.value] == 1 and sum(truth["labels"].values()) == 1
    assert main(["synth", "preview", str(out), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 5_000
    capsys.readouterr()
    assert main(["synth", "study", "--out", str(out), "--slices", "24", "--matrix", "64"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["synth", "study", "--out", str(tmp_path / "x"), "--finding", "no_such_thing"]) == 2
    assert "unknown finding" in capsys.readouterr().err
    assert (
        main(["synth", "preview", str(tmp_path / "missing"), "--out", str(tmp_path / "q.png")]) == 2
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_dataset_in_ct_rate_layout_is_deterministic(tmp_path: Path) -> None:
    options = DatasetOptions(n=4, seed=2, fractions=(0.5, 0.25, 0.25), spacing_mm=6.0, matrix=64)
    counts = write_synthetic_dataset(tmp_path / "a", options)
    assert counts == {"train": 2, "valid": 1, "test": 1}
    root = tmp_path / "a" / "dataset"
    labels = _read_csv(root / "multi_abnormality_labels" / "train_predicted_labels.csv")
    reports = _read_csv(root / "radiology_text_reports" / "validation_reports.csv")
    meta = _read_csv(root / "metadata" / "test_metadata.csv")
    assert list(labels[0]) == ["VolumeName", *(f.value for f in FINDINGS)]
    assert list(reports[0]) == [
        "VolumeName",
        "ClinicalInformation_EN",
        "Technique_EN",
        "Findings_EN",
        "Impressions_EN",
    ]
    assert {"XYSpacing", "ZSpacing", "RescaleSlope", "RescaleIntercept"} <= set(meta[0])
    for row in labels:
        name = row["VolumeName"]
        number = name.split("_")[1]
        volume = root / "train" / f"train_{number}" / f"train_{number}_a" / name
        img = nib.load(volume)
        assert isinstance(img, nib.Nifti1Image)
        assert img.header.get_zooms()[:2] == pytest.approx((6.0, 6.0))
        truth = _truth(root / "studies" / "train" / name.removesuffix(".nii.gz"))
        assert {k: str(v) for k, v in truth["labels"].items()} == {
            k: v for k, v in row.items() if k != "VolumeName"
        }
        assert (
            root / "studies" / "train" / name.removesuffix(".nii.gz") / "hl7" / "adt_a01.hl7"
        ).exists()
    again = write_synthetic_dataset(tmp_path / "b", options)
    assert again == counts
    for split_csv in (
        "radiology_text_reports/train_reports.csv",
        "multi_abnormality_labels/train_predicted_labels.csv",
    ):
        assert (tmp_path / "a" / "dataset" / split_csv).read_text() == (
            tmp_path / "b" / "dataset" / split_csv
        ).read_text()
    assert assign_splits(options) == assign_splits(options)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, (1, 0, 0)), (3, (1, 1, 1)), (5, (3, 1, 1)), (100, (80, 10, 10))],
)
def test_split_counts_cover_every_split(n: int, expected: tuple[int, int, int]) -> None:
    from models.synthetic.dataset import split_counts

    counts = split_counts(DatasetOptions(n=n))
    assert tuple(counts.values()) == expected
    assert sorted(assign_splits(DatasetOptions(n=n))).count("train") == expected[0]
