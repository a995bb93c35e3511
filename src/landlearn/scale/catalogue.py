"""After ``map_many``: a VRT mosaic of the maps and a catalogue (JSON and GeoJSON footprints).

``mosaic.vrt`` draws every map of one CRS into one virtual raster at the finest resolution
among them: the class band with its colour table and the confidence band (a value map: its
target bands), read from the COGs by window, nothing copied. Maps in several CRSs get one mosaic
per CRS (``mosaic_EPSG_32633.vrt`` …). ``catalogue.json`` lists each scene with its status,
footprint, size and per-class areas (km²), plus the totals; ``footprints.geojson`` holds the
footprints in WGS 84 with the same per-class areas as properties, for QGIS.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.warp import transform as warp_points

from landlearn.atomic import dump_json, write_atomic
from landlearn.mapping.vrt import VrtSource, band_info, vrt_xml

__all__ = ["CATALOGUE", "FOOTPRINTS", "MapInfo", "map_info", "write_catalogue", "write_mosaics"]

log = logging.getLogger(__name__)

CATALOGUE = "catalogue.json"
FOOTPRINTS = "footprints.geojson"
SPARSE = 0.01  # warn when the maps cover less than this share of their mosaic


@dataclass
class MapInfo:
    """What the mosaic and the catalogue need of one finished map."""

    name: str
    path: Path
    crs: rasterio.crs.CRS | None
    transform: Affine
    width: int
    height: int
    bands: list[int]
    summary: dict[str, Any]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the map's CRS."""
        t = self.transform
        xs = [t.c, t.c + self.width * t.a]
        ys = [t.f, t.f + self.height * t.e]
        return min(xs), min(ys), max(xs), max(ys)


def map_info(name: str, path: Path) -> MapInfo:
    """Read a finished map's grid and its ``areas.json``."""
    with rasterio.open(path) as src:
        tags = src.tags()
        targets = json.loads(tags.get("TARGETS", "[]"))
        bands = list(range(1, len(targets) + 1)) if targets else [1, min(2, src.count)]
        crs, transform, width, height = src.crs, src.transform, src.width, src.height
    try:
        summary = json.loads(path.with_name(f"{path.stem}.areas.json").read_text())
    except (OSError, ValueError):
        summary = {}
    return MapInfo(name, path, crs, transform, width, height, list(dict.fromkeys(bands)), summary)


def write_mosaics(out_dir: Path, maps: Sequence[MapInfo]) -> list[Path]:
    """One VRT per CRS over ``maps`` (north-up maps with a CRS); returns the files written."""
    groups: dict[str, list[MapInfo]] = {}
    for m in maps:
        if m.crs is None or m.transform.b or m.transform.d:
            continue  # no CRS, or rotated: nothing to place it by
        groups.setdefault(m.crs.to_wkt(), []).append(m)
    written: list[Path] = []
    for members in groups.values():
        crs = members[0].crs
        assert crs is not None
        if len(groups) == 1:
            name = "mosaic.vrt"
        else:
            epsg = crs.to_epsg()
            name = f"mosaic_EPSG_{epsg}.vrt" if epsg else f"mosaic_{len(written) + 1}.vrt"
        path = out_dir / name
        write_atomic(path, _mosaic_xml(path, members))
        written.append(path)
    return written


def _mosaic_xml(path: Path, maps: Sequence[MapInfo]) -> str:
    res_x = min(abs(m.transform.a) for m in maps)
    res_y = min(abs(m.transform.e) for m in maps)
    left = min(m.bounds[0] for m in maps)
    bottom = min(m.bounds[1] for m in maps)
    right = max(m.bounds[2] for m in maps)
    top = max(m.bounds[3] for m in maps)
    width = max(1, math.ceil((right - left) / res_x - 1e-6))
    height = max(1, math.ceil((top - bottom) / res_y - 1e-6))
    covered = sum(m.width * abs(m.transform.a) * m.height * abs(m.transform.e) for m in maps)
    if covered < SPARSE * width * res_x * height * res_y:
        log.warning(
            "%s: the scenes are far apart, so the mosaic (%d x %d px) is %.2g %% maps and the "
            "rest empty; QGIS opens it, but zoom to a footprint or open the scene maps",
            path.name,
            width,
            height,
            100 * covered / (width * res_x * height * res_y),
        )
    sources = []
    for m in maps:
        ml, _, _, mt = m.bounds
        sources.append(
            VrtSource(
                m.path,
                m.bands,
                m.width,
                m.height,
                x_off=(ml - left) / res_x,
                y_off=(top - mt) / res_y,
                width=m.width * abs(m.transform.a) / res_x,
                height=m.height * abs(m.transform.e) / res_y,
            )
        )
    bands = band_info(maps[0].path, maps[0].bands)
    return "<!-- written by landlearn: a mosaic of its maps -->\n" + vrt_xml(
        path,
        width=width,
        height=height,
        crs=maps[0].crs,
        transform=Affine(res_x, 0.0, left, 0.0, -res_y, top),
        bands=bands,
        sources=sources,
        metadata={"LANDLEARN_MOSAIC": json.dumps([m.name for m in maps])},
    )


