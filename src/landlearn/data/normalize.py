"""Per-band statistics (NaN- and no-data-aware) and the one normalisation of landlearn.

:func:`normalize` is ``(x - mean) / max(std, MIN_STD)`` per channel; every place that normalises
an input calls it (the datamodules after transfer, ``Normalize``, the table datamodules), with
the statistics of that input's training split (:func:`normalize_input` takes an ``InputSpec``,
:func:`normalize_batch` every input of a batch). ``landlearn.bundle``, below ``data/`` in the
layers, uses the same floor (``landlearn.conventions.MIN_STD``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from landlearn.conventions import MIN_STD
from landlearn.errors import LandlearnError
from landlearn.schema import InputSpec

__all__ = [
    "MIN_STD",
    "Normalize",
    "compute_raster_stats",
    "compute_stats",
    "normalize",
    "normalize_batch",
    "normalize_input",
]

log = logging.getLogger(__name__)

ArrayT = TypeVar("ArrayT", Tensor, np.ndarray)


def normalize(
    x: ArrayT,
    mean: Sequence[float] | Tensor,
    std: Sequence[float] | Tensor,
    *,
    channel_dim: int = -3,
    nan_value: float | None = None,
) -> ArrayT:
    """``(x - mean) / max(std, MIN_STD)`` per channel: the one normalisation of landlearn.

    A tensor comes back as float32 (float64 stays float64) on its device; a numpy array as an
    array of its float dtype, computed the same way.

    Args:
        x: raw values; rasters ``(..., C, H, W)`` (``channel_dim=-3``), tables ``(..., F)``
            (``channel_dim=-1``).
        mean: one value per channel, raw units.
        std: one value per channel; floored at ``MIN_STD``.
        channel_dim: the channel axis, counted from the end (negative).
        nan_value: if set, NaN values become this after normalising (0 is the mean).

    Raises:
        LandlearnError: ``x`` has not one channel per statistic.
    """
    if isinstance(x, np.ndarray):
        arr = x if x.dtype.kind == "f" else x.astype(np.float32)
        out = normalize(
            torch.from_numpy(arr), mean, std, channel_dim=channel_dim, nan_value=nan_value
        )
        return out.numpy()
    if channel_dim >= 0:
        raise ValueError(f"channel_dim counts from the end and must be negative, got {channel_dim}")
    if x.dtype != torch.float64:
        x = x.float()
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).flatten()
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).flatten()
    n = m.numel()
    if s.numel() != n or n == 0:
        raise LandlearnError(f"mean and std need one value per band, got {n} and {s.numel()}")
    if x.ndim < -channel_dim or x.shape[channel_dim] != n:
        raise LandlearnError(f"expected {n} bands, got shape {tuple(x.shape)}; check band_names")
    shape = (n,) + (1,) * (-channel_dim - 1)
    out = (x - m.view(shape)) / s.clamp_min(MIN_STD).view(shape)
    if nan_value is not None:
        out = torch.where(torch.isnan(out), torch.full_like(out, nan_value), out)
    return out


def normalize_input(x: ArrayT, spec: InputSpec, *, nan_value: float | None = None) -> ArrayT:
    """Normalise one input with its spec's training-split statistics (tables: last axis).

    Raises:
        LandlearnError: the spec has no statistics, or ``x`` has the wrong number of bands.
    """
    if spec.mean is None or spec.std is None:
        raise LandlearnError(f"input {spec.name!r} has no mean / std; call setup() first")
    dim = -1 if spec.kind == "table" else -3
    return normalize(x, spec.mean, spec.std, channel_dim=dim, nan_value=nan_value)


def normalize_batch(
    batch: dict[str, Any], specs: Sequence[InputSpec], *, nan_value: float | None = None
) -> dict[str, Any]:
    """The batch with every input of ``specs`` that it holds normalised (other keys as they are).

    Raises:
        LandlearnError: a spec without statistics, or an input with the wrong number of bands.
    """
    out = dict(batch)
    for spec in specs:
        if spec.name in out:
            out[spec.name] = normalize_input(out[spec.name], spec, nan_value=nan_value)
    return out


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
    dataset: Any, max_samples: int = 512, seed: int = 0, key: str = "image"
) -> tuple[list[float], list[float]]:
    """Per-band mean and std of ``dataset[i][key]`` over a seeded subset of samples.

    NaN pixels are skipped; the std (population) is floored at ``MIN_STD``.

    Args:
        dataset: Has ``len`` and ``__getitem__`` returning a dict with ``key`` (C, H, W).
        max_samples: At most this many samples, drawn without replacement.
        key: the input (sample key) to describe.

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
        values = _as_bands(dataset[int(i)][key])
        moments.add(values, np.isfinite(values))
    mean, std = moments.result()
    log.debug("%s stats over %d of %d samples: mean=%s std=%s", key, len(index), n, mean, std)
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
    """:func:`normalize` as a module (statistics as buffers), on tensors or a batch dict.

    Tensors are ``(B, C, H, W)`` or ``(C, H, W)``.

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
        """Normalise one tensor whose channel axis is third from last (:func:`normalize`)."""
        return normalize(x.float(), self.mean, self.std, nan_value=self.nan_value)

    def forward(self, x: Tensor | dict[str, Any]) -> Tensor | dict[str, Any]:
        """Normalise a tensor, or return a new batch dict with ``key`` normalised."""
        if isinstance(x, dict):
            return {**x, self.key: self.normalize(x[self.key])}
        return self.normalize(x)

    def extra_repr(self) -> str:
        """Shown in the module's repr."""
        return f"bands={self.mean.shape[0]}, nan_value={self.nan_value}"
