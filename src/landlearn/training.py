"""``landlearn.train``: train from Python exactly as ``landlearn fit`` does.

From a config (a YAML path or the same content as a dict) the run goes through ``landlearn
fit``'s own code (:mod:`landlearn.lightning_cli`); from a task and a datamodule you built it
gets the same defaults and callbacks. Either way :class:`~landlearn.run_outputs.RunOutputs`
leaves the same run folder (bundle, metrics, examples, report).

Example:
    >>> import landlearn
    >>> result = landlearn.train("configs/eurosat_resnet18.yaml", "--trainer.max_epochs=2")
    >>> result.metrics["overall_accuracy"], result.bundle
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger

from landlearn.errors import LandlearnError
from landlearn.run_outputs import (
    RunOutputs,
    default_callbacks,
    pair_tensorboard,
    run_dir,
    run_outputs,
    run_test_after_fit,
)
from landlearn.verbosity import is_quiet

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    """What :func:`train` made: the run folder, the bundle, the test metrics and the objects."""

    run_dir: Path
    bundle: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    task: Any = None
    trainer: Trainer | None = None
    datamodule: Any = None


def train(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *overrides: str,
    model: LightningModule | None = None,
    datamodule: LightningDataModule | None = None,
    name: str = "run",
    root: str | os.PathLike[str] = "runs",
    bundle: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    test: bool = True,
    report: bool = True,
    seed: int | None = 0,
    **trainer_kwargs: Any,
) -> TrainResult:
    """Train, test the best weights, and write the run folder, exactly as ``landlearn fit``.

    Either ``config`` (a YAML path or the same content as a dict, plus command-line style
    ``overrides`` such as ``"--trainer.max_epochs=2"``), run through ``landlearn fit``'s own
    code; or ``model`` (a landlearn task) and ``datamodule`` you built, with ``trainer_kwargs``
    for :class:`lightning.pytorch.Trainer` (``max_epochs=3``, ``accelerator="cpu"`` …) and the
    same defaults as the CLI (logs in ``root/name/version_N``, best checkpoint, early stopping
    when the task has ``patience``, deterministic algorithms, ``seed``).

    Returns:
        The run folder, the bundle path, the test metrics (empty without a test split or with
        ``test=False``), the task, trainer and datamodule.

    Raises:
        LandlearnError: a bad config (one line naming the file and key), or neither / both of
            ``config`` and ``model``.
    """
    if (config is None) == (model is None):
        raise LandlearnError("train() takes a config, or a model and a datamodule (not both)")
    if config is not None:
        return _train_config(config, overrides, name, bundle, overwrite, test, report)
    if model is None or datamodule is None:
        raise LandlearnError("train(model=...) needs datamodule= as well")
    if bundle is not None:
        from landlearn.safety import Output, check_outputs

        check_outputs([Output(Path(bundle), "bundle")], overwrite=overwrite)
    if overrides:
        raise LandlearnError("command-line overrides apply to a config; pass Trainer keywords")
    return _train_objects(model, datamodule, name, root, bundle, test, report, seed, trainer_kwargs)


def _train_config(
    config: str | os.PathLike[str] | Mapping[str, Any],
    overrides: Sequence[str],
    name: str,
    bundle: str | os.PathLike[str] | None,
    overwrite: bool,
    test: bool,
    report: bool,
) -> TrainResult:
    from landlearn.lightning_cli import make_cli

    extra = [*overrides]
    if bundle is not None:
        extra += ["--bundle", os.fspath(bundle)]
    if overwrite:
        extra.append("--overwrite")
    if not test:
        extra.append("--no_test=true")
    if not report:
        extra.append("--no_report=true")
    if isinstance(config, Mapping):
        import yaml

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(yaml.safe_dump(dict(config)))
            cli = make_cli(["fit", "--config", str(path), *extra], run=True)
    else:
        cli = make_cli(["fit", "--config", os.fspath(config), *extra], run=True)
    return _result(cli.trainer, cli.model, cli.datamodule)


def _train_objects(
    model: LightningModule,
    datamodule: LightningDataModule,
    name: str,
    root: str | os.PathLike[str],
    bundle: str | os.PathLike[str] | None,
    test: bool,
    report: bool,
    seed: int | None,
    trainer_kwargs: dict[str, Any],
) -> TrainResult:
    import lightning.pytorch as pl

    if seed is not None:
        pl.seed_everything(seed, workers=True)
    given = list(trainer_kwargs.pop("callbacks", None) or [])
    if bundle is not None or not report:
        given.append(RunOutputs(bundle=bundle, report=report))
    kwargs: dict[str, Any] = {
        "default_root_dir": os.fspath(root),
        "deterministic": "warn",
        "log_every_n_steps": 10,
        **trainer_kwargs,
    }
    if "logger" not in kwargs:
        kwargs["logger"] = CSVLogger(save_dir=os.fspath(root), name=name)
    have = {type(c) for c in given}
    callbacks = given + default_callbacks(model, have, logger=kwargs["logger"] not in (None, False))
    trainer = Trainer(callbacks=callbacks, **kwargs)
    pair_tensorboard(trainer)
    trainer.fit(model, datamodule=datamodule)
    if test:
        run_test_after_fit(trainer, model, datamodule, verbose=not is_quiet())
    return _result(trainer, model, datamodule)


def _result(trainer: Trainer, model: Any, datamodule: Any) -> TrainResult:
    outputs = run_outputs(trainer)
    return TrainResult(
        run_dir=run_dir(trainer),
        bundle=outputs.bundle_path if outputs is not None else None,
        metrics=dict(outputs.metrics) if outputs is not None else {},
        task=model,
        trainer=trainer,
        datamodule=datamodule,
    )
