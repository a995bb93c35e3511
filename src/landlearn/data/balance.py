"""Class balance: counts, loss weights and a sampler that draws every class equally often."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.registry import unknown_name

__all__ = [
    "WEIGHT_MODES",
    "class_counts_from_masks",
    "class_counts_from_targets",
    "class_weights",
    "oversampling_sampler",
]

log = logging.getLogger(__name__)

WEIGHT_MODES = ("inverse", "sqrt_inverse")
"""Names accepted by ``class_weights(mode=...)``."""


def _to_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _check_range(values: np.ndarray, num_classes: int, what: str) -> None:
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = values[(values < 0) | (values >= num_classes)][0]
        raise LandlearnError(
            f"{what} has class {int(bad)} outside 0..{num_classes - 1}; check num_classes"
        )


def class_counts_from_targets(targets: Any, num_classes: int) -> np.ndarray:
    """Samples per class, ``(num_classes,)`` int64.

    Args:
        targets: Class indices ``(N,)`` (``IGNORE_INDEX`` skipped), or multi-hot ``(N, K)``, where a
            sample counts once for each class it has.

    Raises:
        LandlearnError: A class index is outside ``0..num_classes-1``, or ``K != num_classes``.
    """
    values = _to_numpy(targets)
    if values.ndim == 2:
        if values.shape[1] != num_classes:
            raise LandlearnError(
                f"multi-label targets have {values.shape[1]} columns, expected {num_classes}"
            )
        return (values > 0).sum(axis=0).astype(np.int64)
    values = values.reshape(-1).astype(np.int64)
    values = values[values != IGNORE_INDEX]
    _check_range(values, num_classes, "targets")
    return np.bincount(values, minlength=num_classes).astype(np.int64)


def class_counts_from_masks(masks_iterable: Iterable[Any], num_classes: int) -> np.ndarray:
    """Pixels per class over masks (arrays or tensors of any shape), ``IGNORE_INDEX`` skipped.

    Raises:
        LandlearnError: A mask value is outside ``0..num_classes-1`` and not ``IGNORE_INDEX``.
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for i, mask in enumerate(masks_iterable):
        values = _to_numpy(mask).reshape(-1).astype(np.int64)
        values = values[values != IGNORE_INDEX]
        _check_range(values, num_classes, f"mask {i}")
        counts += np.bincount(values, minlength=num_classes)
    return counts


def class_weights(counts: np.ndarray, mode: str = "inverse") -> torch.Tensor:
    """Loss weights per class, float32, mean 1 over the classes present; absent classes get 0.

    ``inverse`` is ``total / (K * count)``; ``sqrt_inverse`` its square root (milder).

    Raises:
        LandlearnError: Unknown ``mode``, negative counts, or no class present.
    """
    if mode not in WEIGHT_MODES:
        raise unknown_name("class weight mode", mode, WEIGHT_MODES)
    c = _to_numpy(counts).astype(np.float64).reshape(-1)
    if (c < 0).any():
        raise LandlearnError("class counts must not be negative")
    present = c > 0
    if not present.any():
        raise LandlearnError("no class has any sample; cannot compute class weights")
    weights = np.zeros_like(c)
    weights[present] = c.sum() / (len(c) * c[present])
    if mode == "sqrt_inverse":
        weights = np.sqrt(weights)
    weights[present] /= weights[present].mean()
    return torch.tensor(weights, dtype=torch.float32)


def oversampling_sampler(
    targets: Sequence[int], seed: int, *, num_samples: int | None = None
) -> WeightedRandomSampler:
    """Draw samples with replacement so that every present class is drawn equally often.

    Each sample's weight is ``1 / count(its class)``. Samples labelled ``IGNORE_INDEX`` are
    never drawn.

    Args:
        targets: Class index of each sample of the dataset.
        num_samples: Draws per epoch (default: ``len(targets)``).

    Raises:
        LandlearnError: ``targets`` is empty, not 1-D, or has a negative class index.
    """
    values = _to_numpy(targets).astype(np.int64)
    if values.ndim != 1 or values.size == 0:
        raise LandlearnError(f"targets must be a non-empty 1-D sequence, got shape {values.shape}")
    if values.min() < 0:
        raise LandlearnError(f"targets has negative class {int(values.min())}")
    counts = np.bincount(values)
    weights = 1.0 / counts[values]
    weights[values == IGNORE_INDEX] = 0.0
    if not weights.any():
        raise LandlearnError("every target is IGNORE_INDEX; nothing to sample")
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double),  # type: ignore[arg-type]  # torch takes a tensor
        num_samples=len(values) if num_samples is None else num_samples,
        replacement=True,
        generator=generator,
    )
