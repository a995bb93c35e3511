"""Deterministic train / val / test splits: stratified by class, or plain by item."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from landlearn.errors import LandlearnError

__all__ = ["label_subset", "random_split_indices", "stratified_split"]

log = logging.getLogger(__name__)


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise LandlearnError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise LandlearnError(
            f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}"
        )


def _take_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of ``n`` items go to val and test; train always keeps at least one."""
    n_val = round(val_fraction * n)
    n_test = round(test_fraction * n)
    # A requested split gets at least one item when that still leaves one for train.
    if test_fraction > 0 and n_test == 0 and n - n_val >= 2:
        n_test = 1
    if val_fraction > 0 and n_val == 0 and n - n_test >= 2:
        n_val = 1
    while n_val + n_test > n - 1 and (n_val or n_test):
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def stratified_split(
    targets: Sequence[int] | np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int = 0,
) -> tuple[list[int], list[int], list[int]]:
    """Split item indices per class, so each split keeps the class proportions.

    Every class keeps at least one item in train; a class with a single item is train only.
    The same ``seed`` always gives the same split.

    Returns:
        ``(train_idx, val_idx, test_idx)``, each sorted.

    Raises:
        LandlearnError: fractions out of range.
    """
    _check_fractions(val_fraction, test_fraction)
    y = np.asarray(targets)
    if y.ndim != 1:
        raise LandlearnError(f"stratified_split needs one integer target per item, got {y.shape}")
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_val, n_test = _take_counts(len(idx), val_fraction, test_fraction)
        val.extend(idx[:n_val].tolist())
        test.extend(idx[n_val : n_val + n_test].tolist())
        train.extend(idx[n_val + n_test :].tolist())
    return sorted(train), sorted(val), sorted(test)


def random_split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """Split ``range(n)`` without classes (e.g. segmentation scenes by file); train keeps >= 1.

    Raises:
        LandlearnError: fractions out of range, or ``n`` is 0.
    """
    _check_fractions(val_fraction, test_fraction)
    if n < 1:
        raise LandlearnError("nothing to split: no items")
    idx = np.random.default_rng(seed).permutation(n)
    n_val, n_test = _take_counts(n, val_fraction, test_fraction)
    return (
        sorted(idx[n_val + n_test :].tolist()),
        sorted(idx[:n_val].tolist()),
        sorted(idx[n_val : n_val + n_test].tolist()),
    )


def label_subset(
    indices: Sequence[int],
    targets: Sequence[int] | np.ndarray,
    fraction: float,
    seed: int = 0,
) -> list[int]:
    """Keep ``fraction`` of ``indices`` per class (at least one per class), for label-scarce runs.

    Args:
        indices: candidate items (e.g. the train split).
        targets: class of every item of the whole dataset, indexed by the values of ``indices``.
        fraction: share of each class to keep, in ``(0, 1]``.
        seed: the same seed keeps the same items.

    Raises:
        LandlearnError: ``fraction`` out of range.
    """
    if not 0.0 < fraction <= 1.0:
        raise LandlearnError(f"label fraction must be in (0, 1], got {fraction}")
    idx = np.asarray(list(indices), dtype=np.int64)
    if fraction == 1.0 or idx.size == 0:
        return sorted(idx.tolist())
    y = np.asarray(targets)[idx]
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for cls in np.unique(y):
        members = rng.permutation(idx[y == cls])
        keep.extend(members[: max(1, round(fraction * len(members)))].tolist())
    log.debug("label subset: %d of %d items (fraction %.3f)", len(keep), idx.size, fraction)
    return sorted(keep)
