"""Side products of a map: class areas or value statistics (JSON), a QGIS style, a PNG preview."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError

from landlearn.atomic import dump_json
from landlearn.colors import hex_color
from landlearn.conventions import IGNORE_INDEX
from landlearn.mapping.writer import temp_path
from landlearn.safety import MARK, Output, map_run_id

log = logging.getLogger(__name__)

__all__ = [
    "AreaCounter",
    "MapFiles",
    "ValueSummary",
    "stale_sidecars",
    "write_marked_json",
    "write_preview",
    "write_qgis_style",
    "write_sidecars",
    "write_value_preview",
    "write_value_style",
]

RUN_ID_KEY = "landlearn-run-id"
"""PNG text key and QGIS-style comment key holding the map's ``LANDLEARN_RUN_ID``."""


class MapFiles:
    """The files of one map: targets, their temporary names, and the order they are committed.

    Every temporary name is fixed (and so registered for clean-up) before anything is written;
    :meth:`pairs` commits the sidecars first and the GeoTIFF last (see
    :func:`landlearn.atomic.commit_renames`).
    """

    def __init__(self, out: Path, preview: bool) -> None:
        self.tif = out
        self.aux = Path(f"{out}.aux.xml")
        self.areas = out.with_name(f"{out.stem}.areas.json")
        self.style = out.with_suffix(".qml")
        self.preview = out.with_name(f"{out.stem}.preview.png") if preview else None
        self.tmp = {
            p: temp_path(p, ".tmp" + "".join(p.suffixes[-1:]))
            for p in (self.areas, self.style, self.preview)
            if p is not None
        }

    def outputs(self) -> list[Output]:
        """What :func:`landlearn.safety.check_outputs` checks before the map starts."""
        out = [Output(self.tif, "map"), Output(self.aux, "map_aux", self.tif)]
        out.append(Output(self.areas, "map_areas", self.tif))
        out.append(Output(self.style, "map_style", self.tif))
        if self.preview is not None:
            out.append(Output(self.preview, "map_preview", self.tif))
        return out

    def sidecar_pairs(self) -> list[tuple[Path, Path]]:
        """(temporary, target) of the sidecars that exist, in commit order."""
        return [(tmp, final) for final, tmp in self.tmp.items() if tmp.exists()]

    def cleanup(self) -> None:
        """Remove every temporary sidecar (missing ones are fine)."""
        for tmp in self.tmp.values():
            tmp.unlink(missing_ok=True)


def stale_sidecars(out: str | os.PathLike[str]) -> list[Path]:
    """Sidecars of a landlearn map whose run id differs from the map's own ``LANDLEARN_RUN_ID``.

    Empty after every normal run (the group is committed with interrupts held). Only a SIGKILL
    or a power cut in the instant between two renames leaves new sidecars beside the old map;
    this names them. Maps and sidecars written before run ids (no id on either side) pass.
    """
    tif = Path(out)
    run_id = map_run_id(tif)
    if run_id is None:
        return []
    files = MapFiles(tif, preview=True)
    found: dict[Path, str] = {}
    areas = _read_json(files.areas)
    if isinstance(areas, dict):
        found[files.areas] = str(areas.get("run_id", ""))
    for path in (files.style, files.aux):
        text = _read_text(path)
        if text is not None:
            m = re.search(r"(?:landlearn-run-id=|<MDI key=\"RUN_ID\">)([0-9a-f]*)", text)
            found[path] = m.group(1) if m else ""
    if files.preview is not None and files.preview.exists():
        found[files.preview] = _png_run_id(files.preview)
    return [p for p, rid in found.items() if rid != run_id]


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _read_json(path: Path) -> object:
    text = _read_text(path)
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        return None


def _png_run_id(path: Path) -> str:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return str(im.info.get(RUN_ID_KEY, ""))
    except OSError:
        return ""


_EARTH_RADIUS_M = 6371007.2  # authalic sphere


