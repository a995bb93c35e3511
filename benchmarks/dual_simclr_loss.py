"""Dual-SimCLR pre-training loss per epoch on the ssl-sensors scenes, by pair geometry.

A diagnostic for issue 19: does one shared crop / flip / turn for the S2 / S1 pair (the pair then
covers the same pixels) let the two encoders match the sensors, where independent draws left the
loss at chance? It runs ``landlearn.experiments.ssl_sensors.pretrain`` (the study's pre-training,
its default budget) once per geometry and memory-bank size and reads the per-epoch
``train_loss`` the run logged. ``--memory-banks 0`` gives the plain in-batch NT-Xent (chance
ln(2B − 1)); a bank of K entries has chance ln(K + 1): a loss that climbs back to chance
with the bank and not without it points at the bank.

    .venv/bin/python benchmarks/dual_simclr_loss.py --seed 0 --epochs 10 -o benchmarks/out/dual_loss
    .venv/bin/python benchmarks/dual_simclr_loss.py --seed 0 --geometries shared \
        --memory-banks 0 1024 -o benchmarks/out/dual_loss_bank
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from landlearn.errors import LandlearnError
from landlearn.experiments.ssl_sensors import SSLSensorOptions, pretrain, unlabelled_pairs


def _bank_size(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"memory bank size must be >= 0, got {value}")
    return value


def main() -> None:
    """Pre-train once per geometry; print and write ``dual_loss.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--geometries", nargs="+", default=["independent", "shared"])
    ap.add_argument("--data-root", type=Path, default=Path("../shared/data"),
                    help="holds sen1floods11/, ssl4eo_s12/, bigearthnet_pairs/")  # fmt: skip
    ap.add_argument("--memory-banks", type=_bank_size, nargs="+", default=[1024],
                    help="bank sizes; 0 is in-batch negatives")  # fmt: skip
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    results = {}
    for geometry in args.geometries:
        for bank in args.memory_banks:
            data = args.data_root
            opts = SSLSensorOptions(pretrain_epochs=args.epochs, pair_geometry=geometry,
                                    memory_bank_size=bank, seeds=[args.seed],
                                    root=str(data / "sen1floods11"),
                                    ssl4eo=str(data / "ssl4eo_s12"),
                                    bigearthnet=str(data / "bigearthnet_pairs"))  # fmt: skip
            try:
                opts.check()
            except LandlearnError as e:
                ap.error(e.one_line())
            key = geometry if args.memory_banks == [1024] else f"{geometry}_bank{bank}"
            work = args.out / key
            done = pretrain(opts, "dual", args.seed, unlabelled_pairs(opts, work), work)
            metrics = work / f"dual_seed{args.seed}" / "version_0" / "metrics.csv"
            with open(metrics) as f:
                per_epoch = [float(r["train_loss"]) for r in csv.DictReader(f)
                             if r.get("train_loss")]  # fmt: skip
            negatives = bank if bank else 2 * opts.pretrain_batch - 2
            results[key] = {
                "geometry": geometry, "memory_bank": bank, "final": done["loss"],
                "per_epoch": per_epoch, "seconds": done["seconds"],
                "chips": done["chips_per_epoch"], "chance": math.log(negatives + 1),
            }  # fmt: skip
            print(key, json.dumps(results[key]), flush=True)
    (args.out / "dual_loss.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
