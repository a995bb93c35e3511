"""The MLP regression head: shapes, variance layout, dropout placement, registry, bad options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landlearn.errors import LandlearnError
from landlearn.models import build_model, list_models, model_task
from landlearn.models.regressors import split_mean_logvar


def test_registered_as_a_regression_model() -> None:
    assert "mlp_regressor" in list_models()
    assert model_task("mlp_regressor") == "regression"


def test_means_only_and_with_log_variance() -> None:
    torch.manual_seed(0)
    plain = build_model("mlp_regressor", in_channels=54, num_classes=3, hidden=[16])
    x = torch.randn(5, 3, 18)  # a (B, S, C) series is flattened to 54 features
    assert plain(x).shape == (5, 3)
    assert torch.equal(plain(x), plain(x.flatten(1)))
    var = build_model("mlp_regressor", in_channels=54, num_classes=3, hidden=[16], variance=True)
    out = var(x)
    assert out.shape == (5, 6)
    mean, log_var = split_mean_logvar(out, 3)
    assert log_var is not None
    assert torch.equal(mean, out[:, :3])
    assert torch.equal(log_var, out[:, 3:])
    assert split_mean_logvar(plain(x), 3)[1] is None


def test_dropout_modules_always_present_and_keys_stable() -> None:
    a = build_model("mlp_regressor", in_channels=4, num_classes=1, hidden=[8, 8], dropout=0.0)
    b = build_model("mlp_regressor", in_channels=4, num_classes=1, hidden=[8, 8], dropout=0.3)
    assert a.state_dict().keys() == b.state_dict().keys()
    drops = [m for m in b.modules() if isinstance(m, nn.Dropout)]
    assert [m.p for m in drops] == [0.3, 0.3]


def test_single_sample_equals_batch_row() -> None:
    torch.manual_seed(0)
    model = build_model("mlp_regressor", in_channels=6, num_classes=2, hidden=[8]).eval()
    x = torch.randn(4, 6)
    torch.testing.assert_close(model(x[1:2]), model(x)[1:2])  # LayerNorm: no batch statistics


def test_variance_head_starts_at_unit_variance_bias() -> None:
    model = build_model("mlp_regressor", in_channels=3, num_classes=2, hidden=[4], variance=True)
    assert torch.equal(model.out.bias, torch.zeros(4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pretrained": True}, "mlp_regressor has no pretrained weights; set pretrained: false"),
        ({"hidden": [0]}, r"hidden sizes >= 1, got 4, 1, \[0\]"),
        ({"num_classes": 0}, "num_classes and hidden sizes >= 1"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_options(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"in_channels": 4, "num_classes": 1, **kwargs}
    with pytest.raises(LandlearnError, match=message):
        build_model("mlp_regressor", **args)  # type: ignore[arg-type]


def test_wrong_feature_count_is_a_landlearn_error() -> None:
    model = build_model("mlp_regressor", in_channels=4, num_classes=1)
    with pytest.raises(LandlearnError, match="expected 4 features per sample, got 5"):
        model(torch.zeros(2, 5))
