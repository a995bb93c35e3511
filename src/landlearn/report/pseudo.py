"""The report's pseudo-label section: per class and round, what a teacher kept and how right it was.

Each round is a ``landlearn pseudo-label`` output folder (its ``pseudo_labels.json``): the
per-class threshold, the share of the class's predicted pixels kept (coverage) and, where the
command had true masks (``--masks``), the kept pixels' accuracy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landlearn.errors import LandlearnError
from landlearn.report._canvas import new_figure, save_figure

__all__ = ["plot_pseudo_labels", "pseudo_label_rows", "read_pseudo_labels"]

HEADER = ["round", "class", "threshold", "kept pixels", "coverage", "accuracy"]


def read_pseudo_labels(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``pseudo_labels.json`` of a ``landlearn pseudo-label`` folder (or the file itself).

    Raises:
        LandlearnError: missing, unreadable, or not written by ``landlearn pseudo-label``.
    """
    path = Path(folder)
    if path.is_dir():
        path = path / "pseudo_labels.json"
    if not path.is_file():
        raise LandlearnError("no pseudo_labels.json (a `landlearn pseudo-label` folder?)", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LandlearnError(
            f"unreadable pseudo_labels.json ({type(err).__name__})", path
        ) from None
    if not isinstance(data, dict) or data.get("written_by") != "landlearn":
        raise LandlearnError("not written by `landlearn pseudo-label`", path)
    classes = data.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, dict) for c in classes):
        raise LandlearnError("pseudo_labels.json has no per-class list", path)
    return data


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f} %"


def pseudo_label_rows(rounds: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One table row per class per round (rounds numbered from 1)."""
    rows = []
    for r, data in enumerate(rounds, start=1):
        for c in data["classes"]:
            rows.append([
                str(r), str(c.get("class")), f"{float(c.get('threshold', float('nan'))):.3f}",
                f"{int(c.get('kept_pixels', 0)):,}", _pct(c.get("coverage")),
                _pct(c.get("accuracy")),
            ])  # fmt: skip
        rows.append([str(r), "all", "", "", _pct(data.get("kept_share")),
                     _pct(data.get("accuracy"))])  # fmt: skip
    return rows


def plot_pseudo_labels(rounds: Sequence[dict[str, Any]], out: str | os.PathLike[str]) -> Path:
    """Coverage (left) and accuracy (right) per class, one bar per round."""
    names = [str(c["class"]) for c in rounds[0]["classes"]]
    fig = new_figure(max(8.0, 1.2 * len(names) + 3), 3.8)
    axes = fig.subplots(1, 2, sharey=True)
    width = 0.8 / len(rounds)
    x = np.arange(len(names))
    for ax, key, title in ((axes[0], "coverage", "coverage (kept share of predicted)"),
                           (axes[1], "accuracy", "accuracy of kept pixels")):  # fmt: skip
        for r, data in enumerate(rounds):
            by_name = {str(c["class"]): c for c in data["classes"]}
            values = [by_name.get(n, {}).get(key) for n in names]
            heights = [np.nan if v is None else float(v) for v in values]
            ax.bar(x + (r - (len(rounds) - 1) / 2) * width, heights, width, label=f"round {r + 1}")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(rounds), fontsize=9)
    return save_figure(fig, out)
