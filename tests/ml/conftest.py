"""Fixtures for the model tests: the phantom writer module (tests are not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

PHANTOMS_PATH = Path(__file__).with_name("phantoms.py")


def load_phantoms() -> ModuleType:
    name = "radscribe_test_phantoms"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PHANTOMS_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def phantoms() -> ModuleType:
    return load_phantoms()


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    """The box has 2 cores shared with other test runs: keep torch to its share."""
    import torch

    torch.set_num_threads(2)
