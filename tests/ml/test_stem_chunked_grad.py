"""The stem's chunked weight gradient equals nn.Conv3d's (models/networks/resnet3d.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.networks import resnet3d
from models.networks.resnet3d import STEM_GRAD_CHUNK, ChunkedGradConv3d, ResNet3dFeatures


def _pair(bias: bool) -> tuple[nn.Conv3d, ChunkedGradConv3d]:
    torch.manual_seed(0)
    ref = nn.Conv3d(2, 5, 3, stride=2, padding=1, bias=bias).double()
    chunked = ChunkedGradConv3d(2, 5, 3, stride=2, padding=1, bias=bias).double()
    chunked.load_state_dict(ref.state_dict())
    return ref, chunked


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("input_grad", [False, True])
def test_gradients_match_conv3d_for_uneven_batch(bias: bool, input_grad: bool) -> None:
    batch = 2 * STEM_GRAD_CHUNK + 1  # not divisible by the chunk: last chunk has 1 study
    assert batch % STEM_GRAD_CHUNK != 0
    ref, chunked = _pair(bias)
    x = torch.randn(batch, 2, 7, 6, 5, dtype=torch.float64)
    x_ref = x.clone().requires_grad_(input_grad)
    x_chk = x.clone().requires_grad_(input_grad)
    grad_out = torch.randn_like(ref(x))
    out_ref = ref(x_ref)
    out_chk = chunked(x_chk)
    torch.testing.assert_close(out_chk, out_ref)
    out_ref.backward(grad_out)
    out_chk.backward(grad_out)
    assert chunked.weight.grad is not None and ref.weight.grad is not None
    torch.testing.assert_close(chunked.weight.grad, ref.weight.grad)
    if bias:
        assert chunked.bias is not None and ref.bias is not None
        assert chunked.bias.grad is not None and ref.bias.grad is not None
        torch.testing.assert_close(chunked.bias.grad, ref.bias.grad)
    if input_grad:
        assert x_chk.grad is not None and x_ref.grad is not None
        torch.testing.assert_close(x_chk.grad, x_ref.grad)
    else:
        assert x_chk.grad is None


def test_backward_goes_through_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The custom backward (not autograd's conv backward) runs, once per chunk."""
    calls: list[int] = []
    real = torch.ops.aten.convolution_backward

    def counting(grad_out: torch.Tensor, *args: object) -> object:
        calls.append(grad_out.shape[0])
        return real(grad_out, *args)

    monkeypatch.setattr(resnet3d.torch.ops.aten, "convolution_backward", counting)
    _, chunked = _pair(bias=False)
    x = torch.randn(2 * STEM_GRAD_CHUNK + 1, 2, 7, 6, 5, dtype=torch.float64)
    chunked(x).sum().backward()
    assert calls == [STEM_GRAD_CHUNK, STEM_GRAD_CHUNK, 1]


def test_float32_gradient_matches_in_network() -> None:
    torch.manual_seed(1)
    net = ResNet3dFeatures(depths=(1, 1, 1, 1), inplanes=(4, 8, 8, 8), stem_kernel=7)
    assert isinstance(net.conv1, ChunkedGradConv3d)
    ref = nn.Conv3d(1, 4, 7, stride=2, padding=3, bias=False)
    ref.load_state_dict(net.conv1.state_dict())
    x = torch.randn(STEM_GRAD_CHUNK + 2, 1, 16, 16, 16)
    g = torch.randn_like(ref(x))
    ref(x).backward(g)
    net.conv1(x).backward(g)
    assert net.conv1.weight.grad is not None and ref.weight.grad is not None
    torch.testing.assert_close(net.conv1.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)


def test_state_dict_keys_unchanged_and_eval_output_identical() -> None:
    torch.manual_seed(2)
    net = ResNet3dFeatures(depths=(1, 1, 1, 1), inplanes=(4, 8, 8, 8), stem_kernel=7)
    keys = set(net.state_dict())
    assert {"conv1.weight"} <= keys and "conv1.bias" not in keys
    plain = ResNet3dFeatures(depths=(1, 1, 1, 1), inplanes=(4, 8, 8, 8), stem_kernel=7)
    plain.conv1 = nn.Conv3d(1, 4, 7, stride=2, padding=3, bias=False)
    assert list(plain.state_dict()) == list(net.state_dict())
    plain.load_state_dict(net.state_dict())
    net.eval()
    plain.eval()
    x = torch.randn(3, 1, 32, 32, 32)
    with torch.no_grad():
        fine, coarse = net(x)
        fine_ref, coarse_ref = plain(x)
    assert torch.equal(fine, fine_ref) and torch.equal(coarse, coarse_ref)
    # With grad enabled too, the forward of the custom Function is the same convolution.
    assert torch.equal(net.conv1(x), plain.conv1(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for bf16 autocast")
def test_bf16_autocast_matches_conv3d_on_cuda() -> None:
    ref, chunked = _pair(bias=True)
    ref, chunked = ref.float().cuda(), chunked.float().cuda()
    x = torch.randn(STEM_GRAD_CHUNK + 3, 2, 9, 8, 7, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out_ref = ref(x)
        out_chk = chunked(x)
    assert out_chk.dtype == out_ref.dtype == torch.bfloat16
    assert torch.equal(out_chk, out_ref)
    g = torch.randn_like(out_ref)
    out_ref.backward(g)
    out_chk.backward(g)
    assert chunked.weight.grad is not None and ref.weight.grad is not None
    assert chunked.weight.grad.dtype == torch.float32
    torch.testing.assert_close(chunked.weight.grad, ref.weight.grad, rtol=2e-2, atol=2e-2)


def test_weight_gradient_keeps_the_channels_last_layout() -> None:
    """DDP buckets gradients in the parameters' layout; a contiguous stem gradient for a
    channels_last_3d weight made it copy every step ("grad strides do not match")."""
    _, chunked = _pair(bias=True)
    chunked = chunked.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    chunked1 = ChunkedGradConv3d(1, 4, 3, padding=1).to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    for conv, channels in ((chunked, 2), (chunked1, 1)):
        dtype = conv.weight.dtype
        x = torch.randn(STEM_GRAD_CHUNK + 1, channels, 6, 6, 6, dtype=dtype)
        conv(x.contiguous(memory_format=torch.channels_last_3d)).sum().backward()
        assert conv.weight.grad is not None
        assert conv.weight.grad.stride() == conv.weight.stride()


def test_training_layout_keeps_the_refiner_contiguous() -> None:
    """The trainer's CUDA layout: channels-last weights, but the refiner's as cuDNN gives
    their gradients (an H200 gave its one-channel convolution contiguous strides)."""
    from models.networks.model import RadscribeModel
    from models.training.config import TrainConfig
    from models.training.trainer import training_layout
    from tests.ml.train_fixtures import TINY_TRAIN

    model = training_layout(RadscribeModel(TrainConfig(**TINY_TRAIN).model_config_()))
    stem = dict(model.named_parameters())["image_encoder.trunk.conv1.weight"]
    assert stem.stride() == stem.contiguous(memory_format=torch.channels_last_3d).stride()
    refiner = [p for p in model.refiner.parameters() if p.dim() == 5]
    assert refiner
    for weight in refiner:
        assert weight.stride() == torch.empty(weight.shape).stride()
