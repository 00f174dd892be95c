"""CPU benchmark of the drafting model: preprocessing and the network, separately.

    .venv/bin/python bench/bench_model_cpu.py [--repeats 5] [--threads 2] [--slices 200]

Batch 1, torch limited to ``--threads`` (the goal is for 2 cores).  Prints medians
side by side with their peers and the goals:

* preprocessing of a generated 200 x 512 x 512 chest series (written to a temporary
  folder as real DICOM): ours against MONAI ``LoadImage`` (the reader it replaces)
  and plain ``pydicom.dcmread`` + ``np.stack`` (decoding alone, nothing else);
* the production network (half-width 3D ResNet-18, MiniLM, 4-layer co-attention
  fusion) in fp32 and int8, and a full-width ResNet-18 image encoder for scale.

Peak memory is measured in a fresh child process per item (peak RSS minus the RSS
after imports), so one item's allocations never hide another's.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHANTOMS = REPO / "tests" / "ml" / "phantoms.py"
GOAL_PREPROCESS_S = 1.0
GOAL_MODEL_S = 1.0
GOAL_PEAK_GB = 1.5
EMR_TEXT = (
    "Reason for exam: persistent cough for three months, 40 pack-year smoker, weight loss. "
    "History: COPD, hypertension, prior right upper lobe nodule on chest radiograph."
)
DICTATION_TEXT = (
    "CT chest without contrast. Lungs: there is a 9 millimetre solid nodule in the right upper "
    "lobe, series 2 image 45, previously 7 millimetres. Centrilobular emphysema, upper lobe "
    "predominant. No consolidation. No pleural effusion. Mediastinum: no lymphadenopathy. Heart "
    "size normal. Coronary artery calcifications. Small hiatal hernia. Impression: enlarging "
    "right upper lobe nodule, recommend PET CT. Emphysema. "
) * 2


def _load_phantoms() -> object:
    spec = importlib.util.spec_from_file_location("bench_phantoms", PHANTOMS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_phantoms"] = module
    spec.loader.exec_module(module)
    return module


def write_series(folder: Path, slices: int) -> None:
    phantoms = _load_phantoms()
    phantoms.write_chest_series(  # type: ignore[attr-defined]
        folder,
        rows=512,
        columns=512,
        pixel_spacing=0.7,
        slices=slices,
        slice_spacing=1.5,
        noise_hu=15.0,
        nodules=[phantoms.PhantomNodule(centre_lps=(-70.0, -10.0, 20.0), diameter_mm=9.0)],  # type: ignore[attr-defined]
    )


CPU_SECONDS: list[float] = []
"""Process CPU time of each timed call of the last ``median_time`` (all threads)."""


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time; the process CPU time per call is kept in ``CPU_SECONDS``.

    On a shared box the wall time includes waiting for other processes; CPU time
    divided by the thread count is what the call costs with the cores to itself.
    """
    fn()  # warm-up (imports, allocator, oneDNN primitives)
    times = []
    CPU_SECONDS.clear()
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        CPU_SECONDS.append(time.process_time() - cpu_start)
    return statistics.median(times)


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------- child-process items


def _child(item: str, series: str, threads: int, repeats: int) -> dict[str, float]:
    import numpy as np
    import pydicom
    import torch

    torch.set_num_threads(threads)
    if item == "ours":
        from models.preprocess import PreprocessSpec, preprocess

        spec = PreprocessSpec(decode_workers=threads)
        baseline = _rss_mb()

        def run() -> object:
            return preprocess(Path(series), spec)
    elif item == "monai":
        from monai.transforms import LoadImage

        loader = LoadImage(image_only=True, reader="PydicomReader")
        baseline = _rss_mb()

        def run() -> object:
            return loader(series)
    elif item == "dcmread":
        files = sorted(Path(series).iterdir())
        baseline = _rss_mb()

        def run() -> object:
            return np.stack([pydicom.dcmread(f).pixel_array for f in files])
    else:
        return _child_model(item, threads, repeats)
    seconds = median_time(run, repeats)
    cpu = statistics.median(CPU_SECONDS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "cpu_s": cpu, "peak_mb": peak - baseline, "peak_abs_mb": peak}


