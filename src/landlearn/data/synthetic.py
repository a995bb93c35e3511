"""Synthetic land-cover scenes and patches, deterministic by seed.

A scene's class map is the argmax over classes of smooth random fields (cubic B-splines over a
coarse grid of random coefficients, plus a finer octave for ragged edges). Every pixel is a
function of its scene coordinates only, so a window of the scene can be rendered alone: the
block writer stays in bounded memory and equals the one-shot scene exactly. Pixel noise is drawn
per fixed 256 × 256 tile from a generator seeded by ``(seed, tile_row, tile_col)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.registry import check_options

__all__ = [
    "CLASSES",
    "COLORS",
    "band_names",
    "class_colors",
    "class_names",
    "make_patches",
    "make_scene",
    "signatures",
    "write_patch_folder",
    "write_scene",
]

log = logging.getLogger(__name__)

CLASSES: list[str] = ["water", "forest", "grassland", "cropland", "built-up"]
"""Default legend of the synthetic scenes."""

COLORS: list[list[int]] = [
    [0, 100, 200],  # water, ESA WorldCover palette
    [0, 100, 0],  # tree cover
    [255, 255, 76],  # grassland
    [240, 150, 255],  # cropland
    [250, 0, 0],  # built-up
]
"""RGB colour of each class in ``CLASSES``."""

# Reflectance of each default class at anchor wavelengths (nm); other bands are interpolated.
_ANCHORS_NM = np.array([490.0, 560.0, 665.0, 705.0, 842.0, 1610.0, 2190.0])
_SPECTRA = np.array(
    [
        [0.07, 0.06, 0.04, 0.03, 0.02, 0.01, 0.01],  # water: dark, lowest NIR
        [0.03, 0.06, 0.03, 0.08, 0.35, 0.17, 0.08],  # forest: high NIR, dark red
        [0.05, 0.09, 0.07, 0.14, 0.28, 0.24, 0.14],  # grassland
        [0.08, 0.11, 0.12, 0.16, 0.22, 0.28, 0.20],  # cropland
        [0.14, 0.15, 0.17, 0.18, 0.21, 0.25, 0.23],  # built-up: bright, flat
    ]
)
_S2_NM = [443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190]
_NOISE_TILE = 256
_CLOUD_VALUE = 0.75
_UINT16_SCALE = 10000.0


def band_names(bands: int) -> list[str]:
    """Names of the synthetic bands: RGB for 3, blue/green/red/nir for 4, ``B1..Bn`` otherwise."""
    if bands == 3:
        return ["red", "green", "blue"]
    if bands == 4:
        return ["blue", "green", "red", "nir"]
    return [f"B{i + 1}" for i in range(bands)]


def _wavelengths(bands: int) -> np.ndarray:
    named = {"blue": 490.0, "green": 560.0, "red": 665.0, "nir": 842.0}
    if bands in (3, 4):
        return np.array([named[n] for n in band_names(bands)])
    if bands == len(_S2_NM):
        return np.array(_S2_NM, dtype=float)
    return np.linspace(443.0, 2190.0, bands)


def class_names(num_classes: int) -> list[str]:
    """``CLASSES`` cut or extended (``class_5``, ...) to ``num_classes`` names."""
    return [CLASSES[k] if k < len(CLASSES) else f"class_{k}" for k in range(num_classes)]


def class_colors(num_classes: int) -> list[list[int]]:
    """``COLORS`` cut or extended with fixed pseudo-random colours to ``num_classes``."""
    extra = np.random.default_rng(1234).integers(0, 256, size=(max(0, num_classes - 5), 3))
    return [
        list(COLORS[k]) if k < 5 else [int(v) for v in extra[k - 5]] for k in range(num_classes)
    ]


def signatures(bands: int, num_classes: int) -> np.ndarray:
    """Mean reflectance of each class in each band, ``(num_classes, bands)`` float64.

    Classes beyond the default five are fixed random mixtures of the default spectra.
    """
    if bands < 1 or num_classes < 1:
        raise LandlearnError(f"need bands >= 1 and num_classes >= 1, got {bands} and {num_classes}")
    spectra = _SPECTRA
    if num_classes > len(spectra):
        rng = np.random.default_rng(4321)
        mix = rng.dirichlet(np.full(len(spectra), 0.5), size=num_classes - len(spectra))
        spectra = np.concatenate([spectra, mix @ spectra + rng.uniform(0.0, 0.05, (len(mix), 1))])
    nm = _wavelengths(bands)
    return np.stack([np.interp(nm, _ANCHORS_NM, s) for s in spectra[:num_classes]])


def _bspline_taps(pos: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Coefficient indices and cubic B-spline weights, ``(4, n)`` each, at pixel positions."""
    t = (pos.astype(np.float64) + 0.5) / cell
    i0 = np.floor(t)
    u = (t - i0).astype(np.float32)
    weights = np.stack(
        [
            (1 - u) ** 3 / 6,
            (3 * u**3 - 6 * u**2 + 4) / 6,
            (-3 * u**3 + 3 * u**2 + 3 * u + 1) / 6,
            u**3 / 6,
        ]
    )
    return i0.astype(np.int64)[None] + np.arange(4)[:, None], weights


