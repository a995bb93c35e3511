r"""JEM on EuroSAT RGB at a CPU budget (issue #17): calibration, the guard, the SGLD cost.

Data: ``../shared/data/eurosat_rgb`` (10 classes), a stratified ``--limit-train`` subset of the
train folder (train + val in the folder's proportions), chips downsized to ``--size`` px by area
averaging on the device (``--size 64`` keeps them), the 1,000 test images. Model: ``wide_resnet``
WRN-10-``--widen`` without batch norm for both sides, Adam, a fixed number of epochs, the best
validation-accuracy checkpoint tested. Everything goes through ``landlearn.train`` (the run
folders are those of ``landlearn fit``) and is scored by the task's own test metrics (15-bin ECE).

Tables (``--tables``):

- ``fractions`` (study table 2): label fractions ``--fractions`` → test accuracy and ECE of the
  plain classifier (labelled images only) and of JEM (labelled images in p(y|x), all train images
  in p(x) — the unlabelled ones through the datamodule's ``label_fraction`` loader), per seed
  and as mean ± std;
- ``guard`` (study table 1, reduced): JEM at ``--guard-lr`` with each regulariser of
  ``--guard-regs`` (``none``, ``r:0.2`` REG_r, ``u:0.2`` REG_u, ``g:0.2`` REG_g, any α; default
  none and REG_r at α ``--reg``), each with the guard's roll-back (``restore``) and without
  it (``stop``: the run ends where the loss stops being finite, as the study's runs did) →
  share of epochs completed, roll-backs, accuracy;
- ``ood`` (study table 3; needs ``fractions`` in the same call): for every bundle the
  fractions table trained, the AUROC of the energy and of max-softmax for telling chips of
  ``--ood-sets`` (``folder:chip px``, each chip area-resized to ``--size``) from the EuroSAT
  test images (``landlearn.ood``);
- ``steps`` (study table 5): seconds per training step with ``--steps-compare`` SGLD steps
  (``--time-batches`` steps each, after one warm-up step) and their ratio;
- ``steps_accuracy`` (study table 5, the other half): a whole JEM fit (REG_r, guard) per
  ``--steps-compare`` value and seed: test accuracy, ECE and seconds per epoch;
- ``seg`` (study experiment 4, reduced): segmentation on the Dubai tile-1 images (split by image:
  15 % validation, 20 % test), chips of ``--seg-chips`` px, a Wide-ResNet U-Net without batch
  norm, CE + Dice: the plain segmenter, JEM with the guard and JEM without it (SGLD samples of a
  fixed crop, min(64, chip) px), ``--seg-epochs`` epochs of ``--seg-batches`` batches of 8 →
  test mIoU, ECE, share of epochs completed.

Smoke test (seconds)::

    .venv/bin/python benchmarks/jem.py --limit-train 60 --epochs 1 --seeds 0 --fractions 0.5 \\
        --sgld-steps 2 --buffer 32 --size 16 --tables fractions steps --time-batches 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback

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
    quiet_logs,
    write_outputs,
)

import landlearn
from landlearn.data.datamodules import ImageFolderDataModule, WithoutTargets
from landlearn.data.folders import ImageFolderDataset
from landlearn.data.splits import label_subset, stratified_split
from landlearn.tasks import ClassificationTask, DivergenceGuard, JEMTask


class SmallEuroSAT(ImageFolderDataModule):
    """EuroSAT with a stratified subset of the train folder and chips area-resized on the device."""

    def __init__(self, *args: Any, limit_train: int = 0, size: int = 64, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_train, self.size = int(limit_train), int(size)

    def _build(self) -> None:
        full = ImageFolderDataset(self.root)
        if self.limit_train and self.limit_train < len(full):
            share = self.limit_train / len(full)
            full = full.subset(label_subset(range(len(full)), full.targets, share, self.seed))
        train, val, _ = stratified_split(full.targets, self.val_fraction, 0.0, self.seed)
        kept = label_subset(train, full.targets, self.label_fraction, self.seed)
        rest = sorted(set(train) - set(kept))
        self.unlabelled_dataset = WithoutTargets(full.subset(rest)) if rest else None
        self.train_dataset = full.subset(kept)
        self.val_dataset = full.subset(val)
        assert self.test_root is not None
        self.test_dataset = ImageFolderDataset(self.test_root, classes=full.classes)
        self.band_names = list(full.band_names)
        self.class_names = list(full.classes)
        self.chip_size = self.size

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Resize every image to ``size`` px (area), then augment and normalise as usual."""
        x = batch.get("image")
        if x is not None and self.size and x.shape[-1] != self.size:
            batch["image"] = F.interpolate(x.float(), size=(self.size, self.size), mode="area")
        return super().on_after_batch_transfer(batch, dataloader_idx)


