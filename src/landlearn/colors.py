"""Class colours: one default palette, hex strings, and parsing of user-given colours.

One palette for bundles, maps and reports, so a class keeps its colour everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from landlearn.errors import LandlearnError

__all__ = ["default_colors", "hex_color", "parse_colors"]


def default_colors(n: int) -> list[list[int]]:
    """A distinct colour per class (tab10, tab20 past 10 classes) when a data set names none."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [[round(255 * c) for c in cmap(i % cmap.N)[:3]] for i in range(n)]


def hex_color(rgb: Sequence[int]) -> str:
    """``#rrggbb`` from the first three values of an RGB(A) colour (matplotlib, QGIS)."""
    r, g, b = (int(v) for v in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def parse_colors(
    raw: Any, num_classes: int, source: str | os.PathLike[str]
) -> list[tuple[int, int, int]]:
    """``[[r, g, b], …]`` (0–255 or 0–1) or ``{name: rgb}`` → RGB tuples, one per class.

    ``{"class_colors": [...]}`` (a ``class_colors.json`` or ``metrics.json``) works too; values
    all within [0, 1] and not all whole are read as fractions of 255.

    Args:
        raw: The colours as read from JSON.
        num_classes: How many classes need a colour (extra colours are dropped).
        source: The file they came from, for the error.

    Raises:
        LandlearnError: the colours are not a list of ``num_classes`` RGB triples.
    """
    if isinstance(raw, dict):
        raw = raw.get("class_colors", list(raw.values()))
    try:
        arr = np.asarray(raw, dtype=float)
    except (TypeError, ValueError) as err:
        raise LandlearnError("class colours must be a list of [r, g, b]", source) from err
    if arr.ndim != 2 or arr.shape[1] not in (3, 4) or len(arr) < num_classes:
        raise LandlearnError(
            f"expected {num_classes} class colours as [r, g, b], got shape {arr.shape}", source
        )
    if arr.size and arr.max() <= 1.0 and not np.all(arr == arr.round()):
        arr = arr * 255.0
    arr = np.clip(arr[:num_classes, :3].round(), 0, 255).astype(int)
    return [(int(r), int(g), int(b)) for r, g, b in arr]
