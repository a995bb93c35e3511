"""Dual-SimCLR pre-training loss per epoch on the ssl-sensors scenes, by pair geometry.

A diagnostic for issue 19: does one shared crop / flip / turn for the S2 / S1 pair (the pair then
covers the same pixels) let the two encoders match the sensors, where independent draws left the
loss at chance? It runs ``landlearn.experiments.ssl_sensors.pretrain`` (the study's pre-training,
its default budget) once per geometry and reads the per-epoch ``train_loss`` the run logged.

    .venv/bin/python benchmarks/dual_simclr_loss.py --seed 0 --epochs 10 -o benchmarks/out/dual_loss
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from landlearn.experiments.ssl_sensors import SSLSensorOptions, pretrain, unlabelled_pairs


def main() -> None:
    """Pre-train once per geometry; print and write ``dual_loss.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--geometries", nargs="+", default=["independent", "shared"])
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    results = {}
    for geometry in args.geometries:
        opts = SSLSensorOptions(pretrain_epochs=args.epochs, pair_geometry=geometry,
                                seeds=[args.seed])  # fmt: skip
        opts.check()
        work = args.out / geometry
        done = pretrain(opts, "dual", args.seed, unlabelled_pairs(opts, work), work)
        with open(work / f"dual_seed{args.seed}" / "version_0" / "metrics.csv") as f:
            per_epoch = [float(r["train_loss"]) for r in csv.DictReader(f) if r.get("train_loss")]
        results[geometry] = {
            "final": done["loss"], "per_epoch": per_epoch, "seconds": done["seconds"],
            "chips": done["chips_per_epoch"],
        }  # fmt: skip
        print(geometry, json.dumps(results[geometry]), flush=True)
    chance = math.log(SSLSensorOptions().memory_bank_size + 1)
    print(f"chance: ln({SSLSensorOptions().memory_bank_size + 1}) = {chance:.3f}")
    (args.out / "dual_loss.json").write_text(json.dumps(results | {"chance": chance}, indent=1))


if __name__ == "__main__":
    main()
