"""Score a model bundle on labelled data and print the metrics.

DATA is one of:
  a folder of class folders          DATA/<class>/*.jpg|png|tif        (classification)
  a folder with images/ and masks/   RGB masks coded with the bundle's class colours (or
                                     --classes-csv), or single-band class-code masks
  a GeoTIFF image and a label raster DATA.tif LABEL.tif on the same grid

examples:
  landlearn evaluate model.safetensors ../shared/data/eurosat_rgb/test --out metrics.json
  landlearn evaluate model.safetensors ../shared/data/eurosat_rgb/test --tta d4
  landlearn evaluate a.safetensors ../shared/data/eurosat_rgb/test --ensemble b.safetensors
  landlearn evaluate model.safetensors scene.tif labels.tif --remap 1:0,2:1,3:2,0:255
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

from landlearn.cli.common import check_device, progress_bar, write_json
from landlearn.errors import LandlearnError
from landlearn.inputs import check_input, check_input_file

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landlearn evaluate``."""
    parser.add_argument("bundle", help="model bundle (.safetensors)")
    parser.add_argument("data", help="class folders, images/+masks/ folder, or an image GeoTIFF")
    parser.add_argument("label", nargs="?", help="label raster, when DATA is a GeoTIFF")
    parser.add_argument("--out", help="write the metrics as JSON here")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="let --out replace a file that is not a landlearn metrics file (never an input)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chip-size", type=int, help="segmentation chip size (default: bundle's)")
    parser.add_argument("--classes-csv", help="colour table for RGB masks (name,r,g,b rows)")
    parser.add_argument("--remap", help="class-code remapping, e.g. 1:0,2:1,0:255")
    parser.add_argument(
        "--tta",
        choices=["d4"],
        default=None,
        help="average over the 8 flips / quarter turns of each image (8x the time)",
    )
    parser.add_argument(
        "--ensemble",
        nargs="+",
        default=(),
        metavar="BUNDLE",
        help="more bundles with the same classes and bands; their probabilities are averaged "
        "with BUNDLE's (each member normalises with its own statistics)",
    )
    parser.add_argument("--device", default="cpu")


def parse_remap(text: str | None) -> dict[int, int] | None:
    """``"1:0,2:1,0:255"`` → ``{1: 0, 2: 1, 0: 255}``."""
    if not text:
        return None
    try:
        pairs = [p.split(":") for p in text.split(",") if p.strip()]
        return {int(a): int(b) for a, b in pairs}
    except ValueError:
        raise LandlearnError(f"--remap must look like 1:0,2:1,0:255, got {text!r}") from None


def check_options(args: argparse.Namespace) -> str:
    """Options and input paths checked before any bundle or image is read; the device to use.

    Raises:
        LandlearnError: a batch or chip size below 1, a device this machine lacks, or an input
            path that is missing, unreadable or not a regular file / folder.
    """
    if args.batch_size < 1:
        raise LandlearnError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.chip_size is not None and args.chip_size < 1:
        raise LandlearnError(f"--chip-size must be >= 1, got {args.chip_size}")
    device = check_device(args.device)
    for bundle in (args.bundle, *args.ensemble):
        check_input_file(bundle, "bundle (.safetensors or .ckpt)")
    check_input(args.data, "folder of labelled images, or an image GeoTIFF")
    if args.label is not None:
        check_input_file(args.label, "label raster")
    if args.classes_csv is not None:
        check_input_file(args.classes_csv, "colour table (CSV)", utf8_name=False)
    if args.out:
        from landlearn.safety import Output, check_outputs

        inputs = [args.bundle, *args.ensemble, args.data, args.label, args.classes_csv]
        check_outputs([Output(Path(args.out), "metrics")], inputs, overwrite=args.overwrite)
    return device


def build_dataset(predictor: Any, args: argparse.Namespace) -> Any:
    """The labelled dataset DATA describes, checked against the bundle."""
    from landlearn.data.folders import ColorTable, ImageFolderDataset, MaskFolderDataset
    from landlearn.data.rasters import RasterPairDataset

    meta = predictor.meta
    data = check_input(args.data, "folder of labelled images, or an image GeoTIFF")
    chip = args.chip_size or meta.chip_size
    remap = parse_remap(args.remap)
    if data.is_file():
        if not args.label:
            raise LandlearnError("a GeoTIFF needs its label raster as the third argument", data)
        if meta.task == "classification":
            raise LandlearnError(
                "a classification bundle scores a folder of class folders, not an image "
                "GeoTIFF and a label raster",
                data,
            )
        label = check_input_file(args.label, "label raster")
        return RasterPairDataset(
            data, label, chip_size=chip, sampler="grid", remap=remap, keep_nonfinite=True
        )
    if meta.task == "classification":
        if remap:
            raise LandlearnError("--remap applies to masks and label rasters, not class folders")
        return ImageFolderDataset(data, classes=meta.class_names)
    images, masks = data / "images", data / "masks"
    if not (images.is_dir() and masks.is_dir()):
        raise LandlearnError("expected images/ and masks/ sub-folders for segmentation", data)
    if args.classes_csv:
        table = ColorTable.from_csv(args.classes_csv)
    else:
        table = ColorTable(meta.class_names, meta.class_colors, ignore=())
    return MaskFolderDataset(
        images, masks, color_table=None if remap else table, remap=remap, chip_size=chip
    )


