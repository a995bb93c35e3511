"""``landlearn experiment ssl-sensors``: Dual-SimCLR on S1 / S2 pairs, then water with few labels.

Issue 19, experiment 2. Per seed, two pre-trainings on the same unlabelled chips (labels never
read), each a :class:`~landlearn.tasks.ContrastiveTask` with ResNet encoders:

- **SimCLR, S2 alone**: two augmented views of each Sentinel-2 chip;
- **Dual-SimCLR**: one encoder per sensor, the co-located S2 and S1 chips of one place the
  positive pair (plus a random view of each, ``pair_views``; ``--pair-geometry shared`` gives
  both sensors one crop, flip and turn, so the pair stays co-located pixel for pixel).

The unlabelled pairs: both Sen1Floods11 chips (Spain and India: the test chip's *imagery* is
used, never its label — a transductive setting, stated in the table; ``--no-test-imagery``
leaves it out), the SSL4EO-S12 location (each L1C date with its nearest S1 date) and the six
BigEarthNet pairs, stacked by :mod:`landlearn.data.stacks` into GeoTIFFs of the 12 bands every
archive has (no B10). Then water segmentation on the train chip with a share of its labelled
pixels kept as fixed sparse points (``label_fraction_pixels``: 5 / 25 / 100 %), tested on the
whole other chip (water IoU, label -1 ignored). Rows, all U-Nets with the same encoder and the
same epochs:

- ``scratch``: S2 U-Net from random weights;
- ``simclr_s2``: S2 U-Net from the SimCLR S2 encoder;
- ``dual_s2``: S2 U-Net from the Dual-SimCLR S2 encoder;
- ``scratch_s1`` / ``dual_s1``: S1 U-Net from random weights / from the Dual-SimCLR S1 encoder
  (radar alone is the harder input: what the S2 pairing taught the S1 encoder shows here);
- ``scratch_fusion`` / ``dual_fusion``: late-fusion U-Net (one encoder per sensor) from random
  weights / from both Dual-SimCLR encoders.

Two 512² chips are small data: the table describes these two sites, not Sentinel pre-training
at large.
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
    fit_quietly,
    machine,
    machine_markdown,
    markdown_table,
    mean_std,
    save_figure,
    write_study,
)
from landlearn.experiments.sensors import SITES, _iou, _read

log = logging.getLogger(__name__)

__all__ = ["SSL_SENSOR_ROWS", "SSLSensorOptions", "run_ssl_sensors"]

#: row → (model, inputs, pre-training whose encoders start it or None)
SSL_SENSOR_ROWS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "scratch": ("early_fusion_unet", ("s2",), None),
    "simclr_s2": ("early_fusion_unet", ("s2",), "simclr"),
    "dual_s2": ("early_fusion_unet", ("s2",), "dual"),
    "scratch_s1": ("early_fusion_unet", ("s1",), None),
    "dual_s1": ("early_fusion_unet", ("s1",), "dual"),
    "scratch_fusion": ("late_fusion_unet", ("s2", "s1"), None),
    "dual_fusion": ("late_fusion_unet", ("s2", "s1"), "dual"),
}
#: Sen1Floods11 S2Hand band numbers of the 12 bands every archive has (B10, band 11, left out)
S2_BANDS_12 = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13]
Say = Callable[[str], None]


@dataclass
class SSLSensorOptions:
    """What the study runs; :meth:`check` refuses bad values with one line."""

    root: str = "../shared/data/sen1floods11"
    ssl4eo: str | None = "../shared/data/ssl4eo_s12"
    bigearthnet: str | None = "../shared/data/bigearthnet_pairs"
    train_site: str = SITES[0]
    test_imagery: bool = True
    fractions: list[float] = field(default_factory=lambda: [0.05, 0.25, 1.0])
    rows: list[str] = field(default_factory=lambda: list(SSL_SENSOR_ROWS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    encoder: str = "resnet18"
    chip: int = 64
    pretrain_epochs: int = 10
    pretrain_chips: int = 256
    pretrain_batch: int = 64
    #: 0: in-batch negatives. A bank of 1,024 outgrew the 732 chips of an epoch and the loss
    #: climbed back to chance (benchmarks/RESULTS.md §14.3); without it the loss kept falling
    memory_bank_size: int = 0
    temperature: float = 0.1
    pair_geometry: str = "independent"
    epochs: int = 8
    samples_per_epoch: int = 256
    batch_size: int = 16
    lr: float = 1e-3
    encoder_lr: float | None = None

    def check(self) -> None:
        """Raises LandlearnError on a bad option."""
        if self.train_site not in SITES:
            raise LandlearnError(f"train_site must be one of {list(SITES)}, got {self.train_site}")
        for site in SITES:
            for sub, suffix in (("S1", "S1Hand"), ("S2", "S2Hand"), ("Labels", "LabelHand")):
                path = Path(self.root, sub, f"{site}_{suffix}.tif")
                if not path.is_file():
                    raise LandlearnError("Sen1Floods11 chip missing", path)
        for what, folder in (("--ssl4eo", self.ssl4eo), ("--bigearthnet", self.bigearthnet)):
            if folder and not Path(folder).is_dir():
                raise LandlearnError(f"{what} folder not found", folder)
        unknown = [r for r in self.rows if r not in SSL_SENSOR_ROWS]
        if unknown:
            raise LandlearnError(f"unknown row {unknown[0]!r}; choose from {list(SSL_SENSOR_ROWS)}")
        bad = [f for f in self.fractions if not 0.0 < f <= 1.0]
        if bad or not self.fractions:
            raise LandlearnError(f"pixel fractions must be in (0, 1], got {self.fractions}")
        if not self.seeds:
            raise LandlearnError("give at least one seed")
        from landlearn.tasks.contrastive import PAIR_GEOMETRIES

        if self.pair_geometry not in PAIR_GEOMETRIES:
            raise LandlearnError(
                f"pair_geometry must be one of {list(PAIR_GEOMETRIES)}, got {self.pair_geometry!r}"
            )
        sizes = (self.pretrain_epochs, self.pretrain_chips, self.pretrain_batch, self.epochs,
                 self.samples_per_epoch, self.batch_size, self.chip)  # fmt: skip
        if min(sizes) < 1:
            raise LandlearnError("epochs, chips, batch sizes and chip size must be >= 1")

    @property
    def test_site(self) -> str:
        """The other chip."""
        return SITES[1] if self.train_site == SITES[0] else SITES[0]

    def pretrainings(self) -> list[str]:
        """The pre-trainings the chosen rows need, in order."""
        wanted = {SSL_SENSOR_ROWS[r][2] for r in self.rows}
        return [p for p in ("simclr", "dual") if p in wanted]


def _site(root: str, site: str) -> dict[str, Any]:
    return {"s2": {"path": str(Path(root, "S2", f"{site}_S2Hand.tif")), "bands": S2_BANDS_12},
            "s1": str(Path(root, "S1", f"{site}_S1Hand.tif"))}  # fmt: skip


def unlabelled_pairs(opts: SSLSensorOptions, work: Path) -> list[dict[str, Any]]:
    """The pre-training scenes after the train chip: the other chip, SSL4EO and BigEarthNet."""
    from landlearn.data.stacks import bigearthnet_pairs, ssl4eo_pairs

    scenes: list[dict[str, Any]] = []
    if opts.test_imagery:
        scenes.append(_site(opts.root, opts.test_site))
    stacks = []
    if opts.ssl4eo:
        stacks += ssl4eo_pairs(opts.ssl4eo, work / "pairs")
    if opts.bigearthnet:
        stacks += bigearthnet_pairs(opts.bigearthnet, work / "pairs")
    # the stacks hold the 12 bands already: every band, not the train chip's band numbers
    every = list(range(1, len(S2_BANDS_12) + 1))
    return scenes + [{"s2": {"path": p["s2"], "bands": every}, "s1": p["s1"]} for p in stacks]


def pretrain(opts: SSLSensorOptions, kind: str, seed: int, scenes: list[dict[str, Any]],
             work: Path) -> dict[str, Any]:  # fmt: skip
    """SimCLR (S2) or Dual-SimCLR (S2 + S1) on the unlabelled scenes: its encoder bundle."""
    from landlearn.data.aligned_datamodule import AlignedRasterDataModule
    from landlearn.tasks import ContrastiveTask

    dm = AlignedRasterDataModule(
        inputs=_site(opts.root, opts.train_site), chip_size=opts.chip,
        samples_per_epoch=opts.pretrain_chips, val_fraction=0.0, test_fraction=0.0,
        batch_size=opts.pretrain_batch, seed=seed, unlabelled_inputs=scenes,
    )  # fmt: skip
    if kind == "simclr":
        task = ContrastiveTask(method="simclr", encoder=opts.encoder, use_inputs=["s2"],
                               memory_bank_size=opts.memory_bank_size,
                               temperature=opts.temperature, lr=opts.lr)  # fmt: skip
    else:
        task = ContrastiveTask(method="dual_simclr", encoder=opts.encoder,
                               use_inputs=["s2", "s1"], pair_views=True,
                               pair_geometry=opts.pair_geometry,
                               memory_bank_size=opts.memory_bank_size,
                               temperature=opts.temperature, lr=opts.lr)  # fmt: skip
    t0 = time.perf_counter()
    result = fit_quietly(task, dm, f"{kind}_seed{seed}", work, seed, opts.pretrain_epochs)
    if result.bundle is None:
        raise LandlearnError("pre-training wrote no encoder bundle", work)
    chips = len(dm.train_dataset)  # type: ignore[arg-type]
    loss = float(result.trainer.callback_metrics.get("train_loss", float("nan")))
    return {"kind": kind, "seed": seed, "bundle": str(result.bundle), "loss": loss,
            "chips_per_epoch": chips, "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def finetune(opts: SSLSensorOptions, row: str, fraction: float, seed: int,
             bundles: dict[str, str], work: Path) -> dict[str, Any]:  # fmt: skip
    """One labelled fit of ``row`` at ``fraction`` of the train chip's pixels; test water IoU."""
    import torch

    from landlearn.bundle import Predictor, load_bundle
    from landlearn.data.aligned_datamodule import AlignedRasterDataModule
    from landlearn.tasks import SegmentationTask

    model, inputs, start = SSL_SENSOR_ROWS[row]
    site = _site(opts.root, opts.train_site)
    dm = AlignedRasterDataModule(
        inputs={n: site[n] for n in inputs},
        label=str(Path(opts.root, "Labels", f"{opts.train_site}_LabelHand.tif")),
        remap={0: 0, 1: 1}, class_names=["not_water", "water"], chip_size=opts.chip,
        samples_per_epoch=opts.samples_per_epoch, val_fraction=0.2, test_fraction=0.0,
        label_fraction_pixels=fraction, batch_size=opts.batch_size, seed=seed,
        augment={"hflip": 0.5, "vflip": 0.5, "rot90": 0.5},
    )  # fmt: skip
    kwargs: dict[str, Any] = {"model": model, "model_kwargs": {"encoder": opts.encoder},
                              "lr": opts.lr, "scheduler": "cosine"}  # fmt: skip
    if start is not None:
        kwargs["weights"] = bundles[start]
        if opts.encoder_lr is not None:
            kwargs["encoder_lr"] = opts.encoder_lr
    t0 = time.perf_counter()
    name = f"{row}_{fraction:g}_seed{seed}"
    result = fit_quietly(SegmentationTask(**kwargs), dm, name, work, seed, opts.epochs,
                         test=False)  # fmt: skip
    if result.bundle is None:
        raise LandlearnError("the fit wrote no bundle", work / name)
    wall = time.perf_counter() - t0
    pred = load_bundle(result.bundle)
    if not isinstance(pred, Predictor):
        raise LandlearnError("expected a one-model bundle", result.bundle)
    test = _site(opts.root, opts.test_site)
    arrays = {"s2": _read(test["s2"]["path"])[[b - 1 for b in S2_BANDS_12]],
              "s1": _read(test["s1"])}  # fmt: skip
    label = _read(str(Path(opts.root, "Labels", f"{opts.test_site}_LabelHand.tif")))[0]
    with torch.inference_mode():
        head = pred.meta.heads[0].name
        out = pred.predict({n: torch.from_numpy(arrays[n]) for n in inputs})[head][0].numpy()
    points = dm.train_dataset.label_counts().sum()  # type: ignore[union-attr]
    return {"row": row, "fraction": fraction, "seed": seed, "iou": _iou(out, label),
            "train_points": int(points), "seconds": round(wall, 1)}  # fmt: skip


