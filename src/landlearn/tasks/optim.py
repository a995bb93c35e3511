"""Optimisers and learning-rate schedules by name (the craft of training)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from landlearn.errors import LandlearnError

__all__ = ["OPTIMIZERS", "SCHEDULERS", "build_optimizer", "build_scheduler"]

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULERS = ("none", "step", "cosine", "cyclic", "onecycle", "plateau")


def _unknown(kind: str, name: str, known: Iterable[str]) -> LandlearnError:
    near = difflib.get_close_matches(name, list(known), n=1)
    tip = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(known)}"
    return LandlearnError(f"unknown {kind} {name!r}; {tip}")


def build_optimizer(
    params: Iterable[nn.Parameter],
    name: str,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Adam, AdamW, SGD (Nesterov momentum) or RMSprop."""
    key = name.lower()
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if key == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
        )
    if key == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise _unknown("optimizer", name, OPTIMIZERS)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str | None,
    *,
    lr: float,
    max_epochs: int,
    total_steps: int,
    monitor: str,
    monitor_mode: str,
    **kwargs: Any,
) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` config dict, or ``None`` for a constant rate.

    - ``step``: ×``gamma`` (0.1) every ``step_size`` epochs (default a third of the run).
    - ``cosine``: cosine annealing to ``eta_min`` over the run, per epoch.
    - ``cyclic``: triangular cycles between ``base_lr`` (lr/10) and ``lr``, per step.
    - ``onecycle``: one cycle peaking at ``lr``, per step.
    - ``plateau``: ×``factor`` (0.1) when the monitored metric stalls for ``patience`` epochs.
    """
    key = (name or "none").lower()
    if key == "none":
        return None
    if key == "step":
        step = int(kwargs.get("step_size", max(1, max_epochs // 3)))
        sched: Any = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=step, gamma=float(kwargs.get("gamma", 0.1))
        )
        return {"scheduler": sched, "interval": "epoch"}
    if key == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, max_epochs), eta_min=float(kwargs.get("eta_min", 0.0))
        )
        return {"scheduler": sched, "interval": "epoch"}
    if key == "cyclic":
        up = int(kwargs.get("step_size_up", max(1, total_steps // max(1, 2 * 4))))
        sched = torch.optim.lr_scheduler.CyclicLR(
            optimizer,
            base_lr=float(kwargs.get("base_lr", lr / 10)),
            max_lr=lr,
            step_size_up=up,
            mode=kwargs.get("mode", "triangular"),
            cycle_momentum=isinstance(optimizer, torch.optim.SGD),
        )
        return {"scheduler": sched, "interval": "step"}
    if key == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=lr,
            total_steps=max(2, total_steps),
            pct_start=float(kwargs.get("pct_start", 0.3)),
        )
        return {"scheduler": sched, "interval": "step"}
    if key == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max" if monitor_mode == "max" else "min",
            factor=float(kwargs.get("factor", 0.1)),
            patience=int(kwargs.get("patience", 3)),
        )
        return {"scheduler": sched, "interval": "epoch", "monitor": monitor}
    raise _unknown("scheduler", str(name), SCHEDULERS)