def _classes(summary: dict[str, Any]) -> dict[str, float]:
    """Per-class area (the summary's unit) of a class map's ``areas.json``."""
    return {
        c["name"]: float(c["area"] if "area" in c else c["pixels"])
        for c in summary.get("classes", [])
    }


def _footprint(m: MapInfo, points: int = 16) -> dict[str, Any] | None:
    """The map's outline in WGS 84 (edges densified), or None without a CRS."""
    if m.crs is None:
        return None
    left, bottom, right, top = m.bounds
    t = np.linspace(0.0, 1.0, points, endpoint=False)
    xs = np.concatenate(
        [
            left + (right - left) * t,
            np.full(points, right),
            right - (right - left) * t,
            np.full(points, left),
        ]
    )
    ys = np.concatenate(
        [
            np.full(points, top),
            top - (top - bottom) * t,
            np.full(points, bottom),
            bottom + (top - bottom) * t,
        ]
    )
    lon, lat = warp_points(m.crs, "EPSG:4326", xs.tolist(), ys.tolist())
    ring = [[round(x, 7), round(y, 7)] for x, y in zip(lon, lat, strict=True)]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def write_catalogue(
    out_dir: Path,
    maps: Sequence[MapInfo],
    failed: dict[str, str],
    status: dict[str, str],
    header: dict[str, Any],
    mosaics: Sequence[Path],
) -> tuple[Path, Path]:
    """Write ``catalogue.json`` and ``footprints.geojson``; returns both paths."""
    scenes: list[dict[str, Any]] = []
    features: list[dict[str, Any]] = []
    total: dict[str, float] = {}
    unit = None
    for m in maps:
        s = m.summary
        entry: dict[str, Any] = {
            "name": m.name,
            "status": status.get(m.name, "done"),
            "map": m.path.name,
            "source": s.get("source"),
            "crs": m.crs.to_string() if m.crs is not None else None,
            "bounds": list(m.bounds),
            "width": m.width,
            "height": m.height,
        }
        if "classes" in s:
            areas = _classes(s)
            unit = unit or s.get("unit") or "pixels"
            entry["unit"] = s.get("unit") or "pixels"
            entry["areas"] = areas
            for k, v in areas.items():
                total[k] = total.get(k, 0.0) + v
        if "targets" in s:
            entry["targets"] = s["targets"]
        scenes.append(entry)
        props = {k: v for k, v in entry.items() if k not in ("bounds", "areas", "targets")}
        props |= {f"area_{k}": round(v, 6) for k, v in entry.get("areas", {}).items()}
        features.append({"type": "Feature", "geometry": _footprint(m), "properties": props})
    for name, reason in failed.items():
        scenes.append({"name": name, "status": "failed", "error": reason})
    catalogue = {
        "written_by": "landlearn",
        **header,
        "scenes": scenes,
        "total": {"unit": unit, "areas": total} if total else None,
        "mosaics": [p.name for p in mosaics],
        "counts": {
            "done": sum(1 for e in scenes if e["status"] == "done"),
            "skipped": sum(1 for e in scenes if e["status"] == "skipped"),
            "failed": len(failed),
        },
    }
    cat = write_atomic(out_dir / CATALOGUE, dump_json(catalogue))
    geo = {"type": "FeatureCollection", "name": "landlearn", "features": features}
    foot = write_atomic(out_dir / FOOTPRINTS, dump_json(geo))
    return cat, foot
