"""``landlearn experiment fusion``: image + table fusion on a controlled task, over seeds.

Real imagery (EuroSAT RGB) with a *generated* table whose link to the label is a dial, so what
fusion should achieve is known (the founding study's recommendation, after its metadata turned
out to say nothing about its labels):

- **dial d** (``--dials``): the label is the EuroSAT class. The table has eight numeric columns
  ``t1 … t8 = d · μ_y + ε`` (``μ_y`` a fixed random centroid per class, ``ε ~ N(0, 1)``) and a
  categorical ``site`` of pure noise. At ``d = 0`` the table is noise; a nearest-centroid rule
  on the table alone reaches about 24 / 42 / 61 / 76 % at ``d`` = 0.25 / 0.5 / 0.75 / 1.
- **interaction** (``--interaction``): the target is binary, ``(class ∈ first five classes)
  XOR group``, with ``group`` a boolean column of the table (``t1 … t8`` are then noise): the
  image alone or the table alone is at chance; only both together determine it.

Rows per setting and seed: image-only and table-only (the late-fusion code with one input),
the classical baselines of the study on the table alone (k-means + random forest, DBSCAN +
random forest, LASSO / L1 logistic regression; scikit-learn), and the fusion models (early,
late, gated, progressive). Per fusion model: test accuracy, seconds per epoch, permutation
importance of each input (accuracy lost when that input is shuffled across test rows), and for
the gated model the mean gate weight of the table. Canonical correlation between the table
features and the one-hot labels (training rows) describes each setting.

The image-only row of the dial settings does not depend on the dial (it never reads the table,
the splits are the same): it is trained once per seed and shown in every dial's table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

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

__all__ = [
    "FUSION_MODELS",
    "FusionOptions",
    "classical_baselines",
    "controlled_table",
    "permutation_importance",
    "run_fusion",
]

FUSION_MODELS = ("early", "late", "gated", "progressive")
REGISTRY = {
    "early": "early_fusion",
    "late": "late_fusion",
    "gated": "gated_fusion",
    "progressive": "progressive_fusion",
}
SIGNAL_COLUMNS = [f"t{i}" for i in range(1, 9)]
Say = Callable[[str], None]


@dataclass
class FusionOptions:
    """What the study runs; :meth:`check` refuses bad values with one line."""

    eurosat: str = "../shared/data/eurosat_rgb"
    dials: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    interaction: bool = True
    models: list[str] = field(default_factory=lambda: list(FUSION_MODELS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    per_class: int = 100
    val_per_class: int = 20
    test_per_class: int = 100
    size: int = 32
    epochs: int = 5
    batch_size: int = 32
    encoder: str = "resnet18"
    lr: float = 1e-3

    def check(self) -> None:
        """Raises LandlearnError on a bad option."""
        if not Path(self.eurosat, "train").is_dir() or not Path(self.eurosat, "test").is_dir():
            raise LandlearnError("expected EuroSAT RGB train/ and test/ folders", self.eurosat)
        bad = [d for d in self.dials if not 0.0 <= d <= 1.0]
        if bad:
            raise LandlearnError(f"dials must be in [0, 1], got {bad[0]}")
        unknown = [m for m in self.models if m not in FUSION_MODELS]
        if unknown:
            raise LandlearnError(f"unknown fusion model {unknown[0]!r}; choose {FUSION_MODELS}")
        if not self.seeds:
            raise LandlearnError("give at least one seed")
        if min(self.per_class, self.test_per_class, self.epochs, self.size) < 1:
            raise LandlearnError("per_class, test_per_class, epochs and size must be >= 1")


# ---- the controlled table -------------------------------------------------------------
def _eurosat_files(root: Path, per_class: int, seed: int) -> tuple[list[str], list[Path]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    files: list[Path] = []
    for c in classes:
        found = sorted((root / c).glob("*.jpg"))
        if len(found) < per_class:
            raise LandlearnError(
                f"class {c!r} has {len(found)} images, fewer than {per_class}", root
            )
        files += [found[i] for i in sorted(rng.choice(len(found), per_class, replace=False))]
    return classes, files


def controlled_table(
    eurosat: str | Path,
    out: Path,
    *,
    setting: str,
    dial: float = 0.0,
    per_class: int = 100,
    val_per_class: int = 20,
    test_per_class: int = 100,
    seed: int = 0,
) -> Path:
    """Write the controlled table (one row per EuroSAT image, with its split) as a CSV.

    ``setting`` is ``dial`` or ``interaction``. The images and the class centroids depend on
    ``seed`` only (not on the dial), so every dial of one seed uses the same images.

    Raises:
        LandlearnError: unknown setting, missing folders, too few images.
    """
    if setting not in ("dial", "interaction"):
        raise LandlearnError(f"setting must be 'dial' or 'interaction', got {setting!r}")
    root = Path(eurosat)
    classes, fit_files = _eurosat_files(root / "train", per_class + val_per_class, seed)
    test_classes, test_files = _eurosat_files(root / "test", test_per_class, seed)
    if test_classes != classes:
        raise LandlearnError("train and test folders hold different classes", root)
    files = fit_files + test_files
    k = len(classes)
    cls = np.array([classes.index(f.parent.name) for f in files])
    n_fit = per_class + val_per_class
    split = []
    for _c in range(k):
        split += ["train"] * per_class + ["val"] * val_per_class
    split += ["test"] * len(test_files)
    rng = np.random.default_rng(1000 + seed)
    centroids = rng.normal(size=(k, len(SIGNAL_COLUMNS)))
    noise = rng.normal(size=(len(files), len(SIGNAL_COLUMNS)))
    site = rng.choice(["north", "east", "south", "west", "centre"], size=len(files))
    if setting == "dial":
        signal = dial * centroids[cls] + noise
        label = [classes[c] for c in cls]
    else:
        group = rng.random(len(files)) < 0.5
        first = cls < k // 2
        signal = noise
        label = ["positive" if v else "negative" for v in first ^ group]
    df = pd.DataFrame(signal, columns=SIGNAL_COLUMNS)
    df.insert(0, "photo", [str(f.resolve()) for f in files])
    df["site"] = site
    if setting == "interaction":
        df["group"] = group
    df["eurosat_class"] = [classes[c] for c in cls]
    df["label"] = label
    df["split"] = split
    assert len(fit_files) == n_fit * k
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return out


def _roles(setting: str) -> dict[str, Any]:
    return {
        "numeric": list(SIGNAL_COLUMNS),
        "categorical": ["site"],
        "boolean": ["group"] if setting == "interaction" else [],
    }


def _datamodule(table: Path, setting: str, opts: FusionOptions, seed: int, **inputs: Any) -> Any:
    from landlearn.data.image_table import ImageTableDataModule

    return ImageTableDataModule(
        str(table), ["photo"], "label", split_column="split", size=opts.size,
        batch_size=opts.batch_size, seed=seed, augment={"hflip": 0.5, "vflip": 0.5},
        **_roles(setting), **inputs,
    )  # fmt: skip


# ---- classical baselines and analysis -------------------------------------------------
def _encoded(table: Path, setting: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Table features and labels of the train + val rows and of the test rows."""
    from landlearn.data.tables import TableEncoder

    df = pd.read_csv(table)
    fit = df[df["split"] != "test"]
    test = df[df["split"] == "test"]
    enc = TableEncoder(**_roles(setting)).fit(df[df["split"] == "train"])
    classes = sorted(df["label"].astype(str).unique())
    y = df["label"].astype(str).map(classes.index).to_numpy()
    return enc.transform(fit), y[fit.index], enc.transform(test), y[test.index]


