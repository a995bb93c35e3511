"""Optimisers and schedules by name."""

from __future__ import annotations

import pytest
import torch

from landlearn.errors import LandlearnError
from landlearn.tasks.base import LandlearnTask
from landlearn.tasks.optim import (
    build_optimizer,
    build_scheduler,
    list_optimizers,
    list_schedulers,
)


def _params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize("name", list_optimizers())
def test_optimizers_build_with_lr(name: str) -> None:
    opt = build_optimizer(_params(), name, lr=0.01, weight_decay=1e-4)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(1e-4)
    want = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
            "rmsprop": torch.optim.RMSprop}[name]  # fmt: skip
    assert type(opt) is want


def test_sgd_defaults_to_nesterov_momentum() -> None:
    group = build_optimizer(_params(), "sgd", lr=0.1).param_groups[0]
    assert group["momentum"] > 0
    assert group["nesterov"] is True


def test_unknown_optimizer_names_nearest() -> None:
    with pytest.raises(LandlearnError, match="did you mean 'adamw'"):
        build_optimizer(_params(), "adamww", lr=0.1)


def _lrs(name: str, epochs: int = 6, steps_per_epoch: int = 4) -> list[float]:
    opt = build_optimizer(_params(), "sgd", lr=0.1)
    options = {"step_size": 2} if name == "step" else {}  # another schedule refuses step_size
    cfg = build_scheduler(
        opt, name, lr=0.1, max_epochs=epochs, total_steps=epochs * steps_per_epoch,
        monitor="val_loss", monitor_mode="min", **options,
    )  # fmt: skip
    if cfg is None:
        return [0.1] * epochs
    sched, lrs = cfg["scheduler"], []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            opt.step()
            if cfg["interval"] == "step":
                sched.step()
        lrs.append(opt.param_groups[0]["lr"])
        if cfg["interval"] == "epoch":
            sched.step(1.0) if name == "plateau" else sched.step()
    return lrs


def test_step_schedule_divides_by_ten_every_k_epochs() -> None:
    lrs = _lrs("step")
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[2] == pytest.approx(0.01)
    assert lrs[4] == pytest.approx(0.001)


def test_cosine_decays_to_zero() -> None:
    lrs = _lrs("cosine")
    assert lrs == sorted(lrs, reverse=True)
    assert lrs[-1] < 0.02


def test_cyclic_goes_up_and_down() -> None:
    lrs = _lrs("cyclic", epochs=32, steps_per_epoch=1)  # 4 steps up, 4 down: 4 cycles
    peaks = [i for i in range(1, len(lrs) - 1) if lrs[i - 1] < lrs[i] > lrs[i + 1]]
    assert len(peaks) >= 3
    assert max(lrs) == pytest.approx(0.1)
    assert min(lrs) == pytest.approx(0.01)


def test_onecycle_peaks_then_anneals() -> None:
    lrs = _lrs("onecycle", epochs=10, steps_per_epoch=2)
    peak = lrs.index(max(lrs))
    assert 0 < peak < 9
    assert lrs[-1] < lrs[peak] / 10


def test_plateau_reduces_when_stuck() -> None:
    lrs = _lrs("plateau", epochs=8)
    assert lrs[-1] < lrs[0]


@pytest.mark.parametrize("name", list_schedulers())
def test_every_schedule_builds(name: str) -> None:
    assert len(_lrs(name)) == 6


def test_unknown_schedule() -> None:
    opt = build_optimizer(_params(), "adam", lr=0.1)
    with pytest.raises(LandlearnError, match="did you mean 'cosine'"):
        build_scheduler(
            opt, "cosin", lr=0.1, max_epochs=1, total_steps=1, monitor="x", monitor_mode="min"
        )


class _Probe(LandlearnTask):
    """The smallest task: one weight, the shared optimiser / schedule, lr seen at every step."""

    def __init__(self, scheduler: str) -> None:
        super().__init__()
        self.save_hyperparameters({"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0,
                                   "momentum": 0.0, "scheduler": scheduler,
                                   "scheduler_kwargs": None})  # fmt: skip
        self._set_monitor("train_loss")
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.lrs: list[float] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return (self.w - batch[0].mean()) ** 2


@pytest.mark.parametrize("name", ["cosine", "step"])
def test_a_run_bounded_by_max_steps_never_trains_at_zero_lr(name: str) -> None:
    """max_epochs -1: the schedule spans the steps (it used to reach 0 every other epoch)."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    task = _Probe(name)
    data = DataLoader(TensorDataset(torch.randn(20, 1)), batch_size=4)  # 5 steps an epoch
    pl.Trainer(max_epochs=-1, max_steps=30, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(task, data)  # fmt: skip
    lrs = task.lrs
    assert len(lrs) == 30
    assert lrs == sorted(lrs, reverse=True)  # never climbs back
    assert min(lrs) > 0.0
    assert lrs[-1] < lrs[0] / 5  # and it does anneal over the run
    if name == "step":  # ×0.1 at each third of the steps, not at every epoch
        assert lrs[9] == pytest.approx(0.1)
        assert lrs[-1] == pytest.approx(0.001)