def _baseline(row: str) -> str:
    """The from-scratch row of the same model and inputs."""
    model, inputs, _ = SSL_SENSOR_ROWS[row]
    return next(r for r, (m, i, start) in SSL_SENSOR_ROWS.items()
                if start is None and (m, i) == (model, inputs))  # fmt: skip


def summarise(runs: Sequence[dict[str, Any]], opts: SSLSensorOptions) -> str:
    """Markdown: test water IoU per row and pixel share, and each row minus scratch by seed."""

    def iou(row: str, f: float, s: int) -> float | None:
        got = [r["iou"] for r in runs if (r["row"], r["fraction"], r["seed"]) == (row, f, s)]
        return got[0] if got else None

    rows = [r for r in SSL_SENSOR_ROWS if any(x["row"] == r for x in runs)]
    lines = []
    for row in rows:
        base = _baseline(row)
        for f in opts.fractions:
            deltas = [
                a - b
                for s in opts.seeds
                if (a := iou(row, f, s)) is not None and (b := iou(base, f, s)) is not None
            ]
            delta = mean_std(deltas) if row != base else "–"  # fmt: skip
            lines.append([row, f"{100 * f:g} %", mean_std([iou(row, f, s) for s in opts.seeds]),
                          delta, base])  # fmt: skip
    return markdown_table(["row", "labelled pixels", "test water IoU", "Δ vs baseline",
                           "baseline"], lines)  # fmt: skip


