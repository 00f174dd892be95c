"""Prometheus metrics of the drafting pipeline (one process's share; sum across pods)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Histogram

STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)

STAGE_SECONDS = Histogram(
    "radscribe_pipeline_stage_seconds",
    "Seconds spent in each drafting stage (context, transcription, load_model, preprocess, "
    "model, report, store).",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
MODEL_SECONDS = Histogram(
    "radscribe_model_inference_seconds",
    "Seconds of one model forward pass for one study, by precision.",
    ["precision"],
    buckets=STAGE_BUCKETS,
)
TRANSCRIPTION_RTF = Histogram(
    "radscribe_transcription_real_time_factor",
    "Transcription time divided by audio duration (lower is faster).",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
JOBS_FINISHED = Counter(
    "radscribe_drafting_jobs_finished_total",
    "Drafting jobs by outcome (drafted, kept_human_edits, superseded, failed, retrying, deferred).",
    ["outcome"],
)


def observe_stages(timings: Mapping[str, float]) -> None:
    for stage, seconds in timings.items():
        STAGE_SECONDS.labels(stage=stage).observe(seconds)
