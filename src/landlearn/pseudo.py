"""Pseudo-labels from a teacher bundle: the self-training half of semi-supervised segmentation.

:func:`pseudo_label` maps every unlabelled image with a segmentation bundle (or an ensemble, or
D4 test-time augmentation: the mean probabilities of :func:`landlearn.mapping.predict_scene_array`,
so windows blend exactly as in ``landlearn map``) and writes, under ``out_dir``:

- ``masks/<stem>.png`` (or ``.tif`` for a georeferenced input: same grid, CRS and transform): the
  predicted class where the teacher is confident enough, ``IGNORE_INDEX`` (255) elsewhere and
  at no-data; a code mask that ``MaskFolderDataModule(images, out_dir/masks,
  class_names=…)`` reads as it is;
- ``confidence/<stem>.tif``: the teacher's max probability per pixel (float32, NaN at no-data);
- ``pseudo_labels.json``: the thresholds, per class how many pixels were predicted and kept (and,
  with ``true_masks``, how many of the kept ones are right), per image the kept share.

Thresholds, one per class:

- **fixed** (``threshold=0.9``): keep a pixel when its max probability is at least that;
- **class-balanced** (``class_balanced=p``): keep the ``p`` most confident share of the pixels
  predicted as each class, over all images (Zou et al. 2018, class-balanced self-training). A
  fixed threshold loses the classes the teacher is never sure of — the founding study's teacher
  was confident at 68–75 % and lost its minority classes; class-balanced keeps every predicted
  class. The thresholds come from a 2,000-bin histogram of the confidences per predicted class
  (exact to 0.0005), collected in a first pass; the predictions wait on disk (a temporary folder
  in ``out_dir``) for the second, so the teacher runs once per image.

Everything is written under temporary names and renamed at the end; outputs that exist and are
not landlearn pseudo-labels are refused unless ``overwrite`` (:mod:`landlearn.safety`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landlearn.atomic import atomic_path, dump_json, write_atomic
from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.safety import MARK, PSEUDO_TAG, Output, check_outputs

log = logging.getLogger(__name__)

__all__ = [
    "PSEUDO_TAG",
    "PseudoLabels",
    "apply_thresholds",
    "class_thresholds",
    "image_files",
    "pseudo_label",
    "read_summary",
]

BINS = 2000
"""Histogram bins of the confidences in [0, 1] (class-balanced thresholds)."""
_IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".vrt")
_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")


@dataclass
class PseudoLabels:
    """What :func:`pseudo_label` wrote: the folder, one mask per image, and the summary."""

    out_dir: Path
    masks: list[Path] = field(default_factory=list)
    confidence: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


# ---- thresholds ---------------------------------------------------------------------------
def class_thresholds(
    hist: np.ndarray, *, threshold: float | None = None, class_balanced: float | None = None
) -> np.ndarray:
    """One confidence threshold per class from per-class confidence histograms ``(K, BINS)``.

    ``threshold``: the same for every class. ``class_balanced``: per class the lower edge of
    the bin where the most confident ``class_balanced`` share of its pixels begins (at least
    one bin: every class the teacher predicts keeps pixels). A class never predicted gets 1.0.
    With both, each class takes the lower of the two (balanced, but never stricter than
    ``threshold``).

    Raises:
        LandlearnError: neither given, or a value outside (0, 1].
    """
    if threshold is None and class_balanced is None:
        raise LandlearnError("give a confidence threshold or a class-balanced share")
    for name, v in (("threshold", threshold), ("class-balanced share", class_balanced)):
        if v is not None and not 0.0 < float(v) <= 1.0:
            raise LandlearnError(f"{name} must be in (0, 1], got {v}")
    k, bins = hist.shape
    fixed = np.full(k, float(threshold) if threshold is not None else np.inf)
    if class_balanced is None:
        return fixed
    out = np.ones(k)
    for c in range(k):
        total = hist[c].sum()
        if total <= 0:
            continue
        from_top = np.cumsum(hist[c][::-1])  # pixels at or above each bin, from the top
        first = int(np.searchsorted(from_top, float(class_balanced) * total))  # bins from top
        out[c] = (bins - 1 - min(first, bins - 1)) / bins
    return np.minimum(out, fixed)


def apply_thresholds(
    probs: np.ndarray, valid: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(K, H, W)`` probabilities → (uint8 mask with ``IGNORE_INDEX`` below threshold, confidence).

    Confidence is NaN where ``valid`` is False.
    """
    cls = np.nan_to_num(probs, nan=-1.0).argmax(axis=0)
    conf = np.where(valid, np.nan_to_num(probs, nan=0.0).max(axis=0), np.nan).astype(np.float32)
    keep = valid & (np.nan_to_num(conf, nan=-1.0) >= thresholds[cls])
    mask = np.where(keep, cls, IGNORE_INDEX).astype(np.uint8)
    return mask, conf


