"""Segmenter builders: shapes for any band count, dropout before the head, errors."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from torch import nn

from landlearn.errors import LandlearnError
from landlearn.models import build_model, list_models, model_task
from landlearn.models.segmenters import size_divisor

# names starting with "test_" are tiny models other test folders register for themselves
SEGMENTERS = [
    n for n in list_models() if model_task(n) == "segmentation" and not n.startswith("test_")
]


@pytest.mark.parametrize("in_channels", [3, 13])
@pytest.mark.parametrize("name", SEGMENTERS)
def test_forward_shape(name: str, in_channels: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, in_channels=in_channels, num_classes=5, encoder="resnet18").eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, 64, 64))
    assert out.shape == (2, 5, 64, 64)
    assert 64 % size_divisor(model) == 0


@pytest.mark.parametrize("name", SEGMENTERS)
def test_dropout2d_wraps_the_head(name: str) -> None:
    model = build_model(name, in_channels=3, num_classes=2, dropout=0.25)
    head = model.segmentation_head
    assert isinstance(head, nn.Sequential)
    assert isinstance(head[0], nn.Dropout2d)
    assert head[0].p == pytest.approx(0.25)


def test_state_dict_keys_do_not_depend_on_dropout() -> None:
    a = build_model("unet", in_channels=3, num_classes=2, dropout=0.0)
    b = build_model("unet", in_channels=3, num_classes=2, dropout=0.5)
    assert list(a.state_dict()) == list(b.state_dict())


def test_size_divisor_matches_smp_check() -> None:
    model = build_model("deeplabv3plus", in_channels=3, num_classes=2).eval()
    assert size_divisor(model) == 16
    with pytest.raises(RuntimeError, match="divisible by 16"):
        model(torch.randn(1, 3, 40, 40))
    assert size_divisor(build_model("unet", in_channels=3, num_classes=2)) == 1
    assert size_divisor(nn.Conv2d(3, 2, 1)) == 1


def test_unknown_model_suggests_nearest() -> None:
    with pytest.raises(LandlearnError, match="did you mean 'unet'"):
        build_model("unte", in_channels=3, num_classes=2)


def test_unknown_encoder_suggests_nearest() -> None:
    with pytest.raises(LandlearnError, match="unknown encoder 'resnet19'; did you mean 'resnet1"):
        build_model("unet", in_channels=3, num_classes=2, encoder="resnet19")


def test_pretrained_offline_is_a_landlearn_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(LandlearnError, match=r"'resnet18' could not be fetched \(offline\?\)"):
        build_model("unet", in_channels=4, num_classes=2, pretrained=True)
