"""BigEarthNet-MM Sentinel-1 / Sentinel-2 patch pairs with their multi-label CORINE labels.

The layout of the BigEarthNet archives: ``BigEarthNet-S1/<S1 patch>/<patch>_{VV,VH}.tif`` with
``<patch>_labels_metadata.json`` naming its ``corresponding_s2_patch``, and
``BigEarthNet-S2/<S2 patch>/<patch>_B01.tif … _B12.tif``. S2's bands come at three resolutions
(10 m: 120 × 120 px, 20 m: 60 × 60, 60 m: 20 × 20); they are resampled to the 10 m grid
(bilinear) and stacked in :data:`S2_BANDS` order. A sample is ``{"s2": (12, 120, 120),
"s1": (2, 120, 120), "label": (K,)}`` with a 0/1 entry per class name (multi-label).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from landlearn.data.datamodules import LandlearnDataModule
from landlearn.data.io import read_raster
from landlearn.errors import LandlearnError
from landlearn.schema import HeadSpec

log = logging.getLogger(__name__)

__all__ = ["S1_BANDS", "S2_BANDS", "BigEarthNetPairs", "BigEarthNetPairsDataModule"]

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S1_BANDS = ("VV", "VH")


def _pairs(root: Path) -> list[tuple[Path, Path, list[str]]]:
    s1_root, s2_root = root / "BigEarthNet-S1", root / "BigEarthNet-S2"
    if not s1_root.is_dir() or not s2_root.is_dir():
        raise LandlearnError("expected BigEarthNet-S1/ and BigEarthNet-S2/ folders", root)
    out = []
    for s1 in sorted(p for p in s1_root.iterdir() if p.is_dir()):
        meta_path = s1 / f"{s1.name}_labels_metadata.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise LandlearnError(f"cannot read the patch metadata ({exc})", meta_path) from None
        s2_name = meta.get("corresponding_s2_patch")
        labels = meta.get("labels")
        if not isinstance(s2_name, str) or not isinstance(labels, list):
            raise LandlearnError("no corresponding_s2_patch or labels", meta_path)
        s2 = s2_root / s2_name
        if not s2.is_dir():
            raise LandlearnError(f"its S2 patch {s2_name} is missing", meta_path)
        out.append((s1, s2, [str(v) for v in labels]))
    if not out:
        raise LandlearnError("no S1 patches found", s1_root)
    return out


class BigEarthNetPairs(Dataset[dict[str, torch.Tensor]]):
    """S1 + S2 patch pairs on the 10 m grid with multi-hot labels over ``classes``.

    Args:
        root: holds ``BigEarthNet-S1`` and ``BigEarthNet-S2``.
        classes: label names, in order (default: every label found, sorted).
        indices: keep only these pairs (in sorted S1 patch order).
    """

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        pairs = _pairs(Path(root))
        found = sorted({name for _, _, labels in pairs for name in labels})
        self.classes = list(classes) if classes is not None else found
        unknown = sorted(set(found) - set(self.classes))
        if unknown and classes is not None:
            log.warning("%s: labels outside the classes are dropped: %s", root, unknown)
        chosen = list(range(len(pairs))) if indices is None else list(indices)
        self.pairs = [pairs[i] for i in chosen]

    def __len__(self) -> int:
        return len(self.pairs)

    def _bands(self, folder: Path, bands: Sequence[str], size: int | None) -> torch.Tensor:
        layers = []
        for band in bands:
            path = folder / f"{folder.name}_{band}.tif"
            x = torch.from_numpy(read_raster(path))  # (1, h, w)
            if size is not None and tuple(x.shape[1:]) != (size, size):
                x = F.interpolate(x[None], size=(size, size), mode="bilinear",
                                  align_corners=False)[0]  # fmt: skip
            layers.append(x)
        return torch.cat(layers, dim=0)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s1_dir, s2_dir, labels = self.pairs[index]
        s1 = self._bands(s1_dir, S1_BANDS, None)  # (2, 120, 120)
        s2 = self._bands(s2_dir, S2_BANDS, int(s1.shape[-1]))  # (12, 120, 120) on S1's grid
        target = torch.zeros(len(self.classes))
        for name in labels:
            if name in self.classes:
                target[self.classes.index(name)] = 1.0
        return {"s2": s2, "s1": s1, "label": target}


class BigEarthNetPairsDataModule(LandlearnDataModule):
    """Multi-label scene classification from BigEarthNet S1 + S2 pairs (inputs ``s2``, ``s1``).

    Args:
        root: holds ``BigEarthNet-S1`` and ``BigEarthNet-S2``.
        test_pairs: how many pairs (the last ones in patch order) are the test split; the rest
            train (and validate: with this little data the validation split is the training
            split, said here rather than hidden).
    """

    task = "classification"

    def __init__(
        self,
        root: str,
        test_pairs: int = 2,
        batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.root, self.test_pairs = root, int(test_pairs)

    def _build(self) -> None:
        full = BigEarthNetPairs(self.root)
        n = len(full)
        if not 0 < self.test_pairs < n:
            raise LandlearnError(f"test_pairs must be in 1..{n - 1}, got {self.test_pairs}")
        train = list(range(n - self.test_pairs))
        test = list(range(n - self.test_pairs, n))
        self.train_dataset = BigEarthNetPairs(self.root, full.classes, train)
        self.val_dataset = self.train_dataset
        self.test_dataset = BigEarthNetPairs(self.root, full.classes, test)
        self.class_names = list(full.classes)
        self.band_names = list(S2_BANDS)
        self.chip_size = 120

    def _input_bands(self) -> dict[str, list[str]]:
        return {"s2": list(S2_BANDS), "s1": list(S1_BANDS)}

    @property
    def head_specs(self) -> list[HeadSpec]:
        """One multi-label head."""
        if not self.input_stats:
            self.setup("fit")
        return [HeadSpec("classification", "multilabel", classes=self.class_names)]

    def _train_class_counts(self) -> np.ndarray:
        assert isinstance(self.train_dataset, BigEarthNetPairs)
        counts = np.zeros(len(self.class_names), dtype=np.int64)
        for _, _, labels in self.train_dataset.pairs:
            for name in labels:
                counts[self.class_names.index(name)] += 1
        return counts

    def describe(self) -> dict[str, Any]:
        """Pairs, classes and shapes (for the ingestion check)."""
        self.setup("fit")
        train, test = self.train_dataset, self.test_dataset
        assert isinstance(train, BigEarthNetPairs)
        assert isinstance(test, BigEarthNetPairs)
        sample = train[0]
        return {
            "pairs": len(train) + len(test),
            "classes": len(self.class_names),
            "s2": list(sample["s2"].shape),
            "s1": list(sample["s1"].shape),
        }
