"""Optimisers and learning-rate schedules by name (the craft of training).

Two registries like models and losses: an optimiser builder takes ``(params, *, lr, weight_decay,
momentum)``; a schedule builder takes ``(optimizer, *, lr, max_epochs, total_steps, monitor,
monitor_mode)`` plus its own options (``scheduler_kwargs`` in a config) and returns a Lightning
``lr_scheduler`` dict, or ``None`` for a constant rate. An option a schedule does not take is
the user's error, with the nearest known option.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import nn

from landlearn.registry import Registry, unknown_name

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "build_optimizer",
    "build_scheduler",
    "list_optimizers",
    "list_schedulers",
    "register_optimizer",
    "register_scheduler",
]

Params = Iterable[nn.Parameter]
SchedulerConfig = dict[str, Any] | None
OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")
SCHEDULERS: Registry[SchedulerConfig] = Registry("scheduler")
_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def register_optimizer(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an optimiser builder ``(params, *, lr, weight_decay, momentum)``."""
    return OPTIMIZERS.register(name)


def register_scheduler(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a schedule builder returning a Lightning ``lr_scheduler`` dict or ``None``.

    Its signature: ``(optimizer, *, lr, max_epochs, total_steps, monitor, monitor_mode,
    **options)``, with each option a keyword that has a default.
    """
    return SCHEDULERS.register(name)


def list_optimizers() -> list[str]:
    """Sorted registered optimiser names."""
    return OPTIMIZERS.names()


def list_schedulers() -> list[str]:
    """Sorted registered schedule names (``none`` is a constant rate)."""
    return SCHEDULERS.names()


@register_optimizer("adam")
def _adam(params: Params, *, lr: float, weight_decay: float, momentum: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@register_optimizer("adamw")
def _adamw(params: Params, *, lr: float, weight_decay: float, momentum: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@register_optimizer("sgd")
def _sgd(params: Params, *, lr: float, weight_decay: float, momentum: float) -> torch.optim.SGD:
    """SGD with Nesterov momentum whenever ``momentum > 0``."""
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay
    )


@register_optimizer("rmsprop")
def _rmsprop(
    params: Params, *, lr: float, weight_decay: float, momentum: float
) -> torch.optim.RMSprop:
    return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def build_optimizer(
    params: Iterable[nn.Parameter],
    name: str,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Adam, AdamW, SGD (Nesterov momentum) or RMSprop; the name is case-insensitive.

    Raises:
        LandlearnError: unknown name (with the nearest known one).
    """
    return OPTIMIZERS.build(
        name.lower(), params, lr=lr, weight_decay=weight_decay, momentum=momentum
    )


# Every schedule builder takes the same framework keywords; only its own options differ.
@register_scheduler("none")
def _none(
    optimizer: torch.optim.Optimizer,
    *,
    lr: float,
    max_epochs: int,
    total_steps: int,
    monitor: str,
    monitor_mode: str,
) -> SchedulerConfig:
    """A constant learning rate."""
    return None


@register_scheduler("step")
def _step(
    optimizer: torch.optim.Optimizer,
    *,
    lr: float,
    max_epochs: int,
    total_steps: int,
    monitor: str,
    monitor_mode: str,
    step_size: int | None = None,
    gamma: float = 0.1,
) -> SchedulerConfig:
    """×``gamma`` every ``step_size`` epochs (default a third of the run).

    A run bounded by ``max_steps`` alone (``max_epochs`` -1) has no epoch count to take a third
    of: without ``step_size`` it steps per optimiser step, ×``gamma`` every third of its steps.
    """
    if step_size is None and max_epochs < 1:
        step = max(1, total_steps // 3)
        sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=float(gamma))
        return {"scheduler": sched, "interval": "step"}
    step = int(step_size) if step_size is not None else max(1, max_epochs // 3)
    sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=float(gamma))
    return {"scheduler": sched, "interval": "epoch"}


@register_scheduler("cosine")
def _cosine(
    optimizer: torch.optim.Optimizer,
    *,
    lr: float,
    max_epochs: int,
    total_steps: int,
    monitor: str,
    monitor_mode: str,
    eta_min: float = 0.0,
) -> SchedulerConfig:
    """Cosine annealing to ``eta_min`` over the run, per epoch.

    A run bounded by ``max_steps`` alone (``max_epochs`` -1) anneals per optimiser step over
    its ``total_steps`` instead: with ``T_max`` taken from an epoch count it does not have, the
    schedule would fall to ``eta_min`` after one epoch and climb back, so every other epoch
    would train at ``eta_min``.
    """
    if max_epochs < 1:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, total_steps), eta_min=float(eta_min)
        )
        return {"scheduler": sched, "interval": "step"}
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max_epochs, eta_min=float(eta_min)
    )
    return {"scheduler": sched, "interval": "epoch"}


@register_scheduler("cyclic")
def _cyclic(
    optimizer: torch.optim.Optimizer,
    *,
    lr: float,
    max_epochs: int,
    total_steps: int,
    monitor: str,
    monitor_mode: str,
    step_size_up: int | None = None,
    base_lr: float | None = None,
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
) -> SchedulerConfig:
    """Triangular cycles between ``base_lr`` (lr/10) and ``lr``, per step (4 cycles a run)."""
    if mode not in _CYCLIC_MODES:
        raise unknown_name("cyclic mode", str(mode), _CYCLIC_MODES)
    up = int(step_size_up) if step_size_up is not None else max(1, total_steps // (2 * 4))
    sched = torch.optim.lr_scheduler.CyclicLR(
        optimizer,
        base_lr=float(base_lr) if base_lr is not None else lr / 10,
        max_lr=lr,
        step_size_up=up,
        mode=mode,
        cycle_momentum=isinstance(optimizer, torch.optim.SGD),
    )
    return {"scheduler": sched, "interval": "step"}


@register_scheduler("onecycle")
def _onecycle(
    optimizer: torch.optim.Optimizer,
    *,
    lr: float,
    max_epochs: int,
    total_steps: int,
    monitor: str,
    monitor_mode: str,
    pct_start: float = 0.3,
) -> SchedulerConfig:
    """One cycle peaking at ``lr``, per step."""
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(2, total_steps), pct_start=float(pct_start)
    )
    return {"scheduler": sched, "interval": "step"}


@register_scheduler("plateau")
def _plateau(
    optimizer: torch.optim.Optimizer,
    *,
    lr: float,
    max_epochs: int,
    total_steps: int,
    monitor: str,
    monitor_mode: str,
    factor: float = 0.1,
    patience: int = 3,
) -> SchedulerConfig:
    """×``factor`` when the monitored metric stalls for ``patience`` epochs."""
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="max" if monitor_mode == "max" else "min",
        factor=float(factor),
        patience=int(patience),
    )
    return {"scheduler": sched, "interval": "epoch", "monitor": monitor}


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

    ``name`` is case-insensitive; ``None`` is ``none``. ``kwargs`` are the schedule's own
    options (see each builder: ``step_size``, ``gamma``, ``eta_min``, ``pct_start`` ...).

    Raises:
        LandlearnError: unknown name (with the nearest one), or an option it does not take.
    """
    return SCHEDULERS.build(
        (name or "none").lower(),
        optimizer,
        lr=lr,
        max_epochs=max_epochs,
        total_steps=total_steps,
        monitor=monitor,
        monitor_mode=monitor_mode,
        **kwargs,
    )
