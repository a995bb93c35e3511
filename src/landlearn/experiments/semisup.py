"""Semi-supervised segmentation study: do the unlabelled images recover the label gap?

``landlearn experiment semisup`` runs, for every seed, on one real data set:

- ``100 % labels``: every train image with its mask (the ceiling);
- for every label fraction: ``supervised`` (only that share of the train images keeps its
  mask: the floor, and the first teacher), ``self-training`` for R rounds (the teacher's
  class-balanced pseudo-labels of the unlabelled train images, ``landlearn.pseudo``; the
  student, trained from scratch on labels + pseudo-labels, becomes the next teacher; a row at
  each round asked for), and the online methods of ``SemiSupervisedSegmentationTask``
  (``mean_teacher``, ``fixmatch``, ``cps``);
- ``points``: every train image labelled by sparse points only (``--points`` share of each
  class's pixels, partial cross-entropy), alone and with mean teacher's unlabelled loss.

Every fit has the same recipe (smp U-Net ResNet-18 from scratch, CE + Dice, AdamW 1e-3, cosine,
flips) and the same number of optimiser steps (``max_steps``), so a semi-supervised row is not
ahead by compute; the best validation-mIoU checkpoint is tested. mIoU is over the classes
present in the test labels or predictions (absent classes excluded). ``Δ`` pairs each run with
the supervised run of its seed and fraction; ``gap recovered`` is mean Δ / (mean 100 % − mean
supervised) and says so when there is no gap; ``≥ sup − 1 std`` checks the issue's second goal
(the row's mean is not below the supervised mean by more than the supervised std).

Data sets (``data_root`` holds landlearn's shared data: ``dubai/``, ``deepglobe/``):

- ``dubai``: tile 1's 9 aerial images, split by image with the seed (15 % validation, 20 % test:
  6 train, 1 val, 2 test); label fractions are shares of the 6 train images.
- ``dubai_tiles``: tiles 1 and 2 (18 images, split by image with the seed: 3 validation, 15
  train) train, **tile 4's 9 images test** (more test pixels than tile 1's 2 images, so seed
  noise weighs less), and tile 6's 9 images as extra unlabelled images for the online methods
  (its masks hold a colour outside ``classes.csv``, so they are not used as labels at all).
- ``deepglobe``: tiles 6399, 172307, 794214 (one held out for validation, by seed) train,
  tile 119 test, and the unlabelled test-split tile 999380 as extra unlabelled data for the
  online methods. Fractions are shares of 2 train tiles, so every fraction below 1 means one
  labelled tile: the table says how many images were labelled.
- ``slovenia``: the Sentinel-2 L1C scene (13 bands) and its land-cover raster
  (``slovenia_s2_lulc/``, 100 × 101 px, 5 classes), split into 32-px spatial blocks with the
  seed (``RasterPairDataModule``: 20 % validation, 20 % test blocks). A fraction keeps the
  labels of that share of the train blocks; the other train blocks are the unlabelled data of
  the online methods (the table counts labelled blocks). Self-training needs image files to
  pseudo-label, so its rows are skipped here (said in the log and the record).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from landlearn.errors import LandlearnError
from landlearn.experiments.common import (
    machine,
    machine_markdown,
    markdown_table,
    mean_std,
    quiet_runs,
    save_figure,
    write_study,
)

log = logging.getLogger(__name__)

__all__ = ["DATASETS", "METHODS", "SemisupOptions", "run_semisup", "summarise"]

DATASETS = ("dubai", "dubai_tiles", "deepglobe", "slovenia")
FOLDERS = {"dubai": "dubai", "dubai_tiles": "dubai", "deepglobe": "deepglobe",
           "slovenia": "slovenia_s2_lulc"}  # fmt: skip
SLOVENIA: dict[str, Any] = {  # the scene's codes → 5 classes (as configs/ and benchmarks/jem.py)
    "remap": {1: 0, 2: 1, 3: 2, 4: 3, 8: 4, 0: 255},
    "class_names": ["cultivated", "forest", "grassland", "shrubland", "artificial"],
}
DUBAI_TRAIN, DUBAI_TEST, DUBAI_UNLABELLED = ("tile1", "tile2"), "tile4", "tile6"
METHODS = ("supervised", "self_training", "mean_teacher", "fixmatch", "cps", "points")
ONLINE = ("mean_teacher", "fixmatch", "cps")
FULL, SUP = "100 % labels", "supervised"
DEEPGLOBE_TRAIN = ("6399", "172307", "794214")
DEEPGLOBE_TEST = "119"
RECIPE: dict[str, Any] = {
    "model": "unet", "model_kwargs": {"encoder": "resnet18"}, "loss": {"ce": 0.5, "dice": 0.5},
    "optimizer": "adamw", "lr": 1e-3, "scheduler": "cosine", "dropout": 0.1,
    "channels_last": False,
}  # fmt: skip


@dataclass
class SemisupOptions:
    """The study's options (``landlearn experiment semisup --help`` explains each)."""

    data: str = "dubai"
    data_root: str = "../shared/data"
    fractions: Sequence[float] = (0.25,)
    methods: Sequence[str] = METHODS
    rounds: Sequence[int] = (1, 3)
    seeds: Sequence[int] = (0, 1, 2)
    max_steps: int = 300
    chip: int | None = None
    batch_size: int = 8
    class_balanced: float = 0.5
    points: float = 0.01
    rampup: int = 50
    limit_eval_batches: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.chip is None:  # Slovenia's scene is 100 × 101 px: 32-px chips give 16 blocks
            self.chip = 32 if self.data == "slovenia" else 64

    def check(self) -> None:
        """Raises ``LandlearnError`` for an option out of range or a missing data folder."""
        if self.data not in DATASETS:
            raise LandlearnError(f"data must be one of {', '.join(DATASETS)}, got {self.data!r}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise LandlearnError(f"unknown method {bad[0]!r}; choose from {', '.join(METHODS)}")
        if not self.fractions or any(not 0.0 < f < 1.0 for f in self.fractions):
            raise LandlearnError(f"fractions must be in (0, 1), got {list(self.fractions)}")
        if any(r < 1 for r in self.rounds):
            raise LandlearnError(f"rounds must be >= 1, got {list(self.rounds)}")
        if not self.seeds:
            raise LandlearnError("give at least one seed")
        if self.max_steps < 1 or (self.chip or 0) < 16 or self.batch_size < 1:
            raise LandlearnError("max_steps, batch_size >= 1 and chip >= 16 px")
        if not 0.0 < self.points < 1.0:
            raise LandlearnError(f"points must be in (0, 1), got {self.points}")
        folder = Path(self.data_root) / FOLDERS[self.data]
        if not folder.is_dir():
            raise LandlearnError(
                f"data set folder not found (give --data-root, the folder holding {folder.name}/)",
                folder,
            )


# ---- data -------------------------------------------------------------------------------
@dataclass
class _Data:
    images: Path
    masks: Path
    classes_csv: Path
    split: dict[str, Any]
    unlabelled: Path | None = None
    scene: bool = False  # one image raster + label raster (images / masks are the two files)


def _data(opts: SemisupOptions, work: Path) -> _Data:
    root = Path(opts.data_root)
    if opts.data == "dubai":
        tile = root / "dubai" / "tile1"
        return _Data(tile / "images", tile / "masks", root / "dubai" / "classes.csv",
                     {"val_fraction": 0.15, "test_fraction": 0.2})  # fmt: skip
    if opts.data == "dubai_tiles":
        return _dubai_tiles(root / "dubai", work / "dubai_links")
    if opts.data == "slovenia":
        folder = root / FOLDERS["slovenia"]
        image, label = folder / "s2_l1c_20150909.tif", folder / "lulc.tif"
        for f in (image, label):
            if not f.is_file():
                raise LandlearnError("Slovenia raster missing", f)
        return _Data(image, label, label, {"val_fraction": 0.2, "test_fraction": 0.2}, scene=True)
    # DeepGlobe: one folder holds <id>_sat.jpg beside <id>_mask.png; links give each split its
    # own folder (the shared data stay read-only and are never copied).
    src = root / "deepglobe"
    links = work / "deepglobe_links"
    for sub, ids in (("train", DEEPGLOBE_TRAIN), ("test", (DEEPGLOBE_TEST,))):
        (links / sub).mkdir(parents=True, exist_ok=True)
        for i in ids:
            for name in (f"{i}_sat.jpg", f"{i}_mask.png"):
                target = (src / "train" / name).resolve()
                if not target.is_file():
                    raise LandlearnError("DeepGlobe file missing", target)
                link = links / sub / name
                if not link.is_symlink():
                    link.symlink_to(target)
    return _Data(links / "train", links / "train", src / "classes.csv",
                 {"val_fraction": 1 / 3, "test_images": str(links / "test"),
                  "test_masks": str(links / "test")},
                 unlabelled=src / "test_unlabelled")  # fmt: skip


def _dubai_tiles(src: Path, links: Path) -> _Data:
    """Tiles 1 + 2 as one image / mask folder pair of links (``tileN_<name>``), tile 4 test."""
    for sub in ("images", "masks"):
        (links / sub).mkdir(parents=True, exist_ok=True)
    for tile in DUBAI_TRAIN:
        images = sorted((src / tile / "images").glob("*.jpg"))
        if not images:
            raise LandlearnError("Dubai tile images missing", src / tile / "images")
        for image in images:
            mask = src / tile / "masks" / f"{image.stem}.png"
            if not mask.is_file():
                raise LandlearnError("Dubai mask missing", mask)
            for sub, target in (("images", image), ("masks", mask)):
                link = links / sub / f"{tile}_{target.name}"
                if not link.is_symlink():
                    link.symlink_to(target.resolve())
    test = src / DUBAI_TEST
    return _Data(links / "images", links / "masks", src / "classes.csv",
                 {"val_fraction": 3 / 18, "test_images": str(test / "images"),
                  "test_masks": str(test / "masks")},
                 unlabelled=src / DUBAI_UNLABELLED / "images")  # fmt: skip


def _datamodule(
    opts: SemisupOptions,
    data: _Data,
    seed: int,
    fraction: float = 1.0,
    pseudo: Path | None = None,
    unlabelled: bool = False,
    points: float = 1.0,
) -> Any:
    from landlearn.data.datamodules import MaskFolderDataModule, RasterPairDataModule

    assert opts.chip is not None  # set by __post_init__
    if data.scene:  # the unlabelled data are the train blocks that ``fraction`` leaves
        return RasterPairDataModule(
            str(data.images), str(data.masks), chip_size=opts.chip,
            samples_per_epoch=32 * opts.batch_size, batch_size=opts.batch_size, seed=seed,
            augment={"hflip": 0.5, "vflip": 0.5}, label_fraction=fraction,
            label_fraction_pixels=points, **SLOVENIA, **data.split,
        )  # fmt: skip
    return MaskFolderDataModule(
        str(data.images), str(data.masks), classes_csv=str(data.classes_csv),
        chip_size=opts.chip, batch_size=opts.batch_size, seed=seed,
        augment={"hflip": 0.5, "vflip": 0.5}, label_fraction=fraction,
        pseudo_masks=None if pseudo is None else str(pseudo),
        unlabelled_images=str(data.unlabelled) if unlabelled and data.unlabelled else None,
        label_fraction_pixels=points, **data.split,
    )  # fmt: skip


# ---- runs -------------------------------------------------------------------------------
Say = Callable[[str], None]


#: the options that change no fit: a record made with other values of these can be resumed
_NOT_FIT_OPTIONS = ("fractions", "methods", "rounds", "seeds")
#: bumped when the fits change without an option changing: records of another version are
#: not resumed (2: the cosine schedule spans ``max_steps``; before, it fell to 0 every other
#: epoch of these step-bounded fits)
FIT_VERSION = 2
Done = dict[tuple[str, int], dict[str, Any]]


def _resumable(opts: SemisupOptions, out: Path) -> Done:
    """The fits on record in ``out/semisup.json`` that this run may reuse, by (name, seed).

    A fit is reused only when every option that changes a fit (data, steps, chip, batch, ramp-up,
    thresholds, points, evaluation limits) equals the record's and its bundle is still there: the
    same seed then gives the same metrics on CPU, so running it again would only cost time.

    Raises:
        LandlearnError: no record, an unreadable one, or one made with other fit options.
    """
    import json

    path = out / "semisup.json"
    if not path.is_file():
        raise LandlearnError("cannot resume: no semisup.json from an earlier run", path)
    try:
        record = json.loads(path.read_text())
        before, rows = record["options"], record["rows"]
    except (ValueError, KeyError, TypeError) as e:
        raise LandlearnError(f"cannot resume: not a semisup record ({e})", path) from e
    if record.get("fit_version") != FIT_VERSION:
        raise LandlearnError(
            f"cannot resume: the record's fits are of version {record.get('fit_version', 1)}, "
            f"this landlearn runs version {FIT_VERSION} (use another -o)", path,
        )  # fmt: skip
    now = json.loads(json.dumps(asdict(opts)))  # tuples → lists, as the record holds them
    for key, value in now.items():
        if key not in _NOT_FIT_OPTIONS and before.get(key) != value:
            raise LandlearnError(
                f"cannot resume: the record was run with {key}={before.get(key)!r}, this run "
                f"asks {value!r} (use another -o)", path,
            )  # fmt: skip
    done: Done = {}
    for row in rows:
        if Path(row.get("bundle") or "").is_file():
            fit = {k: v for k, v in row.items() if k not in ("method", "fraction", "points")}
            done[(row["run"], int(row["seed"]))] = fit | {"reused": True}
    return done


def _fit(
    opts: SemisupOptions, out: Path, name: str, dm: Any, seed: int, say: Say,
    method: str | None = None, loss: Any = None, done: Done | None = None,
) -> dict[str, Any]:  # fmt: skip
    if done and (name, seed) in done:
        kept = dict(done[(name, seed)])
        say(f"{name} seed {seed}: test mIoU {_fmt(kept['miou'])} (reused from the record)")
        return kept
    import landlearn
    from landlearn.tasks import SegmentationTask, SemiSupervisedSegmentationTask

    recipe = RECIPE | ({"loss": loss} if loss is not None else {})
    if method is None:
        task: Any = SegmentationTask(**recipe)
    else:
        task = SemiSupervisedSegmentationTask(**recipe, method=method, rampup_steps=opts.rampup)
    t0 = time.perf_counter()
    with quiet_runs():
        result = landlearn.train(
            model=task, datamodule=dm, name=f"{name}_s{seed}", root=out / "runs", seed=seed,
            report=False, overwrite=True, accelerator="cpu", enable_progress_bar=False,
            enable_model_summary=False, max_steps=opts.max_steps, max_epochs=-1,
            limit_val_batches=opts.limit_eval_batches, limit_test_batches=opts.limit_eval_batches,
        )  # fmt: skip
    m = result.metrics
    row: dict[str, Any] = {
        "run": name, "seed": seed, "miou": m.get("miou"), "oa": m.get("overall_accuracy"),
        "wall_s": round(time.perf_counter() - t0, 1), "bundle": str(result.bundle),
    }  # fmt: skip
    if hasattr(dm, "labelled_files"):
        row["labelled_images"] = len(dm.labelled_files) or None
    else:  # a raster scene: its labelled train blocks
        row["labelled_blocks"] = len(dm.train_dataset.regions)
    say(f"{name} seed {seed}: test mIoU {_fmt(row['miou'])} ({row['wall_s']} s)")
    return row


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def _self_training(
    opts: SemisupOptions, out: Path, data: _Data, seed: int, fraction: float,
    teacher: dict[str, Any], unlabelled: list[Path], say: Say, done: Done | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    from landlearn.pseudo import pseudo_label

    rows = []
    for r in range(1, max(opts.rounds) + 1):
        tag = f"st{fraction:g}_r{r}"
        with quiet_runs():
            pl = pseudo_label(
                teacher["bundle"], unlabelled, out / "pseudo" / f"{tag}_s{seed}",
                class_balanced=opts.class_balanced, tile=256, overlap=32,
                true_masks=data.masks, classes_csv=data.classes_csv, overwrite=True,
            )  # fmt: skip
        dm = _datamodule(opts, data, seed, fraction, pseudo=pl.out_dir / "masks")
        student = _fit(opts, out, tag, dm, seed, say, done=done)
        s = pl.summary
        student |= {"pl_kept": s.get("kept_share"), "pl_accuracy": s.get("accuracy")}
        if r in opts.rounds:
            rows.append(student | {"method": f"self-training ×{r}", "fraction": fraction})
        teacher = student
    return rows


def run_semisup(
    opts: SemisupOptions, out: Path, say: Say = log.info, resume: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Every run of the study; writes ``semisup.json``, ``semisup.md`` and ``semisup.png``.

    Args:
        resume: reuse the fits that ``out/semisup.json`` holds with the same fit options (rows
            marked ``reused``), so adding a method or a seed runs only the new fits.

    Returns:
        The record: options, machine, rows (one per run) and the markdown table.

    Raises:
        LandlearnError: bad options, a missing data folder, or nothing to resume from.
    """
    opts.check()
    done = _resumable(opts, out) if resume else {}
    out.mkdir(parents=True, exist_ok=True)
    data = _data(opts, out)
    rows: list[dict[str, Any]] = []
    skipped = []
    if data.scene and "self_training" in opts.methods:
        skipped.append("self_training (needs image files to pseudo-label; one raster scene here)")
        say(f"skipped: {skipped[-1]}")
    for seed in opts.seeds:
        full = _fit(opts, out, "full", _datamodule(opts, data, seed), seed, say, done=done)
        rows.append(full | {"method": FULL, "fraction": 1.0})
        for fraction in opts.fractions:
            dm = _datamodule(opts, data, seed, fraction)
            sup = _fit(opts, out, f"sup{fraction:g}", dm, seed, say, done=done)
            rows.append(sup | {"method": SUP, "fraction": fraction})
            if "self_training" in opts.methods and not data.scene:
                unlabelled = [Path(f) for f in dm.unlabelled_files]
                rows += _self_training(opts, out, data, seed, fraction, sup, unlabelled, say, done)
            for method in ONLINE:
                if method in opts.methods:
                    dm = _datamodule(opts, data, seed, fraction, unlabelled=True)
                    name = f"{method}{fraction:g}"
                    row = _fit(opts, out, name, dm, seed, say, method=method, done=done)
                    rows.append(row | {"method": method.replace("_", " "), "fraction": fraction})
        if "points" in opts.methods:
            for online in (None, "mean_teacher"):
                dm = _datamodule(opts, data, seed, points=opts.points, unlabelled=True)
                name = f"points_{online or 'sup'}"
                row = _fit(
                    opts, out, name, dm, seed, say, method=online, loss="partial_ce", done=done
                )
                label = f"{opts.points:.0%} points" + (" + mean teacher" if online else "")
                rows.append(row | {"method": label, "fraction": opts.points, "points": True})
    table = summarise(rows)
    info = machine()
    budget = (
        f"Data: {opts.data} (real, `{opts.data_root}`); chips {opts.chip} px, batch "
        f"{opts.batch_size}, {opts.max_steps} optimiser steps per fit on CPU; U-Net ResNet-18 "
        f"from scratch, CE + Dice, AdamW 1e-3, cosine, flips; self-training class-balanced "
        f"{opts.class_balanced:g}, rounds {list(opts.rounds)}; online ramp-up {opts.rampup} "
        f"steps; points {opts.points:.0%} of each class's pixels (partial CE); seeds "
        f"{list(opts.seeds)}."
    )
    if skipped:
        budget += " Skipped: " + "; ".join(skipped) + "."
    reused = sum(bool(r.get("reused")) for r in rows)
    if reused:
        budget += (
            f" {reused} of {len(rows)} fits reused from the earlier record in this folder"
            " (same fit options and seeds; their wall times are the earlier run's)."
        )
    record = {"options": asdict(opts), "machine": info, "rows": rows, "table": table,
              "skipped": skipped, "fit_version": FIT_VERSION}  # fmt: skip
    write_study(out, "semisup", record, "\n\n".join([budget, table, machine_markdown(info)]))
    plot(rows, out / "semisup.png", title=f"semi-supervised segmentation on {opts.data}")
    return record


# ---- summary ----------------------------------------------------------------------------
def summarise(rows: Sequence[dict[str, Any]]) -> str:
    """The markdown table of a study's rows (grouped by label fraction, paired by seed)."""
    full = [float(r["miou"]) for r in rows if r["method"] == FULL and r["miou"] is not None]
    sup = {(r["seed"], r["fraction"]): r["miou"] for r in rows if r["method"] == SUP}
    points_sup = {r["seed"]: r["miou"] for r in rows if r.get("points") and "+" not in r["method"]}
    table = [[FULL, "100 %", len(full), mean_std(full), "–", "–", "–", "–", "–",
              mean_std([r["wall_s"] for r in rows if r["method"] == FULL], 1)]]  # fmt: skip
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["method"] != FULL:
            groups.setdefault((r["fraction"], r["method"]), []).append(r)
    for (fraction, method), sel in groups.items():
        base = points_sup if sel[0].get("points") else None
        paired: list[tuple[float, float]] = []
        for r in sel:
            b = base.get(r["seed"]) if base is not None else sup.get((r["seed"], fraction))
            if r["miou"] is not None and b is not None:
                paired.append((float(r["miou"]), float(b)))
        floor = [b for _, b in paired]
        is_floor = method == SUP or (base is not None and "+" not in method)
        delta = "–" if is_floor else mean_std([a - b for a, b in paired])
        gap = check = "–"
        if not is_floor and paired and full:
            label_gap = statistics.fmean(full) - statistics.fmean(floor)
            mean_delta = statistics.fmean(a - b for a, b in paired)
            gap = f"{mean_delta / label_gap:.2f}" if label_gap > 0 else "no gap"
            sd = statistics.stdev(floor) if len(floor) > 1 else 0.0
            ok = statistics.fmean(a for a, _ in paired) >= statistics.fmean(floor) - sd
            check = "yes" if ok else "**no**"
        share = f"{fraction:.0%}"
        for key, unit in (("labelled_images", "img"), ("labelled_blocks", "blocks")):
            n = sorted({r[key] for r in sel if r.get(key)})
            share += f" ({'/'.join(map(str, n))} {unit})" if n else ""
        table.append([
            method, share, len(sel), mean_std([r["miou"] for r in sel]), delta, gap, check,
            mean_std([r.get("pl_kept") for r in sel]),
            mean_std([r.get("pl_accuracy") for r in sel]),
            mean_std([r["wall_s"] for r in sel], 1),
        ])  # fmt: skip
    cols = ["row", "labels", "seeds", "test mIoU", "Δ vs floor", "gap recovered",
            "≥ floor − 1 std", "pseudo-labels kept", "pseudo-label acc.", "wall s"]  # fmt: skip
    return markdown_table(cols, table)


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Test mIoU (mean ± std over seeds) against the share of labels, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    full = [r["miou"] for r in rows if r["method"] == FULL and r["miou"] is not None]
    if full:
        m = statistics.fmean(full)
        sd = statistics.stdev(full) if len(full) > 1 else 0.0
        ax.axhspan(m - sd, m + sd, color="0.85", zorder=0)
        ax.axhline(m, color="0.3", ls="--", label=f"{FULL} ({m:.3f})")
    methods = list(dict.fromkeys(r["method"] for r in rows if r["method"] != FULL))
    for i, method in enumerate(methods):
        by_f: dict[float, list[float]] = {}
        for r in rows:
            if r["method"] == method and r["miou"] is not None:
                by_f.setdefault(r["fraction"], []).append(r["miou"])
        xs = sorted(by_f)
        ys = [statistics.fmean(by_f[x]) for x in xs]
        es = [statistics.stdev(by_f[x]) if len(by_f[x]) > 1 else 0.0 for x in xs]
        offset = 1 + 0.03 * (i - len(methods) / 2)  # side by side at one fraction
        ax.errorbar([x * offset for x in xs], ys, yerr=es, marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("labelled share (train images or blocks; points: share of pixels)")
    ax.set_ylabel("test mIoU (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    shares = sorted({float(r["fraction"]) for r in rows})
    ax.set_xticks(shares, [f"{s:.0%}" for s in shares])
    ax.set_xlim(min(shares) * 0.85, max(shares) * 1.15)  # room for the side-by-side points
    ax.minorticks_off()
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return save_figure(fig, path)
