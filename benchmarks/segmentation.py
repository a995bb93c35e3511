"""Land-cover segmentation: landlearn's SegmentationTask against TorchGeo's, plus sparse labels.

Three real data sets (``../shared/data``), each with a fixed train / test split:

- ``deepglobe``: tiles 6399, 172307, 794214 train, 119 test (2448² px at 50 cm; ``--scale``
  resamples them, e.g. 0.25 → 612² px at 2 m, for CPU budgets); ``unknown`` ignored, 6 classes.
- ``dubai``: Tile 1 ``image_part_001..007`` train, ``008``, ``009`` test; ``Unlabeled`` ignored,
  5 classes.
- ``slovenia``: one 13-band Sentinel-2 scene with a land-cover raster, split into spatial blocks
  (train / val / test 60 / 20 / 20 %); codes 1, 2, 3, 4, 8 → 5 classes, the rest ignored.

For DeepGlobe and Dubai ``--val-fraction`` of the train images' chips is held out for validation.
Both sides train the same smp U-Net (``--encoder``, no pretrained weights) on the same datamodule
type with the same seed, chips, augmentation (flips, rot90), batch size, epochs and Trainer; the
final weights are scored on the test split by the same ``LandCoverMetrics`` code: mIoU over the
classes present in the test labels or the predictions (a class absent from both is left out),
and IoU per class. Recipes differ as each task ships them:

- landlearn: AdamW lr 1e-3 wd 1e-4, cosine per epoch, loss 0.5 CE + 0.5 Dice (``--loss``);
- TorchGeo: AdamW lr 1e-3 (wd 0.01), ReduceLROnPlateau on ``val_loss`` (``--tg-patience``),
  CE with ``ignore_index=255``.

``--sparse 0.01 0.05`` adds landlearn runs on DeepGlobe and Dubai where only that share of each
class's train (and val) pixels is labelled (random points, ``sparse_points``), trained with
``partial_ce``; their mIoU is reported as a fraction of landlearn's fully labelled run.

Smoke test::

    .venv/bin/python benchmarks/segmentation.py --epochs 1 --limit-train-chips 2 --sparse 0.05
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_ROOT,
    HelpFormatter,
    ScaledMaskFolderDataModule,
    ThroughputTimer,
    console,
    fmt,
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

from landlearn.data.datamodules import LandlearnDataModule, RasterPairDataModule

DATASETS = ("deepglobe", "dubai", "slovenia")
SPARSE_DATASETS = ("deepglobe", "dubai")
SIDES = ("landlearn", "torchgeo")
AUGMENT = {"hflip": 0.5, "vflip": 0.5, "rot90": 0.5}
SLOVENIA_REMAP = {1: 0, 2: 1, 3: 2, 4: 3, 8: 4}
SLOVENIA_CLASSES = ["cultivated", "forest", "grassland", "shrubland", "artificial"]
TG_MODEL = {"unet": "unet", "deeplabv3plus": "deeplabv3+"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        epilog=(
            "examples:\n"
            "  smoke:  .venv/bin/python benchmarks/segmentation.py --epochs 1 "
            "--limit-train-chips 2 --sparse 0.05\n"
            "  CPU:    .venv/bin/python benchmarks/segmentation.py --scale 0.25 --epochs 40 \\\n"
            "            --sparse 0.01 0.05 --json benchmarks/out/seg.json \\\n"
            "            --md benchmarks/out/seg.md\n"
            "  GPU:    .venv/bin/python benchmarks/segmentation.py --device cuda --scale 1 "
            "--epochs 40 --sparse 0.01 0.05"
        ),
    )
    p.add_argument("--data", type=Path, default=DATA_ROOT, help="shared data root")
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), help="which")
    p.add_argument(
        "--scale",
        type=float,
        default=0.25,
        help="resampling of the 2448² DeepGlobe tiles (1 = native 50 cm)",
    )
    p.add_argument("--chip-size", type=int, default=256, help="DeepGlobe and Dubai chips")
    p.add_argument("--slovenia-chip", type=int, default=32, help="Slovenia chip size")
    p.add_argument(
        "--slovenia-samples", type=int, default=256, help="random Slovenia train chips per epoch"
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="train chips held out for validation (DeepGlobe, Dubai)",
    )
    p.add_argument("--epochs", type=int, default=40, help="training epochs per run")
    p.add_argument("--batch-size", type=int, default=8, help="chips per batch")
    p.add_argument(
        "--limit-train-chips",
        type=int,
        default=None,
        metavar="N",
        help="keep N train chips (Slovenia: N chips per epoch), for smoke runs",
    )
    p.add_argument(
        "--sparse",
        type=float,
        nargs="*",
        default=[],
        metavar="F",
        help="label fractions for the sparse-label runs, e.g. 0.01 0.05",
    )
    p.add_argument(
        "--histmatch",
        action="store_true",
        help="DeepGlobe and Dubai: match each test image's histograms to the train images",
    )
    p.add_argument(
        "--color",
        type=float,
        default=None,
        metavar="LIMIT",
        help="add brightness (gain 1 ± LIMIT) and contrast (1 ± LIMIT about the band mean), "
        "each with p 0.8, to both sides' augmentation",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="also score every run with the softmax averaged over the 8 flips / quarter turns",
    )
    p.add_argument("--only", choices=SIDES, default=None, help="run one side only")
    p.add_argument("--model", choices=tuple(TG_MODEL), default="unet", help="smp architecture")
    p.add_argument("--encoder", default="resnet18", help="smp encoder")
    p.add_argument(
        "--loss",
        default="ce+dice",
        choices=("ce+dice", "ce", "partial_ce"),
        help="landlearn loss of the fully labelled runs",
    )
    p.add_argument("--lr", type=float, default=1e-3, help="landlearn AdamW lr")
    p.add_argument("--tg-lr", type=float, default=1e-3, help="TorchGeo AdamW lr")
    p.add_argument(
        "--tg-patience",
        type=int,
        default=5,
        help="TorchGeo ReduceLROnPlateau patience in epochs (its default is 10)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train")
    p.add_argument("--precision", default="32-true", help="Lightning precision")
    p.add_argument("--seed", type=int, default=0, help="splits, init, shuffling, points")
    p.add_argument("--num-workers", type=int, default=0, help="loader workers")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--progress", action="store_true", help="show Lightning's progress bar")
    args = parse_outputs_and_device(p, argv)
    if any(not 0.0 < f < 1.0 for f in args.sparse):
        p.error("--sparse fractions must be in (0, 1)")
    return args


def _augment(args: argparse.Namespace) -> dict[str, Any]:
    if args.color is None:
        return dict(AUGMENT)
    colour = {"p": 0.8, "limit": args.color}
    return {**AUGMENT, "brightness": colour, "contrast": dict(colour)}


def _colour_note(args: argparse.Namespace) -> str:
    return f", colour augmentation (brightness and contrast 1 ± {args.color}, p 0.8)"


def _datamodule(name: str, args: argparse.Namespace, points: float) -> LandlearnDataModule:
    common = {"batch_size": args.batch_size, "num_workers": args.num_workers, "seed": args.seed,
              "augment": _augment(args)}  # fmt: skip
    if name == "deepglobe":
        root = str(args.data / "deepglobe/train")
        return ScaledMaskFolderDataModule(
            root, root, str(args.data / "deepglobe/classes.csv"),
            train_files=[f"{i}_sat.jpg" for i in (6399, 172307, 794214)],
            test_files=["119_sat.jpg"], scale=args.scale, chip_size=args.chip_size,
            val_fraction=args.val_fraction, point_fraction=points,
            limit_train_chips=args.limit_train_chips, histmatch=args.histmatch, **common,
        )  # fmt: skip
    if name == "dubai":
        tile = args.data / "dubai/tile1"
        return ScaledMaskFolderDataModule(
            str(tile / "images"), str(tile / "masks"), str(args.data / "dubai/classes.csv"),
            train_files=[f"image_part_{i:03d}.jpg" for i in range(1, 8)],
            test_files=["image_part_008.jpg", "image_part_009.jpg"], chip_size=args.chip_size,
            val_fraction=args.val_fraction, point_fraction=points,
            limit_train_chips=args.limit_train_chips, histmatch=args.histmatch, **common,
        )  # fmt: skip
    if points < 1.0:
        raise ValueError("sparse labels are benchmarked on DeepGlobe and Dubai only")
    folder = args.data / "slovenia_s2_lulc"
    samples = args.slovenia_samples
    if args.limit_train_chips:
        samples = min(samples, args.limit_train_chips)
    return RasterPairDataModule(
        str(folder / "s2_l1c_20150909.tif"), str(folder / "lulc.tif"),
        class_names=SLOVENIA_CLASSES, remap=SLOVENIA_REMAP, chip_size=args.slovenia_chip,
        samples_per_epoch=samples, val_fraction=0.2, test_fraction=0.2, **common,
    )  # fmt: skip


def _describe(dm: LandlearnDataModule) -> dict[str, Any]:
    if isinstance(dm, ScaledMaskFolderDataModule):
        return dm.describe()
    return {
        "train_chips_per_epoch": len(dm.train_dataset),  # type: ignore[arg-type]
        "val_chips": len(dm.val_dataset or []),  # type: ignore[arg-type]
        "test_chips": len(dm.test_dataset or []),  # type: ignore[arg-type]
        "chip_size": dm.chip_size,
    }


def _landlearn_loss(name: str) -> str | dict[str, float]:
    return {"ce": 0.5, "dice": 0.5} if name == "ce+dice" else name


def _task(
    side: str, args: argparse.Namespace, dm: LandlearnDataModule, loss: str
) -> pl.LightningModule:
    classes, bands = list(dm.class_names), len(dm.band_names)
    if side == "landlearn":
        from landlearn.tasks import SegmentationTask

        return SegmentationTask(
            model=args.model,
            model_kwargs={"encoder": args.encoder},
            num_classes=len(classes),
            in_channels=bands,
            pretrained=False,
            loss=_landlearn_loss(loss),
            optimizer="adamw",
            lr=args.lr,
            weight_decay=1e-4,
            scheduler="cosine",
            class_names=classes,
        )
    from torchgeo.trainers import SemanticSegmentationTask

    return SemanticSegmentationTask(
        model=TG_MODEL[args.model],  # type: ignore[arg-type]
        backbone=args.encoder,
        weights=None,
        in_channels=bands,
        num_classes=len(classes),
        loss="ce",
        ignore_index=255,  # IGNORE_INDEX; torchgeo's own argument
        lr=args.tg_lr,
        patience=args.tg_patience,
    )


def run_one(
    dataset: str, side: str, args: argparse.Namespace, loss: str, points: float = 1.0
) -> dict[str, Any]:
    """Train, test and score one (dataset, side, labels) combination; return its record."""
    pl.seed_everything(args.seed, workers=True)
    dm = _datamodule(dataset, args, points)
    dm.setup("fit")
    info = _describe(dm)
    task = _task(side, args, dm, loss)
    timer = ThroughputTimer(log_epochs=not args.progress)
    trainer = make_trainer(args.epochs, args.device, args.precision, [timer], args.progress)
    label = "all labels" if points == 1.0 else f"{points:.0%} points"
    shown = loss if side == "landlearn" else "ce"
    console.print(f"[bold]{dataset}[/] · {side} · {shown} · {label}: {info}")
    start = time.perf_counter()
    trainer.fit(task, datamodule=dm)
    fit_s = time.perf_counter() - start
    own = trainer.test(task, datamodule=dm, verbose=False)
    wall_s = time.perf_counter() - start
    own_metrics: dict[str, Any] = dict(own[0]) if own else {}
    if side == "landlearn":
        results = getattr(task, "test_results", None) or {}
        own_metrics = {"miou": results.get("miou"), **own_metrics}
    metrics, infer_cps = score(task, dm, list(dm.class_names), "segmentation", args.device)
    tta: dict[str, Any] = {}
    if args.tta:
        tta, _ = score(task, dm, list(dm.class_names), "segmentation", args.device, tta=True)
    return {
        "dataset": dataset,
        "side": side,
        "loss": loss if side == "landlearn" else "ce (torchgeo)",
        "point_fraction": points,
        "miou": metrics["miou"],
        "miou_test_classes": _miou_test_classes(metrics),
        "miou_tta": tta.get("miou"),
        "overall_accuracy": metrics["overall_accuracy"],
        "per_class_iou": metrics["per_class"]["iou"],
        "class_names": list(dm.class_names),
        "test_support": metrics["per_class"]["support"],
        "train_chips_per_s": timer.images_per_second,
        "infer_chips_per_s": infer_cps,
        "train_s": timer.train_seconds,
        "fit_wall_s": fit_s,
        "fit_test_wall_s": wall_s,
        "epochs": timer.epochs,
        "data": info,
        "own_test_metrics": plain(own_metrics),
        "metrics": metrics,
    }


def _miou_test_classes(metrics: dict[str, Any]) -> float | None:
    """Mean IoU over the classes present in the test labels only (DeepGlobe challenge style).

    ``LandCoverMetrics``' ``miou`` also counts a class that is only predicted (IoU 0); this one
    leaves out every class without test pixels.
    """
    per = metrics["per_class"]
    values = [
        iou for iou, n in zip(per["iou"], per["support"], strict=True) if n > 0 and iou is not None
    ]
    return sum(values) / len(values) if values else None


def _tag(r: dict[str, Any]) -> str:
    if r["point_fraction"] < 1.0:
        return f"{r['side']} {r['point_fraction']:.0%} pts"
    return r["side"]


def _ratios(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Landlearn over TorchGeo (fully labelled runs), and sparse over full mIoU."""
    full = {r["side"]: r for r in runs if r["point_fraction"] == 1.0}
    out: dict[str, float] = {}
    ll, tg = full.get("landlearn"), full.get("torchgeo")
    if ll and tg:
        out["train_throughput_landlearn_over_torchgeo"] = (
            ll["train_chips_per_s"] / tg["train_chips_per_s"]
        )
        out["fit_wall_landlearn_over_torchgeo"] = ll["fit_wall_s"] / tg["fit_wall_s"]
        if ll["miou"] is not None and tg["miou"] is not None:
            out["miou_landlearn_minus_torchgeo"] = ll["miou"] - tg["miou"]
    if ll and ll["miou"]:
        for r in runs:
            if r["point_fraction"] < 1.0 and r["miou"] is not None:
                out[f"miou_{r['point_fraction']:g}_points_over_full"] = r["miou"] / ll["miou"]
    return out


