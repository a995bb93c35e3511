"""Classifier builders: shapes for any band count, dropout, pretrained paths, errors."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from landlearn.errors import LandlearnError
from landlearn.models import build_model, is_multi_input, list_models, model_task

# names starting with "test_" are tiny models other test folders register for themselves;
# multi-input models (in_channels per input) are tested in test_fusion_models.py
CLASSIFIERS = [
    n
    for n in list_models()
    if model_task(n) == "classification" and not n.startswith("test_") and not is_multi_input(n)
]


# ~70 M parameters: initialising it takes seconds on one core, so the default run builds it on
# the meta device (shapes and wiring, no numbers); with -m slow it is built for real.
HEAVY = {"wide_resnet50_2"}
CASES = [(n, c, "meta" if n in HEAVY else "cpu") for n in CLASSIFIERS for c in (3, 13)] + [
    pytest.param(n, c, "cpu", marks=pytest.mark.slow) for n in sorted(HEAVY) for c in (3, 13)
]


@pytest.mark.parametrize(("name", "in_channels", "device"), CASES)
def test_forward_shape(name: str, in_channels: int, device: str) -> None:
    torch.manual_seed(0)
    with torch.device(device):
        model = build_model(name, in_channels=in_channels, num_classes=7).eval()
        with torch.no_grad():
            out = model(torch.randn(2, in_channels, 64, 64))  # EuroSAT chips are 64×64
    assert out.shape == (2, 7)
    if device == "cpu":
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_dropout_module_before_classifier(name: str) -> None:
    with torch.device("meta" if name in HEAVY else "cpu"):
        model = build_model(name, in_channels=13, num_classes=4, dropout=0.3)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p == pytest.approx(0.3)]
    assert drops, "MC-dropout needs an nn.Dropout module with p = dropout"


def test_state_dict_keys_do_not_depend_on_dropout() -> None:
    a = build_model("resnet18", in_channels=3, num_classes=4, dropout=0.0)
    b = build_model("resnet18", in_channels=3, num_classes=4, dropout=0.5)
    assert list(a.state_dict()) == list(b.state_dict())


def test_small_input_keeps_twice_the_resolution_with_the_same_weights(tmp_path: Path) -> None:
    """``small_input`` drops the stem's max-pool.

    ``small_input`` drops the stem's max-pool: layer4 sees 4x4 instead of 2x2 on 64x64 chips,
    the state dict is unchanged, and a bundle rebuilds the same network from its kwargs.
    """
    from landlearn.bundle import BundleMeta, load_bundle, save_bundle

    torch.manual_seed(0)
    plain = build_model("resnet18", in_channels=3, num_classes=4)
    small = build_model("resnet18", in_channels=3, num_classes=4, small_input=True).eval()
    assert list(plain.state_dict()) == list(small.state_dict())
    seen: list[tuple[int, ...]] = []
    for model in (plain, small):
        hook = model.layer4.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
        model.eval()(torch.randn(1, 3, 64, 64))
        hook.remove()
    assert seen == [(2, 2), (4, 4)]
    meta = BundleMeta(
        task="classification", mode="multiclass", model_name="resnet18",
        model_kwargs={"small_input": True, "in_channels": 3, "num_classes": 4, "dropout": 0.0},
        band_names=["red", "green", "blue"], mean=[0.0] * 3, std=[1.0] * 3,
        class_names=list("abcd"), class_colors=[[0, 0, 0]] * 4, ignore_index=255,
        chip_size=64, metrics={},
    )  # fmt: skip
    path = save_bundle(tmp_path / "small.safetensors", small, meta)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(load_bundle(path).model(x), small(x))


def test_dropout_active_in_train_mode_only() -> None:
    model = build_model("small_cnn", in_channels=3, num_classes=4, dropout=0.9)
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(x), model(x))


def test_vit_small_patch_size_and_odd_size() -> None:
    model = build_model("vit_small", in_channels=4, num_classes=3, patch_size=8, img_size=32)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 4, 48, 48)).shape == (1, 3)


def test_unknown_name_suggests_nearest() -> None:
    with pytest.raises(LandlearnError, match="'resnet18'"):
        build_model("resnet_18", in_channels=3, num_classes=2)


def test_small_cnn_has_no_pretrained_weights() -> None:
    with pytest.raises(LandlearnError, match="pretrained: false"):
        build_model("small_cnn", in_channels=3, num_classes=2, pretrained=True)


def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # huggingface_hub reads these at call time; an empty cache makes the outcome certain.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_pretrained_offline_is_a_landlearn_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _offline(monkeypatch, tmp_path)
    with pytest.raises(LandlearnError, match=r"'resnet18' could not be fetched \(offline\?\)"):
        build_model("resnet18", in_channels=3, num_classes=2, pretrained=True)


def test_pretrained_extra_bands_repeat_rgb_kernels(tmp_path: Path) -> None:
    """Timm's ``in_chans`` adapts RGB weights: cyclic repeat R,G,B,R,... scaled by 3 / C."""
    torch.manual_seed(0)
    rgb = timm.create_model("resnet18", in_chans=3)  # stands in for ImageNet weights
    path = tmp_path / "resnet18.safetensors"
    save_file(rgb.state_dict(), str(path))
    model = build_model(
        "resnet18",
        in_channels=13,
        num_classes=10,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(path)},
    )
    w_rgb = rgb.conv1.weight  # (64, 3, 7, 7)
    expected = w_rgb[:, [i % 3 for i in range(13)]] * (3 / 13)
    torch.testing.assert_close(model.conv1.weight, expected)
    torch.testing.assert_close(model.layer1[0].conv1.weight, rgb.layer1[0].conv1.weight)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 13, 32, 32)).shape == (1, 10)


