"""Per-band statistics (NaN- and no-data-aware) and the ``Normalize`` module that applies them."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landlearn.errors import LandlearnError

__all__ = ["Normalize", "compute_raster_stats", "compute_stats"]

log = logging.getLogger(__name__)

MIN_STD = 1e-6
"""Floor of every standard deviation, so a constant band does not divide by zero."""


class _BandMoments:
    """Streaming per-band count, mean and M2 in float64 (Chan et al. pairwise merge)."""

    def __init__(self) -> None:
        self.count: np.ndarray | None = None
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def add(self, values: np.ndarray, valid: np.ndarray) -> None:
        """Merge ``values`` ``(C, N)`` where ``valid`` ``(C, N)`` is true."""
        n = valid.sum(axis=1).astype(np.float64)
        total = np.where(valid, values, 0.0).sum(axis=1)
        mean = np.divide(total, n, out=np.zeros_like(total), where=n > 0)
        m2 = np.where(valid, (values - mean[:, None]) ** 2, 0.0).sum(axis=1)
        if self.count is None or self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        if len(n) != len(self.count):
            raise LandlearnError(f"band count changed from {len(self.count)} to {len(n)}")
        count = self.count + n
        delta = mean - self.mean
        safe = np.maximum(count, 1.0)
        self.mean = self.mean + delta * n / safe
        self.m2 = self.m2 + m2 + delta**2 * self.count * n / safe
        self.count = count

    def result(
        self, where: str | os.PathLike[str] | None = None
    ) -> tuple[list[float], list[float]]:
        if self.count is None or self.mean is None or self.m2 is None:
            raise LandlearnError("no samples to compute statistics from", where)
        empty = np.flatnonzero(self.count == 0)
        if len(empty):
            raise LandlearnError(f"band(s) {empty.tolist()} have no valid pixel", where)
        std = np.maximum(np.sqrt(self.m2 / self.count), MIN_STD)
        return [float(v) for v in self.mean], [float(v) for v in std]


def _as_bands(image: Any) -> np.ndarray:
    arr = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise LandlearnError(f"expected an image of shape (C, H, W), got {arr.shape}")
    return arr.reshape(arr.shape[0], -1).astype(np.float64)


def compute_stats(
    dataset: Any, max_samples: int = 512, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Per-band mean and std of ``dataset[i]["image"]`` over a seeded subset of samples.

    NaN pixels are skipped; the std (population) is floored at ``MIN_STD``.

    Args:
        dataset: Has ``len`` and ``__getitem__`` returning a dict with ``image`` (C, H, W).
        max_samples: At most this many samples, drawn without replacement.

    Raises:
        LandlearnError: Empty dataset, band count changing between samples, or an all-NaN band.
    """
    n = len(dataset)
    if n == 0:
        raise LandlearnError("dataset is empty; cannot compute band statistics")
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(n, size=min(n, max_samples), replace=False))
    moments = _BandMoments()
    for i in index:
        values = _as_bands(dataset[int(i)]["image"])
        moments.add(values, np.isfinite(values))
    mean, std = moments.result()
    log.debug("band stats over %d of %d samples: mean=%s std=%s", len(index), n, mean, std)
    return mean, std


def compute_raster_stats(
    path: str | os.PathLike[str],
    max_pixels: int = 1_000_000,
    nodata: float | None = None,
) -> tuple[list[float], list[float]]:
    """Per-band mean and std of a raster, from a decimated read of at most ``max_pixels`` pixels.

    Pixels equal to ``nodata`` (default: the file's nodata) and NaN are skipped.

    Raises:
        LandlearnError: The file is missing or unreadable, or a band has no valid pixel.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            factor = max(1.0, math.sqrt(src.height * src.width / max(1, max_pixels)))
            shape = (
                src.count,
                max(1, int(src.height / factor)),
                max(1, int(src.width / factor)),
            )
            data = src.read(out_shape=shape)
            nodata = src.nodata if nodata is None else nodata
    except RasterioIOError as err:
        raise LandlearnError(f"cannot read raster: {err}", path) from err
    values = data.reshape(data.shape[0], -1).astype(np.float64)
    valid = np.isfinite(values)
    if nodata is not None and not math.isnan(nodata):
        valid &= values != nodata
    moments = _BandMoments()
    moments.add(values, valid)
    return moments.result(path)


class Normalize(nn.Module):
    """``(x - mean) / std`` per band, on a tensor ``(B, C, H, W)`` / ``(C, H, W)`` or a batch dict.

    Args:
        mean: One value per band.
        std: One value per band; floored at ``MIN_STD``.
        nan_value: If set, NaN pixels become this value after normalising (0 is the band mean).
        key: The dict entry normalised when called on a batch dict.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        nan_value: float | None = None,
        key: str = "image",
    ) -> None:
        super().__init__()
        if len(mean) != len(std) or len(mean) == 0:
            raise LandlearnError(
                f"mean and std need one value per band, got {len(mean)} and {len(std)}"
            )
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1))
        std_t = torch.tensor(list(std), dtype=torch.float32).clamp_min(MIN_STD)
        self.register_buffer("std", std_t.view(-1, 1, 1))
        self.nan_value = nan_value
        self.key = key

    def normalize(self, x: Tensor) -> Tensor:
        """Normalise one tensor whose channel axis is third from last."""
        if x.ndim < 3 or x.shape[-3] != self.mean.shape[0]:
            raise LandlearnError(
                f"expected {self.mean.shape[0]} bands, got shape {tuple(x.shape)}; check band_names"
            )
        out = (x.float() - self.mean) / self.std
        if self.nan_value is not None:
            out = torch.where(torch.isnan(out), torch.full_like(out, self.nan_value), out)
        return out

    def forward(self, x: Tensor | dict[str, Any]) -> Tensor | dict[str, Any]:
        """Normalise a tensor, or return a new batch dict with ``key`` normalised."""
        if isinstance(x, dict):
            return {**x, self.key: self.normalize(x[self.key])}
        return self.normalize(x)

    def extra_repr(self) -> str:
        return f"bands={self.mean.shape[0]}, nan_value={self.nan_value}"
