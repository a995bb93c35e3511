"""Presto's evaluation time series (live fuel moisture, algal blooms) as a table datamodule.

The files are those of ``nasaharvest/presto`` ``data/<task>/npy/`` (``../shared/data/presto``):
``s1_s2_era5_srtm.npy`` ``(N, S, 18)`` raw monthly values in the order of :data:`PRESTO_BANDS`,
``target.npy`` ``(N,)``, ``latlon.npy`` ``(N, 2)``, ``month.npy`` ``(N, S)`` (0 = January),
``site.npy`` ``(N,)`` and ``is_test.npy`` ``(N,)`` (Presto's own test split, whose sites are not
in the training split).

Features (``features``, in this order):

- ``eo``: the ``S × 18`` monthly values flattened, month-major (``VV_m0, VH_m0, ..., NDVI_m2``);
  the terrain bands repeat each month, as in the files;
- ``latlon``: latitude and longitude in degrees;
- ``month``: sine and cosine of the last step's month (the season of the target).

A sample is ``{"meta": float32 (F,), "target": float32 (1,)}`` in raw units; the datamodule
normalises ``meta`` per column with training-split statistics (``input_spec``) after transfer,
and a NaN feature becomes 0 (the training mean) there. Validation, when asked for, holds out
whole training *sites* (seeded), as Presto's test split does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from landlearn.conventions import MIN_STD
from landlearn.data.normalize import normalize_input
from landlearn.data.splits import random_split_indices
from landlearn.errors import LandlearnError
from landlearn.schema import HeadSpec, InputSpec

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_GROUPS",
    "PRESTO_BANDS",
    "PRESTO_TASKS",
    "FeatureDataset",
    "PrestoArrays",
    "PrestoDataModule",
    "load_presto",
    "presto_features",
]

PRESTO_BANDS = (
    "VV", "VH", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12",
    "temperature_2m", "total_precipitation", "elevation", "slope", "NDVI",
)  # fmt: skip
"""Presto's ``S1_S2_ERA5_SRTM.BANDS``: S1 (dB), S2 (reflectance x 10000), ERA5, SRTM, NDVI."""

PRESTO_TASKS = {"fuel_moisture": ("lfmc", "%"), "algae_blooms": ("severity", "level")}
"""Task folder → (target name, unit)."""

FEATURE_GROUPS = ("eo", "latlon", "month")
_FILES = ("s1_s2_era5_srtm", "target", "latlon", "month", "site", "is_test")


@dataclass(frozen=True)
class PrestoArrays:
    """The files of one Presto task, checked for consistent lengths."""

    eo: np.ndarray  # (N, S, 18) float64
    target: np.ndarray  # (N,)
    latlon: np.ndarray  # (N, 2) lat, lon
    month: np.ndarray  # (N, S) int, 0 = January
    site: np.ndarray  # (N,) str
    is_test: np.ndarray  # (N,) bool

    def __len__(self) -> int:
        return len(self.target)


def _npy_dir(root: Path, task: str) -> Path:
    for cand in (root / task / "npy", root / "npy", root):
        if (cand / "target.npy").is_file():
            return cand
    raise LandlearnError(
        f"no Presto {task} files (npy/target.npy) here; give the folder that holds "
        f"{task}/npy or npy/",
        root,
    )


