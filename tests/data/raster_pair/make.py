"""Write a tiny GeoTIFF image + label pair and misaligned labels for the error tests.

* ``scene.tif``: 4 bands float32 (B02, B03, B04, B08), 48 × 40 px (h × w), EPSG:32633, 10 m,
  NaN in rows 0-1, cols 0-2.
* ``label.tif``: uint8 codes 1, 2, 3, 8 in 8-px blocks, nodata 0 in rows 44-47.
* ``label_crs.tif`` (EPSG:32634), ``label_shape.tif`` (48 × 36), ``label_shift.tif`` (moved 5 m).

Run ``python tests/data/raster_pair/make.py`` or call ``make(out_dir)``; seeded, rerunnable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

HEIGHT, WIDTH = 48, 40
BANDS = ["B02", "B03", "B04", "B08"]
CODES = np.array([1, 2, 3, 8], dtype=np.uint8)
ORIGIN = (500000.0, 5000000.0)


def _write(
    path: Path,
    array: np.ndarray,
    crs: str = "EPSG:32633",
    origin: tuple[float, float] = ORIGIN,
    nodata: float | None = None,
    descriptions: list[str] | None = None,
) -> None:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=array.shape[1],
        width=array.shape[2],
        count=array.shape[0],
        dtype=array.dtype.name,
        crs=crs,
        transform=Affine(10, 0, origin[0], 0, -10, origin[1]),
        nodata=nodata,
    ) as dst:
        dst.write(array)
        for i, name in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, name)


def make(out_dir: str | Path) -> Path:
    """Write the fixtures under ``out_dir`` (cleared first) and return it."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, len(CODES), (HEIGHT // 8, WIDTH // 8))
    classes = np.kron(blocks, np.ones((8, 8), dtype=np.int64))
    codes = CODES[classes]
    codes[44:, :] = 0
    image = np.stack([1000 + 300 * classes * (b + 1) for b in range(len(BANDS))]).astype(np.float32)
    image += rng.normal(0, 20, image.shape).astype(np.float32)
    image[:, 0:2, 0:3] = np.nan
    _write(out / "scene.tif", image, descriptions=BANDS)
    _write(out / "label.tif", codes[None], nodata=0)
    _write(out / "label_crs.tif", codes[None], crs="EPSG:32634", nodata=0)
    _write(out / "label_shape.tif", codes[None, :, :36], nodata=0)
    _write(out / "label_shift.tif", codes[None], origin=(ORIGIN[0] + 5, ORIGIN[1]), nodata=0)
    return out


if __name__ == "__main__":
    make(Path(__file__).resolve().parent / "out")
