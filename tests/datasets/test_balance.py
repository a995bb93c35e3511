"""Class counts, weights and the oversampling sampler, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landlearn.conventions import IGNORE_INDEX
from landlearn.data.balance import (
    class_counts_from_masks,
    class_counts_from_targets,
    class_weights,
    oversampling_sampler,
)
from landlearn.errors import LandlearnError


def test_counts_from_targets() -> None:
    counts = class_counts_from_targets([0, 2, 2, IGNORE_INDEX, 2, 0], num_classes=4)
    assert counts.tolist() == [2, 0, 3, 0]
    assert counts.dtype == np.int64
    assert class_counts_from_targets(torch.tensor([1, 1]), 2).tolist() == [0, 2]
    multi = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
    assert class_counts_from_targets(multi, 3).tolist() == [2, 1, 2]
    with pytest.raises(LandlearnError, match=r"class 5 outside 0\.\.3"):
        class_counts_from_targets([0, 5], 4)


def test_counts_from_masks_skip_ignore() -> None:
    masks = [
        np.array([[0, 1], [IGNORE_INDEX, 1]], dtype=np.uint8),
        torch.tensor([[2, 2, IGNORE_INDEX]]),
    ]
    assert class_counts_from_masks(masks, 3).tolist() == [1, 2, 2]
    with pytest.raises(LandlearnError, match="mask 0 has class 3"):
        class_counts_from_masks([np.array([3])], 3)


def test_inverse_weights_by_hand() -> None:
    # total 100, K=4: 100/(4*10)=2.5, 100/(4*30)=0.8333, absent, 100/(4*60)=0.41667
    w = class_weights(np.array([10, 30, 0, 60]), "inverse")
    raw = np.array([2.5, 100 / 120, 100 / 240])
    expect = raw / raw.mean()
    assert w.dtype == torch.float32
    np.testing.assert_allclose(w.numpy(), [expect[0], expect[1], 0.0, expect[2]], rtol=1e-6)
    assert w[w > 0].mean().item() == pytest.approx(1.0)


def test_sqrt_inverse_weights_by_hand() -> None:
    w = class_weights(np.array([1, 4]), "sqrt_inverse")  # raw sqrt: sqrt(2.5), sqrt(0.625)
    np.testing.assert_allclose(w.numpy(), [4 / 3, 2 / 3], rtol=1e-6)
    balanced = class_weights(np.array([5, 5, 5]))
    np.testing.assert_allclose(balanced.numpy(), [1.0, 1.0, 1.0])


def test_weight_errors() -> None:
    with pytest.raises(LandlearnError, match="did you mean 'inverse'"):
        class_weights(np.array([1, 2]), "invers")
    with pytest.raises(LandlearnError, match="no class"):
        class_weights(np.zeros(3))


def test_oversampling_draws_classes_equally_and_is_seeded() -> None:
    targets = [0] * 90 + [1] * 9 + [2] * 1
    sampler = oversampling_sampler(targets, seed=0, num_samples=3000)
    drawn = np.array(targets)[list(sampler)]
    share = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(share, [1 / 3] * 3, atol=0.03)
    np.testing.assert_allclose(sampler.weights[[0, 90, 99]].numpy(), [1 / 90, 1 / 9, 1.0])
    a = list(oversampling_sampler(targets, seed=5))
    b = list(oversampling_sampler(targets, seed=5))
    c = list(oversampling_sampler(targets, seed=6))
    assert a == b
    assert a != c
    assert len(a) == 100


def test_oversampling_never_draws_ignored() -> None:
    targets = [0, 1, IGNORE_INDEX, 1]
    drawn = list(oversampling_sampler(targets, seed=1, num_samples=200))
    assert 2 not in drawn
    with pytest.raises(LandlearnError, match="non-empty"):
        oversampling_sampler([], seed=0)