def _tables(
    dataset: str,
    runs: list[dict[str, Any]],
    emit: Callable[[str, list[str], list[list[Any]]], None],
) -> None:
    full = next((r for r in runs if r["side"] == "landlearn" and r["point_fraction"] == 1.0), None)
    columns = ["run", "loss", "mIoU", "mIoU d4 TTA", "OA", "of full mIoU", "train chips/s",
               "train s", "fit wall s", "fit+test wall s"]  # fmt: skip
    rows = []
    for r in runs:
        ratio = None
        if full is not None and r["side"] == "landlearn" and full["miou"]:
            ratio = r["miou"] / full["miou"] if r["miou"] is not None else None
        rows.append([_tag(r), r["loss"], r["miou"], r.get("miou_tta") or "—",
                     r["overall_accuracy"], ratio,
                     r["train_chips_per_s"], r["train_s"], r["fit_wall_s"],
                     r["fit_test_wall_s"]])  # fmt: skip
    emit(f"{dataset}: test mIoU (absent classes excluded)", columns, rows)
    names = runs[0]["class_names"]
    per_cols = ["class", "test px", *[_tag(r) for r in runs]]
    per_rows = [
        [name, str(runs[0]["test_support"][k]), *[r["per_class_iou"][k] for r in runs]]
        for k, name in enumerate(names)
    ]
    emit(f"{dataset}: test IoU per class (– = absent from labels and predictions)",
         per_cols, per_rows)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print tables; write JSON / markdown when asked."""
    args = parse_args(argv)
    quiet_logs()
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info(args.device)
    sides = [args.only] if args.only else list(SIDES)
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for dataset in args.datasets:
        runs = [run_one(dataset, side, args, args.loss) for side in sides]
        if dataset in SPARSE_DATASETS and "landlearn" in sides:
            runs += [
                run_one(dataset, "landlearn", args, "partial_ce", f)
                for f in sorted(args.sparse, reverse=True)
            ]
        by_dataset[dataset] = runs

    md_parts = [
        f"### Segmentation: {args.model} / {args.encoder} from scratch, {args.epochs} epochs, "
        f"batch {args.batch_size}, seed {args.seed}, DeepGlobe scale {args.scale}, "
        f"chips {args.chip_size} (Slovenia {args.slovenia_chip})"
        + (", test images histogram-matched to the train images" if args.histmatch else "")
        + (_colour_note(args) if args.color is not None else "")
    ]

    def emit(title: str, columns: list[str], rows: list[list[Any]]) -> None:
        print_table(title, columns, rows)
        md_parts.extend([f"**{title}**", markdown_table(columns, rows)])

    ratios: dict[str, dict[str, float]] = {}
    for dataset, runs in by_dataset.items():
        _tables(dataset, runs, emit)
        ratios[dataset] = _ratios(runs)
        if ratios[dataset]:
            lines = [f"- {dataset} {k}: {v:.3f}" for k, v in ratios[dataset].items()]
            console.print("\n".join(lines))
            md_parts.append("\n".join(lines))
    md_parts.append(
        f"- landlearn recipe: AdamW lr {args.lr} wd 1e-4, cosine per epoch, loss {args.loss} "
        f"(sparse runs: partial_ce)\n- torchgeo recipe: AdamW lr {args.tg_lr} (wd 0.01), "
        f"ReduceLROnPlateau(val_loss, patience {args.tg_patience}), CE ignore_index 255"
    )
    md_parts.append(machine_markdown(machine))
    summary = {d: {_tag(r): r["miou"] for r in runs} for d, runs in by_dataset.items()}
    console.print("mIoU: " + "; ".join(
        f"{d} " + ", ".join(f"{k} {fmt(v)}" for k, v in s.items()) for d, s in summary.items()
    ))  # fmt: skip
    record = {
        "benchmark": "segmentation",
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runs": by_dataset,
        "summary_miou": summary,
        "ratios": ratios,
    }
    write_outputs(record, args.json, args.md, "\n\n".join(md_parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