def evaluate(
    predictor: Any,
    dataset: Any,
    batch_size: int = 16,
    tta: str | None = None,
    where: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics of ``predictor`` on ``dataset`` (``image`` + ``label`` / ``mask`` samples).

    ``tta="d4"`` scores the probabilities averaged over the 8 flips / quarter turns. Pixels
    (or images) with NaN / inf values are left out of the metrics and counted in
    ``result["screened"]`` with a warning naming ``where`` (:mod:`landlearn.finite`).
    """
    import torch
    from torch.utils.data import DataLoader

    from landlearn.finite import FiniteCounts
    from landlearn.metrics import LandCoverMetrics

    meta = predictor.meta
    names = getattr(dataset, "band_names", None)
    first = dataset[0]["image"]
    if first.shape[0] != meta.in_channels:
        where = getattr(dataset, "image_path", None) or getattr(dataset, "files", [None])[0]
        raise LandlearnError(
            f"expected {meta.in_channels} bands ({', '.join(meta.band_names)}), got "
            f"{first.shape[0]} ({', '.join(names or [])}); check band_names",
            where,
        )
    key = "label" if meta.task == "classification" else "mask"
    mode = "multiclass" if meta.mode == "binary" else meta.mode
    metrics = LandCoverMetrics(
        meta.num_classes, task=meta.task, mode=mode, ignore_index=meta.ignore_index,
        class_names=meta.class_names,
    )  # fmt: skip
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    counts = FiniteCounts()
    t0 = time.perf_counter()
    with progress_bar("evaluating") as bar, torch.inference_mode():
        job = bar.add_task("evaluating", total=len(loader), rate="")
        for i, batch in enumerate(loader):
            probs = predictor.predict_proba(batch["image"], tta=tta, counts=counts).cpu()
            metrics.update(*_scored(probs, batch[key], meta))
            rate = (i + 1) * batch_size / max(time.perf_counter() - t0, 1e-9)
            bar.update(job, advance=1, rate=f"{rate:.0f} img/s")
    where = where or getattr(dataset, "image_path", None)
    counts.warn(where, nodata="no-data, left out of the metrics")
    result = metrics.compute()
    if not counts.clean:
        result["screened"] = {
            "unit": counts.unit,
            "seen": counts.pixels,
            "nonfinite": counts.nonfinite,
            "absurd": counts.absurd,
            "nonfinite_outputs": counts.nonfinite_outputs,
        }
    return result


def _scored(probs: Any, target: Any, meta: Any) -> tuple[Any, Any]:
    """Leave no-data (NaN probabilities, :mod:`landlearn.finite`) out of the metrics."""
    import torch

    void = torch.isnan(probs).any(dim=1)
    if not bool(void.any()):
        return probs, target
    if probs.ndim == 4:  # per pixel: the target becomes unlabelled there
        target = torch.where(void, meta.ignore_index, target)
        return torch.nan_to_num(probs, nan=0.0), target
    return probs[~void], target[~void]


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics table."""
    from landlearn.bundle import load_bundle
    from landlearn.ensemble import load_ensemble
    from landlearn.report.markdown import metrics_markdown

    device = check_options(args)
    members = [args.bundle, *args.ensemble]
    if args.ensemble:
        predictor: Any = load_ensemble(members, device=device)
    else:
        predictor = load_bundle(args.bundle, device=device)
    dataset = build_dataset(predictor, args)
    if len(dataset) == 0:
        raise LandlearnError("no samples found", args.data)
    result = evaluate(predictor, dataset, batch_size=args.batch_size, tta=args.tta, where=args.data)
    if args.tta:
        result["tta"] = args.tta
    if args.ensemble:
        result["ensemble"] = [str(m) for m in members]
    result["class_colors"] = predictor.meta.class_colors
    print(metrics_markdown(result))
    if args.out:
        write_json(args.out, {"written_by": "landlearn", **result})
        print(f"metrics: {args.out}")
    oa = result.get("overall_accuracy")
    if oa is None or (isinstance(oa, float) and math.isnan(oa)):
        log.warning("no labelled pixels or samples were scored")
    return 0
