"""Segmenter builders: shapes for any band count, dropout before the head, errors."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from torch import nn

from landlearn.errors import LandlearnError
from landlearn.models import build_model, is_multi_input, list_models, model_task
from landlearn.models.registry import builder_signature
from landlearn.models.segmenters import size_divisor

# names starting with "test_" are tiny models other test folders register for themselves;
# multi-input models (in_channels per input) are tested in test_fusion.py
SEGMENTERS = [
    n
    for n in list_models()
    if model_task(n) == "segmentation" and not n.startswith("test_") and not is_multi_input(n)
]


@pytest.mark.parametrize("in_channels", [3, 13])
@pytest.mark.parametrize("name", SEGMENTERS)
def test_forward_shape(name: str, in_channels: int) -> None:
    torch.manual_seed(0)
    options = {"encoder": "resnet18"} if "encoder" in builder_signature(name).parameters else {}
    model = build_model(name, in_channels=in_channels, num_classes=5, **options).eval()
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


@pytest.mark.parametrize(("bands", "arch"), [(13, "unet"), (1, "deeplabv3plus")])
def test_pretrained_encoder_adapts_first_conv(
    bands: int, arch: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Smp loads RGB weights, then ``set_in_channels``: C > 3 repeats R,G,B,... × 3 / C; 1 sums.

    The hub download is replaced by a local file of a random RGB encoder (no network), so the
    real load and adaptation path of smp runs.
    """
    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rgb = smp.encoders.get_encoder("resnet18", in_channels=3)  # stands in for ImageNet weights
    state = {k: v.contiguous() for k, v in rgb.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    fetched: list[str] = []

    def fake_download(repo_id: str, filename: str, revision: str | None = None) -> str:
        fetched.append(f"{repo_id}/{filename}")
        return str(tmp_path / filename)

    monkeypatch.setattr(smp.encoders, "hf_hub_download", fake_download)
    model = build_model(arch, in_channels=bands, num_classes=4, encoder="resnet18", pretrained=True)
    assert any(f.endswith("model.safetensors") for f in fetched)
    w_rgb = rgb.conv1.weight  # (64, 3, 7, 7)
    if bands == 1:
        expected = w_rgb.sum(1, keepdim=True)
    else:
        expected = w_rgb[:, [i % 3 for i in range(bands)]] * (3 / bands)
    torch.testing.assert_close(model.encoder.conv1.weight, expected)
    torch.testing.assert_close(model.encoder.layer4[1].conv2.weight, rgb.layer4[1].conv2.weight)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, bands, 64, 64)).shape == (1, 4, 64, 64)