def classical_baselines(
    x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int
) -> dict[str, float]:
    """Test accuracy of the study's classical baselines on the table features alone.

    ``kmeans_rf`` / ``dbscan_rf``: a random forest on the features plus the one-hot cluster
    (k-means with as many clusters as classes; DBSCAN with ``eps`` from the median 5-NN
    distance, noise as its own cluster, test rows assigned to the nearest core sample's
    cluster); ``lasso``: L1-penalised logistic regression (the classification form of LASSO).
    """
    from sklearn.cluster import DBSCAN, KMeans
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import NearestNeighbors

    k = int(max(y_fit.max(), y_test.max()) + 1)
    out: dict[str, float] = {}

    def forest(extra_fit: np.ndarray, extra_test: np.ndarray) -> float:
        rf = RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1)
        rf.fit(np.hstack([x_fit, extra_fit]), y_fit)
        return float((rf.predict(np.hstack([x_test, extra_test])) == y_test).mean())

    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x_fit)
    eye = np.eye(k)
    out["kmeans_rf"] = forest(eye[km.labels_], eye[km.predict(x_test)])
    nn5 = NearestNeighbors(n_neighbors=5).fit(x_fit)
    eps = float(np.median(nn5.kneighbors(x_fit)[0][:, -1]))
    db = DBSCAN(eps=eps, min_samples=5).fit(x_fit)
    labels = db.labels_ + 1  # 0: noise
    m = int(labels.max() + 1)
    if len(db.core_sample_indices_):
        core = x_fit[db.core_sample_indices_]
        near = NearestNeighbors(n_neighbors=1).fit(core).kneighbors(x_test)
        test_labels = np.where(
            near[0][:, 0] <= eps, labels[db.core_sample_indices_][near[1][:, 0]], 0
        )
    else:
        test_labels = np.zeros(len(x_test), dtype=int)
    eye_m = np.eye(m)
    out["dbscan_rf"] = forest(eye_m[labels], eye_m[test_labels])
    lasso = LogisticRegression(l1_ratio=1.0, solver="saga", C=1.0, max_iter=2000)
    lasso.fit(x_fit, y_fit)
    out["lasso"] = float((lasso.predict(x_test) == y_test).mean())
    return out


