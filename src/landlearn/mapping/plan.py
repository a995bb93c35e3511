"""Everything a map run needs, checked up front: bundles, bands, grid, model, output bands."""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landlearn.bundle import Ensemble, Predictor, load_bundle
from landlearn.bundle_check import check_map_classes
from landlearn.ensemble import check_members
from landlearn.errors import LandlearnError
from landlearn.mapping.blend import BLENDS, BlockGrid, TileGrid, weight_window
from landlearn.mapping.budget import check_memory, check_windows
from landlearn.mapping.reader import open_scene, select_bands
from landlearn.mapping.uncertainty import WindowModel, entropy
from landlearn.mapping.writer import QUANT_MAX, BandSpec, quantize

log = logging.getLogger(__name__)

__all__ = ["BundleLike", "Plan", "block_products", "make_plan", "quantized_bands"]

BundleLike = str | os.PathLike[str] | Predictor | Ensemble


@dataclass
class Plan:
    """A checked map job."""

    scene: Path
    predictors: list[Predictor]
    indexes: list[int]  # 1-based scene bands read (union over ensemble members)
    grid: TileGrid | BlockGrid
    weight: np.ndarray
    model: WindowModel
    profile: dict[str, Any]  # width, height, crs, transform of the scene
    cache_bytes: int

    @property
    def class_names(self) -> list[str]:
        """Class names of the bundle(s)."""
        return self.predictors[0].class_names

    @property
    def colors(self) -> list[list[int]]:
        """RGB per class."""
        meta = self.predictors[0].meta
        if len(meta.class_colors) >= meta.num_classes:
            return meta.class_colors
        from landlearn.colors import default_colors

        return default_colors(meta.num_classes)

    def band_specs(self, probabilities: bool) -> list[BandSpec]:
        """The output bands, in order (see :mod:`landlearn.mapping.writer` for scales)."""
        names = self.class_names
        legend = ", ".join(f"{i}={n}" for i, n in enumerate(names))
        unit = 1.0 / QUANT_MAX
        nats = max(math.log(len(names)), 1e-6) / QUANT_MAX
        specs = [
            BandSpec(f"class: {legend}", 1.0, {"CLASS_NAMES": _json(names)}),
            BandSpec("confidence", unit, {"UNIT": "probability"}),
        ]
        if probabilities:
            specs += [BandSpec(f"probability {n}", unit, {"UNIT": "probability"}) for n in names]
        if self.model.uncertain:
            specs.append(BandSpec("entropy", nats, {"UNIT": "nats"}))
        if "expected_entropy" in self.model.extras:
            specs.append(BandSpec("mutual_information", nats, {"UNIT": "nats"}))
        if "variance" in self.model.extras:
            specs.append(BandSpec("ensemble_variance", unit, {"UNIT": "sum of class variances"}))
        return specs


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _load(bundle: BundleLike, device: str) -> list[Predictor]:
    """The predictors of one bundle: one, or the members of a one-file ensemble."""
    loaded = bundle if isinstance(bundle, Predictor | Ensemble) else load_bundle(bundle, device)
    members = loaded.members if isinstance(loaded, Ensemble) else [loaded]
    return [m.to(device) for m in members]


def _check_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LandlearnError(f"device {device!r} asked for, but no CUDA GPU is available")
    if not (device == "cpu" or device.startswith("cuda")):
        raise LandlearnError(f"unknown device {device!r}; use cpu, cuda or auto")
    return device


def _divisor(pred: Predictor) -> int:
    try:
        from landlearn.models.segmenters import size_divisor
    except ImportError:  # pragma: no cover - models package without smp helpers
        return 1
    return size_divisor(pred.model)


