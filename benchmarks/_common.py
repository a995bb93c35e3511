"""Shared pieces of the benchmarks: machine record, timing, scoring, trainer, outputs.

Both sides of a comparison (landlearn's task and TorchGeo's) are trained by the same Lightning
``Trainer`` settings on the same datamodule instance type and scored by :func:`score` with
``landlearn.metrics.LandCoverMetrics``, so the numbers differ only by the task under test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import Dataset, Subset

from landlearn.conventions import IGNORE_INDEX
from landlearn.data.datamodules import MaskFolderDataModule
from landlearn.data.folders import MaskFolderDataset
from landlearn.data.histmatch import match_histograms
from landlearn.data.splits import random_split_indices

__all__ = [
    "DATA_ROOT",
    "HelpFormatter",
    "ScaledMaskFolderDataModule",
    "ScaledMaskFolderDataset",
    "ThroughputTimer",
    "console",
    "fmt",
    "machine_info",
    "make_trainer",
    "parse_outputs_and_device",
    "print_table",
    "quiet_logs",
    "score",
    "sync",
    "write_outputs",
]

DATA_ROOT = Path(
    os.environ.get("LANDLEARN_DATA", Path(__file__).resolve().parents[2] / "shared/data")
)
"""``../shared/data`` beside the repository (override with ``LANDLEARN_DATA``)."""

# Wide enough for the tables when output goes to a file or a pipe (rich assumes 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 160)

_VERSIONED = (
    "landlearn", "torch", "lightning", "torchgeo", "segmentation-models-pytorch", "timm",
    "torchmetrics", "kornia", "rasterio", "numpy",
)  # fmt: skip


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the docstring's layout and show every option's default in ``--help``."""


# ---- machine and run record ---------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _relative(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def machine_info(device: str) -> dict[str, Any]:
    """CPU, cores, torch threads, GPU, date, exact command line and package versions."""
    versions: dict[str, str] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([_relative(sys.executable), *sys.argv]),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "device": device,
        "platform": platform.platform(),
        "versions": versions,
    }


def quiet_logs() -> None:
    """Keep Lightning's and TorchGeo's banners and per-run warnings off the benchmark output."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", module="torchgeo")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


# ---- training ------------------------------------------------------------------------------
def parse_outputs_and_device(
    p: argparse.ArgumentParser, argv: list[str] | None
) -> argparse.Namespace:
    """Add ``--json`` / ``--md``, parse, and refuse ``--device cuda`` where torch sees no GPU."""
    p.add_argument("--json", default=None, help="write the full record here")
    p.add_argument("--md", default=None, help="write a markdown snippet for RESULTS.md here")
    args = p.parse_args(argv)
    if getattr(args, "device", "cpu") == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no GPU")
    return args


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class ThroughputTimer(pl.Callback):
    """Training time without validation, and samples seen, for images (chips) per second.

    Counts data loading, forward, backward and optimiser steps of the training batches;
    validation inside ``fit`` is timed separately and left out.
    """

    def __init__(self, log_epochs: bool = True) -> None:
        """``log_epochs``: print a line per epoch (time and validation scores)."""
        super().__init__()
        self.log_epochs = log_epochs
        self.train_seconds = 0.0
        self.val_seconds = 0.0
        self.samples = 0
        self.epochs = 0
        self._epoch_start = 0.0
        self._val_start = 0.0
        self._val_in_epoch = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the epoch clock."""
        sync(pl_module.device)
        self._epoch_start = time.perf_counter()
        self._val_in_epoch = 0.0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        """Count the batch's samples."""
        self.samples += int(batch["image"].shape[0])

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Pause: validation is not training throughput."""
        sync(pl_module.device)
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Resume."""
        sync(pl_module.device)
        spent = time.perf_counter() - self._val_start
        self._val_in_epoch += spent
        self.val_seconds += spent

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Add the epoch's training time."""
        sync(pl_module.device)
        seconds = time.perf_counter() - self._epoch_start - self._val_in_epoch
        self.train_seconds += seconds
        self.epochs += 1
        if self.log_epochs:
            logged = trainer.callback_metrics
            keys = ("train_loss_epoch", "val_loss", "val_oa", "val_miou", "val_OverallAccuracy")
            scores = ", ".join(f"{k} {float(logged[k]):.4f}" for k in keys if k in logged)
            console.print(
                f"epoch {self.epochs}/{trainer.max_epochs}: {seconds:.0f} s training"
                + (f"; {scores}" if scores else ""),
                highlight=False,
            )

    @property
    def images_per_second(self) -> float:
        """Training samples per second of training time."""
        return self.samples / self.train_seconds if self.train_seconds > 0 else float("nan")


def make_trainer(
    epochs: int,
    device: str,
    precision: str,
    callbacks: Sequence[pl.Callback] = (),
    progress: bool = False,
) -> pl.Trainer:
    """One Lightning ``Trainer`` recipe for both sides: no logger, no checkpoints, final weights.

    Deterministic on CPU; on CUDA some kernels (e.g. upsampling backward) have no deterministic
    version, so there determinism is requested with a warning instead of an error.
    """
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        deterministic=True if device == "cpu" else "warn",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
    )


