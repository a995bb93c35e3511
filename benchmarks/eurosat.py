"""EuroSAT RGB from scratch: landlearn's ClassificationTask against TorchGeo's, same data and net.

Trains a ResNet-18 (timm, no pretrained weights) on ``eurosat_rgb/train`` (10,000 images; a
stratified ``--val-fraction`` is held out for validation) and reports accuracy on
``eurosat_rgb/test`` (1,000 disjoint images), training throughput and wall time for each side.
Both sides get the same ``ImageFolderDataModule`` (same split, train-split normalisation and GPU
flips / rot90 augmentation), the same seed, batch size, epochs and Trainer settings, and are
scored by the same ``LandCoverMetrics`` code. What differs is each task's own recipe:

- landlearn: SGD (Nesterov, momentum 0.9, wd 5e-4), lr 0.1 one-cycle per step, CE with label
  smoothing 0.05 (as ``configs/eurosat_resnet18.yaml``);
- TorchGeo: AdamW lr 1e-3 (torch's default wd 0.01), ReduceLROnPlateau on ``val_loss`` with
  ``--tg-patience``, plain CE (its only recipe; ``lr`` and ``patience`` are its knobs).

Budget: on a 2-core CPU one epoch over 9,000 64×64 images is ~1–3 min per side, so the default
30 epochs is ~1–3 h for both sides; a GPU does it in minutes. Smoke test::

    .venv/bin/python benchmarks/eurosat.py --limit-train 200 --epochs 1
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
    plain,
    print_table,
    quiet_logs,
    score,
    write_outputs,
)

from landlearn.data.datamodules import ImageFolderDataModule
from landlearn.data.splits import label_subset

GOAL = 0.98
SIDES = ("landlearn", "torchgeo")


class EuroSATDataModule(ImageFolderDataModule):
    """``ImageFolderDataModule`` that can keep a stratified subset of the train folder.

    ``limit_train`` images are taken from train and val together (in the proportions of the
    split, per class), so a small budget also shrinks the validation pass.
    """

    def __init__(self, *args: Any, limit_train: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_train = limit_train

    def _build(self) -> None:
        super()._build()
        if not self.limit_train:
            return
        train, val = self.train_dataset, self.val_dataset
        n = len(train) + (len(val) if val is not None else 0)  # type: ignore[arg-type]
        fraction = min(1.0, self.limit_train / n)
        self.train_dataset = train.subset(  # type: ignore[union-attr]
            label_subset(range(len(train)), train.targets, fraction, self.seed)  # type: ignore[arg-type,union-attr]
        )
        if val is not None:
            self.val_dataset = val.subset(  # type: ignore[attr-defined]
                label_subset(range(len(val)), val.targets, fraction, self.seed)  # type: ignore[arg-type,attr-defined]
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=(
            "examples:\n"
            "  smoke:  .venv/bin/python benchmarks/eurosat.py --limit-train 200 --epochs 1\n"
            "  full:   .venv/bin/python benchmarks/eurosat.py --epochs 30 \\\n"
            "            --json benchmarks/out/eurosat.json --md benchmarks/out/eurosat.md\n"
            "  GPU:    .venv/bin/python benchmarks/eurosat.py --device cuda --precision 16-mixed"
        ),
    )
    p.add_argument(
        "--data",
        type=Path,
        default=DATA_ROOT / "eurosat_rgb",
        help="folder with train/ and test/",
    )
    p.add_argument("--epochs", type=int, default=30, help="training epochs per side")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch")
    p.add_argument(
        "--limit-train",
        type=int,
        default=None,
        metavar="N",
        help="stratified subset of N train-folder images (train + val), for budgets",
    )
    p.add_argument("--val-fraction", type=float, default=0.1, help="per-class validation share")
    p.add_argument("--only", choices=SIDES, default=None, help="run one side only")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train")
    p.add_argument(
        "--precision",
        default="32-true",
        help="Lightning precision, e.g. 32-true, 16-mixed, bf16-mixed",
    )
    p.add_argument("--seed", type=int, default=0, help="split, init, shuffling, augmentation")
    p.add_argument("--num-workers", type=int, default=2, help="loader workers")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--model", default="resnet18", help="timm name known to both tasks")
    p.add_argument("--lr", type=float, default=0.1, help="landlearn SGD peak lr (one-cycle)")
    p.add_argument(
        "--small-input",
        action="store_true",
        help="landlearn side only: ResNet stem without its max-pool (4x compute; the peer's "
        "task cannot change its stem, so this row is landlearn's recipe, not the same net)",
    )
    p.add_argument(
        "--crop",
        type=float,
        default=None,
        metavar="MIN_SCALE",
        help="add a random resized crop (p 0.5, area scale MIN_SCALE..1) to both sides' "
        "augmentation",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="also score each side with the softmax averaged over the 8 flips / rotations",
    )
    p.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="write landlearn's trained model to this .safetensors bundle",
    )
    p.add_argument("--tg-lr", type=float, default=1e-3, help="TorchGeo AdamW lr")
    p.add_argument(
        "--tg-patience",
        type=int,
        default=5,
        help="TorchGeo ReduceLROnPlateau patience in epochs (its default is 10)",
    )
    p.add_argument("--progress", action="store_true", help="show Lightning's progress bar")
    args = parse_outputs_and_device(p, argv)
    return args


def _datamodule(args: argparse.Namespace) -> EuroSATDataModule:
    return EuroSATDataModule(
        root=str(args.data / "train"),
        test_root=str(args.data / "test"),
        val_fraction=args.val_fraction,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
        augment={
            "hflip": 0.5,
            "vflip": 0.5,
            "rot90": 0.5,
            **({"crop": {"p": 0.5, "scale": [args.crop, 1.0]}} if args.crop else {}),
        },
        limit_train=args.limit_train,
    )


def _task(side: str, args: argparse.Namespace, classes: list[str]) -> pl.LightningModule:
    if side == "landlearn":
        from landlearn.tasks import ClassificationTask

        return ClassificationTask(
            model=args.model,
            model_kwargs={"small_input": True} if args.small_input else None,
            num_classes=len(classes),
            in_channels=3,
            pretrained=False,
            loss={"ce": {"weight": 1.0, "label_smoothing": 0.05}},
            optimizer="sgd",
            lr=args.lr,
            momentum=0.9,
            weight_decay=5e-4,
            scheduler="onecycle",
            class_names=classes,
        )
    from torchgeo.trainers import ClassificationTask as TGClassificationTask

    return TGClassificationTask(
        model=args.model,
        weights=None,
        in_channels=3,
        num_classes=len(classes),
        loss="ce",
        lr=args.tg_lr,
        patience=args.tg_patience,
    )


def run_side(side: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train, test and score one side; return its record."""
    pl.seed_everything(args.seed, workers=True)
    dm = _datamodule(args)
    dm.setup("fit")
    classes = list(dm.class_names)
    task = _task(side, args, classes)
    timer = ThroughputTimer(log_epochs=not args.progress)
    callbacks: list[pl.Callback] = [timer]
    if side == "landlearn" and args.bundle:  # the bundle, its test metrics and report
        from landlearn.run_outputs import RunOutputs

        bundle = Path(args.bundle)
        callbacks.append(RunOutputs(bundle=bundle, folder=bundle.with_name(bundle.stem + "_run")))
    trainer = make_trainer(args.epochs, args.device, args.precision, callbacks, args.progress)
    console.print(
        f"[bold]{side}[/]: {len(dm.train_dataset)} train, {len(dm.val_dataset or [])} val, "  # type: ignore[arg-type]
        f"{len(dm.test_dataset)} test images, {args.epochs} epoch(s)"  # type: ignore[arg-type]
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule=dm)
    fit_s = time.perf_counter() - start
    own = trainer.test(task, datamodule=dm, verbose=False)
    total_s = time.perf_counter() - start  # what a user waits for: fit + test
    own_metrics: dict[str, Any] = dict(own[0]) if own else {}
    if side == "landlearn":
        results = getattr(task, "test_results", None) or {}
        own_metrics = {"overall_accuracy": results.get("overall_accuracy"), **own_metrics}
    metrics, infer_ips = score(task, dm, classes, "classification", args.device)
    tta: dict[str, Any] = {}
    if args.tta:
        tta, _ = score(task, dm, classes, "classification", args.device, tta=True)
    if side == "landlearn" and args.bundle:
        console.print(f"bundle: {args.bundle} (test metrics and report beside it)")
    return {
        "side": f"{side} (small-input stem)" if side == "landlearn" and args.small_input else side,
        "test_accuracy": metrics["overall_accuracy"],
        "test_accuracy_tta": tta.get("overall_accuracy"),
        "macro_f1": metrics["macro_f1"],
        "kappa": metrics["kappa"],
        "train_images_per_s": timer.images_per_second,
        "infer_images_per_s": infer_ips,
        "train_s": timer.train_seconds,
        "val_s": timer.val_seconds,
        "fit_wall_s": fit_s,
        "fit_test_wall_s": total_s,
        "epochs": timer.epochs,
        "train_samples_seen": timer.samples,
        "own_test_metrics": plain(own_metrics),
        "metrics": metrics,
        "metrics_tta": tta or None,
        "n_train": len(dm.train_dataset),  # type: ignore[arg-type]
        "n_val": len(dm.val_dataset or []),  # type: ignore[arg-type]
        "n_test": len(dm.test_dataset),  # type: ignore[arg-type]
    }


