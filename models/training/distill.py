"""Distillation: a smaller student trained on the teacher's soft predictions plus the labels.

::

    radscribe distill --teacher CKPT --student-config student.yaml

The student trains with the usual trainer; each step the teacher (frozen, eval
mode) sees the same batch with the same texts hidden (modality dropout is applied
to the batch, not inside either network) and the finding loss becomes
``(1 - alpha) * BCE(labels) + alpha * BCE(teacher probabilities)``.  Afterwards the
report compares teacher and student: weights size (fp32 and INT8), CPU latency of
one study (fp32 and INT8 dynamic quantization, text encoding included) and macro
AUROC on the test split, INT8 measured on CPU with the quantized text encoder.
The goal: INT8 student at least 4x smaller and 2x faster on CPU than the fp32
teacher for at most 1 point of macro AUROC lost.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import load_checkpoint
from models.networks.model import ModelBatch, RadscribeModel, TextInput
from models.quantize import quantize_int8
from models.training import metrics
from models.training.config import TrainConfig
from models.training.data import StudyTable, assign_texts, without
from models.training.sources import open_split
from models.training.trainer import (
    Distributed,
    MultiModalTrainer,
    TrainResult,
    autocast_dtype,
    predict,
    resolve_device,
)

logger = logging.getLogger(__name__)

DEFAULT_ALPHA = 0.7
LATENCY_REPEATS = 5
REPORT_FILE = "distillation.json"


def distill(
    teacher_path: Path,
    student: TrainConfig,
    *,
    alpha: float = DEFAULT_ALPHA,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train the student described by ``student`` against the teacher checkpoint."""
    device = resolve_device(student.device, Distributed())
    teacher = load_checkpoint(teacher_path, device=device)
    if teacher.meta.preprocess_spec != student.preprocess_spec():
        raise ValueError(
            "the student must use the teacher's preprocessing spec (same cached inputs)"
        )
    if teacher.meta.model_config.text_encoder != student.text_encoder:
        raise ValueError("the student must use the teacher's text encoder (shared embeddings)")
    trainer = MultiModalTrainer(student)
    trainer.teacher = teacher.model.eval()
    trainer.distill_alpha = alpha
    trainer.batch_modality_dropout = student.modality_dropout
    trainer.model_config_override = dataclasses.replace(
        student.model_config_(), modality_dropout=0.0
    )
    trainer.progress = progress
    return trainer.train(resume=resume)


