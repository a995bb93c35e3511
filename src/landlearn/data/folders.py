"""Image folders: scene classification (``root/<class>/*``) and image + mask segmentation pairs."""

from __future__ import annotations

import csv
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from landlearn.conventions import IGNORE_INDEX
from landlearn.data.io import (
    IMAGE_SUFFIXES,
    RASTER_SUFFIXES,
    raster_info,
    read_mask,
    read_native,
    read_raster,
)
from landlearn.data.rasters import check_remap, grid_windows, pad_chip, remap_codes
from landlearn.errors import LandlearnError
from landlearn.inputs import check_input_dir, check_input_file

__all__ = [
    "DEFAULT_IGNORE",
    "ColorTable",
    "ImageChipsDataset",
    "ImageFolderDataset",
    "MaskFolderDataset",
    "decode_mask_file",
    "sparse_points",
]

log = logging.getLogger(__name__)

DEFAULT_IGNORE = ("unknown", "Unlabeled")
"""Class names that colour tables map to ``IGNORE_INDEX`` (case-insensitive)."""

_MASK_SUFFIXES = ("_mask", "_label", "_labels", "_gt")
_PAIR_SUFFIXES = ("_sat", "_image", "_img", *_MASK_SUFFIXES)


def _entries(folder: Path, what: str = "folder") -> list[Path]:
    """The entries of ``folder``; a folder that cannot be listed is a one-line error."""
    check_input_dir(folder, what)
    try:
        return list(folder.iterdir())
    except PermissionError:
        raise LandlearnError("permission denied", folder) from None
    except OSError as err:
        raise LandlearnError(
            f"cannot list folder ({os.strerror(err.errno or 0)})", folder
        ) from None


def _images_in(folder: Path, what: str = "folder") -> list[Path]:
    """Image files in ``folder``, sorted; FIFOs, devices, broken links named like images refused."""
    found = []
    for p in _entries(folder, what):
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.is_dir():
            continue
        found.append(check_input_file(p, "image", utf8_name=p.suffix.lower() in RASTER_SUFFIXES))
    return sorted(found)