def canonical_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """First canonical correlation between table features ``x`` and one-hot labels ``y``."""
    from sklearn.cross_decomposition import CCA

    onehot = np.eye(int(y.max() + 1))[y]
    cca = CCA(n_components=1, max_iter=2000).fit(x, onehot)
    u, v = cca.transform(x, onehot)
    return float(abs(np.corrcoef(u[:, 0], v[:, 0])[0, 1]))


# ---- deep rows --------------------------------------------------------------------------
@torch.no_grad()
def _test_batches(task: Any, dm: Any) -> list[dict[str, torch.Tensor]]:
    batches = []
    for batch in dm.test_dataloader():
        batches.append(dm.on_after_batch_transfer(batch, 0))
    return batches


@torch.no_grad()
def _accuracy(task: Any, batches: Sequence[dict[str, torch.Tensor]], shuffle: str | None,
              seed: int) -> float:  # fmt: skip
    names = task.input_names
    inputs = {n: torch.cat([b[n] for b in batches]) for n in names}
    labels = torch.cat([b["label"] for b in batches])
    if shuffle is not None:
        g = torch.Generator().manual_seed(seed)
        inputs[shuffle] = inputs[shuffle][torch.randperm(len(labels), generator=g)]
    task.eval()
    right = 0
    for i in range(0, len(labels), 256):
        logits = task({n: v[i : i + 256] for n, v in inputs.items()})
        right += int((logits.argmax(1) == labels[i : i + 256]).sum())
    return right / len(labels)


def permutation_importance(task: Any, dm: Any, seed: int = 0, repeats: int = 3) -> dict[str, float]:
    """Accuracy lost on the test rows when one input is shuffled across rows (mean of repeats)."""
    batches = _test_batches(task, dm)
    base = _accuracy(task, batches, None, seed)
    return {
        n: round(
            base - float(np.mean([_accuracy(task, batches, n, seed + r) for r in range(repeats)])),
            4,
        )
        for n in task.input_names
    }