class AreaCounter:
    """Counts pixels per class while a map streams out, and turns them into areas.

    Projected CRS: pixel area from the transform, in the CRS's units (km² when metric).
    Geographic CRS: each row's pixel area on the authalic sphere (approximate, km²).
    No CRS: pixels only.
    """

    def __init__(self, class_names: list[str], crs: CRS | None, transform: Affine) -> None:
        self.class_names = class_names
        self.crs, self.transform = crs, transform
        self.pixels = np.zeros(256, np.int64)
        self.area = np.zeros(256, np.float64)
        self._geographic = bool(crs is not None and crs.is_geographic)
        self._rotated = transform.b != 0 or transform.d != 0

    def add(self, y0: int, classes: np.ndarray) -> None:
        """Count a block of class indexes whose first row is scene row ``y0``."""
        flat = classes.ravel()
        self.pixels += np.bincount(flat, minlength=256)
        if self._geographic and not self._rotated:
            rows = np.arange(y0, y0 + classes.shape[0], dtype=np.float64)
            w = np.broadcast_to(self._row_area_km2(rows)[:, None], classes.shape)
            self.area += np.bincount(flat, weights=w.ravel(), minlength=256)

    def _row_area_km2(self, rows: np.ndarray) -> np.ndarray:
        t = self.transform
        lat1 = np.radians(t.f + rows * t.e)
        lat2 = np.radians(t.f + (rows + 1) * t.e)
        dlon = math.radians(abs(t.a))
        return (_EARTH_RADIUS_M**2 * dlon * np.abs(np.sin(lat1) - np.sin(lat2))) / 1e6

    def summary(self) -> dict[str, Any]:
        """JSON-ready dict: per class pixels and area, plus the unit and how it was computed."""
        t = self.transform
        pixel_area = abs(t.a * t.e - t.b * t.d)
        unit: str | None
        note: str
        areas: np.ndarray | None
        if self.crs is None:
            unit, note, areas = None, "raster has no CRS; areas in pixels only", None
        elif self._geographic:
            unit = "km2"
            note = "geographic CRS; areas on a sphere of radius 6371007.2 m (approximate)"
            areas = self.area
        else:
            try:
                name, factor = self.crs.linear_units_factor
            except CRSError:  # an engineering / local CRS: neither projected nor geographic
                name, factor = "unknown units", 0.0
            if factor and factor > 0:
                unit, note = "km2", f"projected CRS in {name}"
                areas = self.pixels * pixel_area * factor**2 / 1e6
            else:
                unit, note = f"{name}^2", "projected CRS with non-metric units"
                areas = self.pixels * pixel_area
        classes = []
        for i, name in enumerate(self.class_names):
            entry: dict[str, Any] = {"index": i, "name": name, "pixels": int(self.pixels[i])}
            if areas is not None:
                entry["area"] = float(areas[i])
            classes.append(entry)
        valid = int(self.pixels[: len(self.class_names)].sum())
        return {
            "unit": unit,
            "note": note,
            "crs": self.crs.to_string() if self.crs is not None else None,
            "pixel_area_crs_units": pixel_area if self.crs is not None else None,
            "valid_pixels": valid,
            "nodata_pixels": int(self.pixels[IGNORE_INDEX]),
            "classes": classes,
        }


def write_marked_json(tmp: Path, data: dict[str, Any]) -> Path:
    """Write a landlearn-marked JSON file of a group of map outputs.

    Write ``data`` as JSON to ``tmp``, marked as landlearn's: ``tmp`` is a temporary name of
    a group of map outputs, renamed with the others once all are written (unlike
    ``landlearn.atomic.write_json``, which renames its one file itself).
    """
    tmp.write_text(dump_json({"written_by": MARK, **data}), encoding="utf-8")
    return tmp


def write_qgis_style(
    tmp: Path, class_names: list[str], colors: list[list[int]], run_id: str = ""
) -> Path:
    """Write the QGIS layer style of a class map.

    A QGIS layer style (``<map>.qml``, loaded by QGIS as the default style of ``<map>.tif``):
    band 1 drawn as paletted classes with their names and colours, no-data transparent.

    Without it QGIS draws a raster of three or more bands as RGB. Written to ``tmp``.
    """
    from xml.sax.saxutils import quoteattr

    entries = "\n".join(
        f'        <paletteEntry value="{i}" alpha="255" label={quoteattr(name)} '
        f'color="{hex_color(rgb)}"/>'
        for i, (name, rgb) in enumerate(zip(class_names, colors, strict=False))
    )
    text = f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<!-- written by landlearn; landlearn-run-id={run_id} -->
<qgis version="3.28.0" styleCategories="AllStyleCategories">
  <pipe>
    <provider>
      <resampling enabled="false" zoomedInResamplingMethod="nearestNeighbour"
                  zoomedOutResamplingMethod="nearestNeighbour" maxOversampling="2"/>
    </provider>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0" invertColors="0"/>
    <rasterresampler maxOversample="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""
    tmp.write_text(text)
    return tmp


