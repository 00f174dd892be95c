"""The built wheel works on its own: migrations and templates ship inside it."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_installs_into_a_clean_venv_and_migrates_from_anywhere(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:] + built.stdout[-2000:]
    (wheel,) = dist.glob("radscribe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("app/_resources/migrations/versions/") for n in names)
    assert "app/_resources/migrations/env.py" in names
    assert any(n.startswith("app/_resources/templates/") for n in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert install.returncode == 0, install.stderr[-2000:]

    elsewhere = tmp_path / "unrelated-folder"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RADSCRIBE_", "PYTHON"))}
    env.update(RADSCRIBE_ENV="development", RADSCRIBE_DATA_DIR=str(elsewhere / "data"))
    result = subprocess.run(
        [str(env_dir / "bin" / "radscribe"), "db", "upgrade"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (elsewhere / "data" / "radscribe.db").stat().st_size > 0
    current = subprocess.run(
        [str(env_dir / "bin" / "radscribe"), "db", "current"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert current.returncode == 0
    assert current.stdout.strip() not in ("", "empty")
