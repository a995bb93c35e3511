"""Uncertainty of probabilistic predictions, used by tasks, evaluation and mapping alike.

- :func:`entropy`: predictive entropy ``H[p]`` in nats;
- :func:`mutual_information`: ``H[mean_s p_s] − mean_s H[p_s]`` over samples ``p_s`` (MC
  dropout passes, ensemble members): the part of the uncertainty that comes from the model
  rather than the data (Gal & Ghahramani 2016; Houlsby et al. 2011, "BALD");
- :func:`energy`: ``E(x) = −logsumexp_y f(x)[y]`` of a classifier's logits, the energy of a
  Joint Energy-based Model (Grathwohl et al. 2020): higher means less like the training data;
- :func:`mc_dropout`: a context in which dropout layers sample (train mode) while everything
  else (batch norm) stays in eval mode.

Example:
    >>> with mc_dropout(model):
    ...     samples = torch.stack([model(x).softmax(1) for _ in range(8)])
    >>> mi = mutual_information(samples)  # (B, H, W)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from landlearn.errors import LandlearnError

__all__ = ["dropout_layers", "energy", "entropy", "mc_dropout", "mutual_information"]


def entropy(p: torch.Tensor | np.ndarray, dim: int = 1) -> torch.Tensor | np.ndarray:
    """Shannon entropy in nats along ``dim`` (0 · log 0 = 0)."""
    if isinstance(p, np.ndarray):
        return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=dim)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=dim)


def energy(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``−logsumexp`` of ``logits`` along ``dim`` (classes), in float32.

    A JEM reads a classifier's logits as an unnormalised density ``p(x) ∝ exp(−E(x))``; the
    energy is also an out-of-distribution score (Liu et al. 2020) that a plain classifier has.
    """
    return -torch.logsumexp(logits.float(), dim=dim)


def mutual_information(samples: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``H[mean_s p_s] − mean_s H[p_s]`` for samples stacked on axis 0 (classes on ``dim``).

    ``samples``: (S, B, K, …) probabilities. Returns (B, …), >= 0 (clamped: rounding can
    make it a hair negative when all samples agree).
    """
    if samples.ndim < 2:
        raise ValueError(f"samples need a sample axis and a class axis, got {samples.ndim} dims")
    mean = samples.mean(dim=0)
    expected = entropy(samples, dim=dim + 1)
    assert isinstance(expected, torch.Tensor)
    total = entropy(mean, dim=dim)
    assert isinstance(total, torch.Tensor)
    return (total - expected.mean(dim=0)).clamp_min(0.0)


def dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The model's dropout layers with p > 0."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.dropout._DropoutNd) and float(getattr(m, "p", 0.0)) > 0
    ]


@contextlib.contextmanager
def mc_dropout(model: nn.Module, path: str | os.PathLike[str] | None = None) -> Iterator[None]:
    """Dropout layers in train mode, everything else (batch norm) in eval; restored after.

    Raises:
        LandlearnError: the model has no dropout with p > 0 (naming ``path``, the bundle).
    """
    drops = dropout_layers(model)
    if not drops:
        raise LandlearnError(
            "MC dropout needs a model with dropout (p > 0); this bundle has none. "
            "Train with dropout, or use --tta d4 / --ensemble instead",
            path,
        )
    modes = [m.training for m in drops]
    try:
        for m in drops:
            m.train()
        yield
    finally:
        for m, mode in zip(drops, modes, strict=True):
            m.train(mode)
