"""Train and map a synthetic scene end to end, offline, in a few minutes on a CPU.

Generates a georeferenced 4-band scene with a land-cover label raster, trains a small U-Net on it
through the same `landlearn fit` path a real config takes, prints the test metrics, maps a second
synthetic area into a land-cover GeoTIFF (colour table, class names, confidence, MC-dropout
uncertainty) and writes a report page.

Example:
  landlearn demo --out landlearn-demo
  then open landlearn-demo/report/index.html and landlearn-demo/new_area_landcover.tif (QGIS)
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from landlearn.cli.common import write_json

log = logging.getLogger(__name__)

SIZE = 384  # training scene side (px); the second area is the same size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landlearn demo``."""
    parser.add_argument("--out", default="landlearn-demo", help="output folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="use --out even if it holds files of your own"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5, help="training epochs")
    parser.add_argument("--size", type=int, default=SIZE, help="scene side in pixels")


def _check_demo_folder(out: Path, overwrite: bool) -> None:
    """The demo writes many files into ``out``: only an empty folder or an earlier demo's."""
    from landlearn.errors import LandlearnError
    from landlearn.safety import probe_writable

    if out.exists() and not out.is_dir():
        raise LandlearnError("is a file; give a folder for the demo's outputs", out)
    if out.is_dir() and any(out.iterdir()) and not (out / "demo.yaml").is_file() and not overwrite:
        raise LandlearnError(
            "folder holds files that are not an earlier landlearn demo's; choose another --out "
            "(or pass --overwrite)",
            out,
        )
    probe_writable(out)


def _config(out: Path, data: Path, epochs: int, seed: int, names: list[str]) -> dict[str, Any]:
    return {
        "seed_everything": seed,
        "trainer": {
            "max_epochs": epochs,
            "accelerator": "cpu",
            "default_root_dir": str(out / "runs"),
            "log_every_n_steps": 5,
        },
        "model": {
            "class_path": "landlearn.tasks.SegmentationTask",
            "init_args": {
                "model": "unet",
                "model_kwargs": {"encoder": "resnet18"},
                "loss": {"ce": 0.5, "dice": 0.5},
                "optimizer": "adamw",
                "lr": 0.003,
                "scheduler": "onecycle",
                "dropout": 0.1,
                "class_names": names,
            },
        },
        "data": {
            "class_path": "landlearn.data.datamodules.RasterPairDataModule",
            "init_args": {
                "image": str(data / "train_image.tif"),
                "label": str(data / "train_labels.tif"),
                "class_names": names,
                "chip_size": 64,
                "samples_per_epoch": 320,
                "batch_size": 16,
                "seed": seed,
                "augment": {"hflip": 0.5, "vflip": 0.5, "rot90": 0.5},
            },
        },
    }


def run(args: argparse.Namespace) -> int:
    """Run the demo; prints where everything went."""
    from landlearn.data import synthetic
    from landlearn.mapping import map_scene
    from landlearn.report.page import build_report
    from landlearn.training import train

    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    _check_demo_folder(out, args.overwrite)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    names = list(synthetic.CLASSES)
    log.info("1/4 generating synthetic scenes in %s", data)
    synthetic.write_scene(
        data / "train_image.tif", data / "train_labels.tif", args.size, args.size,
        seed=args.seed, clouds=0.02,
    )  # fmt: skip
    synthetic.write_scene(
        data / "new_area.tif", data / "new_area_labels.tif", args.size, args.size,
        seed=args.seed + 1, origin=(520000.0, 5090000.0),
    )  # fmt: skip

    log.info("2/4 training a U-Net (ResNet-18 encoder) on CPU for %d epochs", args.epochs)
    config = out / "demo.yaml"
    config.write_text(yaml.safe_dump(_config(out, data, args.epochs, args.seed, names)))
    t_fit = time.perf_counter()
    # the folder is empty or an earlier demo's (checked above): its bundle may be replaced
    trained = train(config, bundle=out / "model.safetensors", overwrite=True)
    fit_seconds = time.perf_counter() - t_fit
    bundle, run_dir, metrics = trained.bundle, trained.run_dir, trained.metrics
    if bundle is None:
        raise RuntimeError("the demo's run wrote no bundle")  # a bug: fit always exports

    log.info("3/4 mapping the second area")
    result = map_scene(
        bundle, data / "new_area.tif", out / "new_area_landcover.tif",
        tile=128, overlap=32, mc_dropout=4,
    )  # fmt: skip
    agreement = _map_accuracy(out / "new_area_landcover.tif", data / "new_area_labels.tif")

    log.info("4/4 writing the report")
    page = build_report(run_dir, out / "report")
    summary = {
        "test": {k: metrics.get(k) for k in ("overall_accuracy", "miou", "macro_f1", "ece")},
        "new_area_map_accuracy": agreement,
        "train_seconds": round(fit_seconds, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "metrics.json", {**metrics, "demo": summary})
    _print_summary(out, bundle, run_dir, page, result, summary)
    return 0


def _map_accuracy(map_path: Path, label_path: Path) -> float:
    """Share of labelled pixels where the map's class equals the reference label."""
    import rasterio

    from landlearn.conventions import IGNORE_INDEX

    with rasterio.open(map_path) as m, rasterio.open(label_path) as lab:
        pred, ref = m.read(1), lab.read(1)
    ok = (ref != IGNORE_INDEX) & (pred != IGNORE_INDEX)
    return float((pred[ok] == ref[ok]).mean()) if ok.any() else float("nan")


def _print_summary(
    out: Path, bundle: Path, run_dir: Path, page: Path, result: Any, s: dict[str, Any]
) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="landlearn demo", show_header=False)
    test = s["test"]
    for key, label in (("overall_accuracy", "test overall accuracy"), ("miou", "test mIoU"),
                       ("macro_f1", "test macro F1"), ("ece", "test ECE (15 bins)")):  # fmt: skip
        if test.get(key) is not None:
            t.add_row(label, f"{test[key]:.3f}")
    t.add_row("map accuracy, second area", f"{s['new_area_map_accuracy']:.3f}")
    t.add_row("training time (fit + test)", f"{s['train_seconds']:.0f} s")
    t.add_row("wall time", f"{s['seconds']:.0f} s")
    t.add_row("bundle", str(bundle))
    t.add_row("land-cover map", str(getattr(result, "path", out / "new_area_landcover.tif")))
    t.add_row("report", str(page))
    t.add_row("run folder (logs)", str(run_dir))
    Console().print(t)
