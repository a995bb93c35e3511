"""LightningDataModules for image folders, image + mask folders and GeoTIFF scene pairs.

Batches leave the loaders in raw units. ``on_after_batch_transfer`` augments training batches on the
device (``build_augment``) and then normalises every input of every batch with that input's
train-split per-band mean and std (``landlearn.data.normalize``), so the numbers a bundle stores are
exactly the ones training used. After ``setup("fit")`` a datamodule describes what it yields as
``input_specs`` (one ``InputSpec`` per input, with those statistics) and ``head_specs`` (one
``HeadSpec`` per target).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from landlearn.conventions import IGNORE_INDEX, MIN_STD
from landlearn.data.augment import build_augment
from landlearn.data.balance import class_counts_from_targets, class_weights, oversampling_sampler
from landlearn.data.folders import (
    DEFAULT_IGNORE,
    ColorTable,
    ImageChipsDataset,
    ImageFolderDataset,
    MaskFolderDataset,
)
from landlearn.data.io import generic_band_names, raster_info
from landlearn.data.normalize import compute_stats, normalize, normalize_batch
from landlearn.data.rasters import (
    RasterPairDataset,
    check_remap,
    deal_blocks,
    scene_blocks,
    split_scene,
)
from landlearn.data.splits import label_subset, random_split_indices, stratified_split
from landlearn.errors import LandlearnError
from landlearn.schema import HeadSpec, InputSpec

__all__ = [
    "ImageFolderDataModule",
    "LandlearnDataModule",
    "MaskFolderDataModule",
    "RasterPairDataModule",
    "WithoutTargets",
    "datamodule_specs",
    "describe_datamodule",
]

log = logging.getLogger(__name__)

Sample = dict[str, torch.Tensor]


class WithoutTargets(Dataset[Sample]):
    """A dataset's samples with their targets (``label``, ``mask``, ``target``) removed."""

    TARGET_KEYS = ("label", "mask", "target")

    def __init__(self, dataset: Dataset[Sample]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        return {k: v for k, v in sample.items() if k not in self.TARGET_KEYS}


class LandlearnDataModule(LightningDataModule):
    """What our datamodules share: names, train-split statistics, loaders, the transfer hook.

    Subclasses implement ``_build`` (set the three datasets, ``band_names``, ``class_names``,
    ``chip_size``) and ``_train_class_counts``. A datamodule of several inputs also overrides
    ``_input_bands`` (input name → band names, in order) and may give ``_given_stats``; ``mean``
    / ``std`` / ``band_names`` always describe the first input.

    Args:
        batch_size: samples per batch.
        num_workers: loader worker processes.
        seed: seed of splits, shuffling, random chips and the oversampling sampler.
        augment: ``build_augment`` config, applied to training batches only.
        balance: oversample rare classes in the train loader (classification).
        mean: per-band mean in raw units; with ``std``, skips computing them.
        std: per-band std in raw units.
    """

    task = "classification"

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        augment: dict[str, Any] | None = None,
        balance: bool = False,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.augment = augment
        self.balance = bool(balance)
        if (mean is None) != (std is None):
            raise LandlearnError("give both mean and std, or neither")
        self.mean: list[float] | None = None if mean is None else [float(v) for v in mean]
        self.std: list[float] | None = None if std is None else [float(v) for v in std]
        self.band_names: list[str] = []
        self.class_names: list[str] = []
        self.class_colors: list[list[int]] | None = None
        self.chip_size: int = 0
        self.train_dataset: Dataset[Sample] | None = None
        self.val_dataset: Dataset[Sample] | None = None
        self.test_dataset: Dataset[Sample] | None = None
        self.unlabelled_dataset: Dataset[Sample] | None = None
        self.train_aug: nn.Module | None = None
        self._class_weights: torch.Tensor | None = None
        self.input_stats: dict[str, tuple[list[float], list[float]]] = {}
        """Input name → (mean, std) of the train split in raw units, filled by ``setup``."""

    @property
    def num_classes(self) -> int:
        """Number of classes (``IGNORE_INDEX`` is not a class)."""
        return len(self.class_names)

    def _build(self) -> None:
        raise NotImplementedError

    def _train_class_counts(self) -> np.ndarray:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Build the splits once; compute mean / std on the train split unless given."""
        if self.train_dataset is None:
            self._build()
            assert self.train_dataset is not None
            log.info(
                "%s: %d train, %d val, %d test samples",
                type(self).__name__,
                len(self.train_dataset),
                len(self.val_dataset or []),
                len(self.test_dataset or []),
            )
        given = self._given_stats()
        for name, bands in self._input_bands().items():
            if name not in given:
                given[name] = compute_stats(self._stats_dataset(), seed=self.seed, key=name)
            mean, std = given[name]
            if len(mean) != len(bands) or len(std) != len(bands):
                where = "" if name == "image" else f"input {name!r}: "
                raise LandlearnError(
                    f"{where}mean / std have {len(mean)} / {len(std)} values but the data has "
                    f"{len(bands)} bands ({', '.join(bands)})"
                )
            if any(s <= 0 for s in std):
                raise LandlearnError(f"std must be positive, got {std}")
            self.input_stats[name] = (list(mean), list(std))
        self.mean, self.std = self.input_stats[self.input_names[0]]
        if self.train_aug is None:
            self.train_aug = build_augment(self.augment, self.task, self._augmented_inputs())

    # ---- inputs and heads -----------------------------------------------------------------
    def _augmented_inputs(self) -> list[str]:
        """The inputs augmentation moves and brightens (all of them unless a table is one)."""
        return self.input_names

    def _input_bands(self) -> dict[str, list[str]]:
        """Input name → band names, in sample order (one input, ``image``, by default)."""
        return {"image": list(self.band_names)}

    def _given_stats(self) -> dict[str, tuple[list[float], list[float]]]:
        """Statistics given in the config (or computed before), by input name."""
        out = dict(self.input_stats)
        if self.mean is not None and self.std is not None:
            out.setdefault(self.input_names[0], (list(self.mean), list(self.std)))
        return out

    def _stats_dataset(self) -> Dataset[Sample]:
        """The training-split samples the statistics are computed on."""
        assert self.train_dataset is not None
        return self.train_dataset

    def _input_spec(
        self, name: str, bands: list[str], mean: list[float], std: list[float]
    ) -> InputSpec:
        """The spec of one input; subclasses add no-data and resolution where they know them."""
        return InputSpec(name, "raster", bands=bands, mean=mean, std=std,
                         chip_size=self.chip_size or None)  # fmt: skip

    @property
    def input_names(self) -> list[str]:
        """Sample keys of the inputs, in the order models receive them."""
        return list(self._input_bands())

    @property
    def input_specs(self) -> list[InputSpec]:
        """One ``InputSpec`` per input, with its train-split mean / std (runs ``setup``)."""
        if not self.input_stats:
            self.setup("fit")
        bands = self._input_bands()
        return [self._input_spec(n, bands[n], *self.input_stats[n]) for n in bands]

    @property
    def head_specs(self) -> list[HeadSpec]:
        """One class head named after the task (``classification`` / ``segmentation``)."""
        if not self.input_stats:
            self.setup("fit")
        colors = self.class_colors or ()
        return [HeadSpec(self.task, self.task, classes=self.class_names, colors=colors)]

    @property
    def class_weights(self) -> torch.Tensor:
        """Inverse-frequency class weights from the train split (for weighted losses)."""
        if self._class_weights is None:
            if self.train_dataset is None:
                self.setup("fit")
            counts = np.asarray(self._train_class_counts(), dtype=np.int64)[: self.num_classes]
            self._class_weights = class_weights(counts)
        return self._class_weights

    def normalize(self, image: torch.Tensor, name: str | None = None) -> torch.Tensor:
        """Input ``name`` (default the first) ``(B, C, H, W)`` in raw units, normalised."""
        name = name or self.input_names[0]
        if name not in self.input_stats:
            if name == self.input_names[0] and self.mean is not None and self.std is not None:
                return normalize(image.float(), self.mean, self.std)
            raise LandlearnError("mean / std unknown; call setup() first")
        return normalize(image.float(), *self.input_stats[name])

    def on_after_batch_transfer(self, batch: Sample, dataloader_idx: int) -> Sample:
        """Augment training batches on the device, then normalise every input of every batch."""
        trainer = self.trainer
        names = self.input_names
        if trainer is not None and trainer.training and self.train_aug is not None:
            first = next((batch[n] for n in names if n in batch), None)
            if first is not None:
                batch = self.train_aug.to(first.device)(batch)
        if not self.input_stats:  # statistics given, setup not run (a loader built by hand)
            if names[0] in batch:
                batch[names[0]] = self.normalize(batch[names[0]])
            return batch
        return normalize_batch(batch, self.input_specs)

    def _loader(self, dataset: Dataset[Sample], train: bool = False) -> DataLoader[Sample]:
        sampler = self._train_sampler() if train else None
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def _train_sampler(self) -> torch.utils.data.Sampler[int] | None:
        return None

    def train_dataloader(self) -> DataLoader[Sample]:
        """Shuffled (or oversampled with ``balance``), seeded."""
        if self.train_dataset is None:
            self.setup("fit")
        assert self.train_dataset is not None
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader[Sample] | list[Any]:
        """Validation batches; an empty list (Lightning skips validation) when there is no split."""
        return [] if self.val_dataset is None else self._loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader[Sample]:
        """Test batches.

        Raises:
            LandlearnError: no test split was configured.
        """
        if self.test_dataset is None:
            raise LandlearnError("no test split: set test_fraction > 0 or give test files")
        return self._loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader[Sample]:
        """The test set."""
        return self.test_dataloader()

    def has_unlabelled(self) -> bool:
        """Whether ``unlabelled_dataloader()`` has samples to give (``setup`` runs if needed).

        True for the train samples that ``label_fraction`` left unlabelled and for extra
        unlabelled sources (image folders, scenes): every datamodule answers the same way, so a
        semi-supervised task need not know which kind it was given.
        """
        if self.train_dataset is None:
            self.setup("fit")
        return self.unlabelled_dataset is not None and len(self.unlabelled_dataset) > 0  # type: ignore[arg-type]

    def unlabelled_dataloader(self) -> DataLoader[Sample]:
        """Shuffled, seeded batches of the train samples that ``label_fraction`` left unlabelled.

        Their samples hold the inputs only (no ``label`` / ``mask`` / ``target``).

        Raises:
            LandlearnError: every train sample keeps its label (``label_fraction`` is 1).
        """
        if not self.has_unlabelled():
            raise LandlearnError(
                "no unlabelled samples: set label_fraction below 1 to keep the rest of the "
                "train split as unlabelled data"
            )
        assert self.unlabelled_dataset is not None
        generator = torch.Generator().manual_seed(self.seed + 1)
        return DataLoader(
            self.unlabelled_dataset,
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )


class ImageFolderDataModule(LandlearnDataModule):
    """Scene classification from ``root/<class>/*``, split per class (stratified) by ``seed``.

    Args:
        root: folder with one sub-folder per class.
        test_root: separate test folder; ``root`` is then split into train / val only.
        val_fraction: share of each class for validation.
        test_fraction: share of each class for test (ignored with ``test_root``).
        label_fraction: keep this share of the train labels per class (at least one each); the
            other train images become ``unlabelled_dataloader()`` (images only).
        bands: band numbers starting at 1; default all.
    """

    task = "classification"

    def __init__(
        self,
        root: str,
        test_root: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        label_fraction: float = 1.0,
        bands: list[int] | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        augment: dict[str, Any] | None = None,
        balance: bool = False,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, augment, balance, mean, std)
        self.save_hyperparameters()
        self.root, self.test_root = root, test_root
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.label_fraction = label_fraction
        self.bands = bands

    def _build(self) -> None:
        full = ImageFolderDataset(self.root, bands=self.bands)
        test_fraction = 0.0 if self.test_root else self.test_fraction
        train, val, test = stratified_split(
            full.targets, self.val_fraction, test_fraction, self.seed
        )
        kept = label_subset(train, full.targets, self.label_fraction, self.seed)
        rest = sorted(set(train) - set(kept))
        self.unlabelled_dataset = WithoutTargets(full.subset(rest)) if rest else None
        self.train_dataset = full.subset(kept)
        self.val_dataset = full.subset(val) if val else None
        if self.test_root:
            self.test_dataset = ImageFolderDataset(
                self.test_root, classes=full.classes, bands=self.bands
            )
        else:
            self.test_dataset = full.subset(test) if test else None
        self.band_names = list(full.band_names)
        self.class_names = list(full.classes)
        self.chip_size = raster_info(full.files[0]).height

    def _train_class_counts(self) -> np.ndarray:
        assert isinstance(self.train_dataset, ImageFolderDataset)
        return class_counts_from_targets(self.train_dataset.targets, self.num_classes)

    def _train_sampler(self) -> torch.utils.data.Sampler[int] | None:
        if not self.balance:
            return None
        assert isinstance(self.train_dataset, ImageFolderDataset)
        return oversampling_sampler(self.train_dataset.targets, self.seed)


def _names_from_remap(remap: dict[int, int] | None) -> list[str]:
    classes = [v for v in (remap or {}).values() if v != IGNORE_INDEX]
    return [f"class_{k}" for k in range(max(classes) + 1)] if classes else []


def _names_from_counts(counts: np.ndarray) -> list[str]:
    present = np.flatnonzero(counts)
    n = int(present.max()) + 1 if present.size else 0
    log.warning("class names not given; using class_0..class_%d from the train labels", n - 1)
    return [f"class_{k}" for k in range(n)]


class MaskFolderDataModule(LandlearnDataModule):
    """Segmentation from an image folder and a mask folder, split by image file.

    Args:
        images: image folder.
        masks: mask folder (RGB-coded with ``classes_csv``, or class codes).
        classes_csv: colour table (``name,hex`` or ``name,r,g,b``).
        ignore_classes: colour-table names that become ``IGNORE_INDEX``.
        remap: ``{code: class}`` for code masks; unmapped codes are ignored.
        class_names: names of the classes (override the colour table's).
        chip_size: chips cut from each image on a grid (edges padded).
        test_images: separate test images; then the folders are split train / val only.
        test_masks: masks of ``test_images``.
        label_fraction_pixels: keep this share of train pixels as sparse points.
        label_fraction: keep the masks of this share of the train images (at least one, drawn
            with ``seed``); the other train images go to the unlabelled loader
            (``unlabelled_dataloader``), for semi-supervised tasks. ``labelled_files`` and
            ``unlabelled_files`` name them after ``setup``.
        pseudo_masks: a folder of pseudo-label masks (``landlearn pseudo-label``: class codes,
            255 ignored) for the unlabelled train images: they join training with those masks
            (self-training's student). Validation and test images never use them.
        unlabelled_images: a folder of extra images without masks (e.g. a region's other
            tiles), chipped like the train images, added to the unlabelled loader; each must
            have the train images' band count.
    """

    task = "segmentation"

    def __init__(
        self,
        images: str,
        masks: str,
        classes_csv: str | None = None,
        ignore_classes: Sequence[str] = DEFAULT_IGNORE,
        remap: dict[int, int] | None = None,
        class_names: list[str] | None = None,
        chip_size: int = 256,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        test_images: str | None = None,
        test_masks: str | None = None,
        label_fraction_pixels: float = 1.0,
        batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 0,
        augment: dict[str, Any] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        label_fraction: float = 1.0,
        pseudo_masks: str | None = None,
        unlabelled_images: str | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, augment, False, mean, std)
        self.save_hyperparameters()
        if (test_images is None) != (test_masks is None):
            raise LandlearnError("give both test_images and test_masks, or neither")
        if not 0.0 < float(label_fraction) <= 1.0:
            raise LandlearnError(f"label_fraction must be in (0, 1], got {label_fraction}")
        if pseudo_masks is not None and float(label_fraction) >= 1.0:
            raise LandlearnError(
                "pseudo_masks label the unlabelled train images: set label_fraction below 1"
            )
        self.label_fraction = float(label_fraction)
        self.pseudo_masks = pseudo_masks
        self.unlabelled_images = unlabelled_images
        self.labelled_files: list[Any] = []
        self.unlabelled_files: list[Any] = []
        self.images, self.masks = images, masks
        self.test_images, self.test_masks = test_images, test_masks
        self.remap = check_remap(remap)
        self.chip_size = int(chip_size)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.label_fraction_pixels = label_fraction_pixels
        self.color_table = (
            ColorTable.from_csv(classes_csv, ignore=ignore_classes) if classes_csv else None
        )
        if self.color_table is not None:
            self.class_colors = self.color_table.class_colors
        names = self.color_table.class_names if self.color_table else _names_from_remap(self.remap)
        if class_names is not None:
            if names and len(class_names) != len(names):
                raise LandlearnError(
                    f"class_names has {len(class_names)} names but the labels have {len(names)}"
                )
            names = list(class_names)
        self.class_names = names

    def _dataset(self, images: str, masks: str, files: list[Any] | None, points: float) -> Any:
        return MaskFolderDataset(
            images, masks, self.color_table, self.remap, self.chip_size, files, points, self.seed
        )

    def _build(self) -> None:
        full = self._dataset(self.images, self.masks, None, 1.0)
        test_fraction = 0.0 if self.test_images else self.test_fraction
        train, val, test = random_split_indices(
            len(full.files), self.val_fraction, test_fraction, self.seed
        )
        pick = [full.files[i] for i in train]
        rest: list[Any] = []
        if self.label_fraction < 1.0 and pick:
            n = max(1, round(self.label_fraction * len(pick)))
            chosen = set(np.random.default_rng(self.seed).choice(len(pick), n, replace=False))
            rest = [f for i, f in enumerate(pick) if i not in chosen]
            pick = [f for i, f in enumerate(pick) if i in chosen]
        self.labelled_files, self.unlabelled_files = pick, rest
        labelled = self._dataset(self.images, self.masks, pick, self.label_fraction_pixels)
        self.train_dataset = labelled
        if rest:
            unlabelled = self._dataset(self.images, self.masks, rest, 1.0)
            self.unlabelled_dataset = WithoutTargets(unlabelled)
            if self.pseudo_masks is not None:
                pseudo = MaskFolderDataset(self.images, self.pseudo_masks, None, None,
                                           self.chip_size, rest, 1.0, self.seed)  # fmt: skip
                self.train_dataset = _WithPseudo(labelled, pseudo)
            log.info(
                "%d of %d train images keep their masks; %d unlabelled%s",
                len(pick),
                len(pick) + len(rest),
                len(rest),
                " (with pseudo-labels)" if self.pseudo_masks is not None else "",
            )
        if self.unlabelled_images is not None:
            extra = ImageChipsDataset(self.unlabelled_images, self.chip_size,
                                      bands=len(full.band_names))  # fmt: skip
            self.unlabelled_dataset = (
                extra
                if self.unlabelled_dataset is None
                else torch.utils.data.ConcatDataset([self.unlabelled_dataset, extra])
            )
            log.info("%d chips of %d extra unlabelled images", len(extra), len(extra.files))
        if val:
            self.val_dataset = self._dataset(
                self.images, self.masks, [full.files[i] for i in val], 1.0
            )
        if self.test_images and self.test_masks:
            self.test_dataset = self._dataset(self.test_images, self.test_masks, None, 1.0)
        elif test:
            self.test_dataset = self._dataset(
                self.images, self.masks, [full.files[i] for i in test], 1.0
            )
        self.band_names = list(full.band_names)
        if not self.class_names:
            self.class_names = _names_from_counts(self._train_class_counts())

    def _train_class_counts(self) -> np.ndarray:
        assert isinstance(self.train_dataset, MaskFolderDataset | _WithPseudo)
        return self.train_dataset.label_counts()


class _WithPseudo(torch.utils.data.ConcatDataset):
    """Labelled chips, then chips of the unlabelled images with their pseudo-label masks."""

    def __init__(self, labelled: MaskFolderDataset, pseudo: MaskFolderDataset) -> None:
        super().__init__([labelled, pseudo])
        self.labelled, self.pseudo = labelled, pseudo

    def label_counts(self) -> np.ndarray:
        """Pixels per class over both parts."""
        return np.asarray(self.labelled.label_counts() + self.pseudo.label_counts())


class RasterPairDataModule(LandlearnDataModule):
    """Segmentation from one GeoTIFF scene and its label raster, split into spatial blocks.

    Train draws ``samples_per_epoch`` random chips inside the train blocks; val and test read a
    grid of chips over their blocks (or over separate ``val_*`` / ``test_*`` files when given).

    Args:
        image: multiband GeoTIFF.
        label: class-code GeoTIFF on the same grid.
        class_names: class names; default ``class_<k>``.
        remap: ``{code: class}``; unmapped codes and label nodata become ``IGNORE_INDEX``.
        chip_size: chip size in pixels.
        samples_per_epoch: random train chips per epoch.
        block_size: side of the split blocks; default twice the chip size when the scene is
            large enough for five blocks, else the chip size.
        bands: band numbers starting at 1; default all.
        label_fraction_pixels: keep this share of the label's pixels as fixed sparse points
            (the same pixels in every chip and epoch; train and validation blocks; the test
            split stays dense), for ``loss: partial_ce`` studies of clicked points.
        label_fraction: keep the labels of this share of the train blocks (seeded, at least
            one); the other train blocks give mask-less chips to ``unlabelled_dataloader()``
            for the semi-supervised tasks (statistics come from the labelled train chips).
        class_colors: ``[r, g, b]`` per class; default the label raster's colour table.
    """

    task = "segmentation"

    def __init__(
        self,
        image: str,
        label: str,
        class_names: list[str] | None = None,
        class_colors: list[list[int]] | None = None,
        remap: dict[int, int] | None = None,
        chip_size: int = 64,
        samples_per_epoch: int = 256,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        val_image: str | None = None,
        val_label: str | None = None,
        test_image: str | None = None,
        test_label: str | None = None,
        bands: list[int] | None = None,
        block_size: int | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        augment: dict[str, Any] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        label_fraction_pixels: float = 1.0,
        label_fraction: float = 1.0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, augment, False, mean, std)
        self.save_hyperparameters()
        if not 0.0 < float(label_fraction) <= 1.0:
            raise LandlearnError(f"label_fraction must be in (0, 1], got {label_fraction}")
        self.label_fraction = float(label_fraction)
        if not 0.0 < float(label_fraction_pixels) <= 1.0:
            raise LandlearnError(
                f"label_fraction_pixels must be in (0, 1], got {label_fraction_pixels}"
            )
        self.label_fraction_pixels = float(label_fraction_pixels)
        for a, b in (("val_image", "val_label"), ("test_image", "test_label")):
            if (locals()[a] is None) != (locals()[b] is None):
                raise LandlearnError(f"give both {a} and {b}, or neither")
        self.image, self.label = image, label
        self.val_files = (val_image, val_label) if val_image and val_label else None
        self.test_files = (test_image, test_label) if test_image and test_label else None
        self.remap = check_remap(remap)
        self.chip_size = int(chip_size)
        self.samples_per_epoch = int(samples_per_epoch)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.bands, self.block_size = bands, block_size
        self.class_names = list(class_names) if class_names else _names_from_remap(self.remap)
        self.class_colors = [list(map(int, c))[:3] for c in class_colors] if class_colors else None
        self.crs: Any = None
        self.transform: Any = None
        self.nodata: float | None = None
        self.resolution: float | None = None

    def _grid(self, files: tuple[str, str], windows: list[Any] | None) -> RasterPairDataset:
        return RasterPairDataset(
            *files, self.chip_size, "grid", remap=self.remap, windows=windows, bands=self.bands
        )

    def _build(self) -> None:
        info = raster_info(self.image)
        val_fraction = 0.0 if self.val_files else self.val_fraction
        test_fraction = 0.0 if self.test_files else self.test_fraction
        block, train, val, test = split_scene(
            info.height, info.width, self.chip_size, self.block_size, val_fraction,
            test_fraction, self.seed,
        )  # fmt: skip
        self.nodata, self.resolution = info.nodata, _resolution(info.transform)
        scene = (self.image, self.label)
        unlabelled: list[Any] = []
        if self.label_fraction < 1.0:
            train, unlabelled = deal_blocks(train or scene_blocks(info.height, info.width, block),
                                            self.label_fraction, self.seed)  # fmt: skip
        self.train_dataset = RasterPairDataset(
            *scene, self.chip_size, "random", self.samples_per_epoch, self.remap,
            train or None, self.seed, self.bands, point_fraction=self.label_fraction_pixels,
        )  # fmt: skip
        self.unlabelled_dataset = self._unlabelled(unlabelled) if unlabelled else None
        self.val_dataset = self._grid(self.val_files or scene, None if self.val_files else val)
        if not self.val_files and val and self.label_fraction_pixels < 1.0:  # val: points too
            self.val_dataset = RasterPairDataset(
                *scene, self.chip_size, "grid", remap=self.remap, windows=val, seed=self.seed,
                bands=self.bands, point_fraction=self.label_fraction_pixels,
            )  # fmt: skip
        if not (self.val_files or val):
            self.val_dataset = None
        self.test_dataset = self._grid(self.test_files or scene, None if self.test_files else test)
        if not (self.test_files or test):
            self.test_dataset = None
        self.band_names = list(self.train_dataset.band_names)
        self.crs, self.transform = self.train_dataset.crs, self.train_dataset.transform
        log.info("spatial split in %d px blocks: %d train, %d val, %d test", block,
                 len(train), len(val), len(test))  # fmt: skip
        if not self.class_names:
            self.class_names = _names_from_counts(self._train_class_counts())
        if self.class_colors is None:
            self.class_colors = _label_colors(self.label, self.remap, len(self.class_names))

    def _unlabelled(self, windows: list[Any]) -> Dataset[Sample]:
        """Random mask-less ``{"image"}`` chips of the unlabelled train blocks."""
        from landlearn.data.aligned import AlignedRasterDataset, parse_inputs

        spec = {"image": {"path": self.image, "bands": self.bands} if self.bands else self.image}
        return AlignedRasterDataset(parse_inputs(spec), None, self.chip_size, "random",
                                    self.samples_per_epoch, None, windows, self.seed)  # fmt: skip

    def _train_class_counts(self) -> np.ndarray:
        assert isinstance(self.train_dataset, RasterPairDataset)
        return self.train_dataset.label_counts()

    def _input_spec(
        self, name: str, bands: list[str], mean: list[float], std: list[float]
    ) -> InputSpec:
        """The image's spec, with the file's no-data value and pixel size."""
        return InputSpec(name, "raster", bands=bands, mean=mean, std=std, nodata=self.nodata,
                         chip_size=self.chip_size, resolution=self.resolution)  # fmt: skip


def _resolution(transform: Any) -> float | None:
    """Pixel width in CRS units, or None without a geotransform."""
    if transform is None or getattr(transform, "is_identity", False):
        return None
    res = abs(float(transform.a))
    return res if res > 0 else None


def _label_colors(
    label: str, remap: dict[int, int] | None, num_classes: int
) -> list[list[int]] | None:
    """Class colours from the label raster's colour table (codes mapped through ``remap``)."""
    import rasterio

    try:
        with rasterio.open(label) as src:
            table = src.colormap(1)
    except ValueError:  # no colour table
        return None
    code_of = {k: c for c, k in (remap or {k: k for k in range(num_classes)}).items()}
    if any(k not in code_of or code_of[k] not in table for k in range(num_classes)):
        return None
    return [list(table[code_of[k]][:3]) for k in range(num_classes)]


def _base_dataset(dm: Any) -> Any:
    for name in ("train_dataset", "dataset", "val_dataset", "test_dataset", "predict_dataset"):
        ds = getattr(dm, name, None)
        while isinstance(ds, Subset):
            ds = ds.dataset
        if ds is not None:
            return ds
    return None


def _per_band(value: Any, n: int, default: float) -> list[float]:
    if value is None:
        return [default] * n
    flat = torch.as_tensor(value, dtype=torch.float64).flatten().tolist()
    if len(flat) == 1:
        return flat * n
    return flat


def _colors(colormap: Any) -> list[list[int]] | None:
    if colormap is None:
        return None
    try:
        from matplotlib.colors import to_rgb

        return [
            [int(v) for v in c[:3]]
            if not isinstance(c, str)
            else [round(255 * v) for v in to_rgb(c)]
            for c in colormap
        ]
    except (TypeError, ValueError):
        return None


def describe_datamodule(dm: LightningDataModule) -> dict[str, Any]:
    """The data facts a model bundle records.

    ``band_names``, ``class_names``, ``class_colors``, ``mean``, ``std``, ``chip_size`` of a
    datamodule, ours or TorchGeo's, for the model bundle.

    For TorchGeo datamodules call ``setup`` first: names come from the dataset's ``bands`` /
    ``all_band_names`` and ``classes``, mean / std from ``dm.mean`` / ``dm.std`` (what its ``aug``
    normalises with), expanded per band; missing values fall back to 0 / 1 and generic names.
    """
    if isinstance(dm, LandlearnDataModule):
        if dm.mean is None or dm.std is None:
            dm.setup("fit")
        return {
            "band_names": list(dm.band_names),
            "class_names": list(dm.class_names),
            "class_colors": dm.class_colors,
            "mean": list(dm.mean or []),
            "std": list(dm.std or []),
            "chip_size": dm.chip_size,
        }
    ds = _base_dataset(dm)
    source = ds if ds is not None else getattr(dm, "dataset_class", None)
    kwargs = getattr(dm, "kwargs", {}) or {}
    bands = getattr(source, "bands", None) or kwargs.get("bands")
    bands = bands or getattr(source, "all_band_names", None)
    sample = ds[0] if ds is not None and len(ds) > 0 else None
    image = None if sample is None else sample.get("image")
    if not bands:
        n = int(image.shape[0]) if image is not None else len(_per_band(dm.mean, 1, 0.0))  # type: ignore[attr-defined]
        bands = generic_band_names(n)
    n_bands = len(bands)
    classes = getattr(source, "classes", None)
    if not classes and getattr(dm, "num_classes", None):
        classes = [f"class_{k}" for k in range(int(dm.num_classes))]  # type: ignore[attr-defined]
    patch = getattr(dm, "patch_size", None)
    if isinstance(patch, tuple | list):
        patch = patch[0]
    if patch is None and image is not None:
        patch = int(image.shape[-1])
    return {
        "band_names": [str(b) for b in bands],
        "class_names": [str(c) for c in classes or []],
        "class_colors": _colors(getattr(source, "colormap", None)),
        "mean": _per_band(getattr(dm, "mean", None), n_bands, 0.0),
        "std": _per_band(getattr(dm, "std", None), n_bands, 1.0),
        "chip_size": None if patch is None else int(patch),
    }


def datamodule_specs(
    dm: LightningDataModule, kind: str = "classification"
) -> tuple[list[InputSpec], list[HeadSpec]]:
    """``(input_specs, head_specs)`` of any datamodule, ours (their own) or TorchGeo's.

    A datamodule without ``input_specs`` (TorchGeo's) is described by
    :func:`describe_datamodule` as one input ``image`` and one head of ``kind`` named after it.

    Raises:
        LandlearnError: the datamodule names fewer than two classes for a class head.
    """
    if hasattr(dm, "input_specs") and hasattr(dm, "head_specs"):
        return list(dm.input_specs), list(dm.head_specs)
    info = describe_datamodule(dm)
    chip = info["chip_size"]
    spec = InputSpec("image", "raster", bands=info["band_names"], mean=info["mean"],
                     std=[max(float(v), MIN_STD) for v in info["std"]],
                     chip_size=chip if chip and chip > 0 else None)  # fmt: skip
    colors = info["class_colors"] or ()
    return [spec], [HeadSpec(kind, kind, classes=info["class_names"], colors=colors)]
