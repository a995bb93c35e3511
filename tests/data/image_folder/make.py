"""Write tiny image-folder fixtures: RGB JPEG classes, 5-band GeoTIFF classes, TorchGeo EuroSAT.

Run ``python tests/data/image_folder/make.py`` (writes ``out/`` beside this file) or call
``make(out_dir)``. Seeded and rerunnable: old output is removed first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image

RGB_CLASSES = {"Forest": 10, "River": 6, "Urban": 4}
MS_CLASSES = {"Crop": 4, "Water": 4}
MS_BANDS = ["B02", "B03", "B04", "B08", "B11"]
EUROSAT_CLASSES = ["AnnualCrop", "Forest"]
EUROSAT_DIR = Path("ds/images/remote_sensing/otherDatasets/sentinel_2/tif")
SIZE = 16


def _write_tif(path: Path, array: np.ndarray, descriptions: list[str] | None = None) -> None:
    profile = {
        "driver": "GTiff",
        "height": array.shape[1],
        "width": array.shape[2],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": "EPSG:32633",
        "transform": Affine(10, 0, 500000, 0, -10, 5000000),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
        for i, name in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, name)


def make(out_dir: str | Path) -> Path:
    """Write the fixtures under ``out_dir`` (cleared first) and return it."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(0)
    for k, (name, count) in enumerate(RGB_CLASSES.items()):
        folder = out / "rgb" / name
        folder.mkdir(parents=True)
        for i in range(count):
            base = np.array([40 + 80 * k, 200 - 60 * k, 90], dtype=np.float64)
            pixels = np.clip(base + rng.normal(0, 10, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i + 1}.jpg", quality=95)
    for k, (name, count) in enumerate(MS_CLASSES.items()):
        folder = out / "ms" / name
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(500 + 1000 * k, 1500 + 1000 * k, (len(MS_BANDS), SIZE, SIZE))
            _write_tif(folder / f"{name}_{i + 1}.tif", pixels.astype(np.uint16), MS_BANDS)
    # TorchGeo's EuroSAT layout: 13-band tifs plus eurosat-{train,val,test}.txt listing .jpg names.
    root = out / "eurosat"
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name in EUROSAT_CLASSES:
        folder = root / EUROSAT_DIR / name
        folder.mkdir(parents=True)
        for i, split in enumerate(["train", "train", "val", "test"], start=1):
            pixels = rng.integers(0, 3000, (13, SIZE, SIZE)).astype(np.uint16)
            _write_tif(folder / f"{name}_{i}.tif", pixels)
            splits[split].append(f"{name}_{i}.jpg")
    for split, names in splits.items():
        (root / f"eurosat-{split}.txt").write_text("\n".join(names) + "\n")
    return out


if __name__ == "__main__":
    make(Path(__file__).resolve().parent / "out")