def _child_model(item: str, threads: int, repeats: int) -> dict[str, float]:
    import torch

    from models.config import ModelConfig
    from models.networks.image_encoder import channels_last_weights
    from models.networks.model import ModelBatch, RadscribeModel, TextInput
    from models.networks.text_encoder import TextTokenizer
    from models.quantize import quantize_int8

    torch.manual_seed(0)
    precision, _, width = item.partition(":")
    config = ModelConfig(image_width=float(width or 0.5))
    spec_shape = (160, 160, 128)
    tokenizer = TextTokenizer()
    model = RadscribeModel(config).eval()
    if precision == "int8":
        model = quantize_int8(model)
    channels_last_weights(model.image_encoder)  # as prepare_for_inference
    emr_ids, emr_mask = tokenizer([EMR_TEXT], max_tokens=config.emr_max_tokens)
    dictation_ids, dictation_mask = tokenizer(
        [DICTATION_TEXT], max_tokens=config.dictation_max_tokens
    )
    batch = ModelBatch(
        image=torch.randn(1, 1, *spec_shape),
        image_quality=torch.rand(1, 6),
        emr=TextInput(present=torch.tensor([True]), attention_mask=emr_mask, token_ids=emr_ids),
        dictation=TextInput(
            present=torch.tensor([True]), attention_mask=dictation_mask, token_ids=dictation_ids
        ),
        dictation_quality=torch.tensor([[0.9, 0.02, 0.6]]),
    )
    baseline = _rss_mb()

    def run() -> object:
        with torch.inference_mode():
            return model(batch)

    def image_only() -> object:
        with torch.inference_mode():
            return model.image_encoder(batch.image)

    def text_only() -> object:
        with torch.inference_mode():
            model.encode_text(emr_ids, emr_mask)
            return model.encode_text(dictation_ids, dictation_mask)

    seconds = median_time(run, repeats)
    cpu = statistics.median(CPU_SECONDS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "image_encoder_s": median_time(image_only, repeats),
        "text_encoder_s": median_time(text_only, repeats),
        "peak_mb": peak - baseline,
        "peak_abs_mb": peak,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "text_tokens": float(emr_ids.shape[1] + dictation_ids.shape[1]),
    }


def run_child(item: str, series: str, threads: int, repeats: int) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            item,
            "--series",
            series,
            "--threads",
            str(threads),
            "--repeats",
            str(repeats),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{item} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--skip-monai", action="store_true")
    parser.add_argument("--only", choices=("preprocess", "model"), help="run one half only")
    parser.add_argument("--child")
    parser.add_argument("--series", default="")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.series, args.threads, args.repeats)))
        return 0

    load = os.getloadavg()[0]
    print(
        f"CPU benchmark: {args.threads} threads, batch 1, median of {args.repeats}"
        f" (load average {load:.1f} on {os.cpu_count()} cores at start)"
    )
    if args.only != "model":
        bench_preprocessing(args)
    if args.only != "preprocess":
        bench_model(args)
    return 0


def bench_preprocessing(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="radscribe-bench-") as tmp:
        series = Path(tmp) / "series"
        start = time.perf_counter()
        write_series(series, args.slices)
        print(
            f"wrote {args.slices} x 512 x 512 phantom series in {time.perf_counter() - start:.1f} s"
        )
        print(f"\npreprocessing ({args.slices} x 512 x 512 -> 160 x 160 x 128 grid)")
        print(f"{'':34s}{'median s':>10s}{'cpu s':>8s}{'peak MB':>10s}{'RSS MB':>9s}")
        items = [("ours: decode+resample+quality", "ours"), ("plain dcmread + np.stack", "dcmread")]
        if not args.skip_monai:
            items.append(("MONAI LoadImage (pydicom reader)", "monai"))
        for label, item in items:
            r = run_child(item, str(series), args.threads, args.repeats)
            print(
                f"{label:34s}{r['seconds']:10.3f}{r['cpu_s']:8.3f}{r['peak_mb']:10.0f}"
                f"{r['peak_abs_mb']:9.0f}"
            )
        print(f"{'goal (ours)':34s}{GOAL_PREPROCESS_S:10.3f}{'':8s}{GOAL_PEAK_GB * 1024:10.0f}")


def bench_model(args: argparse.Namespace) -> None:
    print("\nmodel (image 160 x 160 x 128, EMR + dictation text, forward incl. text encoder)")
    print(
        f"{'':34s}{'median s':>10s}{'cpu s':>8s}{'image s':>9s}{'text s':>8s}"
        f"{'peak MB':>9s}{'RSS MB':>8s}{'params M':>9s}"
    )
    for label, item in (
        ("production int8 (ResNet-18 x0.5)", "int8:0.5"),
        ("production fp32 (ResNet-18 x0.5)", "fp32:0.5"),
        ("full-width fp32 (ResNet-18 x1)", "fp32:1.0"),
    ):
        r = run_child(item, "", args.threads, args.repeats)
        print(
            f"{label:34s}{r['seconds']:10.3f}{r['cpu_s']:8.3f}{r['image_encoder_s']:9.3f}"
            f"{r['text_encoder_s']:8.3f}"
            f"{r['peak_mb']:9.0f}{r['peak_abs_mb']:8.0f}{r['params_m']:9.1f}"
        )
    print(f"{'goal (production)':34s}{GOAL_MODEL_S:10.3f}{'':25s}{GOAL_PEAK_GB * 1024:9.0f}")
    print(
        "\npeak MB = peak RSS minus RSS after imports and set-up (the work itself);"
        " RSS MB = the process's whole peak, torch and libraries included."
        "\ncpu s = process CPU time of one call over all threads; with the cores to itself a"
        f" call takes about cpu s / {args.threads} when its threads stay busy."
    )


if __name__ == "__main__":
    raise SystemExit(main())
