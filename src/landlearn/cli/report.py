"""``landlearn report RUN_DIR``: figures and one HTML page for a training run."""

from __future__ import annotations

import argparse
import logging

__all__ = ["EXAMPLE", "HELP", "add_arguments", "run"]

log = logging.getLogger(__name__)

HELP = "write figures, index.html and metrics.md for a run folder"
EXAMPLE = """example:
  landlearn report runs/eurosat_resnet18          # writes runs/eurosat_resnet18/report/index.html
  landlearn report runs/deepglobe --out /tmp/rep  # somewhere else
  landlearn report runs/jem --baseline runs/plain  # calibration of a JEM beside the classifier
  landlearn report runs/student --pseudo-labels pseudo1/ pseudo2/  # self-training rounds

RUN_DIR holds metrics.csv (Lightning CSVLogger) and/or metrics.json (landlearn test), directly or
in its latest version_N/ subfolder; class_colors.json, examples.npz and hparams.yaml are used when
present."""


REPORT_PNGS = (
    "training_curves.png",
    "confusion_matrix.png",
    "per_class.png",
    "reliability.png",
    "reliability_vs_baseline.png",
    "pseudo_labels.png",
    "examples.png",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``RUN_DIR`` and ``--out`` to the ``report`` subcommand's parser."""
    parser.description = HELP
    parser.epilog = EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by landlearn fit")
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="output folder (default: RUN_DIR/report)"
    )
    parser.add_argument(
        "--baseline",
        metavar="RUN_DIR",
        default=None,
        help="another run: its reliability diagram is drawn beside this run's",
    )
    parser.add_argument(
        "--pseudo-labels",
        metavar="DIR",
        nargs="+",
        default=[],
        help="landlearn pseudo-label folders, one per round: coverage and accuracy per class",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace files in --out landlearn did not write"
    )


def run(args: argparse.Namespace) -> int:
    """Build the report; the dispatcher maps a LandlearnError to one line and exit 2.

    Raises:
        LandlearnError: no metrics in ``args.run_dir`` or an unreadable metrics file.
    """
    from pathlib import Path

    from landlearn.report import build_report  # matplotlib loads only for this command
    from landlearn.safety import Output, check_outputs

    out = Path(args.out) if args.out is not None else None
    if out is not None:
        if out.exists() and not out.is_dir():
            from landlearn.errors import LandlearnError

            raise LandlearnError("is a file; --out takes a folder", out)
        files = [Output(out / "index.html", "text")]
        files += [Output(out / n, "plot") for n in REPORT_PNGS]
        files += [Output(out / "metrics.md", "text")]
        check_outputs(files, overwrite=args.overwrite)
    index = build_report(
        args.run_dir, args.out, baseline=args.baseline, pseudo_labels=args.pseudo_labels
    )
    log.info("report: %s", index)
    return 0
