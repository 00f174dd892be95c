"""Load-adaptive precision in the drafting pipeline: real drafts switch form and record it.

There is no GPU here, so the utilisation readings are a replay input: the trace nvidia-smi
recorded on an H200 under a known load (``tests/services/data``; made by
``bench/bench_gpu_utilisation.py``), fed one reading at a time to the real controller, as the
worker's sampler thread feeds live readings.  Everything else is real: the shipped weights in
their full (fp32) and INT8 forms, studies received over DICOM, ``run_draft_job`` and the
stored drafts.  The evaluation records are the tests' input, in the format
``models.training.distill.compare`` writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from app.core.precision_control import FormId, ModelForm, Refused, Switched, check_light_form
from app.core.settings import Settings, load_settings
from app.core.tables import Job, ReportVersion, Study
from app.services import jobs
from app.services.adaptive_drafting import AdaptiveDrafting, drafter_for
from app.services.assembly import build_runtime, drafting_services
from app.services.drafting import run_draft_job
from app.services.gpu_utilisation import TraceSource, Unavailable, open_gpu_source
from app.services.runtime import Runtime
from dicom_node.send import Destination, collect_files, send_files
from models.checkpoint import read_meta, shipped_checkpoint_path
from tests.conftest import free_port
from tests.pipeline.conftest import small_study_factory, wait_for

__all__ = ["small_study_factory"]  # the fixture, imported for these tests

H200_TRACE = Path(__file__).parent / "data" / "h200-utilisation-trace.csv"


def evaluation_record(path: Path, *, full_auroc: float, int8_auroc: float) -> Path:
    """Both forms of the shipped weights, as `radscribe distill` reports forms."""
    shipped = shipped_checkpoint_path()
    if shipped is None:
        pytest.skip("the shipped weights are not installed")
    meta = read_meta(shipped)
    forms = [
        {
            "name": name,
            "model_version": meta.model_version,
            "weights_sha256": meta.weights_sha256,
            "precision": precision,
            "macro_auroc": auroc,
        }
        for name, precision, auroc in (
            ("teacher fp32", "fp32", full_auroc),
            ("teacher int8", "int8", int8_auroc),
        )
    ]
    path.write_text(json.dumps({"split": "test", "forms": forms}))
    return path


def adaptive_settings(tmp_path: Path, record: Path) -> Settings:
    return load_settings(
        env="development",
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'radscribe.db'}",
        dicom_host="127.0.0.1",
        dicom_port=free_port(),
        dicom_quiet_seconds=0.5,
        order_wait_seconds=0.0,
        model_precision="fp32",
        load_adaptive_precision=True,
        load_adaptive_light_precision="int8",
        load_adaptive_evaluation=record,
        load_adaptive_up_percent=85.0,
        load_adaptive_down_percent=60.0,
        load_adaptive_hold_seconds=2.0,
    )


@pytest.fixture
def receiving() -> Iterator[Callable[[Settings], Runtime]]:
    started: list[Runtime] = []

    def start(settings: Settings) -> Runtime:
        runtime = build_runtime(settings, only=["dicom"])
        runtime.start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()


def push_and_wait_for_job(
    settings: Settings, runtime: Runtime, study: tuple[Path, dict[str, Any]]
) -> int:
    folder, truth = study
    results = send_files(
        collect_files([folder / truth["files"]["dicom"]]),
        Destination(host="127.0.0.1", port=settings.dicom_port, calling_aet="TEST_PACS"),
    )
    assert results and all(r.ok for r in results)
    uid = str(truth["study"]["study_uid"])

    def job_id() -> int | None:
        with runtime.session_factory() as session:
            return session.scalar(
                select(Job.id)
                .join(Study, Study.id == Job.study_id)
                .where(Study.study_instance_uid == uid)
            )

    return wait_for(job_id, timeout=60, what=f"the drafting job of {uid}")


def draft(runtime: Runtime, services: Any, job_id: int) -> ReportVersion:
    claimed = jobs.claim(runtime.session_factory, job_id, "test-worker")
    assert claimed is not None
    version_id = run_draft_job(services, claimed)
    assert version_id is not None, "the draft was stored"
    with runtime.session_factory() as session:
        return session.get_one(ReportVersion, version_id)


def counted(to: str, outcome: str) -> float:
    labels = {"to": to, "outcome": outcome}
    return REGISTRY.get_sample_value("radscribe_model_form_switches_total", labels) or 0.0


def active(form: str) -> float | None:
    return REGISTRY.get_sample_value("radscribe_model_form_active", {"form": form})


def replay_until(adaptive: AdaptiveDrafting, trace: TraceSource, form: ModelForm) -> list[Any]:
    """Feed recorded readings, one per sample, until the controller is in ``form``."""
    decisions = []
    while adaptive.form is not form and trace.remaining:
        if (decision := adaptive.sample()) is not None:
            decisions.append(decision)
    return decisions


@pytest.mark.timeout(300)
def test_a_busy_gpu_switches_drafting_to_int8_and_back(
    tmp_path: Path,
    receiving: Callable[[Settings], Runtime],
    small_study_factory: Callable[[int], tuple[Path, dict[str, Any]]],
) -> None:
    record = evaluation_record(tmp_path / "distillation.json", full_auroc=0.880, int8_auroc=0.876)
    settings = adaptive_settings(tmp_path, record)
    runtime = receiving(settings)
    first = push_and_wait_for_job(settings, runtime, small_study_factory(11))
    second = push_and_wait_for_job(settings, runtime, small_study_factory(12))

    trace = TraceSource.from_nvidia_smi_csv(H200_TRACE)
    adaptive = AdaptiveDrafting(settings, source=trace, run_sampler=False)
    services = dataclasses.replace(
        drafting_services(settings, runtime.session_factory), drafter=adaptive.drafter
    )
    before = counted("light", "switched"), counted("full", "switched")
    assert adaptive.drafter().precision == "fp32", "the full form drafts while the GPU is calm"
    assert active("full") == 1 and active("light") == 0

    (to_light,) = replay_until(adaptive, trace, ModelForm.LIGHT)
    assert isinstance(to_light, Switched) and to_light.percent > 85
    assert to_light.held_seconds >= 2.0
    busy = draft(runtime, services, first)
    assert (busy.model_precision, busy.ai_generated) == ("int8", True)
    assert busy.structured["model_precision"] == "int8"
    assert active("light") == 1 and active("full") == 0

    (to_full,) = replay_until(adaptive, trace, ModelForm.FULL)
    assert isinstance(to_full, Switched) and to_full.percent < 60
    calm = draft(runtime, services, second)
    assert calm.model_precision == "fp32" and calm.structured["model_precision"] == "fp32"
    assert busy.model_version == calm.model_version
    assert (counted("light", "switched"), counted("full", "switched")) == (
        before[0] + 1,
        before[1] + 1,
    )
    assert active("full") == 1


@pytest.mark.timeout(300)
def test_a_lighter_form_outside_the_tolerance_is_refused_and_drafting_stays_full(
    tmp_path: Path,
    receiving: Callable[[Settings], Runtime],
    small_study_factory: Callable[[int], tuple[Path, dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # INT8 lost 3 points of macro AUROC on the same evaluation; the tolerance is 1 point.
    record = evaluation_record(tmp_path / "distillation.json", full_auroc=0.880, int8_auroc=0.850)
    settings = adaptive_settings(tmp_path, record)
    runtime = receiving(settings)
    job = push_and_wait_for_job(settings, runtime, small_study_factory(11))

    trace = TraceSource.from_nvidia_smi_csv(H200_TRACE)
    adaptive = AdaptiveDrafting(settings, source=trace, run_sampler=False)
    services = dataclasses.replace(
        drafting_services(settings, runtime.session_factory), drafter=adaptive.drafter
    )
    refused_before = counted("light", "refused")
    assert adaptive.drafter().precision == "fp32"
    assert "will be refused" in caplog.text and "0.0300 lost" in caplog.text

    decisions = replay_until(adaptive, trace, ModelForm.LIGHT)  # runs through the whole trace
    assert trace.remaining <= 0
    (refusal,) = decisions
    assert isinstance(refusal, Refused) and "tolerance 0.0100" in refusal.reason
    assert counted("light", "refused") == refused_before + 1
    assert adaptive.form is ModelForm.FULL
    stored = draft(runtime, services, job)
    assert stored.model_precision == "fp32"


def test_without_a_gpu_the_feature_is_unavailable_and_drafting_stays_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = evaluation_record(tmp_path / "distillation.json", full_auroc=0.88, int8_auroc=0.88)
    settings = adaptive_settings(tmp_path, record)  # the model runs on the CPU
    drafter = drafter_for(settings)
    assert drafter().precision == "fp32"
    assert "load-adaptive precision is unavailable" in caplog.text
    assert REGISTRY.get_sample_value("radscribe_load_adaptive_available") == 0


def test_a_machine_without_nvidia_tools_has_no_gpu_source() -> None:
    if shutil.which("nvidia-smi") or os.path.exists("/dev/nvidiactl"):
        pytest.skip("this machine has an NVIDIA GPU (bench/bench_gpu_utilisation.py reads it)")
    opened = open_gpu_source("cuda:0")
    assert isinstance(opened, Unavailable)
    assert "nvidia-smi is not on the PATH" in opened.reason
    assert isinstance(open_gpu_source("cpu"), Unavailable)


def test_with_the_feature_off_a_gpu_is_only_watched(tmp_path: Path) -> None:
    record = evaluation_record(tmp_path / "distillation.json", full_auroc=0.88, int8_auroc=0.88)
    settings = load_settings(
        **{**adaptive_settings(tmp_path, record).model_dump(), "load_adaptive_precision": False}
    )
    trace = TraceSource.from_nvidia_smi_csv(H200_TRACE)
    watcher = AdaptiveDrafting(settings, source=trace, switching=False, run_sampler=False)
    assert watcher.drafter().precision == "fp32"
    seen = []
    while trace.remaining:
        assert watcher.sample() is None, "nothing is decided"
        seen.append(REGISTRY.get_sample_value("radscribe_gpu_utilisation_percent"))
    assert max(seen) == 97 and seen[-1] == 0
    assert watcher.form is ModelForm.FULL and watcher.drafter().precision == "fp32"


def test_shipped_distillation_record_lets_the_int8_student_stand_in_for_the_bf16_teacher() -> None:
    """The record shipped beside the student (models/weights/student) names both shipped forms."""
    teacher = shipped_checkpoint_path()
    if teacher is None:
        pytest.skip("the shipped weights are not installed")
    folder = teacher.parent / "student"
    record = json.loads((folder / "distillation.json").read_text())
    full, student = read_meta(teacher), read_meta(folder / "radscribe-synthetic-v2-student.json")
    bf16_teacher = FormId(full.model_version, full.weights_sha256, "bf16")
    int8_student = FormId(student.model_version, student.weights_sha256, "int8")
    check = check_light_form(record, bf16_teacher, int8_student, tolerance=0.01)
    assert check.passed, check.reason
    assert check.full_auroc is not None and check.light_auroc is not None
    assert 0 <= check.full_auroc - check.light_auroc <= 0.01
    cpu_teacher = FormId(full.model_version, full.weights_sha256, "fp32")
    assert not check_light_form(record, cpu_teacher, int8_student, tolerance=0.01).passed
