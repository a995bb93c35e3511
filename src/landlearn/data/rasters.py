"""Chips from a GeoTIFF image and its label raster, read window by window.

The pair must share CRS, transform and shape. Label nodata and codes missing from ``remap``
become ``IGNORE_INDEX``. Where the image is NaN, those pixels' mask is set to ``IGNORE_INDEX`` and
the image value is replaced by 0, so a batch never carries NaN. Chips that reach past their region
(the scene edge, or a block of a spatial split) are padded: image by reflection, mask with
``IGNORE_INDEX``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import rasterio
import torch
from rasterio.errors import RasterioError
from rasterio.windows import Window
from torch.utils.data import Dataset

from landlearn.conventions import IGNORE_INDEX
from landlearn.data.io import raster_info
from landlearn.data.splits import random_split_indices
from landlearn.errors import LandlearnError
from landlearn.inputs import read_error

__all__ = [
    "ChipSampler",
    "RasterPairDataset",
    "check_remap",
    "deal_blocks",
    "grid_windows",
    "pad_chip",
    "point_mask",
    "remap_codes",
    "scene_blocks",
    "spatial_split",
    "split_scene",
]

log = logging.getLogger(__name__)

Region = tuple[int, int, int, int]  # row_off, col_off, height, width


def grid_windows(height: int, width: int, chip: int, stride: int | None = None) -> list[Window]:
    """Chip windows covering ``height × width`` row by row; the last row / col may reach past it."""
    if chip < 1 or (stride is not None and stride < 1):
        raise LandlearnError(f"chip size and stride must be positive, got {chip}, {stride}")
    step = stride or chip
    rows = range(0, max(height - chip, 0) + step, step) if height > chip else [0]
    cols = range(0, max(width - chip, 0) + step, step) if width > chip else [0]
    return [Window(c, r, chip, chip) for r in rows if r < height for c in cols if c < width]


def spatial_split(
    height: int,
    width: int,
    block: int,
    val_fraction: float,
    test_fraction: float,
    seed: int = 0,
) -> tuple[list[Window], list[Window], list[Window]]:
    """Cut a scene into ``block × block`` blocks and deal whole blocks to train / val / test.

    Blocks at the scene edge are clipped to the scene. Neighbouring pixels stay in one split, so
    val and test measure generalisation to new ground rather than to interleaved pixels.

    Raises:
        LandlearnError: too few blocks for the requested splits.
    """
    blocks = scene_blocks(height, width, block)
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if len(blocks) < needed:
        raise LandlearnError(
            f"scene of {height}×{width} px gives {len(blocks)} block(s) of {block} px, too few "
            f"for {needed} splits; use a smaller chip_size / block_size or separate val/test files"
        )
    train, val, test = random_split_indices(len(blocks), val_fraction, test_fraction, seed)
    return [blocks[i] for i in train], [blocks[i] for i in val], [blocks[i] for i in test]


def scene_blocks(height: int, width: int, block: int) -> list[Window]:
    """The scene cut into ``block``-sized windows (the last row and column clipped)."""
    return [
        Window(w.col_off, w.row_off, min(block, width - w.col_off), min(block, height - w.row_off))
        for w in grid_windows(height, width, block)
    ]


def deal_blocks(
    blocks: list[Window], fraction: float, seed: int
) -> tuple[list[Window], list[Window]]:
    """``fraction`` of the blocks (seeded, at least one; one left over below 1) and the rest."""
    if fraction >= 1.0:
        return list(blocks), []
    n = len(blocks)
    keep = max(1, round(fraction * n))
    if keep == n and n > 1:
        keep = n - 1
    order = np.random.default_rng(seed).permutation(n)
    chosen = sorted(order[:keep].tolist())
    rest = sorted(order[keep:].tolist())
    return [blocks[i] for i in chosen], [blocks[i] for i in rest]


def split_scene(
    height: int,
    width: int,
    chip_size: int,
    block_size: int | None,
    val_fraction: float,
    test_fraction: float,
    seed: int = 0,
) -> tuple[int, list[Window], list[Window], list[Window]]:
    """The block side and the train / val / test blocks of a scene (``spatial_split``).

    ``block_size`` defaults to twice the chip size when the scene is large enough for five such
    blocks, else the chip size. No val and no test fraction: no blocks (the whole scene trains).

    Raises:
        LandlearnError: too few blocks for the requested splits.
    """
    block = block_size or chip_size
    if block_size is None and len(grid_windows(height, width, 2 * block)) >= 5:
        block *= 2
    if not (val_fraction or test_fraction):
        return block, [], [], []
    train, val, test = spatial_split(height, width, block, val_fraction, test_fraction, seed)
    return block, train, val, test


def point_mask(
    offset: tuple[int, int], shape: tuple[int, ...], fraction: float, seed: int = 0
) -> np.ndarray:
    """Which pixels of a window (``offset`` = its row, col in the raster) are kept as points.

    Each raster pixel keeps its label when a hash of (row, col, seed) falls below ``fraction``,
    so a random chip sees the same points wherever it lands and in every epoch: a fixed set of
    about ``fraction`` of the labelled pixels, spread uniformly (each class keeps its share in
    expectation), as a user's clicked points would be. ``(H, W)`` bool.
    """
    rows = np.arange(offset[0], offset[0] + shape[0], dtype=np.uint64)
    cols = np.arange(offset[1], offset[1] + shape[1], dtype=np.uint64)
    gold = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (rows[:, None] << np.uint64(32)) | cols[None, :]
        z = z ^ (np.uint64(seed & 0xFFFFFFFF) * gold)
        z = z + gold  # splitmix64's finaliser: neighbouring pixels get unrelated values
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


def remap_codes(codes: np.ndarray, remap: Mapping[int, int] | None) -> np.ndarray:
    """Map label codes to class indices (int64); codes missing from ``remap`` → ``IGNORE_INDEX``."""
    if remap is None:
        return codes.astype(np.int64)
    keys = np.array(sorted(remap), dtype=np.int64)
    values = np.array([remap[k] for k in sorted(remap)], dtype=np.int64)
    flat = codes.astype(np.int64)
    pos = np.clip(np.searchsorted(keys, flat), 0, len(keys) - 1)
    return np.where(keys[pos] == flat, values[pos], IGNORE_INDEX)


def check_remap(remap: Mapping[int, int] | None) -> dict[int, int] | None:
    """Validate a ``{code: class}`` mapping (classes in 0..254 or ``IGNORE_INDEX``)."""
    if remap is None:
        return None
    if not remap:
        raise LandlearnError("remap is empty; give {code: class, ...} or leave it unset")
    out = {int(k): int(v) for k, v in remap.items()}
    bad = sorted(v for v in out.values() if not 0 <= v <= IGNORE_INDEX)
    if bad:
        raise LandlearnError(f"remap classes must be in 0..{IGNORE_INDEX}, got {bad}")
    return out


def pad_chip(
    image: np.ndarray, mask: np.ndarray | None, pads: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pad ``(C, H, W)`` image by reflection and ``(H, W)`` mask with ``IGNORE_INDEX``.

    Args:
        image: chip read so far.
        mask: its mask, or None.
        pads: ``(top, bottom, left, right)`` pixels to add.
    """
    top, bottom, left, right = pads
    if not any(pads):
        return image, mask
    _, h, w = image.shape
    # numpy's reflect needs at least 2 pixels along an axis; one pixel can only be repeated.
    mode: Literal["reflect", "edge"] = "reflect" if h > 1 and w > 1 else "edge"
    if h == 0 or w == 0:
        image = np.zeros((image.shape[0], h + top + bottom, w + left + right), image.dtype)
    else:
        image = np.pad(image, ((0, 0), (top, bottom), (left, right)), mode=mode)
    if mask is not None:
        mask = np.pad(mask, ((top, bottom), (left, right)), constant_values=IGNORE_INDEX)
    return image, mask


