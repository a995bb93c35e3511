"""Pre-emptive divergence detection and roll-back, for any task (the founding JEM study's rule).

:class:`DivergenceGuard` watches a per-step signal — ``energy_gap`` (``|E(x) − E(x′)|``) when
the task returns it from ``training_step`` (:class:`~landlearn.tasks.JEMTask` does), else the
loss — and keeps a ring of snapshots of the model, the optimisers and the task's extra state
(``guard_state()`` / ``load_guard_state()``, e.g. JEM's replay buffer) every ``every`` steps.

- **Soft rule** (the study's): over the last ``window`` (ω = 10) values, the relative standard
  deviation (std / mean) exceeds ``rsd`` (α_RSD = 0.3) AND the last ``history`` (100) values
  hold at least ``outliers`` (α_OTL = 15) IQR outliers (outside ``[Q1 − 1.5 IQR, Q3 + 1.5 IQR]``
  of those values). The study counted outliers without saying over what span; with ω = 10 alone
  15 outliers cannot occur, so a longer history is the reading taken here. ``warmup`` (0, the
  study's rule) holds the soft rule back for that many first values: early in training the
  energy gap is small and moves fast, so its relative std is high without anything diverging
  (on EuroSAT at lr 1e-4 the rule fired at step 86 with no divergence; RESULTS.md §9).
- **Hard rule**: a non-finite loss or ``|loss| > hard_limit`` (1e8).

On either, with ``action="restore"``, the newest snapshot at least ``jump`` (30) steps old is
put back (the oldest one when none is that old), the learning rate is multiplied by
``lr_factor`` (1: unchanged), the event is logged and training goes on; the step counter does not
go back. After ``max_rollbacks`` roll-backs, or with ``action="stop"`` (what "no guard" means in
the experiments: stop where the run diverged, as the study's runs did), a hard event stops
training. :meth:`summary` gives the share of epochs completed and every event; the run's
``metrics.json`` holds it under ``divergence``.

A snapshot is a CPU copy of the weights, the optimiser state and the extra state: for JEM that
includes the replay buffer (``buffer_size × C × H × W`` floats), so the ring costs about
``(jump / every + 2)`` times that much memory.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)

__all__ = ["DivergenceGuard", "divergence_summary"]

ACTIONS = ("restore", "stop")


@dataclass
class _Snapshot:
    step: int
    model: dict[str, torch.Tensor]
    optimizers: list[dict[str, Any]]
    extra: dict[str, Any]
    history: int = 0


@dataclass
class _Event:
    step: int
    epoch: int
    reason: str
    restored_to: int | None
    lr_scale: float


@dataclass
class _Record:
    events: list[_Event] = field(default_factory=list)
    warnings: int = 0


def _cpu_copy(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: _cpu_copy(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_cpu_copy(v) for v in state)
    return copy.deepcopy(state)


class DivergenceGuard(Callback):
    """Watch, snapshot, roll back (see the module docstring for the rules).

    Args:
        signal: key of the ``training_step`` output to watch (falls back to the loss).
        window: ω, values in the relative-standard-deviation window.
        rsd: α_RSD, the relative standard deviation above which the window is unstable.
        outliers: α_OTL, IQR outliers among the last ``history`` values needed as well.
        history: values the outliers are counted over.
        warmup: the soft rule waits for this many values (the hard rule never waits).
        jump: roll back to a snapshot at least this many steps old.
        every: steps between snapshots.
        lr_factor: multiply every learning rate by this at each roll-back.
        hard_limit: a loss above this in magnitude is divergence.
        max_rollbacks: after this many, a hard event stops training.
        action: ``restore`` (roll back and go on) or ``stop`` (stop at a hard event; soft
            warnings are logged only).
    """

    def __init__(
        self,
        signal: str = "energy_gap",
        window: int = 10,
        rsd: float = 0.3,
        outliers: int = 15,
        history: int = 100,
        warmup: int = 0,
        jump: int = 30,
        every: int = 5,
        lr_factor: float = 1.0,
        hard_limit: float = 1e8,
        max_rollbacks: int = 20,
        action: str = "restore",
    ) -> None:
        super().__init__()
        if action not in ACTIONS:
            raise LandlearnError(f"DivergenceGuard action must be restore or stop, got {action!r}")
        if min(window, history, jump, every) < 1 or window > history or warmup < 0:
            raise LandlearnError(
                "DivergenceGuard needs window, history, jump, every >= 1, window <= history "
                "and warmup >= 0"
            )
        if not 0 < lr_factor <= 1:
            raise LandlearnError(f"DivergenceGuard lr_factor must be in (0, 1], got {lr_factor}")
        self.signal, self.window, self.rsd = signal, int(window), float(rsd)
        self.outliers, self.history, self.warmup = int(outliers), int(history), int(warmup)
        self.jump, self.every = int(jump), int(every)
        self.lr_factor, self.hard_limit = float(lr_factor), float(hard_limit)
        self.max_rollbacks, self.action = int(max_rollbacks), action
        self.values: list[float] = []
        self.snapshots: deque[_Snapshot] = deque(maxlen=self.jump // self.every + 2)
        self.record = _Record()
        self.lr_scale = 1.0
        self.stopped_at: int | None = None
        self.max_epochs = 0
        self.epochs_completed = 0

    # ---- the rules ----------------------------------------------------------------------
    def check(self, loss: float, value: float | None) -> str | None:
        """The reason to act on one step's ``loss`` and signal ``value``, or None.

        Appends ``value`` (its magnitude) to the history; usable without a trainer.
        """
        if not math.isfinite(loss) or abs(loss) > self.hard_limit:
            return f"loss {loss:.4g} is not finite or above {self.hard_limit:.0e}"
        if value is None or not math.isfinite(value):
            return None if value is None else f"signal {self.signal} is {value}"
        self.values.append(abs(value))
        if len(self.values) < max(self.window, self.warmup):
            return None
        recent = np.asarray(self.values[-self.window :])
        mean = float(recent.mean())
        rsd = float(recent.std()) / max(abs(mean), 1e-12)
        if rsd <= self.rsd:
            return None
        hist = np.asarray(self.values[-self.history :])
        q1, q3 = np.percentile(hist, [25, 75])
        iqr = q3 - q1
        out = int(((hist < q1 - 1.5 * iqr) | (hist > q3 + 1.5 * iqr)).sum())
        if out < self.outliers:
            return None
        return (
            f"{self.signal}: relative std {rsd:.2f} > {self.rsd} over {self.window} steps and "
            f"{out} IQR outliers in the last {len(hist)}"
        )

    # ---- Lightning hooks ----------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Remember the epoch budget; snapshot the starting point."""
        self.max_epochs = int(trainer.max_epochs or 0)
        self._snapshot(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Check the step; roll back, stop, or snapshot."""
        loss_t = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss_t is None:
            return
        loss = float(loss_t.detach().float())
        value = None
        if isinstance(outputs, dict) and self.signal in outputs:
            value = float(torch.as_tensor(outputs[self.signal]).detach().float())
        elif self.signal == "loss":
            value = loss
        reason = self.check(loss, value)
        step = int(trainer.global_step)
        if reason is None:
            if step % self.every == 0:
                self._snapshot(trainer, pl_module)
            return
        hard = reason.startswith(("loss", "signal"))
        if self.action == "stop" or len(self.record.events) >= self.max_rollbacks:
            if hard:
                self._event(trainer, reason, None)
                self.stopped_at = step
                trainer.should_stop = True
                log.warning("divergence at step %d (%s): training stopped", step, reason)
            else:
                self.record.warnings += 1
                log.warning("divergence warning at step %d: %s", step, reason)
            return
        self._restore(trainer, pl_module, reason)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Count a completed epoch (one that training did not stop in)."""
        if self.stopped_at is None:
            self.epochs_completed += 1

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log the summary."""
        s = self.summary()
        log.info(
            "divergence guard: %d roll-back(s), %d warning(s), %.0f %% of %d epochs completed",
            s["rollbacks"],
            s["warnings"],
            100 * s["epochs_completed_share"],
            s["max_epochs"],
        )

    # ---- snapshots ----------------------------------------------------------------------
    def _snapshot(self, trainer: Trainer, pl_module: LightningModule) -> None:
        extra = getattr(pl_module, "guard_state", None)
        self.snapshots.append(
            _Snapshot(
                step=int(trainer.global_step),
                model=_cpu_copy(pl_module.state_dict()),
                optimizers=[_cpu_copy(o.state_dict()) for o in trainer.optimizers],
                extra=_cpu_copy(extra()) if callable(extra) else {},
                history=len(self.values),
            )
        )

    def _restore(self, trainer: Trainer, pl_module: LightningModule, reason: str) -> None:
        step = int(trainer.global_step)
        old = [s for s in self.snapshots if s.step <= step - self.jump]
        snap = old[-1] if old else self.snapshots[0]
        pl_module.load_state_dict(snap.model)
        for opt, state in zip(trainer.optimizers, snap.optimizers, strict=True):
            opt.load_state_dict(copy.deepcopy(state))
        load_extra = getattr(pl_module, "load_guard_state", None)
        if callable(load_extra) and snap.extra:
            load_extra(copy.deepcopy(snap.extra))
        self.lr_scale *= self.lr_factor
        if self.lr_scale != 1.0:
            self._scale_lr(trainer)
        del self.values[snap.history :]
        while self.snapshots and self.snapshots[-1].step > snap.step:  # newer ones are suspect
            self.snapshots.pop()
        self._event(trainer, reason, snap.step)
        log.warning(
            "divergence at step %d (%s): rolled back to step %d%s",
            step,
            reason,
            snap.step,
            f", learning rate × {self.lr_scale:.3g}" if self.lr_scale != 1.0 else "",
        )

    def _scale_lr(self, trainer: Trainer) -> None:
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                base = group.setdefault("guard_base_lr", group["lr"])
                group["lr"] = base * self.lr_scale
        for config in trainer.lr_scheduler_configs:  # schedules set the lr from these
            sched = config.scheduler
            if hasattr(sched, "base_lrs"):
                first = getattr(sched, "guard_base_lrs", None) or list(sched.base_lrs)
                setattr(sched, "guard_base_lrs", first)  # noqa: B010
                sched.base_lrs = [b * self.lr_scale for b in first]

    def _event(self, trainer: Trainer, reason: str, restored_to: int | None) -> None:
        self.record.events.append(
            _Event(
                step=int(trainer.global_step),
                epoch=int(trainer.current_epoch),
                reason=reason,
                restored_to=restored_to,
                lr_scale=self.lr_scale,
            )
        )

    # ---- what the run records -----------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Roll-backs, warnings, the stop step and the share of epochs completed (JSON-ready)."""
        return divergence_summary(self)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the guard (the record, not the snapshots)."""
        return {
            "values": list(self.values),
            "events": [vars(e) for e in self.record.events],
            "warnings": self.record.warnings,
            "lr_scale": self.lr_scale,
            "epochs_completed": self.epochs_completed,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` on resume."""
        self.values = [float(v) for v in state_dict.get("values", [])]
        self.record.events = [_Event(**e) for e in state_dict.get("events", [])]
        self.record.warnings = int(state_dict.get("warnings", 0))
        self.lr_scale = float(state_dict.get("lr_scale", 1.0))
        self.epochs_completed = int(state_dict.get("epochs_completed", 0))


def divergence_summary(guard: DivergenceGuard) -> dict[str, Any]:
    """The guard's record for ``metrics.json``."""
    events = guard.record.events
    share = guard.epochs_completed / guard.max_epochs if guard.max_epochs else 1.0
    return {
        "action": guard.action,
        "rollbacks": sum(e.restored_to is not None for e in events),
        "warnings": guard.record.warnings,
        "stopped_at_step": guard.stopped_at,
        "epochs_completed": guard.epochs_completed,
        "max_epochs": guard.max_epochs,
        "epochs_completed_share": round(share, 4),
        "lr_scale": guard.lr_scale,
        "events": [vars(e) for e in events],
    }
