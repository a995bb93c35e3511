"""Pixel regression on real data: Sentinel-2 NIR reflectance (B8) from Sentinel-1 VV / VH.

Each U-Net run is ``landlearn fit --config configs/sen1floods11_s1_to_nir.yaml`` (through
``landlearn.train``): train on the Sen1Floods11 Spain_7370579 chip (20 % of its 128 px blocks
for validation, best ``val_rmse`` checkpoint), test on every pixel of the India_900498 chip.
The baselines are per-pixel scikit-learn models on the same two radar values: ordinary least
squares and a random forest, fitted on every known pixel of the Spain chip (all of it, so they
see a little more of Spain than the U-Net, whose validation blocks are held out), scored on the
same India pixels. R², MAE and RMSE in the target's units (TOA reflectance × 10000), mean ± std
over seeds (the linear model has no seed).

Smoke test (seconds)::

    .venv/bin/python benchmarks/s1_to_nir.py --epochs 1 --samples 16 --seeds 0
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HelpFormatter,
    console,
    machine_info,
    machine_markdown,
    markdown_table,
    print_table,
    quiet_logs,
    write_outputs,
)

from landlearn import train

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "sen1floods11"
CONFIG = ROOT / "configs" / "sen1floods11_s1_to_nir.yaml"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="default: the config's max_epochs")
    p.add_argument("--samples", type=int, default=None, help="chips per epoch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--md", type=Path, default=None)
    return p.parse_args(argv)


def _pixels(chip: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X (N, 2) VV / VH dB, y (N,) B8)`` of the chip's pixels with a known target."""
    with rasterio.open(DATA / "S1" / f"{chip}_S1Hand.tif") as s1:
        x = s1.read().reshape(2, -1).T.astype(np.float64)
    with rasterio.open(DATA / "S2" / f"{chip}_S2Hand.tif") as s2:
        y = s2.read(8).ravel().astype(np.float64)
        nodata = s2.nodata
    ok = np.isfinite(x).all(axis=1) & (y != nodata)
    return x[ok], y[ok]


def _scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    err = pred - y
    return {
        "r2": float(1 - (err**2).sum() / ((y - y.mean()) ** 2).sum()),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
    }


def _baselines(seeds: list[int]) -> list[dict[str, Any]]:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression

    x, y = _pixels("Spain_7370579")
    xt, yt = _pixels("India_900498")
    out = [{"model": "linear (VV, VH)", "seed": 0,
            **_scores(yt, LinearRegression().fit(x, y).predict(xt))}]  # fmt: skip
    for seed in seeds:
        rf = RandomForestRegressor(100, min_samples_leaf=20, max_samples=50_000, n_jobs=2,
                                   random_state=seed)  # fmt: skip
        out.append({"model": "random forest (VV, VH)", "seed": seed,
                    **_scores(yt, rf.fit(x, y).predict(xt))})  # fmt: skip
    return out


def _unet(args: argparse.Namespace, seed: int, root: Path) -> dict[str, Any]:
    overrides = [
        f"--seed_everything={seed}",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--data.init_args.num_workers=0",
    ]
    if args.epochs is not None:
        overrides.append(f"--trainer.max_epochs={args.epochs}")
    if args.samples is not None:
        overrides.append(f"--data.init_args.samples_per_epoch={args.samples}")
    start = time.perf_counter()
    result = train(CONFIG, *overrides, name=f"nir_seed{seed}", root=root, report=False, seed=seed)
    m = result.metrics
    return {"model": "U-Net ResNet-18 (landlearn)", "seed": seed,
            "seconds": time.perf_counter() - start,
            "r2": m["r2"], "mae": m["mae"], "rmse": m["rmse"]}  # fmt: skip


def _pm(values: list[float], digits: int) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    """Run the U-Net over seeds and the baselines; print and write the table."""
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    quiet_logs()
    runs = _baselines(args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            r = _unet(args, seed, Path(tmp))
            runs.append(r)
            console.print(f"U-Net seed {seed}: R² {r['r2']:.3f}, MAE {r['mae']:.0f}, "
                          f"{r['seconds']:.0f} s", highlight=False)  # fmt: skip
    record: dict[str, Any] = {"runs": runs, "epochs": args.epochs, "samples": args.samples,
                              "seeds": args.seeds, "machine": machine_info("cpu")}  # fmt: skip
    columns = ["model (train Spain, test India)", "R²", "MAE", "RMSE", "seeds"]
    rows = []
    for model in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == model]
        rows.append([model, _pm([r["r2"] for r in mine], 3), _pm([r["mae"] for r in mine], 0),
                     _pm([r["rmse"] for r in mine], 0), str(len(mine))])  # fmt: skip
    print_table("S1 → S2 B8 (TOA reflectance × 10000), India test pixels", columns, rows)
    md = f"{markdown_table(columns, rows)}\n\n{machine_markdown(record['machine'])}\n"
    write_outputs(record, args.json, args.md, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
