"""Chips of several rasters on one grid (S2 + S1 + a DEM ...), with an optional label raster.

Each input is a named raster (the sample key, e.g. ``s2``, ``s1``); the first input's grid (CRS,
transform, shape) is the reference. An input or label on another grid is read through a
``rasterio.vrt.WarpedVRT`` onto the reference grid: inputs with a named resampling (``bilinear``
by default, any ``rasterio.enums.Resampling`` name), the label always with ``nearest``. Pixels a
warped input does not cover read as NaN.

A sample is ``{name: float32 (C_name, H, W) for each input} | {"mask": int64 (H, W)}`` in raw
units. As in :class:`~landlearn.data.rasters.RasterPairDataset` (whose chip windows,
``ChipSampler``, this reuses): label no-data and codes missing from ``remap`` become
``IGNORE_INDEX``; where any input is NaN or its file's no-data value, the mask is
``IGNORE_INDEX`` and NaN input values become 0; chips reaching past their region are padded
(inputs by reflection, the mask with ``IGNORE_INDEX``). ``keep_nodata=True`` (for statistics)
instead keeps NaN and turns each input's no-data value into NaN.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from torch.utils.data import Dataset

from landlearn.conventions import IGNORE_INDEX
from landlearn.data.io import RasterInfo, raster_info
from landlearn.data.rasters import ChipSampler, check_remap, pad_chip, point_mask, remap_codes
from landlearn.errors import LandlearnError
from landlearn.inputs import read_error
from landlearn.registry import did_you_mean

__all__ = ["AlignedRasterDataset", "RasterInput", "parse_inputs", "resampling_method"]

log = logging.getLogger(__name__)


def resampling_method(name: str) -> Resampling:
    """The ``rasterio.enums.Resampling`` member called ``name`` (``nearest``, ``bilinear`` ...).

    Raises:
        LandlearnError: an unknown name (with the nearest one).
    """
    names = [m.name for m in Resampling]
    if name not in names:
        raise LandlearnError(f"unknown resampling {name!r}; {did_you_mean(name, names)}")
    return Resampling[name]


@dataclass(frozen=True)
class RasterInput:
    """One named input raster: its file, which bands, their names and how to resample it.

    Args:
        name: the sample key.
        path: the GeoTIFF.
        bands: band numbers starting at 1; default all.
        band_names: the names the bands must have (their count is checked); default the file's
            band descriptions.
        resampling: how to resample it onto the reference grid when its grid differs.
        mean: train-split mean per band, raw units (skips computing it; with ``std``).
        std: train-split std per band.
    """

    name: str
    path: str
    bands: tuple[int, ...] | None = None
    band_names: tuple[str, ...] | None = None
    resampling: str = "bilinear"
    mean: tuple[float, ...] | None = field(default=None, compare=False)
    std: tuple[float, ...] | None = field(default=None, compare=False)


_LABEL = "\0label"  # key of the label's handle; not a valid input name in a config
_TARGET = "\0target"  # key of the pixel-target raster's handle and facts
_INPUT_KEYS = ("path", "bands", "band_names", "resampling", "mean", "std")


def parse_inputs(
    inputs: Mapping[str, Any], resampling: str = "bilinear", what: str = "inputs"
) -> list[RasterInput]:
    """``{name: path}`` or ``{name: {path, bands, band_names, resampling, mean, std}}`` → inputs.

    Raises:
        LandlearnError: no inputs, an unknown key, a missing path, or a bad resampling name.
    """
    if not isinstance(inputs, Mapping) or not inputs:
        raise LandlearnError(f"{what}: give at least one named input raster ({{s2: S2.tif}})")
    out = []
    for name, value in inputs.items():
        entry: Any = {"path": value} if isinstance(value, str | os.PathLike) else value
        for key in entry if isinstance(entry, Mapping) else ():
            if key not in _INPUT_KEYS:
                raise LandlearnError(f"{what}.{name}: unknown key {key!r}; "
                                     f"{did_you_mean(str(key), _INPUT_KEYS)}")  # fmt: skip
        if not isinstance(entry, Mapping) or "path" not in entry:
            raise LandlearnError(f"{what}.{name}: give a path, or a mapping with a path")
        method = str(entry.get("resampling") or resampling)
        resampling_method(method)
        if (entry.get("mean") is None) != (entry.get("std") is None):
            raise LandlearnError(f"{what}.{name}: give both mean and std, or neither")

        out.append(RasterInput(
            str(name), os.fspath(entry["path"]), _tuple(entry, "bands", int),
            _tuple(entry, "band_names", str), method, _tuple(entry, "mean", float),
            _tuple(entry, "std", float),
        ))  # fmt: skip
    return out


def _tuple(entry: Mapping[str, Any], key: str, cast: type) -> tuple[Any, ...] | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise LandlearnError(f"{key} must be a list, got {value!r}")
    return tuple(cast(v) for v in value)


def _same_grid(a: RasterInfo, b: RasterInfo) -> bool:
    if a.crs != b.crs or (a.height, a.width) != (b.height, b.width):
        return False
    if a.transform is None or b.transform is None:
        return a.transform is b.transform
    return bool(a.transform.almost_equals(b.transform, precision=1e-6))


def _bounds(info: RasterInfo, crs: Any) -> tuple[float, float, float, float]:
    t = info.transform
    xs = (t.c, t.c + t.a * info.width)
    ys = (t.f, t.f + t.e * info.height)
    box = (min(xs), min(ys), max(xs), max(ys))
    if info.crs is None or crs is None or info.crs == crs:
        return box
    left, bottom, right, top = transform_bounds(info.crs, crs, *box)
    return float(left), float(bottom), float(right), float(top)


def _check_overlap(ref: RasterInfo, other: RasterInfo, what: str, ref_what: str) -> None:
    if ref.transform is None or other.transform is None:
        raise LandlearnError(f"{what} has no geotransform; cannot place it on {ref_what}'s grid",
                             other.path)  # fmt: skip
    if (ref.crs is None) != (other.crs is None):
        raise LandlearnError(f"{what} and {ref_what} differ in having a CRS", other.path)
    a, b = _bounds(ref, ref.crs), _bounds(other, ref.crs)
    if a[0] >= b[2] or b[0] >= a[2] or a[1] >= b[3] or b[1] >= a[3]:
        raise LandlearnError(
            f"{what}'s footprint does not overlap {ref_what}'s ({ref.path}); "
            "give rasters of the same place",
            other.path,
        )


class AlignedRasterDataset(ChipSampler, Dataset[dict[str, torch.Tensor]]):
    """Chips of named input rasters (and a label raster) on the first input's grid.

    Args:
        inputs: the input rasters, in model order; the first one's grid is the reference.
        label: single-band class-code raster, or None for samples without ``mask``.
        chip_size: chip height and width in pixels.
        sampler: ``"random"`` or ``"grid"`` (see ``ChipSampler``).
        length: number of random chips; defaults to the number of grid chips.
        remap: ``{code: class}``; unmapped codes become ``IGNORE_INDEX``.
        windows: regions to take chips from; default the whole reference grid.
        seed: seed of the random chips.
        keep_nodata: keep NaN (and no-data values as NaN) instead of filling, for statistics.
        target: a raster of continuous pixel targets (its ``bands``, one per target), read in
            its own units as ``target`` ``(T, H, W)`` float32, NaN where unknown (its no-data,
            outside it, or where an input has no data); None for no pixel target.
        point_fraction: keep this share of the label's pixels as sparse points, the rest
            ``IGNORE_INDEX`` (see :func:`point_mask`: the same pixels in every chip and epoch).

    Raises:
        LandlearnError: a missing or unreadable file, bad band numbers, band names whose count
            differs from the bands read, rasters whose footprints do not overlap, a label with
            more than one band.
    """

    def __init__(
        self,
        inputs: Sequence[RasterInput],
        label: str | os.PathLike[str] | None = None,
        chip_size: int = 64,
        sampler: str = "random",
        length: int | None = None,
        remap: Mapping[int, int] | None = None,
        windows: Sequence[Window] | None = None,
        seed: int = 0,
        keep_nodata: bool = False,
        target: RasterInput | None = None,
        point_fraction: float = 1.0,
    ) -> None:
        if not inputs:
            raise LandlearnError("give at least one input raster")
        if not 0.0 < float(point_fraction) <= 1.0:
            raise LandlearnError(f"point fraction must be in (0, 1], got {point_fraction}")
        self.point_fraction = float(point_fraction)
        names = [i.name for i in inputs]
        if len(set(names)) != len(names):
            raise LandlearnError(f"input names repeat: {names}")
        self.inputs = list(inputs)
        self.infos = {i.name: raster_info(i.path) for i in self.inputs}
        ref = self.infos[names[0]]
        self.label_path = None if label is None else Path(label)
        self.label_info = None if label is None else raster_info(label)
        if self.label_info is not None and self.label_info.count != 1:
            raise LandlearnError(
                f"label raster has {self.label_info.count} bands; expected 1", self.label_path
            )
        self.band_names: dict[str, list[str]] = {}
        self.warped: dict[str, bool] = {}
        for spec in self.inputs:
            info = self.infos[spec.name]
            self.band_names[spec.name] = _band_names(spec, info)
            self.warped[spec.name] = not _same_grid(ref, info)
            if self.warped[spec.name]:
                _check_overlap(ref, info, f"input {spec.name!r}", f"input {names[0]!r}")
        self.target = target
        self.target_names: list[str] = []  # the target bands' names (descriptions or given)
        self.target_warped = False
        self.target_info: RasterInfo | None = None
        if target is not None:
            if label is not None:
                raise LandlearnError("give a label raster or a target raster, not both")
            info = raster_info(target.path)
            self.target_info = info
            self.target_names = _band_names(target, info)
            self.target_warped = not _same_grid(ref, info)
            if self.target_warped:
                _check_overlap(ref, info, "target", f"input {names[0]!r}")
        self.label_warped = self.label_info is not None and not _same_grid(ref, self.label_info)
        if self.label_info is not None and self.label_warped:
            _check_overlap(ref, self.label_info, "label", f"input {names[0]!r}")
        ChipSampler.__init__(self, ref.height, ref.width, chip_size, sampler, length, windows, seed)
        self.crs, self.transform = ref.crs, ref.transform
        self.remap = check_remap(remap)
        self.label_nodata = None if self.label_info is None else self.label_info.nodata
        self.keep_nodata = bool(keep_nodata)
        self._handles: dict[str, Any] | None = None
        self._pid = -1

    @property
    def input_names(self) -> list[str]:
        """Sample keys of the inputs, in order."""
        return [i.name for i in self.inputs]

    def nodata(self, name: str) -> float | None:
        """The no-data value of input ``name`` as read (NaN for a warped input)."""
        return math.nan if self.warped[name] else self.infos[name].nodata

    def __getstate__(self) -> dict[str, Any]:
        # Open GDAL handles cannot cross process boundaries; each worker reopens its own.
        state = self.__dict__.copy()
        state["_handles"], state["_pid"] = None, -1
        return state

    def _open_one(self, path: str | os.PathLike[str], warp: bool, method: str) -> Any:
        src = rasterio.open(path)
        if not warp:
            return src
        # Float with NaN no-data: pixels the source does not cover are told apart from data.
        return WarpedVRT(
            src, crs=self.crs, transform=self.transform, width=self.width, height=self.height,
            resampling=resampling_method(method), dtype="float32", nodata=math.nan,
        )  # fmt: skip

    def _open(self) -> dict[str, Any]:
        if self._handles is None or self._pid != os.getpid():
            handles = {
                i.name: self._open_one(i.path, self.warped[i.name], i.resampling)
                for i in self.inputs
            }
            if self.label_path is not None:
                handles[_LABEL] = self._open_one(self.label_path, self.label_warped, "nearest")
            if self.target is not None:
                t = self.target
                handles[_TARGET] = self._open_one(t.path, self.target_warped, t.resampling)
            self._handles, self._pid = handles, os.getpid()
        return self._handles

    def _read_input(self, spec: RasterInput, src: Any, inner: Window) -> np.ndarray:
        try:
            data = src.read(list(spec.bands) if spec.bands else None, window=inner)
        except RasterioError as err:
            raise read_error(err, spec.path, inner) from err
        data = data.astype(np.float32, copy=False)
        nodata = self.nodata(spec.name)
        if nodata is not None and not math.isnan(nodata):
            data = np.where(data == nodata, np.float32(np.nan), data)
        return data

    def _read_mask(self, src: Any, inner: Window) -> np.ndarray:
        assert self.label_path is not None
        try:
            codes = src.read(1, window=inner)
        except RasterioError as err:
            raise read_error(err, self.label_path, inner) from err
        outside = np.isnan(codes) if codes.dtype.kind == "f" else None  # a warped label
        if outside is not None:
            codes = np.where(outside, 0, codes).astype(np.int64)
        mask = remap_codes(codes, self.remap)
        if self.label_nodata is not None:
            mask[codes == self.label_nodata] = IGNORE_INDEX
        if outside is not None:
            mask[outside] = IGNORE_INDEX
        if self.point_fraction < 1.0:
            off = (int(inner.row_off), int(inner.col_off))
            mask[~point_mask(off, mask.shape, self.point_fraction, self.seed)] = IGNORE_INDEX
        if self.remap is None and mask.size and (mask.min() < 0 or mask.max() > IGNORE_INDEX):
            bad = int(mask.min() if mask.min() < 0 else mask.max())
            raise LandlearnError(
                f"label code {bad} is not a class index 0..{IGNORE_INDEX}; pass remap "
                "(codes it leaves out, such as a -1 no-data, become ignored)",
                self.label_path,
            )
        return mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        inner, pads = self.read_window(index)
        handles = self._open()
        arrays = {i.name: self._read_input(i, handles[i.name], inner) for i in self.inputs}
        invalid = np.zeros((int(inner.height), int(inner.width)), dtype=bool)
        for data in arrays.values():
            invalid |= np.isnan(data).any(axis=0)
        mask = None
        if self.label_path is not None:
            mask = self._read_mask(handles[_LABEL], inner)
            mask[invalid] = IGNORE_INDEX
        sample: dict[str, torch.Tensor] = {}
        padded = None
        for k, (name, data) in enumerate(arrays.items()):
            if not self.keep_nodata and invalid.any():
                data = np.nan_to_num(data, nan=0.0)
            data, moved = pad_chip(data, mask if k == 0 else None, pads)
            sample[name] = torch.from_numpy(np.ascontiguousarray(data))
            padded = moved if k == 0 else padded
        if padded is not None:
            sample["mask"] = torch.from_numpy(np.ascontiguousarray(padded))
        if self.target is not None:
            values = self._read_target(handles[_TARGET], inner)
            values[:, invalid] = np.nan
            top, bottom, left, right = pads
            values = np.pad(values, ((0, 0), (top, bottom), (left, right)),
                            constant_values=np.nan)  # fmt: skip
            sample["target"] = torch.from_numpy(np.ascontiguousarray(values))
        return sample

    def _read_target(self, src: Any, inner: Window) -> np.ndarray:
        """``(T, h, w)`` float32 targets, NaN for no-data (the raster's, or outside a warp)."""
        assert self.target is not None
        assert self.target_info is not None
        t = self.target
        try:
            data = src.read(list(t.bands) if t.bands else None, window=inner)
        except RasterioError as err:
            raise read_error(err, t.path, inner) from err
        data = data.astype(np.float32)
        nodata = math.nan if self.target_warped else self.target_info.nodata
        if nodata is not None and not math.isnan(nodata):
            data[data == nodata] = np.nan
        data[~np.isfinite(data)] = np.nan
        return data

    def target_stats(self) -> tuple[list[float], list[float], list[int]]:
        """Per target: mean, std (population) and count of known pixels in these regions."""
        if self.target is None:
            raise RuntimeError("no target raster")
        src = self._open()[_TARGET]
        t = len(self.target_names)
        n = np.zeros(t, np.float64)
        s1 = np.zeros(t, np.float64)
        s2 = np.zeros(t, np.float64)
        for inner in self.grid_read_windows():
            v = self._read_target(src, inner).reshape(t, -1).astype(np.float64)
            ok = ~np.isnan(v)
            n += ok.sum(1)
            s1 += np.where(ok, v, 0.0).sum(1)
            s2 += np.where(ok, v * v, 0.0).sum(1)
        if (n == 0).any():
            empty = self.target_names[int(np.argmin(n))]
            raise LandlearnError(
                f"target {empty!r} has no known pixel in the training region", self.target.path
            )
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
        return mean.tolist(), std.tolist(), n.astype(int).tolist()

    def label_counts(self) -> np.ndarray:
        """Pixels per class index 0..254 in this dataset's regions, from the label alone."""
        counts = np.zeros(IGNORE_INDEX, dtype=np.int64)
        if self.label_path is None:
            return counts
        src = self._open()[_LABEL]
        for inner in self.grid_read_windows():
            mask = self._read_mask(src, inner)
            counts += np.bincount(mask[mask != IGNORE_INDEX].ravel(), minlength=IGNORE_INDEX)[
                :IGNORE_INDEX
            ]
        return counts


def _band_names(spec: RasterInput, info: RasterInfo) -> list[str]:
    bands = list(spec.bands) if spec.bands else list(range(1, info.count + 1))
    bad = [b for b in bands if not 1 <= b <= info.count]
    if bad:
        raise LandlearnError(
            f"input {spec.name!r}: bands {bad} not valid for a {info.count}-band raster; "
            "numbers start at 1",
            info.path,
        )
    if spec.band_names is not None and len(spec.band_names) != len(bands):
        raise LandlearnError(
            f"input {spec.name!r}: expected {len(spec.band_names)} bands "
            f"({', '.join(spec.band_names[:13])}), got {len(bands)}; check the file or band_names",
            info.path,
        )
    return list(spec.band_names) if spec.band_names else [info.band_names[b - 1] for b in bands]
