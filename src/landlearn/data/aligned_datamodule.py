"""A datamodule of several named rasters on one grid (S2 + S1 ...) and an optional label raster.

It is chipped like :class:`~landlearn.data.datamodules.RasterPairDataModule` (the same
``split_scene`` blocks and ``ChipSampler`` windows): train draws ``samples_per_epoch`` random
chips inside the train blocks, val and test read a grid of chips over their blocks or over
separate ``val_*`` / ``test_*`` files. Each input is normalised with its own train-split
statistics after transfer; ``input_specs`` lists them in ``inputs`` order.

``label_fraction`` below 1 keeps the labels of that share of the train blocks (seeded, at least
one) and turns the other train blocks into unlabelled chips (``unlabelled_dataloader()``), so
semi-supervised methods see them instead of losing them. Statistics use every train block.

``target`` instead of ``label`` makes it a pixel-regression datamodule: a raster of continuous
targets (one band per target, in its own units, no-data as unknown) read as ``target``
``(B, T, H, W)`` with NaN where unknown; its head is a ``pixel_regression`` ``HeadSpec`` with the
target names, units and train-split mean and std.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from rasterio.windows import Window
from torch.utils.data import ConcatDataset, Dataset

from landlearn.data.aligned import AlignedRasterDataset, RasterInput, parse_inputs
from landlearn.data.datamodules import (
    LandlearnDataModule,
    Sample,
    _label_colors,
    _names_from_counts,
    _names_from_remap,
    _resolution,
)
from landlearn.data.io import raster_info
from landlearn.data.rasters import check_remap, deal_blocks, scene_blocks, split_scene
from landlearn.errors import LandlearnError
from landlearn.schema import HeadSpec, InputSpec

__all__ = ["AlignedRasterDataModule"]

log = logging.getLogger(__name__)


class AlignedRasterDataModule(LandlearnDataModule):
    """Segmentation (or unlabelled chips) from named input rasters on the first one's grid.

    Args:
        inputs: ``{name: path}`` or ``{name: {path, bands, band_names, resampling, mean, std}}``,
            in the order models receive them; the first one's grid is the reference, others
            on another grid are resampled onto it (``resampling``, any rasterio name).
        label: single-band class-code raster (resampled with ``nearest`` when needed), or None.
        target: instead of ``label``, a raster of continuous pixel targets: a path, or
            ``{path, bands, band_names, resampling}`` (bands = the targets; default all).
        target_units: one unit per target (``"%"``, ``"reflectance"``), for metrics and maps.
        class_names: class names; default ``class_<k>``.
        class_colors: ``[r, g, b]`` per class; default the label raster's colour table.
        remap: ``{code: class}``; unmapped codes (such as a ``-1`` no-data) and label no-data
            become ``IGNORE_INDEX``.
        chip_size: chip size in pixels.
        samples_per_epoch: random train chips per epoch (and unlabelled chips, if any).
        val_inputs: separate validation rasters, same names and bands as ``inputs``.
        val_label: their label.
        test_inputs: separate test rasters, same names and bands as ``inputs``.
        test_label: their label.
        val_target: the target raster of ``val_inputs`` (with ``target``).
        test_target: the target raster of ``test_inputs``.
        resampling: default resampling of inputs not on the reference grid.
        label_fraction: share of the train blocks that keep their labels, in ``(0, 1]``.
        label_fraction_pixels: keep this share of the label raster's pixels as sparse points
            (train chips and the validation blocks cut from it, the same pixels every epoch; the
            rest ignored); separate val / test rasters and test blocks stay dense.
        block_size: side of the split blocks (see ``split_scene``).
        unlabelled_inputs: more scenes of the same inputs (a list of ``inputs`` mappings: same
            names and bands, any grid and place), without labels. Their random chips join the
            training chips when there is no label (pre-training on several scenes) and the
            unlabelled loader when there is one (semi-supervised methods); each scene gives
            ``samples_per_epoch`` × its pixels ÷ the first scene's pixels chips (at least one),
            and its pixels join the normalisation statistics.
    """

    task = "segmentation"

    def __init__(
        self,
        inputs: dict[str, Any],
        label: str | None = None,
        class_names: list[str] | None = None,
        class_colors: list[list[int]] | None = None,
        remap: dict[int, int] | None = None,
        chip_size: int = 64,
        samples_per_epoch: int = 256,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        val_inputs: dict[str, Any] | None = None,
        val_label: str | None = None,
        test_inputs: dict[str, Any] | None = None,
        test_label: str | None = None,
        resampling: str = "bilinear",
        label_fraction: float = 1.0,
        block_size: int | None = None,
        label_fraction_pixels: float = 1.0,
        unlabelled_inputs: list[dict[str, Any]] | None = None,
        target: str | dict[str, Any] | None = None,
        target_units: list[str] | None = None,
        val_target: str | dict[str, Any] | None = None,
        test_target: str | dict[str, Any] | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        augment: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, augment, False, None, None)
        self.save_hyperparameters()
        self.inputs = parse_inputs(inputs, resampling)
        self.val_inputs = _other(val_inputs, self.inputs, resampling, "val_inputs")
        self.test_inputs = _other(test_inputs, self.inputs, resampling, "test_inputs")
        self.unlabelled_inputs = [
            _other(files, self.inputs, resampling, f"unlabelled_inputs[{k}]") or []
            for k, files in enumerate(unlabelled_inputs or [])
        ]
        for files, lab, what in ((val_inputs, val_label, "val"), (test_inputs, test_label, "test")):
            if files is not None and (lab is None) != (label is None):
                raise LandlearnError(f"give {what}_label exactly when label is given")
            if files is None and lab is not None:
                raise LandlearnError(f"{what}_label needs {what}_inputs")
        if target is not None and label is not None:
            raise LandlearnError("give label (classes) or target (values), not both")
        self.target = _target(target, resampling, "target")
        self.val_target = _target(val_target, resampling, "val_target", self.target)
        self.test_target = _target(test_target, resampling, "test_target", self.target)
        for files, tgt, what in (
            (val_inputs, val_target, "val"),
            (test_inputs, test_target, "test"),
        ):
            if files is not None and (tgt is None) != (target is None):
                raise LandlearnError(f"give {what}_target exactly when target is given")
            if files is None and tgt is not None:
                raise LandlearnError(f"{what}_target needs {what}_inputs")
        self.target_units = list(target_units) if target_units else []
        if self.target is not None:
            self.task = "regression"
        if not 0.0 < float(label_fraction) <= 1.0:
            raise LandlearnError(f"label_fraction must be in (0, 1], got {label_fraction}")
        if label is None and target is None and label_fraction != 1.0:
            raise LandlearnError("label_fraction needs a label or target raster")
        if not 0.0 < float(label_fraction_pixels) <= 1.0:
            raise LandlearnError(
                f"label_fraction_pixels must be in (0, 1], got {label_fraction_pixels}"
            )
        if label is None and label_fraction_pixels != 1.0:
            raise LandlearnError("label_fraction_pixels needs a label raster")
        self.label_fraction_pixels = float(label_fraction_pixels)
        self.label, self.val_label, self.test_label = label, val_label, test_label
        self.remap = check_remap(remap)
        self.chip_size = int(chip_size)
        self.samples_per_epoch = int(samples_per_epoch)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.label_fraction = float(label_fraction)
        self.block_size = block_size
        self.class_names = list(class_names) if class_names else _names_from_remap(self.remap)
        self.class_colors = [list(map(int, c))[:3] for c in class_colors] if class_colors else None
        self.input_bands: dict[str, list[str]] = {}
        self.nodata: dict[str, float | None] = {}
        self.resolution: float | None = None
        self.crs: Any = None
        self.transform: Any = None
        self._stats_windows: list[Window] = []
        self.target_spec: HeadSpec | None = None

    def _dataset(
        self, inputs: list[RasterInput], label: str | None, sampler: str, windows: Any,
        length: int | None = None, keep_nodata: bool = False, target: RasterInput | None = None,
        points: float = 1.0,
    ) -> AlignedRasterDataset:  # fmt: skip
        return AlignedRasterDataset(
            inputs, label, self.chip_size, sampler, length, self.remap, windows, self.seed,
            keep_nodata, target, points,
        )  # fmt: skip

    def _build(self) -> None:
        scene = self._dataset(self.inputs, self.label, "grid", None, target=self.target)
        val_fraction = 0.0 if self.val_inputs else self.val_fraction
        test_fraction = 0.0 if self.test_inputs else self.test_fraction
        block, train, val, test = split_scene(
            scene.height, scene.width, self.chip_size, self.block_size, val_fraction,
            test_fraction, self.seed,
        )  # fmt: skip
        blocks = train or scene_blocks(scene.height, scene.width, block)
        labelled, unlabelled = deal_blocks(blocks, self.label_fraction, self.seed)
        if self.label_fraction == 1.0:
            labelled = train  # the whole scene when it is not split, as RasterPairDataModule
        self.train_dataset = self._dataset(
            self.inputs, self.label, "random", labelled or None, self.samples_per_epoch,
            target=self.target, points=self.label_fraction_pixels,
        )  # fmt: skip
        self.unlabelled_dataset = (
            self._dataset(self.inputs, None, "random", unlabelled, self.samples_per_epoch)
            if unlabelled else None
        )  # fmt: skip
        self._stats_windows = blocks if (train or unlabelled) else []
        extra = self._extra_scenes(scene)
        if extra and self.label is None and self.target is None:
            self.train_dataset = ConcatDataset([self.train_dataset, *extra])
        elif extra:
            first = [self.unlabelled_dataset] if self.unlabelled_dataset is not None else []
            self.unlabelled_dataset = ConcatDataset([*first, *extra])
        points = self.label_fraction_pixels  # val blocks of the training raster: points too
        self.val_dataset = self._split(self.val_inputs, self.val_label, val, self.val_target,
                                       points)  # fmt: skip
        self.test_dataset = self._split(self.test_inputs, self.test_label, test, self.test_target)
        for other in (self.val_dataset, self.test_dataset):
            if isinstance(other, AlignedRasterDataset):
                _check_bands(scene, other)
        self.input_bands = dict(scene.band_names)
        self.band_names = list(scene.band_names[self.inputs[0].name])
        self.nodata = {i.name: scene.infos[i.name].nodata for i in self.inputs}
        self.crs, self.transform = scene.crs, scene.transform
        self.resolution = _resolution(scene.transform)
        log.info(
            "aligned rasters %s: %d px blocks, %d labelled + %d unlabelled train, %d val, %d test",
            ", ".join(self.input_bands), block, len(labelled or blocks), len(unlabelled),
            len(val), len(test),
        )  # fmt: skip
        if self.target is not None:
            self.target_spec = self._target_head(labelled or None)
        if self.label is not None:
            if not self.class_names:
                self.class_names = _names_from_counts(self._train_class_counts())
            if self.class_colors is None:
                self.class_colors = _label_colors(self.label, self.remap, len(self.class_names))

    def _extra_scenes(self, scene: AlignedRasterDataset) -> list[AlignedRasterDataset]:
        """Random chips of each ``unlabelled_inputs`` scene, as many as its share of area."""
        out = []
        for files in self.unlabelled_inputs:
            first = raster_info(files[0].path)
            share = first.height * first.width / max(1, scene.height * scene.width)
            length = max(1, round(self.samples_per_epoch * share))
            extra = self._dataset(files, None, "random", None, length)
            _check_bands(scene, extra)
            out.append(extra)
        return out

    def _split(
        self, files: list[RasterInput] | None, label: str | None, blocks: list[Window],
        target: RasterInput | None, points: float = 1.0,
    ) -> AlignedRasterDataset | None:  # fmt: skip
        if files:
            return self._dataset(files, label, "grid", None, target=target)
        if not blocks:
            return None
        return self._dataset(self.inputs, self.label, "grid", blocks, target=self.target,
                             points=points)  # fmt: skip

    def _target_head(self, windows: list[Window] | None) -> HeadSpec:
        """The pixel-regression head: target names, units, train-split mean and std."""
        assert self.target is not None
        train = self._dataset(self.inputs, None, "grid", windows, target=self.target)
        mean, std, counts = train.target_stats()
        names = train.target_names
        if self.target_units and len(self.target_units) != len(names):
            raise LandlearnError(
                f"target_units has {len(self.target_units)} units for {len(names)} targets "
                f"({', '.join(names)})"
            )
        flat = [n for n, s in zip(names, std, strict=True) if s <= 0]
        if flat:
            raise LandlearnError(
                f"target {flat[0]!r} is constant over the training region; nothing to learn",
                self.target.path,
            )
        log.info("pixel targets %s: %s known pixels in the train region", names, counts)
        name = names[0] if len(names) == 1 else "pixel_regression"
        return HeadSpec(name, "pixel_regression", targets=names, units=self.target_units,
                        mean=mean, std=std)  # fmt: skip

    def _train_class_counts(self) -> np.ndarray:
        assert isinstance(self.train_dataset, AlignedRasterDataset)
        return self.train_dataset.label_counts()

    # ---- inputs, statistics and heads -------------------------------------------------------
    def _input_bands(self) -> dict[str, list[str]]:
        return dict(self.input_bands) if self.input_bands else {i.name: [] for i in self.inputs}

    def _given_stats(self) -> dict[str, tuple[list[float], list[float]]]:
        out = dict(self.input_stats)
        for i in self.inputs:
            if i.mean is not None and i.std is not None:
                out.setdefault(i.name, (list(i.mean), list(i.std)))
        return out

    def _stats_dataset(self) -> Dataset[Sample]:
        """Grid chips over every train block (labelled or not), no-data kept as NaN."""
        windows = self._stats_windows or None
        main = self._dataset(self.inputs, None, "grid", windows, keep_nodata=True)
        if not self.unlabelled_inputs:
            return main
        extra = [self._dataset(f, None, "grid", None, keep_nodata=True)
                 for f in self.unlabelled_inputs]  # fmt: skip
        return ConcatDataset([main, *extra])

    def _input_spec(
        self, name: str, bands: list[str], mean: list[float], std: list[float]
    ) -> InputSpec:
        return InputSpec(name, "raster", bands=bands, mean=mean, std=std,
                         nodata=self.nodata.get(name), chip_size=self.chip_size,
                         resolution=self.resolution)  # fmt: skip

    @property
    def head_specs(self) -> list[HeadSpec]:
        """The segmentation head, or the pixel-regression head; none without either raster."""
        if self.target is not None:
            if self.target_spec is None:
                self.setup("fit")
            assert self.target_spec is not None
            return [self.target_spec]
        return super().head_specs if self.label is not None else []


def _other(
    files: Mapping[str, Any] | None, inputs: list[RasterInput], resampling: str, what: str
) -> list[RasterInput] | None:
    """Separate val / test rasters: the same input names, in the same order."""
    if files is None:
        return None
    parsed = parse_inputs(files, resampling, what)
    names, want = [i.name for i in parsed], [i.name for i in inputs]
    if names != want:
        raise LandlearnError(f"{what} names {names} differ from the inputs' {want}")
    by_name = {i.name: i for i in inputs}
    # bands / band names given once for the training rasters hold for these files too
    return [
        RasterInput(p.name, p.path, p.bands or by_name[p.name].bands,
                    p.band_names or by_name[p.name].band_names, p.resampling)
        for p in parsed
    ]  # fmt: skip


def _target(
    value: str | Mapping[str, Any] | None, resampling: str, what: str,
    like: RasterInput | None = None,
) -> RasterInput | None:  # fmt: skip
    """A target raster (a path or a mapping), with ``like``'s bands when it names none."""
    if value is None:
        return None
    parsed = parse_inputs({what: value}, resampling, what)[0]
    if parsed.mean is not None:
        raise LandlearnError(f"{what}: targets are standardised by the data; give no mean / std")
    if like is None:
        return parsed
    return RasterInput(parsed.name, parsed.path, parsed.bands or like.bands,
                       parsed.band_names or like.band_names, parsed.resampling)  # fmt: skip


def _check_bands(train: AlignedRasterDataset, other: AlignedRasterDataset) -> None:
    for spec in other.inputs:
        want, got = len(train.band_names[spec.name]), len(other.band_names[spec.name])
        if want != got:
            raise LandlearnError(
                f"input {spec.name!r} has {got} bands here but {want} in the training raster "
                f"({train.infos[spec.name].path}); give rasters of the same bands",
                spec.path,
            )
