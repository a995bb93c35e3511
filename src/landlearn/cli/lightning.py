"""``landlearn fit|validate|test|predict --config X.yaml``: LightningCLI with landlearn defaults.

Defaults added here: CSV + TensorBoard logs in one run folder ``runs/<config name>/version_N``,
the best checkpoint by the task's monitored metric, early stopping when ``patience`` > 0, an LR
monitor, deterministic algorithms, and seed 0. ``fit`` ends by testing the best weights (when the
datamodule has a test split) and exporting ``model.safetensors``, ``metrics.json``, ``metrics.md``
and ``examples.npz`` into the run folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from landlearn.bundle import save_bundle
from landlearn.cli.common import atomic_path, is_debug, is_quiet, write_json
from landlearn.cli.configs import (
    check_config_values,
    check_configs,
    parse_error,
    remove_empty_run,
)
from landlearn.tasks import LandlearnTask

log = logging.getLogger(__name__)

__all__ = ["LandlearnCLI", "check_configs", "make_cli", "run_lightning"]

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class _ParseError(BaseException):
    """jsonargparse's error message, raised instead of printing the usage and exiting.

    A ``BaseException`` like the ``SystemExit`` it replaces, so no ``except Exception`` inside
    jsonargparse or Lightning swallows it on the way to :func:`make_cli`.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Parser(LightningArgumentParser):
    """Raises :class:`_ParseError` where jsonargparse would print ~50 lines of usage and exit.

    jsonargparse's inner parsers (``exit_on_error=False``) raise and catch their own errors
    while trying types, so only the outer ones change; ``--debug`` keeps the full usage.
    """

    def error(self, message: str, ex: Exception | None = None) -> Any:
        """Raise :class:`_ParseError`, or behave as jsonargparse does (inner parsers, --debug)."""
        if not self.exit_on_error or is_debug():
            return super().error(message, ex)
        raise _ParseError(message) from ex


class LandlearnCLI(LightningCLI):
    """LightningCLI whose model is any landlearn task and whose data is any datamodule."""

    def __init__(self, *args: Any, user_argv: list[str] | None = None, **kwargs: Any) -> None:
        """``user_argv``: the arguments as the user gave them, to name config files in errors."""
        self.argv = list(user_argv or [])
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then range-check the config before Lightning seeds, builds or spawns anything."""
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        config = self.config[sub] if sub else self.config
        check_config_values(config, self.argv)
        if sub == "fit" and config.get("bundle"):
            _check_bundle_output(config, self.argv)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; a failed run's folder goes when it holds only Lightning's start-up files."""
        folder = run_dir(self.trainer)
        existed = folder.exists()
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            if not existed and remove_empty_run(folder):
                log.debug("removed the empty run folder %s", folder)
            raise

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """``--bundle PATH``: where ``fit`` writes the model bundle (default: the run folder)."""
        parser.add_argument("--bundle", type=str | None, default=None, help="bundle output path")
        parser.add_argument(
            "--no_test", type=bool, default=False, help="fit: skip testing the best weights"
        )
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="fit: let --bundle replace an existing file (never one of the run's inputs)",
        )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        model = self.model
        have = {type(c) for c in callbacks} | {
            type(c) for c in (config.get("callbacks") or []) if isinstance(c, Callback)
        }
        extra: list[Callback] = []
        if isinstance(model, LandlearnTask):
            if (
                ModelCheckpoint not in have
                and config.get("enable_checkpointing", True) is not False
            ):
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
        if config.get("logger") not in (False, None) and LearningRateMonitor not in have:
            extra.append(LearningRateMonitor(logging_interval="epoch"))
        lg = config.get("logger")
        root = config.get("default_root_dir")
        if isinstance(lg, CSVLogger) and lg.save_dir == "runs" and root not in (None, "runs"):
            config["logger"] = CSVLogger(save_dir=root, name=lg.name)  # follow default_root_dir
        if is_quiet():
            config["enable_progress_bar"] = False
            config["enable_model_summary"] = False
        trainer = super()._instantiate_trainer(config, callbacks + extra)
        _pair_tensorboard(trainer)
        return trainer

    # ---- after each subcommand ----------------------------------------------------------
    def after_fit(self) -> None:
        """Test the best weights and export the bundle, metrics and examples."""
        trainer, model = self.trainer, self.model
        if trainer.interrupted or not isinstance(model, LandlearnTask):
            return
        best = _best_checkpoint(trainer)
        if best:
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            model.load_state_dict(state)
            log.info("best checkpoint: %s", best)
        if not self.config_init[self.subcommand].get("no_test") and _has_test_split(
            self.datamodule
        ):
            trainer.test(model, datamodule=self.datamodule, verbose=not is_quiet())
        self._export(model)

    def predict(self, model: Any, **kwargs: Any) -> None:
        """Predict the datamodule's predict split; save classes and confidences."""
        outputs = self.trainer.predict(model, **kwargs)
        if not outputs:
            return
        probs = torch.cat([o.float().cpu() for o in outputs])  # type: ignore[union-attr]
        conf, pred = probs.max(dim=1)
        out = run_dir(self.trainer) / "predictions.npz"
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, pred=pred.numpy().astype(np.uint8), confidence=conf.numpy())
        log.info("predictions (%d samples): %s", len(pred), out)

    def after_test(self) -> None:
        """Write the test metrics beside the run's logs."""
        if isinstance(self.model, LandlearnTask) and self.model.test_results:
            write_outputs(self.model, run_dir(self.trainer))

    def _export(self, model: LandlearnTask) -> None:
        out = run_dir(self.trainer)
        metrics = write_outputs(model, out) if model.test_results else {}
        target = self.config_init[self.subcommand].get("bundle") or out / "model.safetensors"
        assert model.model is not None  # built in setup
        path = save_bundle(target, model.model, model.bundle_meta(metrics=_headline(metrics)))
        log.info("bundle: %s", path)
        self.bundle_path = Path(path)


