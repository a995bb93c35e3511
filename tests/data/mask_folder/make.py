"""Write tiny segmentation-folder fixtures in real formats.

* ``deepglobe/``: ``<id>_sat.jpg`` + ``<id>_mask.png`` RGB masks, ``classes.csv`` as name,r,g,b
  (with an ``unknown`` colour that is ignored).
* ``dubai/``: same-name ``images/*.jpg`` + ``masks/*.png``, ``classes.csv`` as name,hex
  (``Unlabeled`` ignored).
* ``index/``: 3-band GeoTIFF images + single-band code masks (codes 0, 1, 2, 8).
* ``badcolour/``: a mask with a colour missing from the table (pixel row 5, col 7).
* ``mismatch/``: an image and a mask of different sizes.

Run ``python tests/data/mask_folder/make.py`` or call ``make(out_dir)``; seeded, rerunnable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image

DEEPGLOBE = [
    ("urban_land", (0, 255, 255)),
    ("agriculture_land", (255, 255, 0)),
    ("water", (0, 0, 255)),
    ("unknown", (0, 0, 0)),
]
DUBAI = [
    ("Building", "#3C1098"),
    ("Land", "#8429F6"),
    ("Water", "#E2A929"),
    ("Unlabeled", "#9B9B9B"),
]
HEIGHT, WIDTH = 40, 48


def _labels(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """Blocky class indices 0..n-1 (8-pixel blocks) so chips hold several classes."""
    blocks = rng.integers(0, n, (height // 8 + 1, width // 8 + 1))
    return np.kron(blocks, np.ones((8, 8), dtype=np.int64))[:height, :width]


def _image_for(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    base = np.stack([40 + 50 * labels, 180 - 30 * labels, 100 + 10 * labels], axis=-1)
    return np.clip(base + rng.normal(0, 5, base.shape), 0, 255).astype(np.uint8)


def _rgb_set(
    out: Path, table: list, ids: list[str], image_fmt: str, mask_fmt: str, rng: np.random.Generator
) -> None:
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir(parents=True)
    colours = np.array([_rgb(c) for _, c in table], dtype=np.uint8)
    for i in ids:
        labels = _labels(rng, len(table), HEIGHT, WIDTH)
        Image.fromarray(_image_for(labels, rng)).save(
            out / "images" / image_fmt.format(i), quality=95
        )
        Image.fromarray(colours[labels]).save(out / "masks" / mask_fmt.format(i))


def _rgb(colour: tuple[int, int, int] | str) -> tuple[int, int, int]:
    if isinstance(colour, str):
        h = colour.lstrip("#")
        return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    return colour


def _write_tif(path: Path, array: np.ndarray) -> None:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=array.shape[1],
        width=array.shape[2],
        count=array.shape[0],
        dtype=array.dtype.name,
        crs="EPSG:32633",
        transform=Affine(10, 0, 500000, 0, -10, 5000000),
    ) as dst:
        dst.write(array)


def make(out_dir: str | Path) -> Path:
    """Write the fixtures under ``out_dir`` (cleared first) and return it."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(0)
    _rgb_set(
        out / "deepglobe", DEEPGLOBE, ["11", "22", "33", "44"], "{}_sat.jpg", "{}_mask.png", rng
    )
    (out / "deepglobe" / "classes.csv").write_text(
        "name,r,g,b\n" + "".join(f"{n},{r},{g},{b}\n" for n, (r, g, b) in DEEPGLOBE)
    )
    _rgb_set(out / "dubai", DUBAI, ["part_1", "part_2", "part_3"], "{}.jpg", "{}.png", rng)
    (out / "dubai" / "classes.csv").write_text(
        "name,hex\n" + "".join(f"{n},{c}\n" for n, c in DUBAI)
    )

    index = out / "index"
    (index / "images").mkdir(parents=True)
    (index / "masks").mkdir(parents=True)
    codes = np.array([0, 1, 2, 8], dtype=np.uint8)
    for name in ["a", "b", "c"]:
        labels = _labels(rng, 4, 24, 24)
        _write_tif(index / "images" / f"{name}.tif", np.moveaxis(_image_for(labels, rng), -1, 0))
        _write_tif(index / "masks" / f"{name}.tif", codes[labels][None])

    bad = out / "badcolour"
    _rgb_set(bad, DEEPGLOBE, ["x"], "{}_sat.jpg", "{}_mask.png", rng)
    mask = np.array(Image.open(bad / "masks" / "x_mask.png"))
    mask[5, 7] = (12, 200, 7)
    Image.fromarray(mask).save(bad / "masks" / "x_mask.png")

    mismatch = out / "mismatch"
    (mismatch / "images").mkdir(parents=True)
    (mismatch / "masks").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(mismatch / "images" / "m.png")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(mismatch / "masks" / "m.png")
    return out


if __name__ == "__main__":
    make(Path(__file__).resolve().parent / "out")
