r"""Self-training on Dubai at a CPU budget (issue #18): do pseudo-labels recover the label gap?

Data: ``../shared/data/dubai/tile1`` (9 aerial images, RGB-coded masks), split by image with
``--seed`` (15 % validation, 20 % test: 6 train, 1 val, 2 test images), chips of ``--chip`` px.
``--fraction`` of the train images keep their masks (``MaskFolderDataModule(label_fraction=…)``);
the rest are the unlabelled images. Model: smp U-Net ResNet-18 from scratch, CE + Dice, AdamW
lr 1e-3, cosine, ``--epochs`` epochs, flips; the best validation-mIoU checkpoint is tested
(mIoU over the classes present in the test split's labels or predictions).

Rows, per seed:

- ``100 % labels``: every train image with its mask (the ceiling);
- ``supervised``: only the ``--fraction`` labelled images (the floor, and the teacher);
- ``self-training (fixed τ)``: ``landlearn.pseudo.pseudo_label`` writes the teacher's masks of
  the unlabelled images with threshold ``--threshold``; a student (same recipe, from scratch)
  trains on the labelled masks plus those (``pseudo_masks=``);
- ``self-training (class-balanced)``: the same with ``class_balanced=--balanced``.

Each pseudo-label run also scores the pseudo-labels against the unlabelled images' true masks
(kept share, accuracy). ``Δ mIoU vs supervised`` pairs each row with the supervised run of the
same seed; ``gap recovered`` = mean Δ of the student / (mean 100 % − mean supervised), and says
so when there is no gap to recover (100 % labels no better than the fraction at this budget).

Smoke test::

    .venv/bin/python benchmarks/semisup.py --epochs 1 --seeds 0 --chip 64 --limit-batches 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_ROOT,
    HelpFormatter,
    console,
    machine_info,
    machine_markdown,
    markdown_table,
    parse_outputs_and_device,
    print_table,
    quiet_logs,
    write_outputs,
)

import landlearn
from landlearn.data.datamodules import MaskFolderDataModule
from landlearn.pseudo import pseudo_label
from landlearn.tasks import SegmentationTask, SemiSupervisedSegmentationTask

DUBAI = DATA_ROOT / "dubai"


def _dm(args: argparse.Namespace, seed: int, fraction: float, pseudo: Path | None = None) -> Any:
    return MaskFolderDataModule(
        str(DUBAI / "tile1" / "images"),
        str(DUBAI / "tile1" / "masks"),
        classes_csv=str(DUBAI / "classes.csv"),
        chip_size=args.chip,
        val_fraction=0.15,
        test_fraction=0.2,
        batch_size=8,
        seed=seed,
        augment={"hflip": 0.5, "vflip": 0.5},
        label_fraction=fraction,
        pseudo_masks=None if pseudo is None else str(pseudo),
    )


RECIPE = {"model": "unet", "model_kwargs": {"encoder": "resnet18"},
          "loss": {"ce": 0.5, "dice": 0.5}, "optimizer": "adamw", "lr": 1e-3,
          "scheduler": "cosine", "dropout": 0.1, "channels_last": False}  # fmt: skip
ONLINE = ("mean_teacher", "fixmatch", "cps")


def _fit(
    args: argparse.Namespace, name: str, dm: Any, seed: int, method: str | None = None
) -> dict[str, Any]:
    if method is None:
        task: Any = SegmentationTask(**RECIPE)
    else:
        task = SemiSupervisedSegmentationTask(**RECIPE, method=method, rampup_steps=args.rampup)
    budget = (
        {"max_steps": args.max_steps, "max_epochs": -1}
        if args.max_steps
        else {"max_epochs": args.epochs}
    )
    t0 = time.perf_counter()
    result = landlearn.train(
        model=task, datamodule=dm, name=f"{name}_s{seed}", root=args.out, seed=seed,
        report=False, accelerator="cpu", enable_progress_bar=False,
        enable_model_summary=False, limit_train_batches=args.limit_batches, **budget,
    )  # fmt: skip
    m = result.metrics
    row = {"run": name, "seed": seed, "miou": m.get("miou"), "oa": m.get("overall_accuracy"),
           "wall_s": round(time.perf_counter() - t0, 1), "run_dir": str(result.run_dir),
           "bundle": str(result.run_dir / "model.safetensors")}  # fmt: skip
    console.print(f"{name} seed {seed}: mIoU {row['miou']} ({row['wall_s']} s)")
    return row


def _mean_std(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.4f} ± {sd:.4f}"


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Every row for every seed; the table as markdown."""
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    for seed in args.seeds:
        rows.append(_fit(args, "full", _dm(args, seed, 1.0), seed) | {"method": "100 % labels"})
        teacher_dm = _dm(args, seed, args.fraction)
        sup = _fit(args, "supervised", teacher_dm, seed) | {"method": "supervised"}
        rows.append(sup)
        unlabelled = [Path(f) for f in teacher_dm.unlabelled_files]
        for method, opts in (
            ("self-training (fixed τ)", {"threshold": args.threshold}),
            ("self-training (class-balanced)", {"class_balanced": args.balanced}),
        ):
            tag = "fixed" if "threshold" in opts else "balanced"
            if tag not in args.methods:
                continue
            pl_dir = out / f"pseudo_{tag}_s{seed}"
            pl = pseudo_label(sup["bundle"], unlabelled, pl_dir, tile=256, overlap=32,
                              true_masks=DUBAI / "tile1" / "masks",
                              classes_csv=DUBAI / "classes.csv", overwrite=True,
                              **opts)  # fmt: skip
            student = _fit(args, f"student_{tag}", _dm(args, seed, args.fraction, pl_dir / "masks"),
                           seed)  # fmt: skip
            s = pl.summary
            rows.append(student | {"method": method, "pl_kept": s["kept_share"],
                                   "pl_accuracy": s["accuracy"],
                                   "pl_classes": s["classes"]})  # fmt: skip
        for online in ONLINE:
            if online in args.methods:
                row = _fit(args, online, _dm(args, seed, args.fraction), seed, method=online)
                rows.append(row | {"method": online.replace("_", " ")})
    return rows, summarise(rows, args.fraction)


