"""Losses of regression heads by name, with NaN targets masked.

Every loss is called as ``loss(output, target)``: ``output`` is what the model gives, ``(B, T)``
means or ``(B, 2T)`` means then log-variances (``landlearn.models.regressors``), optionally with
trailing pixel dimensions; ``target`` is ``(B, T[, H, W])`` (or ``(B,)`` for one target) with NaN
where unknown. NaN targets never change a loss, and a batch with nothing labelled gives 0 (with a
gradient of zeros), not NaN. Losses are means over labelled entries of all targets, so targets
should be standardised (``HeadSpec.mean`` / ``std``) to weigh alike.

Names: ``mse``, ``l1``, ``huber`` (``delta``, default 1) on the means; ``gaussian_nll`` on means
and log-variances, ``0.5 * (log σ² + (y - μ)² / σ²)`` (the constant ``0.5 log 2π`` left out, as
in torch's ``GaussianNLLLoss``), with the log-variance clamped to ``[-log_var_bound,
log_var_bound]`` so a confident wrong start cannot blow up.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landlearn.errors import LandlearnError
from landlearn.registry import Registry

RegressionLossBuilder = Callable[..., nn.Module]
REGRESSION_LOSSES: Registry[nn.Module] = Registry("regression loss")

__all__ = [
    "REGRESSION_LOSSES",
    "MaskedGaussianNLL",
    "MaskedRegressionLoss",
    "build_regression_loss",
    "list_regression_losses",
]


def _as_rows(output: Tensor, target: Tensor, t: int) -> tuple[Tensor, Tensor | None, Tensor]:
    """Means ``(B, T, ...)``, log-variances or None, and target of the means' shape."""
    if target.dim() == output.dim() - 1 and t == 1:
        target = target.unsqueeze(1)
    if output.shape[1] not in (t, 2 * t) or target.shape[1] != t:
        raise LandlearnError(
            f"output {tuple(output.shape)} and target {tuple(target.shape)} do not fit "
            f"{t} targets; expected (B, {t} or {2 * t}, ...) and (B, {t}, ...)"
        )
    mean = output[:, :t]
    log_var = output[:, t:] if output.shape[1] == 2 * t else None
    if mean.shape != target.shape:
        raise LandlearnError(
            f"output {tuple(output.shape)} and target {tuple(target.shape)} do not match"
        )
    return mean, log_var, target


class MaskedRegressionLoss(nn.Module):
    """Mean of an element-wise loss over labelled (non-NaN) targets."""

    def __init__(self, num_targets: int, elementwise: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.num_targets = num_targets
        self.elementwise = elementwise

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        """Scalar loss; 0 with zero gradient when every target is NaN."""
        mean, _, target = _as_rows(output, target, self.num_targets)
        valid = ~torch.isnan(target)
        y = torch.where(valid, target, mean.detach()).to(mean.dtype)
        per = torch.where(valid, self.elementwise(mean, y), 0.0)
        return per.sum() / valid.sum().clamp_min(1)


class MaskedGaussianNLL(nn.Module):
    """Gaussian NLL of means and log-variances over labelled targets (see the module)."""

    def __init__(self, num_targets: int, log_var_bound: float = 10.0) -> None:
        super().__init__()
        self.num_targets = num_targets
        self.log_var_bound = float(log_var_bound)

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        """Scalar loss; 0 with zero gradient when every target is NaN."""
        mean, log_var, target = _as_rows(output, target, self.num_targets)
        if log_var is None:
            raise LandlearnError(
                "gaussian_nll needs a model that predicts a variance; set variance: true"
            )
        valid = ~torch.isnan(target)
        y = torch.where(valid, target, mean.detach()).to(mean.dtype)
        lv = log_var.clamp(-self.log_var_bound, self.log_var_bound)
        nll = 0.5 * (lv + (y - mean) ** 2 * torch.exp(-lv))
        return torch.where(valid, nll, 0.0).sum() / valid.sum().clamp_min(1)


@REGRESSION_LOSSES.register("mse")
def _mse(*, num_targets: int) -> nn.Module:
    return MaskedRegressionLoss(num_targets, lambda p, y: (p - y) ** 2)


@REGRESSION_LOSSES.register("l1")
def _l1(*, num_targets: int) -> nn.Module:
    return MaskedRegressionLoss(num_targets, lambda p, y: (p - y).abs())


@REGRESSION_LOSSES.register("huber")
def _huber(*, num_targets: int, delta: float = 1.0) -> nn.Module:
    if delta <= 0:
        raise LandlearnError(f"huber delta must be positive, got {delta}")
    return MaskedRegressionLoss(
        num_targets, lambda p, y: F.huber_loss(p, y, reduction="none", delta=float(delta))
    )


@REGRESSION_LOSSES.register("gaussian_nll")
def _gaussian_nll(*, num_targets: int, log_var_bound: float = 10.0) -> nn.Module:
    if log_var_bound <= 0:
        raise LandlearnError(f"log_var_bound must be positive, got {log_var_bound}")
    return MaskedGaussianNLL(num_targets, log_var_bound)


def list_regression_losses() -> list[str]:
    """Sorted registered names."""
    return REGRESSION_LOSSES.names()


def build_regression_loss(spec: str | dict[str, Any], *, num_targets: int) -> nn.Module:
    """A loss from a name or ``{"name": ..., **options}``.

    Raises:
        LandlearnError: unknown name (with the nearest one) or unknown options.
    """
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, dict) and "name" in spec:
        name, options = str(spec["name"]), {k: v for k, v in spec.items() if k != "name"}
    else:
        raise LandlearnError(f"regression loss must be a name or {{name: ...}}, got {spec!r}")
    builder = REGRESSION_LOSSES.get(name)
    known = set(inspect.signature(builder).parameters) - {"num_targets"}
    extra = sorted(set(options) - known)
    if extra:
        tip = ", ".join(sorted(known)) or "none"
        raise LandlearnError(
            f"unknown option(s) {', '.join(extra)} for loss {name!r}; known: {tip}"
        )
    return builder(num_targets=num_targets, **options)
