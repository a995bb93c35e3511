"""SimCLR pre-training speed: landlearn's ContrastiveTask against TorchGeo's SimCLRTask.

Issue 19, experiment 3: time per pre-training epoch and images/s on the same data and encoder.
Both sides read the same ``ImageFolderDataModule`` (EuroSAT RGB train images, labels unused,
train-split normalisation, no datamodule augmentation), a timm ResNet-18 from scratch, the same
batch size, projection widths (hidden 512, output 128), memory bank (4,096), seed and Trainer.
What differs is each side's own recipe:

- landlearn: two :class:`~landlearn.data.views.GeoViews` per image (resized crop, flip, quarter
  turn, per-band brightness / contrast, band dropout, blur), lightly's NT-Xent and SimCLR head
  (2 layers), AdamW 1e-3, cosine;
- TorchGeo: its SimCLR v1 kornia augmentations (resized crop to ``size``, flips, colour jitter,
  grayscale, blur), lightly's NT-Xent and SimCLR head (2 layers), LARS (its only optimiser).

Images/s counts source images (each seen as two views) per second of training time. Smoke::

    .venv/bin/python benchmarks/ssl_throughput.py --limit-train 128 --epochs 1 --batch-size 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_ROOT,
    HelpFormatter,
    ThroughputTimer,
    console,
    machine_info,
    machine_markdown,
    make_trainer,
    markdown_table,
    parse_outputs_and_device,
    print_table,
    quiet_logs,
    write_outputs,
)
from eurosat import EuroSATDataModule

SIDES = ("landlearn", "torchgeo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--data", type=Path, default=DATA_ROOT / "eurosat_rgb", help="has train/")
    p.add_argument("--epochs", type=int, default=2, help="pre-training epochs per side")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit-train", type=int, default=2000, metavar="N", help="images used")
    p.add_argument("--memory-bank", type=int, default=4096)
    p.add_argument("--model", default="resnet18", help="timm name known to both tasks")
    p.add_argument("--only", choices=SIDES, default=None)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    return parse_outputs_and_device(p, argv)


def _task(side: str, args: argparse.Namespace) -> pl.LightningModule:
    if side == "landlearn":
        from landlearn.tasks import ContrastiveTask

        return ContrastiveTask(encoder=args.model, memory_bank_size=args.memory_bank,
                               hidden_dim=512, projection_dim=128)  # fmt: skip
    from torchgeo.trainers import SimCLRTask

    return SimCLRTask(model=args.model, in_channels=3, version=1, layers=2, hidden_dim=512,
                      output_dim=128, memory_bank_size=args.memory_bank, size=64)  # fmt: skip


def run_side(side: str, args: argparse.Namespace) -> dict[str, Any]:
    """Pre-train one side; its timings."""
    pl.seed_everything(args.seed, workers=True)
    dm = EuroSATDataModule(root=str(args.data / "train"), val_fraction=0.0, test_fraction=0.0,
                           batch_size=args.batch_size, num_workers=args.num_workers,
                           seed=args.seed, limit_train=args.limit_train)  # fmt: skip
    timer = ThroughputTimer(log_epochs=True)
    trainer = make_trainer(args.epochs, args.device, args.precision, callbacks=[timer])
    task = _task(side, args)
    t0 = time.perf_counter()
    trainer.fit(task, datamodule=dm)
    wall = time.perf_counter() - t0
    loss = trainer.callback_metrics.get("train_loss")
    return {
        "side": side,
        "images": timer.samples // max(1, timer.epochs),
        "epochs": timer.epochs,
        "s_per_epoch": timer.train_seconds / max(1, timer.epochs),
        "images_per_s": timer.images_per_second,
        "fit_wall_s": wall,
        "last_train_loss": float(loss) if loss is not None else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Run both sides; print and write the table."""
    args = parse_args(argv)
    quiet_logs()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info(args.device)
    sides = [args.only] if args.only else list(SIDES)
    runs = [run_side(side, args) for side in sides]
    columns = ["side", "images / epoch", "s / epoch", "images/s", "fit wall s", "epochs"]
    rows = [[r["side"], r["images"], r["s_per_epoch"], r["images_per_s"], r["fit_wall_s"],
             r["epochs"]] for r in runs]  # fmt: skip
    ratios: dict[str, float] = {}
    if len(runs) == 2:
        ratios["images_per_s_landlearn_over_torchgeo"] = (
            runs[0]["images_per_s"] / runs[1]["images_per_s"]
        )
    title = (
        f"SimCLR pre-training on EuroSAT RGB ({args.model} from scratch, batch "
        f"{args.batch_size}, memory bank {args.memory_bank}, {args.epochs} epochs)"
    )
    print_table(title, columns, rows)
    for k, v in ratios.items():
        console.print(f"{k}: {v:.3f}")
    md = "\n\n".join([f"### {title}", markdown_table(columns, rows),
                      "\n".join(f"- {k}: {v:.3f}" for k, v in ratios.items()),
                      machine_markdown(machine)])  # fmt: skip
    record = {"benchmark": "ssl_throughput", "machine": machine,
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "runs": runs, "ratios": ratios}  # fmt: skip
    write_outputs(record, args.json, args.md, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
