"""Jobs whose model stages start together run as one batch, each getting its own result."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.core.settings import load_settings
from app.services.batching import ModelBatcher
from app.services.celery_app import worker_argv
from app.services.model_loading import get_drafter
from models.errors import ModelInputError
from models.inference import Drafter, DraftResult, StudyInput
from models.networks.gating import DictationQuality
from models.preprocess import preprocess
from tests.pipeline.conftest import small_study_factory

__all__ = ["small_study_factory"]  # the fixture, imported for these tests

CLEAR_SPEECH = DictationQuality(confidence=0.95, no_speech_prob=0.01, snr_db=30.0)
"""What the speech side stores with a clean dictation (the gate weighs a transcript by it)."""
TEXTS = [
    None,
    "There is a large right pleural effusion. Cardiomegaly.",
    "Emphysema in both upper lobes. A solid nodule in the right upper lobe.",
]


@pytest.fixture(scope="module")
def drafter() -> Drafter:
    """fp32: batch-invariant, as a GPU worker's bf16 is (INT8 is not, and is not batched)."""
    return get_drafter(load_settings(env="development", model_precision="fp32"))


def _vector(result: DraftResult) -> np.ndarray:
    return np.array([result.probabilities[k] for k in sorted(result.probabilities)])


def _in_threads(batcher: ModelBatcher, drafter: Drafter, studies: list[StudyInput]) -> list[Any]:
    out: list[Any] = [None] * len(studies)

    def one(i: int) -> None:
        try:
            out[i] = batcher.run(drafter, [studies[i]])[0]
        except Exception as exc:  # the test inspects what each caller saw
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(studies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return out


@pytest.mark.timeout(300)
def test_concurrent_model_stages_share_one_batch_and_keep_their_own_results(
    drafter: Drafter,
    small_study_factory: Callable[[int], tuple[Path, dict[str, Any]]],
) -> None:
    folder, truth = small_study_factory(11)
    prepared = preprocess(folder / truth["files"]["dicom"], drafter.spec)
    studies = [
        StudyInput(image=prepared, transcript=text, dictation_quality=CLEAR_SPEECH)
        for text in TEXTS
    ]
    batcher = ModelBatcher(max_studies=4, window_s=5.0)
    batched = _in_threads(batcher, drafter, studies)
    assert list(batcher.batch_sizes) == [3]
    alone = [drafter.draft_batch([study])[0] for study in studies]
    for got, expected in zip(batched, alone, strict=True):
        assert isinstance(got, DraftResult)
        np.testing.assert_allclose(_vector(got), _vector(expected), atol=1e-5)
    # The three inputs differ, so a mix-up between callers could not pass unnoticed.
    assert np.abs(_vector(alone[0]) - _vector(alone[1])).max() > 0.1


@pytest.mark.timeout(300)
def test_a_findings_only_reading_has_the_same_probabilities_and_skips_the_rest(
    drafter: Drafter,
    small_study_factory: Callable[[int], tuple[Path, dict[str, Any]]],
) -> None:
    folder, truth = small_study_factory(11)
    prepared = preprocess(folder / truth["files"]["dicom"], drafter.spec)
    full, brief = drafter.draft_batch(
        [StudyInput(image=prepared), StudyInput(image=prepared, findings_only=True)]
    )
    assert full.probabilities == brief.probabilities and full.decisions == brief.decisions
    assert full.evidence and not brief.evidence and brief.nodules == []


@pytest.mark.timeout(120)
def test_a_full_batch_does_not_wait_and_a_failed_batch_fails_every_caller(
    drafter: Drafter, tmp_path: Path
) -> None:
    batcher = ModelBatcher(max_studies=2, window_s=60.0)
    broken = [StudyInput(image=tmp_path / "missing"), StudyInput(image=tmp_path / "missing")]
    seen = _in_threads(batcher, drafter, broken)  # would take 60 s if a full batch waited
    assert not batcher.batch_sizes
    assert all(isinstance(error, (ModelInputError, FileNotFoundError)) for error in seen), seen


@pytest.mark.timeout(300)
def test_int8_requests_are_not_merged_since_batch_mates_would_move_their_results(
    small_study_factory: Callable[[int], tuple[Path, dict[str, Any]]],
) -> None:
    int8 = get_drafter(load_settings(env="development", model_precision="int8"))
    assert not int8.batch_invariant
    folder, truth = small_study_factory(11)
    prepared = preprocess(folder / truth["files"]["dicom"], int8.spec)
    studies = [
        StudyInput(image=prepared, transcript=text, dictation_quality=CLEAR_SPEECH)
        for text in TEXTS
    ]
    batcher = ModelBatcher(max_studies=4, window_s=5.0)
    results = _in_threads(batcher, int8, studies)
    assert not batcher.batch_sizes
    alone = [int8.draft_batch([study])[0] for study in studies]
    for got, expected in zip(results, alone, strict=True):
        np.testing.assert_allclose(_vector(got), _vector(expected), atol=1e-6)
    # One INT8 call with all three gives each the result it gets alone too (run as a batch,
    # their probabilities moved by up to 0.14).
    for got, expected in zip(int8.draft_batch(studies), alone, strict=True):
        np.testing.assert_allclose(_vector(got), _vector(expected), atol=1e-6)


def test_a_batching_worker_runs_one_process_of_threads() -> None:
    settings = load_settings(env="development", draft_batch_size=4)
    argv = worker_argv(settings, concurrency=1, queues=None)
    assert argv[argv.index("--pool") + 1] == "threads"
    assert argv[argv.index("--concurrency") + 1] == "4"
    plain = worker_argv(load_settings(env="development"), concurrency=1, queues=None)
    assert plain[plain.index("--pool") + 1] == "solo"