def load_presto(root: str | os.PathLike[str], task: str = "fuel_moisture") -> PrestoArrays:
    """Read one task's ``.npy`` files from ``root`` (``presto/``, ``presto/<task>`` or its ``npy``).

    Raises:
        LandlearnError: unknown task, missing or unreadable file, or lengths that differ.
    """
    if task not in PRESTO_TASKS:
        raise LandlearnError(f"unknown Presto task {task!r}; known: {', '.join(PRESTO_TASKS)}")
    folder = _npy_dir(Path(root), task)
    arrays: dict[str, np.ndarray] = {}
    for name in _FILES:
        path = folder / f"{name}.npy"
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise LandlearnError(f"cannot read Presto array: {exc}", path) from exc
    eo = arrays["s1_s2_era5_srtm"]
    n = len(arrays["target"])
    if eo.ndim != 3 or eo.shape[2] != len(PRESTO_BANDS):
        raise LandlearnError(
            f"expected (N, months, {len(PRESTO_BANDS)}) values, got {eo.shape}",
            folder / "s1_s2_era5_srtm.npy",
        )
    for name, arr in arrays.items():
        if len(arr) != n:
            raise LandlearnError(f"{len(arr)} rows but target.npy has {n}", folder / f"{name}.npy")
    return PrestoArrays(
        eo=eo.astype(np.float64),
        target=arrays["target"].astype(np.float64),
        latlon=arrays["latlon"].astype(np.float64),
        month=arrays["month"].astype(np.int64),
        site=arrays["site"].astype(str),
        is_test=arrays["is_test"].astype(bool),
    )


def presto_features(
    arrays: PrestoArrays, features: Sequence[str] = FEATURE_GROUPS
) -> tuple[np.ndarray, list[str]]:
    """Raw feature table ``(N, F)`` float64 and its column names (see the module docstring).

    Raises:
        LandlearnError: an unknown or repeated feature group, or none.
    """
    bad = [f for f in features if f not in FEATURE_GROUPS]
    if bad or not features or len(set(features)) != len(features):
        raise LandlearnError(
            f"features must be distinct names from {', '.join(FEATURE_GROUPS)}, "
            f"got {list(features)}"
        )
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for group in features:
        if group == "eo":
            steps = arrays.eo.shape[1]
            blocks.append(arrays.eo.reshape(len(arrays), -1))
            names += [f"{b}_m{t}" for t in range(steps) for b in PRESTO_BANDS]
        elif group == "latlon":
            blocks.append(arrays.latlon)
            names += ["lat", "lon"]
        else:
            angle = 2 * np.pi * arrays.month[:, -1] / 12.0
            blocks.append(np.stack([np.sin(angle), np.cos(angle)], axis=1))
            names += ["month_sin", "month_cos"]
    return np.concatenate(blocks, axis=1), names


def column_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """NaN-aware per-column mean and population std (floored at ``MIN_STD``).

    Raises:
        LandlearnError: no rows, or a column with no finite value.
    """
    finite = np.isfinite(x)
    empty = np.flatnonzero(~finite.any(axis=0)) if len(x) else np.arange(x.shape[1])
    if len(empty):
        raise LandlearnError(f"column(s) {empty.tolist()} have no finite value in the train split")
    v = np.where(finite, x, np.nan)
    mean, std = np.nanmean(v, axis=0), np.maximum(np.nanstd(v, axis=0), MIN_STD)
    return [float(m) for m in mean], [float(s) for s in std]


class FeatureDataset(Dataset[dict[str, Tensor]]):
    """Rows of a feature table and their targets: ``{key: (F,), "target": (T,)}`` float32."""

    def __init__(self, features: np.ndarray, targets: np.ndarray, key: str = "meta") -> None:
        if len(features) != len(targets):
            raise LandlearnError(f"{len(features)} feature rows for {len(targets)} targets")
        self.features = torch.as_tensor(features, dtype=torch.float32)
        t = torch.as_tensor(targets, dtype=torch.float32)
        self.targets = t[:, None] if t.ndim == 1 else t
        self.key = key

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {self.key: self.features[i], "target": self.targets[i]}