# ---- scoring -------------------------------------------------------------------------------
@torch.no_grad()
def score(
    model: nn.Module,
    datamodule: Any,
    class_names: list[str],
    task: str,
    device: str,
    tta: bool = False,
) -> tuple[dict[str, Any], float]:
    """Score ``model`` on the datamodule's test split with ``LandCoverMetrics``.

    Batches are normalised exactly as in training (``datamodule.normalize``). ``tta`` averages
    the softmax over the 8 flips / rotations (``landlearn.d4``; masks are turned back before
    averaging). Returns the metrics dict and the images (chips) per second
    of inference.
    """
    from landlearn.d4 import d4_mean
    from landlearn.metrics import LandCoverMetrics

    metrics = LandCoverMetrics(
        len(class_names), task=task, ignore_index=IGNORE_INDEX, class_names=class_names
    )
    if isinstance(metrics, nn.Module):
        metrics = metrics.to(device)
    was_training = model.training
    model.eval().to(device)
    key = "label" if task == "classification" else "mask"
    seen = 0
    sync(device)
    start = time.perf_counter()
    for batch in datamodule.test_dataloader():
        x = datamodule.normalize(batch["image"].to(device).float())
        y = batch[key].to(device)
        if y.ndim == 4 and y.shape[1] == 1:  # (B, 1, H, W) masks
            y = y[:, 0]
        probs = d4_mean(
            lambda t: torch.softmax(model(t).float(), dim=1),
            x,
            spatial=task != "classification",
            tta="d4" if tta else None,
        )
        metrics.update(probs, y.long())
        seen += x.shape[0]
    sync(device)
    seconds = time.perf_counter() - start
    model.train(was_training)
    return _plain(metrics.compute()), seen / seconds if seconds > 0 else float("nan")


def _plain(value: Any) -> Any:
    """Tensors and numpy values → JSON-ready Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _plain(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray | np.generic):
        return _plain(value.tolist())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def plain(value: Any) -> Any:
    """Public alias of the JSON conversion used for results."""
    return _plain(value)


# ---- output --------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell; ``–`` for missing. Large numbers get fewer decimals."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if not np.isfinite(value):
            return "nan"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.{digits}f}"
    return str(value)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on the console."""
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[fmt(v) if not isinstance(v, str) else v for v in row])
    console.print(table)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += [
        "| " + " | ".join(fmt(v) if not isinstance(v, str) else v for v in row) + " |"
        for row in rows
    ]
    return "\n".join(lines)


def machine_markdown(machine: dict[str, Any]) -> str:
    """The machine and command lines that go under a results table."""
    v = machine["versions"]
    gpu = machine["gpu"] or "none"
    return (
        f"Machine: {machine['cpu']}, {machine['cpu_cores_usable']} usable of "
        f"{machine['cpu_cores']} cores, torch threads {machine['torch_threads']}, GPU {gpu}, "
        f"device `{machine['device']}`. Date {machine['date']}.  \n"
        f"Versions: landlearn {v['landlearn']}, torch {v['torch']}, lightning {v['lightning']}, "
        f"torchgeo {v['torchgeo']}, smp {v['segmentation-models-pytorch']}, timm {v['timm']}, "
        f"torchmetrics {v['torchmetrics']}, kornia {v['kornia']}, python {v['python']}.  \n"
        f"Command: `{machine['command']}`"
    )


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_outputs(
    result: dict[str, Any], json_path: str | None, md_path: str | None, markdown: str
) -> None:
    """Write the JSON record and the markdown snippet (temp name, then rename)."""
    if json_path:
        _atomic_write(Path(json_path), json.dumps(_plain(result), indent=2) + "\n")
        console.print(f"wrote {json_path}")
    if md_path:
        _atomic_write(Path(md_path), markdown.rstrip() + "\n")
        console.print(f"wrote {md_path}")


