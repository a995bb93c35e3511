"""Each figure on its own: odd column subsets, shape errors, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.report import (
    plot_confusion_matrix,
    plot_examples,
    plot_per_class,
    plot_reliability,
    plot_training_curves,
)


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_training_curves_epoch_only_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame({"epoch": [0, 1, 2], "val_loss": [1.0, 0.7, np.nan]})
    out = plot_training_curves(frame, tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    assert out.stat().st_size > 5_000
    width, height = _size(out)
    assert width < 1.6 * height  # one panel only


def test_training_curves_nothing_to_plot(tmp_path: Path) -> None:
    frame = pd.DataFrame({"epoch": [0, 1], "step": [9, 19], "val_loss": [np.nan, np.nan]})
    assert plot_training_curves(frame, tmp_path / "c.png") is None
    assert not (tmp_path / "c.png").exists()


def test_confusion_matrix_raw_counts_and_shape_error(tmp_path: Path) -> None:
    cm = np.array([[5, 1], [0, 0]])  # second class absent
    out = plot_confusion_matrix(cm, ["a", "b"], tmp_path / "cm.png", normalize=False)
    assert out.stat().st_size > 5_000
    with pytest.raises(LandlearnError, match=r"shape \(2, 2\), expected \(3, 3\)"):
        plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_per_class_needs_scores(tmp_path: Path) -> None:
    metrics = {"class_names": ["a", "b"], "per_class": {"iou": [0.5, None]}, "miou": 0.5}
    assert plot_per_class(metrics, tmp_path / "pc.png").stat().st_size > 5_000
    with pytest.raises(LandlearnError, match="per_class"):
        plot_per_class({"per_class": {"support": [1, 2]}}, tmp_path / "x.png")


def test_reliability_length_mismatch(tmp_path: Path) -> None:
    bins = {"bin_edges": [0.0, 0.5, 1.0], "confidence": [0.3], "accuracy": [0.2], "count": [4]}
    with pytest.raises(LandlearnError, match="bin_edges"):
        plot_reliability(bins, tmp_path / "r.png")
    bins = {**bins, "confidence": [None, 0.8], "accuracy": [None, 0.7], "count": [0, 9]}
    assert plot_reliability(bins, tmp_path / "r.png").stat().st_size > 5_000


def test_examples_segmentation_without_colours(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, size=(2, 16, 16))
    target[:, 0] = IGNORE_INDEX
    arrays = {
        "image": rng.random((2, 16, 16, 3)),  # float in [0, 1] is accepted too
        "target": target,
        "pred": rng.integers(0, 3, size=(2, 16, 16)),
    }
    out = plot_examples(arrays, ["a", "b", "c"], None, tmp_path / "ex.png")
    width, height = _size(out)
    assert width > height  # image / target / prediction side by side


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"image": np.zeros((2, 8, 8, 3)), "target": np.zeros(2)}, "lack array"),
        ({"image": np.zeros((2, 8, 8)), "target": np.zeros(2), "pred": np.zeros(2)}, "N, H, W, 3"),
        ({"image": np.zeros((2, 8, 8, 3)), "target": np.zeros(2), "pred": np.zeros(3)}, "match"),
    ],
)
def test_examples_bad_arrays(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    with pytest.raises(LandlearnError, match=match):
        plot_examples(arrays, ["a"], None, tmp_path / "ex.png")
