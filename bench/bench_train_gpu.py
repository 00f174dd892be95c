"""Training throughput and peak GPU memory: bf16 autocast against fp32 (TF32 off), same GPU.

Run from the repository root on a CUDA machine::

    python bench/bench_train_gpu.py --batch-size 16    # the shipped recipe's batch
    python bench/bench_train_gpu.py --batch-size 8 --steps 20 --json out.json
    python bench/bench_train_gpu.py --batch-size 16 --compile

Each mode builds the same seeded model (``configs/train/shipped.yaml``) and runs
full training steps (forward, the findings and nodule losses, backward, AdamW) on
random inputs of the model's grid shape with precomputed text embeddings, as the
trainer does.  fp32 runs with TF32 switched off for matrix products and
convolutions (so it is real fp32); bf16 uses ``torch.autocast`` with fp32 master
weights and the image handed over in bf16, as ``amp: bf16`` in training.
Reported: median step time over ``--steps`` after ``--warmup`` steps, samples
per second, and the peak memory allocated by PyTorch during the timed steps, each
mode alone in the process.  Then, with both models built, ``--rounds`` rounds in
which the modes take turns (``--steps`` steps each): the speed-up of each round and
their median.  bf16 steps are short enough for host jitter to move one pass's
median by 10-20 % between runs; alternating puts any drift on both modes alike.

``--memory-snapshot FILE`` records the allocator's history (with Python and C++
stacks) over one extra step per mode, after the timed ones, and writes it as
``FILE.fp32.pickle.gz`` and ``FILE.bf16.pickle.gz`` (``torch.cuda.memory._snapshot``
format; ``bench/memory_peak.py`` says what is live at the peak).

``--compile`` compiles the image encoder in place (``nn.Module.compile``) in both
modes; the trainer does not (on an H200 it gained nothing).  The frozen MiniLM
takes no part in a step (its embeddings are precomputed), so it is not built; its
weights, which training keeps on the GPU, are held as a block of the same size
(``FROZEN_TEXT_PARAMETERS`` fp32 values) so that peak memory counts them, and the
bench needs no MiniLM files.  The bar: bf16 1.8x faster and 40 % less memory.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from models.losses import radscribe_loss  # noqa: E402
from models.networks.model import ModelBatch, RadscribeModel, TextInput  # noqa: E402
from models.training.config import load_train_config  # noqa: E402

FROZEN_TEXT_PARAMETERS = 22_713_216
"""all-MiniLM-L6-v2's parameter count (``sum(p.numel() for p in AutoModel...parameters())``)."""
EMR_TOKENS = 40
DICTATION_TOKENS = 120


def _batch(
    config: Any, grid: tuple[int, int, int], size: int, device: torch.device
) -> tuple[ModelBatch, torch.Tensor]:
    generator = torch.Generator(device="cpu").manual_seed(0)

    def text(length: int) -> TextInput:
        return TextInput(
            present=torch.ones(size, dtype=torch.bool, device=device),
            attention_mask=torch.ones(size, length, dtype=torch.bool, device=device),
            embeddings=torch.randn(size, length, config.text_dim, generator=generator).to(device),
        )

    image = (torch.rand(size, 1, *grid, generator=generator) * 2 - 1).to(device)
    batch = ModelBatch(
        image=image.contiguous(memory_format=torch.channels_last_3d),
        image_quality=torch.rand(size, 6, generator=generator).to(device),
        emr=text(EMR_TOKENS),
        dictation=text(DICTATION_TOKENS),
        dictation_quality=torch.rand(size, 3, generator=generator).to(device),
    )
    labels = (torch.rand(size, config.num_findings, generator=generator) < 0.2).float().to(device)
    return batch, labels


def _save_snapshot(path: Path, baseline: int) -> None:
    """One recorded step's allocator history (``torch.cuda.memory._snapshot``), gzipped.

    ``baseline`` is the memory allocated when recording began (weights, optimizer
    state, inputs): the trace's own events start from it.
    """
    data = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    data["radscribe_baseline_bytes"] = baseline
    with gzip.open(path, "wb") as handle:
        pickle.dump(data, handle)
    print(f"memory history of one step written to {path} ({path.stat().st_size} bytes)")


class Mode:
    """One precision's model, optimizer and batch, ready to take training steps."""

    def __init__(self, mode: str, *, config_path: Path, batch_size: int, compile_: bool) -> None:
        self.mode = mode
        self.device = torch.device("cuda")
        train_config = load_train_config(config_path)
        config = train_config.model_config_()
        torch.manual_seed(0)
        self.model = (
            RadscribeModel(config, with_text_encoder=config.text_trainable)  # type: ignore[call-overload]
            .to(self.device)
            .to(memory_format=torch.channels_last_3d)
            .train()
        )
        self.frozen_text = (
            None
            if config.text_trainable
            else torch.zeros(FROZEN_TEXT_PARAMETERS, dtype=torch.float32, device=self.device)
        )
        if compile_:
            torch._dynamo.reset()
            self.model.image_encoder.compile()
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=1e-4
        )
        spec = train_config.preprocess_spec()
        self.batch, self.labels = _batch(config, spec.grid_shape, batch_size, self.device)
        if mode == "bf16":  # as the trainer does with amp: bf16
            self.batch.image = self.batch.image.to(torch.bfloat16)
        self.dtype = torch.bfloat16 if mode == "bf16" else torch.float32

    def step(self) -> float:
        """One full training step; its wall-clock seconds."""
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=self.dtype, enabled=self.mode == "bf16"):
            out = self.model(self.batch)
        loss = (
            radscribe_loss(out, finding_labels=self.labels)["total"]
            + out.nodule_map.float().square().mean()
        )
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return time.perf_counter() - start