def _dm(args: argparse.Namespace, seed: int, fraction: float) -> SmallEuroSAT:
    return SmallEuroSAT(
        str(DATA_ROOT / "eurosat_rgb" / "train"),
        test_root=str(DATA_ROOT / "eurosat_rgb" / "test"),
        val_fraction=0.1,
        label_fraction=fraction,
        batch_size=args.batch_size,
        seed=seed,
        augment={"hflip": 0.5, "vflip": 0.5},
        limit_train=args.limit_train,
        size=args.size,
    )


def _common(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": "wide_resnet",
        "model_kwargs": {"depth": 10, "widen": args.widen, "norm": "none"},
        "optimizer": "adam",
        "weight_decay": 0.0,
        "channels_last": False,
        "scheduler": args.scheduler,
    }


def _jem(args: argparse.Namespace, **kw: Any) -> JEMTask:
    opts = {"lr": args.lr, "sgld_steps": args.sgld_steps, "buffer_size": args.buffer,
            "reg_r": 0.0, "px_weight": args.px_weight, "sgld_noise": args.sgld_noise,
            "init": args.init} | kw  # fmt: skip
    return JEMTask(**_common(args), **opts)


def _run(
    args: argparse.Namespace, name: str, task: Any, dm: Any, seed: int, guard: Any = None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = landlearn.train(
        model=task,
        datamodule=dm,
        name=name,
        root=args.out,
        seed=seed,
        report=False,
        max_epochs=args.epochs,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[guard] if guard is not None else None,
        limit_train_batches=args.limit_train_batches,
    )
    m = result.metrics
    row = {
        "run": name,
        "seed": seed,
        "accuracy": m.get("overall_accuracy"),
        "miou": m.get("miou"),
        "ece": m.get("ece"),
        "wall_s": round(time.perf_counter() - t0, 1),
        "run_dir": str(result.run_dir),
    }
    if "divergence" in m:
        row["divergence"] = m["divergence"]
    console.print(f"{name} seed {seed}: acc {row['accuracy']} ece {row['ece']} ({row['wall_s']} s)")
    return row


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def table_fractions(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Plain classifier and JEM at each label fraction, per seed; rows and markdown."""
    rows = []
    for fraction in args.fractions:
        for seed in args.seeds:
            plain = ClassificationTask(**_common(args), lr=args.lr)
            rows.append(_run(args, f"plain_f{fraction}", plain, _dm(args, seed, fraction), seed)
                        | {"method": "plain", "fraction": fraction})  # fmt: skip
            jem = _jem(args, reg_r=args.reg, unlabelled=fraction < 1)
            row = _run(args, f"jem_f{fraction}", jem, _dm(args, seed, fraction), seed,
                       DivergenceGuard())  # fmt: skip
            rows.append(row | {"method": "jem", "fraction": fraction})
    table = []
    for fraction in args.fractions:
        for method in ("plain", "jem"):
            sel = [r for r in rows if r["fraction"] == fraction and r["method"] == method]
            table.append([f"{fraction:.0%}", method, len(sel),
                          _mean_std([r["accuracy"] for r in sel]),
                          _mean_std([r["ece"] for r in sel]),
                          _mean_std([r["wall_s"] for r in sel])])  # fmt: skip
    cols = ["labels", "method", "seeds", "test accuracy", "ECE (15 bins)", "wall s"]
    print_table("label fractions", cols, table)
    md = markdown_table(cols, table)
    for path in reliability_figures(rows, Path(args.md).parent if args.md else Path(args.out),
                                    Path(args.md).stem if args.md else "jem"):  # fmt: skip
        md += f"\n\nReliability, first seed, JEM beside the plain classifier: `{path}`"
    return rows, md


def reliability_figures(rows: list[dict[str, Any]], folder: Path, stem: str) -> list[Path]:
    """Per label fraction, the first seed's JEM and plain reliability diagrams side by side."""
    import json

    from landlearn.report import plot_reliability_pair

    paths = []
    for fraction in sorted({r["fraction"] for r in rows}):
        items = []
        for method in ("jem", "plain"):
            sel = [r for r in rows if r["fraction"] == fraction and r["method"] == method]
            if not sel:
                break
            m = json.loads((Path(sel[0]["run_dir"]) / "metrics.json").read_text())
            label = f"{method} ({fraction:.0%} labels, seed {sel[0]['seed']})"
            items.append((label, {"ece": m.get("ece"), **m["reliability"]}))
        if len(items) == 2:
            folder.mkdir(parents=True, exist_ok=True)
            out = folder / f"{stem}_reliability_{round(100 * fraction)}.png"
            paths.append(plot_reliability_pair(items, out))
    return paths


_REG_NAMES = {"r": "REG_r", "u": "REG_u", "g": "REG_g"}


def parse_reg(text: str) -> tuple[str, float]:
    """``none`` or ``KIND:ALPHA`` (``r:0.2``, ``u:1``, ``g:0.2``) → (kind, α); kind "" is none."""
    if text == "none":
        return "", 0.0
    kind, _, alpha = text.partition(":")
    try:
        value = float(alpha)
    except ValueError:
        value = -1.0
    if kind not in _REG_NAMES or value <= 0:
        raise argparse.ArgumentTypeError(
            f"regulariser {text!r}: expected none or r|u|g:ALPHA with ALPHA > 0 (e.g. r:0.2)"
        )
    return kind, value


def _guard_regs(args: argparse.Namespace) -> list[tuple[str, float]]:
    return list(args.guard_regs or [("", 0.0), ("r", args.reg)])


def _reg_label(kind: str, alpha: float) -> str:
    return f"{_REG_NAMES[kind]} α {alpha:g}" if kind else "none"


def table_guard(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """JEM at a diverging learning rate: regulariser × α, each with and without the guard."""
    regs = _guard_regs(args)
    rows = []
    for seed in args.seeds[: args.guard_seeds]:  # the plain classifier at the same lr and epochs
        plain = ClassificationTask(**_common(args), lr=args.guard_lr)
        rows.append(_run(args, "guard_plain", plain, _dm(args, seed, 1.0), seed)
                    | {"action": "plain", "reg": None})  # fmt: skip
    for kind, alpha in regs:
        for action in ("stop", "restore"):
            for seed in args.seeds[: args.guard_seeds]:
                guard = DivergenceGuard(action=action, lr_factor=0.5, warmup=args.guard_warmup)
                task = _jem(args, lr=args.guard_lr, **({f"reg_{kind}": alpha} if kind else {}))
                name = f"guard_{action}_reg{kind}{alpha:g}"
                rows.append(_run(args, name, task, _dm(args, seed, 1.0), seed, guard)
                            | {"action": action, "reg": [kind, alpha]})  # fmt: skip
    plain_rows = [r for r in rows if r["action"] == "plain"]
    table = [["plain classifier", "–", "–", len(plain_rows), "–", "–",
              _mean_std([r["accuracy"] for r in plain_rows])]]  # fmt: skip
    for kind, alpha in regs:
        for action in ("stop", "restore"):
            sel = [r for r in rows if r["reg"] == [kind, alpha] and r["action"] == action]
            div = [r["divergence"] for r in sel]
            table.append([
                _REG_NAMES.get(kind, "none"), f"{alpha:g}" if kind else "–",
                "yes" if action == "restore" else "no",
                len(sel), _mean_std([d["epochs_completed_share"] for d in div]),
                _mean_std([float(d["rollbacks"]) for d in div]),
                _mean_std([r["accuracy"] for r in sel]),
            ])  # fmt: skip
    cols = ["regulariser", "α", "guard", "seeds", "epochs completed", "roll-backs", "test accuracy"]
    print_table(f"divergence at lr {args.guard_lr:g}", cols, table)
    return rows, markdown_table(cols, table)


def _seg_dm(chip: int, seed: int, data: str = "dubai") -> Any:
    from landlearn.data.datamodules import MaskFolderDataModule, RasterPairDataModule

    if data == "slovenia":  # Sentinel-2 L1C, 13 bands (NIR included), the config's classes
        folder = DATA_ROOT / "slovenia_s2_lulc"
        return RasterPairDataModule(
            str(folder / "s2_l1c_20150909.tif"), str(folder / "lulc.tif"),
            remap={1: 0, 2: 1, 3: 2, 4: 3, 8: 4, 0: 255},
            class_names=["cultivated", "forest", "grassland", "shrubland", "artificial"],
            chip_size=chip, samples_per_epoch=256, val_fraction=0.2, test_fraction=0.2,
            batch_size=8, seed=seed, augment={"hflip": 0.5, "vflip": 0.5},
        )  # fmt: skip
    dubai = DATA_ROOT / "dubai"
    return MaskFolderDataModule(str(dubai / "tile1" / "images"), str(dubai / "tile1" / "masks"),
                                classes_csv=str(dubai / "classes.csv"), chip_size=chip,
                                val_fraction=0.15, test_fraction=0.2, batch_size=8, seed=seed,
                                augment={"hflip": 0.5, "vflip": 0.5})  # fmt: skip


def table_seg(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Segmentation JEM on Dubai tiles: plain, JEM with the guard, JEM without, per chip size."""
    from landlearn.tasks import SegmentationJEMTask, SegmentationTask

    common = {"model": "wide_resnet_unet",
              "model_kwargs": {"depth": 10, "widen": args.widen, "norm": "none"},
              "loss": {"ce": 0.5, "dice": 0.5}, "optimizer": "adam", "weight_decay": 0.0,
              "channels_last": False, "lr": args.lr}  # fmt: skip
    rows = []
    seg_args = argparse.Namespace(
        **(vars(args) | {"epochs": args.seg_epochs, "limit_train_batches": args.seg_batches})
    )
    for chip in args.seg_chips:
        crop = min(64, chip)
        for seed in args.seeds:
            plain = SegmentationTask(**common)
            dm = _seg_dm(chip, seed, args.seg_data)
            rows.append(_run(seg_args, f"seg_plain_c{chip}", plain, dm, seed)
                        | {"method": "plain", "chip": chip})  # fmt: skip
            for action, reduce in (
                ("restore", "mean"),
                ("stop", "mean"),
                ("restore", "sum"),
                ("stop", "sum"),
            ):
                if reduce not in args.seg_energies:
                    continue
                jem = SegmentationJEMTask(**common, sgld_steps=args.sgld_steps, tile_energy=reduce,
                                          buffer_size=args.buffer, buffer_crop=crop,
                                          sgld_noise=args.sgld_noise, init=args.init,
                                          px_weight=args.px_weight, reg_r=args.reg)  # fmt: skip
                guard = DivergenceGuard(action=action, lr_factor=0.5, warmup=args.guard_warmup)
                name = f"seg_jem_{reduce}_{action}_c{chip}"
                method = f"jem_{action}" if reduce == "mean" else f"jem_sum_{action}"
                dm = _seg_dm(chip, seed, args.seg_data)
                rows.append(_run(seg_args, name, jem, dm, seed, guard)
                            | {"method": method, "chip": chip})  # fmt: skip
    table = []
    labels = {"plain": "plain segmenter", "jem_restore": "JEM (mean energy) + guard",
              "jem_stop": "JEM (mean energy), no guard",
              "jem_sum_restore": "JEM (summed energy) + guard",
              "jem_sum_stop": "JEM (summed energy), no guard"}  # fmt: skip
    for chip in args.seg_chips:
        for method, label in labels.items():
            sel = [r for r in rows if r["chip"] == chip and r["method"] == method]
            if not sel:
                continue
            div = [r["divergence"]["epochs_completed_share"] for r in sel if "divergence" in r]
            table.append([chip, label, len(sel), _mean_std([r["miou"] for r in sel]),
                          _mean_std([r["ece"] for r in sel]),
                          _mean_std(div) if div else "–",
                          _mean_std([r["wall_s"] for r in sel])])  # fmt: skip
    cols = ["chip px", "method", "seeds", "test mIoU", "ECE (15 bins)", "epochs completed",
            "wall s"]  # fmt: skip
    where = "Dubai tile 1" if args.seg_data == "dubai" else "Slovenia S2 + LULC"
    print_table(f"segmentation JEM, {where}", cols, table)
    return rows, markdown_table(cols, table)


class _Resized(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """EuroSAT test images area-resized to ``size`` px, as the benchmark's models saw them."""

    def __init__(self, folder: str, size: int) -> None:
        self.inner, self.size = ImageFolderDataset(folder), size

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = self.inner[i]["image"].float()
        return {"image": F.interpolate(x[None], size=(self.size, self.size), mode="area")[0]}


def table_ood(
    args: argparse.Namespace, trained: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], str]:
    """Energy against max-softmax AUROC for the bundles of the fractions table."""
    from landlearn.ood import ood_scores

    inside = _Resized(str(DATA_ROOT / "eurosat_rgb" / "test"), args.size)
    rows = []
    for r in trained:
        for spec in args.ood_sets:
            folder, chip = spec.rsplit(":", 1)
            bundle = Path(r["run_dir"]) / "model.safetensors"
            s = ood_scores(bundle, inside, DATA_ROOT / folder, ood_chip=int(chip))
            rows.append({"method": r["method"], "fraction": r["fraction"], "seed": r["seed"],
                         "ood": folder} | s)  # fmt: skip
    table = []
    for spec in args.ood_sets:
        folder = spec.rsplit(":", 1)[0]
        for fraction in args.fractions:
            for method in ("plain", "jem"):
                sel = [x for x in rows if x["ood"] == folder and x["method"] == method
                       and x["fraction"] == fraction]  # fmt: skip
                if not sel:
                    continue
                table.append([folder, f"{fraction:.0%}", method, len(sel), sel[0]["n_out"],
                              _mean_std([x["energy_auroc"] for x in sel]),
                              _mean_std([x["max_softmax_auroc"] for x in sel])])  # fmt: skip
    cols = ["other data", "labels", "method", "seeds", "chips", "AUROC energy", "AUROC max-softmax"]
    print_table("out-of-distribution", cols, table)
    return rows, markdown_table(cols, table)


class _StepTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self.t = 0.0

    def on_train_batch_start(self, *a: Any) -> None:
        self.t = time.perf_counter()

    def on_train_batch_end(self, *a: Any) -> None:
        self.times.append(time.perf_counter() - self.t)


def table_steps(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Seconds per training step for each number of SGLD steps."""
    rows = []
    for steps in args.steps_compare:
        dm = _dm(args, 0, 1.0)
        dm.setup("fit")
        task = _jem(args, sgld_steps=steps)
        timer = _StepTimer()

        landlearn.train(model=task, datamodule=dm, name=f"steps{steps}", root=args.out,
                        test=False, report=False, max_epochs=1, accelerator="cpu",
                        enable_progress_bar=False, callbacks=[timer],
                        limit_train_batches=args.time_batches + 1, limit_val_batches=0)  # fmt: skip
        timed = timer.times[1:] or timer.times
        rows.append({"sgld_steps": steps, "s_per_step": statistics.mean(timed),
                     "batches": len(timed)})  # fmt: skip
    base = rows[0]["s_per_step"]
    table = [[r["sgld_steps"], r["batches"], f"{r['s_per_step']:.3f}",
              f"{r['s_per_step'] / base:.2f}"] for r in rows]  # fmt: skip
    cols = ["SGLD steps", "timed batches", "s / training step", "ratio"]
    print_table("SGLD cost", cols, table)
    return rows, markdown_table(cols, table)


def table_steps_accuracy(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Study table 5, its accuracy half: a full JEM fit per SGLD step count and seed."""
    rows = []
    for steps in args.steps_compare:
        for seed in args.seeds:
            jem = _jem(args, sgld_steps=steps, reg_r=args.reg)
            row = _run(args, f"jem_sgld{steps}", jem, _dm(args, seed, 1.0), seed,
                       DivergenceGuard())  # fmt: skip
            row["s_per_epoch"] = row["wall_s"] / args.epochs
            rows.append(row | {"sgld_steps": steps})
    base = statistics.mean(
        r["s_per_epoch"] for r in rows if r["sgld_steps"] == args.steps_compare[0]
    )
    table = []
    for steps in args.steps_compare:
        sel = [r for r in rows if r["sgld_steps"] == steps]
        per_epoch = statistics.mean(r["s_per_epoch"] for r in sel)
        table.append([steps, len(sel), _mean_std([r["accuracy"] for r in sel]),
                      _mean_std([r["ece"] for r in sel]), f"{per_epoch:.1f}",
                      f"{per_epoch / base:.2f}"])  # fmt: skip
    cols = ["SGLD steps", "seeds", "test accuracy", "ECE (15 bins)", "s / epoch (fit + val)",
            "ratio"]  # fmt: skip
    print_table("SGLD steps: accuracy and cost", cols, table)
    return rows, markdown_table(cols, table)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen tables; print them and write the JSON / markdown records."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--tables", nargs="+", default=["fractions", "ood", "guard", "steps", "seg"],
                   choices=["fractions", "ood", "guard", "steps", "steps_accuracy",
                            "seg"])  # fmt: skip
    p.add_argument("--seg-chips", type=int, nargs="+", default=[64, 128])
    p.add_argument("--seg-epochs", type=int, default=3)
    p.add_argument(
        "--seg-data",
        default="dubai",
        choices=["dubai", "slovenia"],
        help="seg table: Dubai tile 1 RGB, or the Slovenia S2 13-band scene",
    )
    p.add_argument("--seg-energies", nargs="+", default=["mean", "sum"], choices=["mean", "sum"],
                   help="tile-energy rules of the seg table's JEM rows")  # fmt: skip
    p.add_argument(
        "--seg-batches",
        type=int,
        default=30,
        help="training batches per epoch of the seg table (Lightning's limit)",
    )
    p.add_argument("--limit-train", type=int, default=1000, help="train + val images kept")
    p.add_argument("--size", type=int, default=32, help="chip size after area resizing")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--widen", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sgld-steps", type=int, default=5)
    p.add_argument("--buffer", type=int, default=1000)
    p.add_argument("--px-weight", type=float, default=1.0, help="weight of JEM's p(x) term")
    p.add_argument("--sgld-noise", type=float, default=0.01)
    p.add_argument("--init", default="uniform", choices=["uniform", "gaussian"])
    p.add_argument("--scheduler", default=None, help="both sides, e.g. onecycle (a warm-up)")
    p.add_argument("--reg", type=float, default=0.2, help="α of REG_r")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.2, 1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--guard-lr", type=float, default=1e-2)
    p.add_argument("--guard-seeds", type=int, default=1)
    p.add_argument(
        "--guard-regs",
        type=parse_reg,
        nargs="+",
        default=None,
        help="guard table rows: none or r|u|g:ALPHA (default: none and r:--reg)",
    )
    p.add_argument(
        "--guard-warmup",
        type=int,
        default=0,
        help="steps before the guard's soft rule may fire (0: the study's rule)",
    )
    p.add_argument("--steps-compare", type=int, nargs="+", default=[20, 40])
    p.add_argument("--time-batches", type=int, default=3)
    ood = ["deepglobe/test_unlabelled:612", "dubai/tile1/images:256"]
    p.add_argument("--ood-sets", nargs="+", default=ood, help="FOLDER:CHIP_PX under the data")
    p.add_argument("--limit-train-batches", type=float, default=1.0)
    p.add_argument("--out", default="benchmarks/out/jem_runs")
    args = parse_outputs_and_device(p, argv)
    quiet_logs()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    record: dict[str, Any] = {"machine": machine_info("cpu"), "args": vars(args)}
    parts = [
        f"Budget: EuroSAT RGB, {args.limit_train} train+val images, {args.size} px, "
        f"WRN-10-{args.widen} without batch norm, {args.epochs} epochs, batch {args.batch_size}, "
        f"Adam lr {args.lr:g}, schedule {args.scheduler or 'none'}, {args.sgld_steps} SGLD "
        f"steps (noise {args.sgld_noise:g}, {args.init} restarts), buffer {args.buffer}, "
        f"p(x) weight {args.px_weight:g}, "
        f"REG_r α {args.reg:g} for JEM in the fractions table, seeds {args.seeds}.",
    ]
    if "guard" in args.tables:
        parts[0] += (
            f" Guard table: lr {args.guard_lr:g} for every row, {args.guard_seeds} seed(s), "
            f"regularisers {', '.join(_reg_label(k, a) for k, a in _guard_regs(args))}, "
            f"learning rate × 0.5 at each roll-back, soft rule after {args.guard_warmup} steps."
        )
    if args.tables == ["seg"]:
        parts = []
    if "seg" in args.tables:
        parts.append(
            (
                "Seg table: Dubai tile 1 (15 % val, 20 % test images)"
                if args.seg_data == "dubai"
                else "Seg table: Slovenia S2 L1C 13 bands + LULC (100 × 101 px; 20 % val, 20 % "
                "test blocks; 256 random chips per epoch)"
            )
            + f", WRN-10-{args.widen} U-Net "
            f"without batch norm, CE + Dice, Adam lr {args.lr:g}, {args.seg_epochs} epochs × "
            f"{args.seg_batches} batches of 8, {args.sgld_steps} SGLD steps from a buffer of "
            f"{args.buffer} crops, tile energy {'/'.join(args.seg_energies)}, guard soft rule "
            f"after {args.guard_warmup} steps, seeds {args.seeds}."
        )
    if "ood" in args.tables and "fractions" not in args.tables:
        p.error("--tables ood scores the bundles of the fractions table: add fractions")
    for name, fn in (("fractions", table_fractions), ("ood", table_ood),
                     ("guard", table_guard), ("steps", table_steps),
                     ("steps_accuracy", table_steps_accuracy), ("seg", table_seg)):  # fmt: skip
        if name in args.tables:
            rows, md = fn(args, record["fractions"]) if name == "ood" else fn(args)  # type: ignore[operator]
            record[name] = rows
            parts.append(f"**{name}**\n\n{md}")
    parts.append(machine_markdown(record["machine"]))
    write_outputs(record, args.json, args.md, "\n\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