def write_preview(
    map_path: str | os.PathLike[str],
    tmp: Path,
    target: Path,
    class_names: list[str],
    colors: list[list[int]],
    max_size: int = 1024,
    run_id: str = "",
) -> Path:
    """A PNG of the class band (decimated read, uses overviews) with a legend, into ``tmp``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    with rasterio.open(map_path) as src:
        scale = max(src.width, src.height) / max_size
        shape = (
            max(1, round(src.height / max(scale, 1))),
            max(1, round(src.width / max(scale, 1))),
        )
        cls = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    lut = np.full((256, 4), 255, np.uint8)
    lut[IGNORE_INDEX] = (255, 255, 255, 0)
    for i, rgb in enumerate(colors):
        lut[i, :3] = rgb[:3]
    rgba = lut[cls]
    present = sorted(set(np.unique(cls).tolist()) - {IGNORE_INDEX})
    h, w = shape
    fig = Figure(figsize=(min(12.0, 3 + 6 * w / max(h, w)), 6 * h / max(h, w) + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.66, 0.94))
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(target.name.removesuffix(".preview.png"), fontsize=10)
    handles = [
        Patch(facecolor=hex_color(colors[i]), edgecolor="k", label=class_names[i])
        for i in range(len(class_names))
        if i in present or len(class_names) <= 20
    ]
    ax.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9, frameon=False
    )
    fig.savefig(
        tmp,
        format="png",
        bbox_inches="tight",
        pad_inches=0.15,
        metadata={"Software": MARK, RUN_ID_KEY: run_id},
    )
    return tmp


class ValueSummary:
    """Per-target statistics of a value map (pixel regression), streamed block by block.

    Pixels, mean, std, min and max of each target over the valid pixels, plus a histogram on a
    fixed range (grown once, from the first block) whose 2nd and 98th percentiles give the
    colour stretch of the QGIS style and the preview.
    """

    BINS = 512

    def __init__(self, names: list[str], units: list[str]) -> None:
        self.names, self.units = names, units
        t = len(names)
        self.pixels = np.zeros(t, np.int64)
        self.total = np.zeros(t, np.float64)
        self.squares = np.zeros(t, np.float64)
        self.lo = np.full(t, np.inf)
        self.hi = np.full(t, -np.inf)
        self.nodata = 0
        self._hist: list[np.ndarray] = [np.zeros(self.BINS, np.int64) for _ in range(t)]
        self._range: list[tuple[float, float] | None] = [None] * t

    def add(self, values: np.ndarray, valid: np.ndarray) -> None:
        """Count a block: ``values`` (T, h, w) in units, ``valid`` (h, w)."""
        self.nodata += int((~valid).sum())
        for i in range(len(self.names)):
            v = values[i][valid].astype(np.float64)
            if v.size == 0:
                continue
            self.pixels[i] += v.size
            self.total[i] += v.sum()
            self.squares[i] += (v * v).sum()
            self.lo[i] = min(self.lo[i], float(v.min()))
            self.hi[i] = max(self.hi[i], float(v.max()))
            rng = self._range[i]
            if rng is None:
                lo, hi = float(v.min()), float(v.max())
                pad = max(hi - lo, abs(hi), 1e-6)
                rng = self._range[i] = (lo - pad, hi + pad)
            hist, _ = np.histogram(np.clip(v, *rng), bins=self.BINS, range=rng)
            self._hist[i] += hist

    def stretch(self, i: int = 0) -> tuple[float, float]:
        """The 2nd and 98th percentiles of target ``i`` (the colour range of style and preview)."""
        rng = self._range[i]
        if rng is None or self.pixels[i] == 0:
            return 0.0, 1.0
        cdf = np.cumsum(self._hist[i]) / self._hist[i].sum()
        edges = np.linspace(rng[0], rng[1], self.BINS + 1)
        lo = float(edges[int(np.searchsorted(cdf, 0.02))])
        hi = float(edges[min(int(np.searchsorted(cdf, 0.98)) + 1, self.BINS)])
        lo, hi = max(lo, float(self.lo[i])), min(hi, float(self.hi[i]))
        return (lo, hi) if hi > lo else (float(self.lo[i]), float(self.lo[i]) + 1e-6)

    def summary(self) -> dict[str, Any]:
        """JSON-ready dict: per target pixels, mean, std, min, max and the colour stretch."""
        targets = []
        for i, (name, unit) in enumerate(zip(self.names, self.units, strict=True)):
            n = int(self.pixels[i])
            entry: dict[str, Any] = {"name": name, "unit": unit or None, "pixels": n}
            if n:
                mean = self.total[i] / n
                entry |= {
                    "mean": float(mean),
                    "std": float(math.sqrt(max(self.squares[i] / n - mean * mean, 0.0))),
                    "min": float(self.lo[i]),
                    "max": float(self.hi[i]),
                    "p2_p98": list(self.stretch(i)),
                }
            targets.append(entry)
        return {
            "valid_pixels": int(self.pixels[0]) if len(self.names) else 0,
            "nodata_pixels": self.nodata,
            "targets": targets,
        }


def write_value_style(tmp: Path, lo: float, hi: float, label: str, run_id: str = "") -> Path:
    """Write the QGIS layer style of a value map: band 1 as viridis from ``lo`` to ``hi``."""
    from xml.sax.saxutils import quoteattr

    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    stops = np.linspace(0.0, 1.0, 9)
    items = "\n".join(
        f'          <item value="{lo + s * (hi - lo):.6g}" alpha="255" '
        f'label="{lo + s * (hi - lo):.4g}" color="{_hex(cmap(s))}"/>'
        for s in stops
    )
    text = f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<!-- written by landlearn; landlearn-run-id={run_id} -->
<qgis version="3.28.0" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" alphaBand="-1"
                    classificationMin="{lo:.6g}" classificationMax="{hi:.6g}" nodataColor="">
      <rasterTransparency/>
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0"
                         minimumValue="{lo:.6g}" maximumValue="{hi:.6g}"
                         labelPrecision="4">
{items}
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <rasterresampler maxOversample="2"/>
  </pipe>
  <layerName>{quoteattr(label)[1:-1]}</layerName>
  <blendMode>0</blendMode>
</qgis>
"""
    tmp.write_text(text)
    return tmp


