"""Fixtures for the drafting pipeline: small synthetic studies and a helper to wait."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from app.core.settings import Settings

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


def redis_or_skip(url: str) -> redis.Redis:
    """A client for the machine's Redis; fail in CI (which starts it), skip elsewhere."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            pytest.fail("Redis is not running on 127.0.0.1:6379")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return client


def start_worker(
    settings: Settings,
    log: Path,
    metrics_port: int,
    *,
    order_wait_seconds: float = 0.0,
    args: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """`radscribe worker [args]` in its own process, on the settings' database and broker
    (with no inherited Prometheus multiprocess folder)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RADSCRIBE_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        RADSCRIBE_ENV="development",
        RADSCRIBE_DATA_DIR=str(settings.data_dir),
        RADSCRIBE_DATABASE_URL=str(settings.database_url),
        RADSCRIBE_CELERY_BROKER_URL=str(settings.celery_broker_url),
        RADSCRIBE_ORDER_WAIT_SECONDS=str(order_wait_seconds),
        RADSCRIBE_METRICS_PORT=str(metrics_port),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "worker", *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