def make_plan(
    bundles: Sequence[BundleLike],
    scene: str | os.PathLike[str],
    *,
    tile: int,
    overlap: int,
    blend: str,
    batch_size: int,
    device: str,
    tta: str | None,
    mc_dropout: int,
    bands: Sequence[str | int] | None,
) -> Plan:
    """Load bundles, open the scene, match bands, size the grid.

    Raises:
        LandlearnError: bad options, unreadable scene or bundle, missing bands, mismatched
            ensemble members.
    """
    if blend not in BLENDS:
        raise LandlearnError(f"unknown blend {blend!r}; use one of {', '.join(BLENDS)}")
    if batch_size < 1:
        raise LandlearnError(f"--batch-size must be >= 1, got {batch_size}")
    if overlap < 0 or tile < 8 or overlap >= tile:
        raise LandlearnError(f"need 0 <= overlap < tile and tile >= 8; got {tile=} {overlap=}")
    device = _check_device(device)
    loaded = [_load(b, device) for b in bundles]
    preds = [p for members in loaded for p in members]
    first = preds[0]
    # Bands are matched to the scene per member below, so members may name them differently.
    where = [
        None if isinstance(b, Predictor | Ensemble) else b
        for b, members in zip(bundles, loaded, strict=True)
        for _ in members
    ]
    check_members(preds, where, same_bands=False)
    check_map_classes(first.meta.num_classes, where[0])
    src = open_scene(scene)
    with src:
        per_member = [select_bands(src, p.band_names, bands) for p in preds]
        profile = {
            "width": src.width,
            "height": src.height,
            "crs": src.crs,
            "transform": src.transform,
        }
        itemsize = np.dtype(src.dtypes[0]).itemsize * src.count
        if src.crs is None:
            # Once: the CLI shows warnings as log lines (cli/common.py), the API as warnings.
            msg = f"{scene}: raster has no CRS; the map will have none"
            warnings.warn(msg, UserWarning, stacklevel=3)
    union = list(dict.fromkeys(i for idx in per_member for i in idx))
    takes = [[union.index(i) for i in idx] for idx in per_member]
    if first.task == "classification":
        tile, overlap = first.meta.chip_size, min(overlap, first.meta.chip_size // 2)
        multiple = 1
    else:
        multiple = max(_divisor(p) for p in preds)
        if tile % multiple:
            tile = -(-tile // multiple) * multiple
            log.info("tile rounded up to %d (a multiple of %d the model needs)", tile, multiple)
    grid = TileGrid.build(profile["height"], profile["width"], tile, overlap, multiple)
    check_windows(grid, multiple, scene)
    check_memory(preds, grid, batch_size, scene)
    model = WindowModel(preds, takes, tta=tta, mc_dropout=mc_dropout)
    # GDAL block cache. Windows are read left to right, row by row: reuse is the overlap with the
    # next window (a few tiles) and with the next row of windows (one row of tiles across the
    # scene), so one row of windows' worth is enough. It is the part of a map's memory that grows
    # with the scene's width.
    cache = int(np.clip(grid.tile_h * profile["width"] * itemsize, 32 << 20, 1 << 30))
    return Plan(
        Path(scene),
        preds,
        union,
        grid,
        weight_window(grid.tile_h, grid.tile_w, grid.overlap, blend),
        model,
        profile,
        cache,
    )


def block_products(
    plan: Plan, acc: np.ndarray, wsum: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A final block's (probabilities (K, h, w), valid (h, w), uncertainty maps by band name)."""
    k = plan.model.num_classes
    valid = wsum > 0
    denom = np.where(valid, wsum, 1.0)
    probs = acc[:k] / denom
    extra: dict[str, np.ndarray] = {}
    if plan.model.uncertain:
        h = entropy(probs, dim=0)
        assert isinstance(h, np.ndarray)
        extra["entropy"] = h
        for j, name in enumerate(plan.model.extras):
            value = acc[k + j] / denom
            if name == "expected_entropy":
                extra["mutual_information"] = np.maximum(h - value, 0.0)
            else:
                extra["ensemble_variance"] = value
    return probs, valid, extra


def quantized_bands(
    plan: Plan, probs: np.ndarray, valid: np.ndarray, extra: dict[str, np.ndarray], with_p: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Class indexes (uint8, 255 = no-data) and the other bands quantised, in band order."""
    from landlearn.conventions import IGNORE_INDEX

    cls = probs.argmax(axis=0).astype(np.uint8)
    cls[~valid] = IGNORE_INDEX
    out = [quantize(probs.max(axis=0), 1.0, valid)]
    if with_p:
        out += [quantize(p, 1.0, valid) for p in probs]
    nats = max(math.log(plan.model.num_classes), 1e-6)
    for name in ("entropy", "mutual_information"):
        if name in extra:
            out.append(quantize(extra[name], nats, valid))
    if "ensemble_variance" in extra:
        out.append(quantize(extra["ensemble_variance"], 1.0, valid))
    return cls, out