# ---- any timm classifier as "timm:<name>" ---------------------------------------------------


def test_timm_prefix_builds_any_timm_classifier() -> None:
    torch.manual_seed(0)
    model = build_model("timm:convnext_atto", in_channels=13, num_classes=5, dropout=0.2).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 13, 64, 64))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    assert model_task("timm:convnext_atto") == "classification"
    assert model.stem[0].in_channels == 13
    head = model.head.fc  # timm's pretrained_cfg["classifier"] is "head.fc" for ConvNeXt
    assert isinstance(head, nn.Sequential)
    assert isinstance(head[0], nn.Dropout)
    assert head[0].p == pytest.approx(0.2)
    assert "timm:convnext_atto" not in list_models()  # timm's thousand names are not listed


def test_timm_prefix_unknown_names_say_the_nearest() -> None:
    with pytest.raises(LandlearnError, match="unknown timm model 'convnext_ato'; did you mean "
                       "'convnext_atto'"):  # fmt: skip
        build_model("timm:convnext_ato", in_channels=3, num_classes=2)
    with pytest.raises(LandlearnError, match="for the timm model write 'timm:convnext_atto'"):
        build_model("convnext_atto", in_channels=3, num_classes=2)
    with pytest.raises(LandlearnError, match="unknown model 'resnet81'; did you mean 'resnet18'"):
        build_model("resnet81", in_channels=3, num_classes=2)
    with pytest.raises(LandlearnError, match="has none"):
        build_model("timm:convnext_atto", in_channels=3, num_classes=2, small_input=True)


def test_timm_prefix_task_and_bundle_round_trip(tmp_path: Path) -> None:
    from landlearn.bundle import BundleMeta, load_bundle, save_bundle
    from landlearn.tasks import ClassificationTask

    task = ClassificationTask(model="timm:resnet10t", num_classes=3, in_channels=4)
    assert task.model is not None
    meta = BundleMeta(task="classification", model_name="timm:resnet10t", model_kwargs={},
                      band_names=["a", "b", "c", "d"], class_names=["x", "y", "z"],
                      mean=[0.0] * 4, std=[1.0] * 4)  # fmt: skip
    save_bundle(tmp_path / "m.safetensors", task.model.eval(), meta)
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        expected = torch.softmax(task.model(x), dim=1)
    got = load_bundle(tmp_path / "m.safetensors").predict_proba(x)
    torch.testing.assert_close(torch.as_tensor(got), expected)
