"""Out-of-distribution scores of a classification bundle: energy against max-softmax.

``ood_scores(bundle, in_data, ood_data)`` scores every in-distribution image (a folder of class
folders, e.g. the EuroSAT test split) and every chip of another data set (a folder of images of
any size, searched recursively, cut into ``ood_chip``-px grid chips and area-resized to the
bundle's chip size, e.g. DeepGlobe or Dubai tiles) with

- the energy ``E(x) = −logsumexp_y f(x)[y]`` (higher: less like the training data; what a JEM
  is trained to make meaningful, Grathwohl et al. 2020; Liu et al. 2020 for plain classifiers);
- the max-softmax baseline (Hendrycks & Gimpel 2017), as ``1 − max_y p(y|x)``,

and gives the AUROC of each for telling the other data set (positive) from the in-distribution
images: 0.5 is chance, 1 a perfect separation. ``landlearn evaluate BUNDLE DATA --ood OTHER``
prints and stores it under ``ood``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landlearn.errors import LandlearnError
from landlearn.inputs import check_input

__all__ = ["auroc", "ood_files", "ood_scores"]

PathLike = str | os.PathLike[str]
_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def auroc(
    negatives: Sequence[float] | np.ndarray, positives: Sequence[float] | np.ndarray
) -> float:
    """Probability that a random positive scores above a random negative (ties count half).

    Raises:
        LandlearnError: either group is empty.
    """
    neg = np.asarray(negatives, dtype=np.float64)
    pos = np.asarray(positives, dtype=np.float64)
    if not len(neg) or not len(pos):
        raise LandlearnError("AUROC needs scores of both groups")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([neg, pos]))
    u = ranks[len(neg) :].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(neg) * len(pos)))


def ood_files(folder: PathLike) -> list[Path]:
    """The images under ``folder`` (recursively), sorted.

    Raises:
        LandlearnError: ``folder`` is missing, not a folder, or holds no images.
    """
    path = check_input(folder, "folder of out-of-distribution images")
    if not path.is_dir():
        raise LandlearnError("--ood takes a folder of images", path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES)
    if not files:
        raise LandlearnError(f"no images ({', '.join(_SUFFIXES)}) found", path)
    return files


class _Chips:
    """Grid chips of every image under a folder, area-resized to ``size`` px."""

    def __init__(self, files: list[Path], chip: int, size: int, max_chips: int, seed: int) -> None:
        from landlearn.data.io import raster_info

        items = []
        for f in files:
            info = raster_info(f)
            rows, cols = max(1, info.height // chip), max(1, info.width // chip)
            items += [(f, r * chip, c * chip) for r in range(rows) for c in range(cols)]
        if len(items) > max_chips:
            pick = np.random.default_rng(seed).choice(len(items), max_chips, replace=False)
            items = [items[i] for i in sorted(pick)]
        self.items, self.chip, self.size = items, chip, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch
        import torch.nn.functional as F
        from rasterio.windows import Window

        from landlearn.data.io import read_raster

        path, row, col = self.items[i]
        x = torch.from_numpy(read_raster(path, window=Window(col, row, self.chip, self.chip)))
        if x.shape[-2:] != (self.chip, self.chip):  # an image smaller than one chip
            x = F.interpolate(x[None], size=(self.chip, self.chip), mode="area")[0]
        if self.chip != self.size:
            x = F.interpolate(x[None], size=(self.size, self.size), mode="area")[0]
        return {"image": x}


def _scores(predictor: Any, dataset: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    import torch
    from torch.utils.data import DataLoader

    from landlearn.uncertainty import energy

    energies, msp = [], []
    with torch.inference_mode():
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            logits = predictor.logits(batch["image"]).float()
            finite = torch.isfinite(logits).all(dim=1)
            logits = logits[finite]
            energies.append(energy(logits).cpu().numpy())
            msp.append(1 - torch.softmax(logits, 1).max(1).values.cpu().numpy())
    return np.concatenate(energies), np.concatenate(msp)


def ood_scores(
    bundle: PathLike | Any,
    in_data: PathLike | Any,
    ood_data: PathLike,
    *,
    ood_chip: int | None = None,
    max_chips: int = 2000,
    batch_size: int = 64,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """AUROC of energy and of max-softmax for telling ``ood_data`` from ``in_data``.

    Args:
        bundle: a classification bundle path, or a loaded ``Predictor``.
        in_data: in-distribution class folders (or a dataset of ``image`` samples).
        ood_data: a folder of images (searched recursively) from elsewhere.
        ood_chip: px of the grid chips cut from ``ood_data`` images (default: the bundle's
            chip size); each is area-resized to the bundle's chip size.
        max_chips: at most this many chips, drawn at random with ``seed``.

    Returns:
        ``energy_auroc``, ``max_softmax_auroc``, sample counts and mean energies.

    Raises:
        LandlearnError: not a classification bundle, a folder without images, wrong bands.
    """
    from landlearn.evaluation import _predictor, build_dataset

    predictor = _predictor(bundle, (), device)
    meta = predictor.meta
    if meta.task != "classification" or meta.mode != "multiclass":
        raise LandlearnError(
            f"--ood scores multiclass classification bundles; this one is {meta.task} ({meta.mode})"
        )
    files = ood_files(ood_data)
    size = int(meta.chip_size)
    chips = _Chips(files, int(ood_chip or size), size, int(max_chips), seed)
    inside = (
        build_dataset(predictor, in_data) if isinstance(in_data, str | os.PathLike) else in_data
    )
    e_in, m_in = _scores(predictor, inside, batch_size)
    e_out, m_out = _scores(predictor, chips, batch_size)
    return {
        "data": str(ood_data),
        "chip": int(ood_chip or size),
        "n_in": len(e_in),
        "n_out": len(e_out),
        "energy_auroc": auroc(e_in, e_out),
        "max_softmax_auroc": auroc(m_in, m_out),
        "mean_energy_in": float(e_in.mean()),
        "mean_energy_out": float(e_out.mean()),
    }
