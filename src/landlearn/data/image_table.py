"""Photos + table: one or more photos per table row, with the row's encoded attributes.

A sample is ``{"image": (C', H', W'), "meta": (F,), "label": ()}``. The photos of a row (GLOBE's
North / East / South / West / Up / Down, or one image) are resized to ``size`` and either

- ``views="stack"``: stacked along channels, ``(V·C, size, size)`` (a model sees every view in
  its first convolution), or
- ``views="collage"``: tiled into one picture, ``(C, rows·size, cols·size)`` with
  ``cols = ceil(√V)`` (the founding study's choice; an empty cell stays 0).

The table row is encoded by a :class:`landlearn.data.tables.TableEncoder` fitted on the
*training rows only*; its features (already standardised) are the ``meta`` input, a ``table``
``InputSpec`` with mean 0 and std 1, and its fitted state is kept as ``table_encoder`` for the
bundle.

A photo file that is missing is an error naming the row and the file, or (``missing_photo=
"skip"``) the row is dropped and the count logged.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from landlearn.data.balance import class_counts_from_targets, oversampling_sampler
from landlearn.data.datamodules import LandlearnDataModule
from landlearn.data.io import raster_info, read_raster
from landlearn.data.splits import stratified_split
from landlearn.data.tables import TableEncoder, read_table, row_name
from landlearn.errors import LandlearnError
from landlearn.schema import InputSpec

log = logging.getLogger(__name__)

__all__ = ["VIEW_MODES", "ImageTableDataModule", "ImageTableDataset", "link_photos"]

VIEW_MODES = ("stack", "collage")
TABLE_INPUT = "meta"


def link_photos(
    df: pd.DataFrame,
    columns: Sequence[str],
    root: str | os.PathLike[str] | None = None,
    *,
    missing_photo: str = "raise",
) -> tuple[pd.DataFrame, list[list[Path]]]:
    """The rows whose photos exist, and each row's photo paths (one per column, in order).

    A relative path is read under ``root`` (default: the table's folder).

    Raises:
        LandlearnError: a photo column missing from the table; with ``missing_photo="raise"``
            a row whose photo is empty or absent (naming the table, row, column and file).
    """
    if missing_photo not in ("raise", "skip"):
        raise LandlearnError(f"missing_photo must be 'raise' or 'skip', got {missing_photo!r}")
    if isinstance(columns, str) or not columns:
        raise LandlearnError(f"photo columns must be a list of column names, got {columns!r}")
    where = df.attrs.get("path")
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise LandlearnError(f"no photo column {absent[0]!r} in the table", where)
    base = Path(root) if root is not None else Path(where).parent if where else Path(".")
    keep, photos, skipped = [], [], []
    for i in range(len(df)):
        paths, problem = [], None
        for column in columns:
            value = df[column].iloc[i]
            if not isinstance(value, str | os.PathLike) or not str(value).strip():
                problem = f"{row_name(df, i)}, column {column!r}: no photo"
                break
            path = Path(str(value).strip())
            path = path if path.is_absolute() else base / path
            if not path.is_file():
                problem = f"{row_name(df, i)}, column {column!r}: photo {path} not found"
                break
            paths.append(path)
        if problem is None:
            keep.append(i)
            photos.append(paths)
        elif missing_photo == "raise":
            raise LandlearnError(f"{problem}; add it or pass missing_photo='skip'", where)
        else:
            skipped.append(problem)
    if skipped:
        log.warning("%s: skipped %d row(s) without a photo; first: %s", where, len(skipped),
                    skipped[0])  # fmt: skip
    out = df.iloc[keep].copy()
    out.attrs = dict(df.attrs)
    return out, photos


class ImageTableDataset(Dataset[dict[str, torch.Tensor]]):
    """Photos of each row (stacked or as a collage) with its encoded table features.

    Args:
        photos: per row, its photo files (every row the same number of views).
        features: ``(N, F)`` float32 encoded table rows.
        labels: ``(N,)`` class indices, or None (unlabelled).
        size: side each photo is resized to.
        views: ``stack`` or ``collage``.
    """

    def __init__(
        self,
        photos: Sequence[Sequence[Path]],
        features: np.ndarray,
        labels: np.ndarray | None,
        *,
        size: int = 64,
        views: str = "stack",
    ) -> None:
        if views not in VIEW_MODES:
            raise LandlearnError(f"views must be one of {', '.join(VIEW_MODES)}, got {views!r}")
        if len(photos) != len(features) or (labels is not None and len(labels) != len(photos)):
            raise LandlearnError(
                f"{len(photos)} photo rows, {len(features)} table rows and "
                f"{'no' if labels is None else len(labels)} labels must agree"
            )
        counts = {len(p) for p in photos}
        if len(counts) > 1:
            raise LandlearnError(f"every row needs the same number of photos, got {sorted(counts)}")
        if int(size) < 8:
            raise LandlearnError(f"size must be >= 8 pixels, got {size}")
        self.photos = [list(p) for p in photos]
        self.features = np.asarray(features, dtype=np.float32)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.size, self.views = int(size), views
        self.num_views = counts.pop() if counts else 0

    @property
    def targets(self) -> list[int]:
        """Class index per row (for stratified splits and samplers)."""
        return [] if self.labels is None else [int(v) for v in self.labels]

    def __len__(self) -> int:
        return len(self.photos)

    def _photo(self, path: Path) -> torch.Tensor:
        x = torch.from_numpy(read_raster(path))  # (C, h, w) raw
        if tuple(x.shape[1:]) != (self.size, self.size):
            x = F.interpolate(
                x[None], size=(self.size, self.size), mode="bilinear", antialias=True,
                align_corners=False,
            )[0]  # fmt: skip
        return x

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        views = [self._photo(p) for p in self.photos[index]]
        channels = {int(v.shape[0]) for v in views}
        if len(channels) > 1:
            raise LandlearnError(
                f"photos of one row differ in bands ({sorted(channels)})", self.photos[index][0]
            )
        if self.views == "stack":
            image = torch.cat(views, dim=0)  # (V·C, size, size)
        else:
            cols = math.ceil(math.sqrt(len(views)))
            rows = math.ceil(len(views) / cols)
            c, s = views[0].shape[0], self.size
            image = views[0].new_zeros(c, rows * s, cols * s)
            for k, v in enumerate(views):
                r, q = divmod(k, cols)
                image[:, r * s : (r + 1) * s, q * s : (q + 1) * s] = v
        sample = {"image": image, TABLE_INPUT: torch.from_numpy(self.features[index])}
        if self.labels is not None:
            sample["label"] = torch.tensor(int(self.labels[index]))
        return sample

    def subset(self, indices: Sequence[int]) -> ImageTableDataset:
        """The rows at ``indices``, same options."""
        idx = list(indices)
        return ImageTableDataset(
            [self.photos[i] for i in idx],
            self.features[idx],
            None if self.labels is None else self.labels[idx],
            size=self.size,
            views=self.views,
        )


class ImageTableDataModule(LandlearnDataModule):
    """Classification from photos + a table (CSV or parquet): inputs ``image`` and ``meta``.

    Args:
        table: the table file, one row per sample.
        photo_columns: columns holding each row's photo paths (one per view).
        label: the column of the class (any values; classes are its sorted distinct values).
        root: folder relative photo paths are read under (default: the table's folder).
        numeric, boolean, categorical, date, latlon: the table columns the ``meta`` input
            encodes and how (``TableEncoder``; fitted on training rows only).
        split_column: a column of ``train`` / ``val`` / ``test`` per row; without it, rows are
            split per class by ``val_fraction`` / ``test_fraction`` and ``seed``.
        views: ``stack`` or ``collage`` (see the module doc); ``size``: pixels per photo.
        missing_photo: ``raise`` or ``skip`` a row whose photo is missing.
        table_input: include the ``meta`` input (False: photos only, the image-only baseline
            on the same rows and splits).
        image_input: include the ``image`` input (False: the table-only baseline).
    """

    task = "classification"

    def __init__(
        self,
        table: str,
        photo_columns: list[str],
        label: str,
        root: str | None = None,
        numeric: list[str] | None = None,
        boolean: list[str] | None = None,
        categorical: list[str] | None = None,
        date: list[str] | None = None,
        latlon: list[str] | None = None,
        split_column: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        views: str = "stack",
        size: int = 64,
        missing_photo: str = "raise",
        table_input: bool = True,
        image_input: bool = True,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        augment: dict[str, Any] | None = None,
        balance: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, augment, balance)
        self.save_hyperparameters()
        if not (table_input or image_input):
            raise LandlearnError("give the image input, the table input or both")
        if views not in VIEW_MODES:
            raise LandlearnError(f"views must be one of {', '.join(VIEW_MODES)}, got {views!r}")
        self.table, self.photo_columns, self.label = table, list(photo_columns), label
        self.root, self.split_column = root, split_column
        self.roles = {
            "numeric": list(numeric or []),
            "boolean": list(boolean or []),
            "categorical": list(categorical or []),
            "date": list(date or []),
        }
        self.latlon = None if latlon is None else list(latlon)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.views, self.size, self.missing_photo = views, int(size), missing_photo
        self.table_input, self.image_input = bool(table_input), bool(image_input)
        self.table_encoder: TableEncoder | None = None
        if not self.image_input:
            self.augment = None  # nothing spatial to augment

    def _splits(self, df: pd.DataFrame, labels: np.ndarray) -> tuple[list[int], ...]:
        if self.split_column is None:
            return stratified_split(labels, self.val_fraction, self.test_fraction, self.seed)
        if self.split_column not in df.columns:
            raise LandlearnError(f"no split column {self.split_column!r}", df.attrs.get("path"))
        values = df[self.split_column].astype(str).str.strip().str.lower().to_numpy()
        bad = np.flatnonzero(~np.isin(values, ["train", "val", "test"]))
        if len(bad):
            raise LandlearnError(
                f"{row_name(df, int(bad[0]))}, column {self.split_column!r}: "
                f"{values[bad[0]]!r} is not train, val or test",
                df.attrs.get("path"),
            )
        return tuple(
            [int(i) for i in np.flatnonzero(values == s)] for s in ("train", "val", "test")
        )

    def _build(self) -> None:
        df = read_table(self.table, required=[self.label, *self.photo_columns])
        df, photos = link_photos(
            df, self.photo_columns, self.root, missing_photo=self.missing_photo
        )
        if len(df) == 0:
            raise LandlearnError("no rows left with their photos", self.table)
        given = df[self.label]
        empty = np.flatnonzero(given.isna().to_numpy())
        if len(empty):
            raise LandlearnError(
                f"{row_name(df, int(empty[0]))}, column {self.label!r}: no label", self.table
            )
        values = given.astype(str).str.strip().to_numpy()
        classes = sorted(set(values))
        if len(classes) < 2:
            raise LandlearnError(
                f"column {self.label!r} has one class ({classes}); need two", self.table
            )
        labels = np.array([classes.index(v) for v in values], dtype=np.int64)
        train, val, test = self._splits(df, labels)
        if not train:
            raise LandlearnError("no training rows", self.table)
        if self.table_input or any(self.roles.values()) or self.latlon:
            encoder = TableEncoder(**self.roles, latlon=self.latlon)
            encoder.fit(df.iloc[train])  # statistics of the training rows only
            self.table_encoder = encoder
            features = encoder.transform(df)
        else:
            features = np.zeros((len(df), 0), dtype=np.float32)
        full = ImageTableDataset(photos, features, labels, size=self.size, views=self.views)
        self.train_dataset = full.subset(train)
        self.val_dataset = full.subset(val) if val else None
        self.test_dataset = full.subset(test) if test else None
        info = raster_info(photos[0][0])
        names = info.band_names or [f"b{i + 1}" for i in range(info.count)]
        views = len(self.photo_columns)
        if self.views == "stack" and views > 1:
            names = [f"{c}:{b}" for c in self.photo_columns for b in names]
        self.band_names = list(names)
        self.class_names = classes
        self.chip_size = self.size if self.views == "stack" else full[0]["image"].shape[-1]

    def _augmented_inputs(self) -> list[str]:
        return ["image"]

    def _input_bands(self) -> dict[str, list[str]]:
        bands: dict[str, list[str]] = {}
        if self.image_input:
            bands["image"] = list(self.band_names)
        if self.table_input:
            assert self.table_encoder is not None
            bands[TABLE_INPUT] = list(self.table_encoder.feature_names)
        return bands

    def _given_stats(self) -> dict[str, tuple[list[float], list[float]]]:
        out = dict(self.input_stats)
        if self.table_input and self.table_encoder is not None:  # already standardised
            n = len(self.table_encoder.feature_names)
            out[TABLE_INPUT] = ([0.0] * n, [1.0] * n)
        return out

    def _input_spec(
        self, name: str, bands: list[str], mean: list[float], std: list[float]
    ) -> InputSpec:
        if name == TABLE_INPUT:
            return InputSpec(name, "table", bands=bands, mean=mean, std=std)
        return InputSpec(name, "photos", bands=bands, mean=mean, std=std,
                         chip_size=self.chip_size or None)  # fmt: skip

    def _train_class_counts(self) -> np.ndarray:
        assert isinstance(self.train_dataset, ImageTableDataset)
        return class_counts_from_targets(self.train_dataset.targets, self.num_classes)

    def _train_sampler(self) -> torch.utils.data.Sampler[int] | None:
        if not self.balance:
            return None
        assert isinstance(self.train_dataset, ImageTableDataset)
        return oversampling_sampler(self.train_dataset.targets, self.seed)

    def table_state(self) -> Mapping[str, Any] | None:
        """The fitted table encoder (roles and training statistics) for the bundle, if any."""
        return None if self.table_encoder is None else self.table_encoder.to_dict()
