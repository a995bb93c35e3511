"""Regression losses: NaN targets never count, all-NaN gives 0 not NaN, hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from landlearn.errors import LandlearnError
from landlearn.regression_losses import build_regression_loss, list_regression_losses

NAN = math.nan


def test_names() -> None:
    assert list_regression_losses() == ["gaussian_nll", "huber", "l1", "mse"]


@pytest.mark.parametrize("name", list_regression_losses())
def test_nan_targets_leave_the_loss_unchanged_and_all_nan_gives_zero(name: str) -> None:
    loss = build_regression_loss(name, num_targets=2)
    g = torch.Generator().manual_seed(0)
    out = torch.randn(4, 4, generator=g)  # room for means and log-variances
    if name != "gaussian_nll":
        out = out[:, :2]
    target = torch.randn(4, 2, generator=g)
    target[1, 0] = target[3, 1] = NAN
    changed = out.clone()
    changed[1, 0] += 5.0  # a prediction whose target is unknown
    changed[3, 1] -= 3.0
    assert torch.equal(loss(out, target), loss(changed, target))
    empty = out.clone().requires_grad_(True)
    value = loss(empty, torch.full((4, 2), NAN))
    value.backward()
    assert float(value.detach()) == 0.0
    assert empty.grad is not None
    assert not empty.grad.isnan().any()


def test_hand_computed_values() -> None:
    p = np.array([[1.0], [2.0], [4.0]])
    y = np.array([[2.0], [NAN], [1.0]])
    lv = np.array([[0.0], [5.0], [1.0]])
    keep = ~np.isnan(y)
    err = (p - y)[keep]
    out, target = torch.tensor(p), torch.tensor(y)
    assert float(build_regression_loss("mse", num_targets=1)(out, target)) == pytest.approx(
        np.mean(err**2)
    )  # (1 + 9) / 2
    assert float(build_regression_loss("l1", num_targets=1)(out, target[:, 0])) == 2.0
    huber = np.mean(np.where(np.abs(err) <= 1, 0.5 * err**2, np.abs(err) - 0.5))
    assert float(build_regression_loss("huber", num_targets=1)(out, target)) == pytest.approx(huber)
    nll = np.mean(0.5 * (lv[keep] + err**2 / np.exp(lv[keep])))
    both = torch.tensor(np.concatenate([p, lv], axis=1))
    got = build_regression_loss({"name": "gaussian_nll"}, num_targets=1)(both, target)
    assert float(got) == pytest.approx(nll)


def test_pixel_targets() -> None:
    out = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[[1.0, NAN], [3.0, 1.0]], [[NAN, NAN], [2.0, 0.0]]]])
    assert float(build_regression_loss("l1", num_targets=2)(out, target)) == pytest.approx(7 / 5)


def test_bad_specs() -> None:
    with pytest.raises(LandlearnError, match=r"unknown regression loss 'mae'"):
        build_regression_loss("mae", num_targets=1)
    with pytest.raises(
        LandlearnError, match=r"unknown option\(s\) gamma for loss 'huber'; known: delta"
    ):
        build_regression_loss({"name": "huber", "gamma": 2}, num_targets=1)
    with pytest.raises(LandlearnError, match="needs a model that predicts a variance"):
        build_regression_loss("gaussian_nll", num_targets=1)(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(LandlearnError, match=r"do not fit 2 targets"):
        build_regression_loss("mse", num_targets=2)(torch.zeros(2, 3), torch.zeros(2, 2))
