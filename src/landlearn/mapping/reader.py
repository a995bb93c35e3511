"""Open a scene, choose its bands by name, and read reflection-padded windows in a thread.

Band names are matched case-insensitively against the scene's band descriptions (or its colour
interpretation: red, green, blue), with common aliases (``red`` = ``B04`` = ``B4``, ``nir`` =
``B08`` …). A scene without descriptions and with exactly the bands the bundle needs is taken in
order, with a warning. A pixel is no-data when it is NaN / infinite in any band, equals the
nodata value in every band, or is masked by the file's alpha or mask band.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.windows import Window

from landlearn.errors import LandlearnError
from landlearn.inputs import check_input_file, read_error
from landlearn.mapping.blend import BlockGrid, TileGrid, reflect_index

log = logging.getLogger(__name__)

__all__ = [
    "Batch",
    "Source",
    "WindowReader",
    "alpha_bands",
    "band_key",
    "check_scene",
    "open_scene",
    "select_bands",
    "uses_mask",
]

# Sentinel-2 band ↔ common names; a name's key set is everything it is also called.
_ALIASES: list[set[str]] = [
    {"b1", "coastal", "aerosol", "coastalaerosol", "ca"},
    {"b2", "blue", "b"},
    {"b3", "green", "g"},
    {"b4", "red", "r"},
    {"b5", "rededge1", "re1", "rededge"},
    {"b6", "rededge2", "re2"},
    {"b7", "rededge3", "re3"},
    {"b8", "nir", "nir1", "nearinfrared"},
    {"b8a", "nir08", "narrownir", "nirnarrow", "rededge4", "re4"},
    {"b9", "watervapour", "watervapor", "wv"},
    {"b10", "cirrus"},
    {"b11", "swir1", "swir16"},
    {"b12", "swir2", "swir22"},
]


def band_key(name: str) -> str:
    """Canonical spelling: lower case, letters and digits only, no zero padding (B04 → b4)."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return re.sub(r"^b0+(\d)", r"b\1", key)


def _keys(name: str) -> set[str]:
    key = band_key(name)
    for group in _ALIASES:
        if key in group:
            return group
    return {key}