class PrestoDataModule(LightningDataModule):
    """One Presto task as a table: Presto's train / test split, optional site-held-out val.

    Args:
        root: ``presto/``, ``presto/<task>`` or its ``npy`` folder.
        task: ``fuel_moisture`` or ``algae_blooms``.
        features: feature groups, from ``eo``, ``latlon``, ``month``.
        val_fraction: share of training *sites* held out for validation (0: none).
        limit_train: keep this many (seeded) training rows, for smoke runs.
        key: sample key of the features (the ``InputSpec`` name).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        task: str = "fuel_moisture",
        features: Sequence[str] = FEATURE_GROUPS,
        val_fraction: float = 0.0,
        limit_train: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        key: str = "meta",
    ) -> None:
        super().__init__()
        self.root, self.task, self.features = Path(root), task, list(features)
        self.val_fraction, self.limit_train = float(val_fraction), limit_train
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.key = key
        self.splits: dict[str, np.ndarray] = {}
        self.columns: list[str] = []
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self.input_spec: InputSpec | None = None
        self.head_spec: HeadSpec | None = None

    def setup(self, stage: str | None = None) -> None:
        """Read, split and compute training-split statistics once."""
        if self._x is not None:
            return
        arrays = load_presto(self.root, self.task)
        x, self.columns = presto_features(arrays, self.features)
        test = np.flatnonzero(arrays.is_test)
        train = np.flatnonzero(~arrays.is_test)
        val = np.zeros(0, dtype=np.int64)
        if self.val_fraction > 0:
            sites = np.unique(arrays.site[train])
            _, val_sites, _ = random_split_indices(len(sites), self.val_fraction, 0.0, self.seed)
            held = np.isin(arrays.site[train], sites[val_sites])
            train, val = train[~held], train[held]
        if self.limit_train is not None and self.limit_train < len(train):
            rng = np.random.default_rng(self.seed)
            train = np.sort(rng.permutation(train)[: int(self.limit_train)])
        self.splits = {"train": train, "val": val, "test": test}
        self._x, self._y = x, arrays.target
        mean, std = column_stats(x[train])
        self.input_spec = InputSpec(self.key, "table", bands=self.columns, mean=mean, std=std)
        t_mean, t_std = column_stats(arrays.target[train, None])
        name, unit = PRESTO_TASKS[self.task]
        self.head_spec = HeadSpec(
            name, "regression", targets=[name], units=[unit], mean=t_mean, std=t_std
        )
        log.info(
            "Presto %s: %d train, %d val, %d test rows, %d features",
            self.task, len(train), len(val), len(test), len(self.columns),
        )  # fmt: skip

    def _spec(self) -> InputSpec:
        if self.input_spec is None:
            self.setup()
        assert self.input_spec is not None
        return self.input_spec

    @property
    def input_specs(self) -> list[InputSpec]:
        """The feature table's spec (training-split statistics), after ``setup``."""
        return [self._spec()]

    @property
    def head_specs(self) -> list[HeadSpec]:
        """The regression head (target name, unit, training-split statistics)."""
        self._spec()
        assert self.head_spec is not None
        return [self.head_spec]

    def normalize(self, x: Tensor) -> Tensor:
        """``(x - mean) / std`` per column ``(B, F)`` with training-split statistics; NaN → 0."""
        return normalize_input(x.float(), self._spec(), nan_value=0.0)

    def arrays(self, split: str, normalized: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(X (N, F) float32, y (N,) float64)`` of ``train``, ``val`` or ``test`` (for sklearn).

        Raises:
            LandlearnError: an unknown split name.
        """
        spec = self._spec()
        if split not in self.splits:
            raise LandlearnError(f"unknown split {split!r}; expected train, val or test")
        assert self._x is not None
        assert self._y is not None
        idx = self.splits[split]
        x = self._x[idx]
        if normalized:
            x = normalize_input(x, spec, nan_value=0.0)
        return x.astype(np.float32), self._y[idx]

    def dataset(self, split: str) -> FeatureDataset:
        """Raw-unit samples of one split."""
        x, y = self.arrays(split, normalized=False)
        return FeatureDataset(x, y, key=self.key)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> Any:
        """Normalise the features of every batch on its device."""
        batch[self.key] = self.normalize(batch[self.key])
        return batch

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader[dict[str, Tensor]]:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        """Shuffled, seeded."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[dict[str, Tensor]] | list[Any]:
        """Validation rows; an empty list (Lightning skips validation) when there are none."""
        self._spec()
        return self._loader("val") if len(self.splits["val"]) else []

    def test_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        """Presto's test split."""
        return self._loader("test")
