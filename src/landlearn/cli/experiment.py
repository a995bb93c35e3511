r"""``landlearn experiment STUDY``: compare methods over seeds on real data, table + plot.

Studies:
  semisup   semi-supervised segmentation: supervised at a label fraction, self-training for R
            rounds, mean teacher, FixMatch, cross pseudo supervision, sparse points + mean
            teacher, against 100 % labels (landlearn.experiments.semisup)

Examples:
  landlearn experiment semisup --data dubai --fractions 0.25 --seeds 0 1 2 -o study/
  landlearn experiment semisup --data deepglobe --fractions 0.5 --methods supervised \
      self_training mean_teacher --rounds 1 3 --max-steps 400 -o study_dg/

Writes DIR/semisup.json (every run, the options, the machine), DIR/semisup.md (budget, table,
machine: ready for benchmarks/RESULTS.md), DIR/semisup.png (mIoU against the labelled share)
and each run's folder under DIR/runs/. Every fit gets the same number of optimiser steps.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from landlearn.cli.common import eprint

log = logging.getLogger(__name__)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landlearn experiment``."""
    from landlearn.experiments.semisup import DATASETS, METHODS

    sub = parser.add_subparsers(dest="study", required=True, metavar="STUDY")
    p = sub.add_parser(
        "semisup",
        help="semi-supervised segmentation against supervised and 100 %% labels",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", choices=DATASETS, default="dubai", help="real data set")
    p.add_argument(
        "--data-root", default="../shared/data", help="folder holding dubai/ and deepglobe/"
    )
    p.add_argument(
        "--fractions", type=float, nargs="+", default=[0.25], help="labelled shares in (0, 1)"
    )
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--rounds", type=int, nargs="+", default=[1, 3], help="self-training rows")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-steps", type=int, default=300, help="optimiser steps of every fit")
    p.add_argument("--chip", type=int, default=64, help="chip size in px")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--class-balanced",
        type=float,
        default=0.5,
        help="self-training keeps this most confident share of each class",
    )
    p.add_argument("--points", type=float, default=0.01, help="share of pixels as points")
    p.add_argument("--rampup", type=int, default=50, help="online methods' ramp-up steps")
    p.add_argument(
        "--limit-eval-batches",
        type=int,
        default=None,
        help="val / test batches per evaluation (smoke runs only: the table then says less)",
    )
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")


def run(args: argparse.Namespace) -> int:
    """Run the study; print the table and where the files are."""
    from landlearn.experiments.semisup import SemisupOptions, run_semisup

    opts = SemisupOptions(
        data=args.data, data_root=args.data_root, fractions=args.fractions,
        methods=args.methods, rounds=args.rounds, seeds=args.seeds, max_steps=args.max_steps,
        chip=args.chip, batch_size=args.batch_size, class_balanced=args.class_balanced,
        points=args.points, rampup=args.rampup, limit_eval_batches=args.limit_eval_batches,
    )  # fmt: skip
    opts.check()
    out = Path(args.out)
    record = run_semisup(opts, out, say=eprint)
    print(record["table"])
    print(f"\nwrote {out / 'semisup.md'}, {out / 'semisup.json'}, {out / 'semisup.png'}")
    return 0
