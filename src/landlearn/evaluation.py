"""``landlearn.evaluate``: score a model bundle (or an ensemble) on labelled data.

DATA is one of:

- a folder of class folders ``DATA/<class>/*.jpg|png|tif`` (classification bundles);
- a folder with ``images/`` and ``masks/``: RGB masks coded with the bundle's class colours (or a
  colour table CSV), or single-band class-code masks (segmentation bundles);
- a GeoTIFF image and a label raster on the same grid (segmentation bundles);
- ``{input name: GeoTIFF}`` and a label raster, for a bundle that reads several inputs (each
  input on the first one's grid, or resampled onto it);
- any dataset of ``image`` + ``label`` / ``mask`` samples.

Pixels (or images) with NaN / inf values are no-data: never fed to the network, left out of the
metrics, counted in ``result["screened"]`` and warned about (:mod:`landlearn.finite`).

Example:
    >>> import landlearn
    >>> m = landlearn.evaluate("model.safetensors", "../shared/data/eurosat_rgb/test")
    >>> m["overall_accuracy"], m["per_class"]["f1"]
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from landlearn.errors import LandlearnError
from landlearn.inputs import check_input, check_input_file

__all__ = ["aligned_dataset", "build_dataset", "evaluate", "score"]

Progress = Callable[[int, int, float], None]
"""Called as ``progress(batches_done, batches_total, samples_per_second)`` after each batch."""

PathLike = str | os.PathLike[str]


def evaluate(
    bundle: PathLike | Any,
    data: PathLike | Any,
    label: PathLike | None = None,
    *,
    ensemble: Sequence[PathLike] = (),
    batch_size: int = 16,
    chip_size: int | None = None,
    tta: str | None = None,
    remap: Mapping[int, int] | None = None,
    classes_csv: PathLike | None = None,
    device: str = "cpu",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Metrics of a bundle on labelled data, as ``landlearn evaluate`` prints them.

    Args:
        bundle: a bundle path, or a loaded ``Predictor`` / ``Ensemble``.
        data: a folder, an image GeoTIFF (then ``label`` is its label raster), ``{input name:
            GeoTIFF}`` for a multi-input bundle (with ``label``), or a dataset.
        ensemble: more bundles whose probabilities are averaged with ``bundle``'s.
        chip_size: segmentation chip size (default: the bundle's).
        tta: ``"d4"`` averages over the 8 flips / quarter turns of each image.
        remap: class-code remapping of masks and label rasters, e.g. ``{1: 0, 2: 1, 0: 255}``.
        classes_csv: colour table for RGB masks (``name,r,g,b`` rows).

    Returns:
        The metrics (overall accuracy, per-class precision / recall / F1 / IoU, mIoU, kappa,
        ECE, confusion matrix …) plus ``class_colors``, ``tta`` and ``ensemble`` when used.

    Raises:
        LandlearnError: an unreadable or mismatched bundle or data, no samples, a bad option.
    """
    if batch_size < 1:
        raise LandlearnError(f"batch_size must be >= 1, got {batch_size}")
    predictor = _predictor(bundle, ensemble, device)
    where: Any
    if isinstance(data, Mapping):
        dataset = aligned_dataset(predictor, data, label, chip_size, remap)
        where = next(iter(data.values()), None)
    elif isinstance(data, str | os.PathLike):
        dataset = build_dataset(predictor, data, label, chip_size, remap, classes_csv)
        where = data
    else:
        dataset, where = data, None
    if len(dataset) == 0:
        raise LandlearnError("no samples found", where)
    result = score(predictor, dataset, batch_size=batch_size, tta=tta, where=where,
                   progress=progress)  # fmt: skip
    if tta:
        result["tta"] = tta
    if ensemble:
        result["ensemble"] = [str(m) for m in (bundle, *ensemble)]
    result["class_colors"] = predictor.meta.class_colors
    return result


def _predictor(bundle: PathLike | Any, ensemble: Sequence[PathLike], device: str) -> Any:
    from landlearn.bundle import load_bundle
    from landlearn.ensemble import load_ensemble

    if not isinstance(bundle, str | os.PathLike):
        if ensemble:
            raise LandlearnError("ensemble= takes bundle paths; pass an Ensemble as bundle")
        return bundle
    if ensemble:
        return load_ensemble([bundle, *ensemble], device=device)
    return load_bundle(bundle, device=device)


def build_dataset(
    predictor: Any,
    data: PathLike,
    label: PathLike | None = None,
    chip_size: int | None = None,
    remap: Mapping[int, int] | None = None,
    classes_csv: PathLike | None = None,
) -> Any:
    """The labelled dataset ``data`` describes, checked against the bundle."""
    from landlearn.data.folders import ColorTable, ImageFolderDataset, MaskFolderDataset
    from landlearn.data.rasters import RasterPairDataset

    meta = predictor.meta
    path = check_input(data, "folder of labelled images, or an image GeoTIFF")
    chip = chip_size or meta.chip_size
    remap = dict(remap) if remap else None
    if path.is_file():
        if not label:
            raise LandlearnError("a GeoTIFF needs its label raster as the third argument", path)
        if meta.task == "classification":
            raise LandlearnError(
                "a classification bundle scores a folder of class folders, not an image "
                "GeoTIFF and a label raster",
                path,
            )
        labels = check_input_file(label, "label raster")
        return RasterPairDataset(
            path, labels, chip_size=chip, sampler="grid", remap=remap, keep_nonfinite=True
        )
    if meta.task == "classification":
        if remap:
            raise LandlearnError("--remap applies to masks and label rasters, not class folders")
        return ImageFolderDataset(path, classes=meta.class_names)
    images, masks = path / "images", path / "masks"
    if not (images.is_dir() and masks.is_dir()):
        raise LandlearnError("expected images/ and masks/ sub-folders for segmentation", path)
    if classes_csv:
        table = ColorTable.from_csv(classes_csv)
    else:
        table = ColorTable(meta.class_names, meta.class_colors, ignore=())
    return MaskFolderDataset(
        images, masks, color_table=None if remap else table, remap=remap, chip_size=chip
    )