class ImageFolderDataset(Dataset[dict[str, torch.Tensor]]):
    """Scene classification from ``root/<class>/*.{jpg,jpeg,png,tif,tiff}``, any band count.

    Give either ``root`` or ``files`` (with ``targets``, or classes taken from parent folder
    names). Samples are ``{"image": float32 (C, H, W) raw units, "label": int64}``.

    Args:
        root: folder with one sub-folder per class.
        classes: class names in index order; default the sorted sub-folder names.
        bands: band numbers starting at 1; default all.
        files: image paths, instead of ``root``.
        targets: class index of each of ``files``.

    Raises:
        LandlearnError: missing or empty folder, a class folder without images, a folder that is
            not one of ``classes``, or mismatched ``files`` / ``targets``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        classes: Sequence[str] | None = None,
        bands: Sequence[int] | None = None,
        files: Sequence[str | os.PathLike[str]] | None = None,
        targets: Sequence[int] | None = None,
    ) -> None:
        if (root is None) == (files is None):
            raise LandlearnError("give either root or files to ImageFolderDataset")
        if root is not None:
            self.classes, self.files, self.targets = _scan_class_folders(Path(root), classes)
        else:
            assert files is not None
            self.files = [Path(f) for f in files]
            if targets is None:
                parents = [f.parent.name for f in self.files]
                self.classes = list(classes) if classes is not None else sorted(set(parents))
                unknown = sorted(set(parents) - set(self.classes))
                if unknown:
                    raise LandlearnError(f"folders {unknown} are not among classes {self.classes}")
                self.targets = [self.classes.index(p) for p in parents]
            else:
                if len(targets) != len(self.files):
                    raise LandlearnError(f"{len(self.files)} files but {len(targets)} targets")
                self.classes = list(classes) if classes is not None else []
                n = len(self.classes) or max(targets, default=-1) + 1
                self.classes = self.classes or [f"class_{k}" for k in range(n)]
                self.targets = [int(t) for t in targets]
                if any(not 0 <= t < n for t in self.targets):
                    raise LandlearnError(f"targets must be in 0..{n - 1}")
        if not self.files:
            raise LandlearnError("no images to read", root)
        self.bands = None if bands is None else [int(b) for b in bands]
        info = raster_info(self.files[0])
        names = info.band_names
        if self.bands is not None:
            if not all(1 <= b <= info.count for b in self.bands):
                raise LandlearnError(
                    f"bands {self.bands} not valid for {info.count}-band images", self.files[0]
                )
            names = [names[b - 1] for b in self.bands]
        self.band_names: list[str] = names
        self.size: tuple[int, int] = (info.height, info.width)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path = self.files[index]
        image = read_raster(path, bands=self.bands, allow_nan=False)
        if image.shape[0] != len(self.band_names):
            raise LandlearnError(
                f"expected {len(self.band_names)} bands ({', '.join(self.band_names)}), "
                f"got {image.shape[0]}",
                path,
            )
        if image.shape[1:] != self.size:
            # Batches stack images, so one odd size would fail deep inside the DataLoader.
            raise LandlearnError(
                f"image is {image.shape[1]}×{image.shape[2]} px but {_short(self.files[0])} is "
                f"{self.size[0]}×{self.size[1]}; all images must have one size (resize them)",
                path,
            )
        return {
            "image": torch.from_numpy(image),
            "label": torch.tensor(self.targets[index], dtype=torch.int64),
        }

    def subset(self, indices: Sequence[int]) -> ImageFolderDataset:
        """A dataset of the items at ``indices``, with the same classes and bands."""
        return ImageFolderDataset(
            classes=self.classes,
            bands=self.bands,
            files=[self.files[i] for i in indices],
            targets=[self.targets[i] for i in indices],
        )


def _scan_class_folders(
    root: Path, classes: Sequence[str] | None
) -> tuple[list[str], list[Path], list[int]]:
    folders = sorted(p.name for p in _entries(root, "folder of class folders") if p.is_dir())
    if not folders:
        raise LandlearnError("no class sub-folders (expected root/<class>/<image>)", root)
    names = list(classes) if classes is not None else folders
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise LandlearnError(f"folders {unknown} are not among classes {names}", root)
    files: list[Path] = []
    targets: list[int] = []
    for k, name in enumerate(names):
        if name not in folders:
            log.warning("%s: no folder for class %r", root, name)
            continue
        found = _images_in(root / name, "class folder")
        if not found:
            raise LandlearnError(
                f"class folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})", root / name
            )
        files.extend(found)
        targets.extend([k] * len(found))
    return names, files, targets


def _parse_color(text: str, path: Path | None) -> tuple[int, int, int]:
    value = text.strip().lstrip("#")
    if len(value) != 6:
        raise LandlearnError(f"colour {text!r} is not #RRGGBB", path)
    try:
        return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
    except ValueError as err:
        raise LandlearnError(f"colour {text!r} is not #RRGGBB", path) from err


class ColorTable:
    """RGB colour ↔ class index for RGB-coded masks; ignored names map to ``IGNORE_INDEX``.

    Class indices follow the row order, skipping ignored rows.

    Args:
        names: one name per colour.
        colors: ``(r, g, b)`` tuples or ``"#RRGGBB"`` strings.
        ignore: names (case-insensitive) whose pixels become ``IGNORE_INDEX``.
    """

    def __init__(
        self,
        names: Sequence[str],
        colors: Sequence[Sequence[int] | str],
        ignore: Sequence[str] = DEFAULT_IGNORE,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        src = None if path is None else Path(path)
        if len(names) != len(colors) or not names:
            raise LandlearnError(f"{len(names)} names but {len(colors)} colours", src)
        rgb = [
            _parse_color(c, src) if isinstance(c, str) else tuple(int(v) for v in c) for c in colors
        ]
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in rgb):
            raise LandlearnError("colours must be 3 values in 0..255", src)
        packed = [(r << 16) | (g << 8) | b for r, g, b in rgb]
        if len(set(packed)) != len(packed):
            raise LandlearnError("the same colour is given to two classes", src)
        skip = {n.lower() for n in ignore}
        self.class_names: list[str] = [n for n in names if n.lower() not in skip]
        self.class_colors: list[list[int]] = [
            list(c) for n, c in zip(names, rgb, strict=True) if n.lower() not in skip
        ]
        index, k = [], 0
        for n in names:
            index.append(IGNORE_INDEX if n.lower() in skip else k)
            k += n.lower() not in skip
        order = np.argsort(packed)
        self._keys = np.asarray(packed, dtype=np.int32)[order]
        self._values = np.asarray(index, dtype=np.int64)[order]

    @classmethod
    def from_csv(
        cls, path: str | os.PathLike[str], ignore: Sequence[str] = DEFAULT_IGNORE
    ) -> ColorTable:
        """Read ``name,hex`` (``#3C1098``) or ``name,r,g,b`` rows with a header.

        Raises:
            LandlearnError: missing file, unknown columns or bad colours.
        """
        p = check_input_file(path, "colour table (CSV)", allow_empty=True, utf8_name=False)
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
        cols = {c.strip().lower() for c in (rows[0].keys() if rows else [])}
        rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items()} for r in rows]
        hex_col = next((c for c in ("hex", "color", "colour") if c in cols), None)
        if "name" not in cols or not (hex_col or {"r", "g", "b"} <= cols):
            raise LandlearnError("colour table needs columns name,hex or name,r,g,b", p)
        try:
            colors: list[Sequence[int] | str] = [
                r[hex_col] if hex_col else (int(r["r"]), int(r["g"]), int(r["b"])) for r in rows
            ]
        except ValueError as err:
            raise LandlearnError(f"bad colour value in colour table ({err})", p) from err
        return cls([r["name"] for r in rows], colors, ignore=ignore, path=p)

    @property
    def num_classes(self) -> int:
        """Classes without the ignored ones."""
        return len(self.class_names)

    def encode(self, rgb: np.ndarray, path: str | os.PathLike[str] | None = None) -> np.ndarray:
        """``(H, W, 3)`` colours → ``(H, W)`` int64 class indices.

        Raises:
            LandlearnError: not an RGB mask, or a colour not in the table (names the file, the
                colour and its first pixel).
        """
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise LandlearnError(f"expected an RGB mask (H, W, 3), got shape {rgb.shape}", path)
        px = rgb.astype(np.int32)
        packed = (px[..., 0] << 16) | (px[..., 1] << 8) | px[..., 2]
        pos = np.clip(np.searchsorted(self._keys, packed), 0, len(self._keys) - 1)
        found = self._keys[pos] == packed
        if not found.all():
            row, col = (int(v) for v in np.argwhere(~found)[0])
            colour = tuple(int(v) for v in rgb[row, col])
            raise LandlearnError(
                f"mask colour {colour} at row {row}, col {col} is not in the colour table", path
            )
        return self._values[pos]


def sparse_points(mask: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Keep ``fraction`` of each class's labelled pixels (at least one) as points; rest ignored.

    Simulates point annotations for partial cross-entropy. Accepts a numpy array or a tensor and
    returns the same kind.
    """
    if not 0.0 < fraction <= 1.0:
        raise LandlearnError(f"point fraction must be in (0, 1], got {fraction}")
    is_tensor = isinstance(mask, torch.Tensor)
    arr = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if fraction == 1.0:
        return mask
    rng = np.random.default_rng(seed)
    flat = arr.ravel()
    out = np.full_like(flat, IGNORE_INDEX)
    for cls in np.unique(flat[flat != IGNORE_INDEX]):
        where = np.flatnonzero(flat == cls)
        keep = rng.choice(where, size=max(1, round(fraction * where.size)), replace=False)
        out[keep] = cls
    out = out.reshape(arr.shape)
    return torch.from_numpy(out) if is_tensor else out  # type: ignore[return-value]


def _pair_key(stem: str) -> str:
    for suffix in _PAIR_SUFFIXES:
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return stem


class MaskFolderDataset(Dataset[dict[str, torch.Tensor]]):
    """Image + mask pairs from two folders, paired by file stem, as ``{"image", "mask"}``.

    Pairs ``<id>_sat.jpg`` / ``<id>_mask.png`` (DeepGlobe) as well as same-name files (Dubai).
    RGB masks are decoded with ``color_table``; single-band masks hold codes, mapped by ``remap``
    (unmapped codes → ``IGNORE_INDEX``). With ``chip_size`` each image gives a grid of chips,
    edge chips padded (image by reflection, mask with ``IGNORE_INDEX``); the last
    ``cache_files`` decoded files are kept so neighbouring chips do not decode the file again.
    NaN image pixels become 0 and their mask ``IGNORE_INDEX``.

    Args:
        images_dir: folder of images.
        masks_dir: folder of masks.
        color_table: decodes RGB masks.
        remap: ``{code: class}`` for code masks.
        chip_size: chip size in pixels; None gives whole images.
        files: only these images (paths or file names); default all in ``images_dir``.
        point_fraction: keep this share of labelled pixels as random points (``sparse_points``).
        seed: seed of the points.
        cache_files: decoded files kept in memory (per worker).

    Raises:
        LandlearnError: missing folders, an image without a mask, image / mask size mismatch,
            an RGB mask without a colour table, or an unknown colour.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        masks_dir: str | os.PathLike[str],
        color_table: ColorTable | None = None,
        remap: Mapping[int, int] | None = None,
        chip_size: int | None = None,
        files: Sequence[str | os.PathLike[str]] | None = None,
        point_fraction: float = 1.0,
        seed: int = 0,
        cache_files: int = 4,
    ) -> None:
        self.images_dir, self.masks_dir = Path(images_dir), Path(masks_dir)
        check_input_dir(self.images_dir, "folder of images")
        check_input_dir(self.masks_dir, "folder of masks")
        self.color_table = color_table
        self.remap = check_remap(remap)
        self.point_fraction = float(point_fraction)
        self.seed = int(seed)
        self.cache_files = max(1, int(cache_files))
        self.files, self.masks = _pair_files(self.images_dir, self.masks_dir, files)
        self.sizes: list[tuple[int, int]] = []
        for image, mask in zip(self.files, self.masks, strict=True):
            a, b = raster_info(image), raster_info(mask)
            if (a.height, a.width) != (b.height, b.width):
                raise LandlearnError(
                    f"image {image.name} is {a.height}×{a.width} but mask {mask.name} is "
                    f"{b.height}×{b.width}",
                    image,
                )
            self.sizes.append((a.height, a.width))
        self.band_names: list[str] = raster_info(self.files[0]).band_names
        self.chip_size = None if chip_size is None else int(chip_size)
        if self.chip_size is None:
            _check_one_size(self.files, self.sizes)
        self.chips: list[tuple[int, tuple[int, int, int, int]]] = self._grid_chips()
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def _grid_chips(self) -> list[tuple[int, tuple[int, int, int, int]]]:
        """``(file number, (row, col, height, width))`` of every chip over ``self.sizes``."""
        chips: list[tuple[int, tuple[int, int, int, int]]] = []
        for k, (h, w) in enumerate(self.sizes):
            if self.chip_size is None:
                chips.append((k, (0, 0, h, w)))
            else:
                chips.extend(
                    (k, (int(g.row_off), int(g.col_off), self.chip_size, self.chip_size))
                    for g in grid_windows(h, w, self.chip_size)
                )
        return chips

    def __len__(self) -> int:
        return len(self.chips)

    def decode_mask(self, k: int) -> np.ndarray:
        """Mask of file ``k`` as uint8 class indices (``IGNORE_INDEX`` where unlabelled)."""
        return decode_mask_file(self.masks[k], self.color_table, self.remap)

    def _load(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        image = read_native(self.files[k])
        mask = self.decode_mask(k)
        if np.issubdtype(image.dtype, np.floating):
            nan = np.isnan(image).any(axis=0)
            if nan.any():
                mask[nan] = IGNORE_INDEX
                image = np.nan_to_num(image, nan=0.0)
        self._cache[k] = (image, mask)
        while len(self._cache) > self.cache_files:
            self._cache.popitem(last=False)
        return image, mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        k, (row, col, h, w) = self.chips[index]
        image, mask = self._load(k)
        img = image[:, row : row + h, col : col + w].astype(np.float32)
        msk = mask[row : row + h, col : col + w].astype(np.int64)
        pads = (0, h - img.shape[1], 0, w - img.shape[2])
        img, padded = pad_chip(img, msk, pads)
        assert padded is not None
        if self.point_fraction < 1.0:
            padded = sparse_points(padded, self.point_fraction, seed=self.seed * 1_000_003 + index)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img)),
            "mask": torch.from_numpy(np.ascontiguousarray(padded)),
        }

    def label_counts(self) -> np.ndarray:
        """Pixels per class index 0..254 over all files (before point sparsification)."""
        counts = np.zeros(IGNORE_INDEX, dtype=np.int64)
        for k in range(len(self.files)):
            mask = self.decode_mask(k)
            counts += np.bincount(mask.ravel(), minlength=IGNORE_INDEX + 1)[:IGNORE_INDEX]
        return counts


class ImageChipsDataset(Dataset[dict[str, torch.Tensor]]):
    """Chips of every image in a folder, without labels, as ``{"image"}``: extra unlabelled data.

    Chipped on the same grid as :class:`MaskFolderDataset` (edges padded by reflection);
    NaN pixels become 0.

    Args:
        images_dir: folder of images (JPEG, PNG, GeoTIFF …).
        chip_size: chip side in pixels.
        bands: the band count the model reads; an image with another is a one-line error.
        cache_files: decoded files kept in memory (per worker).

    Raises:
        LandlearnError: a missing or empty folder, or an image with the wrong band count.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        chip_size: int,
        bands: int | None = None,
        cache_files: int = 2,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.files = _images_in(self.images_dir, "folder of unlabelled images")
        if not self.files:
            raise LandlearnError("no images in the folder of unlabelled images", self.images_dir)
        self.chip_size = int(chip_size)
        self.chips: list[tuple[int, tuple[int, int, int, int]]] = []
        for k, path in enumerate(self.files):
            info = raster_info(path)
            if bands is not None and info.count != bands:
                raise LandlearnError(
                    f"unlabelled image has {info.count} bands but the labelled images have {bands}",
                    path,
                )
            self.chips.extend(
                (k, (int(g.row_off), int(g.col_off), self.chip_size, self.chip_size))
                for g in grid_windows(info.height, info.width, self.chip_size)
            )
        self.cache_files = max(1, int(cache_files))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.chips)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        k, (row, col, h, w) = self.chips[index]
        if k in self._cache:
            self._cache.move_to_end(k)
        else:
            self._cache[k] = np.nan_to_num(read_native(self.files[k]).astype(np.float32))
            while len(self._cache) > self.cache_files:
                self._cache.popitem(last=False)
        img = self._cache[k][:, row : row + h, col : col + w]
        img, _ = pad_chip(img, None, (0, h - img.shape[1], 0, w - img.shape[2]))
        return {"image": torch.from_numpy(np.ascontiguousarray(img))}