def plot(runs: Sequence[dict[str, Any]], opts: SSLSensorOptions, path: Path) -> Path:
    """Water IoU against the labelled pixel share, one line per row (± 1 sd over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.6, 4.2))
    for row in SSL_SENSOR_ROWS:
        if not any(r["row"] == row for r in runs):
            continue
        ms, ss = [], []
        for f in opts.fractions:
            v = [r["iou"] for r in runs if r["row"] == row and r["fraction"] == f]
            ms.append(float(np.mean(v)) if v else np.nan)
            ss.append(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
        styles: dict[tuple[str, ...], str] = {("s2",): "-", ("s1",): ":"}
        style = styles.get(SSL_SENSOR_ROWS[row][1], "--")
        ax.errorbar([100 * f for f in opts.fractions], ms, yerr=ss, marker="o", capsize=3,
                    linestyle=style, label=row.replace("_", " "))  # fmt: skip
    ax.set_xscale("log")
    ticks = [100 * f for f in opts.fractions]
    ax.set_xticks(ticks, [f"{t:g} %" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel(f"labelled pixels of {opts.train_site} kept as points (%)")
    ax.set_ylabel(f"water IoU on {opts.test_site}")
    ax.set_title(f"Sen1Floods11: SSL pre-training vs scratch ({len(opts.seeds)} seeds, ± 1 sd)",
                 fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def run_ssl_sensors(opts: SSLSensorOptions, out: Path, say: Say = log.info) -> dict[str, Any]:
    """Pre-train per seed, then every row at every pixel share; write json / md / png."""
    opts.check()
    t0 = time.perf_counter()
    work = out / "runs"
    scenes = unlabelled_pairs(opts, work)
    say(f"pre-training scenes: {opts.train_site} + {len(scenes)} unlabelled pairs")
    pre: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for seed in opts.seeds:
        bundles = {}
        for kind in opts.pretrainings():
            done = pretrain(opts, kind, seed, scenes, work)
            pre.append(done)
            bundles[kind] = done["bundle"]
            say(f"seed {seed}: {kind} {opts.pretrain_epochs} epochs × "
                f"{done['chips_per_epoch']} chips, loss {done['loss']:.3f} "
                f"({done['seconds']:.0f} s)")  # fmt: skip
        for f in opts.fractions:
            for row in opts.rows:
                run = finetune(opts, row, f, seed, bundles, work)
                runs.append(run)
                append_row(out / "ssl_sensors_rows.jsonl", run)
                say(f"seed {seed} {row:14s} {100 * f:g} % pixels ({run['train_points']} "
                    f"points): water IoU {run['iou']:.4f} ({run['seconds']:.0f} s)")  # fmt: skip
    table = summarise(runs, opts)
    info = machine()
    wall = (time.perf_counter() - t0) / 60
    imagery = "both chips' imagery" if opts.test_imagery else f"{opts.train_site}'s imagery only"
    extra = [n for n, v in (("SSL4EO-S12", opts.ssl4eo), ("BigEarthNet", opts.bigearthnet)) if v]
    budget = (
        f"Sen1Floods11: fine-tune on {opts.train_site}, test on the whole {opts.test_site} chip "
        f"(water IoU). Pre-training on {imagery} (labels never read; with the test chip's "
        f"imagery this is transductive){' + ' + ' + '.join(extra) if extra else ''}: "
        f"{1 + len(scenes)} scenes, 12 S2 bands (no B10) + S1 VV/VH; {opts.encoder} encoders; "
        f"{opts.pretrain_epochs} epochs × {pre[0]['chips_per_epoch'] if pre else 0} random "
        f"{opts.chip}² chips, batch {opts.pretrain_batch}, memory bank "
        f"{opts.memory_bank_size}, temperature {opts.temperature}, Dual-SimCLR views "
        f"{opts.pair_geometry} in geometry. Fine-tuning: U-Nets, "
        f"{opts.epochs} epochs × {opts.samples_per_epoch} chips (batch {opts.batch_size}, AdamW "
        f"{opts.lr}, cosine, flips / quarter turns; encoder lr "
        f"{opts.encoder_lr or opts.lr}); labelled pixels kept as fixed random points "
        f"(`label_fraction_pixels`, on the train and validation blocks). Seeds {opts.seeds}; "
        f"wall {wall:.1f} min on the CPU. Two 512² chips: small data."
    )
    md = "\n\n".join([budget, "Test water IoU, mean ± std over seeds (Δ paired by seed):",
                      table, machine_markdown(info)])  # fmt: skip
    record = {"study": "ssl_sensors", "options": asdict(opts), "scenes": scenes,
              "pretraining": pre, "runs": runs, "table": table, "machine": info}  # fmt: skip
    write_study(out, "ssl_sensors", record, md)
    plot(runs, opts, out / "ssl_sensors.png")
    return record
