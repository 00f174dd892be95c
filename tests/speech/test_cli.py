"""`radscribe transcribe`: once as a user runs it (a real process), then its cases in-process."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import transcribe
from app.core.settings import Settings

RADSCRIBE = [sys.executable, "-m", "app.cli.main"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RADSCRIBE_")}
    clean.update(
        RADSCRIBE_ENV="development",
        RADSCRIBE_DATA_DIR=str(tmp_path / "data"),
        RADSCRIBE_WHISPER_CPU_THREADS="1",  # each of the two workers: the two cores
    )
    return clean


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RADSCRIBE, "transcribe", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_json_has_corrected_and_raw_text(chest_wav: Path, env: dict[str, str]) -> None:
    result = _run(["--json", str(chest_wav)], env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["model"] == "tiny.en"
    assert "period" in payload["raw_text"].lower()
    assert "period" not in payload["text"].lower()
    assert list(payload["sections"]) == ["findings", "impression"]
    assert "6 mm" in payload["sections"]["findings"]
    assert 0.0 <= payload["quality"]["confidence"] <= 1.0
    assert payload["duration_seconds"] == pytest.approx(15.4, abs=0.5)


def _in_process(args: list[str], settings: Settings) -> int:
    """The command's own parser and handler, without starting a process for each case."""
    parser = argparse.ArgumentParser(prog="radscribe")
    transcribe.register(parser.add_subparsers())
    namespace = parser.parse_args(["transcribe", *args])
    return int(namespace.handler(namespace, settings))


def test_plain_output_and_model_option(
    chest_wav: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _in_process(["--model", "tiny.en", str(chest_wav)], settings) == transcribe.EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("Findings: ")
    assert "[findings]" in out and "[impression]" in out
    assert "confidence " in out and "SNR " in out
    assert "period" not in out.lower()


def test_bad_audio_is_a_message_not_a_traceback(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("this is not a recording\n" * 20)
    assert _in_process([str(text)], settings) == transcribe.EXIT_BAD_AUDIO
    assert "not a recognised audio format" in capsys.readouterr().err


def test_missing_model_is_a_message(
    chest_wav: Path, tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _in_process(["--model", str(tmp_path / "no-model"), str(chest_wav)], settings)
    assert code == transcribe.EXIT_NO_MODEL
    assert "Whisper model directory not found" in capsys.readouterr().err