def summarise(rows: list[dict[str, Any]], fraction: float) -> str:
    """Print the table of ``rows`` (from :func:`run` or a ``--json`` record); return markdown."""
    table = []
    by_seed: dict[int, dict[str, float]] = {r["seed"]: {} for r in rows}
    for r in rows:
        by_seed[r["seed"]][r["method"]] = r["miou"]
    means = {
        m: statistics.fmean(v[m] for v in by_seed.values()) for m in ("100 % labels", "supervised")
    }
    label_gap = means["100 % labels"] - means["supervised"]
    order = ["100 % labels", "supervised", "self-training (fixed τ)",
             "self-training (class-balanced)", *(m.replace("_", " ") for m in ONLINE)]  # fmt: skip
    for method in order:
        sel = [r for r in rows if r["method"] == method]
        if not sel:
            continue
        # paired by seed: the student against its own teacher's recipe
        delta = [r["miou"] - by_seed[r["seed"]]["supervised"] for r in sel]
        gap = "–"
        if method not in ("100 % labels", "supervised"):
            gap = (f"{(statistics.fmean(delta)) / label_gap:.2f}" if label_gap > 0
                   else "no gap (100 % ≤ supervised)")  # fmt: skip
        table.append([
            method, len(sel), _mean_std([r["miou"] for r in sel]),
            _mean_std([r["oa"] for r in sel]),
            _mean_std(delta) if method != "supervised" else "–",
            _mean_std([r.get("pl_kept") for r in sel]) if "pl_kept" in sel[0] else "–",
            _mean_std([r.get("pl_accuracy") for r in sel]) if "pl_kept" in sel[0] else "–",
            gap,
            _mean_std([r["wall_s"] for r in sel]),
        ])  # fmt: skip
    cols = ["row", "seeds", "test mIoU", "test OA", "Δ mIoU vs supervised", "pseudo-labels kept",
            "pseudo-label acc.", "gap recovered", "wall s"]  # fmt: skip
    print_table(f"self-training on Dubai, {fraction:.0%} of train images labelled", cols, table)
    return markdown_table(cols, table)


def main(argv: list[str] | None = None) -> int:
    """Run, print, write the records."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--fraction", type=float, default=0.25, help="share of train images labelled")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--balanced", type=float, default=0.5)
    p.add_argument("--chip", type=int, default=128)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--limit-batches", type=int, default=None, help="train batches per epoch")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="optimiser steps per fit instead of --epochs (the same for every row)",
    )
    p.add_argument("--rampup", type=int, default=50, help="ramp-up steps of the online methods")
    p.add_argument(
        "--methods",
        nargs="+",
        default=["fixed", "balanced", *ONLINE],
        choices=["fixed", "balanced", *ONLINE],
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="benchmarks/out/semisup_runs")
    p.add_argument(
        "--table-from", metavar="JSON", help="print the table of an earlier --json record"
    )
    args = parse_outputs_and_device(p, argv)
    if args.table_from:
        print(summarise(json.loads(Path(args.table_from).read_text())["rows"], args.fraction))
        return 0
    quiet_logs()
    rows, md = run(args)
    record = {"machine": machine_info("cpu"), "args": vars(args), "rows": rows}
    budget = (
        f"Budget: Dubai tile 1, chips {args.chip} px, U-Net ResNet-18 from scratch, "
        + (
            f"{args.max_steps} optimiser steps per fit"
            if args.max_steps
            else f"{args.epochs} epochs"
        )
        + f", batch 8, {args.fraction:.0%} of the train images labelled, "
        f"threshold {args.threshold:g} / class-balanced {args.balanced:g}, online methods' "
        f"ramp-up {args.rampup} steps (threshold 0.9 mean teacher, 0.95 FixMatch, EMA 0.99, "
        f"CutMix p 0.5), methods {args.methods}, seeds {args.seeds}."
    )
    text = "\n\n".join([budget, md, machine_markdown(record["machine"])])
    write_outputs(record, args.json, args.md, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