def open_scene(path: str | os.PathLike[str]) -> rasterio.DatasetReader:
    """Open a raster; ``LandlearnError`` when it is missing or not a raster GDAL can read.

    A local path must be a regular, readable file (a FIFO would block forever); GDAL's own
    names (``/vsicurl/...``, ``DRIVER:file:subdataset``) go to GDAL as they are.
    """
    check_scene(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
    except RasterioIOError:
        raise LandlearnError("not a raster GDAL can read", path) from None
    if src.count == 0 or src.width == 0 or src.height == 0:
        src.close()
        raise LandlearnError("raster has no bands or no pixels", path)
    if np.dtype(src.dtypes[0]).kind == "c":
        src.close()
        raise LandlearnError(f"complex pixels ({src.dtypes[0]}) are not supported", path)
    return src


def check_scene(path: str | os.PathLike[str]) -> None:
    """A local scene path is a regular, readable file; GDAL's virtual names pass unchecked.

    Raises:
        LandlearnError: missing, a FIFO / device / folder, a symlink loop, unreadable.
    """
    if not _gdal_name(path):
        check_input_file(path, "scene (a raster file)")


def _gdal_name(path: str | os.PathLike[str]) -> bool:
    """A GDAL virtual path or subdataset name rather than a file on disk."""
    name = os.fspath(path)
    if os.path.lexists(name):
        return False
    return name.startswith("/vsi") or re.match(r"^[A-Za-z][A-Za-z0-9_]+:", name) is not None


def _scene_names(src: rasterio.DatasetReader) -> list[str | None]:
    names: list[str | None] = list(src.descriptions)
    if any(names):
        return names
    interp = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue"}
    from_colors = [interp.get(ci) for ci in src.colorinterp]
    return from_colors if sum(n is not None for n in from_colors) == 3 else [None] * src.count


def select_bands(
    src: rasterio.DatasetReader,
    band_names: Sequence[str],
    bands: Sequence[str | int] | None = None,
) -> list[int]:
    """1-based band indexes of ``src`` in the order of ``band_names``.

    A band GDAL flags as alpha that the bundle reads (a 4-band uint8 GeoTIFF written with
    default settings is RGBA, so its 4th band, e.g. NIR, is "alpha") is read as data with a
    warning, and the file's alpha mask is then not applied (:func:`uses_mask`).

    Args:
        src: the open scene.
        band_names: what the bundle expects, in order.
        bands: explicit choice (names or 1-based indexes), one per bundle band.

    Raises:
        LandlearnError: a band is missing, ambiguous or out of range.
    """
    chosen = _select_bands(src, band_names, bands)
    for i in sorted(set(alpha_bands(src)) & set(chosen)):
        as_name = band_names[chosen.index(i)]
        log.warning(
            "%s: band %d is flagged as alpha by GDAL but the bundle reads it as %r: read as "
            "data, not as a mask (only the no-data value marks missing pixels)",
            src.name, i, as_name,
        )  # fmt: skip
    return chosen


def _select_bands(
    src: rasterio.DatasetReader,
    band_names: Sequence[str],
    bands: Sequence[str | int] | None,
) -> list[int]:
    path, n = src.name, src.count
    names = _scene_names(src)
    if bands is not None:
        if len(bands) != len(band_names):
            raise LandlearnError(
                f"--bands gives {len(bands)} bands, the bundle needs {len(band_names)} "
                f"({', '.join(band_names)})",
                path,
            )
        return [_resolve(b, names, n, path) for b in bands]
    found: list[int] = []
    missing: list[str] = []
    for want in band_names:
        hits = [i + 1 for i, have in enumerate(names) if have and _keys(have) & _keys(want)]
        exact = [i for i in hits if band_key(names[i - 1] or "") == band_key(want)]
        hits = exact or hits
        if hits:
            found.append(hits[0])
        else:
            missing.append(want)
    if not missing:
        return found
    unnamed = [i + 1 for i, have in enumerate(names) if not have]
    if any(names) and len(unnamed) == len(missing):  # e.g. RGB colour interp + one more band
        log.warning(
            "%s: taking unnamed band(s) %s as %s",
            path,
            ", ".join(map(str, unnamed)),
            ", ".join(missing),
        )
        fill = dict(zip(missing, unnamed, strict=True))
        out, k = [], 0
        for want in band_names:
            if want in fill:
                out.append(fill[want])
            else:
                out.append(found[k])
                k += 1
        return out
    if not any(names) and n == len(band_names):
        log.warning(
            "%s: bands have no names; taking its %d bands in order as %s",
            path,
            n,
            ", ".join(band_names),
        )
        return list(range(1, n + 1))
    have = ", ".join(x or f"#{i + 1}" for i, x in enumerate(names))
    raise LandlearnError(
        f"scene lacks band(s) {', '.join(missing)} that the bundle needs "
        f"(scene has {n}: {have}); pass --bands to choose them",
        path,
    )


def _resolve(band: str | int, names: list[str | None], n: int, path: str) -> int:
    if isinstance(band, int) or str(band).isdigit():
        i = int(band)
        if not 1 <= i <= n:
            raise LandlearnError(f"band {i} out of range; the scene has bands 1..{n}", path)
        return i
    hits = [i + 1 for i, have in enumerate(names) if have and _keys(have) & _keys(str(band))]
    if not hits:
        raise LandlearnError(f"scene has no band named {band!r}", path)
    return hits[0]


@dataclass(frozen=True)
class Source:
    """One raster the model reads: its bands, and whether to warp it onto the first's grid.

    ``name`` is the bundle's input name (None for a single-input bundle); the bands of all
    sources are stacked in source order, each source's ``indexes`` (1-based) in order.
    """

    name: str | None
    path: str
    indexes: list[int]
    warp: str | None = None  # a resampling name: read through a WarpedVRT on the first's grid

    def open(self, first: Source) -> Any:
        """A context manager of the open raster (on the first source's grid when ``warp``)."""
        return _open_source(self, first)


@contextlib.contextmanager
def _open_source(source: Source, first: Source) -> Iterator[Any]:
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    with rasterio.open(source.path) as src:
        if source.warp is None:
            yield src
            return
        with rasterio.open(first.path) as ref:
            grid = {"crs": ref.crs, "transform": ref.transform, "width": ref.width,
                    "height": ref.height}  # fmt: skip
        # an alpha band marks what lies outside the source's footprint (not read as data)
        with WarpedVRT(src, resampling=Resampling[source.warp], add_alpha=True, **grid) as vrt:
            yield vrt


@dataclass
class Batch:
    """Windows read for one model call."""

    indexes: list[int]  # window numbers (row-major)
    image: np.ndarray  # (B, C, th, tw) float32 raw units, sources stacked; no-data: anything
    valid: np.ndarray  # (B, th, tw) bool: valid in every source


_DONE = object()


class WindowReader:
    """A thread reading ``grid``'s windows, batched, into a bounded queue (prefetch).

    The thread opens its own handle (GDAL handles are not thread-safe). Iterate to get
    :class:`Batch` objects in window order; errors in the thread re-raise in the iterator.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        grid: TileGrid | BlockGrid,
        batch_size: int,
        prefetch: int = 2,
        pin_memory: bool = False,
    ) -> None:
        self.sources, self.grid = list(sources), grid
        self.batch_size, self.pin_memory = batch_size, pin_memory
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="landlearn-reader", daemon=True)

    def __enter__(self) -> WindowReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the thread and drop what it had read ahead."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def __iter__(self) -> WindowReader:
        return self

    def __next__(self) -> Batch:
        item = self._queue.get()
        if item is _DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, Batch)
        return item

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with contextlib.ExitStack() as stack:
                    srcs = [stack.enter_context(s.open(self.sources[0])) for s in self.sources]
                    for batch in self._batches(srcs):
                        if not self._put(batch):
                            return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises
            self._put(exc)

    def _batches(self, srcs: list[Any]) -> Iterator[Batch]:
        g, bs = self.grid, self.batch_size
        c = sum(len(s.indexes) for s in self.sources)
        spans, at = [], 0
        for s in self.sources:
            spans.append(slice(at, at + len(s.indexes)))
            at += len(s.indexes)
        one = np.empty((g.tile_h, g.tile_w), bool)
        for start in range(0, len(g), bs):
            idx = list(range(start, min(start + bs, len(g))))
            image = np.empty((len(idx), c, g.tile_h, g.tile_w), np.float32)
            valid = np.empty((len(idx), g.tile_h, g.tile_w), bool)
            for k, i in enumerate(idx):
                r, col = divmod(i, g.cols)
                for j, (source, src) in enumerate(zip(self.sources, srcs, strict=True)):
                    into = valid[k] if j == 0 else one
                    read_window(src, source.indexes, g.y0(r), g.x0(col), g, image[k, spans[j]],
                                into)  # fmt: skip
                    if j:
                        valid[k] &= one
            if self.pin_memory:
                import torch

                yield Batch(idx, torch.from_numpy(image).pin_memory().numpy(), valid)
            else:
                yield Batch(idx, image, valid)
            if self._stop.is_set():
                return


def alpha_bands(src: rasterio.DatasetReader) -> list[int]:
    """1-based indexes of the bands whose colour interpretation is alpha."""
    return [i + 1 for i, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha]


def uses_mask(src: rasterio.DatasetReader, indexes: Sequence[int]) -> bool:
    """Whether the file's mask marks no-data.

    Whether the file's mask marks no-data: a per-dataset mask, or an alpha band the model
    does not read (one it reads as data is no mask).
    """
    flags = src.mask_flag_enums[0]
    if MaskFlags.alpha in flags and set(alpha_bands(src)) & set(indexes):
        return False
    return MaskFlags.per_dataset in flags or MaskFlags.alpha in flags


def read_window(
    src: rasterio.DatasetReader,
    indexes: list[int],
    y0: int,
    x0: int,
    grid: TileGrid | BlockGrid,
    out: np.ndarray,
    valid: np.ndarray,
) -> None:
    """Read one window (scene px, may reach outside) with reflection padding into ``out``."""
    ys = reflect_index(np.arange(y0, y0 + grid.tile_h), grid.height)
    xs = reflect_index(np.arange(x0, x0 + grid.tile_w), grid.width)
    ya, yb, xa, xb = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    win = Window(xa, ya, xb - xa, yb - ya)
    try:
        data = src.read(indexes, window=win, out_dtype="float32")  # (C, h, w)
        # NaN / inf stay "valid" here: the model screens, counts and voids them
        # (landlearn.finite); a NaN nodata value is such a pixel too.
        ok = np.ones(data.shape[1:], bool)
        nodata = src.nodata
        if nodata is not None and not np.isnan(nodata):
            ok &= ~(data == np.float32(nodata)).all(axis=0)
        if uses_mask(src, indexes):
            ok &= src.dataset_mask(window=win) > 0
    except RasterioError as err:  # a truncated file opens fine and fails on a block past its end
        raise read_error(err, src.name, win) from err
    iy, ix = np.ix_(ys - ya, xs - xa)
    out[...] = data[:, iy, ix]
    valid[...] = ok[iy, ix]
