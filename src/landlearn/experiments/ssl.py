"""``landlearn experiment ssl``: SimCLR pre-training, then a linear probe and fine-tuning.

Issue 19, experiment 1 on EuroSAT RGB. Per seed: SimCLR
(:class:`~landlearn.tasks.ContrastiveTask`) on ``pretrain_images`` random training images per
epoch, labels unused; then at each label fraction (of the training split, stratified, at least
one image per class) three rows with the same epochs and the same labelled images: **scratch**
(a fresh classifier), **probe** (the pre-trained encoder frozen, a linear head trained) and
**fine-tune** (everything trained from the encoder, the encoder at ``encoder_lr``); test on the
1,000 test images. The table gives test accuracy mean ± std over seeds, and fine-tune minus
scratch paired by seed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from landlearn.errors import LandlearnError
from landlearn.experiments.common import (
    fit_quietly,
    machine,
    machine_markdown,
    markdown_table,
    mean_std,
    save_figure,
    write_study,
)

log = logging.getLogger(__name__)

__all__ = ["SSL_ROWS", "SSLOptions", "run_ssl"]

SSL_ROWS = ("scratch", "probe", "finetune")
Say = Callable[[str], None]


@dataclass
class SSLOptions:
    """What the study runs; :meth:`check` refuses bad values with one line."""

    eurosat: str = "../shared/data/eurosat_rgb"
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.2, 1.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    encoder: str = "resnet18"
    pretrain_epochs: int = 10
    pretrain_images: int = 2000
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    encoder_lr: float = 1e-4
    memory_bank_size: int = 4096
    temperature: float = 0.1
    limit_test_batches: int | None = None

    def check(self) -> None:
        """Raises LandlearnError on a bad option."""
        if not Path(self.eurosat, "train").is_dir() or not Path(self.eurosat, "test").is_dir():
            raise LandlearnError("expected EuroSAT RGB train/ and test/ folders", self.eurosat)
        bad = [f for f in self.fractions if not 0.0 < f <= 1.0]
        if bad:
            raise LandlearnError(f"label fractions must be in (0, 1], got {bad[0]}")
        if not self.seeds:
            raise LandlearnError("give at least one seed")
        if min(self.pretrain_epochs, self.pretrain_images, self.epochs, self.batch_size) < 1:
            raise LandlearnError("epochs, images and batch size must be >= 1")


def pretrain(opts: SSLOptions, seed: int, work: Path) -> tuple[Path, float, float]:
    """SimCLR on the training images without labels: the encoder bundle, its loss, seconds."""
    from landlearn.data.datamodules import ImageFolderDataModule
    from landlearn.tasks import ContrastiveTask

    root = str(Path(opts.eurosat, "train"))
    dm = ImageFolderDataModule(
        root, val_fraction=0.0, test_fraction=0.0, batch_size=opts.batch_size, seed=seed
    )
    task = ContrastiveTask(encoder=opts.encoder, memory_bank_size=opts.memory_bank_size,
                           temperature=opts.temperature, lr=opts.lr)  # fmt: skip
    batches = max(1, opts.pretrain_images // opts.batch_size)
    t0 = time.perf_counter()
    result = fit_quietly(task, dm, f"simclr_seed{seed}", work, seed, opts.pretrain_epochs,
                  limit_train_batches=batches)  # fmt: skip
    if result.bundle is None:
        raise LandlearnError("pre-training wrote no encoder bundle", work)
    loss = float(result.trainer.callback_metrics.get("train_loss", float("nan")))
    return Path(result.bundle), loss, time.perf_counter() - t0


def supervised(opts: SSLOptions, row: str, fraction: float, seed: int, encoder: Path | None,
               work: Path) -> dict[str, Any]:  # fmt: skip
    """One labelled fit of ``row`` at ``fraction``: its test accuracy."""
    from landlearn.data.datamodules import ImageFolderDataModule
    from landlearn.tasks import ClassificationTask

    dm = ImageFolderDataModule(
        str(Path(opts.eurosat, "train")), test_root=str(Path(opts.eurosat, "test")),
        val_fraction=0.05, label_fraction=fraction, batch_size=opts.batch_size, seed=seed,
        augment={"hflip": 0.5, "vflip": 0.5, "rot90": 0.5},
    )  # fmt: skip
    from landlearn.models import list_models

    model = opts.encoder if opts.encoder in list_models() else f"timm:{opts.encoder}"
    kwargs: dict[str, Any] = {"model": model, "lr": opts.lr, "scheduler": "cosine"}
    if row == "probe":
        kwargs |= {"weights": str(encoder), "freeze_encoder": True}
    elif row == "finetune":
        kwargs |= {"weights": str(encoder), "encoder_lr": opts.encoder_lr}
    extra = {"limit_test_batches": opts.limit_test_batches} if opts.limit_test_batches else {}
    t0 = time.perf_counter()
    name = f"{row}_{fraction}_seed{seed}"
    result = fit_quietly(ClassificationTask(**kwargs), dm, name, work, seed, opts.epochs, **extra)
    assert dm.train_dataset is not None
    return {
        "row": row, "fraction": fraction, "seed": seed,
        "labelled": len(dm.train_dataset),  # type: ignore[arg-type]
        "accuracy": float(result.metrics.get("overall_accuracy", float("nan"))),
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip


def summarise(runs: list[dict[str, Any]], opts: SSLOptions) -> str:
    """The markdown table: accuracy per row and fraction, and fine-tune − scratch by seed."""

    def acc(row: str, f: float, s: int) -> float | None:
        got = [r["accuracy"] for r in runs if (r["row"], r["fraction"], r["seed"]) == (row, f, s)]
        return got[0] if got else None

    columns = ["labels", "labelled images", *SSL_ROWS, "fine-tune − scratch"]
    lines = []
    for f in opts.fractions:
        n = next((r["labelled"] for r in runs if r["fraction"] == f), "–")
        cells = [mean_std([acc(row, f, s) for s in opts.seeds]) for row in SSL_ROWS]
        deltas = [
            a - b for s in opts.seeds
            if (a := acc("finetune", f, s)) is not None and (b := acc("scratch", f, s)) is not None
        ]  # fmt: skip
        lines.append([f"{100 * f:g} %", n, *cells, mean_std(deltas)])
    return markdown_table(columns, lines)


def _plot(runs: list[dict[str, Any]], opts: SSLOptions, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for row in SSL_ROWS:
        means, stds = [], []
        for f in opts.fractions:
            vals = [r["accuracy"] for r in runs if r["row"] == row and r["fraction"] == f]
            means.append(np.mean(vals) if vals else np.nan)
            stds.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
        x = [100 * f for f in opts.fractions]
        ax.errorbar(x, means, yerr=stds, marker="o", capsize=3, label=row)
    ax.set_xscale("log")
    ax.set_xlabel("labelled share of the training split (%)")
    ax.set_ylabel("test accuracy (1,000 images)")
    ax.set_title(f"EuroSAT RGB: SimCLR + probe / fine-tune vs scratch (±1 sd, {len(opts.seeds)} "
                 "seeds)", fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def run_ssl(opts: SSLOptions, out: Path, say: Say = log.info) -> dict[str, Any]:
    """Pre-train per seed, then every row at every fraction; write json / md / png."""
    opts.check()
    t0 = time.perf_counter()
    work = out / "runs"
    runs: list[dict[str, Any]] = []
    pre: list[dict[str, Any]] = []
    for seed in opts.seeds:
        bundle, loss, seconds = pretrain(opts, seed, work)
        pre.append({"seed": seed, "loss": loss, "seconds": seconds, "bundle": str(bundle)})
        say(f"seed {seed}: SimCLR {opts.pretrain_epochs} epochs, loss {loss:.3f}, {seconds:.0f} s")
        for f in opts.fractions:
            for row in SSL_ROWS:
                run = supervised(opts, row, f, seed, bundle, work)
                runs.append(run)
                say(f"seed {seed} {row:8s} {100 * f:g} % ({run['labelled']} images): "
                    f"accuracy {run['accuracy']:.4f} ({run['seconds']:.0f} s)")  # fmt: skip
    table = summarise(runs, opts)
    info = machine()
    wall = (time.perf_counter() - t0) / 60
    budget = (
        f"EuroSAT RGB ({opts.eurosat}); {opts.encoder} from scratch; SimCLR {opts.pretrain_epochs} "
        f"epochs × {opts.pretrain_images} random training images (labels unused), batch "
        f"{opts.batch_size}, memory bank {opts.memory_bank_size}, temperature {opts.temperature}; "
        f"then {opts.epochs} epochs per labelled fit (AdamW {opts.lr}, cosine, flips / quarter "
        f"turns; fine-tune encoder lr {opts.encoder_lr}); seeds {opts.seeds}; wall {wall:.1f} "
        "min on the CPU."
    )
    md = "\n\n".join([budget, "Test accuracy, mean ± std over seeds:", table,
                      machine_markdown(info)])  # fmt: skip
    record = {"options": asdict(opts), "pretraining": pre, "runs": runs, "table": table,
              "machine": info}  # fmt: skip
    write_study(out, "ssl", record, md)
    _plot(runs, opts, out / "ssl.png")
    return record
