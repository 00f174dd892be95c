"""Deployment forms: INT8 on CPU, bf16 on CUDA, torch.compile where it pays.

* ``int8``: dynamic quantization of every ``nn.Linear`` (text encoder, fusion,
  heads) to int8 weights with per-batch activation scales.  The 3D CNN stays fp32:
  dynamic quantization has no Conv3d kernel.  ``torch.backends.mha`` fast path is
  switched off first, as ``quantize_dynamic`` needs it off for Transformer layers.
* ``bf16``: the whole model cast to bfloat16 on CUDA (logits are cast back to
  float before calibration).
* ``compile``: ``torch.compile`` of ``RadscribeModel.fuse`` (image encoder, gate,
  fusion, heads: fixed shapes, text lengths bucketed), with CUDA graphs on a GPU;
  the text encoder sees variable lengths and stays eager.  On the H200 this takes
  batch 1 from 6.5 ms (eager) to under 5 ms; see bench/bench_model_gpu.py.
* every form keeps the 3D CNN's weights channels-last (``channels_last_3d``).
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Literal

import torch
from torch import nn

from models.networks.image_encoder import channels_last_weights
from models.networks.model import RadscribeModel

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "int8", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "int8", "bf16")


def default_precision(device: torch.device) -> Precision:
    return "bf16" if device.type == "cuda" else "int8"


def quantize_int8(model: RadscribeModel) -> RadscribeModel:
    """A copy with int8 dynamic-quantized linear layers (CPU only)."""
    torch.backends.mha.set_fastpath_enabled(False)
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notes on quantized tensors
        quantized = quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear}, dtype=torch.qint8)
    return quantized


def prepare_for_inference(
    model: RadscribeModel,
    *,
    device: torch.device,
    precision: Precision,
    compile_model: bool = False,
) -> RadscribeModel:
    """Move, cast or quantize ``model`` for inference in the given form."""
    model = model.eval()
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError("int8 dynamic quantization runs on CPU only")
        model = quantize_int8(model.to("cpu"))
    elif precision == "bf16":
        model = model.to(device=device, dtype=torch.bfloat16)
    elif precision == "fp32":
        model = model.to(device=device, dtype=torch.float32)
    else:
        raise ValueError(f"precision must be one of {PRECISIONS}")
    # Weights in the layout the encoder's input uses (see ImageEncoder.forward).
    channels_last_weights(model.image_encoder)
    if compile_model:
        # CUDA graphs replay the whole fixed-shape part at batch 1 (launch-bound there).
        mode = "reduce-overhead" if device.type == "cuda" else "default"
        model.fuse = torch.compile(model.fuse, mode=mode, dynamic=False)  # type: ignore[method-assign]
    return model
