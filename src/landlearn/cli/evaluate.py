"""Score a model bundle on labelled data and print the metrics.

DATA is one of:
  a folder of class folders          DATA/<class>/*.jpg|png|tif        (classification)
  a folder with images/ and masks/   RGB masks coded with the bundle's class colours (or
                                     --classes-csv), or single-band class-code masks
  a GeoTIFF image and a label raster DATA.tif LABEL.tif on the same grid

Examples:
  landlearn evaluate model.safetensors ../shared/data/eurosat_rgb/test --out metrics.json
  landlearn evaluate model.safetensors ../shared/data/eurosat_rgb/test --tta d4
  landlearn evaluate a.safetensors ../shared/data/eurosat_rgb/test --ensemble b.safetensors
  landlearn evaluate model.safetensors scene.tif labels.tif --remap 1:0,2:1,3:2,0:255
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from landlearn.cli.common import check_device, progress_bar, write_json
from landlearn.errors import LandlearnError
from landlearn.inputs import check_input, check_input_file

log = logging.getLogger(__name__)

__all__ = ["add_arguments", "check_options", "parse_remap", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landlearn evaluate``."""
    parser.add_argument("bundle", help="model bundle (.safetensors)")
    parser.add_argument(
        "data", nargs="?", default=None,
        help="class folders, images/+masks/ folder, or an image GeoTIFF",
    )  # fmt: skip
    parser.add_argument("label", nargs="?", help="label raster, when DATA is a GeoTIFF")
    parser.add_argument(
        "--input", action="append", default=[], metavar="NAME=PATH", dest="inputs",
        help="a named input of a multi-input bundle (give the label raster with --label)",
    )  # fmt: skip
    parser.add_argument("--label", dest="label_option", metavar="LABEL.tif",
                        help="label raster of the --input rasters")  # fmt: skip
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
    parser.add_argument(
        "--ood", metavar="FOLDER",
        help="images from elsewhere (e.g. other tiles): report the AUROC of the energy and of "
        "max-softmax for telling them from DATA (multiclass classification bundles)",
    )  # fmt: skip
    parser.add_argument("--ood-chip", type=int, metavar="PX",
                        help="--ood images are cut into chips of PX (default: the bundle's chip "
                        "size) and resized to the bundle's chip size")  # fmt: skip
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
    if args.inputs:
        from landlearn.cli.map import named_inputs

        if args.label is not None or (args.data is not None and args.label_option is not None):
            raise LandlearnError("with --input, give only the label raster (or --label)")
        args.label = args.label_option or args.data
        args.data = named_inputs(args.inputs)
        if args.label is None:
            raise LandlearnError("--input rasters need their label raster: --label LABEL.tif")
        for name, path in args.data.items():
            check_input_file(path, f"input raster {name}")
    else:
        if args.data is None:
            raise LandlearnError("no data: give DATA, or --input NAME=PATH with --label")
        if args.label_option is not None:
            args.label = args.label_option
        check_input(args.data, "folder of labelled images, or an image GeoTIFF")
    if args.label is not None:
        check_input_file(args.label, "label raster")
    if args.ood is not None:
        from landlearn.ood import ood_files

        ood_files(args.ood)
    if args.ood_chip is not None and args.ood_chip < 1:
        raise LandlearnError(f"--ood-chip must be >= 1, got {args.ood_chip}")
    if args.classes_csv is not None:
        check_input_file(args.classes_csv, "colour table (CSV)", utf8_name=False)
    if args.out:
        from landlearn.safety import Output, check_outputs

        data = list(args.data.values()) if isinstance(args.data, dict) else [args.data]
        inputs = [args.bundle, *args.ensemble, *data, args.label, args.classes_csv]
        check_outputs([Output(Path(args.out), "metrics")], inputs, overwrite=args.overwrite)
    return device


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics table."""
    from landlearn.evaluation import evaluate
    from landlearn.report.markdown import metrics_markdown

    device = check_options(args)
    with progress_bar("evaluating") as bar:
        job = bar.add_task("evaluating", total=None, rate="")

        def advance(done: int, total: int, rate: float) -> None:
            bar.update(job, completed=done, total=total, rate=f"{rate:.0f} img/s")

        result = evaluate(
            args.bundle, args.data, args.label, ensemble=args.ensemble,
            batch_size=args.batch_size, chip_size=args.chip_size, tta=args.tta,
            remap=parse_remap(args.remap), classes_csv=args.classes_csv, device=device,
            progress=advance,
        )  # fmt: skip
    if args.ood is not None:
        from landlearn.ood import ood_scores

        ood = ood_scores(
            args.bundle, args.data, args.ood, ood_chip=args.ood_chip,
            batch_size=args.batch_size, device=device,
        )  # fmt: skip
        result["ood"] = ood
    print(metrics_markdown(result))
    if args.ood is not None:
        print(
            f"out-of-distribution ({ood['n_out']} chips of {args.ood} against {ood['n_in']} "
            f"images): AUROC energy {ood['energy_auroc']:.4f}, max-softmax "
            f"{ood['max_softmax_auroc']:.4f}"
        )
    if args.out:
        write_json(args.out, {"written_by": "landlearn", **result})
        print(f"metrics: {args.out}")
    oa = result.get("overall_accuracy")
    if oa is None or (isinstance(oa, float) and math.isnan(oa)):
        log.warning("no labelled pixels or samples were scored")
    return 0
