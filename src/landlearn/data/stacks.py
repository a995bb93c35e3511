"""Band-per-file archives as multi-band GeoTIFFs, so any landlearn raster datamodule reads them.

SSL4EO-S12 and BigEarthNet store one GeoTIFF per band at the band's own resolution (S2: 10, 20
and 60 m). :func:`stack_band_files` writes them as one GeoTIFF on the finest band's grid (each
band resampled onto it); :func:`ssl4eo_pairs` and :func:`bigearthnet_pairs` do that for every
co-located Sentinel-2 / Sentinel-1 pair of an archive and return ``{"s2": path, "s1": path}``
mappings, ready for ``AlignedRasterDataModule(inputs=…)`` or its ``unlabelled_inputs``.
:func:`ssl4eo_dates` gives the same location's S2 dates as ``{"t0", "t1"}`` pairs (a
date-vs-date view). Band names are the Sentinel-2 names Sen1Floods11 uses (``B1`` … ``B8A`` …
``B12``; ``VV``, ``VH``), so stacks of several archives can be mixed band for band.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.warp import reproject

from landlearn.atomic import atomic_path
from landlearn.data.aligned import resampling_method
from landlearn.data.io import raster_info
from landlearn.errors import LandlearnError

__all__ = [
    "S2_BANDS_L1C",
    "S2_BANDS_NO_B10",
    "bigearthnet_pairs",
    "ssl4eo_dates",
    "ssl4eo_pairs",
    "stack_band_files",
]

log = logging.getLogger(__name__)

#: Sentinel-2 L1C's 13 bands in the order of Sen1Floods11's ``S2Hand`` files.
S2_BANDS_L1C = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
#: The 12 bands every archive here has (L2A products have no B10).
S2_BANDS_NO_B10 = tuple(b for b in S2_BANDS_L1C if b != "B10")
S1_BANDS = ("VV", "VH")


def stack_band_files(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    resampling: str = "bilinear",
) -> Path:
    """Write one-band rasters of one footprint as a float32 GeoTIFF on the finest one's grid.

    Args:
        paths: one single-band raster per output band, in band order.
        out: the GeoTIFF to write (through a temporary name; an existing file is replaced).
        names: band descriptions; default the files' stems.
        resampling: how coarser bands are brought onto the grid (a rasterio name).

    Raises:
        LandlearnError: no paths, an unreadable or multi-band file, files in different CRSs,
            or a name count that differs from the file count.
    """
    if not paths:
        raise LandlearnError("give at least one band file")
    names = list(names) if names is not None else [Path(p).stem for p in paths]
    if len(names) != len(paths):
        raise LandlearnError(f"{len(names)} band names for {len(paths)} band files")
    infos = [raster_info(p) for p in paths]
    for path, info in zip(paths, infos, strict=True):
        if info.count != 1:
            raise LandlearnError(f"expected a one-band file, found {info.count} bands", path)
        if info.crs != infos[0].crs:
            raise LandlearnError(f"CRS {info.crs} differs from {infos[0].crs}", path)
    ref = min(infos, key=lambda i: abs(i.transform.a) * abs(i.transform.e))
    stack = np.empty((len(paths), ref.height, ref.width), dtype=np.float32)
    method = resampling_method(resampling)
    for k, path in enumerate(paths):
        try:
            with rasterio.open(path) as src:
                reproject(source=rasterio.band(src, 1), destination=stack[k],
                          dst_transform=ref.transform, dst_crs=ref.crs,
                          resampling=method)  # fmt: skip
        except RasterioError as err:
            raise LandlearnError(f"cannot read the band ({err})", path) from None
    profile = {"driver": "GTiff", "height": ref.height, "width": ref.width, "count": len(paths),
               "dtype": "float32", "crs": ref.crs, "transform": ref.transform,
               "compress": "deflate"}  # fmt: skip
    with atomic_path(out) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(stack)
            for k, name in enumerate(names, start=1):
                dst.set_band_description(k, name)
    return Path(out)


def _band_file(folder: Path, band: str) -> Path:
    """``B8A.tif`` / ``<patch>_B08.tif`` style: the file of ``band`` in ``folder``."""
    wanted = {band, band.replace("B", "B0") if len(band) == 2 else band}
    for path in sorted(folder.glob("*.tif")):
        stem = path.stem.rsplit("_", 1)[-1]
        if stem in wanted:
            return path
    raise LandlearnError(f"no file for band {band}", folder)


def _date(name: str) -> dt.date:
    """The first ``YYYYMMDD`` in a product or folder name."""
    for part in name.replace("T", "_").split("_"):
        if len(part) == 8 and part.isdigit():
            return dt.date(int(part[:4]), int(part[4:6]), int(part[6:]))
    raise LandlearnError("no acquisition date (YYYYMMDD) in the name", name)


def _folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def ssl4eo_pairs(
    root: str | os.PathLike[str], out_dir: str | os.PathLike[str],
    bands: Sequence[str] = S2_BANDS_NO_B10, product: str = "s2c",
) -> list[dict[str, str]]:  # fmt: skip
    """Every SSL4EO-S12 location's S2 dates, each with the S1 date closest to it, as stacks.

    ``root`` holds ``s1/``, ``s2a/`` (L2A) and ``s2c/`` (L1C), each ``<location>/<product>/``
    with one GeoTIFF per band. ``product`` picks the S2 level; S1 (VV, VH) is on a slightly
    different grid, which ``AlignedRasterDataModule`` resamples onto S2's.
    """
    root, out = Path(root), Path(out_dir)
    locations = _folders(root / product)
    if not locations or not (root / "s1").is_dir():
        raise LandlearnError(f"expected s1/ and {product}/ location folders", root)
    pairs = []
    for location in locations:
        s1_dates = {_date(p.name): p for p in _folders(root / "s1" / location.name)}
        if not s1_dates:
            raise LandlearnError("no Sentinel-1 products for this location", location)
        for s2 in _folders(location):
            when = _date(s2.name)
            nearest = min(s1_dates, key=lambda d: abs((d - when).days))
            s1 = s1_dates[nearest]
            stem = f"ssl4eo_{location.name}_{when:%Y%m%d}"
            pair = {
                "s2": str(stack_band_files([_band_file(s2, b) for b in bands],
                                           out / f"{stem}_s2.tif", bands)),
                "s1": str(stack_band_files([_band_file(s1, b) for b in S1_BANDS],
                                           out / f"{stem}_s1.tif", S1_BANDS)),
            }  # fmt: skip
            log.info("SSL4EO %s: S2 %s with S1 %s", location.name, when, nearest)
            pairs.append(pair)
    return pairs


def ssl4eo_dates(
    root: str | os.PathLike[str], out_dir: str | os.PathLike[str],
    bands: Sequence[str] = S2_BANDS_NO_B10, product: str = "s2c",
) -> list[dict[str, str]]:  # fmt: skip
    """Consecutive S2 dates of each SSL4EO-S12 location as ``{"t0": path, "t1": path}``."""
    root, out = Path(root), Path(out_dir)
    locations = _folders(root / product)
    if not locations:
        raise LandlearnError(f"expected {product}/ location folders", root)
    pairs = []
    for location in locations:
        dates = sorted(_folders(location), key=lambda p: _date(p.name))
        stacks = [
            str(stack_band_files([_band_file(d, b) for b in bands],
                                 out / f"ssl4eo_{location.name}_{_date(d.name):%Y%m%d}_s2.tif",
                                 bands))
            for d in dates
        ]  # fmt: skip
        pairs += [{"t0": a, "t1": b} for a, b in itertools.pairwise(stacks)]
    return pairs


def bigearthnet_pairs(
    root: str | os.PathLike[str], out_dir: str | os.PathLike[str],
    bands: Sequence[str] = S2_BANDS_NO_B10,
) -> list[dict[str, str]]:  # fmt: skip
    """Every BigEarthNet-MM S1 patch with its ``corresponding_s2_patch``, as stacks."""
    from landlearn.data.bigearthnet import _pairs

    out = Path(out_dir)
    pairs = []
    for s1, s2, _ in _pairs(Path(root)):
        stem = f"bigearthnet_{s2.name}"
        pairs.append({
            "s2": str(stack_band_files([_band_file(s2, b) for b in bands],
                                       out / f"{stem}_s2.tif", bands)),
            "s1": str(stack_band_files([_band_file(s1, b) for b in S1_BANDS],
                                       out / f"{stem}_s1.tif", S1_BANDS)),
        })  # fmt: skip
    return pairs
