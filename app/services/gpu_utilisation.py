"""How busy the drafting GPU is: one reading at a time, from NVML, nvidia-smi or a recorded trace.

A source answers ``read()`` with a :class:`UtilisationSample`: when (seconds on a monotonic
clock) and the GPU's utilisation in percent (the share of the last sample period in which a
kernel ran), or ``None`` when that reading failed.  :func:`open_gpu_source` finds the real
source of a CUDA device: NVML through ``pynvml`` (the ``nvidia-ml-py`` package, an optional
import) or, without it, ``nvidia-smi --query-gpu=utilization.gpu``.  Where neither answers
there is no GPU to watch, and the answer says why (:class:`Unavailable`).

:class:`TraceSource` replays a trace recorded on a real GPU with::

    nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 500

so thresholds can be checked against a recorded day's load, and tests can feed a real
GPU's readings to the real controller on a machine without one.

Standard library only (and pynvml where installed), so it imports anywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

NVIDIA_SMI_TIMEOUT_SECONDS = 5.0
TRACE_TIME_FORMAT = "%Y/%m/%d %H:%M:%S.%f"


@dataclass(frozen=True)
class UtilisationSample:
    at: float
    """Seconds on a monotonic clock (a trace's own clock for a replay)."""
    percent: float | None
    """GPU utilisation, 0-100; None when the reading failed."""


class UtilisationSource(Protocol):
    """Where readings come from; ``describe()`` names it in logs."""

    def read(self) -> UtilisationSample: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Unavailable:
    """No GPU reading can be had here, and why."""

    reason: str


def visible_device(device: str) -> str:
    """The NVML/nvidia-smi name (index or UUID) of a torch CUDA device such as ``cuda:1``.

    torch numbers the devices ``CUDA_VISIBLE_DEVICES`` lets it see; NVML numbers every GPU of
    the machine.  The k-th visible device is therefore the k-th entry of that variable.
    """
    _, _, index_text = device.partition(":")
    index = int(index_text or 0)
    visible = [
        entry.strip()
        for entry in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        if entry.strip()
    ]
    if visible:
        if index >= len(visible):
            raise ValueError(f"{device}: only {len(visible)} GPU(s) in CUDA_VISIBLE_DEVICES")
        return visible[index]
    return str(index)


class NvmlSource:
    """Readings through NVML (``pynvml`` from the ``nvidia-ml-py`` package)."""

    def __init__(self, nvml: Any, handle: Any, name: str, clock: Callable[[], float]) -> None:
        self._nvml = nvml
        self._handle = handle
        self._name = name
        self._clock = clock

    @classmethod
    def open(
        cls, device: str, *, clock: Callable[[], float] = time.monotonic
    ) -> NvmlSource | Unavailable:
        try:
            import pynvml
        except ImportError:
            return Unavailable("pynvml (nvidia-ml-py) is not installed")
        try:
            pynvml.nvmlInit()
            name = visible_device(device)
            if name.isdigit():
                handle = pynvml.nvmlDeviceGetHandleByIndex(int(name))
            else:
                handle = pynvml.nvmlDeviceGetHandleByUUID(name)
            pynvml.nvmlDeviceGetUtilizationRates(handle)  # the reading itself must work
        except (pynvml.NVMLError, ValueError) as exc:
            return Unavailable(f"NVML: {exc}")
        return cls(pynvml, handle, name, clock)

    def read(self) -> UtilisationSample:
        at = self._clock()
        try:
            rates = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
        except self._nvml.NVMLError:
            return UtilisationSample(at, None)
        return UtilisationSample(at, float(rates.gpu))

    def describe(self) -> str:
        return f"NVML, GPU {self._name}"


class NvidiaSmiSource:
    """Readings from ``nvidia-smi --query-gpu=utilization.gpu`` (one process per reading)."""

    def __init__(self, executable: str, name: str, clock: Callable[[], float]) -> None:
        self._command = [
            executable,
            f"--id={name}",
            "--query-gpu=utilization.gpu",
            "--format=csv,noheader,nounits",
        ]
        self._name = name
        self._clock = clock

    @classmethod
    def open(
        cls, device: str, *, clock: Callable[[], float] = time.monotonic
    ) -> NvidiaSmiSource | Unavailable:
        executable = shutil.which("nvidia-smi")
        if executable is None:
            return Unavailable("nvidia-smi is not on the PATH")
        try:
            source = cls(executable, visible_device(device), clock)
        except ValueError as exc:
            return Unavailable(str(exc))
        first = source.read()
        if first.percent is None:
            return Unavailable(f"nvidia-smi gave no utilisation for GPU {source._name}")
        return source

    def read(self) -> UtilisationSample:
        at = self._clock()
        try:
            done = subprocess.run(
                self._command,
                capture_output=True,
                text=True,
                timeout=NVIDIA_SMI_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return UtilisationSample(at, None)
        return UtilisationSample(at, parse_percent(done.stdout) if done.returncode == 0 else None)

    def describe(self) -> str:
        return f"nvidia-smi, GPU {self._name}"


def parse_percent(text: str) -> float | None:
    """One utilisation figure as nvidia-smi prints it (``97``, ``97 %``); None if it is not one."""
    value = text.strip().splitlines()[0].strip().removesuffix("%").strip() if text.strip() else ""
    try:
        percent = float(value)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]", an error message
    return percent if 0.0 <= percent <= 100.0 else None


def open_gpu_source(device: str) -> UtilisationSource | Unavailable:
    """The real source for a torch device: NVML first, then nvidia-smi; else why neither."""
    if not device.startswith("cuda"):
        return Unavailable(f"the model runs on {device}, not on a GPU")
    reasons = []
    for opener in (NvmlSource.open, NvidiaSmiSource.open):
        source = opener(device)
        if not isinstance(source, Unavailable):
            return source
        reasons.append(source.reason)
    return Unavailable("no GPU reading: " + "; ".join(reasons))


class TraceSource:
    """Replays recorded readings, one per ``read()``, then keeps answering the last one."""

    def __init__(self, samples: Sequence[UtilisationSample], name: str = "trace") -> None:
        if not samples:
            raise ValueError("a utilisation trace needs at least one reading")
        self.samples = list(samples)
        self._name = name
        self._next = 0

    @classmethod
    def from_nvidia_smi_csv(cls, path: Path) -> TraceSource:
        """A trace in nvidia-smi's ``timestamp,utilization.gpu`` CSV (noheader, nounits)."""
        return cls(parse_trace(path.read_text().splitlines()), name=str(path))

    @property
    def remaining(self) -> int:
        return len(self.samples) - self._next

    def read(self) -> UtilisationSample:
        sample = self.samples[min(self._next, len(self.samples) - 1)]
        self._next += 1
        return sample

    def describe(self) -> str:
        return f"recorded trace {self._name}"


def parse_trace(lines: Iterable[str]) -> list[UtilisationSample]:
    """Readings from ``timestamp, percent`` lines; times become seconds from the first line."""
    samples: list[UtilisationSample] = []
    start: datetime | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        stamp, _, value = line.partition(",")
        try:
            moment = datetime.strptime(stamp.strip(), TRACE_TIME_FORMAT)
        except ValueError:
            message = f"line {number}: {stamp.strip()!r} is not an nvidia-smi timestamp"
            raise ValueError(message) from None
        start = start or moment
        samples.append(UtilisationSample((moment - start).total_seconds(), parse_percent(value)))
    return samples
