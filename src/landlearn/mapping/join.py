"""Join the blocks of a scene, each mapped by ``map_scene(block=…)``, into one map.

The blocks were blended with the whole scene's windows
(:class:`~landlearn.mapping.blend.BlockGrid`), so putting them side by side is the one-piece
map: a VRT over the block files is copied by GDAL's COG driver to one COG (memory bounded by
GDAL's cache, not the scene), and the sidecars are made from the joined COG read strip by
strip, as :func:`map_scene` makes them. Everything is committed as one group at the end, as a
one-piece map is.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from landlearn.atomic import commit_renames
from landlearn.errors import LandlearnError
from landlearn.mapping.blend import Block
from landlearn.mapping.outputs import AreaCounter, MapFiles, ValueSummary, write_sidecars
from landlearn.mapping.scene import MapResult
from landlearn.mapping.vrt import VrtSource, band_info, vrt_xml
from landlearn.mapping.writer import copy_to_cog, pam_colortable, temp_path

__all__ = ["join_blocks"]

log = logging.getLogger(__name__)

_STRIP = 512
_CACHE = 256 << 20
"""GDAL's block cache while joining. GDAL's default is 5 % of the machine's memory (6 GiB on a
128 GiB node), which the COG copy of a large VRT fills: the worker's peak then grows with the
machine and the scene, not with the block (measured: +0.65 GiB joining a 16,384² scene)."""


def join_blocks(
    blocks: Sequence[Block],
    paths: Sequence[Path],
    out: Path,
    *,
    preview: bool = True,
    run_id: str,
) -> MapResult:
    """Join block maps (``paths[i]`` holds ``blocks[i]``) into the map ``out`` and its sidecars.

    Raises:
        LandlearnError: a block file is missing, or the blocks do not tile one scene.
    """
    start = time.perf_counter()
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise LandlearnError("block map missing; map the scene again", missing[0])
    height = max(b.row_off + b.height for b in blocks)
    width = max(b.col_off + b.width for b in blocks)
    if sum(b.height * b.width for b in blocks) != height * width:
        raise LandlearnError(f"{len(blocks)} blocks do not tile a {height}x{width} scene", out)
    first = min(range(len(blocks)), key=lambda i: (blocks[i].row_off, blocks[i].col_off))
    with rasterio.open(paths[first]) as src:
        count, crs, tags = src.count, src.crs, src.tags()
        b0 = blocks[first]
        transform = src.transform * Affine.translation(-b0.col_off, -b0.row_off)
    classes = "CLASS_NAMES" in tags
    bands = band_info(paths[first], range(1, count + 1))
    for band in bands:
        band.colors = None  # the colour table goes to the PAM sidecar, as for any map
    tags.pop("LANDLEARN_BLOCK", None)
    tags["LANDLEARN_RUN_ID"] = run_id
    sources = [
        VrtSource(
            p, list(range(1, count + 1)), b.width, b.height, b.col_off, b.row_off, b.width, b.height
        )
        for b, p in zip(blocks, paths, strict=True)
    ]
    files = MapFiles(out, preview)
    vrt = temp_path(out, ".join.vrt")
    cog = temp_path(out, ".tmp.tif")
    pam = temp_path(out, ".tmp.aux.xml")
    colors: list[list[int]] = json.loads(tags.get("CLASS_COLORS", "[]"))
    try:
        vrt.write_text(
            vrt_xml(
                vrt,
                width=width,
                height=height,
                crs=crs,
                transform=transform,
                bands=bands,
                sources=sources,
                metadata=tags,
            )
        )
        with rasterio.Env(GDAL_CACHEMAX=_CACHE):
            copy_to_cog(vrt, cog, width, height, classes)
            summary, values = _summary(cog, tags, classes, paths)
            summary["source"] = _block_summary(paths[first]).get("source")
            summary["map"] = out.name
            summary["run_id"] = run_id
            summary["blocks"] = len(blocks)
            names = json.loads(tags.get("CLASS_NAMES") or tags.get("TARGETS") or "[]")
            write_sidecars(files, cog, summary, names, colors, values, bands[0].description, run_id)
        pam.write_text(pam_colortable(colors if classes else None, count, run_id))
        commit_renames([*files.sidecar_pairs(), (pam, Path(f"{out}.aux.xml")), (cog, out)])
    finally:
        files.cleanup()
        for p in (vrt, cog, pam, Path(f"{cog}.aux.xml"), Path(f"{vrt}.aux.xml")):
            p.unlink(missing_ok=True)
    log.info("joined %d blocks into %s", len(blocks), out)
    return MapResult(
        out,
        files.areas,
        files.preview,
        [b.description for b in bands],
        0,
        time.perf_counter() - start,
        summary,
    )


def _summary(
    cog: Path, tags: dict[str, str], classes: bool, blocks: Sequence[Path]
) -> tuple[dict[str, Any], ValueSummary | None]:
    """The areas (class map) or statistics (value map) of the joined map, strip by strip."""
    with rasterio.open(cog) as src:
        if classes:
            areas = AreaCounter(json.loads(tags["CLASS_NAMES"]), src.crs, src.transform)
            for y0 in range(0, src.height, _STRIP):
                h = min(_STRIP, src.height - y0)
                areas.add(y0, src.read(1, window=Window(0, y0, src.width, h)))
            out, values = areas.summary(), None
        else:
            names = json.loads(tags["TARGETS"])
            values = ValueSummary(names, json.loads(tags.get("UNITS", "[]")) or [""] * len(names))
            for y0 in range(0, src.height, _STRIP):
                h = min(_STRIP, src.height - y0)
                v = src.read(list(range(1, len(names) + 1)), window=Window(0, y0, src.width, h))
                values.add(v, np.isfinite(v[0]))
            out = values.summary()
    screened = _screened(blocks)
    if screened:
        out["screened"] = screened
    return out, values


def _screened(blocks: Sequence[Path]) -> dict[str, int]:
    """Sum of the blocks' screened-input counts (their ``areas.json``)."""
    total: dict[str, int] = {}
    for p in blocks:
        for k, v in (_block_summary(p).get("screened") or {}).items():
            total[k] = total.get(k, 0) + int(v)
    return total


def _block_summary(block: Path) -> dict[str, Any]:
    """The ``areas.json`` a block's map wrote (empty when unreadable)."""
    try:
        data = json.loads(block.with_name(f"{block.stem}.areas.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
