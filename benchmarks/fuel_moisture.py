"""Live fuel moisture (Presto's data): landlearn's MLP regression head against scikit-learn.

Features and split are the library's (``landlearn.data.presto.PrestoDataModule``): the 3 monthly
steps × 18 S1 / S2 / ERA5 / SRTM / NDVI values flattened, latitude / longitude and the season
(58 columns), normalised with training-split statistics; Presto's own train / test split (1,578 /
735 rows, test sites unseen in training). Every model sees exactly the same feature matrix:

- ``mlp``: ``mlp_regressor`` trained with a short torch loop in this script (AdamW, one-cycle
  schedule, MSE on standardised targets, fixed epochs, the final weights; no checkpoint picked
  on the test split);
- ``mlp_nll``: the same network with a log-variance output, trained with the Gaussian NLL;
- ``hgb``: scikit-learn's ``HistGradientBoostingRegressor`` with its defaults;
- ``rf``: ``RandomForestRegressor``, 300 trees, ``max_features=0.33``, ``min_samples_leaf=2``.

Each runs once per seed (network init and batch order; the forest's bootstrap; the boosted
trees use no randomness without early stopping or subsampling, so their spread is 0). All are
scored by ``landlearn.metrics.RegressionMetrics``. ``--eval-split val`` scores on whole training
sites held out instead (``--val-fraction``): that is where the MLP recipe (the defaults below)
was chosen, among five, before the test split was scored. On 2 CPU cores the default run takes
under a minute. Smoke test::

    .venv/bin/python benchmarks/fuel_moisture.py --limit-train 200 --epochs 2 --seeds 0
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_ROOT,
    HelpFormatter,
    console,
    machine_info,
    machine_markdown,
    markdown_table,
    parse_outputs_and_device,
    print_table,
    write_outputs,
)

from landlearn.data.presto import FEATURE_GROUPS, PrestoDataModule
from landlearn.metrics import RegressionMetrics
from landlearn.models import build_model
from landlearn.models.regressors import split_mean_logvar
from landlearn.regression_losses import build_regression_loss

MODELS = ("mlp", "mlp_nll", "hgb", "rf")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--data", default=str(DATA_ROOT / "presto"), help="presto/ folder")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--hidden", nargs="+", type=int, default=[256, 256])
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--features", nargs="+", default=list(FEATURE_GROUPS), choices=FEATURE_GROUPS)
    p.add_argument("--eval-split", choices=("test", "val"), default="test")
    p.add_argument("--val-fraction", type=float, default=0.15, help="sites, with --eval-split val")
    p.add_argument("--limit-train", type=int, default=None, help="training rows, for smoke runs")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the MLP is tiny)")
    p.add_argument("--jobs", type=int, default=2, help="scikit-learn forest jobs")
    return parse_outputs_and_device(p, argv)


def _score(pred: np.ndarray, y: np.ndarray, log_var: np.ndarray | None = None) -> dict[str, Any]:
    m = RegressionMetrics(["lfmc"])
    lv = None if log_var is None else torch.as_tensor(log_var)
    m.update(torch.as_tensor(pred), torch.as_tensor(y), lv)
    return m.compute()


def _train_mlp(
    args: argparse.Namespace, dm: PrestoDataModule, seed: int, variance: bool, split: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Train on ``train``, predict ``split``; predictions (and log-variances) in % units."""
    assert dm.head_spec is not None
    assert dm.head_spec.mean
    assert dm.head_spec.std
    mu, sd = dm.head_spec.mean[0], dm.head_spec.std[0]
    x_np, y_np = dm.arrays("train")
    x = torch.as_tensor(x_np)
    y = torch.as_tensor((y_np - mu) / sd, dtype=torch.float32)[:, None]  # standardised
    torch.manual_seed(seed)
    model = build_model(
        "mlp_regressor", in_channels=x.shape[1], num_classes=1, dropout=args.dropout,
        hidden=args.hidden, variance=variance,
    )  # fmt: skip
    loss_fn = build_regression_loss("gaussian_nll" if variance else "mse", num_targets=1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * math.ceil(len(x) / args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=max(1, steps))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(args.epochs):
        for idx in torch.randperm(len(x), generator=gen).split(args.batch_size):
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        out = model(torch.as_tensor(dm.arrays(split)[0]))
    mean, log_var = split_mean_logvar(out, 1)
    pred = mean[:, 0].double().numpy() * sd + mu
    if log_var is None:
        return pred, None
    return pred, log_var[:, 0].double().numpy() + 2 * math.log(sd)  # variance in %²


def _fit_sklearn(name: str, dm: PrestoDataModule, seed: int, split: str, jobs: int) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

    x, y = dm.arrays("train")
    model: Any
    if name == "hgb":
        model = HistGradientBoostingRegressor(random_state=seed)
    else:
        model = RandomForestRegressor(
            n_estimators=300, max_features=0.33, min_samples_leaf=2, random_state=seed,
            n_jobs=jobs,
        )  # fmt: skip
    model.fit(x, y)
    return np.asarray(model.predict(dm.arrays(split)[0]), dtype=np.float64)


def _mean_std(values: list[float | None]) -> tuple[float, float]:
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    return float(np.mean(v)), float(np.std(v))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train and score every model over every seed; the JSON-ready record."""
    torch.set_num_threads(args.threads)
    val = args.val_fraction if args.eval_split == "val" else 0.0
    dm = PrestoDataModule(
        args.data, task="fuel_moisture", features=args.features, val_fraction=val,
        limit_train=args.limit_train,
    )  # fmt: skip
    dm.setup()
    split = args.eval_split
    y_eval = dm.arrays(split)[1]
    runs: list[dict[str, Any]] = []
    for name in args.models:
        for seed in args.seeds:
            start = time.perf_counter()
            log_var = None
            if name.startswith("mlp"):
                pred, log_var = _train_mlp(args, dm, seed, name == "mlp_nll", split)
            else:
                pred = _fit_sklearn(name, dm, seed, split, args.jobs)
            seconds = time.perf_counter() - start
            metrics = _score(pred, y_eval, log_var)
            runs.append({"model": name, "seed": seed, "seconds": seconds, "metrics": metrics})
            console.print(
                f"{name} seed {seed}: R² {metrics['r2']:.3f}, MAE {metrics['mae']:.2f} %, "
                f"{seconds:.1f} s",
                highlight=False,
            )
    summary = {}
    for name in args.models:
        mine = [r for r in runs if r["model"] == name]
        summary[name] = {
            key: _mean_std([r["metrics"][key] for r in mine]) for key in ("r2", "mae", "rmse")
        }
        nll = [r["metrics"]["nll"] for r in mine]
        summary[name]["nll"] = _mean_std(nll) if all(v is not None for v in nll) else None
        summary[name]["seconds"] = _mean_std([r["seconds"] for r in mine])
    return {
        "split": split,
        "rows": {k: len(v) for k, v in dm.splits.items()},
        "features": len(dm.columns),
        "feature_groups": list(args.features),
        "recipe": {
            k: getattr(args, k)
            for k in ("epochs", "batch_size", "lr", "weight_decay", "hidden", "dropout", "seeds")
        },
        "runs": runs,
        "summary": summary,
    }


def _pm(value: tuple[float, float] | None, digits: int) -> str:
    return "–" if value is None else f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"


def _table(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    columns = ["model", "R²", "MAE (%)", "RMSE (%)", "Gaussian NLL", "fit s"]
    rows = [
        [name, _pm(s["r2"], 3), _pm(s["mae"], 2), _pm(s["rmse"], 2), _pm(s["nll"], 3),
         f"{s['seconds'][0]:.1f}"]
        for name, s in record["summary"].items()
    ]  # fmt: skip
    return columns, rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write ``--json`` / ``--md``."""
    args = _parse(argv)
    record = run(args)
    record["machine"] = machine_info("cpu")
    columns, rows = _table(record)
    n = len(args.seeds)
    title = f"Live fuel moisture, {record['split']} split, mean ± std over {n} seed(s)"
    print_table(title, columns, rows)
    md = f"{markdown_table(columns, rows)}\n\n{machine_markdown(record['machine'])}\n"
    write_outputs(record, args.json, args.md, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
