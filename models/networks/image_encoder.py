"""3D CNN image encoder: a feature map that becomes visual tokens with 3D positions.

The ResNet family is built by MONAI when it is installed (``image_backend="monai"``)
or by ``models.networks.resnet3d`` (``"torch"``): the same architecture and the
same parameter names, so a checkpoint trained with MONAI runs on the MONAI-free
GPU box.  MONAI's SEResNet-50 and DenseNet-121 are available where MONAI is.
MONAI's ResNet defaults to a stride-1 stem, about 12x slower; we always use 2.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.config import ModelConfig
from models.networks.resnet3d import BASE_INPLANES, DEPTHS, ResNet3dFeatures

STEM_STRIDE = 2


def monai_available() -> bool:
    try:
        import monai  # noqa: F401
    except ImportError:
        return False
    return True


def _resnet_inplanes(width: float) -> list[int]:
    return [max(4, round(c * width)) for c in BASE_INPLANES]


class _MonaiResNetTrunk(nn.Module):
    """MONAI's ResNet without pooling and classifier (attribute names as MONAI's)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        from monai.networks.nets import ResNet

        net = ResNet(
            block="basic",
            layers=list(DEPTHS[config.image_encoder]),
            block_inplanes=_resnet_inplanes(config.image_width),
            spatial_dims=3,
            n_input_channels=1,
            conv1_t_size=config.stem_kernel,
            conv1_t_stride=STEM_STRIDE,
            shortcut_type="B",
            feed_forward=False,
        )
        self.conv1: nn.Module = net.conv1
        self.bn1: nn.Module = net.bn1
        self.act: nn.Module = net.act
        self.maxpool: nn.Module = net.maxpool
        self.layer1: nn.Module = net.layer1
        self.layer2: nn.Module = net.layer2
        self.layer3: nn.Module = net.layer3
        self.layer4: nn.Module = net.layer4
        self.out_channels = _resnet_inplanes(config.image_width)[-1]
        self.fine_stride = config.nodule_stride
        self.fine_channels = _resnet_inplanes(config.image_width)[
            -2 if self.fine_stride == 16 else -3
        ]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        eighth = self.layer2(self.layer1(x))
        sixteenth = self.layer3(eighth)
        return (sixteenth if self.fine_stride == 16 else eighth), self.layer4(sixteenth)


class _MonaiSEResNet50Trunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from monai.networks.nets import SEResNet50

        net = SEResNet50(spatial_dims=3, in_channels=1, num_classes=1)
        self.layer0: nn.Module = net.layer0
        self.layer1: nn.Module = net.layer1
        self.layer2: nn.Module = net.layer2
        self.layer3: nn.Module = net.layer3
        self.layer4: nn.Module = net.layer4
        self.out_channels = 2048
        self.fine_channels = 1024

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fine = self.layer3(self.layer2(self.layer1(self.layer0(x))))
        return fine, self.layer4(fine)


class _MonaiDenseNet121Trunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from monai.networks.nets import DenseNet121

        self.features: nn.Module = DenseNet121(
            spatial_dims=3, in_channels=1, out_channels=1
        ).features
        self.out_channels = 1024
        self.fine_channels = 1024

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        final = torch.relu(self.features(x))
        return final, final


def build_trunk(config: ModelConfig) -> nn.Module:
    backend = config.image_backend
    if backend == "auto":
        backend = "monai" if monai_available() else "torch"
    if config.image_encoder in DEPTHS:
        if backend == "monai":
            return _MonaiResNetTrunk(config)
        return ResNet3dFeatures(
            depths=DEPTHS[config.image_encoder],
            inplanes=_resnet_inplanes(config.image_width),
            stem_kernel=config.stem_kernel,
            stem_stride=STEM_STRIDE,
            fine_stride=config.nodule_stride,
        )
    if config.nodule_stride != 16:
        raise ValueError(f"{config.image_encoder} gives its nodule head stride 16 only")
    if backend == "torch":
        raise ValueError(f"{config.image_encoder} needs MONAI; use a resnet with backend 'torch'")
    if config.image_encoder == "monai-seresnet50":
        return _MonaiSEResNet50Trunk()
    return _MonaiDenseNet121Trunk()


def channels_last_weights(module: nn.Module) -> nn.Module:
    """Store every 5D weight channels-last, the layout ``ImageEncoder.forward`` feeds."""
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.dim() == 5:
                parameter.data = parameter.data.contiguous(memory_format=torch.channels_last_3d)
    return module


def sinusoidal_positions_3d(grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """(gx*gy*gz, dim) fixed 3D sin/cos embedding: a third of the channels per axis."""
    per_axis = 2 * math.ceil(dim / 6)
    frequencies = torch.exp(
        torch.arange(0, per_axis, 2, dtype=torch.float32) * (-math.log(10000.0) / per_axis)
    )
    axes = [torch.arange(n, dtype=torch.float32) for n in grid]
    mesh = torch.meshgrid(*axes, indexing="ij")  # axes (x, y, z), flattened x-major below
    parts = []
    for coordinate in mesh:
        angles = coordinate.reshape(-1, 1) * frequencies[None, :]
        parts.extend([torch.sin(angles), torch.cos(angles)])
    return torch.cat(parts, dim=1)[:, :dim]


class ImageEncoder(nn.Module):
    """(B, 1, X, Y, Z) image to (B, T, d_model) visual tokens and a finer feature map.

    The finer map (stride ``nodule_stride`` for the ResNets, else 16) feeds the nodule
    detector.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.trunk = build_trunk(config)
        channels = int(self.trunk.out_channels)  # type: ignore[arg-type]
        self.fine_channels = int(self.trunk.fine_channels)  # type: ignore[arg-type]
        self.pool = nn.AdaptiveAvgPool3d(config.token_grid)
        self.project = nn.Linear(channels, config.d_model)
        self.norm = nn.LayerNorm(config.d_model)
        self.register_buffer(
            "positions",
            sinusoidal_positions_3d(config.token_grid, config.d_model),
            persistent=False,
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Channels-last 3D: oneDNN (CPU) and cuDNN run these convolutions ~1.7x faster.
        image = image.contiguous(memory_format=torch.channels_last_3d)
        fine, features = self.trunk(image)  # (B, C', 2fx, 2fy, 2fz), (B, C, fx, fy, fz)
        pooled = self.pool(features)  # (B, C, gx, gy, gz)
        # (B, C, gx, gy, gz) -> (B, gx*gy*gz, C): tokens in x-major order, channels last
        tokens = pooled.flatten(2).transpose(1, 2)
        tokens = self.norm(self.project(tokens)) + self.positions.to(tokens.dtype)
        return tokens, fine
