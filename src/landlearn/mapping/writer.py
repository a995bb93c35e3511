"""Write a map as a Cloud-Optimized GeoTIFF without ever leaving a partial file at the target.

A writer thread takes finished rows from a bounded queue and writes them to a compressed,
striped GeoTIFF under a temporary name beside the target; at the end GDAL's COG driver copies
it to a tiled COG with overviews (another temporary name), and :meth:`MapWriter.commit` renames
that over the target. An error, Ctrl-C or kill before that leaves the target untouched.

All bands are ``uint8`` (a GeoTIFF has one data type, and a colour table needs 8 or 16 bits):
band 1 is the class index (no-data 255); the other bands hold values in [0, 1]
(confidence, probabilities, ensemble variance) or in [0, ln K] nats (entropy, mutual
information) quantised to 0–254 with 255 as no-data; a JEM's energy band spans a range set by
its validation energies. Each band's GDAL scale and offset turn the stored value back into its
unit: ``stored × scale + offset``; ``rasterio``'s ``src.scales`` / ``src.offsets`` give them.

A pixel-regression map is ``float32`` instead: one band per target in its unit (the band
description ``name (unit)`` and the band tags ``TARGET`` / ``UNIT``), then a ``std`` band per
target with uncertainty, NaN as no-data, and no colour table.

Colour table: TIFF allows a palette only on single-band files (GDAL refuses ``SetColorTable`` on
a multi-sample TIFF), so band 1's colour table goes to GDAL's own sidecar ``OUT.tif.aux.xml``
(PAM), which GDAL, rasterio and QGIS read with the file (``src.colormap(1)``). The class colours
are also in the ``CLASS_COLORS`` metadata item of the COG itself.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from landlearn.conventions import IGNORE_INDEX

log = logging.getLogger(__name__)

__all__ = [
    "QUANT_MAX",
    "BandSpec",
    "MapWriter",
    "copy_to_cog",
    "pam_colortable",
    "quantize",
    "temp_path",
]

QUANT_MAX = 254
"""Largest stored value of a quantised band; 255 is no-data."""


@dataclass
class BandSpec:
    """One output band: its description, ``value = stored × scale + offset``, and band tags."""

    name: str
    scale: float = 1.0
    tags: dict[str, str] = field(default_factory=dict)
    offset: float = 0.0


def quantize(values: np.ndarray, top: float, valid: np.ndarray) -> np.ndarray:
    """Map ``[0, top]`` to ``0..QUANT_MAX`` (rounded, clipped); ``IGNORE_INDEX`` where invalid."""
    q = np.rint(np.clip(values * (QUANT_MAX / top), 0, QUANT_MAX)).astype(np.uint8)
    q[~valid] = IGNORE_INDEX
    return q


def temp_path(target: Path, suffix: str) -> Path:
    """A hidden, unique name beside ``target`` (same file system, so ``os.replace`` is atomic)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}{suffix}")


