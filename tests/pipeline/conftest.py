"""Fixtures for the drafting pipeline: small synthetic studies and a helper to wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

SMALL_SLICES = 48
SMALL_MATRIX = 96


def wait_for(probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="session")
def small_study_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[int], tuple[Path, dict[str, Any]]]:
    """Write a small synthetic study (DICOM, HL7, dictation WAV, truth) once per seed."""
    from app.services.synthetic_study import write_synthetic_study

    made: dict[int, tuple[Path, dict[str, Any]]] = {}

    def make(seed: int) -> tuple[Path, dict[str, Any]]:
        if seed not in made:
            folder = tmp_path_factory.mktemp("studies") / f"study-{seed}"
            truth = write_synthetic_study(
                folder, seed=seed, n_slices=SMALL_SLICES, matrix=SMALL_MATRIX, masks=False
            )
            made[seed] = (folder, truth)
        return made[seed]

    return make
