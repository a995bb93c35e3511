"""``landlearn experiment sensors``: Sentinel-1 + Sentinel-2 fusion for water, clouds included.

Sen1Floods11's two real chips (``Spain_7370579``, ``India_900498``: S1 VV/VH, S2 13 bands, a
hand-drawn water label): train on one, test on the other, both directions, over seeds. Rows:
S1 only and S2 only (the U-Net on one sensor), early fusion (both stacked), late fusion (one
encoder per sensor, features concatenated per scale) and gated fusion (a per-pixel softmax gate
over the sensors). The fusion models train with modality dropout (``--modality-dropout``,
default 0.2: a sensor is dropped for a chip with that probability) so they can map without one.

Each bundle is then evaluated on the whole test chip (water IoU, label -1 ignored) three ways:

- **clear**: the chip as it is;
- **cloud**: half the S2 area replaced by *bright cloud-like values* — a smooth random blob
  mask (Gaussian-filtered noise above its median: 50 % of the pixels, in a few large blobs;
  the same mask for every model of a seed) where every S2 band is set to a reflectance of
  0.6 to 0.9 (×10000, L1C units) with a little texture; S1 is untouched (radar sees through);
- **S2 absent**: the bundle asked to predict from S1 alone (only models trained with modality
  dropout can; the others are '–').

Two 512² chips are small data: the numbers describe these two sites, not Sentinel fusion at
large.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landlearn.errors import LandlearnError
from landlearn.experiments.common import (
    append_row,
    machine,
    machine_markdown,
    markdown_table,
    mean_std,
    quiet_runs,
    save_figure,
    write_study,
)

log = logging.getLogger(__name__)

__all__ = ["SENSOR_ROWS", "SensorOptions", "cloud_mask", "run_sensors"]

SITES = ("Spain_7370579", "India_900498")
SENSOR_ROWS = {
    "s1_only": ("early_fusion_unet", ("s1",)),
    "s2_only": ("early_fusion_unet", ("s2",)),
    "early": ("early_fusion_unet", ("s2", "s1")),
    "late": ("late_fusion_unet", ("s2", "s1")),
    "gated": ("gated_fusion_unet", ("s2", "s1")),
}
CONDITIONS = ("clear", "cloud", "s2_absent")
Say = Callable[[str], None]


@dataclass
class SensorOptions:
    """What the study runs; :meth:`check` refuses bad values with one line."""

    root: str = "../shared/data/sen1floods11"
    rows: list[str] = field(default_factory=lambda: list(SENSOR_ROWS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 6
    samples_per_epoch: int = 256
    chip: int = 64
    batch_size: int = 16
    encoder: str = "resnet18"
    modality_dropout: float = 0.2
    cloud_fraction: float = 0.5

    def check(self) -> None:
        """Raises LandlearnError on a bad option."""
        for site in SITES:
            for sub, suffix in (("S1", "S1Hand"), ("S2", "S2Hand"), ("Labels", "LabelHand")):
                path = Path(self.root, sub, f"{site}_{suffix}.tif")
                if not path.is_file():
                    raise LandlearnError("Sen1Floods11 chip missing", path)
        unknown = [r for r in self.rows if r not in SENSOR_ROWS]
        if unknown:
            raise LandlearnError(f"unknown row {unknown[0]!r}; choose from {list(SENSOR_ROWS)}")
        if not 0 <= self.modality_dropout < 1 or not 0 < self.cloud_fraction < 1:
            raise LandlearnError("modality_dropout must be in [0, 1), cloud_fraction in (0, 1)")
        if not self.seeds or min(self.epochs, self.samples_per_epoch, self.chip) < 1:
            raise LandlearnError("give seeds, and epochs / samples / chip >= 1")


def _files(root: Path, site: str) -> dict[str, str]:
    return {"s2": str(root / "S2" / f"{site}_S2Hand.tif"),
            "s1": str(root / "S1" / f"{site}_S1Hand.tif")}  # fmt: skip


def cloud_mask(
    shape: tuple[int, int], fraction: float, seed: int, sigma: float = 24.0
) -> np.ndarray:
    """``(H, W)`` bool: smooth blobs covering ``fraction`` of the pixels (seeded)."""
    from scipy.ndimage import gaussian_filter

    noise = np.random.default_rng(seed).normal(size=shape)
    field_ = gaussian_filter(noise, sigma=sigma, mode="wrap")
    return field_ > np.quantile(field_, 1.0 - fraction)


def _clouded(s2: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
    """S2 ``(13, H, W)`` with bright cloud-like reflectance (6000–9000) inside ``mask``."""
    rng = np.random.default_rng(seed + 7)
    out = s2.astype(np.float32).copy()
    texture = rng.uniform(6000, 9000, size=(1, *mask.shape)).astype(np.float32)
    out[:, mask] = texture[:, mask] * rng.uniform(0.95, 1.05, size=(s2.shape[0], 1))
    return out


def _read(path: str) -> np.ndarray:
    from landlearn.data.io import read_raster

    return read_raster(path)


def _iou(pred: np.ndarray, label: np.ndarray) -> float:
    valid = label >= 0
    p, t = pred[valid] == 1, label[valid] == 1
    union = int((p | t).sum())
    return float((p & t).sum() / union) if union else float("nan")


def _evaluate(bundle: Path, inputs: Sequence[str], test: dict[str, np.ndarray], label: np.ndarray,
              mask: np.ndarray, seed: int) -> dict[str, float | None]:  # fmt: skip
    import torch

    from landlearn.bundle import Predictor, load_bundle

    pred = load_bundle(bundle)
    if not isinstance(pred, Predictor):
        raise LandlearnError("expected a one-model bundle", bundle)
    out: dict[str, float | None] = {}
    chosen = {n: torch.from_numpy(test[n]) for n in inputs}
    with torch.inference_mode():
        head = pred.meta.heads[0].name
        out["clear"] = _iou(pred.predict(chosen)[head][0].numpy(), label)
        cloudy = dict(chosen)
        if "s2" in cloudy:
            cloudy["s2"] = torch.from_numpy(_clouded(test["s2"], mask, seed))
        out["cloud"] = _iou(pred.predict(cloudy)[head][0].numpy(), label)
        out["s2_absent"] = None
        if "s1" in inputs and (inputs == ("s1",) or pred.can_do_without):
            only = {"s1": chosen["s1"]}
            out["s2_absent"] = _iou(pred.predict(only)[head][0].numpy(), label)
    return out


def _fit(opts: SensorOptions, out: Path, row: str, train: str, test: str, seed: int,
         say: Say) -> dict[str, Any]:  # fmt: skip
    import landlearn
    from landlearn.data.aligned_datamodule import AlignedRasterDataModule
    from landlearn.tasks import SegmentationTask

    root = Path(opts.root)
    model, inputs = SENSOR_ROWS[row]
    files = {n: p for n, p in _files(root, train).items() if n in inputs}
    dm = AlignedRasterDataModule(
        inputs={n: files[n] for n in inputs},
        label=str(root / "Labels" / f"{train}_LabelHand.tif"),
        remap={0: 0, 1: 1}, class_names=["not_water", "water"], chip_size=opts.chip,
        samples_per_epoch=opts.samples_per_epoch, val_fraction=0.2, test_fraction=0.0,
        batch_size=opts.batch_size, seed=seed, augment={"hflip": 0.5, "vflip": 0.5, "rot90": 0.5},
    )  # fmt: skip
    kwargs: dict[str, Any] = {"encoder": opts.encoder}
    if len(inputs) > 1:
        kwargs["modality_dropout"] = opts.modality_dropout
    task = SegmentationTask(model=model, model_kwargs=kwargs, lr=1e-3, scheduler="cosine")
    t0 = time.perf_counter()
    with quiet_runs():
        result = landlearn.train(
            model=task, datamodule=dm, name=f"{row}_{train[:5]}_s{seed}", root=out / "runs",
            seed=seed, report=False, overwrite=True, accelerator="cpu", test=False,
            enable_progress_bar=False, enable_model_summary=False, max_epochs=opts.epochs,
        )  # fmt: skip
    assert result.bundle is not None
    wall = time.perf_counter() - t0
    test_arrays = {n: _read(p) for n, p in _files(root, test).items()}
    label = _read(str(root / "Labels" / f"{test}_LabelHand.tif"))[0]
    mask = cloud_mask(label.shape, opts.cloud_fraction, seed)
    scores = _evaluate(result.bundle, inputs, test_arrays, label, mask, seed)
    record = {"row": row, "train": train, "test": test, "seed": seed, **scores,
              "train_s": round(wall, 1)}  # fmt: skip
    say(f"{row} {train[:5]}→{test[:5]} seed {seed}: IoU clear {scores['clear']:.4f}, cloud "
        f"{scores['cloud']:.4f}, S2 absent "
        f"{'–' if scores['s2_absent'] is None else format(scores['s2_absent'], '.4f')}"
        f" ({wall:.0f} s)")  # fmt: skip
    return record


def run_sensors(opts: SensorOptions, out: Path, say: Say = log.info) -> dict[str, Any]:
    """Every row, direction and seed; write ``sensors.json``, ``sensors.md``, ``sensors.png``."""
    opts.check()
    t0 = time.perf_counter()
    rows = []
    for seed in opts.seeds:
        for train, test in (SITES, SITES[::-1]):
            for row in opts.rows:
                rows.append(_fit(opts, out, row, train, test, seed, say))
                append_row(out / "sensors_rows.jsonl", rows[-1])
    record: dict[str, Any] = {
        "study": "sensors",
        "options": asdict(opts),
        "machine": machine(),
        "wall_s": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }
    record["table"] = summarise(rows)
    budget = (
        f"Sen1Floods11, train on one chip and test on the other; U-Nets with {opts.encoder} "
        f"encoders from scratch, {opts.epochs} epochs of {opts.samples_per_epoch} random "
        f"{opts.chip}² chips (batch {opts.batch_size}, AdamW 1e-3, cosine), fusion rows with "
        f"modality dropout {opts.modality_dropout}; clouds: {100 * opts.cloud_fraction:.0f} % of "
        f"the S2 area set to bright cloud-like reflectance; seeds {opts.seeds}; wall "
        f"{record['wall_s'] / 60:.1f} min on the CPU."
    )
    markdown = "\n\n".join([budget, record["table"], machine_markdown(record["machine"])])
    write_study(out, "sensors", record, markdown)
    plot(rows, out / "sensors.png")
    return record


def _cell(rows: Sequence[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    return mean_std(values) if values else "–"


def summarise(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: water IoU per row, direction and condition (mean ± std over seeds)."""
    lines = []
    directions = sorted({(r["train"], r["test"]) for r in rows})
    cols = ["row"] + [f"{a[:5]}→{b[:5]} {c}" for a, b in directions for c in CONDITIONS]
    for row in dict.fromkeys(r["row"] for r in rows):
        line = [row]
        for a, b in directions:
            sel = [r for r in rows if r["row"] == row and (r["train"], r["test"]) == (a, b)]
            line += [_cell(sel, c) for c in CONDITIONS]
        lines.append(line)
    parts = ["Water IoU on the test chip, mean ± std over seeds:", markdown_table(cols, lines)]
    checks = ["Claims (means over seeds and both directions):"]
    for row in dict.fromkeys(r["row"] for r in rows):
        sel = [r for r in rows if r["row"] == row]
        clear = float(np.mean([r["clear"] for r in sel]))
        cloud = float(np.mean([r["cloud"] for r in sel]))
        kept = cloud / clear if clear > 0 else float("nan")
        absent = [r["s2_absent"] for r in sel if r["s2_absent"] is not None]
        tail = f"; S2 absent {np.mean(absent):.3f}" if absent else ""
        goal = ""
        if row in ("early", "late", "gated"):
            goal = f" — keeps ≥ 90 %: {'yes' if kept >= 0.9 else 'no'}"
        checks.append(f"- {row}: clear {clear:.3f}, cloud {cloud:.3f} ({100 * kept:.0f} % of "
                      f"clear){goal}{tail}")  # fmt: skip
    parts.append("\n".join(checks))
    return "\n\n".join(parts)


def plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Bars: water IoU per row under each condition (mean ± std over seeds and directions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["row"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(CONDITIONS)
    for j, cond in enumerate(CONDITIONS):
        ms, ss = [], []
        for n in names:
            v = [r[cond] for r in rows if r["row"] == n and r.get(cond) is not None]
            ms.append(float(np.mean(v)) if v else float("nan"))  # no bar: cannot run
            ss.append(float(np.std(v)) if v else 0.0)
        xs = np.arange(len(names)) + (j - 1) * width
        ax.bar(xs, ms, width, yerr=ss, capsize=3, label=cond.replace("_", " "))
        for x, m in zip(xs, ms, strict=True):
            if np.isnan(m):
                ax.text(x, 0.01, "n/a", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
    ax.set_ylabel("water IoU (test chip)")
    ax.set_title("Sen1Floods11: train on one chip, test on the other (mean ± std over seeds "
                 "and both directions)", fontsize=10)  # fmt: skip
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
