"""Fake run folders in the real formats: Lightning's metrics.csv, our metrics.json, examples.npz."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from landlearn.conventions import IGNORE_INDEX

SEG_CLASSES = ["water", "forest", "cropland", "wetland", "urban"]
SEG_COLORS = [[0, 90, 200], [20, 120, 40], [240, 200, 60], [120, 200, 220], [200, 30, 30]]
CLS_CLASSES = [
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
]


def lightning_csv(path: Path, quality: str, epochs: int = 4, steps_per_epoch: int = 12) -> None:
    """Rows as Lightning's CSVLogger writes them: each holds only what was logged at that step."""
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    step = 0
    for epoch in range(epochs):
        lr = 1e-3 * 0.5**epoch
        for _ in range(steps_per_epoch):
            step += 1
            if step % 4 == 0:  # log_every_n_steps=4
                loss = 1.6 * np.exp(-step / 20) + 0.05 * rng.random()
                rows.append({"epoch": epoch, "step": step - 1, "train_loss_step": loss})
                rows.append({"epoch": epoch, "step": step - 1, "lr-Adam": lr})
        val = {"val_loss": 1.2 * np.exp(-epoch / 2) + 0.1, quality: 0.45 + 0.1 * epoch}
        rows.append({"epoch": epoch, "step": step - 1, **val})
        rows.append(
            {"epoch": epoch, "step": step - 1, "train_loss_epoch": 1.3 * np.exp(-epoch / 2)}
        )
    columns = [
        "epoch",
        "lr-Adam",
        "step",
        "train_loss_epoch",
        "train_loss_step",
        "val_loss",
        quality,
    ]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)


def _per_class(cm: np.ndarray) -> dict[str, list[Any]]:
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)

    def ratio(a: np.ndarray, b: np.ndarray) -> list[float | None]:
        return [None if d == 0 else float(n / d) for n, d in zip(a, b, strict=True)]

    precision, recall = ratio(tp, predicted), ratio(tp, support)
    f1 = [
        None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)
        for p, r in zip(precision, recall, strict=True)
    ]
    iou = [
        None if s == 0 else v
        for s, v in zip(support, ratio(tp, support + predicted - tp), strict=True)
    ]
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "iou": iou,
        "support": support.tolist(),
    }


def metrics_json(
    task: str, names: list[str], cm: np.ndarray, rng: np.random.Generator
) -> dict[str, Any]:
    """metrics.json in landlearn's schema, consistent with the confusion matrix ``cm``."""
    per_class = _per_class(cm)
    edges = np.linspace(0, 1, 16)
    centres = (edges[:-1] + edges[1:]) / 2
    count = np.where(centres < 0.3, 0, rng.integers(50, 2000, size=15))
    accuracy = [
        None if c == 0 else float(min(1.0, m * 0.92)) for m, c in zip(centres, count, strict=True)
    ]
    confidence = [None if c == 0 else float(m) for m, c in zip(centres, count, strict=True)]
    valid_iou = [v for v in per_class["iou"] if v is not None]
    data: dict[str, Any] = {
        "task": task,
        "num_classes": len(names),
        "class_names": names,
        "overall_accuracy": float(np.trace(cm) / cm.sum()),
        "average_accuracy": float(np.mean([r for r in per_class["recall"] if r is not None])),
        "miou": float(np.mean(valid_iou)),
        "dice": 0.7712,
        "macro_f1": float(np.mean([f for f in per_class["f1"] if f is not None])),
        "kappa": 0.6931,
        "auroc": None if task == "segmentation" else 0.9812,
        "ece": 0.0421,
        "per_class": per_class,
        "confusion_matrix": cm.astype(int).tolist(),
        "reliability": {
            "bin_edges": edges.tolist(),
            "confidence": confidence,
            "accuracy": accuracy,
            "count": count.tolist(),
        },
    }
    data["pixels" if task == "segmentation" else "samples"] = int(cm.sum())
    return data


@pytest.fixture
def seg_run(tmp_path: Path) -> Path:
    """Segmentation run: 5 classes, ``wetland`` absent from the test split, examples with 255s."""
    rng = np.random.default_rng(0)
    run = tmp_path / "seg_run"
    run.mkdir()
    lightning_csv(run / "metrics.csv", "val_miou")
    cm = rng.integers(0, 400, size=(5, 5)) + np.diag(rng.integers(5000, 20000, size=5))
    cm[3, :] = 0  # absent class: no true pixels
    cm[:, 3] = 0  # and never predicted
    data = metrics_json("segmentation", SEG_CLASSES, cm, rng)
    data["class_colors"] = SEG_COLORS
    (run / "metrics.json").write_text(json.dumps(data), encoding="utf-8")
    n, h, w = 3, 48, 64
    yy, xx = np.mgrid[0:h, 0:w]
    target = np.stack([((xx // 16 + yy // 16 + i) % 5) for i in range(n)]).astype(np.int64)
    target[target == 3] = 4
    target[:, :4, :] = IGNORE_INDEX
    pred = target.copy()
    flip = rng.random(pred.shape) < 0.15
    pred[flip] = rng.integers(0, 5, size=int(flip.sum()))
    image = rng.integers(0, 255, size=(n, h, w, 3), dtype=np.uint8)
    confidence = rng.uniform(0.4, 1.0, size=(n, h, w)).astype(np.float32)
    np.savez(run / "examples.npz", image=image, target=target, pred=pred, confidence=confidence)
    (run / "hparams.yaml").write_text(
        "model: unet_resnet18\nloss: ce+dice\nlr: 0.001\nbatch_size: 16\nmax_epochs: 4\n",
        encoding="utf-8",
    )
    return run


@pytest.fixture
def cls_run(tmp_path: Path) -> Path:
    """Classification run, EuroSAT-like 10 classes, Lightning's ``version_N`` layout."""
    rng = np.random.default_rng(1)
    run = tmp_path / "cls_run"
    for version in (0, 2):
        (run / f"version_{version}").mkdir(parents=True)
    latest = run / "version_2"
    lightning_csv(latest / "metrics.csv", "val_accuracy", epochs=3)
    cm = rng.integers(0, 15, size=(10, 10)) + np.diag(rng.integers(150, 300, size=10))
    (latest / "metrics.json").write_text(
        json.dumps(metrics_json("classification", CLS_CLASSES, cm, rng)), encoding="utf-8"
    )
    (run / "version_0" / "metrics.csv").write_text(
        "epoch,step,val_loss\n0,1,9.9\n", encoding="utf-8"
    )
    n = 10
    target = rng.integers(0, 10, size=n)
    pred = np.where(rng.random(n) < 0.7, target, rng.integers(0, 10, size=n))
    image = rng.integers(0, 255, size=(n, 32, 32, 3), dtype=np.uint8)
    np.savez(
        latest / "examples.npz",
        image=image,
        target=target,
        pred=pred,
        confidence=rng.uniform(0.3, 1, n),
    )
    return run
