"""Figures of a run: training curves, confusion matrix, per-class scores, reliability, examples.

Every function draws with matplotlib's Agg canvas (no display needed), writes one PNG to a
temporary name beside ``out`` and renames it, and returns ``out``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes

from landlearn.errors import LandlearnError
from landlearn.report._canvas import new_figure, save_figure
from landlearn.report._examples import plot_examples
from landlearn.report._runfiles import finite

__all__ = [
    "plot_confusion_matrix",
    "plot_examples",
    "plot_per_class",
    "plot_reliability",
    "plot_reliability_pair",
    "plot_sgld_samples",
    "plot_training_curves",
]

log = logging.getLogger(__name__)

_INDEX_COLUMNS = ("epoch", "step")
_ANNOTATE_MAX_CLASSES = 25


def _metric_groups(df: pd.DataFrame) -> dict[str, list[str]]:
    """Split logged columns into loss, quality-metric and learning-rate panels."""
    groups: dict[str, list[str]] = {"loss": [], "metrics": [], "learning rate": []}
    for column in df.columns:
        if column in _INDEX_COLUMNS or not df[column].notna().any():
            continue
        name = str(column).lower()
        if name.startswith("lr") or "learning_rate" in name:
            groups["learning rate"].append(column)
        elif "loss" in name:
            groups["loss"].append(column)
        else:
            groups["metrics"].append(column)
    return {title: cols for title, cols in groups.items() if cols}


def _x_axis(df: pd.DataFrame) -> tuple[pd.Series, str]:
    if "step" in df.columns and df["step"].notna().any():
        return df["step"], "training step"
    if "epoch" in df.columns and df["epoch"].notna().any():
        return df["epoch"], "epoch"
    return pd.Series(np.arange(len(df)), index=df.index), "logged row"


def _epoch_axis(ax: Axes, df: pd.DataFrame) -> None:
    """Top axis with epoch numbers at the step where each epoch ends."""
    both = df[["epoch", "step"]].dropna()
    if both.empty or both["epoch"].nunique() < 2:
        return
    ends = both.groupby("epoch")["step"].max()
    keep = ends.iloc[:: max(1, len(ends) // 10)]
    top = ax.secondary_xaxis("top")
    top.set_xticks(keep.to_numpy(), [str(int(e)) for e in keep.index])
    top.set_xlabel("epoch (end)", fontsize=8)
    top.tick_params(labelsize=7)


def plot_training_curves(df: pd.DataFrame, out: str | os.PathLike[str]) -> Path | None:
    """Loss, validation metrics and learning rate against training step, from ``metrics.csv``.

    Any subset of Lightning's columns works; NaN cells (not logged at that row) are skipped.
    Returns ``None`` and writes nothing when no column besides ``epoch`` / ``step`` has values.
    """
    groups = _metric_groups(df)
    if not groups:
        return None
    x, xlabel = _x_axis(df)
    fig = new_figure(4.6 * len(groups), 3.8)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (title, columns) in zip(axes, groups.items(), strict=True):
        for column in columns:
            rows = df[column].notna() & x.notna()
            if str(column).endswith("_step"):
                ax.plot(x[rows], df.loc[rows, column], lw=0.8, alpha=0.45, label=column)
            else:
                ax.plot(x[rows], df.loc[rows, column], lw=1.6, marker="o", ms=3, label=column)
        if title == "learning rate" and (df[columns] > 0).any().all():
            ax.set_yscale("log")
        ax.set_title(title.capitalize())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        if xlabel == "training step" and "epoch" in df.columns:
            _epoch_axis(ax, df)
    return save_figure(fig, out)


def _compact(count: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= size:
            return f"{count / size:.3g}{suffix}"
    return f"{int(count)}"


def plot_confusion_matrix(
    cm: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
    out: str | os.PathLike[str],
    normalize: bool = True,
) -> Path:
    """Confusion matrix (rows = true, columns = predicted), row-normalised with counts.

    Raises:
        LandlearnError: ``cm`` is not square with one row per class name.
    """
    counts = np.asarray(cm, dtype=float)
    k = len(class_names)
    if counts.shape != (k, k):
        raise LandlearnError(
            f"confusion matrix has shape {counts.shape}, expected ({k}, {k}) for {k} classes"
        )
    support = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shown = np.where(support > 0, counts / support, np.nan) if normalize else counts
    side = min(max(4.8, 0.62 * k + 2.4), 16.0)
    fig = new_figure(side + 1.0, side)
    ax = fig.subplots()
    vmax = 1.0 if normalize else max(float(np.nanmax(counts)), 1.0)
    cmap = colormaps["Blues"].with_extremes(bad="#eeeeee")
    image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")
    if k <= _ANNOTATE_MAX_CLASSES:
        size = 9 if k <= 8 else 7 if k <= 14 else 5.5
        for i in range(k):
            for j in range(k):
                if support[i, 0] == 0:
                    text, colour = ("absent", "#777777") if j == i else ("", "black")
                elif counts[i, j] == 0:
                    text, colour = "0", "#9a9a9a"
                else:
                    value = shown[i, j]
                    label = f"{value:.2f}" if normalize else _compact(value)
                    text = f"{label}\n{_compact(counts[i, j])}" if normalize else label
                    colour = "white" if value > 0.55 * vmax else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=size, color=colour)
    ticks = np.arange(k)
    ax.set_xticks(ticks, list(class_names), rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, list(class_names))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    kind = "row-normalised (recall), counts below" if normalize else "counts"
    ax.set_title(f"Confusion matrix — {kind}", fontsize=11)
    return save_figure(fig, out)


def plot_per_class(metrics: Mapping[str, Any], out: str | os.PathLike[str]) -> Path:
    """Bars of IoU and F1 per class, from ``metrics.json``; absent classes marked ``n/a``.

    Raises:
        LandlearnError: ``metrics`` has no ``per_class`` IoU or F1.
    """
    per_class = metrics.get("per_class") or {}
    series = {key: per_class[key] for key in ("iou", "f1") if per_class.get(key) is not None}
    if not series:
        raise LandlearnError("metrics have no per_class iou or f1 to plot")
    k = max(len(values) for values in series.values())
    names = list(metrics.get("class_names") or [f"class {i}" for i in range(k)])[:k]
    support = list(per_class.get("support") or [])
    labels = [
        f"{name}\n(n={_compact(support[i])})" if i < len(support) else name
        for i, name in enumerate(names)
    ]
    fig = new_figure(min(max(6.0, 0.45 * k * len(series) + 3.0), 16.0), 4.6)
    ax = fig.subplots()
    width = 0.8 / len(series)
    colours = {"iou": "#1f77b4", "f1": "#ff7f0e"}
    for n, (key, values) in enumerate(series.items()):
        xs = np.arange(k) + (n - (len(series) - 1) / 2) * width
        heights = [finite(v) for v in values]
        label = "IoU" if key == "iou" else "F1"
        ax.bar(xs, [h or 0.0 for h in heights], width, color=colours[key], label=label)
        for x_pos, height in zip(xs, heights, strict=False):
            if height is None:
                ax.text(x_pos, 0.015, "n/a", ha="center", va="bottom", fontsize=7, color="#777")
            elif height > 0.12:  # inside the bar, clear of the mean lines
                ax.text(
                    x_pos,
                    height - 0.015,
                    f"{height:.2f}",
                    ha="center",
                    va="top",
                    fontsize=7,
                    color="white",
                )
            else:
                ax.text(
                    x_pos, height + 0.015, f"{height:.2f}", ha="center", va="bottom", fontsize=7
                )
    for key, label, style in (("miou", "mIoU", "--"), ("macro_f1", "macro F1", ":")):
        value = finite(metrics.get(key))
        if value is not None:
            ax.axhline(value, color="#444444", ls=style, lw=1, label=f"{label} {value:.3f}")
    if k > 8:
        ax.set_xticks(np.arange(k), labels, fontsize=8, rotation=30, ha="right")
    else:
        ax.set_xticks(np.arange(k), labels, fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score")
    ax.set_xlabel("class (test support)")
    absent = any(v is None for values in series.values() for v in values)
    note = " (n/a: class absent from the test split, or never predicted)" if absent else ""
    ax.set_title(f"Per-class scores on the test split{note}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, out)


def _reliability_arrays(reliability: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    edges = np.asarray(reliability.get("bin_edges", []), dtype=float)
    arrays = {}
    for key in ("confidence", "accuracy", "count"):
        values = reliability.get(key) or []
        arrays[key] = np.array([np.nan if v is None else v for v in values], dtype=float)
    bins = len(edges) - 1
    if bins < 1 or any(len(values) != bins for values in arrays.values()):
        raise LandlearnError(
            "reliability needs bin_edges (B+1) and confidence, accuracy, count (B each)"
        )
    return edges, arrays


def _draw_reliability(top: Axes, bottom: Axes, reliability: Mapping[str, Any], title: str) -> None:
    edges, arrays = _reliability_arrays(reliability)
    count = np.nan_to_num(arrays["count"])
    used = count > 0
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    acc = np.where(used, np.nan_to_num(arrays["accuracy"]), 0.0)
    conf = np.where(used, np.nan_to_num(arrays["confidence"], nan=0.0), centres)
    top.bar(centres, acc, widths, color="#1f77b4", edgecolor="white", label="accuracy")
    gap_base = np.minimum(acc, conf)
    top.bar(
        centres[used],
        np.abs(conf - acc)[used],
        widths[used],
        bottom=gap_base[used],
        color="#d62728",
        alpha=0.3,
        hatch="//",
        edgecolor="#d62728",
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], ls="--", color="#444444", lw=1, label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_xlim(float(edges[0]), float(edges[-1]))
    top.set_ylabel("accuracy")
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    ece = finite(reliability.get("ece"))
    top.set_title(title + (f" — ECE {ece:.4f}" if ece is not None else ""))
    total = count.sum()
    share = count / total if total > 0 else count
    bottom.bar(centres, share, widths, color="#7f7f7f", edgecolor="white")
    if total > 0:
        mean_conf = float(np.nansum(np.nan_to_num(arrays["confidence"]) * share))
        bottom.axvline(mean_conf, color="#d62728", lw=1, label=f"mean confidence {mean_conf:.3f}")
        bottom.legend(fontsize=8, loc="upper left")
    bottom.set_xlabel("confidence (max softmax probability)")
    bottom.set_ylabel("share of samples")
    bottom.grid(alpha=0.3)


def plot_reliability(reliability: Mapping[str, Any], out: str | os.PathLike[str]) -> Path:
    """Reliability diagram over a confidence histogram; ECE in the title when given.

    ``reliability`` holds ``bin_edges`` (B+1), ``confidence``, ``accuracy`` and ``count`` (B);
    an optional ``ece`` key is shown in the title.

    Raises:
        LandlearnError: the arrays do not have matching lengths.
    """
    _reliability_arrays(reliability)  # check before drawing
    fig = new_figure(5.4, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.3))
    _draw_reliability(top, bottom, reliability, "Reliability diagram")
    return save_figure(fig, out)


def plot_reliability_pair(
    items: Sequence[tuple[str, Mapping[str, Any]]], out: str | os.PathLike[str]
) -> Path:
    """Reliability diagrams side by side, one column per ``(label, reliability)``.

    E.g. a JEM beside the plain classifier, on the same axes so the gaps compare at a glance.

    Raises:
        LandlearnError: no items, or one with mismatched arrays.
    """
    if not items:
        raise LandlearnError("plot_reliability_pair needs at least one reliability")
    for _, rel in items:
        _reliability_arrays(rel)
    fig = new_figure(5.0 * len(items), 6.0)
    axes = fig.subplots(2, len(items), sharex=True, sharey="row", height_ratios=(3, 1.3),
                        squeeze=False)  # fmt: skip
    for j, (label, rel) in enumerate(items):
        _draw_reliability(axes[0, j], axes[1, j], rel, label)
    return save_figure(fig, out)


def plot_sgld_samples(
    samples: np.ndarray, out: str | os.PathLike[str], title: str = "SGLD samples"
) -> Path:
    """A grid of up to 64 samples ``(N, C, H, W)``, the first three bands, each stretched 2–98 %.

    What a JEM "imagines": samples that look like noise late in training mean p(x) learned
    little; samples with the colours and textures of the data mean it learned something.
    """
    x = np.asarray(samples, dtype=np.float32)[:64]
    if x.ndim != 4 or len(x) == 0:
        raise LandlearnError(f"samples must be (N, C, H, W), got shape {x.shape}")
    rgb = x[:, [0, 1, 2]] if x.shape[1] >= 3 else x[:, [0, 0, 0]]
    lo = np.nanpercentile(rgb, 2, axis=(1, 2, 3), keepdims=True)
    hi = np.nanpercentile(rgb, 98, axis=(1, 2, 3), keepdims=True)
    rgb = np.clip(np.nan_to_num((rgb - lo) / np.maximum(hi - lo, 1e-6)), 0, 1)
    n = len(rgb)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig = new_figure(1.0 * cols + 0.4, 1.0 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < n:
            ax.imshow(rgb[i].transpose(1, 2, 0), interpolation="nearest")
    fig.suptitle(title)
    return save_figure(fig, out)
