"""Uncertainty helpers below tasks and mapping, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from landlearn.errors import LandlearnError
from landlearn.uncertainty import dropout_layers, entropy, mc_dropout, mutual_information


def test_entropy_in_nats() -> None:
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    assert torch.allclose(entropy(p), torch.tensor([math.log(2), 0.0]))  # type: ignore[arg-type]
    assert np.allclose(entropy(p.numpy()), [math.log(2), 0.0])


def test_mutual_information_is_disagreement_between_samples() -> None:
    # two samples, one pixel each: confident and opposite -> MI = log 2; identical -> 0
    opposite = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # (S=2, B=1, K=2)
    same = torch.tensor([[[0.7, 0.3]], [[0.7, 0.3]]])
    assert mutual_information(opposite).item() == pytest.approx(math.log(2), abs=1e-6)
    assert mutual_information(same).item() == pytest.approx(0.0, abs=1e-7)
    # hand value: samples (0.9, 0.1) and (0.5, 0.5): H[mean (0.7, 0.3)] - mean H
    s = torch.tensor([[[0.9, 0.1]], [[0.5, 0.5]]])
    h = lambda q: -sum(v * math.log(v) for v in q)  # noqa: E731
    want = h((0.7, 0.3)) - (h((0.9, 0.1)) + h((0.5, 0.5))) / 2
    assert mutual_information(s).item() == pytest.approx(want, abs=1e-6)
    maps = torch.rand(4, 2, 3, 5, 5).softmax(dim=2)  # (S, B, K, H, W)
    assert mutual_information(maps).shape == (2, 5, 5)


def test_mc_dropout_samples_only_the_dropout_layers() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Dropout2d(0.5)).eval()
    assert len(dropout_layers(model)) == 1
    with mc_dropout(model):
        assert model[2].training
        assert not model[1].training
        x = torch.rand(1, 3, 8, 8)
        assert not torch.equal(model(x), model(x))  # two different dropout draws
    assert not model[2].training
    with pytest.raises(LandlearnError, match=r"m\.safetensors: MC dropout needs"):
        with mc_dropout(nn.Conv2d(3, 4, 1), "m.safetensors"):
            pass
