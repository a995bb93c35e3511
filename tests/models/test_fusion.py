"""Early fusion: named inputs stacked along channels in ``input_names`` order, then a U-Net."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
import yaml
from tests.conftest import ROOT
from torch import nn

from landlearn.errors import LandlearnError
from landlearn.models import build_model, is_multi_input, model_task
from landlearn.models.segmenters import size_divisor


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "s2": torch.randn(2, 13, 64, 64, generator=g),
        "s1": torch.randn(2, 2, 64, 64, generator=g),
    }


def test_registered_as_a_multi_input_segmenter() -> None:
    assert model_task("early_fusion_unet") == "segmentation"
    assert is_multi_input("early_fusion_unet")
    assert not is_multi_input("unet")


def test_forward_stacks_inputs_in_input_names_order() -> None:
    torch.manual_seed(0)
    model = build_model("early_fusion_unet", in_channels={"s2": 13, "s1": 2}, num_classes=2).eval()
    assert model.input_names == ("s2", "s1")
    x = _inputs()
    with torch.no_grad():
        out = model(x)
        swapped = model({"s1": x["s1"], "s2": x["s2"]})  # dict order does not matter
        direct = model.net(torch.cat([x["s2"], x["s1"]], dim=1))
        stacked = model(torch.cat([x["s2"], x["s1"]], dim=1))
        other = model.net(torch.cat([x["s1"], x["s2"][:, :2], x["s2"][:, 2:]], dim=1))
    assert out.shape == (2, 2, 64, 64)
    assert torch.isfinite(out).all()
    assert torch.equal(out, swapped)
    assert torch.equal(out, direct)
    assert torch.equal(out, stacked)
    assert not torch.allclose(out, other)  # s1 first would be another stacking
    first = model.net.encoder.conv1
    assert isinstance(first, nn.Conv2d)
    assert first.in_channels == 15


def test_in_channels_order_is_the_stacking_order() -> None:
    model = build_model("early_fusion_unet", in_channels={"s1": 2, "s2": 13}, num_classes=3)
    assert model.input_names == ("s1", "s2")
    assert model.in_channels == {"s1": 2, "s2": 13}


def test_one_input_is_the_unet_on_that_input() -> None:
    torch.manual_seed(0)
    fused = build_model("early_fusion_unet", in_channels={"s2": 13}, num_classes=2).eval()
    torch.manual_seed(0)
    plain = build_model("unet", in_channels=13, num_classes=2).eval()
    x = _inputs()["s2"]
    with torch.no_grad():
        assert torch.equal(fused({"s2": x}), plain(x))
    assert [k.removeprefix("net.") for k in fused.state_dict()] == list(plain.state_dict())


def test_dropout_and_size_divisor_see_through_the_wrapper() -> None:
    model = build_model(
        "early_fusion_unet", in_channels={"a": 3, "b": 1}, num_classes=2, dropout=0.3
    )
    head = model.net.segmentation_head
    assert isinstance(head[0], nn.Dropout2d)
    assert head[0].p == pytest.approx(0.3)
    assert size_divisor(model) == size_divisor(model.net) == 1
    assert model.encoder is model.net.encoder


def test_bad_inputs_are_one_line_errors() -> None:
    with pytest.raises(LandlearnError, match=r"in_channels per input, e.g. \{s2: 13, s1: 2\}"):
        build_model("early_fusion_unet", in_channels=15, num_classes=2)
    with pytest.raises(LandlearnError, match="band counts >= 1"):
        build_model("early_fusion_unet", in_channels={"s2": 0}, num_classes=2)
    model = build_model("early_fusion_unet", in_channels={"s2": 13, "s1": 2}, num_classes=2)
    x = _inputs()
    with pytest.raises(LandlearnError, match=r"missing \['s1'\]"):
        model({"s2": x["s2"]})
    with pytest.raises(LandlearnError, match=r"input 's1' must be \(B, 2, H, W\), got \(2, 3"):
        model({"s2": x["s2"], "s1": torch.zeros(2, 3, 64, 64)})
    with pytest.raises(LandlearnError, match="one grid"):
        model({"s2": x["s2"], "s1": torch.zeros(2, 2, 32, 32)})
    with pytest.raises(LandlearnError, match=r"stacked input must be \(B, 15, H, W\)"):
        model(torch.zeros(2, 13, 64, 64))
    with pytest.raises(LandlearnError, match="unknown option 'encodr'"):
        build_model("early_fusion_unet", in_channels={"s2": 13}, num_classes=2, encodr="x")


# ---- real data: the Sen1Floods11 configs' datamodule and model, from Python -------------------


@pytest.mark.real
@pytest.mark.parametrize("variant", ["s1s2", "s2", "s1"])
def test_real_sen1floods11_config_batch_through_the_model(
    variant: str, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config's real batch trains every input's bands.

    The config's datamodule and model: a normalised real batch, logits, a finite loss whose
    gradient reaches the first convolution's weights of every input's bands.
    """
    config = yaml.safe_load((ROOT / "configs" / f"sen1floods11_{variant}.yaml").read_text())
    monkeypatch.chdir(ROOT)  # configs name ../shared/data relative to the checkout
    data = config["data"]
    module, _, name = data["class_path"].rpartition(".")
    init = {**data["init_args"], "samples_per_epoch": 4, "batch_size": 4}
    dm = getattr(importlib.import_module(module), name)(**init)
    dm.setup("fit")
    specs, (head,) = dm.input_specs, dm.head_specs
    assert [s.name for s in specs] == list(data["init_args"]["inputs"])
    task = config["model"]["init_args"]
    torch.manual_seed(0)
    model = build_model(
        task["model"],
        in_channels={s.name: s.num_bands for s in specs},
        num_classes=len(head.classes),
        **task["model_kwargs"],
    )
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    logits = model({s.name: batch[s.name] for s in specs})
    assert logits.shape == (4, 2, 64, 64)
    loss = nn.functional.cross_entropy(logits, batch["mask"], ignore_index=head.ignore_index)
    assert torch.isfinite(loss)
    loss.backward()
    grad = model.net.encoder.conv1.weight.grad  # (64, sum C, 7, 7)
    assert grad is not None
    assert grad.shape[1] == sum(s.num_bands for s in specs)
    assert (grad.abs().sum(dim=(0, 2, 3)) > 0).all()
