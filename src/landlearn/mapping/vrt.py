"""GDAL virtual rasters (VRT) over landlearn maps: a scene's blocks, or a mosaic of scenes.

A VRT is an XML file that GDAL, rasterio and QGIS open as one raster reading its sources by
window; nothing is copied. Sources are named relative to the VRT, so a folder of maps and its
mosaic can move together. Each source is a ``ComplexSource`` with the map's no-data value, so
the no-data border of one scene never paints over its neighbour where footprints overlap
(later scenes are drawn over earlier ones elsewhere).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio
from rasterio.transform import Affine

__all__ = ["VrtBand", "VrtSource", "band_info", "vrt_xml"]

_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}


@dataclass
class VrtBand:
    """One band of the VRT: its type, description, no-data, scale, unit and colours."""

    dtype: str
    description: str = ""
    nodata: float | None = None
    scale: float = 1.0
    unit: str = ""
    colors: list[tuple[int, int, int, int]] | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class VrtSource:
    """A raster drawn into the VRT at ``(x_off, y_off)`` with size ``(width, height)`` (VRT px).

    ``bands[i]`` is the source band (1-based) that feeds VRT band ``i + 1``.
    """

    path: Path
    bands: Sequence[int]
    src_width: int
    src_height: int
    x_off: float
    y_off: float
    width: float
    height: float
    block: tuple[int, int] = (256, 256)


def band_info(path: str | os.PathLike[str], indexes: Sequence[int]) -> list[VrtBand]:
    """The VRT bands that copy ``indexes`` of the map at ``path`` (its colours and units)."""
    bands: list[VrtBand] = []
    with rasterio.open(path) as src:
        for i in indexes:
            colors = None
            if i == 1:
                try:
                    table = src.colormap(1)
                    colors = [tuple(table.get(k, (0, 0, 0, 0))) for k in range(256)]
                except ValueError:  # no colour table: a value map
                    colors = None
            bands.append(
                VrtBand(
                    dtype=src.dtypes[i - 1],
                    description=src.descriptions[i - 1] or "",
                    nodata=src.nodata,
                    scale=float(src.scales[i - 1] or 1.0),
                    unit=src.units[i - 1] or "",
                    colors=colors,
                    tags=src.tags(i),
                )
            )
    return bands


def _num(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def _metadata(items: dict[str, str], indent: str) -> str:
    if not items:
        return ""
    rows = "".join(
        f'{indent}  <MDI key="{escape(k, {chr(34): "&quot;"})}">{escape(v)}</MDI>\n'
        for k, v in items.items()
    )
    return f"{indent}<Metadata>\n{rows}{indent}</Metadata>\n"


def vrt_xml(
    vrt_path: Path,
    *,
    width: int,
    height: int,
    crs: rasterio.crs.CRS | None,
    transform: Affine,
    bands: Sequence[VrtBand],
    sources: Sequence[VrtSource],
    metadata: dict[str, str] | None = None,
) -> str:
    """The XML of a VRT at ``vrt_path`` drawing ``sources`` into ``bands``."""
    t = transform
    head = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if crs is not None:
        head.append(f"  <SRS>{escape(crs.to_wkt())}</SRS>")
    head.append(
        f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>"
    )
    text = "\n".join(head) + "\n" + _metadata(metadata or {}, "  ")
    for i, band in enumerate(bands, start=1):
        gdal_type = _GDAL_TYPES.get(band.dtype, "Float32")
        text += f'  <VRTRasterBand dataType="{gdal_type}" band="{i}">\n'
        text += _metadata(band.tags, "    ")
        if band.description:
            text += f"    <Description>{escape(band.description)}</Description>\n"
        if band.nodata is not None:
            text += f"    <NoDataValue>{_num(band.nodata)}</NoDataValue>\n"
        if band.unit:
            text += f"    <UnitType>{escape(band.unit)}</UnitType>\n"
        if band.scale != 1.0:
            text += f"    <Offset>0</Offset>\n    <Scale>{band.scale!r}</Scale>\n"
        if band.colors is not None:
            text += "    <ColorInterp>Palette</ColorInterp>\n    <ColorTable>\n"
            text += "".join(
                f'      <Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>\n'
                for r, g, b, a in band.colors
            )
            text += "    </ColorTable>\n"
        else:
            text += "    <ColorInterp>Gray</ColorInterp>\n"
        for s in sources:
            name = os.path.relpath(s.path, vrt_path.parent)
            text += "    <ComplexSource>\n"
            text += f'      <SourceFilename relativeToVRT="1">{escape(name)}</SourceFilename>\n'
            text += f"      <SourceBand>{s.bands[i - 1]}</SourceBand>\n"
            text += (
                f'      <SourceProperties RasterXSize="{s.src_width}" '
                f'RasterYSize="{s.src_height}" DataType="{gdal_type}" '
                f'BlockXSize="{s.block[0]}" BlockYSize="{s.block[1]}"/>\n'
            )
            text += (
                f'      <SrcRect xOff="0" yOff="0" xSize="{s.src_width}" ySize="{s.src_height}"/>\n'
            )
            text += (
                f'      <DstRect xOff="{_num(s.x_off)}" yOff="{_num(s.y_off)}" '
                f'xSize="{_num(s.width)}" ySize="{_num(s.height)}"/>\n'
            )
            if band.nodata is not None:
                text += f"      <NODATA>{_num(band.nodata)}</NODATA>\n"
            text += "    </ComplexSource>\n"
        text += "  </VRTRasterBand>\n"
    return text + "</VRTDataset>\n"