# ---- segmentation data wrapper ---------------------------------------------------------------
def _nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an ``(H, W)`` mask (pixel centres), keeping class codes."""
    h, w = mask.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


class ScaledMaskFolderDataset(MaskFolderDataset):
    """``MaskFolderDataset`` read at ``scale`` of the native size.

    Images are resampled by area averaging, masks by nearest neighbour; chips are then cut on a
    grid of the resampled image. ``scale=0.25`` turns a 2448² DeepGlobe tile into 612².
    """

    def __init__(
        self, *args: Any, scale: float = 1.0, reference: np.ndarray | None = None, **kwargs: Any
    ) -> None:
        """``reference`` (C, H, W): match every image's histograms to it, band by band."""
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        self.scale = float(scale)
        self.reference = reference
        super().__init__(*args, **kwargs)
        if self.scale == 1.0:
            return
        self.native_sizes = list(self.sizes)
        self.sizes = [(max(1, round(h * scale)), max(1, round(w * scale))) for h, w in self.sizes]
        self.chips = self._grid_chips()

    def decode_mask(self, k: int) -> np.ndarray:
        """The mask of file ``k`` at the dataset's scale."""
        mask = super().decode_mask(k)
        return mask if self.scale == 1.0 else _nearest(mask, self.sizes[k])

    def _load(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if (self.scale == 1.0 and self.reference is None) or k in self._cache:
            return super()._load(k)
        image, mask = super()._load(k)  # caches the native image; replaced below
        if self.scale != 1.0:
            t = torch.from_numpy(image.astype(np.float32))[None]  # (1, C, H, W)
            image = F.interpolate(t, size=self.sizes[k], mode="area")[0].numpy()
        if self.reference is not None:
            image = match_histograms(image, self.reference)
        self._cache[k] = (image, mask)
        return image, mask

    def pooled_images(self) -> np.ndarray:
        """All files' images side by side (cropped to the shortest), a histogram reference."""
        images = [self._load(k)[0] for k in range(len(self.sizes))]
        h = min(im.shape[1] for im in images)
        return np.concatenate([im[:, :h] for im in images], axis=2)


class ScaledMaskFolderDataModule(MaskFolderDataModule):
    """``MaskFolderDataModule`` with train / test file lists, a scale and a val split by chip.

    The library datamodule splits by whole file, which leaves 2 of DeepGlobe's 3 training tiles
    for training; here ``val_fraction`` of the train files' chips is held out instead (it only
    drives TorchGeo's plateau schedule; neither side selects a checkpoint on it).
    ``point_fraction`` < 1 keeps that share of labelled train and val pixels as random points
    per class (``sparse_points``); test masks stay dense.

    Args:
        train_files: image file names (or stems) for train and val.
        test_files: image file names (or stems) for test, from the same folders.
        scale: resampling factor applied to every image and mask.
        point_fraction: sparse-label share of pixels kept in train / val.
        limit_train_chips: keep only this many (seeded random) train chips, for smoke runs.
        histmatch: match each test image's histograms to the train images pooled (landlearn's
            ``match_histograms``), the DeepGlobe study's remedy for a test tile unlike the rest.
    """

    def __init__(
        self,
        images: str,
        masks: str,
        classes_csv: str,
        train_files: list[str],
        test_files: list[str],
        scale: float = 1.0,
        chip_size: int = 256,
        val_fraction: float = 0.1,
        point_fraction: float = 1.0,
        limit_train_chips: int | None = None,
        histmatch: bool = False,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        augment: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            images, masks, classes_csv=classes_csv, chip_size=chip_size,
            val_fraction=val_fraction, test_fraction=0.0, batch_size=batch_size,
            num_workers=num_workers, seed=seed, augment=augment,
        )  # fmt: skip
        self.train_files, self.test_files = list(train_files), list(test_files)
        self.scale = float(scale)
        self.point_fraction = float(point_fraction)
        self.limit_train_chips = limit_train_chips
        self.histmatch = histmatch

    def _scaled(
        self, files: list[str], points: float, reference: np.ndarray | None = None
    ) -> ScaledMaskFolderDataset:
        return ScaledMaskFolderDataset(
            self.images, self.masks, self.color_table, self.remap, self.chip_size, files,
            points, self.seed, scale=self.scale, reference=reference,
        )  # fmt: skip

    def _build(self) -> None:
        train_all = self._scaled(self.train_files, self.point_fraction)
        train, val, _ = random_split_indices(len(train_all), self.val_fraction, 0.0, self.seed)
        if self.limit_train_chips:
            rng = np.random.default_rng(self.seed)
            train = sorted(rng.permutation(train)[: self.limit_train_chips].tolist())
        self.train_dataset = Subset(train_all, train)
        self.val_dataset = Subset(train_all, val) if val else None
        reference = train_all.pooled_images() if self.histmatch else None
        self.test_dataset = self._scaled(self.test_files, 1.0, reference)
        self.band_names = list(train_all.band_names)

    def _train_class_counts(self) -> np.ndarray:
        counts = np.zeros(IGNORE_INDEX, dtype=np.int64)
        ds: Dataset[dict[str, torch.Tensor]] = self.train_dataset  # type: ignore[assignment]
        for i in range(len(ds)):  # type: ignore[arg-type]
            m = ds[i]["mask"].numpy().ravel()
            counts += np.bincount(m, minlength=IGNORE_INDEX + 1)[:IGNORE_INDEX]
        return counts

    def describe(self) -> dict[str, Any]:
        """Chips and pixels per split, for the run record."""
        if self.train_dataset is None:
            self.setup("fit")
        assert self.train_dataset is not None
        assert self.test_dataset is not None
        counts = self._train_class_counts()[: self.num_classes]
        return {
            "train_files": self.train_files,
            "test_files": self.test_files,
            "scale": self.scale,
            "chip_size": self.chip_size,
            "train_chips": len(self.train_dataset),  # type: ignore[arg-type]
            "val_chips": len(self.val_dataset or []),  # type: ignore[arg-type]
            "test_chips": len(self.test_dataset),  # type: ignore[arg-type]
            "point_fraction": self.point_fraction,
            "histmatch_test": self.histmatch,
            "train_labelled_pixels": int(counts.sum()),
        }
