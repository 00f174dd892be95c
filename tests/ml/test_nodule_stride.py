"""The nodule head can read the stride-8 map (finer cells for small nodules)."""

from __future__ import annotations

import pytest
import torch

from models.config import tiny_config
from models.networks.model import ModelBatch, RadscribeModel, TextInput


def _nodule_map_shape(stride: int) -> tuple[int, ...]:
    torch.manual_seed(0)
    model = RadscribeModel(tiny_config(nodule_stride=stride)).eval()
    batch = ModelBatch(
        image=torch.randn(1, 1, 64, 64, 48),
        image_quality=torch.rand(1, 6),
        emr=TextInput.absent(1),
        dictation=TextInput.absent(1),
        dictation_quality=torch.zeros(1, 3),
    )
    with torch.no_grad():
        return tuple(model(batch).nodule_map.shape[2:])


def test_stride_8_doubles_the_nodule_cells_per_axis() -> None:
    assert _nodule_map_shape(16) == (4, 4, 3)
    assert _nodule_map_shape(8) == (8, 8, 6)


def test_other_strides_are_refused() -> None:
    with pytest.raises(ValueError, match="nodule_stride"):
        tiny_config(nodule_stride=4)
