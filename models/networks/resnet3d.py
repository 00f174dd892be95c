"""A plain-torch 3D ResNet with MONAI's module names, so weights move between the two.

MONAI's ``monai.networks.nets.ResNet`` is the reference implementation.  The GPU
inference box has no MONAI, so this module rebuilds the same architecture with
torch alone: the same attribute names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0`` ...), so a state dict saved from either loads into the
other (tested in tests/ml/test_model_image_encoder.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BASE_INPLANES: tuple[int, int, int, int] = (64, 128, 256, 512)
DEPTHS: dict[str, tuple[int, int, int, int]] = {
    "resnet10": (1, 1, 1, 1),
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}
STAGE_STRIDES: tuple[int, int, int, int] = (1, 2, 2, 2)
# Studies per chunk when the stem convolution computes its weight gradient.  cuDNN's
# bf16 weight-gradient kernel for the stem (1 input channel, full-resolution volume)
# asks for a workspace that grows with the batch (1216 MiB at batch 16, 160x160x128):
# it was the training step's memory peak.  Chunking the batch bounds that workspace:
# with chunks of 4 the bf16 step's peak fell from 2.36 to 2.15 GiB on an H200
# (``bench/bench_train_gpu.py --batch-size 16 --memory-snapshot F``, then
# ``bench/memory_peak.py F.bf16.pickle.gz``); fp32, which picks a 55 MiB workspace,
# stays at 3.71 GiB.
STEM_GRAD_CHUNK = 4


class _ChunkedGradConv3dFn(torch.autograd.Function):
    """``F.conv3d`` whose backward computes the weight gradient in batch chunks.

    The forward is the plain convolution under the ambient autocast state (so under
    bf16 autocast it runs in bf16 exactly like ``nn.Conv3d``).  It saves the original
    (uncast) input; the backward casts each chunk to the gradient's dtype, calls
    ``aten.convolution_backward`` on it and sums the weight/bias gradients in fp32.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.conv_args = (list(stride), list(padding), list(dilation), groups)
        return F.conv3d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv_args
        need_input = bool(ctx.needs_input_grad[0])
        need_weight = bool(ctx.needs_input_grad[1])
        need_bias = bool(ctx.has_bias and ctx.needs_input_grad[2])
        dtype = grad_out.dtype
        weight_c = weight.to(dtype)
        bias_sizes = [weight.shape[0]] if ctx.has_bias else None
        # Sum the chunks in fp32 (or wider, for a float64 weight).
        acc = torch.promote_types(torch.float32, weight.dtype)
        # The weight's own layout (channels_last_3d on CUDA), so DDP's buckets match it.
        grad_w = torch.zeros_like(weight, dtype=acc)
        grad_b = torch.zeros(weight.shape[0], dtype=acc, device=weight.device)
        grad_in_parts: list[torch.Tensor] = []
        for start in range(0, x.shape[0], STEM_GRAD_CHUNK):
            stop = start + STEM_GRAD_CHUNK
            gi, gw, gb = torch.ops.aten.convolution_backward(
                grad_out[start:stop],
                x[start:stop].to(dtype),
                weight_c,
                bias_sizes,
                stride,
                padding,
                dilation,
                False,
                [0, 0, 0],
                groups,
                [need_input, need_weight, need_bias],
            )
            if need_input:
                grad_in_parts.append(gi.to(x.dtype))
            if need_weight:
                grad_w += gw.to(acc)
            if need_bias:
                grad_b += gb.to(acc)
        grad_x = torch.cat(grad_in_parts) if need_input else None
        return (
            grad_x,
            grad_w.to(weight.dtype) if need_weight else None,
            grad_b.to(weight.dtype) if need_bias else None,
            None,
            None,
            None,
            None,
        )


class ChunkedGradConv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters and state-dict keys) whose weight gradient is
    computed in chunks of ``STEM_GRAD_CHUNK`` studies; see ``_ChunkedGradConv3dFn``.

    Used for the stem only.  Without grad (eval, inference) it is the plain convolution.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if (
            torch.is_grad_enabled()
            and self.weight.requires_grad
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
        ):
            out: torch.Tensor = _ChunkedGradConv3dFn.apply(
                input,
                self.weight,
                self.bias,
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
            )
            return out
        return super().forward(input)


class BasicBlock3d(nn.Module):
    """Two 3x3x3 convolutions with a residual connection (MONAI ``ResNetBlock``)."""

    expansion = 1

    def __init__(
        self, *, in_planes: int, planes: int, stride: int, downsample: nn.Module | None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + residual
        return self.act(out)


class ResNet3dFeatures(nn.Module):
    """The ResNet trunk (stem + four stages) that returns the last feature map.

    Matches ``monai.networks.nets.ResNet(block="basic", spatial_dims=3,
    n_input_channels=1, conv1_t_stride=2, shortcut_type="B", feed_forward=False)``
    up to and including ``layer4``; it returns the ``layer3`` map too (nodule detection).
    """

    def __init__(
        self,
        *,
        depths: Sequence[int],
        inplanes: Sequence[int],
        stem_kernel: int,
        stem_stride: int = 2,
        in_channels: int = 1,
        fine_stride: int = 16,
    ) -> None:
        super().__init__()
        self.fine_stride = fine_stride
        self.conv1: nn.Conv3d = ChunkedGradConv3d(
            in_channels,
            inplanes[0],
            stem_kernel,
            stride=stem_stride,
            padding=stem_kernel // 2,
            bias=False,
        )
        self.bn1 = nn.BatchNorm3d(inplanes[0])
        self.act = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self._in_planes = inplanes[0]
        self.layer1 = self._make_stage(inplanes[0], depths[0], STAGE_STRIDES[0])
        self.layer2 = self._make_stage(inplanes[1], depths[1], STAGE_STRIDES[1])
        self.layer3 = self._make_stage(inplanes[2], depths[2], STAGE_STRIDES[2])
        self.layer4 = self._make_stage(inplanes[3], depths[3], STAGE_STRIDES[3])
        self.out_channels = inplanes[3]
        self.fine_channels = inplanes[2] if fine_stride == 16 else inplanes[1]
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self._in_planes != planes:
            # MONAI shortcut type "B": 1x1x1 convolution (with bias) + batch norm.
            downsample = nn.Sequential(
                nn.Conv3d(self._in_planes, planes, 1, stride=stride, bias=True),
                nn.BatchNorm3d(planes),
            )
        layers: list[nn.Module] = [
            BasicBlock3d(
                in_planes=self._in_planes, planes=planes, stride=stride, downsample=downsample
            )
        ]
        self._in_planes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock3d(in_planes=planes, planes=planes, stride=1, downsample=None))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(``layer3``'s map, or ``layer2``'s when ``fine_stride`` is 8; ``layer4``'s map)."""
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        eighth = self.layer2(self.layer1(x))
        sixteenth = self.layer3(eighth)
        return (sixteenth if self.fine_stride == 16 else eighth), self.layer4(sixteenth)
