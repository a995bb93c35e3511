"""Read images, masks and raster metadata with one clear error per bad file.

GeoTIFFs go through rasterio (GDAL); JPEG / PNG / other formats through PIL. Band numbers follow
rasterio and GDAL: they start at 1, so band ``k`` is ``B<k>`` in generic band names.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image, UnidentifiedImageError
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from landlearn.errors import LandlearnError
from landlearn.inputs import check_input_file, read_error

__all__ = [
    "IMAGE_SUFFIXES",
    "RASTER_SUFFIXES",
    "RasterInfo",
    "generic_band_names",
    "raster_info",
    "read_mask",
    "read_native",
    "read_raster",
]

log = logging.getLogger(__name__)

RASTER_SUFFIXES = frozenset({".tif", ".tiff"})
"""Suffixes read through rasterio (GDAL)."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})
"""Suffixes that image folders pick up."""

_PIL_BAND_NAMES = {
    "RGB": ["red", "green", "blue"],
    "RGBA": ["red", "green", "blue", "alpha"],
}


@dataclass(frozen=True)
class RasterInfo:
    """What a file's header says, without reading its pixels."""

    path: str
    count: int
    height: int
    width: int
    dtype: str
    band_names: list[str] = field(default_factory=list)
    crs: Any = None
    transform: Any = None
    nodata: float | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(count, height, width)``."""
        return (self.count, self.height, self.width)


def generic_band_names(count: int) -> list[str]:
    """``["B1", ..., "B<count>"]``, the names of bands without a description."""
    return [f"B{i}" for i in range(1, count + 1)]


def _check_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    # GDAL needs UTF-8 names; PIL opens any name the OS gives.
    return check_input_file(p, "raster or image", utf8_name=_is_raster(p))


def _is_raster(path: Path) -> bool:
    return path.suffix.lower() in RASTER_SUFFIXES


def _open_rasterio(path: Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as err:
        raise LandlearnError("not a raster (GDAL could not open it)", path) from err


def _band_indexes(bands: Sequence[int] | None, count: int, path: Path) -> list[int]:
    if bands is None:
        return list(range(1, count + 1))
    bad = [b for b in bands if not 1 <= int(b) <= count]
    if bad or not bands:
        raise LandlearnError(
            f"bands {list(bands)} not valid for a {count}-band file; band numbers start at 1",
            path,
        )
    return [int(b) for b in bands]


def _open_pil(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise LandlearnError(f"corrupt or unreadable image ({err})", path) from err
    return img


_PIL_CONVERT = {
    "1": "L",
    "P": "RGB",
    "PA": "RGBA",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}


def _pil_array(img: Image.Image) -> np.ndarray:
    """A PIL image as (C, H, W) in its native dtype."""
    if img.mode in _PIL_CONVERT:
        img = img.convert(_PIL_CONVERT[img.mode])
    arr = np.asarray(img)
    arr = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    return np.ascontiguousarray(arr)


def _pil_band_names(img: Image.Image, count: int) -> list[str]:
    names = _PIL_BAND_NAMES.get(_PIL_CONVERT.get(img.mode, img.mode))
    return list(names) if names and len(names) == count else generic_band_names(count)


def _window_slices(window: Window | None) -> tuple[slice, slice]:
    if window is None:
        return slice(None), slice(None)
    (r0, r1), (c0, c1) = window.toranges()
    return slice(int(r0), int(r1)), slice(int(c0), int(c1))


def read_native(
    path: str | os.PathLike[str],
    window: Window | None = None,
    bands: Sequence[int] | None = None,
) -> np.ndarray:
    """Read ``(C, H, W)`` in the file's own dtype (no conversion, no NaN check).

    Raises:
        LandlearnError: missing, empty, corrupt or non-raster file, or bad band numbers.
    """
    p = _check_file(path)
    if _is_raster(p):
        with _open_rasterio(p) as src:
            indexes = _band_indexes(bands, src.count, p)
            try:
                return src.read(indexes, window=window)
            except RasterioError as err:
                raise read_error(err, p, window) from err
    arr = _pil_array(_open_pil(p))
    indexes = _band_indexes(bands, arr.shape[0], p)
    rows, cols = _window_slices(window)
    return np.ascontiguousarray(arr[[i - 1 for i in indexes], rows, cols])


def read_raster(
    path: str | os.PathLike[str],
    window: Window | None = None,
    bands: Sequence[int] | None = None,
    allow_nan: bool = True,
) -> np.ndarray:
    """Read an image as float32 ``(C, H, W)`` in raw units; grayscale gives one band.

    Args:
        path: GeoTIFF (read by rasterio) or any image PIL can read (JPEG, PNG, ...).
        window: rasterio window to read; only that part of a GeoTIFF is read from disk.
        bands: band numbers starting at 1 (rasterio's convention); ``None`` reads all.
        allow_nan: when False, a NaN pixel raises instead of being returned.

    Raises:
        LandlearnError: missing, empty or corrupt file, text named ``.tif``, bad band numbers,
            or NaN when ``allow_nan`` is False.
    """
    arr = read_native(path, window=window, bands=bands).astype(np.float32, copy=False)
    if not allow_nan:
        nan = np.isnan(arr)
        if nan.any():
            band, row, col = (int(v) for v in np.argwhere(nan)[0])
            raise LandlearnError(
                f"NaN in band {band + 1} at row {row}, col {col}; NaN is not allowed here", path
            )
    return arr


def read_mask(
    path: str | os.PathLike[str], window: Window | None = None, palette_as_rgb: bool = False
) -> np.ndarray:
    """Read a mask: ``(H, W)`` class codes, or ``(H, W, 3)`` uint8 for an RGB-coded mask.

    Palette PNGs give their palette indices (the usual way index masks are stored), or with
    ``palette_as_rgb`` the palette's colours: a caller holding a colour table asks for these,
    because a palette's order need not be the table's (Dubai's tile 2 stores Land at index 0,
    the table has Building first). An alpha channel is dropped. Integer dtypes are kept as
    stored (uint8, int16, uint16, ...).

    Raises:
        LandlearnError: missing, empty or corrupt file, or a band count other than 1, 3 or 4.
    """
    p = _check_file(path)
    if _is_raster(p):
        arr = read_native(p, window=window)
    else:
        img = _open_pil(p)
        if img.mode in ("P", "PA") and palette_as_rgb:
            arr = np.moveaxis(np.asarray(img.convert("RGB")), -1, 0)
        elif img.mode in ("P", "L", "I", "I;16", "1"):
            arr = np.asarray(img.convert("L") if img.mode == "1" else img)[None]
        else:
            arr = _pil_array(img)
        rows, cols = _window_slices(window)
        arr = arr[:, rows, cols]
    if np.issubdtype(arr.dtype, np.floating):
        raise LandlearnError(f"mask has float values ({arr.dtype}); expected integer codes", p)
    if arr.shape[0] == 1:
        return np.ascontiguousarray(arr[0])
    if arr.shape[0] in (3, 4):
        return np.ascontiguousarray(np.moveaxis(arr[:3], 0, -1).astype(np.uint8, copy=False))
    raise LandlearnError(f"mask has {arr.shape[0]} bands; expected 1 (codes) or 3 (RGB)", p)


def raster_info(path: str | os.PathLike[str]) -> RasterInfo:
    """Band count, band names, CRS, transform, shape, nodata and dtype from the header.

    Band names are the GeoTIFF band descriptions, ``B1..Bn`` where unset, and
    ``red, green, blue`` for RGB JPEG / PNG. Non-GeoTIFF files have ``crs=None``.

    Raises:
        LandlearnError: missing, empty or unreadable file.
    """
    p = _check_file(path)
    if _is_raster(p):
        with _open_rasterio(p) as src:
            names = [
                d if d else g
                for d, g in zip(src.descriptions, generic_band_names(src.count), strict=True)
            ]
            return RasterInfo(
                path=str(p),
                count=src.count,
                height=src.height,
                width=src.width,
                dtype=str(src.dtypes[0]),
                band_names=names,
                crs=src.crs,
                transform=src.transform,
                nodata=src.nodata,
            )
    try:
        with Image.open(p) as img:
            width, height = img.size
            count = Image.getmodebands(_PIL_CONVERT.get(img.mode, img.mode))
            names = _pil_band_names(img, count)
            dtype = "uint16" if img.mode.startswith("I;16") else "uint8"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise LandlearnError(f"corrupt or unreadable image ({err})", p) from err
    return RasterInfo(str(p), count, height, width, dtype, names)
