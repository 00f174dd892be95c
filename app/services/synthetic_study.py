"""The study-level synthetic generator: a phantom study plus its EMR orders and dictation.

``models.synthetic`` makes the volume, DICOM series and truth; this module adds
what the application receives around a study: HL7 ADT^A01 and ORM^O01 built
by ``app.emr.messages`` (the same builders the EMR side uses), the dictation
text and its audio (espeak-ng, varied voice and speed, noise at a known SNR),
and records all of it in truth.json.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from app.emr.messages import OrderInfo, PatientInfo, build_adt_a01, build_orm_o01
from app.services.synthetic_dictation import Dictation, make_dictation
from models.findings import Finding
from models.synthetic.dataset import DatasetItem, DatasetOptions, build_dataset
from models.synthetic.spec import seed_streams
from models.synthetic.study_files import generate_study, read_truth, write_json, write_study

ESPEAK = "espeak-ng"
VOICES = (
    "en-us+m3",
    "en-us+f2",
    "en-gb+m1",
    "en-gb-x-rp+f3",
    "en-us+m7",
    "en-029+m2",
    "en-gb-scotland+f4",
    "en-us+f5",
)
SPEED_WPM = (125, 185)
SNR_DB = (5.0, 30.0)
NOISE_KINDS = ("white", "pink", "hum", "babble")
SAMPLE_RATE = 16_000
ESPEAK_RATE = 22_050
ESPEAK_TIMEOUT_S = 60
ACCESSION_ISSUER = "RADSCRIBE-SYNTH"
HL7_DIR = "hl7"
ADT_FILE = "adt_a01.hl7"
ORM_FILE = "orm_o01.hl7"
DICTATION_WAV = "dictation.wav"
DICTATION_TXT = "dictation.txt"


class SpeechSynthesisError(RuntimeError):
    """espeak-ng is missing or failed."""


@dataclass(frozen=True)
class AudioInfo:
    voice: str
    speed_wpm: int
    noise: str
    snr_db: float
    sample_rate: int
    duration_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "voice": self.voice,
            "speed_wpm": self.speed_wpm,
            "noise": self.noise,
            "snr_db": round(self.snr_db, 2),
            "sample_rate": self.sample_rate,
            "duration_s": round(self.duration_s, 2),
        }


# ----------------------------------------------------------------------------- HL7
def patient_info(truth: dict[str, Any]) -> PatientInfo:
    p = truth["patient"]
    family, _, given = str(p["name"]).partition("^")
    return PatientInfo(
        mrn=p["id"],
        issuer=p["issuer"],
        family_name=family,
        given_name=given,
        birth_date=p["birth_date"],
        sex=p["sex"],
    )


def order_info(truth: dict[str, Any]) -> OrderInfo:
    st, clin = truth["study"], truth["clinical"]
    return OrderInfo(
        accession_number=st["accession_number"],
        accession_issuer=ACCESSION_ISSUER,
        placer_order_number=f"PO{st['accession_number']}",
        procedure_code=st["procedure_code"],
        procedure_text=st["procedure_text"],
        priority=clin["priority"],
        reason_for_exam=clin["reason_for_exam"],
        clinical_history=clin["clinical_history"],
        ordering_provider=clin["ordering_provider"],
    )


def build_hl7_messages(truth: dict[str, Any]) -> dict[str, str]:
    """ADT^A01 (admission) and, when the order exists, ORM^O01 (new order), ER7 text."""
    when = datetime.fromisoformat(truth["study"]["study_datetime"])
    patient = patient_info(truth)
    accession = truth["study"]["accession_number"]
    out = {
        ADT_FILE: build_adt_a01(
            patient, control_id=f"ADT{accession}", when=when - timedelta(hours=3)
        )
    }
    if truth["clinical"]["order_present"]:
        out[ORM_FILE] = build_orm_o01(
            patient, order_info(truth), control_id=f"ORM{accession}", when=when - timedelta(hours=1)
        )
    return out


# --------------------------------------------------------------------------- audio
def synthesize_speech(text: str, *, voice: str, speed_wpm: int) -> np.ndarray:
    """espeak-ng speech as float32 samples at SAMPLE_RATE."""
    if shutil.which(ESPEAK) is None:
        raise SpeechSynthesisError("espeak-ng is not installed (Debian package espeak-ng)")
    with tempfile.TemporaryDirectory(prefix="radscribe-tts-") as tmp:
        wav_path = Path(tmp) / "speech.wav"
        result = subprocess.run(
            [ESPEAK, "-v", voice, "-s", str(speed_wpm), "-w", str(wav_path), "--", text],
            capture_output=True,
            text=True,
            timeout=ESPEAK_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0 or not wav_path.exists():
            raise SpeechSynthesisError(
                f"espeak-ng failed ({result.returncode}): {result.stderr.strip()[:200]}"
            )
        with wave.open(str(wav_path), "rb") as w:
            rate = w.getframerate()
            raw = (
                np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
                / 32768.0
            )
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        raw = resample_poly(raw, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return raw


def make_noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Unit-power noise of a kind: white, pink (1/f), mains hum, or babble-like."""
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, d=1.0 / SAMPLE_RATE)
        spectrum /= np.sqrt(np.maximum(f, 20.0))
        noise = np.fft.irfft(spectrum, n=n)
    elif kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        base = 50.0 if rng.random() < 0.5 else 60.0
        noise = np.zeros(n)
        for h in (1, 2, 3, 5):
            noise += np.sin(2 * np.pi * base * h * t + rng.uniform(0, 6.28)) / h
        noise = noise + 0.3 * rng.standard_normal(n)
    elif kind == "babble":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, d=1.0 / SAMPLE_RATE)
        spectrum *= np.exp(-(((f - 500.0) / 400.0) ** 2))
        carrier = np.fft.irfft(spectrum, n=n)
        envelope = 1.0 + 0.8 * np.sin(
            2 * np.pi * 3.0 * np.arange(n) / SAMPLE_RATE + rng.uniform(0, 6.28)
        )
        noise = carrier * envelope
    else:
        raise ValueError(f"unknown noise kind {kind!r}; known: {NOISE_KINDS}")
    noise = np.asarray(noise, dtype=np.float64)
    return (noise / np.sqrt(np.mean(noise**2) + 1e-12)).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled so that 10*log10(P_speech / P_noise) equals snr_db.

    P_speech is the mean power of the speech samples over the whole clip.
    """
    p_speech = float(np.mean(speech.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise.astype(np.float64) ** 2))
    scale = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10.0)))
    return (speech + scale * noise).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > 0.99:
        samples = samples * (0.99 / peak)
    pcm = np.clip(np.rint(samples * 32767.0), -32768, 32767).astype("<i2")
    tmp = path.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    tmp.replace(path)


def render_dictation_audio(
    dictation: Dictation, out_wav: Path, rng: np.random.Generator
) -> AudioInfo:
    voice = str(rng.choice(VOICES))
    speed = int(rng.integers(SPEED_WPM[0], SPEED_WPM[1] + 1))
    kind = str(rng.choice(NOISE_KINDS))
    snr = float(rng.uniform(*SNR_DB))
    speech = synthesize_speech(dictation.spoken, voice=voice, speed_wpm=speed)
    lead = np.zeros(int(rng.uniform(0.2, 0.8) * SAMPLE_RATE), dtype=np.float32)
    speech = np.concatenate([lead, speech, lead])
    mixed = mix_at_snr(speech, make_noise(rng, kind, len(speech)), snr)
    write_wav(out_wav, mixed)
    return AudioInfo(voice, speed, kind, snr, SAMPLE_RATE, len(mixed) / SAMPLE_RATE)


# ---------------------------------------------------------------------- the study
def add_emr_and_dictation(
    study_dir: Path, truth: dict[str, Any], *, audio: bool = True, template_set: str | None = None
) -> dict[str, Any]:
    """Write HL7 messages and dictation (text, WAV) beside a study; update its truth.json."""
    streams = seed_streams(int(truth["seed"]))
    hl7_dir = study_dir / HL7_DIR
    hl7_dir.mkdir(exist_ok=True)
    messages = build_hl7_messages(truth)
    for name, er7 in messages.items():
        tmp = hl7_dir / (name + ".tmp")
        tmp.write_bytes(er7.encode("utf-8"))
        tmp.replace(hl7_dir / name)
    truth["hl7"] = {
        "adt": f"{HL7_DIR}/{ADT_FILE}",
        "orm": f"{HL7_DIR}/{ORM_FILE}" if ORM_FILE in messages else None,
        "separator": "\\r",
    }
    dictation = make_dictation(truth, streams["text"], template_set=template_set)
    if dictation is None:
        truth["dictation"] = {"present": False}
    else:
        (study_dir / DICTATION_TXT).write_text(dictation.spoken + "\n", encoding="utf-8")
        entry: dict[str, Any] = {
            "present": True,
            **dictation.to_json(),
            "text_file": DICTATION_TXT,
            "audio": None,
        }
        if audio:
            info = render_dictation_audio(dictation, study_dir / DICTATION_WAV, streams["audio"])
            entry["audio"] = {"file": DICTATION_WAV, **info.to_json()}
        truth["dictation"] = entry
    write_json(study_dir / "truth.json", truth)
    return truth


def write_synthetic_study(
    out_dir: Path,
    *,
    seed: int,
    findings: Sequence[Finding] | None = None,
    n_slices: int | None = None,
    matrix: int = 512,
    audio: bool = True,
    masks: bool = True,
    volume_nifti: bool = False,
) -> dict[str, Any]:
    """One complete study folder: DICOM series, HL7 messages, dictation WAV, truth.json."""
    study = generate_study(
        seed, findings=findings, n_slices=n_slices, matrix=matrix, with_masks=masks
    )
    truth = write_study(study, out_dir, dicom=True, masks=masks, volume_nifti=volume_nifti)
    return add_emr_and_dictation(out_dir, truth, audio=audio)


def write_synthetic_dataset(
    out: Path, options: DatasetOptions, *, audio_fraction: float = 0.0, progress: Any = None
) -> dict[str, int]:
    """The CT-RATE-layout data set with HL7 for every study and audio for a share of them."""

    def hook(item: DatasetItem, truth: dict[str, Any]) -> None:
        wants_audio = bool(
            np.random.default_rng([options.seed, item.index, 13]).random() < audio_fraction
        )
        add_emr_and_dictation(item.study_dir, truth, audio=wants_audio)

    return build_dataset(out, options, on_study=hook, progress=progress)


__all__ = [
    "add_emr_and_dictation",
    "read_truth",
    "write_synthetic_dataset",
    "write_synthetic_study",
]
