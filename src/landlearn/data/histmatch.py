"""Histogram matching per band, in memory or window by window between GeoTIFFs.

The mapping is scikit-image's ``match_histograms``: each source value goes to the reference value
at the same cumulative frequency. Here no-data and NaN pixels are left out of both histograms and
left unchanged in the output, and integer images are rounded and clipped back to their dtype.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from landlearn.errors import LandlearnError

__all__ = ["match_histograms", "match_raster"]

log = logging.getLogger(__name__)


def _valid(band: np.ndarray, nodata: float | None) -> np.ndarray:
    valid = (
        np.isfinite(band) if np.issubdtype(band.dtype, np.floating) else np.ones(band.shape, bool)
    )
    if nodata is not None and not math.isnan(nodata):
        valid &= band != nodata
    return valid


def _lookup(source: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(xp, fp)``: ``np.interp(v, xp, fp)`` maps source values onto the reference histogram."""
    src_values, src_counts = np.unique(source, return_counts=True)
    ref_values, ref_counts = np.unique(reference, return_counts=True)
    src_cdf = np.cumsum(src_counts) / source.size
    ref_cdf = np.cumsum(ref_counts) / reference.size
    return src_values.astype(np.float64), np.interp(src_cdf, ref_cdf, ref_values.astype(np.float64))


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _as_bands(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise LandlearnError(f"{name} must be (C, H, W) or (H, W), got shape {array.shape}")
    return array


def match_histograms(
    image: np.ndarray, reference: np.ndarray, nodata: float | None = None
) -> np.ndarray:
    """Match the histogram of each band of ``image`` to the same band of ``reference``.

    Args:
        image: Source, ``(C, H, W)`` or ``(H, W)``; its dtype is kept.
        reference: Same band count; any height and width.
        nodata: Value left out of both histograms and unchanged in the output (NaN always is).

    Raises:
        LandlearnError: Band counts differ, or a reference band has no valid pixel.
    """
    src = _as_bands(image, "image")
    ref = _as_bands(reference, "reference")
    if src.shape[0] != ref.shape[0]:
        raise LandlearnError(f"image has {src.shape[0]} bands but reference has {ref.shape[0]}")
    out = src.copy()
    for b in range(src.shape[0]):
        src_ok, ref_ok = _valid(src[b], nodata), _valid(ref[b], nodata)
        if not ref_ok.any():
            raise LandlearnError(f"reference band {b} has no valid pixel")
        if not src_ok.any():
            continue
        xp, fp = _lookup(src[b][src_ok], ref[b][ref_ok])
        out[b][src_ok] = _cast(np.interp(src[b][src_ok], xp, fp), src.dtype)
    return out.reshape(np.shape(image))


def _decimated(src: Any, max_pixels: int) -> np.ndarray:
    factor = max(1.0, math.sqrt(src.height * src.width / max(1, max_pixels)))
    shape = (src.count, max(1, int(src.height / factor)), max(1, int(src.width / factor)))
    return src.read(out_shape=shape)


def _windows(height: int, width: int, block: int) -> Iterator[Any]:
    from rasterio.windows import Window

    for row in range(0, height, block):
        for col in range(0, width, block):
            yield Window(col, row, min(block, width - col), min(block, height - row))


def match_raster(
    src_path: str | os.PathLike[str],
    ref_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    max_pixels: int = 1_000_000,
    block: int = 1024,
) -> Path:
    """Write ``src_path`` histogram-matched to ``ref_path``, band by band, window by window.

    Both histograms come from decimated reads of at most ``max_pixels`` pixels; each file's own
    nodata (and NaN) is left out and kept. The output has the source's dtype, CRS and transform,
    is tiled and DEFLATE-compressed, and appears at ``out_path`` only when complete.

    Raises:
        LandlearnError: A file is missing or unreadable, band counts differ, or a band is empty.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(ref_path) as ref:
            ref_data, ref_nodata = _decimated(ref, max_pixels), ref.nodata
    except RasterioIOError as err:
        raise LandlearnError(f"cannot read reference raster: {err}", ref_path) from err
    out = Path(out_path)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with rasterio.open(src_path) as src:
            if src.count != ref_data.shape[0]:
                raise LandlearnError(
                    f"has {src.count} bands but reference {ref_path} has {ref_data.shape[0]}",
                    src_path,
                )
            sample, nodata = _decimated(src, max_pixels), src.nodata
            tables = []
            for b in range(src.count):
                src_ok, ref_ok = _valid(sample[b], nodata), _valid(ref_data[b], ref_nodata)
                if not src_ok.any() or not ref_ok.any():
                    where = ref_path if src_ok.any() else src_path
                    raise LandlearnError(f"band {b + 1} has no valid pixel", where)
                tables.append(_lookup(sample[b][src_ok], ref_data[b][ref_ok]))
            profile = {**src.profile, "driver": "GTiff", "tiled": True, "compress": "deflate"}
            profile |= {"blockxsize": 256, "blockysize": 256}
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.descriptions = src.descriptions
                for window in _windows(src.height, src.width, block):
                    data = src.read(window=window)
                    for b, (xp, fp) in enumerate(tables):
                        ok = _valid(data[b], nodata)
                        data[b][ok] = _cast(np.interp(data[b][ok], xp, fp), data.dtype)
                    dst.write(data, window=window)
        os.replace(tmp, out)
    except RasterioIOError as err:
        raise LandlearnError(f"cannot read source raster: {err}", src_path) from err
    finally:
        tmp.unlink(missing_ok=True)
    log.debug("matched %s to %s into %s", src_path, ref_path, out)
    return out