def _intersect(window: Window, region: Region) -> tuple[Window, tuple[int, int, int, int]]:
    """The part of ``window`` inside ``region``, and the padding that restores its size."""
    r0, c0, h, w = region
    top = max(r0 - int(window.row_off), 0)
    left = max(c0 - int(window.col_off), 0)
    row0 = int(window.row_off) + top
    col0 = int(window.col_off) + left
    row1 = min(int(window.row_off + window.height), r0 + h)
    col1 = min(int(window.col_off + window.width), c0 + w)
    inner = Window(col0, row0, max(col1 - col0, 0), max(row1 - row0, 0))
    bottom = int(window.height) - top - int(inner.height)
    right = int(window.width) - left - int(inner.width)
    return inner, (top, bottom, left, right)


class ChipSampler:
    """Where the chips of a scene lie: seeded random chips, or a grid, inside regions of it.

    Chip ``i`` of the random sampler is the same for a given seed; a region is drawn with a
    probability proportional to its area. Chips reaching past their region or the scene are read
    clipped and padded back (:meth:`read_window`).

    Args:
        height: scene height in pixels.
        width: scene width in pixels.
        chip_size: chip height and width in pixels.
        sampler: ``"random"`` or ``"grid"``.
        length: number of random chips; defaults to the number of grid chips.
        windows: regions (rasterio windows) to take chips from; default the whole scene.
        seed: seed of the random chips.

    Raises:
        LandlearnError: bad sampler, chip size or length.
    """

    def __init__(
        self,
        height: int,
        width: int,
        chip_size: int,
        sampler: str = "random",
        length: int | None = None,
        windows: Sequence[Window] | None = None,
        seed: int = 0,
    ) -> None:
        if sampler not in ("random", "grid"):
            raise LandlearnError(f"sampler must be 'random' or 'grid', got {sampler!r}")
        if chip_size < 1:
            raise LandlearnError(f"chip_size must be positive, got {chip_size}")
        self.chip_size = int(chip_size)
        self.sampler = sampler
        self.seed = int(seed)
        self.height, self.width = int(height), int(width)
        self.regions: list[Region] = [
            (int(w.row_off), int(w.col_off), int(w.height), int(w.width))
            for w in (windows or [Window(0, 0, self.width, self.height)])
        ]
        self.chips: list[tuple[Window, int]] = [
            (Window(c + w.col_off, r + w.row_off, w.width, w.height), k)
            for k, (r, c, h, wd) in enumerate(self.regions)
            for w in grid_windows(h, wd, self.chip_size)
        ]
        areas = np.array([h * w for _, _, h, w in self.regions], dtype=np.float64)
        self._region_p = areas / areas.sum()
        self.length = int(length) if length is not None else len(self.chips)
        if self.length < 1:
            raise LandlearnError(f"length must be positive, got {self.length}")

    def __len__(self) -> int:
        return len(self.chips) if self.sampler == "grid" else self.length

    def window(self, index: int) -> tuple[Window, Region]:
        """Chip window of sample ``index`` (in scene pixels) and the region it belongs to."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self.sampler == "grid":
            window, k = self.chips[index]
            return window, self.regions[k]
        rng = np.random.default_rng([self.seed, index])
        k = int(rng.choice(len(self.regions), p=self._region_p))
        r0, c0, h, w = self.regions[k]
        row = r0 + int(rng.integers(0, max(h - self.chip_size, 0) + 1))
        col = c0 + int(rng.integers(0, max(w - self.chip_size, 0) + 1))
        return Window(col, row, self.chip_size, self.chip_size), self.regions[k]

    def read_window(self, index: int) -> tuple[Window, tuple[int, int, int, int]]:
        """The window of chip ``index`` and its padding.

        The part of chip ``index`` to read (inside its region and the scene) and the padding
        ``(top, bottom, left, right)`` that restores the chip's size.
        """
        window, region = self.window(index)
        scene: Region = (0, 0, self.height, self.width)
        inner, pads = _intersect(window, region)
        inner, more = _intersect(inner, scene)
        return inner, cast(Region, tuple(a + b for a, b in zip(pads, more, strict=True)))

    def grid_read_windows(self) -> list[Window]:
        """The clipped read window of every grid chip (to count labels over the regions)."""
        out = []
        for window, k in self.chips:
            inner, _ = _intersect(window, self.regions[k])
            inner, _ = _intersect(inner, (0, 0, self.height, self.width))
            out.append(inner)
        return out


class RasterPairDataset(ChipSampler, Dataset[dict[str, torch.Tensor]]):
    """Chips of an aligned GeoTIFF image and label raster, as ``{"image", "mask"}`` samples.

    Args:
        image_path: multiband GeoTIFF.
        label_path: single-band class-code GeoTIFF on the same grid.
        chip_size: chip height and width in pixels.
        sampler: ``"random"`` (chip ``i`` is the same for a given seed) or ``"grid"``.
        length: number of random chips; defaults to the number of grid chips.
        remap: ``{code: class}``; unmapped codes become ``IGNORE_INDEX``.
        windows: regions (rasterio windows) to take chips from; default the whole scene.
        seed: seed of the random chips.
        bands: band numbers starting at 1; default all.
        keep_nonfinite: leave NaN / inf pixels in the image and the label as it is, for a
            predictor that screens them (``evaluate``, :mod:`landlearn.finite`). By default
            (training) they become unlabelled and 0.
        point_fraction: keep this share of the label's pixels as fixed sparse points
            (:func:`point_mask`), the rest ``IGNORE_INDEX``.

    Raises:
        LandlearnError: unreadable files, CRS / transform / shape mismatch, bad arguments.
    """

    def __init__(
        self,
        image_path: str | os.PathLike[str],
        label_path: str | os.PathLike[str],
        chip_size: int = 64,
        sampler: str = "random",
        length: int | None = None,
        remap: Mapping[int, int] | None = None,
        windows: Sequence[Window] | None = None,
        seed: int = 0,
        bands: Sequence[int] | None = None,
        keep_nonfinite: bool = False,
        point_fraction: float = 1.0,
    ) -> None:
        if not 0.0 < float(point_fraction) <= 1.0:
            raise LandlearnError(f"point fraction must be in (0, 1], got {point_fraction}")
        self.point_fraction = float(point_fraction)
        self.image_path = Path(image_path)
        self.label_path = Path(label_path)
        self.keep_nonfinite = keep_nonfinite
        image, label = raster_info(self.image_path), raster_info(self.label_path)
        _check_alignment(image, label)
        ChipSampler.__init__(
            self, image.height, image.width, chip_size, sampler, length, windows, seed
        )
        self.remap = check_remap(remap)
        self.bands = None if bands is None else [int(b) for b in bands]
        if self.bands is not None and not all(1 <= b <= image.count for b in self.bands):
            raise LandlearnError(
                f"bands {self.bands} not valid for a {image.count}-band image; numbers start at 1",
                self.image_path,
            )
        picked = self.bands or range(1, image.count + 1)
        self.band_names: list[str] = [image.band_names[b - 1] for b in picked]
        self.crs = image.crs
        self.transform = image.transform
        self.nodata = image.nodata
        self.label_nodata = label.nodata
        self._handles: tuple[Any, Any] | None = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        # Open GDAL handles cannot cross process boundaries; each worker reopens its own.
        state = self.__dict__.copy()
        state["_handles"], state["_pid"] = None, -1
        return state

    def _open(self) -> tuple[Any, Any]:
        if self._handles is None or self._pid != os.getpid():
            self._handles = (rasterio.open(self.image_path), rasterio.open(self.label_path))
            self._pid = os.getpid()
        return self._handles

    def _read_mask(self, label_src: Any, inner: Window) -> np.ndarray:
        try:
            codes = label_src.read(1, window=inner)
        except RasterioError as err:
            raise read_error(err, self.label_path, inner) from err
        mask = remap_codes(codes, self.remap)
        if self.label_nodata is not None:
            mask[codes == self.label_nodata] = IGNORE_INDEX
        if self.remap is None and mask.size and (mask.min() < 0 or mask.max() > IGNORE_INDEX):
            bad = int(mask.min() if mask.min() < 0 else mask.max())
            raise LandlearnError(
                f"label code {bad} is not a class index 0..{IGNORE_INDEX}; pass remap",
                self.label_path,
            )
        if self.point_fraction < 1.0:
            off = (int(inner.row_off), int(inner.col_off))
            mask[~point_mask(off, mask.shape, self.point_fraction, self.seed)] = IGNORE_INDEX
        return mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        inner, pads = self.read_window(index)
        image_src, label_src = self._open()
        try:
            image = image_src.read(self.bands, window=inner).astype(np.float32, copy=False)
        except RasterioError as err:
            raise read_error(err, self.image_path, inner) from err
        mask = self._read_mask(label_src, inner)
        bad = ~np.isfinite(image).all(axis=0)
        if bad.any() and not self.keep_nonfinite:
            mask[bad] = IGNORE_INDEX
            image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
        image, padded = pad_chip(image, mask, pads)
        assert padded is not None
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "mask": torch.from_numpy(np.ascontiguousarray(padded)),
        }

    def label_counts(self) -> np.ndarray:
        """Pixels per class index 0..254 in this dataset's regions, from the label alone.

        Reads only the label raster, so pixels ignored because the image is NaN still count.
        """
        counts = np.zeros(IGNORE_INDEX, dtype=np.int64)
        _, label_src = self._open()
        for inner in self.grid_read_windows():
            mask = self._read_mask(label_src, inner)
            counts += np.bincount(mask[mask != IGNORE_INDEX].ravel(), minlength=IGNORE_INDEX)[
                :IGNORE_INDEX
            ]
        return counts


def _check_alignment(image: Any, label: Any) -> None:
    where = f"{image.path} vs {label.path}"
    if label.count != 1:
        raise LandlearnError(f"label raster has {label.count} bands; expected 1", label.path)
    if image.crs != label.crs:
        raise LandlearnError(f"CRS differ: image {image.crs}, label {label.crs} ({where})")
    if (image.height, image.width) != (label.height, label.width):
        raise LandlearnError(
            f"shapes differ: image {image.height}×{image.width}, "
            f"label {label.height}×{label.width} ({where})"
        )
    if image.transform is not None and label.transform is not None:
        if not image.transform.almost_equals(label.transform, precision=1e-6):
            raise LandlearnError(
                f"transforms differ: image {tuple(image.transform)[:6]}, "
                f"label {tuple(label.transform)[:6]} ({where})"
            )
