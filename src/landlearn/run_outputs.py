"""What a finished run leaves behind, made by one callback.

``landlearn fit --config X.yaml``, :func:`landlearn.train` (from a config or from a task and
datamodule you built), ``landlearn demo`` and the benchmarks all finish a run through
:class:`RunOutputs`:

- when fitting ends, the best checkpoint's weights are loaded into the task and exported as
  ``model.safetensors`` (the bundle) in the run folder, or where ``bundle`` says;
- when testing ends (``fit`` tests the best weights on the datamodule's test split), the test
  metrics go to ``metrics.json`` / ``metrics.md``, a few examples to ``examples.npz``, the
  bundle is written again with the test metrics in its header, and the report page
  (``report/index.html`` and its figures) is built from the run folder.

So a run folder looks the same whichever way the run was started::

    runs/<name>/version_N/
        model.safetensors  metrics.json  metrics.md  examples.npz  report/index.html
        metrics.csv  hparams.yaml  checkpoints/best-epoch=K.ckpt  events.out.tfevents.*

"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from landlearn.atomic import atomic_path, write_json
from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)

__all__ = [
    "RunOutputs",
    "default_callbacks",
    "divergence_guard",
    "exports_bundles",
    "has_test_split",
    "headline",
    "load_best_weights",
    "pair_tensorboard",
    "run_dir",
    "run_outputs",
    "run_test_after_fit",
    "write_outputs",
]

HEADLINE_KEYS = ("overall_accuracy", "average_accuracy", "miou", "dice", "macro_f1", "kappa", "ece")
REGRESSION_KEYS = ("mae", "rmse", "r2", "nll")


def exports_bundles(model: Any) -> bool:
    """Whether ``model`` is a landlearn task: it can describe itself as a bundle.

    (``bundle_meta``; or ``export_bundle`` for a task that writes its own kind of file, such
    as the encoder bundle of contrastive pre-training.)
    """
    if not isinstance(model, LightningModule):
        return False
    return any(callable(getattr(model, k, None)) for k in ("bundle_meta", "export_bundle"))


class RunOutputs(Callback):
    """Best weights, bundle, metrics, examples and report of a run (see the module docstring).

    Args:
        bundle: where the bundle goes (default ``<run folder>/model.safetensors``). Checked by
            the caller (``landlearn fit --bundle`` refuses inputs and foreign files up front).
        report: build ``report/index.html`` in the run folder after testing.
        folder: where metrics, examples and the report go (default: the run folder, which is
            the logger's version folder, or ``default_root_dir`` without a logger).
    """

    def __init__(
        self,
        bundle: str | os.PathLike[str] | None = None,
        report: bool = True,
        folder: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.bundle = Path(bundle) if bundle is not None else None
        self.report = report
        self.folder = Path(folder) if folder is not None else None
        self.bundle_path: Path | None = None
        self.report_path: Path | None = None
        self.metrics: dict[str, Any] = {}
        self._fitted = False

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Load the best checkpoint's weights and export the bundle."""
        if trainer.interrupted or not exports_bundles(pl_module) or not trainer.is_global_zero:
            return
        load_best_weights(trainer, pl_module)
        self._fitted = True
        self._export(trainer, pl_module, {})

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A JEM's grid of SGLD samples, ``sgld_samples.png``, redrawn each epoch."""
        samples = getattr(pl_module, "sgld_samples", None)
        if samples is None or not trainer.is_global_zero or trainer.sanity_checking:
            return
        from landlearn.report.figures import plot_sgld_samples

        out = self.folder or run_dir(trainer)
        out.mkdir(parents=True, exist_ok=True)
        title = f"SGLD samples, epoch {trainer.current_epoch}"
        plot_sgld_samples(samples.numpy(), out / "sgld_samples.png", title=title)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Metrics, examples, the bundle with its test metrics, and the report."""
        if trainer.interrupted or not exports_bundles(pl_module) or not trainer.is_global_zero:
            return
        if not getattr(pl_module, "test_results", None):
            return
        out = self.folder or run_dir(trainer)
        guard = divergence_guard(trainer)
        if guard is not None:
            getattr(pl_module, "test_results")["divergence"] = guard.summary()  # noqa: B009
        self.metrics = write_outputs(pl_module, out)
        if self._fitted:
            self._export(trainer, pl_module, headline(self.metrics))
        if self.report:
            from landlearn.report.page import build_report

            try:
                self.report_path = build_report(out)
            except LandlearnError as err:  # a report is a convenience; the run has succeeded
                log.warning("no report for %s: %s", out, err)
            else:
                log.info("report: %s", self.report_path)

    def _export(self, trainer: Trainer, pl_module: Any, metrics: dict[str, Any]) -> None:
        from landlearn.bundle import save_bundle

        target = self.bundle or (self.folder or run_dir(trainer)) / "model.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        prepare = getattr(pl_module, "prepare_export", None)  # e.g. JEM's energy reference:
        if callable(prepare) and not metrics:  # once, at fit end; the test-time export reuses it
            prepare(trainer)
        # a task of several networks (e.g. a mean teacher) exports them all, with their meta
        modules = getattr(pl_module, "export_modules", None)
        own = getattr(pl_module, "export_bundle", None)
        if callable(own):
            saved = own(target, metrics)
        elif callable(modules):
            saved = save_bundle(target, modules(), pl_module.export_meta(metrics))
        else:
            saved = save_bundle(target, pl_module.model, pl_module.bundle_meta(metrics))
        self.bundle_path = Path(saved)
        log.info("bundle: %s", self.bundle_path)


def divergence_guard(trainer: Trainer) -> Any:
    """The trainer's :class:`~landlearn.tasks.guard.DivergenceGuard`, if it has one."""
    from landlearn.tasks.guard import DivergenceGuard

    return next((c for c in trainer.callbacks if isinstance(c, DivergenceGuard)), None)  # type: ignore[attr-defined]


def load_best_weights(trainer: Trainer, pl_module: LightningModule) -> Path | None:
    """Load the best checkpoint of ``trainer`` into ``pl_module``; its path, or None."""
    import torch

    cb = trainer.checkpoint_callback
    if not isinstance(cb, ModelCheckpoint) or not cb.best_model_path:
        return None
    best = Path(cb.best_model_path)
    if not best.exists():
        return None
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    pl_module.load_state_dict(state)
    log.info("best checkpoint: %s", best)
    return best


def headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The summary numbers stored in the bundle (no confusion matrix)."""
    keep = HEADLINE_KEYS + REGRESSION_KEYS
    out = {k: metrics[k] for k in keep if metrics.get(k) is not None}
    if "per_class" in metrics:
        out["per_class_iou"] = metrics["per_class"].get("iou")
        out["per_class_f1"] = metrics["per_class"].get("f1")
    return out


def run_dir(trainer: Trainer) -> Path:
    """The folder of this run's logs (``runs/<name>/version_N``)."""
    for lg in trainer.loggers:
        if isinstance(lg, CSVLogger | TensorBoardLogger) and lg.log_dir:
            return Path(lg.log_dir)
    return Path(trainer.default_root_dir)


def write_outputs(model: Any, out: Path) -> dict[str, Any]:
    """``metrics.json``, ``metrics.md`` and ``examples.npz`` of the last test; the metrics."""
    from landlearn.report.markdown import metrics_markdown

    metrics = dict(model.test_results or {})
    names = getattr(model, "class_names", None)
    if names:
        metrics.setdefault("class_names", names)
        metrics["class_colors"] = model.bundle_meta().class_colors
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    with atomic_path(out / "metrics.md") as tmp:
        tmp.write_text(metrics_markdown(metrics) + "\n<!-- written by landlearn -->\n")
    ex = getattr(model, "test_examples", None) or {}
    if ex.get("image"):
        with atomic_path(out / "examples.npz") as tmp, open(tmp, "wb") as fh:
            arrays: dict[str, Any] = {k: np.stack(v) for k, v in ex.items()}
            np.savez_compressed(fh, **arrays)
    log.info("test metrics: %s", out / "metrics.json")
    return metrics


def has_test_split(dm: LightningDataModule | None) -> bool:
    """Whether the datamodule defines a test loader (and, for ours once set up, a test split)."""
    if dm is None:
        return False
    from landlearn.data.datamodules import LandlearnDataModule

    if isinstance(dm, LandlearnDataModule) and dm.train_dataset is not None:
        return dm.test_dataset is not None  # set up: a test split only if one was configured
    return type(dm).test_dataloader is not LightningDataModule.test_dataloader


def default_callbacks(
    model: Any, have: set[type] | None = None, logger: bool = True
) -> list[Callback]:
    """Landlearn's callbacks for a task, leaving out the kinds in ``have``.

    The best checkpoint by the task's monitored metric, early stopping when ``patience`` > 0,
    an LR monitor when there is a logger, and :class:`RunOutputs`.
    """
    have = have or set()
    extra: list[Callback] = []
    if exports_bundles(model):
        if ModelCheckpoint not in have:
            extra.append(
                ModelCheckpoint(
                    monitor=model.monitor,
                    mode=model.monitor_mode,
                    filename="best-{epoch}",
                    save_top_k=1,
                    save_last=False,
                )
            )
        patience = int(model.hparams.get("patience") or 0)
        if patience > 0 and EarlyStopping not in have:
            extra.append(
                EarlyStopping(monitor=model.monitor, mode=model.monitor_mode, patience=patience)
            )
        if RunOutputs not in have:
            extra.append(RunOutputs())
    if logger and LearningRateMonitor not in have:
        extra.append(LearningRateMonitor(logging_interval="epoch"))
    return extra


def pair_tensorboard(trainer: Trainer) -> None:
    """Give a lone CSV logger a TensorBoard twin writing into the same version folder."""
    loggers = trainer.loggers
    if len(loggers) != 1 or not isinstance(loggers[0], CSVLogger):
        return
    csv = loggers[0]
    try:
        tb = TensorBoardLogger(
            save_dir=csv.save_dir, name=csv.name, version=csv.version, default_hp_metric=False
        )
    except ModuleNotFoundError:  # tensorboard is a dependency, but keep training without it
        return
    trainer.loggers = [csv, tb]


def run_outputs(trainer: Trainer) -> RunOutputs | None:
    """The trainer's :class:`RunOutputs` callback, if it has one."""
    return next((c for c in trainer.callbacks if isinstance(c, RunOutputs)), None)  # type: ignore[attr-defined]


def run_test_after_fit(trainer: Trainer, model: Any, datamodule: Any, verbose: bool = True) -> None:
    """Test the (best) weights on the datamodule's test split, when fitting finished."""
    if trainer.interrupted or not exports_bundles(model) or not has_test_split(datamodule):
        return
    trainer.test(model, datamodule=datamodule, verbose=verbose)
