"""Everything a map run needs, checked up front: bundles, bands, grid, model, output bands."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
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
from landlearn.mapping.reader import Source, open_scene, select_bands
from landlearn.mapping.uncertainty import WindowModel, energy_reference, entropy
from landlearn.mapping.writer import QUANT_MAX, BandSpec, quantize

log = logging.getLogger(__name__)

__all__ = [
    "BundleLike",
    "Plan",
    "Scene",
    "block_products",
    "bundle_inputs",
    "load_members",
    "make_plan",
    "named_scenes",
    "quantized_bands",
    "scene_paths",
    "value_bands",
]

BundleLike = str | os.PathLike[str] | Predictor | Ensemble
Scene = str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]]
"""One raster, or ``{input name: raster}`` for a bundle that reads several inputs."""

RESAMPLING = "bilinear"
"""How an input on another grid is resampled onto the first input's grid."""


@dataclass
class Plan:
    """A checked map job."""

    scene: Path  # the first input: its grid is the map's
    predictors: list[Predictor]
    sources: list[Source]  # the rasters read, their bands (union over ensemble members)
    grid: TileGrid | BlockGrid
    weight: np.ndarray
    model: WindowModel
    profile: dict[str, Any]  # width, height, crs, transform of the scene
    cache_bytes: int
    missing: tuple[str, ...] = ()  # inputs the bundle reads that were not given (allowed)

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

    @property
    def regression(self) -> bool:
        """The map holds values of a pixel-regression head (float32 bands), not classes."""
        return self.model.regression

    @property
    def units(self) -> list[str]:
        """One unit per target of a regression head (empty strings where none is known)."""
        head = self.predictors[0].meta.heads[0]
        return [head.units[i] if i < len(head.units) else "" for i in range(head.num_outputs)]

    def band_specs(self, probabilities: bool) -> list[BandSpec]:
        """The output bands, in order (see :mod:`landlearn.mapping.writer` for scales)."""
        names = self.class_names
        if self.regression:
            return self._value_band_specs()
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
        if "energy" in self.model.extras:
            lo, hi = self.energy_range
            ref = energy_reference(self.predictors[0])
            tags = {"UNIT": "energy", "ENERGY": "-logsumexp(logits); higher = less like the "
                    "training data"} | {f"VALIDATION_ENERGY_{k.upper()}": f"{v:.6g}"
                                        for k, v in ref.items() if k.startswith("p")}  # fmt: skip
            specs.append(BandSpec("energy", (hi - lo) / QUANT_MAX, tags, offset=lo))
        return specs

    @property
    def energy_range(self) -> tuple[float, float]:
        """(lo, hi) energies the quantised energy band spans (values outside are clipped).

        From the bundle's validation energies: one spread (99.5th − 0.5th percentile) below
        the 0.5th percentile, three above the 99.5th (room for what is less like the
        training data); without a reference (a bundle exported outside a run) ±50.
        """
        ref = energy_reference(self.predictors[0])
        if "p0.5" not in ref or "p99.5" not in ref:
            return -50.0, 50.0
        span = max(ref["p99.5"] - ref["p0.5"], 1e-3)
        return ref["p0.5"] - span, ref["p99.5"] + 3 * span

    def _value_band_specs(self) -> list[BandSpec]:
        """A regression head: one float32 band per target, then its spread when uncertain."""
        specs = []
        for name, unit in zip(self.class_names, self.units, strict=True):
            tags = {"TARGET": name, "UNIT": unit} if unit else {"TARGET": name}
            specs.append(BandSpec(f"{name} ({unit})" if unit else name, 1.0, tags))
        if self.model.uncertain:
            for name, unit in zip(self.class_names, self.units, strict=True):
                tags = {"TARGET": name, "UNIT": unit, "STATISTIC": "std"}
                specs.append(BandSpec(f"{name} std ({unit})" if unit else f"{name} std", 1.0, tags))
        return specs


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _load(bundle: BundleLike, device: str) -> list[Predictor]:
    """The predictors of one bundle: one, or the members of a one-file ensemble."""
    loaded = bundle if isinstance(bundle, Predictor | Ensemble) else load_bundle(bundle, device)
    members = loaded.members if isinstance(loaded, Ensemble) else [loaded]
    return [m.to(device) for m in members]