def _data_paths(value: Any) -> list[str]:
    """Strings in the data section that name existing files or folders (the run's inputs)."""
    if isinstance(value, str):
        return [value] if value and os.path.exists(value) else []
    if isinstance(value, dict) or hasattr(value, "items"):
        return [p for v in value.values() for p in _data_paths(v)]
    if isinstance(value, list | tuple):
        return [p for v in value for p in _data_paths(v)]
    return []


def _check_bundle_output(config: Any, argv: list[str]) -> None:
    """``--bundle`` may not be an input (config, data) nor replace a file without --overwrite."""
    import itertools

    from landlearn.safety import Output, check_outputs

    configs = [b for a, b in itertools.pairwise(argv) if a in ("--config", "-c")]
    configs += [a.split("=", 1)[1] for a in argv if a.startswith(("--config=", "-c="))]
    inputs = [*configs, *_data_paths(config.get("data"))]
    check_outputs(
        [Output(Path(config["bundle"]), "bundle")], inputs, overwrite=bool(config.get("overwrite"))
    )


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The summary numbers stored in the bundle (no confusion matrix)."""
    keep = ("overall_accuracy", "average_accuracy", "miou", "dice", "macro_f1", "kappa", "ece")
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


def write_outputs(model: LandlearnTask, out: Path) -> dict[str, Any]:
    """metrics.json, metrics.md and examples.npz of the last test run."""
    from landlearn.report.markdown import metrics_markdown

    metrics = dict(model.test_results or {})
    metrics.setdefault("class_names", model.class_names)
    metrics["class_colors"] = model.bundle_meta().class_colors
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    with atomic_path(out / "metrics.md") as tmp:
        tmp.write_text(metrics_markdown(metrics) + "\n<!-- written by landlearn -->\n")
    ex = model.test_examples
    if ex.get("image"):
        with atomic_path(out / "examples.npz") as tmp:
            with open(tmp, "wb") as fh:
                arrays: dict[str, Any] = {k: np.stack(v) for k, v in ex.items()}
                np.savez_compressed(fh, **arrays)
    log.info("test metrics: %s", out / "metrics.json")
    return metrics


def _best_checkpoint(trainer: Trainer) -> str | None:
    cb = trainer.checkpoint_callback
    if isinstance(cb, ModelCheckpoint) and cb.best_model_path and Path(cb.best_model_path).exists():
        return cb.best_model_path
    return None


def _has_test_split(dm: LightningDataModule | None) -> bool:
    if dm is None:
        return False
    return type(dm).test_dataloader is not LightningDataModule.test_dataloader


def _pair_tensorboard(trainer: Trainer) -> None:
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


def _translate(argv: list[str]) -> list[str]:
    """``--seed N`` is ``--seed_everything N``; a bare config name gets a default run name."""
    out: list[str] = []
    it = iter(argv)
    for a in it:
        if a == "--seed":
            out += ["--seed_everything", next(it, "0")]
        elif a == "--overwrite":  # a flag, as in the other commands
            out.append("--overwrite=true")
        elif a.startswith("--seed="):
            out.append("--seed_everything=" + a.split("=", 1)[1])
        else:
            out.append(a)
    return out


def _run_name(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        if a in ("--config", "-c") and i + 1 < len(argv):
            return Path(argv[i + 1]).stem
        if a.startswith("--config="):
            return Path(a.split("=", 1)[1]).stem
    return "run"


def run_lightning(argv: list[str]) -> int:
    """Run a LightningCLI subcommand in-process; returns the exit code."""
    make_cli(argv, run=True)
    return 0


def _one_log_handler() -> None:
    """Lightning adds its own stream handlers; ours (rich, on the root logger) is enough."""
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger) and name.startswith(("lightning", "pytorch_lightning")):
            lg.handlers = [h for h in lg.handlers if not isinstance(h, logging.StreamHandler)]
            lg.propagate = True
            if is_quiet():  # Lightning sets its loggers to INFO when imported
                lg.setLevel(logging.WARNING)


def make_cli(argv: list[str], run: bool = True) -> LandlearnCLI:
    """Build (and with ``run``, execute) the LightningCLI for ``argv``.

    Raises:
        LandlearnError: a missing, broken or empty config, a key jsonargparse refuses, or a
            value out of range (one line naming the config file and the key).
    """
    check_configs(argv)
    _one_log_handler()
    given = list(argv)
    argv = _translate(argv)
    name = _run_name(argv)
    defaults: dict[str, Any] = {
        "default_root_dir": "runs",
        "deterministic": "warn",
        "logger": {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": "runs", "name": name},
        },
        "log_every_n_steps": 10,
    }
    try:
        return LandlearnCLI(
            model_class=LandlearnTask,
            subclass_mode_model=True,
            datamodule_class=LightningDataModule,
            subclass_mode_data=True,
            trainer_defaults=defaults,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"parser_mode": "omegaconf"},
            parser_class=_Parser,
            args=argv,
            auto_configure_optimizers=False,
            run=run,
            user_argv=given,
        )
    except _ParseError as err:
        raise parse_error(err.message, given) from None