def _histogram(cls: np.ndarray, conf: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    idx = np.clip((conf[valid] * BINS).astype(np.int64), 0, BINS - 1)
    flat = cls[valid].astype(np.int64) * BINS + idx
    return np.bincount(flat, minlength=k * BINS).reshape(k, BINS)


# ---- files --------------------------------------------------------------------------------
def image_files(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The images of a folder (not recursive; sorted), one image file, or a list of files.

    Raises:
        LandlearnError: a missing path, or a folder without images.
    """
    from landlearn.inputs import check_input

    if isinstance(data, str | os.PathLike):
        path = check_input(data, "image or folder of images")
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
            )
            if not files:
                raise LandlearnError(f"no images ({', '.join(_IMAGE_SUFFIXES)}) found", path)
            return files
        return [path]
    return [check_input(p, "image") for p in data]


def _georeferenced(path: Path) -> dict[str, Any] | None:
    """The grid of a georeferenced raster (crs, transform, size), or None."""
    if path.suffix.lower() not in _RASTER_SUFFIXES:
        return None
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as src:
            if src.crs is None:
                return None
            return {"crs": src.crs, "transform": src.transform}


def _write_mask(target: Path, mask: np.ndarray, grid: dict[str, Any] | None, teacher: str) -> None:
    with atomic_path(target) as tmp:
        if grid is None:
            from PIL import Image
            from PIL.PngImagePlugin import PngInfo

            info = PngInfo()
            info.add_text("Software", MARK)
            info.add_text(PSEUDO_TAG, teacher)
            Image.fromarray(mask, mode="L").save(tmp, format="PNG", pnginfo=info)
        else:
            _write_tif(tmp, mask[None], grid, "uint8", IGNORE_INDEX, teacher, "pseudo-label")


def _write_tif(
    path: Path, data: np.ndarray, grid: dict[str, Any] | None, dtype: str, nodata: float,
    teacher: str, what: str,
) -> None:  # fmt: skip
    import rasterio

    profile: dict[str, Any] = {
        "driver": "GTiff", "width": data.shape[-1], "height": data.shape[-2], "count": 1,
        "dtype": dtype, "nodata": nodata, "compress": "deflate", "tiled": True,
        "blockxsize": 256, "blockysize": 256,
    }  # fmt: skip
    if data.shape[-1] < 256 or data.shape[-2] < 256:
        profile.update(tiled=False)
        profile.pop("blockxsize")
        profile.pop("blockysize")
    if grid is not None:
        profile.update(crs=grid["crs"], transform=grid["transform"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning for a plain image's confidence
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data.astype(dtype))
            dst.update_tags(**{PSEUDO_TAG: teacher})
            dst.set_band_description(1, what)


# ---- the job ------------------------------------------------------------------------------
def pseudo_label(
    bundle: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    threshold: float | None = None,
    class_balanced: float | None = None,
    tta: str | None = None,
    true_masks: str | os.PathLike[str] | None = None,
    classes_csv: str | os.PathLike[str] | None = None,
    remap: dict[int, int] | None = None,
    tile: int = 512,
    overlap: int = 64,
    batch_size: int = 4,
    device: str = "cpu",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PseudoLabels:
    """Write pseudo-label masks and confidences for every image of ``data`` (module docstring).

    Args:
        bundle: a segmentation bundle; a list is an ensemble (mean probabilities).
        data: a folder of images, one image, or a list of images.
        out_dir: where ``masks/``, ``confidence/`` and ``pseudo_labels.json`` go.
        threshold: fixed confidence threshold (default 0.9 when ``class_balanced`` is not set).
        class_balanced: keep this most confident share of each predicted class's pixels.
        tta: ``"d4"`` to average the 8 flips / rotations.
        true_masks: a folder of true masks paired by file stem: the summary then says how
            many kept pixels are right, per class (pseudo-label accuracy).
        classes_csv, remap: how to read ``true_masks`` (as ``MaskFolderDataModule``).
        tile, overlap, batch_size, device: as ``landlearn map``.
        overwrite: replace outputs landlearn did not write (never an input).
        progress: called with (images done, total) after each image the teacher maps.

    Raises:
        LandlearnError: not a segmentation bundle, bad thresholds, missing or unreadable
            images, band mismatch, or unsafe outputs.
    """
    from landlearn.bundle import load_bundle
    from landlearn.data.folders import decode_mask_file
    from landlearn.mapping import predict_scene_array

    if threshold is None and class_balanced is None:
        threshold = 0.9
    class_thresholds(np.zeros((1, BINS)), threshold=threshold, class_balanced=class_balanced)
    members = [bundle] if isinstance(bundle, str | os.PathLike) else list(bundle)
    if not members:
        raise LandlearnError("give a teacher bundle")
    predictors = [load_bundle(m, device=device) for m in members]
    meta = predictors[0].meta
    if meta.task != "segmentation":
        raise LandlearnError(
            f"pseudo-labels need a segmentation bundle; this one is {meta.task}", Path(members[0])
        )
    files = image_files(data)
    stems = [f.stem for f in files]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise LandlearnError(f"two images share the name {dup[0]!r}; masks are named by stem")
    out = Path(out_dir)
    grids = {f: _georeferenced(f) for f in files}
    mask_paths = {
        f: out / "masks" / (f"{f.stem}.tif" if grids[f] is not None else f"{f.stem}.png")
        for f in files
    }
    conf_paths = {f: out / "confidence" / f"{f.stem}.tif" for f in files}
    summary_path = out / "pseudo_labels.json"
    outputs = [Output(p, "pseudo_label") for p in [*mask_paths.values(), *conf_paths.values()]]
    outputs.append(Output(summary_path, "metrics"))
    check_outputs(outputs, [*files, *members], overwrite=overwrite)
    truth = _truth(files, true_masks, classes_csv, remap)
    names = list(predictors[0].class_names)
    k = len(names)
    teacher = ", ".join(str(Path(m)) for m in members)

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".landlearn-pseudo.", dir=out))
    try:
        hist = np.zeros((k, BINS), np.int64)
        for i, f in enumerate(files):
            arrays = predict_scene_array(
                predictors, f, tile=tile, overlap=overlap, batch_size=batch_size,
                device=device, tta=tta, preview=False,
            )  # fmt: skip
            probs, valid = arrays["probabilities"], arrays["valid"]
            cls = np.nan_to_num(probs, nan=-1.0).argmax(axis=0).astype(np.uint8)
            conf = np.nan_to_num(probs, nan=0.0).max(axis=0).astype(np.float32)
            hist += _histogram(cls, conf, valid, k)
            np.savez(work / f"{i}.npz", probs=probs.astype(np.float16), valid=valid)
            if truth is not None and f in truth["masks"]:
                # read (and refuse) the true masks before any output is written
                true = decode_mask_file(truth["masks"][f], truth["table"], truth["remap"])
                if true.shape != cls.shape:
                    raise LandlearnError(
                        f"true mask is {true.shape[1]}×{true.shape[0]} px, the image "
                        f"{cls.shape[1]}×{cls.shape[0]}",
                        truth["masks"][f],
                    )
                np.save(work / f"{i}_true.npy", true)
            if progress is not None:
                progress(i + 1, len(files))
        thresholds = class_thresholds(hist, threshold=threshold, class_balanced=class_balanced)
        predicted = np.zeros(k, np.int64)
        kept = np.zeros(k, np.int64)
        right = np.zeros(k, np.int64)
        checked = np.zeros(k, np.int64)
        per_image = []
        for i, f in enumerate(files):
            with np.load(work / f"{i}.npz") as z:
                probs, valid = z["probs"].astype(np.float32), z["valid"]
            mask, conf = apply_thresholds(probs, valid, thresholds)
            cls = np.nan_to_num(probs, nan=-1.0).argmax(axis=0)
            predicted += np.bincount(cls[valid], minlength=k)[:k]
            kept_here = np.bincount(mask[mask != IGNORE_INDEX], minlength=k)[:k]
            kept += kept_here
            row: dict[str, Any] = {
                "image": str(f),
                "mask": str(mask_paths[f]),
                "valid_pixels": int(valid.sum()),
                "kept_pixels": int(kept_here.sum()),
                "kept_share": float(kept_here.sum() / max(int(valid.sum()), 1)),
            }
            if truth is not None and f in truth["masks"]:
                true = np.load(work / f"{i}_true.npy")
                sel = (mask != IGNORE_INDEX) & (true != IGNORE_INDEX)
                checked += np.bincount(mask[sel], minlength=k)[:k]
                right += np.bincount(mask[sel & (mask == true)], minlength=k)[:k]
                row["accuracy"] = float((mask[sel] == true[sel]).mean()) if sel.any() else None
            per_image.append(row)
            _write_mask(mask_paths[f], mask, grids[f], teacher)
            with atomic_path(conf_paths[f]) as tmp:
                _write_tif(tmp, conf[None], grids[f], "float32", float("nan"), teacher,
                           "teacher confidence (max probability)")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    classes = []
    for c, name in enumerate(names):
        entry: dict[str, Any] = {
            "class": name,
            "threshold": float(thresholds[c]),
            "predicted_pixels": int(predicted[c]),
            "kept_pixels": int(kept[c]),
            "coverage": float(kept[c] / predicted[c]) if predicted[c] else None,
        }
        if truth is not None:
            entry["accuracy"] = float(right[c] / checked[c]) if checked[c] else None
        classes.append(entry)
    total_valid = sum(r["valid_pixels"] for r in per_image)
    summary = {
        "written_by": MARK,
        "teacher": [str(m) for m in members],
        "threshold": threshold,
        "class_balanced": class_balanced,
        "tta": tta,
        "class_names": names,
        "ignore_index": IGNORE_INDEX,
        "kept_share": float(kept.sum() / max(total_valid, 1)),
        "accuracy": float(right.sum() / checked.sum()) if truth is not None and checked.sum()
        else None,
        "classes": classes,
        "images": per_image,
    }  # fmt: skip
    write_atomic(summary_path, dump_json(summary))
    log.info(
        "pseudo-labels: %d images, %.1f %% of pixels kept; %s",
        len(files),
        100 * kept.sum() / max(total_valid, 1),
        summary_path,
    )
    return PseudoLabels(
        out, [mask_paths[f] for f in files], [conf_paths[f] for f in files], summary
    )


def _truth(
    files: list[Path],
    true_masks: str | os.PathLike[str] | None,
    classes_csv: str | os.PathLike[str] | None,
    remap: dict[int, int] | None,
) -> dict[str, Any] | None:
    if true_masks is None:
        return None
    from landlearn.data.folders import _MASK_SUFFIXES, ColorTable, _pair_key
    from landlearn.inputs import check_input

    folder = check_input(true_masks, "folder of true masks")
    if not folder.is_dir():
        raise LandlearnError("--masks takes a folder of masks", folder)
    images = {f.resolve() for f in files}
    candidates = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES and p.resolve() not in images
    ]
    # one folder holding both (DeepGlobe's <id>_sat.jpg beside <id>_mask.png): the masks only
    marked = [p for p in candidates if p.stem.lower().endswith(_MASK_SUFFIXES)]
    by_key = {_pair_key(p.stem): p for p in (marked or candidates)}
    masks = {f: by_key[_pair_key(f.stem)] for f in files if _pair_key(f.stem) in by_key}
    if not masks:
        raise LandlearnError("no true mask matches any image by file name", folder)
    table = ColorTable.from_csv(classes_csv) if classes_csv is not None else None
    return {"masks": masks, "table": table, "remap": remap}


def read_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``pseudo_labels.json`` of an earlier run (for reports and the next round)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("written_by") != MARK:
        raise LandlearnError("not a landlearn pseudo-label summary", Path(path))
    return data