def load_members(bundles: Sequence[BundleLike], device: str) -> list[Predictor]:
    """Every predictor of ``bundles`` (a one-file ensemble gives its members) on ``device``.

    Raises:
        LandlearnError: an unreadable bundle, or a device that is not there.
    """
    device = _check_device(device)
    return [p for b in bundles for p in _load(b, device)]


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
    scene: Scene,
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
    if first.meta.task == "regression":
        raise LandlearnError(
            f"head {first.meta.heads[0].name!r} predicts one value per sample, not per pixel; "
            "a map needs a segmentation or pixel_regression head",
            where[0],
        )
    if not first.regression:
        check_map_classes(first.meta.num_classes, where[0])
    inputs = bundle_inputs(first)
    for pred, w in zip(preds[1:], where[1:], strict=True):
        if [n for n, _ in bundle_inputs(pred)] != [n for n, _ in inputs]:
            raise LandlearnError("ensemble members read different inputs", w)
    names = [n for n, _ in inputs]
    allow = len(names) > 1 and all(p.can_do_without for p in preds)
    named = named_scenes(scene, names, allow_missing=allow)
    present = [n for n, _ in named]
    missing = tuple(str(n) for n in names if n not in present)
    if bands is not None and len(named) > 1:
        raise LandlearnError("--bands chooses the bands of a single-input bundle's scene")
    sources: list[Source] = []
    per_member: list[list[int]] = [[] for _ in preds]  # stacked positions per member
    profile: dict[str, Any] = {}
    itemsize = 0
    for i, (name, path) in enumerate(named):
        with open_scene(path) as src:
            chosen = [select_bands(src, dict(bundle_inputs(p))[name], bands) for p in preds]
            if i == 0:
                profile = {"width": src.width, "height": src.height, "crs": src.crs,
                           "transform": src.transform}  # fmt: skip
            warp = None if i == 0 else _warp(src, profile, path, named[0][1])
            itemsize += np.dtype(src.dtypes[0]).itemsize * src.count
        union = list(dict.fromkeys(j for idx in chosen for j in idx))
        offset = sum(len(s.indexes) for s in sources)
        for m, idx in enumerate(chosen):
            per_member[m] += [offset + union.index(j) for j in idx]
        sources.append(Source(name, os.fspath(path), union, warp))
    takes = per_member
    if first.task == "classification":
        tile, overlap = first.meta.chip_size, min(overlap, first.meta.chip_size // 2)
        multiple = 1
    else:
        multiple = max(_divisor(p) for p in preds)
        if tile % multiple:
            tile = -(-tile // multiple) * multiple
            log.info("tile rounded up to %d (a multiple of %d the model needs)", tile, multiple)
    grid = TileGrid.build(profile["height"], profile["width"], tile, overlap, multiple)
    check_windows(grid, multiple, named[0][1])
    check_memory(preds, grid, batch_size, named[0][1])
    split = _model_split(first)
    if missing and split is not None:
        log.warning(
            "mapping without input(s) %s: the bundle was trained with modality dropout for "
            "this; the map's tags and areas.json say so (missing_inputs)",
            ", ".join(missing),
        )
        split = {k: v for k, v in split.items() if k not in missing}
    model = WindowModel(preds, takes, tta=tta, mc_dropout=mc_dropout, split=split,
                        bands=[_present_bands(p, missing) for p in preds])  # fmt: skip
    # GDAL block cache. Windows are read left to right, row by row: reuse is the overlap with the
    # next window (a few tiles) and with the next row of windows (one row of tiles across the
    # scene), so one row of windows' worth is enough. It is the part of a map's memory that grows
    # with the scene's width.
    cache = int(np.clip(grid.tile_h * profile["width"] * itemsize, 32 << 20, 1 << 30))
    return Plan(
        Path(named[0][1]),
        preds,
        sources,
        grid,
        weight_window(grid.tile_h, grid.tile_w, grid.overlap, blend),
        model,
        profile,
        cache,
        missing,
    )


def _present_bands(pred: Predictor, missing: Sequence[str]) -> list[int] | None:
    """Positions in the bundle's band order of the inputs that are there (None: all are)."""
    if not missing:
        return None
    out, start = [], 0
    for name, count in pred.meta.in_channels_by_input.items():
        if name not in missing:
            out += list(range(start, start + count))
        start += count
    return out


def bundle_inputs(pred: Predictor) -> list[tuple[str | None, list[str]]]:
    """``(input name, band names)`` of each raster the bundle reads, in model order.

    A single-input bundle whose model reads one tensor gives one entry named None.
    """
    meta = pred.meta
    if not pred.multi_input:
        return [(None, list(meta.band_names))]
    return [(s.name, list(s.bands)) for s in meta.inputs if s.kind == "raster"]


def _model_split(pred: Predictor) -> dict[str, int] | None:
    """Input name → band count (in the bundle's input order) for a model that reads a dict."""
    return dict(pred.meta.in_channels_by_input) if pred.multi_input else None


def scene_paths(scene: Scene) -> list[str | os.PathLike[str]]:
    """Every raster path of ``scene``."""
    return list(scene.values()) if isinstance(scene, Mapping) else [scene]


def named_scenes(
    scene: Scene, names: list[str | None], *, allow_missing: bool = False
) -> list[tuple[str | None, str | os.PathLike[str]]]:
    """The rasters in the bundle's input order; one line for a missing or unknown input.

    ``allow_missing``: an input not given is left out (the bundle can do without it); at
    least one must be given.
    """
    wanted = ", ".join(str(n) for n in names)
    if not isinstance(scene, Mapping):
        if len(names) > 1:
            raise LandlearnError(
                f"the bundle reads {len(names)} inputs ({wanted}): give each as "
                "--input NAME=PATH (map_scene: a dict of name to path)"
            )
        return [(names[0], scene)]
    given = dict(scene)
    if not given:
        raise LandlearnError("no input raster given")
    if len(names) == 1 and len(given) == 1:
        return [(names[0], next(iter(given.values())))]
    unknown = [k for k in given if k not in names]
    if unknown:
        raise LandlearnError(f"the bundle has no input {unknown[0]!r}; it reads {wanted}")
    missing = [n for n in names if n not in given]
    if missing and not allow_missing:
        raise LandlearnError(
            f"no --input {missing[0]}=PATH: the bundle reads {wanted} (a fusion bundle trained "
            "with modality_dropout maps without an input)"
        )
    return [(n, given[str(n)]) for n in names if n in given]


def _warp(
    src: Any, grid: dict[str, Any], path: str | os.PathLike[str], first: str | os.PathLike[str]
) -> str | None:
    """The resampling of ``src`` onto the map's grid, if any.

    None when ``src`` is on the map's grid; else the resampling onto it, after checking
    that the footprints overlap.
    """
    from rasterio.warp import transform_bounds

    same = (
        src.crs == grid["crs"] and src.transform == grid["transform"]
        and (src.width, src.height) == (grid["width"], grid["height"])
    )  # fmt: skip
    if same:
        return None
    if src.crs is None or grid["crs"] is None:
        raise LandlearnError(
            f"on another grid than {first} and without a CRS to align it; give inputs on one grid",
            path,
        )
    left, bottom, right, top = transform_bounds(src.crs, grid["crs"], *src.bounds)
    t = grid["transform"]
    x0, y0 = t.c, t.f
    x1, y1 = x0 + t.a * grid["width"], y0 + t.e * grid["height"]
    fx0, fx1, fy0, fy1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    if right <= fx0 or left >= fx1 or top <= fy0 or bottom >= fy1:
        raise LandlearnError(f"does not overlap the first input {first}", path)
    log.info("%s: on another grid; resampled (%s) onto %s's", path, RESAMPLING, first)
    return RESAMPLING


def block_products(
    plan: Plan, acc: np.ndarray, wsum: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A final block's (probabilities (K, h, w), valid (h, w), uncertainty maps by band name).

    For a regression head: values (T, h, w) in target units, and ``std`` (T, h, w) when
    uncertain.
    """
    k = plan.model.num_classes
    valid = wsum > 0
    denom = np.where(valid, wsum, 1.0)
    probs = acc[:k] / denom
    extra: dict[str, np.ndarray] = {}
    if plan.regression:
        if plan.model.uncertain:
            extra["std"] = np.sqrt(np.maximum(acc[k : 2 * k] / denom - probs * probs, 0.0))
        return probs, valid, extra
    if plan.model.uncertain:
        h = entropy(probs, dim=0)
        assert isinstance(h, np.ndarray)
        extra["entropy"] = h
        for j, name in enumerate(plan.model.extras):
            value = acc[k + j] / denom
            if name == "expected_entropy":
                extra["mutual_information"] = np.maximum(h - value, 0.0)
            elif name == "variance":
                extra["ensemble_variance"] = value
    if "energy" in plan.model.extras:
        extra["energy"] = acc[k + plan.model.extras.index("energy")] / denom
    return probs, valid, extra


def value_bands(probs: np.ndarray, valid: np.ndarray, extra: dict[str, np.ndarray]) -> np.ndarray:
    """A regression block's bands (values, then std) as float32, NaN where not valid."""
    parts = [probs, extra["std"]] if "std" in extra else [probs]
    out = np.concatenate(parts, axis=0).astype(np.float32)
    out[:, ~valid] = np.nan
    return out


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
    if "energy" in extra:
        lo, hi = plan.energy_range
        out.append(quantize(extra["energy"] - lo, hi - lo, valid))
    return cls, out