def _recipes(args: argparse.Namespace) -> dict[str, str]:
    return {
        "landlearn": (
            f"SGD nesterov m=0.9 wd=5e-4, one-cycle peak lr {args.lr}, CE + label smoothing 0.05"
            + (", ResNet stem without max-pool (small_input)" if args.small_input else "")
        ),
        "augmentation": (
            "flips + rot90 (p 0.5 each)"
            + (f" + random resized crop (p 0.5, scale {args.crop}..1)" if args.crop else "")
            + ", on both sides"
        ),
        "torchgeo": (
            f"AdamW lr {args.tg_lr} (wd 0.01), ReduceLROnPlateau(val_loss, patience "
            f"{args.tg_patience}), CE"
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print tables; write JSON / markdown when asked."""
    args = parse_args(argv)
    quiet_logs()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info(args.device)
    sides = [args.only] if args.only else list(SIDES)
    runs = [run_side(side, args) for side in sides]
    columns = ["side", "test acc", "test acc d4 TTA", "≥ 98 %", "train img/s", "infer img/s",
               "train s", "fit wall s", "fit+test wall s", "epochs"]  # fmt: skip
    rows = [
        [r["side"], r["test_accuracy"], r["test_accuracy_tta"] or "—",
         "yes" if max(r["test_accuracy"] or 0, r["test_accuracy_tta"] or 0) >= GOAL else "no",
         r["train_images_per_s"], r["infer_images_per_s"], r["train_s"], r["fit_wall_s"],
         r["fit_test_wall_s"], str(r["epochs"])]
        for r in runs
    ]  # fmt: skip
    ratios: dict[str, float] = {}
    if len(runs) == 2:
        ll, tg = runs
        ratios = {
            "throughput_landlearn_over_torchgeo": ll["train_images_per_s"]
            / tg["train_images_per_s"],
            "fit_wall_landlearn_over_torchgeo": ll["fit_wall_s"] / tg["fit_wall_s"],
            "accuracy_landlearn_minus_torchgeo": ll["test_accuracy"] - tg["test_accuracy"],
        }
    n = runs[0]
    title = (
        f"EuroSAT RGB, {args.model} from scratch: {n['n_train']} train / {n['n_val']} val / "
        f"{n['n_test']} test, {args.epochs} epochs, batch {args.batch_size}, seed {args.seed}"
    )
    print_table(title, columns, rows)
    for k, v in ratios.items():
        console.print(f"{k}: {v:.3f}")
    recipes = _recipes(args)
    md = "\n\n".join(
        [
            f"### {title}",
            markdown_table(columns, rows),
            "\n".join(f"- {k}: {v:.3f}" for k, v in ratios.items()),
            "\n".join(f"- {s} recipe: {recipes[s]}" for s in [*sides, "augmentation"]),
            machine_markdown(machine),
        ]
    )
    record = {
        "benchmark": "eurosat",
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "recipes": {s: recipes[s] for s in [*sides, "augmentation"]},
        "runs": runs,
        "ratios": ratios,
    }
    write_outputs(record, args.json, args.md, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
