"""Example predictions: segmentation side by side, classification as titled tiles."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from landlearn.colors import default_colors, hex_color
from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.report._canvas import new_figure, save_figure

log = logging.getLogger(__name__)

MAX_SEGMENTATION_ROWS = 6
MAX_CLASSIFICATION_TILES = 16
_IGNORE_RGB = (170, 170, 170)
_UNKNOWN_RGB = (0, 0, 0)
_WRONG, _RIGHT = "#d62728", "#1a7f37"


def _as_arrays(
    npz: Mapping[str, np.ndarray] | str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], str]:
    if isinstance(npz, Mapping):
        return {key: np.asarray(npz[key]) for key in npz}, "examples"
    source = os.fspath(npz)
    try:
        with np.load(source, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}, source
    except (OSError, ValueError) as err:
        raise LandlearnError(f"cannot read examples: {err}", source) from err


def _check(arrays: dict[str, np.ndarray], source: str) -> None:
    missing = [key for key in ("image", "target", "pred") if key not in arrays]
    if missing:
        raise LandlearnError(f"examples lack array(s) {', '.join(missing)}", source)
    image, target, pred = arrays["image"], arrays["target"], arrays["pred"]
    if image.ndim != 4 or image.shape[-1] != 3:
        raise LandlearnError(f"examples image must be (N, H, W, 3), got {image.shape}", source)
    if target.shape != pred.shape or len(target) != len(image):
        raise LandlearnError(
            f"examples target {target.shape} and pred {pred.shape} must match, "
            f"with one per image ({len(image)})",
            source,
        )
    if target.ndim == 3 and target.shape[1:] != image.shape[1:3]:
        raise LandlearnError(
            f"examples masks {target.shape} do not match images {image.shape}", source
        )
    if target.ndim not in (1, 3):
        raise LandlearnError(f"examples target must be (N,) or (N, H, W), got {target.shape}")


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    scaled = image.astype(float)
    if np.nanmax(scaled) <= 1.0:
        scaled = scaled * 255.0
    return np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)


def _lookup(colors: Sequence[Sequence[int]]) -> np.ndarray:
    """256-entry RGB table: class colours, grey for ``IGNORE_INDEX``, black for other values."""
    table = np.tile(np.array(_UNKNOWN_RGB, dtype=np.uint8), (256, 1))
    for index, colour in enumerate(colors[:256]):
        table[index] = colour[:3]
    table[IGNORE_INDEX] = _IGNORE_RGB
    return table


def _paint(mask: np.ndarray, table: np.ndarray) -> np.ndarray:
    return table[np.clip(mask, 0, 255).astype(np.intp)]


def _name(names: Sequence[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else f"class {index}"


def _segmentation(
    arrays: dict[str, np.ndarray], names: Sequence[str], colors: Sequence[Sequence[int]], out: Path
) -> Path:
    image, target, pred = arrays["image"], arrays["target"], arrays["pred"]
    confidence = arrays.get("confidence")
    rows = min(len(image), MAX_SEGMENTATION_ROWS)
    columns = 4 if confidence is not None and confidence.shape == target.shape else 3
    height, width = image.shape[1:3]
    tile = 2.6
    fig = new_figure(tile * columns * min(1.6, max(0.6, width / height)), tile * rows + 0.9)
    axes = fig.subplots(rows, columns, squeeze=False)
    table = _lookup(colors)
    shown_classes: set[int] = set()
    for row in range(rows):
        labelled = target[row] != IGNORE_INDEX
        correct = (
            float((pred[row][labelled] == target[row][labelled]).mean()) if labelled.any() else None
        )
        shown_classes.update(int(c) for c in np.unique(target[row][labelled]))
        shown_classes.update(int(c) for c in np.unique(pred[row]) if c != IGNORE_INDEX)
        axes[row, 0].imshow(_rgb(image[row]))
        axes[row, 1].imshow(_paint(target[row], table), interpolation="nearest")
        axes[row, 2].imshow(_paint(pred[row], table), interpolation="nearest")
        pixel_acc = "" if correct is None else f" — {correct:.0%} right"
        axes[row, 0].set_ylabel(f"example {row}", fontsize=9)
        axes[row, 2].set_title(f"prediction{pixel_acc}", fontsize=9)
        if columns == 4 and confidence is not None:
            shown = axes[row, 3].imshow(confidence[row], cmap="magma", vmin=0.0, vmax=1.0)
            fig.colorbar(shown, ax=axes[row, 3], shrink=0.8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=9)
    axes[0, 1].set_title("target (grey: ignored)", fontsize=9)
    if columns == 4:
        axes[0, 3].set_title("confidence", fontsize=9)
    handles = [
        Patch(color=hex_color(table[c]), label=_name(names, c))
        for c in sorted(shown_classes | set(range(len(names))))
        if c < 256
    ]
    handles.append(Patch(color=hex_color(_IGNORE_RGB), label=f"ignored ({IGNORE_INDEX})"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8)
    fig.suptitle("Test examples: image, target, prediction", fontsize=11)
    return save_figure(fig, out)


def _classification(arrays: dict[str, np.ndarray], names: Sequence[str], out: Path) -> Path:
    image, target, pred = arrays["image"], arrays["target"], arrays["pred"]
    confidence = arrays.get("confidence")
    if confidence is not None and confidence.ndim == 2:
        confidence = confidence.max(axis=1)  # (N, K) probabilities → top-1 confidence
    count = min(len(image), MAX_CLASSIFICATION_TILES)
    columns = min(count, 4)
    rows = -(-count // columns)
    fig = new_figure(2.6 * columns, 2.9 * rows + 0.5)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for index, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= count:
            ax.set_axis_off()
            continue
        truth, guess = int(target[index]), int(pred[index])
        prob = "" if confidence is None else f" ({float(confidence[index]):.2f})"
        colour = _RIGHT if truth == guess else _WRONG
        ax.imshow(_rgb(image[index]))
        # Two lines so long EuroSAT-style names ("HerbaceousVegetation") are not clipped.
        ax.set_title(
            f"{_name(names, truth)} /\n{_name(names, guess)}{prob}", fontsize=8, color=colour
        )
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2 if truth != guess else 1)
    wrong = int((target[:count] != pred[:count]).sum())
    fig.suptitle(
        f"Test examples — true / predicted (confidence); {wrong} of {count} wrong, in red",
        fontsize=10,
    )
    return save_figure(fig, out)


def plot_examples(
    npz: Mapping[str, np.ndarray] | str | os.PathLike[str],
    class_names: Sequence[str],
    class_colors: Sequence[Sequence[int]] | None,
    out: str | os.PathLike[str],
) -> Path:
    """Test examples from ``examples.npz`` (arrays ``image``, ``target``, ``pred``, ``confidence``).

    Masks ``(N, H, W)`` give rows of image / target / prediction (/ confidence) in the class
    colours, ``IGNORE_INDEX`` in grey; labels ``(N,)`` give image tiles titled
    ``true / pred (p)``, wrong ones in red.

    Args:
        npz: the loaded arrays or the path of the ``.npz`` file.
        class_names: one name per class index.
        class_colors: RGB 0–255 per class; matplotlib's tab10 / tab20 when ``None``.
        out: PNG path to write.

    Raises:
        LandlearnError: the file is unreadable or the arrays have the wrong shapes.
    """
    arrays, source = _as_arrays(npz)
    _check(arrays, source)
    if arrays["target"].ndim == 1:
        return _classification(arrays, class_names, Path(out))
    colors = list(class_colors) if class_colors else default_colors(max(len(class_names), 1))
    return _segmentation(arrays, class_names, colors, Path(out))
