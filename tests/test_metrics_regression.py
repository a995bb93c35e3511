"""Regression metrics against numbers worked out here with numpy: NaN targets, NLL, pixels, sync."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from landlearn.errors import LandlearnError
from landlearn.metrics import RegressionMetrics

# Two targets, five samples; target 1 is unknown for sample 2 and target 0 for sample 4.
PRED = np.array([[1.0, 10.0], [2.0, 12.0], [3.5, 9.0], [5.0, 11.0], [0.0, 14.0]])
TRUE = np.array([[1.5, 11.0], [2.0, 10.0], [3.0, np.nan], [4.0, 13.0], [np.nan, 12.0]])
LOGVAR = np.array([[0.0, 1.0], [-1.0, 0.5], [0.2, 0.0], [0.5, -0.5], [3.0, 0.0]])


def _expected(pred: np.ndarray, true: np.ndarray, logvar: np.ndarray) -> dict[str, list[float]]:
    """Per-target numbers from the definitions, labelled entries only."""
    out: dict[str, list[float]] = {"mae": [], "rmse": [], "r2": [], "nll": [], "count": []}
    for j in range(true.shape[1]):
        keep = ~np.isnan(true[:, j])
        p, y, lv = pred[keep, j], true[keep, j], logvar[keep, j]
        out["mae"].append(float(np.mean(np.abs(p - y))))
        out["rmse"].append(float(np.sqrt(np.mean((p - y) ** 2))))
        out["r2"].append(float(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)))
        nll = 0.5 * (np.log(2 * np.pi) + lv + (y - p) ** 2 / np.exp(lv))
        out["nll"].append(float(np.mean(nll)))
        out["count"].append(int(keep.sum()))
    return out


def test_hand_computed_values_with_nan_targets() -> None:
    # target 0 by hand: errors -0.5, 0, 0.5, 1 → MAE 0.5, RMSE sqrt(1.5 / 4)
    want = _expected(PRED, TRUE, LOGVAR)
    assert want["mae"][0] == pytest.approx(0.5)
    assert want["rmse"][0] == pytest.approx(1.5**0.5 / 2)
    m = RegressionMetrics(["a", "b"])
    t = torch.tensor
    m.update(t(PRED[:3]), t(TRUE[:3]), t(LOGVAR[:3]))
    m.update(t(PRED[3:]).float(), t(TRUE[3:]).float(), t(LOGVAR[3:]).float())
    got = m.compute()
    for key in ("mae", "rmse", "r2", "nll"):
        assert got["per_target"][key] == pytest.approx(want[key], rel=1e-6), key
        assert got[key] == pytest.approx(np.mean(want[key]), rel=1e-6), key
    assert got["per_target"]["count"] == want["count"] == [4, 4]
    assert got["targets"] == ["a", "b"]
    assert got["task"] == "regression"
    json.dumps(got, allow_nan=False)


def test_r2_matches_the_textbook_value_and_nll_is_none_without_variance() -> None:
    y = np.array([3.0, -0.5, 2.0, 7.0])
    p = np.array([2.5, 0.0, 2.0, 8.0])
    # scikit-learn's documented r2_score example: 0.948...
    r2 = 1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r2 == pytest.approx(0.9486081370449679)
    m = RegressionMetrics(1)
    m.update(torch.tensor(p), torch.tensor(y))  # (B,) for a single target
    got = m.compute()
    assert got["r2"] == pytest.approx(r2)
    assert got["nll"] is None
    assert got["per_target"]["nll"] == [None]
    assert got["targets"] == ["target_0"]


def test_undefined_values_are_none_not_nan() -> None:
    m = RegressionMetrics(2)
    m.update(torch.tensor([[1.0, 2.0], [2.0, 3.0]]), torch.tensor([[5.0, math.nan], [5.0, 1.0]]))
    got = m.compute()
    assert got["per_target"]["r2"] == [None, None]  # constant target; a single labelled value
    assert got["r2"] is None
    assert got["per_target"]["mae"] == pytest.approx([3.5, 2.0])
    empty = RegressionMetrics(1).compute()
    assert empty["mae"] is None
    assert empty["per_target"]["count"] == [0]


def test_pixel_targets() -> None:
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(2, 2, 3, 3))
    true = pred + rng.normal(scale=0.3, size=pred.shape)
    true[0, 1, 0, :] = np.nan
    flat_p = np.moveaxis(pred, 1, -1).reshape(-1, 2)
    flat_t = np.moveaxis(true, 1, -1).reshape(-1, 2)
    want = _expected(flat_p, flat_t, np.zeros_like(flat_p))
    m = RegressionMetrics(2)
    m.update(torch.tensor(pred), torch.tensor(true), torch.zeros(2, 2, 3, 3))
    got = m.compute()
    assert got["per_target"]["count"] == [18, 15]
    for key in ("mae", "rmse", "r2", "nll"):
        assert got["per_target"][key] == pytest.approx(want[key], rel=1e-6), key


def test_states_sync_across_processes() -> None:
    m = RegressionMetrics(2)
    assert all(fx is not None for fx in m._reductions.values())
    whole, rank0, rank1 = RegressionMetrics(2), RegressionMetrics(2), RegressionMetrics(2)
    p, y, lv = (torch.tensor(a) for a in (PRED, TRUE, LOGVAR))
    whole.update(p, y, lv)
    rank0.update(p[:2], y[:2], lv[:2])
    rank1.update(p[2:], y[2:], lv[2:])
    rank0.merge_state(rank1)  # what a DDP sync does with the registered reductions
    a, b = rank0.compute(), whole.compute()
    for key in ("mae", "rmse", "r2", "nll"):
        assert a[key] == pytest.approx(b[key], rel=1e-12)


def test_bad_shapes_are_landlearn_errors() -> None:
    m = RegressionMetrics(["a", "b"])
    with pytest.raises(LandlearnError, match=r"pred has shape \(4, 3\); expected \(B, 2\)"):
        m.update(torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(LandlearnError, match=r"pred \(4, 2\) and target \(3, 2\) do not match"):
        m.update(torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(LandlearnError, match=r"log_var \(3, 2\) and target \(4, 2\)"):
        m.update(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(LandlearnError, match="at least one target"):
        RegressionMetrics([])
