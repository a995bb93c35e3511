"""Sen1Floods11 water: Sentinel-1 + Sentinel-2 early fusion against each sensor alone.

Each run is ``landlearn fit --config configs/sen1floods11_<variant>.yaml`` (through
``landlearn.train``, the same code): train on the Spain_7370579 chip (20 % of its 128 px blocks
for validation, the best ``val_miou`` checkpoint kept), test on the India_900498 chip (another
country, another flood). The three configs share model (early-fusion U-Net, ResNet-18 encoder
from scratch), budget, augmentation and seed; only the inputs differ:

- ``s1s2``: S2's 13 bands and S1's VV / VH, each normalised with its own Spain statistics, then
  stacked;
- ``s2``: the 13 S2 bands alone; ``s1``: VV / VH alone.

Reported on India's hand labels: water IoU, mIoU and overall accuracy, mean ± std over seeds.
Smoke test (seconds)::

    .venv/bin/python benchmarks/sen1floods11.py --epochs 1 --samples 32 --seeds 0 --variants s1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
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
VARIANTS = ("s1s2", "s2", "s1")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="default: the configs' max_epochs")
    p.add_argument("--samples", type=int, default=None,
                   help="chips per epoch (default: the configs' samples_per_epoch)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=Path, default=None, help="keep the run folders here")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--md", type=Path, default=None)
    return p.parse_args(argv)


def _one(args: argparse.Namespace, variant: str, seed: int, root: Path) -> dict[str, Any]:
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
    config = ROOT / "configs" / f"sen1floods11_{variant}.yaml"
    start = time.perf_counter()
    result = train(config, *overrides, name=f"{variant}_seed{seed}", root=root, report=False,
                   seed=seed)  # fmt: skip
    seconds = time.perf_counter() - start
    m = result.metrics
    iou = m["per_class"]["iou"]
    return {
        "variant": variant, "seed": seed, "seconds": seconds,
        "water_iou": iou[1], "miou": m["miou"], "overall_accuracy": m["overall_accuracy"],
        "run": str(result.run_dir),
    }  # fmt: skip


def _pm(values: list[float]) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.3f} ± {v.std():.3f}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every variant over every seed; the JSON-ready record."""
    torch.set_num_threads(args.threads)
    quiet_logs()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.runs or Path(tmp)
        for variant in args.variants:
            for seed in args.seeds:
                r = _one(args, variant, seed, root)
                runs.append(r)
                console.print(
                    f"{variant} seed {seed}: water IoU {r['water_iou']:.3f}, mIoU {r['miou']:.3f},"
                    f" OA {r['overall_accuracy']:.3f}, {r['seconds']:.0f} s", highlight=False,
                )  # fmt: skip
    return {"runs": runs, "epochs": args.epochs, "samples": args.samples, "seeds": args.seeds}


def _table(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    columns = ["inputs", "water IoU (India)", "mIoU", "overall accuracy", "fit s / run"]
    rows = []
    for variant in dict.fromkeys(r["variant"] for r in record["runs"]):
        mine = [r for r in record["runs"] if r["variant"] == variant]
        label = {"s1s2": "S1 + S2 (early fusion)", "s2": "S2 only", "s1": "S1 only"}[variant]
        rows.append([
            label, _pm([r["water_iou"] for r in mine]), _pm([r["miou"] for r in mine]),
            _pm([r["overall_accuracy"] for r in mine]),
            f"{np.mean([r['seconds'] for r in mine]):.0f}",
        ])  # fmt: skip
    return columns, rows


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write ``--json`` / ``--md``."""
    args = _parse(argv)
    record = run(args)
    record["machine"] = machine_info("cpu")
    columns, rows = _table(record)
    title = f"Sen1Floods11, train Spain, test India, mean ± std over {len(args.seeds)} seed(s)"
    print_table(title, columns, rows)
    md = f"{markdown_table(columns, rows)}\n\n{machine_markdown(record['machine'])}\n"
    write_outputs(record, args.json, args.md, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