def _precise() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.benchmark = True


def run_mode(
    mode: str,
    *,
    config_path: Path,
    batch_size: int,
    steps: int,
    warmup: int,
    compile_: bool,
    snapshot: Path | None = None,
) -> dict[str, float]:
    """Time and measure one precision alone: the peak memory is this mode's only."""
    _precise()
    runner = Mode(mode, config_path=config_path, batch_size=batch_size, compile_=compile_)
    device = runner.device
    for _ in range(warmup):
        runner.step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    times = [runner.step() for _ in range(steps)]
    peak = torch.cuda.max_memory_allocated(device)
    if snapshot is not None:
        baseline = torch.cuda.memory_allocated(device)
        torch.cuda.memory._record_memory_history(max_entries=200_000, stacks="all")
        runner.step()
        _save_snapshot(snapshot.with_suffix(f".{mode}.pickle.gz"), baseline)
    median = statistics.median(times)
    del runner
    torch.cuda.empty_cache()
    return {
        "median_step_s": median,
        "samples_per_s": batch_size / median,
        "peak_memory_gib": peak / 2**30,
    }


def alternate(
    *, config_path: Path, batch_size: int, steps: int, warmup: int, rounds: int, compile_: bool
) -> list[float]:
    """fp32/bf16 speed-ups of ``rounds`` rounds, the two modes taking turns.

    Both models live at once, so host and GPU conditions that drift during a run
    (clocks, other processes) fall on both modes alike; each round's ratio is of
    the two medians of ``steps`` steps.
    """
    _precise()
    runners = {
        mode: Mode(mode, config_path=config_path, batch_size=batch_size, compile_=compile_)
        for mode in ("fp32", "bf16")
    }
    for runner in runners.values():
        for _ in range(warmup):
            runner.step()
    ratios = []
    for _ in range(rounds):
        medians = {
            mode: statistics.median(runner.step() for _ in range(steps))
            for mode, runner in runners.items()
        }
        ratios.append(medians["fp32"] / medians["bf16"])
    del runners
    torch.cuda.empty_cache()
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train" / "shipped.yaml")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="compile the image encoder")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating fp32/bf16 rounds for the speed-up"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--memory-snapshot",
        type=Path,
        help="record one more step per mode and write its allocator history to FILE.MODE.pickle.gz",
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_train_gpu needs a CUDA GPU", file=sys.stderr)
        return 2
    results = {
        mode: run_mode(
            mode,
            config_path=args.config,
            batch_size=args.batch_size,
            steps=args.steps,
            warmup=args.warmup,
            compile_=args.compile,
            snapshot=args.memory_snapshot,
        )
        for mode in ("fp32", "bf16")
    }
    fp32, bf16 = results["fp32"], results["bf16"]
    ratios = (
        alternate(
            config_path=args.config,
            batch_size=args.batch_size,
            steps=args.steps,
            warmup=args.warmup,
            rounds=args.rounds,
            compile_=args.compile,
        )
        if args.rounds > 0
        else []
    )
    summary = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "compiled": args.compile,
        "grid": list(load_train_config(args.config).preprocess_spec().grid_shape),
        "tf32": "off in fp32 (matmul and cuDNN)",
        "fp32": fp32,
        "bf16": bf16,
        "speedup": fp32["median_step_s"] / bf16["median_step_s"],
        "memory_saving": 1 - bf16["peak_memory_gib"] / fp32["peak_memory_gib"],
        "round_speedups": ratios,
        "speedup_rounds_median": statistics.median(ratios) if ratios else None,
    }
    print(
        f"GPU {summary['gpu']}, torch {summary['torch']}, "
        f"batch {args.batch_size}, grid {summary['grid']}, "
        f"image encoder {'compiled' if args.compile else 'eager'}"
    )
    print(f"{'':>8} {'step s':>10} {'samples/s':>10} {'peak GiB':>10}")
    for mode in ("fp32", "bf16"):
        r = results[mode]
        print(
            f"{mode:>8} {r['median_step_s']:>10.4f} {r['samples_per_s']:>10.1f} "
            f"{r['peak_memory_gib']:>10.2f}"
        )
    print(
        f"bf16 speed-up {summary['speedup']:.2f}x in the passes above (bar 1.8x), "
        f"memory saving {summary['memory_saving']:.0%} (bar 40%)"
    )
    if ratios:
        print(
            f"alternating rounds: speed-ups {', '.join(f'{r:.2f}x' for r in ratios)}; "
            f"median {statistics.median(ratios):.2f}x (bar 1.8x)"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
