"""A plain-torch 3D ResNet with MONAI's module names, so weights move between the two.

MONAI's ``monai.networks.nets.ResNet`` is the reference implementation.  The GPU
inference box has no MONAI, so this module rebuilds the same architecture with
torch alone: the same attribute names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0`` ...), so a state dict saved from either loads into the
other (tested in tests/ml/test_model_image_encoder.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

BASE_INPLANES: tuple[int, int, int, int] = (64, 128, 256, 512)
DEPTHS: dict[str, tuple[int, int, int, int]] = {
    "resnet10": (1, 1, 1, 1),
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}
STAGE_STRIDES: tuple[int, int, int, int] = (1, 2, 2, 2)


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
        self.conv1 = nn.Conv3d(
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
