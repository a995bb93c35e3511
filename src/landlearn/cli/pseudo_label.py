"""``landlearn pseudo-label BUNDLE DATA -o DIR``: a teacher's confident pixels as masks.

Examples:
  landlearn pseudo-label teacher.safetensors unlabelled/ -o pseudo/ --threshold 0.9
  landlearn pseudo-label teacher.safetensors unlabelled/ -o pseudo/ --class-balanced 0.5
  landlearn pseudo-label a.safetensors tiles/ -o pseudo/ --ensemble b.safetensors --tta d4
  landlearn pseudo-label teacher.safetensors images/ -o pseudo/ --masks masks/ --classes-csv c.csv

Writes DIR/masks/<stem>.png (or .tif with the input's grid for a georeferenced raster): the
predicted class where the teacher's max probability passes its class's threshold, 255
(ignored) elsewhere; DIR/confidence/<stem>.tif (the max probability, float32); and
DIR/pseudo_labels.json (thresholds, per-class coverage and, with --masks, accuracy against
true masks). Train a student on them with MaskFolderDataModule(images=DATA, masks=DIR/masks,
class_names=[...] from the JSON); it then becomes the next round's teacher.

--threshold keeps pixels at or above one confidence (default 0.9); --class-balanced P keeps the
most confident P share of each predicted class instead, so classes the teacher is never sure
of are not lost (give both to cap each class's threshold at --threshold).
"""

from __future__ import annotations

import argparse
import logging

from landlearn.cli.common import check_device, progress_bar

log = logging.getLogger(__name__)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landlearn pseudo-label``."""
    parser.add_argument("bundle", help="teacher segmentation bundle (.safetensors)")
    parser.add_argument("data", help="folder of unlabelled images (or one image)")
    parser.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="keep pixels with max probability >= this (default 0.9)",
    )
    parser.add_argument(
        "--class-balanced",
        type=float,
        default=None,
        metavar="P",
        help="keep the most confident P share of each predicted class",
    )
    parser.add_argument(
        "--ensemble",
        nargs="+",
        default=[],
        metavar="BUNDLE",
        help="more teachers: their mean probabilities",
    )
    parser.add_argument(
        "--tta",
        choices=["d4"],
        default=None,
        help="average over the 8 flips / quarter turns (8x the time)",
    )
    parser.add_argument(
        "--masks",
        default=None,
        metavar="DIR",
        help="true masks (paired by file name): report pseudo-label accuracy",
    )
    parser.add_argument("--classes-csv", default=None, help="colour table of RGB --masks")
    parser.add_argument("--remap", default=None, help="class-code remapping of --masks, e.g. 1:0")
    parser.add_argument("--tile", type=int, default=512, help="window size in px")
    parser.add_argument("--overlap", type=int, default=64, help="px shared by windows")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs landlearn did not write (never an input)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the pseudo-labels and print one line per class."""
    from landlearn.cli.evaluate import parse_remap
    from landlearn.pseudo import pseudo_label

    device = check_device(args.device)
    with progress_bar("teacher") as bar:
        job = bar.add_task("teacher", total=None, rate="")

        def advance(done: int, total: int) -> None:
            bar.update(job, completed=done, total=total)

        result = pseudo_label(
            [args.bundle, *args.ensemble],
            args.data,
            args.out,
            threshold=args.threshold,
            class_balanced=args.class_balanced,
            tta=args.tta,
            true_masks=args.masks,
            classes_csv=args.classes_csv,
            remap=parse_remap(args.remap),
            tile=args.tile,
            overlap=args.overlap,
            batch_size=args.batch_size,
            device=device,
            overwrite=args.overwrite,
            progress=advance,
        )
    s = result.summary
    print(
        f"{len(result.masks)} masks in {result.out_dir / 'masks'}; "
        f"{100 * s['kept_share']:.1f} % of pixels kept"
    )
    for c in s["classes"]:
        cov = "–" if c["coverage"] is None else f"{100 * c['coverage']:.1f} %"
        acc = c.get("accuracy")
        acc_text = "" if acc is None else f", accuracy {100 * acc:.1f} %"
        print(
            f"  {c['class']}: threshold {c['threshold']:.3f}, kept {c['kept_pixels']:,} of "
            f"{c['predicted_pixels']:,} predicted px ({cov}){acc_text}"
        )
    return 0
