"""Late, gated, progressive and early fusion of rasters and tables; the fusion U-Nets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landlearn.errors import LandlearnError
from landlearn.models import build_model, is_multi_input, list_models, model_task
from landlearn.models.branches import FusionInputs, keep_mask
from landlearn.models.progressive_fusion import ContextStage
from landlearn.models.segmenters import size_divisor

SCENE = ("early_fusion", "late_fusion", "gated_fusion", "progressive_fusion")
PIXEL = ("late_fusion_unet", "gated_fusion_unet", "early_fusion_unet")
TINY = "test_resnet"  # timm's test model: 0.4 M parameters


def _image_table(batch: int = 4, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.randn(batch, 3, size, size, generator=g),
            "meta": torch.randn(batch, 7, generator=g)}  # fmt: skip


def _scene(name: str, num_classes: int = 5, **kw: object) -> nn.Module:
    return build_model(name, in_channels={"image": 3, "meta": 7}, num_classes=num_classes,
                       tables=["meta"], encoder=TINY, **kw)  # fmt: skip


@pytest.mark.parametrize("name", SCENE + PIXEL)
def test_every_fusion_name_is_registered_multi_input(name: str) -> None:
    assert name in list_models()
    assert is_multi_input(name)
    assert model_task(name) == ("segmentation" if name in PIXEL else "classification")


@pytest.mark.parametrize("name", SCENE)
def test_scene_fusion_of_image_and_table_trains(name: str) -> None:
    torch.manual_seed(0)
    model = _scene(name, modality_dropout=0.25)
    out = model(_image_table())
    assert out.shape == (4, 5)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.input_names == ("image", "meta")


@pytest.mark.parametrize("name", ["late_fusion", "gated_fusion", "progressive_fusion"])
def test_image_plus_image_with_own_encoders_and_band_counts(name: str) -> None:
    model = build_model(name, in_channels={"s2": 4, "s1": 2}, num_classes=3,
                        encoder=TINY, encoders={"s1": "test_convnext"})  # fmt: skip
    x = {"s2": torch.randn(2, 4, 32, 32), "s1": torch.randn(2, 2, 48, 48)}  # grids may differ
    assert model(x).shape == (2, 3)


@pytest.mark.parametrize("name", SCENE)
def test_one_output_for_binary_or_one_target_and_k_for_multilabel(name: str) -> None:
    for k in (1, 6):
        assert _scene(name, num_classes=k)(_image_table()).shape == (4, k)


def test_progressive_context_reaches_every_stage_and_gradients_flow_through_iterations() -> None:
    torch.manual_seed(0)
    model = _scene("progressive_fusion", iterations=2)
    stages = [m for m in model.modules() if isinstance(m, ContextStage)]
    assert len(stages) == 5  # stem + four residual stages of the ResNet
    contexts = model.contexts(_image_table())
    assert len(contexts) == 3
    assert all(c.shape == (4, 256) for c in contexts)
    model.head(contexts[-1]).sum().backward()
    # the back-projection starts at zero; only a non-zero context gives it a gradient,
    # and that context exists only from the first iteration on
    assert all(s.project.weight.grad is not None and s.project.weight.grad.abs().sum() > 0
               for s in stages)  # fmt: skip
    assert all(s.context is None for s in stages)  # cleared after the pass

    flat = _scene("progressive_fusion", iterations=0)
    flat.head(flat.contexts(_image_table())[-1]).sum().backward()
    assert all(float(s.project.weight.grad.abs().sum()) == 0.0
               for s in flat.modules() if isinstance(s, ContextStage))  # fmt: skip


def test_progressive_on_vit_tokens() -> None:
    model = build_model("progressive_fusion", in_channels={"image": 3, "meta": 4},
                        num_classes=2, tables=["meta"], encoder="test_vit",
                        iterations=1)  # fmt: skip
    out = model({"image": torch.randn(2, 3, 160, 160), "meta": torch.randn(2, 4)})
    assert out.shape == (2, 2)
    assert sum(isinstance(m, ContextStage) for m in model.modules()) == 6


def test_keep_mask_never_drops_every_input() -> None:
    torch.manual_seed(0)
    keep = keep_mask(2000, 3, 0.6, torch.device("cpu"))
    assert keep.any(dim=1).all()
    assert 0.3 < 1 - keep.float().mean() < 0.6


def test_modality_dropout_only_while_training() -> None:
    fusion = FusionInputs({"a": 3, "b": 2}, ["b"], model="m", modality_dropout=0.5)
    x = [torch.zeros(64, 3, 4, 4), torch.zeros(64, 2)]
    fusion.train()
    torch.manual_seed(0)
    assert not fusion.keep(x, 64, torch.device("cpu")).all()
    fusion.eval()
    assert fusion.keep(x, 64, torch.device("cpu")).all()


@pytest.mark.parametrize("name", SCENE)
def test_missing_input_predicts_when_trained_with_modality_dropout(name: str) -> None:
    model = _scene(name, modality_dropout=0.3).eval()
    x = _image_table()
    with torch.no_grad():
        out = model({"image": x["image"]})
    assert out.shape == (4, 5)
    assert torch.isfinite(out).all()
    assert model.last_missing == ("meta",)
    with torch.no_grad():
        model(x)
    assert model.last_missing == ()


def test_missing_input_is_the_input_dropped() -> None:
    model = _scene("late_fusion", modality_dropout=0.3).eval()
    x = _image_table()
    with torch.no_grad():
        absent = model({"image": x["image"]})
        f = model.branches["image"](x["image"])
        by_hand = model.head(torch.cat([f, torch.zeros(4, model.widths["meta"])], 1))
    assert torch.allclose(absent, by_hand, atol=1e-6)


def test_gated_missing_input_gets_no_gate() -> None:
    model = _scene("gated_fusion").eval()
    with torch.no_grad():
        model({"image": _image_table()["image"]})
    assert model.gate_weights() == {"image": 1.0, "meta": 0.0}


@pytest.mark.parametrize("name", SCENE)
def test_missing_input_refused_without_modality_dropout_or_when_strict(name: str) -> None:
    x = {"image": _image_table()["image"]}
    with pytest.raises(LandlearnError, match="never learnt to do without"):
        _scene(name, modality_dropout=0.0)(x)
    with pytest.raises(LandlearnError, match="it is strict"):
        _scene(name, modality_dropout=0.3, strict=True)(x)


def test_early_fusion_broadcasts_the_table_as_constant_channels() -> None:
    model = _scene("early_fusion", modality_dropout=0.1).eval()
    x = _image_table()
    stacked = model.stack(x)
    assert stacked.shape == (4, 10, 32, 32)
    assert torch.equal(stacked[:, 3:], x["meta"][:, :, None, None].expand(4, 7, 32, 32))
    with torch.no_grad():
        assert torch.allclose(model(x), model.net(stacked))


def _noise_task(n: int = 512) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``signal`` (a table) determines the label; ``meta`` is pure noise."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.randn(3, 6, generator=g) * 2
    signal = centres[y] + 0.5 * torch.randn(n, 6, generator=g)
    return {"signal": signal, "meta": torch.randn(n, 6, generator=g)}, y


def _train(model: nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor, steps: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        i = torch.arange(step * 64, step * 64 + 64) % len(y)
        loss = nn.functional.cross_entropy(model({k: v[i] for k, v in x.items()}), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _accuracy(model: nn.Module, x: dict[str, torch.Tensor], y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_gate_learns_to_ignore_pure_noise_metadata() -> None:
    torch.manual_seed(0)
    x, y = _noise_task()
    model = build_model("gated_fusion", in_channels={"signal": 6, "meta": 6}, num_classes=3,
                        tables=["signal", "meta"], width=16)  # fmt: skip
    _train(model, x, y, 300)
    assert _accuracy(model, x, y) > 0.9
    gates = model.gate_weights()
    assert gates["meta"] < 0.3 < 0.7 < gates["signal"], gates


def test_late_fusion_permutation_importance_of_noise_is_near_zero() -> None:
    torch.manual_seed(0)
    x, y = _noise_task()
    model = build_model("late_fusion", in_channels={"signal": 6, "meta": 6}, num_classes=3,
                        tables=["signal", "meta"])  # fmt: skip
    _train(model, x, y, 300)
    base = _accuracy(model, x, y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    noise_drop = base - _accuracy(model, {**x, "meta": x["meta"][perm]}, y)
    signal_drop = base - _accuracy(model, {**x, "signal": x["signal"][perm]}, y)
    assert base > 0.9
    assert abs(noise_drop) < 0.05 < 0.4 < signal_drop


@pytest.mark.parametrize("name", ["late_fusion_unet", "gated_fusion_unet"])
def test_fusion_unets_segment_with_skips_and_table_film(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, in_channels={"s2": 4, "s1": 2, "meta": 5}, num_classes=2,
                        tables=["meta"], modality_dropout=0.3, encoder="resnet18",
                        decoder_channels=(32, 16, 16, 8, 8))  # fmt: skip
    x = {"s2": torch.randn(2, 4, 64, 64), "s1": torch.randn(2, 2, 64, 64),
         "meta": torch.randn(2, 5)}  # fmt: skip
    out = model(x)
    assert out.shape == (2, 2, 64, 64)
    out.mean().backward()
    assert size_divisor(model) == 32
    model.eval()
    with torch.no_grad():
        clear = model(x)
        no_s2 = model({"s1": x["s1"], "meta": x["meta"]})
    assert no_s2.shape == clear.shape
    assert model.last_missing == ("s2",)
    if name == "gated_fusion_unet":
        assert model.last_gates is not None
        assert torch.allclose(model.last_gates[:, 0], torch.zeros(2))  # s2's gate closed


def test_fusion_unet_table_film_starts_as_identity() -> None:
    model = build_model("late_fusion_unet", in_channels={"s2": 4, "meta": 5}, num_classes=2,
                        tables=["meta"], decoder_channels=(32, 16, 16, 8, 8)).eval()  # fmt: skip
    x = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        a = model({"s2": x, "meta": torch.zeros(1, 5)})
        b = model({"s2": x, "meta": torch.randn(1, 5)})
    assert torch.allclose(a, b)


def test_bad_fusion_inputs_are_one_line_errors() -> None:
    with pytest.raises(LandlearnError, match=r"tables \['rows'\] are not among its inputs"):
        build_model("late_fusion", in_channels={"image": 3}, num_classes=2, tables=["rows"])
    with pytest.raises(LandlearnError, match=r"encoders names \['s3'\]"):
        build_model("gated_fusion", in_channels={"s2": 3}, num_classes=2, encoders={"s3": "x"})
    with pytest.raises(LandlearnError, match="modality_dropout must be in"):
        _scene("late_fusion", modality_dropout=1.0)
    with pytest.raises(LandlearnError, match="unknown timm model"):
        build_model("late_fusion", in_channels={"s2": 3}, num_classes=2, encoder="resnet_18")
    model = _scene("late_fusion")
    with pytest.raises(LandlearnError, match=r"input 'meta' must be \(B, F\) with 7 columns"):
        model({"image": torch.randn(2, 3, 32, 32), "meta": torch.randn(2, 6)})
    with pytest.raises(LandlearnError, match="got none of them"):
        model({"s1": torch.randn(2, 2, 8, 8)})
    with pytest.raises(LandlearnError, match="iterations must be >= 0"):
        _scene("progressive_fusion", iterations=-1)
    unet = build_model("late_fusion_unet", in_channels={"s2": 4, "s1": 2}, num_classes=2)
    with pytest.raises(LandlearnError, match="different grids"):
        unet({"s2": torch.randn(1, 4, 64, 64), "s1": torch.randn(1, 2, 32, 32)})