def _fit(opts: FusionOptions, out: Path, name: str, dm: Any, seed: int, model: str,
         say: Say, importance: bool = True) -> dict[str, Any]:  # fmt: skip
    import landlearn
    from landlearn.tasks import ClassificationTask

    kwargs: dict[str, Any] = {"encoder": opts.encoder}
    if model == "gated_fusion":
        kwargs["modality_dropout"] = 0.2
    task = ClassificationTask(model=model, model_kwargs=kwargs, lr=opts.lr, weight_decay=1e-4)
    t0 = time.perf_counter()
    with quiet_runs():
        result = landlearn.train(
            model=task, datamodule=dm, name=f"{name}_s{seed}", root=out / "runs", seed=seed,
            report=False, overwrite=True, accelerator="cpu", enable_progress_bar=False,
            enable_model_summary=False, max_epochs=opts.epochs,
        )  # fmt: skip
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {
        "run": name, "seed": seed, "model": model,
        "accuracy": result.metrics.get("overall_accuracy"),
        "s_per_epoch": round(wall / opts.epochs, 2),
    }  # fmt: skip
    trained = result.task
    if importance and len(trained.input_names) > 1:
        row["importance"] = permutation_importance(trained, dm, seed)
    if model == "gated_fusion":
        batches = _test_batches(trained, dm)
        trained.eval()
        with torch.no_grad():
            gates = []
            for b in batches:
                trained({n: b[n] for n in trained.input_names})
                gates.append(trained.model.last_gates)
        mean = torch.cat(gates).mean(0)
        row["gate"] = {n: round(float(mean[i]), 4) for i, n in enumerate(trained.input_names)}
    say(f"{name} seed {seed}: test accuracy {_fmt(row['accuracy'])} ({row['s_per_epoch']} s/epoch)")
    return row


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def _settings(opts: FusionOptions) -> list[tuple[str, str, float]]:
    out = [(f"dial {d:g}", "dial", float(d)) for d in opts.dials]
    if opts.interaction:
        out.append(("interaction", "interaction", 0.0))
    return out


def run_fusion(opts: FusionOptions, out: Path, say: Say = log.info) -> dict[str, Any]:
    """Run every setting, seed and row; write ``fusion.json``, ``fusion.md``, ``fusion.png``."""
    opts.check()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows: list[dict[str, Any]] = []
    settings_info: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for seed in opts.seeds:
        image_only: dict[str, dict[str, Any]] = {}
        for label, setting, dial in _settings(opts):
            table = controlled_table(
                opts.eurosat, out / "tables" / f"{setting}_{dial:g}_s{seed}.csv", setting=setting,
                dial=dial, per_class=opts.per_class, val_per_class=opts.val_per_class,
                test_per_class=opts.test_per_class, seed=seed,
            )  # fmt: skip
            x_fit, y_fit, x_test, y_test = _encoded(table, setting)
            cca = canonical_correlation(x_fit, y_fit)
            settings_info.append({"setting": label, "seed": seed, "cca": round(cca, 4)})
            for method, acc in classical_baselines(x_fit, y_fit, x_test, y_test, seed).items():
                rows.append({"setting": label, "row": method, "seed": seed, "accuracy": acc})
            tag = setting if setting == "interaction" else "dial"
            if tag not in image_only:
                dm = _datamodule(table, setting, opts, seed, table_input=False)
                image_only[tag] = _fit(opts, out, f"{tag}_image", dm, seed, "late_fusion",
                                       say)  # fmt: skip
            rows.append({**image_only[tag], "setting": label, "row": "image only"})
            slug = label.replace(" ", "_")
            dm = _datamodule(table, setting, opts, seed, image_input=False)
            r = _fit(opts, out, f"{slug}_table", dm, seed, "late_fusion", say)
            rows.append({**r, "setting": label, "row": "table only"})
            for m in opts.models:
                dm = _datamodule(table, setting, opts, seed)
                r = _fit(opts, out, f"{slug}_{m}", dm, seed, REGISTRY[m], say)
                rows.append({**r, "setting": label, "row": m})
    record: dict[str, Any] = {
        "study": "fusion",
        "options": asdict(opts),
        "machine": machine(),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "settings": settings_info,
        "rows": rows,
    }
    record["table"] = summarise(rows, settings_info, opts)
    markdown = "\n\n".join(
        [_budget(opts, record), record["table"], machine_markdown(record["machine"])]
    )
    write_study(out, "fusion", record, markdown)
    plot(rows, out / "fusion.png")
    return record


