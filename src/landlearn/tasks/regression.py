"""Regression: continuous targets per scene (a table row, a time series, a chip) or per pixel.

A ``pixel_regression`` head (``AlignedRasterDataModule(target=...)``) trains a segmenter's
architecture (``unet`` ...) with one output channel per target on ``(B, T, H, W)`` targets.

The model learns standardised targets (``(y - mean) / std`` with the head's training-split
statistics from its ``HeadSpec``), so one learning rate suits targets in % or in kg/m²;
metrics (MAE, RMSE, R², and the Gaussian NLL when the model predicts a variance) are computed
in the target's own units. ``loss: gaussian_nll`` builds the model with ``variance=True``: it then
predicts a mean and a log-variance per target. Unknown targets are NaN and left out of loss and
metrics.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from landlearn.errors import LandlearnError
from landlearn.tasks.base import Inputs, SupervisedTask

__all__ = ["RegressionTask"]


class Standardised(nn.Module):
    """A regression loss applied to targets standardised with the head's statistics."""

    mean: Tensor
    std: Tensor

    def __init__(self, loss: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.loss = loss
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        """Loss of ``output`` (standardised units) against ``target`` (the target's units)."""
        return self.loss(output, standardise(target, self.mean, self.std))


def standardise(target: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``(y - mean) / std`` per target; ``(B,)`` targets are one target."""
    y = target.float()
    shape = (1, -1) + (1,) * (y.ndim - 2) if y.ndim >= 2 else (-1,)
    return (y - mean.view(shape)) / std.view(shape)


class RegressionTask(SupervisedTask):
    """Predict continuous targets (batches with the inputs and ``target``).

    Args mirror :class:`~landlearn.tasks.base.SupervisedTask`; ``num_targets`` defaults to the
    data's head (its ``targets``), and ``loss`` is a regression loss (``mse``, ``l1``,
    ``huber``, ``gaussian_nll``; ``landlearn.regression_losses.list_regression_losses()``).
    The default monitor is ``val_rmse`` (lower is better).
    """

    task: ClassVar[str] = "regression"
    target_key: ClassVar[str] = "target"
    default_monitor: ClassVar[str] = "val_rmse"

    def __init__(
        self,
        model: str,
        model_kwargs: dict[str, Any] | None = None,
        num_targets: int | None = None,
        in_channels: int | dict[str, int] | None = None,
        loss: str | dict[str, Any] = "mse",
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: str | None = None,
        scheduler_kwargs: dict[str, Any] | None = None,
        pretrained: bool = False,
        dropout: float = 0.0,
        monitor: str | None = None,
        patience: int = 0,
        channels_last: bool = True,
        weights: bool | str | None = None,
        freeze_encoder: bool = False,
        encoder_lr: float | None = None,
    ) -> None:
        """See the class docstring."""
        super().__init__(
            model, model_kwargs, num_targets, in_channels, loss, False, optimizer, lr,
            weight_decay, momentum, scheduler, scheduler_kwargs, pretrained, dropout, monitor,
            patience, None, "multiclass", -100, 0, channels_last, None, weights, freeze_encoder,
            encoder_lr,
        )  # fmt: skip
        # the base's names for what this task fixes (LightningCLI records only this signature)
        fixed: dict[str, Any] = {"num_classes": num_targets, "class_weights": False}
        fixed |= {"class_names": None, "mode": "multiclass", "ignore_index": -100}
        fixed |= {"num_examples": 0, "tta": None}
        for key, value in fixed.items():
            self.hparams.setdefault(key, value)

    @classmethod
    def _check_loss(cls, loss: str | dict[str, Any]) -> None:
        from landlearn.regression_losses import build_regression_loss

        build_regression_loss(loss, num_targets=1)  # an unknown name fails at construction

    @property
    def variance(self) -> bool:
        """Whether the model predicts a log-variance per target (``loss: gaussian_nll``)."""
        loss = self.hparams["loss"]
        name = loss.get("name") if isinstance(loss, dict) else loss
        return name == "gaussian_nll"

    @property
    def out_channels(self) -> int:
        """Targets (a ``variance=True`` model adds their log-variances itself)."""
        return int(self.hparams["num_classes"])

    @property
    def target_names(self) -> list[str]:
        """The head's target names (``target_<i>`` when the data names none)."""
        head = self.head_specs[0] if self.head_specs else None
        t = int(self.hparams["num_classes"] or 0)
        if head is not None and len(head.targets) == t:
            return list(head.targets)
        return [f"target_{i}" for i in range(t)]

    def _stats(self) -> tuple[list[float], list[float]]:
        head = self.head_specs[0] if self.head_specs else None
        t = int(self.hparams["num_classes"])
        if head is not None and head.mean is not None and head.std is not None:
            return list(head.mean), list(head.std)
        return [0.0] * t, [1.0] * t

    def _check_classes(self, dm: Any) -> None:
        head = self.head_specs[0] if self.head_specs else None
        if head is None or not head.targets:
            return
        given = self.hparams["num_classes"]
        if given and int(given) != len(head.targets):
            raise LandlearnError(
                f"num_targets={given} but the data's head {head.name!r} has {len(head.targets)} "
                f"targets ({', '.join(head.targets[:12])})"
            )
        self.hparams["num_classes"] = len(head.targets)

    def model_tasks(self) -> tuple[str, ...]:
        """The model kinds this head takes.

        A pixel model (a segmenter's architecture) for a ``pixel_regression`` head; else a
        scene model: a regressor over features, or a classifier's network over chips.
        """
        head = self.head_specs[0] if self.head_specs else None
        if head is not None and head.is_spatial:
            return ("segmentation",)
        if head is not None:
            return ("regression", "classification")
        return ("regression", "classification", "segmentation")

    def configure_models(self) -> None:
        """The model with ``variance=True`` when the loss is the Gaussian NLL."""
        from landlearn.models.registry import builder_signature

        name = self.hparams["model"]
        if self.variance and "variance" not in builder_signature(name).parameters:
            raise LandlearnError(
                f"loss gaussian_nll needs a model that predicts a variance; {name!r} does not "
                "(mlp_regressor does); use mse, l1 or huber"
            )
        if self.variance:
            self.hparams["model_kwargs"] = {
                **(self.hparams["model_kwargs"] or {}),
                "variance": True,
            }
        super().configure_models()

    def configure_losses(self, datamodule: Any = None) -> None:
        """The regression loss on standardised targets, per head."""
        from landlearn.regression_losses import build_regression_loss

        t = int(self.hparams["num_classes"])
        loss = build_regression_loss(self.hparams["loss"], num_targets=t)
        self.losses = nn.ModuleDict({self.head_names[0]: Standardised(loss, *self._stats())})

    def configure_metrics(self) -> None:
        """MAE / RMSE / R² (and NLL) per head, in the targets' units."""
        from landlearn.metrics import RegressionMetrics

        head = self.head_names[0]
        self.val_metrics = nn.ModuleDict({head: RegressionMetrics(self.target_names)})
        self.test_metrics = nn.ModuleDict({head: RegressionMetrics(self.target_names)})

    def predictions(self, output: Tensor) -> tuple[Tensor, Tensor | None]:
        """Means and log-variances (or None) in the targets' units."""
        from landlearn.models.regressors import split_mean_logvar

        t = int(self.hparams["num_classes"])
        mean, log_var = split_mean_logvar(output.float(), t)
        mu, sd = (torch.tensor(v, device=output.device) for v in self._stats())
        shape = (1, -1) + (1,) * (mean.ndim - 2)
        pred = mean * sd.view(shape) + mu.view(shape)
        if log_var is not None:
            log_var = log_var + 2 * torch.log(sd).view(shape)
        return pred, log_var

    def _update_metrics(self, metrics: Metric, head: str, output: Tensor, target: Tensor) -> None:
        pred, log_var = self.predictions(output)
        metrics.update(pred, target.float(), log_var)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Loss and metrics on the test split."""
        loss, out, y, x = self._step(batch)
        self.log("test_loss", loss, on_epoch=True, batch_size=self._batch_size(x))
        for head, output in out.items():
            metrics = self.test_metrics[head]
            assert isinstance(metrics, Metric)
            self._update_metrics(metrics, head, output.detach(), y[head])

    def on_test_epoch_end(self) -> None:
        """Full test metrics (kept in ``test_results``)."""
        head = self.head_names[0]
        metrics = self.test_metrics[head]
        assert isinstance(metrics, Metric)
        results = metrics.compute()
        metrics.reset()
        head_spec = self.head_specs[0] if self.head_specs else None
        if head_spec is not None and head_spec.units:
            results["units"] = list(head_spec.units)
        self.test_results = results
        self._log_summary("test", results, head)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Predicted target means in the targets' units."""
        x: Inputs = self.inputs(batch)
        return self.predictions(self.outputs(x)[self.head_names[0]])[0]

    def _log_summary(self, stage: str, m: dict[str, Any], head: str | None = None) -> None:
        prefix = stage if len(self.head_names) == 1 or head is None else f"{stage}_{head}"
        for key in ("mae", "rmse", "r2", "nll"):
            value = m.get(key)
            if value is not None and math.isfinite(float(value)):
                self.log(f"{prefix}_{key}", float(value), prog_bar=key in ("rmse", "r2"))