def aligned_dataset(
    predictor: Any,
    data: Mapping[str, PathLike],
    label: PathLike | None,
    chip_size: int | None = None,
    remap: Mapping[int, int] | None = None,
) -> Any:
    """Grid chips of named input rasters and their label raster, checked against the bundle.

    Raises:
        LandlearnError: no label, a class-per-image bundle, a missing or unknown input.
    """
    from landlearn.data.aligned import AlignedRasterDataset, RasterInput
    from landlearn.mapping.plan import bundle_inputs, named_scenes

    meta = predictor.meta
    if meta.task != "segmentation":
        raise LandlearnError("named inputs with a label raster score a segmentation bundle")
    if label is None:
        raise LandlearnError("named inputs need their label raster (--label LABEL.tif)")
    members = list(predictor.members) if hasattr(predictor, "members") else [predictor]
    first = members[0]
    names = [n for n, _ in bundle_inputs(first)]
    allow = len(names) > 1 and all(m.can_do_without for m in members)
    named = named_scenes(data, names, allow_missing=allow)
    inputs = []
    for i, (name, path) in enumerate(named):
        check_input_file(path, f"input raster {name}")
        inputs.append(RasterInput(str(name) if name is not None else f"input{i}", os.fspath(path)))
    labels = check_input_file(label, "label raster")
    return AlignedRasterDataset(
        inputs, labels, chip_size=chip_size or meta.chip_size, sampler="grid",
        remap=dict(remap) if remap else None, keep_nodata=True,
    )  # fmt: skip


def score(
    predictor: Any,
    dataset: Any,
    batch_size: int = 16,
    tta: str | None = None,
    where: PathLike | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Metrics of ``predictor`` on ``dataset`` (``image`` + ``label`` / ``mask`` samples).

    ``tta="d4"`` scores the probabilities averaged over the 8 flips / quarter turns. Pixels
    (or images) with NaN / inf values are left out of the metrics and counted in
    ``result["screened"]`` with a warning naming ``where`` (:mod:`landlearn.finite`).
    """
    import torch
    from torch.utils.data import DataLoader

    from landlearn.finite import FiniteCounts
    from landlearn.metrics import LandCoverMetrics

    meta = predictor.meta
    names = getattr(dataset, "band_names", None)
    keys = list(getattr(dataset, "input_names", None) or ["image"])
    sample = dataset[0]
    want = meta.in_channels
    missing: list[str] = []
    if keys != ["image"]:  # named inputs: a dict for the predictor, bands checked per input
        first = torch.cat([sample[k] for k in keys])
        names = [b for k in keys for b in (names or {}).get(k, [])]
        missing = [s.name for s in meta.inputs if s.name not in keys]
        want = sum(s.num_bands for s in meta.inputs if s.name in keys) if missing else want
    else:
        first = sample["image"]
    if first.shape[0] != want:
        source = getattr(dataset, "image_path", None) or getattr(dataset, "files", [None])[0]
        raise LandlearnError(
            f"expected {want} bands ({', '.join(meta.band_names)}), got "
            f"{first.shape[0]} ({', '.join(names or [])}); check band_names",
            source,
        )
    key = "label" if meta.task == "classification" else "mask"
    mode = "multiclass" if meta.mode == "binary" else meta.mode
    metrics = LandCoverMetrics(
        meta.num_classes, task=meta.task, mode=mode, ignore_index=meta.ignore_index,
        class_names=meta.class_names,
    )  # fmt: skip
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    counts = FiniteCounts()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i, batch in enumerate(loader):
            x = batch["image"] if keys == ["image"] else {k: batch[k] for k in keys}
            probs = predictor.predict_proba(x, tta=tta, counts=counts).cpu()
            metrics.update(*_scored(probs, batch[key], meta))
            if progress is not None:
                rate = (i + 1) * batch_size / max(time.perf_counter() - t0, 1e-9)
                progress(i + 1, len(loader), rate)
    where = where or getattr(dataset, "image_path", None)
    counts.warn(where, nodata="no-data, left out of the metrics")
    result = metrics.compute()
    if missing:  # predicted without them (the bundle was trained with modality dropout)
        result["missing_inputs"] = missing
    if not counts.clean:
        result["screened"] = {
            "unit": counts.unit,
            "seen": counts.pixels,
            "nonfinite": counts.nonfinite,
            "absurd": counts.absurd,
            "nonfinite_outputs": counts.nonfinite_outputs,
        }
    return result


def _scored(probs: Any, target: Any, meta: Any) -> tuple[Any, Any]:
    """Leave no-data (NaN probabilities, :mod:`landlearn.finite`) out of the metrics."""
    import torch

    void = torch.isnan(probs).any(dim=1)
    if not bool(void.any()):
        return probs, target
    if probs.ndim == 4:  # per pixel: the target becomes unlabelled there
        target = torch.where(void, meta.ignore_index, target)
        return torch.nan_to_num(probs, nan=0.0), target
    return probs[~void], target[~void]