def _budget(opts: FusionOptions, record: dict[str, Any]) -> str:
    return (
        f"Controlled image + table task on EuroSAT RGB ({opts.per_class} train + "
        f"{opts.val_per_class} val images per class from train/, {opts.test_per_class} test "
        f"images per class from test/, resized to {opts.size} px); {opts.epochs} epochs, batch "
        f"{opts.batch_size}, AdamW lr {opts.lr}, {opts.encoder} from scratch; seeds "
        f"{opts.seeds}; wall {record['wall_s'] / 60:.1f} min on the CPU."
    )


ROW_ORDER = ["image only", "table only", "kmeans_rf", "dbscan_rf", "lasso", *FUSION_MODELS]


def summarise(
    rows: Sequence[dict[str, Any]], settings: Sequence[dict[str, Any]], opts: FusionOptions
) -> str:
    """Markdown: accuracy per setting (columns) and row, mean ± std over seeds; then checks."""
    labels = [s for s, _, _ in _settings(opts)]
    cols = ["row", *labels]
    table_rows = []
    for name in ROW_ORDER:
        line: list[Any] = [name]
        for label in labels:
            acc = [r["accuracy"] for r in rows if r["row"] == name and r["setting"] == label]
            line.append(mean_std(acc) if acc else "–")
        if any(v != "–" for v in line[1:]):
            table_rows.append(line)
    cca = ["CCA(table, label)"]
    for label in labels:
        cca.append(mean_std([s["cca"] for s in settings if s["setting"] == label]))
    table_rows.append(cca)
    parts = ["Test accuracy, mean ± std over seeds:", markdown_table(cols, table_rows)]
    extra = []
    for name in FUSION_MODELS:
        for label in labels:
            sel = [r for r in rows if r["row"] == name and r["setting"] == label]
            if not sel:
                continue
            imp = [r.get("importance", {}).get("meta") for r in sel]
            gate = [r.get("gate", {}).get("meta") for r in sel if "gate" in r]
            extra.append([name, label, mean_std([r["s_per_epoch"] for r in sel], 2),
                          mean_std([v for v in imp if v is not None]),
                          mean_std(gate) if gate else "–"])  # fmt: skip
    if extra:
        parts += [
            "Per fusion model: seconds per epoch, permutation importance of the table (accuracy "
            "lost when `meta` is shuffled across test rows), mean gate weight of the table "
            "(gated):",
            markdown_table(
                ["model", "setting", "s / epoch", "importance(meta)", "gate(meta)"], extra
            ),
        ]
    parts.append(_checks(rows, labels))
    return "\n\n".join(parts)


def _mean(rows: Sequence[dict[str, Any]], name: str, label: str) -> float | None:
    acc = [r["accuracy"] for r in rows if r["row"] == name and r["setting"] == label]
    acc = [a for a in acc if a is not None]
    return float(np.mean(acc)) if acc else None


