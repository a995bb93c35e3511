r"""``landlearn experiment STUDY``: compare methods over seeds on real data, table + plot.

Studies:
  semisup   semi-supervised segmentation: supervised at a label fraction, self-training for R
            rounds, mean teacher, FixMatch, cross pseudo supervision, sparse points + mean
            teacher, against 100 % labels (landlearn.experiments.semisup)
  fusion    image + table fusion on EuroSAT RGB with a controlled table (a dial from noise
            to informative, and an interaction setting): image-only, table-only, k-means /
            DBSCAN + random forest, LASSO, early / late / gated / progressive fusion, with
            permutation importance and gate weights (landlearn.experiments.fusion)
  sensors   Sentinel-1 + Sentinel-2 water segmentation on Sen1Floods11 (train on one chip,
            test on the other): S1 / S2 only, early / late / gated fusion, under clear sky,
            50 % cloud on S2, and S2 absent (landlearn.experiments.sensors)
  globe     GLOBE land covers: MUC level-1 class from the other attributes with the classical
            baselines and a table-only net; sky photos + table as an ingestion check
            (landlearn.experiments.globe)
  ssl       SimCLR pre-training on EuroSAT RGB without labels, then linear probe and
            fine-tune at label fractions against training from scratch
            (landlearn.experiments.ssl)
  ssl-sensors  Dual-SimCLR on S1 / S2 pairs (Sen1Floods11, SSL4EO-S12, BigEarthNet) and
            SimCLR on S2 alone, then water segmentation with 5 / 25 / 100 % of one chip's
            pixels, tested on the other, against scratch (landlearn.experiments.ssl_sensors)
  bigearthnet  BigEarthNet S1 + S2 pairs through a multi-label gated fusion: an ingestion
            and shape check (landlearn.experiments.bigearthnet)

Examples:
  landlearn experiment semisup --data dubai --fractions 0.25 --seeds 0 1 2 -o study/
  landlearn experiment semisup --data dubai_tiles --fractions 0.1 0.25 0.5 -o study_dubai/
  landlearn experiment semisup --data deepglobe --fractions 0.5 --methods supervised \
      self_training mean_teacher --rounds 1 3 --max-steps 400 -o study_dg/
  landlearn experiment semisup --data slovenia --fractions 0.1 0.5 -o study_slovenia/
  landlearn experiment fusion --seeds 0 1 2 -o study_fusion/
  landlearn experiment sensors --seeds 0 1 2 -o study_sensors/
  landlearn experiment globe -o study_globe/
  landlearn experiment bigearthnet -o study_ben/
  landlearn experiment ssl --fractions 0.01 0.1 1.0 --seeds 0 1 2 -o study_ssl/
  landlearn experiment ssl-sensors --seeds 0 1 2 -o study_ssl_sensors/

Writes DIR/<study>.json (every run, the options, the machine), DIR/<study>.md (budget, table,
machine: ready for benchmarks/RESULTS.md), DIR/<study>.png (semisup: mIoU against the labelled
share; fusion: accuracy against the dial)
and each run's folder under DIR/runs/. Every fit gets the same number of optimiser steps.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

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
        "--data-root",
        default="../shared/data",
        help="folder holding dubai/, deepglobe/ and slovenia_s2_lulc/",
    )
    p.add_argument(
        "--fractions", type=float, nargs="+", default=[0.25], help="labelled shares in (0, 1)"
    )
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--rounds", type=int, nargs="+", default=[1, 3], help="self-training rows")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-steps", type=int, default=300, help="optimiser steps of every fit")
    p.add_argument(
        "--chip", type=int, default=None, help="chip size in px; None: 64 (slovenia: 32)"
    )
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
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the fits OUT/semisup.json holds with the same fit options (a new method, "
        "seed or fraction then runs only its own fits)",
    )
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    _fusion_arguments(sub)
    _sensor_arguments(sub)
    _globe_arguments(sub)
    _bigearthnet_arguments(sub)
    _ssl_arguments(sub)
    _ssl_sensor_arguments(sub)


def _fusion_arguments(sub: Any) -> None:
    from landlearn.experiments.fusion import FUSION_MODELS

    p = sub.add_parser(
        "fusion",
        help="image + table fusion on a controlled EuroSAT task",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--eurosat", default="../shared/data/eurosat_rgb", help="EuroSAT RGB folder")
    p.add_argument("--dials", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--no-interaction", action="store_true", help="skip the interaction setting")
    p.add_argument("--models", nargs="+", choices=FUSION_MODELS, default=list(FUSION_MODELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--per-class", type=int, default=100, help="training images per class")
    p.add_argument("--test-per-class", type=int, default=100, help="test images per class")
    p.add_argument("--size", type=int, default=32, help="image side in px")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--encoder", default="resnet18", help="timm encoder of every image branch")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")


def _sensor_arguments(sub: Any) -> None:
    from landlearn.experiments.sensors import SENSOR_ROWS

    p = sub.add_parser(
        "sensors",
        help="Sentinel-1 + Sentinel-2 water fusion on Sen1Floods11, clear / cloud / S2 absent",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--root", default="../shared/data/sen1floods11", help="Sen1Floods11 folder")
    p.add_argument("--rows", nargs="+", choices=list(SENSOR_ROWS), default=list(SENSOR_ROWS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--samples-per-epoch", type=int, default=256)
    p.add_argument("--encoder", default="resnet18", help="smp encoder of every sensor")
    p.add_argument("--modality-dropout", type=float, default=0.2, help="of the fusion rows")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")


def _run_sensors(args: argparse.Namespace) -> int:
    from landlearn.experiments.sensors import SensorOptions, run_sensors

    opts = SensorOptions(
        root=args.root, rows=args.rows, seeds=args.seeds, epochs=args.epochs,
        samples_per_epoch=args.samples_per_epoch, encoder=args.encoder,
        modality_dropout=args.modality_dropout,
    )  # fmt: skip
    opts.check()
    out = Path(args.out)
    record = run_sensors(opts, out, say=eprint)
    print(record["table"])
    print(f"\nwrote {out / 'sensors.md'}, {out / 'sensors.json'}, {out / 'sensors.png'}")
    return 0


def _globe_arguments(sub: Any) -> None:
    p = sub.add_parser(
        "globe",
        help="GLOBE land covers: MUC level 1 from the table; sky photos + table ingestion",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--land-covers", default="../shared/data/globe_observer/lc.csv")
    p.add_argument("--sky", default="../shared/data/globe_observer/sky_colombia",
                   help="sky_conditions folder ('' to skip the ingestion check)")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")


def _run_globe(args: argparse.Namespace) -> int:
    from landlearn.experiments.globe import run_globe

    out = Path(args.out)
    record = run_globe(args.land_covers, args.sky or None, args.seeds, out, say=eprint)
    print(record["table"])
    print(f"\nwrote {out / 'globe.md'}, {out / 'globe.json'}")
    return 0


def _ssl_arguments(sub: Any) -> None:
    p = sub.add_parser(
        "ssl",
        help="SimCLR on EuroSAT RGB, then linear probe / fine-tune vs scratch at label fractions",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--eurosat", default="../shared/data/eurosat_rgb", help="EuroSAT RGB folder")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.2, 1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--encoder", default="resnet18", help="timm encoder")
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--pretrain-images", type=int, default=2000, help="per pre-training epoch")
    p.add_argument("--epochs", type=int, default=5, help="per labelled fit")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--memory-bank", type=int, default=4096)
    p.add_argument("--encoder-lr", type=float, default=1e-4, help="fine-tune rows")
    p.add_argument("--limit-test-batches", type=int, default=None,
                   help="smoke runs only: the table then says less")  # fmt: skip
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")


def _run_ssl(args: argparse.Namespace) -> int:
    from landlearn.experiments.ssl import SSLOptions, run_ssl

    opts = SSLOptions(
        eurosat=args.eurosat, fractions=args.fractions, seeds=args.seeds, encoder=args.encoder,
        pretrain_epochs=args.pretrain_epochs, pretrain_images=args.pretrain_images,
        epochs=args.epochs, batch_size=args.batch_size, memory_bank_size=args.memory_bank,
        encoder_lr=args.encoder_lr, limit_test_batches=args.limit_test_batches,
    )  # fmt: skip
    opts.check()
    out = Path(args.out)
    record = run_ssl(opts, out, say=eprint)
    print(record["table"])
    print(f"\nwrote {out / 'ssl.md'}, {out / 'ssl.json'}, {out / 'ssl.png'}")
    return 0


def _ssl_sensor_arguments(sub: Any) -> None:
    from landlearn.experiments.ssl_sensors import SSL_SENSOR_ROWS, SSLSensorOptions

    d = SSLSensorOptions()
    p = sub.add_parser(
        "ssl-sensors",
        help="Dual-SimCLR / SimCLR on S1 + S2 pairs, then water with few labelled pixels",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--root", default=d.root, help="Sen1Floods11 folder (S1/, S2/, Labels/)")
    p.add_argument("--ssl4eo", default=d.ssl4eo, help="SSL4EO-S12 folder ('' to leave out)")
    p.add_argument("--bigearthnet", default=d.bigearthnet,
                   help="BigEarthNet pairs folder ('' to leave out)")  # fmt: skip
    p.add_argument("--train-site", default=d.train_site, help="the chip to fine-tune on")
    p.add_argument(
        "--no-test-imagery",
        action="store_true",
        help="pre-train without the test chip's imagery (labels are never used)",
    )
    p.add_argument("--fractions", type=float, nargs="+", default=d.fractions,
                   help="shares of the train chip's labelled pixels")  # fmt: skip
    p.add_argument("--rows", nargs="+", default=d.rows, choices=list(SSL_SENSOR_ROWS))
    p.add_argument("--seeds", type=int, nargs="+", default=d.seeds)
    p.add_argument("--encoder", default=d.encoder, help="timm encoder")
    p.add_argument("--pretrain-epochs", type=int, default=d.pretrain_epochs)
    p.add_argument(
        "--pretrain-chips",
        type=int,
        default=d.pretrain_chips,
        help="train-chip chips per pre-training epoch (other scenes by area)",
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help="per labelled fit")
    p.add_argument("--samples-per-epoch", type=int, default=d.samples_per_epoch)
    p.add_argument("--memory-bank", type=int, default=d.memory_bank_size)
    p.add_argument(
        "--pair-geometry",
        default=d.pair_geometry,
        choices=["independent", "shared"],
        help="Dual-SimCLR: each sensor's view its own crop / flip / turn, or one for the pair",
    )
    p.add_argument("--encoder-lr", type=float, default=None, help="default: the lr")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")


def _run_ssl_sensors(args: argparse.Namespace) -> int:
    from landlearn.experiments.ssl_sensors import SSLSensorOptions, run_ssl_sensors

    opts = SSLSensorOptions(
        root=args.root, ssl4eo=args.ssl4eo or None, bigearthnet=args.bigearthnet or None,
        train_site=args.train_site, test_imagery=not args.no_test_imagery,
        fractions=args.fractions, rows=args.rows, seeds=args.seeds, encoder=args.encoder,
        pretrain_epochs=args.pretrain_epochs, pretrain_chips=args.pretrain_chips,
        epochs=args.epochs, samples_per_epoch=args.samples_per_epoch,
        memory_bank_size=args.memory_bank, encoder_lr=args.encoder_lr,
        pair_geometry=args.pair_geometry,
    )  # fmt: skip
    opts.check()
    out = Path(args.out)
    record = run_ssl_sensors(opts, out, say=eprint)
    print(record["table"])
    print(f"\nwrote {out / 'ssl_sensors.md'}, {out / 'ssl_sensors.json'}, "
          f"{out / 'ssl_sensors.png'}")  # fmt: skip
    return 0


def _bigearthnet_arguments(sub: Any) -> None:
    p = sub.add_parser(
        "bigearthnet",
        help="BigEarthNet S1 + S2 pairs through a multi-label fusion (ingestion check)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--root", default="../shared/data/bigearthnet_pairs")
    p.add_argument("--encoder", default="resnet18", help="timm encoder of each sensor")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")


def _run_bigearthnet(args: argparse.Namespace) -> int:
    from landlearn.experiments.bigearthnet import run_bigearthnet

    out = Path(args.out)
    record = run_bigearthnet(args.root, out, encoder=args.encoder, epochs=args.epochs, say=eprint)
    print(record["markdown"])
    print(f"\nwrote {out / 'bigearthnet.md'}, {out / 'bigearthnet.json'}")
    return 0


def _run_fusion(args: argparse.Namespace) -> int:
    from landlearn.experiments.fusion import FusionOptions, run_fusion

    opts = FusionOptions(
        eurosat=args.eurosat, dials=args.dials, interaction=not args.no_interaction,
        models=args.models, seeds=args.seeds, per_class=args.per_class,
        test_per_class=args.test_per_class, size=args.size, epochs=args.epochs,
        encoder=args.encoder,
    )  # fmt: skip
    opts.check()
    out = Path(args.out)
    record = run_fusion(opts, out, say=eprint)
    print(record["table"])
    print(f"\nwrote {out / 'fusion.md'}, {out / 'fusion.json'}, {out / 'fusion.png'}")
    return 0


_INPUT_ARGS = ("eurosat", "root", "land_covers", "sky", "data_root", "ssl4eo", "bigearthnet")


def check_out_dir(args: argparse.Namespace) -> None:
    """Refuse an output folder that is an input of the study or lies inside an input folder.

    A study writes ``<study>.json`` / ``.md`` / ``.png`` and ``runs/`` under ``--out``; inside a
    data folder those names could replace the user's files.

    Raises:
        LandlearnError: naming the output folder and the input it would write into.
    """
    from landlearn.errors import LandlearnError

    out = Path(args.out).resolve()
    for name in _INPUT_ARGS:
        value = getattr(args, name, None)
        if not value:
            continue
        given = Path(value).resolve()
        if out == given or (given.is_dir() and out.is_relative_to(given)):
            flag = "--" + name.replace("_", "-")
            raise LandlearnError(
                f"is inside the study's input {flag} {value}; choose an output folder outside "
                "the data",
                args.out,
            )


def run(args: argparse.Namespace) -> int:
    """Run the study; print the table and where the files are."""
    check_out_dir(args)
    if args.study == "fusion":
        return _run_fusion(args)
    if args.study == "sensors":
        return _run_sensors(args)
    if args.study == "globe":
        return _run_globe(args)
    if args.study == "bigearthnet":
        return _run_bigearthnet(args)
    if args.study == "ssl":
        return _run_ssl(args)
    if args.study == "ssl-sensors":
        return _run_ssl_sensors(args)
    from landlearn.experiments.semisup import SemisupOptions, run_semisup

    opts = SemisupOptions(
        data=args.data, data_root=args.data_root, fractions=args.fractions,
        methods=args.methods, rounds=args.rounds, seeds=args.seeds, max_steps=args.max_steps,
        chip=args.chip, batch_size=args.batch_size, class_balanced=args.class_balanced,
        points=args.points, rampup=args.rampup, limit_eval_batches=args.limit_eval_batches,
    )  # fmt: skip
    opts.check()
    out = Path(args.out)
    record = run_semisup(opts, out, say=eprint, resume=args.resume)
    print(record["table"])
    print(f"\nwrote {out / 'semisup.md'}, {out / 'semisup.json'}, {out / 'semisup.png'}")
    return 0
