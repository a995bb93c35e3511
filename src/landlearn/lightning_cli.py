"""``landlearn fit|validate|test|predict --config X.yaml``: LightningCLI with landlearn defaults.

Used by the ``fit`` family of commands and by :func:`landlearn.train` (so both run one code).

Defaults added here: CSV + TensorBoard logs in one run folder ``runs/<config name>/version_N``,
the best checkpoint by the task's monitored metric, early stopping when ``patience`` > 0, an LR
monitor, deterministic algorithms, and seed 0. ``fit`` ends by testing the best weights (when the
datamodule has a test split); :class:`landlearn.training.RunOutputs` writes ``model.safetensors``,
``metrics.json``, ``metrics.md``, ``examples.npz`` and ``report/`` into the run folder, the same
files :func:`landlearn.train` leaves.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger

from landlearn.atomic import atomic_path
from landlearn.config_checks import (
    check_config_values,
    check_configs,
    parse_error,
    remove_empty_run,
)
from landlearn.run_outputs import (
    RunOutputs,
    default_callbacks,
    exports_bundles,
    pair_tensorboard,
    run_dir,
    run_outputs,
    run_test_after_fit,
)
from landlearn.verbosity import is_debug, is_quiet

log = logging.getLogger(__name__)

__all__ = ["LandlearnCLI", "check_configs", "make_cli", "run_dir"]

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
            "--no_report", type=bool, default=False, help="fit/test: skip the report page"
        )
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="fit: let --bundle replace an existing file (never one of the run's inputs)",
        )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        model = self.model
        given = [c for c in (config.get("callbacks") or []) if isinstance(c, Callback)]
        have = {type(c) for c in callbacks} | {type(c) for c in given}
        sub = self.config.get("subcommand")
        options = self.config[sub] if sub else self.config
        extra: list[Callback] = []
        if exports_bundles(model) and RunOutputs not in have:
            extra.append(
                RunOutputs(bundle=options.get("bundle"), report=not options.get("no_report"))
            )
            have.add(RunOutputs)
        checkpointing = config.get("enable_checkpointing", True) is not False
        if not checkpointing:
            have.add(ModelCheckpoint)
        extra += default_callbacks(model, have, logger=config.get("logger") not in (False, None))
        lg = config.get("logger")
        root = config.get("default_root_dir")
        if isinstance(lg, CSVLogger) and lg.save_dir == "runs" and root not in (None, "runs"):
            config["logger"] = CSVLogger(save_dir=root, name=lg.name)  # follow default_root_dir
        if is_quiet():
            config["enable_progress_bar"] = False
            config["enable_model_summary"] = False
        trainer = super()._instantiate_trainer(config, callbacks + extra)
        pair_tensorboard(trainer)
        return trainer

    # ---- after each subcommand ----------------------------------------------------------
    def after_fit(self) -> None:
        """Test the best weights (``RunOutputs`` loaded them and writes the run's files)."""
        if self.config_init[self.subcommand].get("no_test"):
            return
        run_test_after_fit(self.trainer, self.model, self.datamodule, verbose=not is_quiet())

    @property
    def bundle_path(self) -> Path | None:
        """The bundle this run wrote, if any."""
        outputs = run_outputs(self.trainer)
        return outputs.bundle_path if outputs is not None else None

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
            model_class=LightningModule,
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
