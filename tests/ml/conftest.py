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


TINY_SPEC_KW = {
    "grid_shape": (64, 64, 48),
    "grid_spacing_mm": (6.0, 6.0, 7.0),
    "patch_shape": (16, 16, 16),
    "patch_spacing_mm": 1.5,
}


@pytest.fixture(scope="session")
def tiny_spec():  # type: ignore[no-untyped-def]
    from models.preprocess import PreprocessSpec

    return PreprocessSpec(**TINY_SPEC_KW)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_spec) -> Path:  # type: ignore[no-untyped-def]
    """A randomly initialised tiny model saved as a real checkpoint (seeded)."""
    import torch

    from models.checkpoint import save_checkpoint
    from models.config import tiny_config
    from models.networks.model import RadscribeModel

    torch.manual_seed(0)
    model = RadscribeModel(tiny_config()).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    return save_checkpoint(
        path, model, model_version="tiny-test-0", spec=tiny_spec, nodule_threshold=0.0
    )


@pytest.fixture(scope="session")
def chest_studies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Six small phantom chest series with different nodules and noise."""
    phantoms = load_phantoms()
    root = tmp_path_factory.mktemp("studies")
    studies = []
    for i in range(6):
        nodules = [
            phantoms.PhantomNodule(
                centre_lps=(-70.0 + 140.0 * (i % 2), -10.0 + 5 * i, -40.0 + 15 * i),
                diameter_mm=6.0 + 4 * i,
                hu=30.0 if i % 3 else -600.0,
            )
        ][: 1 if i else 0]
        folder = root / f"study{i}"
        phantoms.write_chest_series(folder, nodules=nodules, noise_hu=5.0 * i, seed=i)
        studies.append(folder)
    return studies