def pam_colortable(colors: list[list[int]] | None, count: int = 1, run_id: str = "") -> str:
    """GDAL PAM XML for a map.

    GDAL PAM XML giving band 1 a 256-entry colour table (no-data 255 transparent); bands
    2..``count`` are declared plain data (not green / blue / alpha). The map's run id goes in
    a ``LANDLEARN`` metadata domain (not the default one, whose items would mask the COG's).
    ``colors=None`` (a value map): every band plain data, no colour table.
    """
    meta = (
        f'  <Metadata domain="LANDLEARN">\n    <MDI key="RUN_ID">{run_id}</MDI>\n  </Metadata>\n'
        if run_id
        else ""
    )
    if colors is None:
        bands = "".join(
            f'  <PAMRasterBand band="{i}">\n    <ColorInterp>Undefined</ColorInterp>\n'
            "  </PAMRasterBand>\n"
            for i in range(1, count + 1)
        )
        return f"<PAMDataset>\n{meta}{bands}</PAMDataset>\n"
    entries = []
    for i in range(256):
        r, g, b = (int(v) for v in colors[i][:3]) if i < len(colors) else (0, 0, 0)
        a = 0 if i == IGNORE_INDEX or i >= len(colors) else 255
        entries.append(f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>')
    body = "\n".join(entries)
    others = "".join(
        f'  <PAMRasterBand band="{i}">\n    <ColorInterp>Undefined</ColorInterp>\n'
        "  </PAMRasterBand>\n"
        for i in range(2, count + 1)
    )
    return (
        f'<PAMDataset>\n{meta}  <PAMRasterBand band="1">\n    <ColorInterp>Palette</ColorInterp>\n'
        f"    <ColorTable>\n{body}\n    </ColorTable>\n  </PAMRasterBand>\n{others}"
        "</PAMDataset>\n"
    )


def copy_to_cog(
    src: str | os.PathLike[str], dst: Path, width: int, height: int, classes: bool
) -> None:
    """Copy a raster GDAL reads (a staged GeoTIFF, a VRT of blocks) to a COG at ``dst``.

    Overviews: nearest neighbour for a class map, average for a value map.
    """
    rasterio.shutil.copy(
        src,
        dst,
        driver="COG",
        BLOCKSIZE=512 if max(width, height) > 1024 else 256,
        COMPRESS="DEFLATE",
        RESAMPLING="NEAREST" if classes else "AVERAGE",
        OVERVIEWS="AUTO",
        NUM_THREADS="ALL_CPUS",
        BIGTIFF="IF_SAFER",
    )


_DONE = object()


class MapWriter:
    """Streams rows into a temporary GeoTIFF (thread), then converts it to a COG.

    Use as a context manager; on an exception every temporary file is removed.
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        profile: dict[str, Any],
        bands: list[BandSpec],
        colors: list[list[int]] | None,
        tags: dict[str, str],
        queue_size: int = 2,
        dtype: str = "uint8",
    ) -> None:
        """Stage ``bands`` for ``target``; ``dtype="float32"`` (NaN no-data) for a value map."""
        self.target = Path(target)
        self.bands, self.colors, self.tags = bands, colors, tags
        self.width, self.height = int(profile["width"]), int(profile["height"])
        self._profile = {
            "driver": "GTiff",
            "width": self.width,
            "height": self.height,
            "count": len(bands),
            "dtype": dtype,
            "nodata": IGNORE_INDEX if dtype == "uint8" else float("nan"),
            "crs": profile.get("crs"),
            "transform": profile.get("transform"),
            "tiled": False,
            "blockysize": 16,
            "compress": "zstd",
            "zstd_level": 1,
            "interleave": "band",
            "bigtiff": "if_safer",
            # four byte bands would otherwise read as RGBA: band 4 as transparency in QGIS
            "photometric": "minisblack",
            "alpha": "no",
        }
        self.stage = temp_path(self.target, ".stage.tif")
        self.cog = temp_path(self.target, ".tmp.tif")
        self.pam = temp_path(self.target, ".tmp.aux.xml")
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="landlearn-writer", daemon=True)
        self._closed = False

    def __enter__(self) -> MapWriter:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()

    def write(self, y0: int, rows: np.ndarray) -> None:
        """Queue ``rows`` (bands, h, width) of the map's dtype for scene rows ``y0 … y0 + h``."""
        while True:
            self._raise_if_failed()
            try:
                self._queue.put((y0, rows), timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
        if not self._thread.is_alive() and not self._closed:
            raise RuntimeError("map writer thread stopped")

    def _run(self) -> None:
        try:
            with rasterio.open(self.stage, "w", **self._profile) as dst:
                self._describe(dst)
                while True:
                    item = self._queue.get()
                    if item is _DONE or self._stop.is_set():
                        break
                    y0, rows = cast(tuple[int, np.ndarray], item)
                    dst.write(rows, window=Window(0, y0, self.width, rows.shape[1]))
        except BaseException as exc:  # re-raised in the producer by write() / finish()
            self._error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def _describe(self, dst: rasterio.io.DatasetWriter) -> None:
        dst.update_tags(**self.tags)
        for i, band in enumerate(self.bands, start=1):
            dst.set_band_description(i, band.name)
            if band.tags:
                dst.update_tags(i, **band.tags)
        if self.colors is None:  # a value map: GDAL's unit type, what QGIS and gdalinfo show
            dst.units = tuple(b.tags.get("UNIT", "") for b in self.bands)
        dst.scales = tuple(b.scale for b in self.bands)
        dst.offsets = tuple(b.offset for b in self.bands)

    def finish(self) -> Path:
        """Flush, close and convert to a COG (temporary name); returns its path."""
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(_DONE, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        self._closed = True
        if self._error is not None:
            raise self._error
        copy_to_cog(self.stage, self.cog, self.width, self.height, self.colors is not None)
        self.stage.unlink(missing_ok=True)
        run_id = self.tags.get("LANDLEARN_RUN_ID", "")
        self.pam.write_text(pam_colortable(self.colors, len(self.bands), run_id))
        return self.cog

    def pending(self) -> list[tuple[Path, Path]]:
        """(temporary, target) pairs to commit: the colour-table sidecar, then the COG."""
        return [(self.pam, Path(f"{self.target}.aux.xml")), (self.cog, self.target)]

    def commit(self) -> Path:
        """Rename the colour-table sidecar, then the finished COG, over the targets."""
        from landlearn.atomic import commit_renames

        commit_renames(self.pending())
        log.info("wrote %s", self.target)
        return self.target

    def abort(self) -> None:
        """Stop the thread and remove every temporary file."""
        self._stop.set()
        try:
            self._queue.put_nowait(_DONE)
        except queue.Full:
            pass
        self._thread.join(timeout=30)
        self._closed = True
        for p in (self.stage, self.cog, self.pam, Path(f"{self.stage}.aux.xml")):
            p.unlink(missing_ok=True)