def _short(path: Path) -> str:
    """``folder/name``: enough to find a file named in a message about another one."""
    return f"{path.parent.name}/{path.name}"


def _check_one_size(files: Sequence[Path], sizes: Sequence[tuple[int, int]]) -> None:
    """Whole images are stacked into batches: without chips every image needs one size."""
    for path, (h, w) in zip(files, sizes, strict=True):
        if (h, w) != sizes[0]:
            raise LandlearnError(
                f"image is {h}×{w} px but {_short(files[0])} is {sizes[0][0]}×{sizes[0][1]}; "
                "give chip_size or resize the images to one size",
                path,
            )


def _pair_files(
    images_dir: Path, masks_dir: Path, files: Sequence[str | os.PathLike[str]] | None
) -> tuple[list[Path], list[Path]]:
    images = _images_in(images_dir, "folder of images")
    candidates = _images_in(masks_dir, "folder of masks")
    if images_dir.resolve() == masks_dir.resolve():
        # One folder holding both (DeepGlobe's <id>_sat.jpg beside <id>_mask.png).
        images = [p for p in images if not p.stem.lower().endswith(_MASK_SUFFIXES)]
        candidates = [p for p in candidates if p.stem.lower().endswith(_MASK_SUFFIXES)]
    if files is not None:
        wanted = {Path(f).name for f in files} | {Path(f).stem for f in files}
        images = [p for p in images if p.name in wanted or p.stem in wanted]
    if not images:
        raise LandlearnError("no images found", images_dir)
    masks: dict[str, Path] = {}
    for p in candidates:
        masks.setdefault(_pair_key(p.stem), p)
    missing = [p.name for p in images if _pair_key(p.stem) not in masks]
    if missing:
        raise LandlearnError(f"no mask for image(s) {missing[:5]} in {masks_dir}", images_dir)
    return images, [masks[_pair_key(p.stem)] for p in images]


