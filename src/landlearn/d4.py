"""Test-time augmentation over the 8 dihedral transforms (flips and quarter turns) of an image.

Land cover seen from above has no "up": a field is a field when the chip is turned or mirrored.
Averaging a model's probabilities over the 8 transforms of the dihedral group D4 is the usual
test-time augmentation for overhead imagery; class maps are turned back before averaging, so the
result is exactly equivariant (turn the input, and the averaged map turns with it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from landlearn.errors import LandlearnError

__all__ = ["D4", "TTA_CHOICES", "d4_forward", "d4_inverse", "d4_mean", "tta_transforms"]

D4: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in range(4))
"""The 8 dihedral transforms as (quarter turns, horizontal flip first)."""

TTA_CHOICES = ("d4",)
"""Test-time augmentations a user can ask for by name."""


def d4_forward(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Flip (last axis) then rotate ``k`` quarter turns in the (H, W) plane."""
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def d4_inverse(y: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """Undo :func:`d4_forward` on a (…, H, W) output."""
    if k:
        y = torch.rot90(y, -k, dims=(-2, -1))
    return y.flip(-1) if flip else y


def tta_transforms(tta: str | None) -> tuple[tuple[int, bool], ...]:
    """The transforms a ``tta`` name stands for: ``None`` / ``"none"`` → identity only."""
    if tta in (None, "none"):
        return ((0, False),)
    if tta == "d4":
        return D4
    raise LandlearnError(f"unknown TTA {tta!r}; use {' or '.join(TTA_CHOICES)}")


def d4_mean(
    probs: Callable[[Any], torch.Tensor],
    x: torch.Tensor | Mapping[str, torch.Tensor],
    *,
    spatial: bool,
    tta: str | None = "d4",
) -> torch.Tensor:
    """Mean of ``probs(transform(x))`` over the transforms of ``tta``.

    ``x`` is a batch, or a dict of named batches on one grid (each gets the same transform).

    ``spatial``: the output is a (B, K, H, W) map, turned back before averaging; otherwise a
    (B, K) vector per image, which the transforms leave in place.
    """
    total: torch.Tensor | None = None
    transforms = tta_transforms(tta)
    for k, flip in transforms:
        if isinstance(x, Mapping):  # named inputs on one grid: the same transform for each
            p = probs({name: d4_forward(v, k, flip) for name, v in x.items()})
        else:
            p = probs(d4_forward(x, k, flip))
        if spatial:
            p = d4_inverse(p, k, flip)
        total = p if total is None else total + p
    assert total is not None
    return total / len(transforms)