def state_bytes(model: torch.nn.Module) -> int:
    """Serialized size of the weights that travel with a checkpoint (shared MiniLM excluded)."""
    state = {
        k: v for k, v in model.state_dict().items() if not k.startswith("text_encoder.backbone")
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from models.networks.text_encoder import TextTokenizer

    return TextTokenizer()


def cpu_latency(
    model: RadscribeModel, grid: tuple[int, int, int], *, repeats: int = LATENCY_REPEATS
) -> float:
    """Median seconds for one study on CPU: text encoding and the network (batch of one)."""
    tokenizer = _tokenizer()
    emr_ids, emr_mask = tokenizer(
        ["Cough and fever, former smoker."], max_tokens=model.config.emr_max_tokens
    )
    text = (
        "A 9 mm solid nodule in the right upper lobe. Small right pleural effusion. "
        "Coronary artery calcification."
    )
    dictation_ids, dictation_mask = tokenizer([text], max_tokens=model.config.dictation_max_tokens)
    batch = ModelBatch(
        image=torch.rand(1, 1, *grid) * 2 - 1,
        image_quality=torch.full((1, 6), 0.5),
        emr=TextInput(present=torch.tensor([True]), attention_mask=emr_mask, token_ids=emr_ids),
        dictation=TextInput(
            present=torch.tensor([True]), attention_mask=dictation_mask, token_ids=dictation_ids
        ),
        dictation_quality=torch.tensor([[0.9, 0.05, 0.75]]),
    )
    times = []
    with torch.inference_mode():
        model(batch)
        for _ in range(repeats):
            start = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _macro(
    model: RadscribeModel,
    table: StudyTable,
    device: torch.device,
    texts: Any,
    amp: torch.dtype | None,
) -> float:
    predictions, _ = predict(model, table, device, batch_size=8, amp_dtype=amp, texts=texts)
    return metrics.macro_auroc(predictions.probabilities, predictions.labels)


def compare(
    teacher_path: Path,
    student_path: Path,
    student: TrainConfig,
    out_dir: Path,
    *,
    cache_dir: Path,
    int8_studies: int = 200,
    split: str = "test",
) -> dict[str, Any]:
    """Size, CPU latency and macro AUROC of teacher and student (fp32 and INT8)."""
    device = resolve_device(student.device, Distributed())
    amp = autocast_dtype(student.amp, device)
    teacher_checkpoint = load_checkpoint(teacher_path, device=device)
    student_checkpoint = load_checkpoint(student_path, device=device)
    teacher, pupil = teacher_checkpoint.model, student_checkpoint.model
    spec = student.preprocess_spec()
    cached = open_split(student.data, split, spec, cache_dir, progress=False)
    texts = assign_texts(cached.studies, seed=student.seed, config=student.dictation, training=True)
    from models.training.text_cache import TextEmbeddingStore, text_encoder_id

    store = TextEmbeddingStore(cache_dir, text_encoder_id(teacher))
    store.ensure(
        {t.emr for t in texts if t.emr},
        max_tokens=teacher.config.emr_max_tokens,
        model=teacher,
        device=device,
    )
    store.ensure(
        {t.dictation for t in texts if t.dictation},
        max_tokens=teacher.config.dictation_max_tokens,
        model=teacher,
        device=device,
    )
    table = StudyTable(cached, texts, model_config=teacher.config, store=store)
    image_only = without(texts, emr=True, dictation=True)
    auroc = {
        "teacher fp32": {
            "all": _macro(teacher, table, device, None, amp),
            "image only": _macro(teacher, table, device, image_only, amp),
        },
        "student fp32": {
            "all": _macro(pupil, table, device, None, amp),
            "image only": _macro(pupil, table, device, image_only, amp),
        },
    }
    # INT8 runs on CPU, with token ids through the quantized text encoder, on a subset;
    # the fp32 teacher is scored on the same subset (on ``device``) for a paired delta.
    cpu = torch.device("cpu")
    subset_n = min(int8_studies, len(cached))
    subset = dataclasses.replace(cached, studies=cached.studies[:subset_n])
    token_table = StudyTable(subset, texts[:subset_n], model_config=pupil.config, store=None)
    teacher_tokens = StudyTable(subset, texts[:subset_n], model_config=teacher.config, store=None)
    fp32_subset = StudyTable(subset, texts[:subset_n], model_config=teacher.config, store=store)
    on_cpu = device.type == "cpu"
    teacher_cpu = teacher if on_cpu else load_checkpoint(teacher_path, device="cpu").model
    pupil_cpu = pupil if on_cpu else load_checkpoint(student_path, device="cpu").model
    quantized = {
        "teacher int8": quantize_int8(teacher_cpu),
        "student int8": quantize_int8(pupil_cpu),
    }
    paired = {
        "teacher fp32": _macro(teacher, fp32_subset, device, None, amp),
        "student fp32": _macro(pupil, fp32_subset, device, None, amp),
        "teacher int8": _macro(quantized["teacher int8"], teacher_tokens, cpu, None, None),
        "student int8": _macro(quantized["student int8"], token_table, cpu, None, None),
    }
    # Each form as deployment names it (checkpoint identity and precision), for the check
    # load-adaptive precision makes before it drafts with a lighter form.
    float_precision = "bf16" if amp == torch.bfloat16 else "fp32" if amp is None else "fp16"
    forms = [
        {
            "name": name,
            "model_version": checkpoint.meta.model_version,
            "weights_sha256": checkpoint.meta.weights_sha256,
            "precision": "int8" if name.endswith("int8") else float_precision,
            "macro_auroc": paired[name],
        }
        for name, checkpoint in (
            ("teacher fp32", teacher_checkpoint),
            ("teacher int8", teacher_checkpoint),
            ("student fp32", student_checkpoint),
            ("student int8", student_checkpoint),
        )
    ]
    grid = spec.grid_shape
    latency = {
        "teacher fp32": cpu_latency(teacher_cpu, grid),
        "teacher int8": cpu_latency(quantized["teacher int8"], grid),
        "student fp32": cpu_latency(pupil_cpu, grid),
        "student int8": cpu_latency(quantized["student int8"], grid),
    }
    size = {
        "teacher fp32": state_bytes(teacher_cpu),
        "teacher int8": state_bytes(quantized["teacher int8"]),
        "student fp32": state_bytes(pupil_cpu),
        "student int8": state_bytes(quantized["student int8"]),
    }
    base = "teacher fp32"
    report = {
        "split": split,
        "studies": len(cached),
        "int8_subset_studies": subset_n,
        "cpu_threads": torch.get_num_threads(),
        "macro_auroc": auroc,
        "macro_auroc_subset": paired,
        "forms": forms,
        "latency_s": latency,
        "size_bytes": size,
        "student_int8_vs_teacher_fp32": {
            "smaller_x": size[base] / size["student int8"],
            "faster_x": latency[base] / latency["student int8"],
            "macro_auroc_points_lost": 100 * (paired[base] - paired["student int8"]),
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    goal = report["student_int8_vs_teacher_fp32"]
    lines = [f"{'':>14} {'bytes':>12} {'CPU s':>8} {'macro AUROC (subset)':>26}"]
    for name in ("teacher fp32", "teacher int8", "student fp32", "student int8"):
        auroc = report["macro_auroc_subset"].get(name)
        lines.append(
            f"{name:>14} {report['size_bytes'][name]:>12} {report['latency_s'][name]:>8.3f} "
            f"{'-' if auroc is None else f'{auroc:.4f}':>26}"
        )
    lines.append(
        f"student INT8 vs teacher fp32: {goal['smaller_x']:.1f}x smaller (goal 4x), "
        f"{goal['faster_x']:.1f}x faster (goal 2x), {goal['macro_auroc_points_lost']:.2f} points "
        "of macro AUROC lost (goal <= 1)"
    )
    return lines