def decode_mask_file(
    path: str | Path, color_table: ColorTable | None, remap: Mapping[int, int] | None
) -> np.ndarray:
    """One mask file as uint8 class indices (``IGNORE_INDEX`` where unlabelled).

    With a colour table, RGB and palette masks are read by colour (then ``remap``); a
    single-band mask is ``remap``-ed codes that must be class indices of the table. The one
    reader of the datasets and of ``pseudo-label``'s accuracy check.

    Raises:
        LandlearnError: RGB without a table, or codes that are not class indices (names the
            file).
    """
    raw = read_mask(path, palette_as_rgb=color_table is not None)
    if raw.ndim == 3:
        if color_table is None:
            raise LandlearnError("RGB mask but no colour table; pass classes_csv", path)
        mask = color_table.encode(raw, path)
        mask = mask if remap is None else remap_codes(mask, remap)
    else:
        mask = remap_codes(raw, remap)
        if mask.size and (mask.min() < 0 or mask.max() > IGNORE_INDEX):
            raise LandlearnError(
                f"mask codes {int(mask.min())}..{int(mask.max())} are not class indices "
                f"0..{IGNORE_INDEX}; pass remap",
                path,
            )
        if color_table is not None and mask.size:
            n = color_table.num_classes
            codes = mask[mask != IGNORE_INDEX]
            if codes.size and int(codes.max()) >= n:
                raise LandlearnError(
                    f"mask code {int(codes.max())} but the colour table has {n} classes "
                    f"(0..{n - 1}); pass remap, or store the mask as RGB colours",
                    path,
                )
    return mask.astype(np.uint8)
