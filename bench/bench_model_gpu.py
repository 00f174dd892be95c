"""GPU benchmark of the drafting network: bf16 batch-1 latency and batched throughput.

    python bench/bench_model_gpu.py [--batches 1 16 32] [--iterations 50] [--no-compile]

Needs torch with CUDA and this repository on PYTHONPATH, nothing else: the image
encoder is the plain-torch ResNet (MONAI's architecture and parameter names), and
text arrives as precomputed MiniLM embeddings (how a GPU worker gets it when the
frozen encoder runs once per text).  When transformers is importable, the MiniLM
encoder itself is timed too, on the side.

Prints, side by side, the production network (3D ResNet-18 x0.5, 100 visual
tokens, 4-layer co-attention fusion, heads) and the reference the issue quotes
(full-width 3D ResNet-18 + 4-layer 256-wide nn.TransformerEncoder), eager and
compiled.  Goals: <= 5 ms/study at batch 1, <= 2 ms/study batched.
``--device cpu --smoke`` runs a tiny version anywhere, to check the script.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.config import ModelConfig
from models.networks.image_encoder import channels_last_weights
from models.networks.model import ModelBatch, RadscribeModel, TextInput
from models.networks.resnet3d import BASE_INPLANES, DEPTHS, ResNet3dFeatures

GOAL_BATCH1_MS = 5.0
GOAL_BATCHED_MS = 2.0
EMR_TOKENS = 48
DICTATION_TOKENS = 160
IMAGE_SHAPE = (160, 160, 128)
SMOKE_SHAPE = (64, 64, 64)


class ReferenceNet(nn.Module):
    """The issue's reference: full-width 3D ResNet-18 + 4-layer 256-wide Transformer."""

    def __init__(self, *, classes: int = 18) -> None:
        super().__init__()
        self.trunk = ResNet3dFeatures(
            depths=DEPTHS["resnet18"], inplanes=list(BASE_INPLANES), stem_kernel=7
        )
        self.project = nn.Linear(BASE_INPLANES[-1], 256)
        layer = nn.TransformerEncoderLayer(256, 8, 1024, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
        self.head = nn.Linear(256, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        _, features = self.trunk(image)
        tokens = self.project(features.flatten(2).transpose(1, 2))
        return self.head(self.transformer(tokens).mean(1))


def make_batch(
    batch: int, shape: tuple[int, int, int], device: torch.device, dtype: torch.dtype
) -> ModelBatch:
    def text(length: int) -> TextInput:
        return TextInput(
            present=torch.ones(batch, dtype=torch.bool, device=device),
            attention_mask=torch.ones(batch, length, dtype=torch.bool, device=device),
            embeddings=torch.randn(batch, length, 384, device=device, dtype=dtype),
        )

    return ModelBatch(
        image=torch.randn(batch, 1, *shape, device=device, dtype=dtype),
        image_quality=torch.rand(batch, 6, device=device),
        emr=text(EMR_TOKENS),
        dictation=text(DICTATION_TOKENS),
        dictation_quality=torch.rand(batch, 3, device=device),
    )


def timed_ms(fn: Callable[[], object], *, iterations: int, device: torch.device) -> float:
    """Median milliseconds per call (after warm-up, with device synchronisation)."""
    if device.type == "cuda":
        inner = fn

        def fn() -> object:
            torch.compiler.cudagraph_mark_step_begin()  # a new step for CUDA-graph replay
            return inner()

    for _ in range(5):
        fn()
    times = []
    for _ in range(iterations):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def build_production(device: torch.device, dtype: torch.dtype, *, smoke: bool) -> RadscribeModel:
    config = ModelConfig(image_backend="torch")
    if smoke:
        config = ModelConfig(image_backend="torch", image_width=0.125, token_grid=(2, 2, 2))
    model = RadscribeModel(config, with_text_encoder=False).eval()
    model = model.to(device=device, dtype=dtype)
    channels_last_weights(model.image_encoder)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GPU benchmark of the Radscribe network")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 32])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--compile-modes",
        nargs="+",
        default=["default", "reduce-overhead"],
        help="torch.compile modes to time (reduce-overhead replays CUDA graphs)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (script check)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available; run with --device cpu --smoke to check the script")
        return 2
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = SMOKE_SHAPE if args.smoke else IMAGE_SHAPE
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    try:
        import monai  # noqa: F401

        monai_note = "MONAI installed (not used here)"
    except ImportError:
        monai_note = "no MONAI (plain-torch ResNet)"
    print(f"device {name}, {dtype}, image {shape}, torch {torch.__version__}, {monai_note}")

    production = build_production(device, dtype, smoke=args.smoke)
    reference = ReferenceNet().eval().to(device=device, dtype=dtype)
    channels_last_weights(reference.trunk)
    params = sum(p.numel() for p in production.parameters()) / 1e6
    print(f"production network (no text encoder): {params:.1f} M parameters")

    variants: list[tuple[str, Callable[[int], Callable[[], object]]]] = []

    def production_call(model: RadscribeModel) -> Callable[[int], Callable[[], object]]:
        def for_batch(batch: int) -> Callable[[], object]:
            inputs = make_batch(batch, shape, device, dtype)
            return lambda: model(inputs)

        return for_batch

    def reference_call(model: nn.Module) -> Callable[[int], Callable[[], object]]:
        def for_batch(batch: int) -> Callable[[], object]:
            image = torch.randn(batch, 1, *shape, device=device, dtype=dtype)
            image = image.contiguous(memory_format=torch.channels_last_3d)
            return lambda: model(image)

        return for_batch

    variants.append(("production eager", production_call(production)))
    variants.append(("reference eager", reference_call(reference)))
    if not args.no_compile:
        for mode in args.compile_modes:
            compiled = build_production(device, dtype, smoke=args.smoke)
            compiled.load_state_dict(production.state_dict())
            # dynamic=False: one specialised graph per batch size, as a serving worker has.
            compiled.fuse = torch.compile(compiled.fuse, mode=mode, dynamic=False)  # type: ignore[method-assign]
            variants.append((f"production {mode}", production_call(compiled)))
            compiled_reference = torch.compile(reference, mode=mode, dynamic=False)
            variants.append((f"reference {mode}", reference_call(compiled_reference)))  # type: ignore[arg-type]

    header = "".join(f"{f'b={b} ms/study':>16s}" for b in args.batches)
    print(f"\n{'':34s}{header}")
    with torch.inference_mode():
        for label, factory in variants:
            cells = []
            for batch in args.batches:
                try:
                    ms = timed_ms(factory(batch), iterations=args.iterations, device=device)
                    cells.append(f"{ms / batch:16.3f}")
                except torch.OutOfMemoryError:
                    cells.append(f"{'OOM':>16s}")
                    torch.cuda.empty_cache()
                except Exception as exc:  # one broken variant must not hide the others
                    cells.append(f"{'error':>16s}")
                    print(f"{label} batch {batch}: {type(exc).__name__}: {str(exc)[:300]}")
            print(f"{label:34s}{''.join(cells)}", flush=True)
    print(f"{'goal':34s}{GOAL_BATCH1_MS:16.3f}{GOAL_BATCHED_MS:16.3f}")
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"peak GPU memory {peak:.1f} GiB")
    _time_text_encoder(device, dtype, args.iterations)
    return 0


def _time_text_encoder(device: torch.device, dtype: torch.dtype, iterations: int) -> None:
    """MiniLM on the side, when transformers (and the packaged weights) are installed."""
    try:
        from models.config import ModelConfig
        from models.networks.text_encoder import TextEncoder
    except ImportError:
        print("text encoder: transformers not installed; text arrives as embeddings")
        return
    try:
        encoder = TextEncoder(ModelConfig()).eval().to(device=device, dtype=dtype)
    except (ImportError, RuntimeError, OSError) as exc:
        print(f"text encoder: not timed ({exc})")
        return
    ids = torch.randint(1000, 20000, (1, EMR_TOKENS + DICTATION_TOKENS), device=device)
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.inference_mode():
        ms = timed_ms(lambda: encoder(ids, mask), iterations=iterations, device=device)
    print(f"text encoder (MiniLM, {ids.shape[1]} tokens, batch 1): {ms:.3f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
