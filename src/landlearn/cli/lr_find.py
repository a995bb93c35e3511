"""Suggest a learning rate for a config (Lightning's LR range test).

Trains briefly with an exponentially growing learning rate and picks the steepest descent of the
loss curve. Prints the suggestion and writes a plot.

Example:
  landlearn lr-find --config configs/eurosat_resnet18.yaml --out lr_find.png
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from landlearn.cli.common import atomic_path
from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landlearn lr-find``."""
    parser.add_argument("--config", "-c", required=True, help="training config (YAML)")
    parser.add_argument("--min-lr", type=float, default=1e-7)
    parser.add_argument("--max-lr", type=float, default=1.0)
    parser.add_argument("--num-training", type=int, default=100, help="steps to try")
    parser.add_argument("--out", default="lr_find.png", help="plot path (PNG)")
    parser.add_argument(
        "--overwrite", action="store_true", help="let --out replace a PNG landlearn did not write"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="extra LightningCLI options, e.g. --data.init_args.batch_size=8",
    )


def suggest_lr(lrs: list[float], losses: list[float], skip_begin: int = 3) -> float | None:
    """Steepest descent of the loss in log-LR, before the loss minimum (Smith 2017; fastai).

    Lightning's own suggestion differentiates with respect to the linear learning rate, which
    favours the flat start of the curve; the log scale is what the plot shows.
    """
    import numpy as np

    lr = np.asarray(lrs, dtype=float)
    loss = np.asarray(losses, dtype=float)
    ok = np.isfinite(loss) & (lr > 0)
    lr, loss = lr[ok], loss[ok]
    if len(loss) < skip_begin + 3:
        return None
    lr, loss = lr[skip_begin:], loss[skip_begin:]  # the smoothed start is unreliable
    stop = int(np.argmin(loss)) + 1
    lr, loss = lr[:stop], loss[:stop]
    if len(loss) < 3:
        return None
    slope = np.gradient(loss, np.log10(lr))
    return float(lr[int(np.argmin(slope))])


def run(args: argparse.Namespace) -> int:
    """Run the range test; prints the suggested learning rate."""
    from lightning.pytorch.tuner import Tuner
    from matplotlib.figure import Figure

    from landlearn.lightning_cli import make_cli

    if not Path(args.config).is_file():
        raise LandlearnError("no such config file", args.config)
    from landlearn.safety import Output, check_outputs

    check_outputs([Output(Path(args.out), "plot")], [args.config], overwrite=args.overwrite)
    cli = make_cli(["--config", args.config, *args.overrides], run=False)
    # the range test runs --num-training steps, however few batches an epoch has
    cli.trainer.fit_loop.max_epochs = 10**6
    cli.trainer.limit_val_batches = 0
    finder = Tuner(cli.trainer).lr_find(
        cli.model,
        datamodule=cli.datamodule,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        num_training=args.num_training,
        update_attr=False,
    )
    if finder is None:
        raise LandlearnError("the LR range test did not run (no training batches?)", args.config)
    lrs, losses = finder.results["lr"], finder.results["loss"]
    suggestion = suggest_lr(lrs, losses)
    fig = finder.plot(suggest=False)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    if suggestion:
        ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.2e}")
        ax.legend()
    ax.set_title("LR range test (steepest descent before the loss minimum)")
    with atomic_path(args.out) as tmp:
        fig.savefig(
            tmp, format="png", dpi=120, bbox_inches="tight", metadata={"Software": "landlearn"}
        )
    print(f"suggested learning rate: {suggestion:.3g}" if suggestion else "no suggestion")
    print(f"plot: {args.out}")
    return 0