def _smooth_field(coef: np.ndarray, ys: np.ndarray, xs: np.ndarray, cell: float) -> np.ndarray:
    """The spline with coefficients ``coef`` at pixel rows ``ys`` × columns ``xs``, ``(h, w)``.

    Separable and per pixel in a fixed order, so a pixel gets the same value in any window.
    """
    iy, wy = _bspline_taps(ys, cell)
    ix, wx = _bspline_taps(xs, cell)
    g0 = int(iy.min())
    sub = coef[g0 : int(iy.max()) + 1]  # only the coefficient rows this window touches
    along_x = sum(wx[b][None, :] * sub[:, ix[b]] for b in range(4))  # (grid rows, w)
    return sum(wy[a][:, None] * along_x[iy[a] - g0] for a in range(4))  # (h, w)


class _Scene:
    """Everything about a scene that does not depend on the window being rendered."""

    def __init__(
        self,
        height: int,
        width: int,
        *,
        bands: int = 4,
        num_classes: int = 5,
        seed: int = 0,
        noise: float = 0.05,
        clouds: float = 0.0,
        nodata_fraction: float = 0.0,
        crs: str = "EPSG:32633",
        origin: tuple[float, float] = (500000.0, 5100000.0),
        pixel_size: float = 10.0,
        dtype: str = "float32",
        feature_size: float | None = None,
    ) -> None:
        if height < 1 or width < 1:
            raise LandlearnError(f"scene size must be positive, got {height} x {width}")
        if not 0.0 <= clouds < 1.0 or not 0.0 <= nodata_fraction < 1.0:
            raise LandlearnError(
                f"clouds and nodata_fraction must be in [0, 1), got {clouds} and {nodata_fraction}"
            )
        if dtype not in ("float32", "uint16"):
            raise LandlearnError(f"dtype must be 'float32' or 'uint16', got {dtype!r}")
        if not 1 <= num_classes < IGNORE_INDEX:
            raise LandlearnError(f"num_classes must be in 1..{IGNORE_INDEX - 1}, got {num_classes}")
        self.height, self.width, self.bands, self.num_classes = height, width, bands, num_classes
        self.seed, self.noise, self.dtype = seed, noise, dtype
        self.geo = (crs, origin, pixel_size)
        self.spectra = signatures(bands, num_classes).astype(np.float32)
        self.cell = float(feature_size or min(max(min(height, width) / 8.0, 8.0), 128.0))
        rng = np.random.default_rng([seed, 0])
        self.coarse = self._grid(rng, self.cell, num_classes)
        self.fine = self._grid(rng, self.cell / 4.0, num_classes) * np.float32(0.35)
        self.cloud = self._mask_field(rng, self.cell * 1.5, clouds)
        self.nodata = self._mask_field(rng, self.cell * 3.0, nodata_fraction)

    def _grid(self, rng: np.random.Generator, cell: float, n: int) -> np.ndarray:
        shape = (n, math.ceil(self.height / cell) + 4, math.ceil(self.width / cell) + 4)
        return rng.standard_normal(shape, dtype=np.float32)

    def _mask_field(
        self, rng: np.random.Generator, cell: float, fraction: float
    ) -> tuple[np.ndarray, float, float] | None:
        coef = self._grid(rng, cell, 1)[0]
        if fraction <= 0.0:
            return None
        # Threshold from the field on a coarse lattice of the whole scene, so blocks agree.
        step = max(1, int(cell // 4))
        ys, xs = np.arange(0, self.height, step), np.arange(0, self.width, step)
        probe = _smooth_field(coef, ys, xs, cell)
        return coef, float(np.quantile(probe, 1.0 - fraction)), cell

    def render(self, row: int, col: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = np.arange(row, row + h), np.arange(col, col + w)
        best = np.full((h, w), -np.inf, dtype=np.float32)
        label = np.zeros((h, w), dtype=np.uint8)
        for k in range(self.num_classes):
            f = _smooth_field(self.coarse[k], rows, cols, self.cell)
            f += _smooth_field(self.fine[k], rows, cols, self.cell / 4.0)
            win = f > best
            best[win], label[win] = f[win], k
        image = self.spectra[label].transpose(2, 0, 1) + self.noise * self._noise(row, col, h, w)
        if self.cloud is not None:
            coef, thr, cell = self.cloud
            alpha = np.clip((_smooth_field(coef, rows, cols, cell) - thr) * 4.0, 0.0, 1.0)
            image += alpha * (_CLOUD_VALUE - image)
            label[alpha > 0] = IGNORE_INDEX
        np.clip(image, 0.0, 1.0, out=image)
        if self.dtype == "uint16":
            image = np.clip(np.round(image * _UINT16_SCALE), 1, 65535).astype(np.uint16)
        if self.nodata is not None:
            coef, thr, cell = self.nodata
            hole = _smooth_field(coef, rows, cols, cell) > thr
            image[:, hole] = np.nan if self.dtype == "float32" else 0
            label[hole] = IGNORE_INDEX
        return image, label

    def _noise(self, row: int, col: int, h: int, w: int) -> np.ndarray:
        out = np.empty((self.bands, h, w), dtype=np.float32)
        t = _NOISE_TILE
        for ty in range(row // t, (row + h - 1) // t + 1):
            for tx in range(col // t, (col + w - 1) // t + 1):
                tile = np.random.default_rng([self.seed, 1, ty, tx]).standard_normal(
                    (self.bands, t, t), dtype=np.float32
                )
                y0, y1 = max(row, ty * t), min(row + h, (ty + 1) * t)
                x0, x1 = max(col, tx * t), min(col + w, (tx + 1) * t)
                out[:, y0 - row : y1 - row, x0 - col : x1 - col] = tile[
                    :, y0 - ty * t : y1 - ty * t, x0 - tx * t : x1 - tx * t
                ]
        return out

    def profile(self) -> dict[str, Any]:
        from affine import Affine
        from rasterio.crs import CRS

        crs, origin, pixel_size = self.geo

        return {
            "driver": "GTiff",
            "dtype": self.dtype,
            "count": self.bands,
            "height": self.height,
            "width": self.width,
            "crs": CRS.from_user_input(crs),
            "transform": Affine(pixel_size, 0.0, origin[0], 0.0, -pixel_size, origin[1]),
            "nodata": float("nan") if self.dtype == "float32" else 0,
        }


def make_scene(
    height: int,
    width: int,
    *,
    bands: int = 4,
    num_classes: int = 5,
    seed: int = 0,
    noise: float = 0.05,
    clouds: float = 0.0,
    nodata_fraction: float = 0.0,
    crs: str = "EPSG:32633",
    origin: tuple[float, float] = (500000.0, 5100000.0),
    pixel_size: float = 10.0,
    dtype: str = "float32",
    feature_size: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """A synthetic scene: image ``(bands, H, W)``, label ``(H, W)`` uint8 and a rasterio profile.

    Args:
        height: Rows of the scene.
        width: Columns of the scene.
        noise: Standard deviation of the gaussian pixel noise, in reflectance.
        clouds: Approximate fraction of the scene under bright cloud blobs (label ``IGNORE_INDEX``).
        nodata_fraction: Approximate fraction of no-data (NaN, or 0 for uint16; ``IGNORE_INDEX``).
        crs: Anything ``rasterio.crs.CRS.from_user_input`` reads.
        origin: ``(x, y)`` of the upper-left corner in ``crs`` units.
        dtype: ``"float32"`` reflectance in 0..1, or ``"uint16"`` reflectance × 10000.
        feature_size: Typical size of a class region in pixels (default: min side / 8, in 8..128).

    Raises:
        LandlearnError: A size, fraction or dtype is out of range.
    """
    scene = _Scene(
        height,
        width,
        bands=bands,
        num_classes=num_classes,
        seed=seed,
        noise=noise,
        clouds=clouds,
        nodata_fraction=nodata_fraction,
        crs=crs,
        origin=origin,
        pixel_size=pixel_size,
        dtype=dtype,
        feature_size=feature_size,
    )
    image, label = scene.render(0, 0, height, width)
    return image, label, scene.profile()


def _blocks(height: int, width: int, block: int) -> Iterator[tuple[int, int, int, int]]:
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield row, col, min(block, height - row), min(block, width - col)


def write_scene(
    path_image: str | os.PathLike[str],
    path_label: str | os.PathLike[str],
    height: int,
    width: int,
    *,
    block: int = 2048,
    **kw: Any,
) -> tuple[Path, Path]:
    """Write a synthetic scene as tiled, DEFLATE-compressed GeoTIFFs, one block at a time.

    Memory stays bounded by ``block``; the rasters equal ``make_scene(height, width, **kw)``.
    The label raster carries a colour table, ``IGNORE_INDEX`` as nodata and the class names
    (tag ``class_names``, a JSON list).

    Args:
        kw: Keyword arguments of ``make_scene``.

    Raises:
        LandlearnError: Bad scene arguments, or ``block`` not a positive multiple of 16.
    """
    import rasterio
    from rasterio.windows import Window

    if block < 16 or block % 16:
        raise LandlearnError(f"block must be a positive multiple of 16, got {block}")
    check_options(_Scene, "write_scene (see make_scene)", (height, width), kw)
    scene = _Scene(height, width, **kw)
    profile = scene.profile()
    tiling = {"tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    label_profile = {**profile, "dtype": "uint8", "count": 1, "nodata": IGNORE_INDEX}
    out_image, out_label = Path(path_image), Path(path_label)
    tmp_image = out_image.with_name(f".{out_image.name}.tmp")
    tmp_label = out_label.with_name(f".{out_label.name}.tmp")
    names = class_names(scene.num_classes)
    try:
        with (
            rasterio.open(tmp_image, "w", **profile, **tiling) as dst_img,
            rasterio.open(tmp_label, "w", **label_profile, **tiling) as dst_lab,
        ):
            dst_img.descriptions = tuple(band_names(scene.bands))
            dst_lab.set_band_description(1, "class")
            colormap = {k: (*rgb, 255) for k, rgb in enumerate(class_colors(scene.num_classes))}
            colormap[IGNORE_INDEX] = (0, 0, 0, 0)
            dst_lab.write_colormap(1, colormap)
            dst_lab.update_tags(class_names=json.dumps(names), ignore_index=str(IGNORE_INDEX))
            dst_lab.update_tags(1, **{f"CLASS_{k}": name for k, name in enumerate(names)})
            for row, col, h, w in _blocks(height, width, block):
                image, label = scene.render(row, col, h, w)
                window = Window(col, row, w, h)
                dst_img.write(image, window=window)
                dst_lab.write(label, 1, window=window)
                log.debug("wrote block at row %d col %d", row, col)
        os.replace(tmp_image, out_image)
        os.replace(tmp_label, out_label)
    finally:
        tmp_image.unlink(missing_ok=True)
        tmp_label.unlink(missing_ok=True)
    return out_image, out_label


def _texture(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A unit-scale ``(size, size)`` pattern typical of a class: the thing a CNN can learn."""
    from scipy import ndimage

    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == 0:  # water: almost flat, faint ripples
        theta = rng.uniform(0, np.pi)
        return 0.2 * np.sin((x * np.cos(theta) + y * np.sin(theta)) * rng.uniform(0.2, 0.4))
    if kind == 1:  # forest: crowns, fine blobs
        return ndimage.gaussian_filter(rng.standard_normal((size, size)), 1.0) * 3.0
    if kind == 2:  # grassland: smooth, broad variation
        return ndimage.gaussian_filter(rng.standard_normal((size, size)), size / 6) * 6.0
    if kind == 3:  # cropland: parallel stripes at a random angle
        theta, period = rng.uniform(0, np.pi), rng.uniform(4.0, 8.0)
        return np.sign(np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period))
    blocks = rng.uniform(-1.0, 1.0, (size // 8 + 1, size // 8 + 1))  # built-up: blocks and streets
    out = np.kron(blocks, np.ones((8, 8)))[:size, :size]
    out[(y % 8 == 0) | (x % 8 == 0)] = -1.5
    return out


def make_patches(
    n: int,
    *,
    size: int = 32,
    bands: int = 3,
    num_classes: int = 5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Patches for scene classification: images ``(N, C, H, W)`` float32 and labels ``(N,)`` int64.

    Class ``k`` has the spectrum ``signatures(bands, num_classes)[k]`` and texture ``k % 5``
    (flat, blobs, broad, stripes, blocks); brightness and noise vary per patch. Labels are balanced.
    """
    if n < 0 or size < 8:
        raise LandlearnError(f"need n >= 0 and size >= 8, got n={n}, size={size}")
    rng = np.random.default_rng([seed, 2])
    spectra = signatures(bands, num_classes)
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    images = np.empty((n, bands, size, size), dtype=np.float32)
    for i, k in enumerate(labels):
        texture = _texture(int(k) % 5, size, rng)
        gain = rng.normal(1.0, 0.08)
        patch = spectra[k][:, None, None] * gain * (1.0 + 0.25 * texture[None])
        patch += rng.normal(0.0, 0.01, patch.shape)
        images[i] = np.clip(patch, 0.0, 1.0)
    return images, labels


def write_patch_folder(
    root: str | os.PathLike[str],
    n_per_class: int,
    size: int = 32,
    bands: int = 3,
    seed: int = 0,
    fmt: str = "png",
    *,
    num_classes: int = 5,
) -> Path:
    """Write ``root/<class>/<i>.png`` (uint8 RGB, reflectance × 255 / 0.3) or ``.tif`` (float32).

    Raises:
        LandlearnError: ``fmt`` is not png/tif, or png asked for with ``bands != 3``.
    """
    import rasterio
    from affine import Affine
    from PIL import Image

    if fmt not in ("png", "tif"):
        raise LandlearnError(f"fmt must be 'png' or 'tif', got {fmt!r}")
    if fmt == "png" and bands != 3:
        raise LandlearnError(f"png patches need bands=3, got {bands}; use fmt='tif'")
    images, labels = make_patches(
        n_per_class * num_classes, size=size, bands=bands, num_classes=num_classes, seed=seed
    )
    out = Path(root)
    names = class_names(num_classes)
    seen = [0] * num_classes
    for image, k in zip(images, labels, strict=True):
        folder = out / names[k]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{seen[k]}.{fmt}"
        seen[k] += 1
        if fmt == "png":
            rgb = np.clip(np.round(image.transpose(1, 2, 0) * (255 / 0.3)), 0, 255).astype(np.uint8)
            Image.fromarray(rgb).save(path)
            continue
        x0 = 500000.0 + 10.0 * size * seen[k]
        with rasterio.open(
            path, "w", driver="GTiff", dtype="float32", count=bands, height=size, width=size,
            crs="EPSG:32633", transform=Affine(10.0, 0.0, x0, 0.0, -10.0, 5100000.0 - 1000.0 * k),
        ) as dst:  # fmt: skip
            dst.write(image)
            dst.descriptions = tuple(band_names(bands))
    log.debug("wrote %d patches under %s", len(labels), out)
    return out