def _checks(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    lines = ["Claims (means over seeds):"]
    fused = [m for m in FUSION_MODELS if any(r["row"] == m for r in rows)]
    if "dial 0" in labels:
        img = _mean(rows, "image only", "dial 0")
        gaps = {m: (_mean(rows, m, "dial 0") or 0.0) - (img or 0.0) for m in fused}
        within = all(abs(g) <= 0.01 for g in gaps.values())
        closest = min(gaps, key=lambda m: abs(gaps[m])) if gaps else None
        lines.append(
            f"- dial 0: every fusion within 1 point of image-only: {'yes' if within else 'no'} "
            f"({', '.join(f'{m} {100 * g:+.1f}' for m, g in gaps.items())}); closest: {closest}"
            f"{' (gated, as claimed)' if closest == 'gated' else ''}"
        )
    for label in labels:
        if label in ("dial 0", "interaction") or float(label.split()[1]) < 0.5:
            continue
        lines.append(_beats(rows, label, fused, 0.05))
    if "interaction" in labels:
        lines.append(_beats(rows, "interaction", fused, 0.15))
    return "\n".join(lines)


def _beats(rows: Sequence[dict[str, Any]], label: str, fused: Sequence[str], by: float) -> str:
    img, tab = _mean(rows, "image only", label), _mean(rows, "table only", label)
    best = max(fused, key=lambda m: _mean(rows, m, label) or 0.0)
    acc = _mean(rows, best, label) or 0.0
    margin = acc - max(img or 0.0, tab or 0.0)
    ok = margin >= by
    return (
        f"- {label}: best fusion ({best}, {100 * acc:.1f} %) beats both single inputs by "
        f"≥ {100 * by:.0f} points: {'yes' if ok else 'no'} ({100 * margin:+.1f} over the better "
        "single input)"
    )


def plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Accuracy against the dial per row (mean ± std), interaction as a separate panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dial_labels = sorted({r["setting"] for r in rows if r["setting"].startswith("dial")},
                         key=lambda s: float(s.split()[1]))  # fmt: skip
    has_inter = any(r["setting"] == "interaction" for r in rows)
    fig, axes = plt.subplots(1, 2 if has_inter else 1, figsize=(11 if has_inter else 7, 4.2),
                             squeeze=False)  # fmt: skip
    ax = axes[0][0]
    for name in ROW_ORDER:
        xs, ms, ss = [], [], []
        for label in dial_labels:
            acc = [r["accuracy"] for r in rows if r["row"] == name and r["setting"] == label]
            if acc:
                xs.append(float(label.split()[1]))
                ms.append(100 * float(np.mean(acc)))
                ss.append(100 * float(np.std(acc)))
        if xs:
            style = "-o" if name in FUSION_MODELS else "--s" if "only" in name else ":^"
            ax.errorbar(xs, ms, yerr=ss, fmt=style, capsize=3, label=name, markersize=4)
    ax.set_xlabel("dial (table ↔ label link)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("EuroSAT RGB + controlled table")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    if has_inter:
        ax2 = axes[0][1]
        names = [n for n in ROW_ORDER if any(r["row"] == n and r["setting"] == "interaction"
                                              for r in rows)]  # fmt: skip
        ms = [100 * float(np.mean([r["accuracy"] for r in rows
                                   if r["row"] == n and r["setting"] == "interaction"]))
              for n in names]  # fmt: skip
        ss = [100 * float(np.std([r["accuracy"] for r in rows
                                  if r["row"] == n and r["setting"] == "interaction"]))
              for n in names]  # fmt: skip
        ax2.bar(
            range(len(names)),
            ms,
            yerr=ss,
            capsize=3,
            color=["tab:blue" if n in FUSION_MODELS else "tab:gray" for n in names],
        )
        ax2.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax2.axhline(50, color="k", lw=0.8, ls=":")
        ax2.set_title("interaction: (class group) XOR (table flag)")
        ax2.set_ylabel("test accuracy (%)")
    fig.tight_layout()
    return save_figure(fig, path)