def _hex(rgba: tuple[float, float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgba[:3])


def write_value_preview(
    map_path: str | os.PathLike[str],
    tmp: Path,
    target: Path,
    lo: float,
    hi: float,
    label: str,
    max_size: int = 1024,
    run_id: str = "",
) -> Path:
    """A PNG of band 1 of a value map (viridis over ``lo``–``hi``, no-data transparent)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with rasterio.open(map_path) as src:
        scale = max(src.width, src.height) / max_size
        shape = (
            max(1, round(src.height / max(scale, 1))),
            max(1, round(src.width / max(scale, 1))),
        )
        values = src.read(1, out_shape=shape, resampling=Resampling.average)
    h, w = shape
    fig = Figure(figsize=(min(12.0, 3 + 6 * w / max(h, w)), 6 * h / max(h, w) + 0.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.72, 0.94))
    shown = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=lo, vmax=hi,
                      interpolation="nearest")  # fmt: skip
    ax.set_axis_off()
    ax.set_title(target.name.removesuffix(".preview.png"), fontsize=10)
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label)
    fig.savefig(
        tmp,
        format="png",
        bbox_inches="tight",
        pad_inches=0.15,
        metadata={"Software": MARK, RUN_ID_KEY: run_id},
    )
    return tmp


def write_sidecars(
    files: MapFiles,
    cog: Path,
    summary: dict[str, Any],
    class_names: list[str],
    colors: list[list[int]],
    values: ValueSummary | None,
    label: str,
    run_id: str,
) -> None:
    """Write a map's sidecars under their temporary names: areas, QGIS style, preview.

    A value map (``values`` given) gets the viridis style and preview over the 2nd–98th
    percentiles of its first target (``label``); a class map the paletted ones.
    """
    write_marked_json(files.tmp[files.areas], summary)
    if values is not None:
        lo, hi = values.stretch(0)
        write_value_style(files.tmp[files.style], lo, hi, label, run_id)
        if files.preview is not None:
            write_value_preview(
                cog, files.tmp[files.preview], files.preview, lo, hi, label, run_id=run_id
            )
        return
    write_qgis_style(files.tmp[files.style], class_names, colors, run_id)
    if files.preview is not None:
        write_preview(
            cog, files.tmp[files.preview], files.preview, class_names, colors, run_id=run_id
        )
