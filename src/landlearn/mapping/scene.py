"""Map any GeoTIFF scene with a bundle (issue #8): streaming, blended, with uncertainty.

Pipeline: a reader thread reads reflection-padded windows in batches ahead of the model; the
model (an ensemble, D4 TTA, MC dropout) runs under ``inference_mode`` (bf16 + channels_last on
GPU); :class:`~landlearn.mapping.blend.StreamingBlender` blends windows and hands over each
block as soon as it is final; the blocks of a row of windows are quantised into one row buffer
and a writer thread writes it. Memory holds a few rows of windows, never the scene.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
import torch
from rasterio.transform import Affine

from landlearn.atomic import commit_renames
from landlearn.bundle import Ensemble, Predictor
from landlearn.errors import LandlearnError
from landlearn.mapping.blend import Block, BlockGrid, StreamingBlender, TileGrid
from landlearn.mapping.options import MapOptions, map_options
from landlearn.mapping.outputs import (
    AreaCounter,
    MapFiles,
    ValueSummary,
    write_sidecars,
)
from landlearn.mapping.plan import (
    BundleLike,
    Plan,
    Scene,
    block_products,
    make_plan,
    quantized_bands,
    scene_paths,
    value_bands,
)
from landlearn.mapping.reader import WindowReader, check_scene
from landlearn.mapping.writer import MapWriter
from landlearn.safety import check_outputs

log = logging.getLogger(__name__)

__all__ = ["MapResult", "map_scene", "predict_scene_array"]

Progress = Callable[[int, int], None]
"""Called as ``progress(windows_done, windows_total)`` after each batch."""


@dataclass
class MapResult:
    """What :func:`map_scene` wrote."""

    path: Path
    areas: Path
    preview: Path | None
    bands: list[str]
    windows: int
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def windows_per_second(self) -> float:
        """Throughput of the whole run."""
        return self.windows / self.seconds if self.seconds > 0 else float("inf")


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return cast(Callable[[int], int], libc.malloc_trim)
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()


def _release_freed_memory() -> None:
    """Hand freed window buffers back to the OS once per row of windows (glibc).

    Window-sized numpy / torch buffers are allocated and freed in three threads; glibc keeps
    freed chunks in per-thread arenas (and raises its mmap threshold after each large free), so
    without a trim the resident size creeps up with the number of windows, i.e. the area.
    Called once per batch: a trim costs far less than a batch's forward pass.
    """
    if _TRIM is not None:
        _TRIM(0)


def _bundles(
    bundle: BundleLike | Sequence[BundleLike], ensemble: Sequence[BundleLike]
) -> list[BundleLike]:
    first = list(bundle) if isinstance(bundle, list | tuple) else [cast(BundleLike, bundle)]
    return [*first, *ensemble]


@contextlib.contextmanager
def _seeded(plan: Plan, seed: int | None) -> Iterator[None]:
    """MC dropout draws from torch's RNG: fork it so a map is reproducible and global state kept."""
    if not plan.model.mc or seed is None:
        yield
        return
    cuda = plan.model.device.type == "cuda"
    with torch.random.fork_rng(devices=[plan.model.device] if cuda else []):
        torch.manual_seed(seed)
        yield


def _stream(
    plan: Plan,
    sink: Callable[[int, int, np.ndarray, np.ndarray], None],
    row_done: Callable[[int], None] | None,
    batch_size: int,
    progress: Progress | None,
    seed: int | None,
) -> None:
    """Run every window through the model and the blender, in order."""
    g = plan.grid
    blender = StreamingBlender(g, plan.model.channels, plan.weight, sink, row_done)
    pin = plan.model.device.type == "cuda"
    done = 0
    with (
        rasterio.Env(GDAL_CACHEMAX=plan.cache_bytes),
        _seeded(plan, seed),
        WindowReader(plan.sources, g, batch_size, pin_memory=pin) as reader,
    ):
        for batch in reader:
            live = [k for k in range(len(batch.indexes)) if batch.valid[k].any()]
            valid = batch.valid[live]  # a copy; the model clears what it voids
            values = (
                plan.model(batch.image[live], valid, _owned(g, batch.indexes, live))
                if live
                else None
            )
            slot = {k: j for j, k in enumerate(live)}
            for k, index in enumerate(batch.indexes):
                if k in slot:
                    assert values is not None
                    blender.add(index, values[slot[k]], valid[slot[k]])
                else:  # all no-data: nothing to add, but the blender must see it
                    blender.add(index, None)
            done += len(batch.indexes)
            del values, batch
            _release_freed_memory()
            if progress is not None:
                progress(done, len(g))
    if not blender.finished:
        raise RuntimeError("reader stopped before the last window")


@contextlib.contextmanager
def _out_of_memory_is_one_line(plan: Plan, batch_size: int) -> Iterator[None]:
    """An allocation failure the up-front estimate missed, as one line (nothing is written)."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        text = str(exc)
        if not isinstance(exc, torch.OutOfMemoryError | MemoryError) and not any(
            s in text for s in ("not enough memory", "DefaultCPUAllocator", "out of memory")
        ):
            raise
        raise LandlearnError(
            f"ran out of memory with --tile {plan.grid.tile_h} and --batch-size {batch_size} "
            f"on {plan.model.device}; use a smaller --tile or --batch-size",
            plan.scene,
        ) from None


def _owned(grid: TileGrid | BlockGrid, indexes: Sequence[int], live: Sequence[int]) -> np.ndarray:
    """(B, th, tw) masks of the window pixels each window owns (each scene pixel once)."""
    out = np.zeros((len(live), grid.tile_h, grid.tile_w), bool)
    for j, k in enumerate(live):
        out[(j, *grid.own(indexes[k]))] = True
    return out


def predict_scene_array(
    bundle: BundleLike | Sequence[BundleLike],
    scene: Scene,
    options: MapOptions | None = None,
    *,
    ensemble: Sequence[BundleLike] = (),
    block: Block | None = None,
    **changes: Any,
) -> dict[str, np.ndarray]:
    """The same streaming path as :func:`map_scene`, into float arrays (small scenes or blocks).

    Returns ``probabilities`` (K, H, W) float32 (NaN at no-data), ``valid`` (H, W) and, with
    uncertainty, ``entropy`` / ``mutual_information`` / ``ensemble_variance`` (H, W), and
    ``energy`` (H, W) for a JEM bundle. A
    pixel-regression bundle gives ``values`` (T, H, W) in target units instead, and ``std``
    (T, H, W) with uncertainty.

    With ``block`` (a rectangle of the scene) only the windows of the whole scene's grid that
    reach it are read and run, and the arrays cover the block: blended exactly as in the
    one-piece map, so blocks put side by side equal it (a unit of work for scale-out). With MC
    dropout the draws depend on how windows are batched, so blocks match the one-piece map
    only in distribution.

    ``options`` (or keyword ``changes`` of it, e.g. ``tile=256``): :class:`MapOptions`.
    """
    opts = map_options(options, **changes)
    plan = _plan(_bundles(bundle, ensemble), scene, opts)
    if block is not None:
        plan = _block_plan(plan, block)
    y_top, y_end, x_left, x_end = plan.grid.bounds
    h, w, k = y_end - y_top, x_end - x_left, plan.model.num_classes
    key = "values" if plan.regression else "probabilities"
    out: dict[str, np.ndarray] = {
        key: np.full((k, h, w), np.nan, np.float32),
        "valid": np.zeros((h, w), bool),
    }

    def sink(y0: int, x0: int, acc: np.ndarray, wsum: np.ndarray) -> None:
        probs, valid, extra = block_products(plan, acc, wsum)
        ys = slice(y0 - y_top, y0 - y_top + valid.shape[0])
        xs = slice(x0 - x_left, x0 - x_left + valid.shape[1])
        out[key][:, ys, xs] = np.where(valid, probs, np.nan)
        out["valid"][ys, xs] = valid
        for name, value in extra.items():
            shape = (*value.shape[:-2], h, w)
            part = np.where(valid, value, np.nan)
            out.setdefault(name, np.full(shape, np.nan, np.float32))[..., ys, xs] = part

    _stream(plan, sink, None, opts.batch_size, None, opts.seed)
    return out


def _plan(members: list[BundleLike], scene: Scene, opts: MapOptions) -> Plan:
    return make_plan(
        members,
        scene,
        tile=opts.tile,
        overlap=opts.overlap,
        blend=opts.blend,
        batch_size=opts.batch_size,
        device=opts.device,
        tta=opts.tta,
        mc_dropout=opts.mc_dropout,
        bands=opts.bands,
    )


def _block_plan(plan: Plan, block: Block) -> Plan:
    """``plan`` restricted to the windows reaching ``block``; one line for a bad block."""
    if not isinstance(plan.grid, TileGrid):
        raise TypeError("a block plan is made from a whole-scene plan")
    try:
        grid = BlockGrid.build(plan.grid, block)
    except ValueError as err:
        raise LandlearnError(str(err), plan.scene) from None
    return dataclasses.replace(plan, grid=grid)


def map_scene(
    bundle: BundleLike | Sequence[BundleLike],
    scene: Scene,
    out: str | os.PathLike[str],
    options: MapOptions | None = None,
    *,
    ensemble: Sequence[BundleLike] = (),
    progress: Progress | None = None,
    block: Block | None = None,
    run_id: str | None = None,
    **changes: Any,
) -> MapResult:
    """Map ``scene`` with a bundle (or an ensemble) to a Cloud-Optimized GeoTIFF at ``out``.

    A pixel-regression bundle writes float32 bands instead: one per target, described
    ``name (unit)``, NaN no-data, then a ``std`` band per target with uncertainty (TTA, MC
    dropout, ensemble); ``<stem>.areas.json`` then holds per-target statistics and the QGIS
    style is a viridis ramp over the 2nd–98th percentile.

    Band 1 is the class (uint8, no-data 255, colour table), band 2 the confidence; then one
    probability band per class with ``probabilities``, and entropy (any of ``tta``,
    ``mc_dropout``, ``ensemble``), mutual information (MC dropout) and ensemble variance,
    and for a JEM bundle the energy (higher = less like the training data; the band's tags
    hold the validation images' energy percentiles to compare with). Non-class bands are uint8
    with a GDAL scale and offset (``stored × scale + offset`` = probability, nats or energy).
    Beside ``out``: ``<stem>.qml`` (QGIS style: paletted classes with names, loaded by QGIS
    as the map's default style), ``<stem>.areas.json`` (pixels and area per class) and, with
    ``preview``, ``<stem>.preview.png``. Everything is written under temporary names and
    committed as a group at the end (sidecars first, the GeoTIFF last; each file carries the
    run's ``LANDLEARN_RUN_ID``).

    Args:
        bundle: bundle path(s) or loaded :class:`~landlearn.bundle.Predictor` (moved to
            ``device``); a list is an ensemble.
        scene: any raster GDAL reads, any size, CRS and dtype; for a bundle that reads
            several inputs, ``{input name: raster}``: each is read by window on the first
            input's grid (resampled bilinearly through a WarpedVRT when its grid differs), by
            its own band names.
        out: target GeoTIFF path.
        options: tile, overlap, blend, batch size, device, TTA, MC dropout, probability bands,
            scene bands, preview, seed and overwrite (:class:`MapOptions`); keyword
            ``changes`` such as ``tile=256`` override them. Without ``overwrite`` only an
            earlier landlearn map and its sidecars may be replaced (never an input).
        ensemble: more bundles with the same classes; probabilities are averaged.
        progress: called as ``progress(done, total)`` windows.
        block: map only this rectangle of the scene (a unit of work for scale-out): the
            GeoTIFF covers the block (its transform shifted to it), blended exactly as in
            the one-piece map, so blocks side by side equal it pixel for pixel.
        run_id: the ``LANDLEARN_RUN_ID`` the files carry (default: a new random one); a
            fixed one (derived from what was mapped) makes the same map byte for byte.

    Raises:
        LandlearnError: unreadable scene or bundle, missing bands, bad options, an output
            path that is an input, not a regular file, not writable, or a file landlearn did
            not write (see :mod:`landlearn.safety`).
    """
    start = time.perf_counter()
    opts = map_options(options, **changes)
    probabilities, batch_size = opts.probabilities, opts.batch_size
    out = Path(out)
    for path in scene_paths(scene):
        check_scene(path)  # before anything resolves it: a symlink loop or a FIFO, by name
    members = _bundles(bundle, ensemble)
    files = MapFiles(out, opts.preview)
    _check_map_outputs(files, scene, members, opts.overwrite)
    plan = _plan(members, scene, opts)
    if plan.profile["crs"] is None:  # here, not in the plan: predict_scene_array writes no map
        # Once: the CLI shows warnings as log lines (cli/common.py), the API as warnings.
        msg = f"{scene_paths(scene)[0]}: raster has no CRS; the map will have none"
        warnings.warn(msg, UserWarning, stacklevel=2)
    if block is not None:
        plan = _block_plan(plan, block)
    y_top, y_end, x_left, x_end = plan.grid.bounds
    profile = {
        **plan.profile,
        "height": y_end - y_top,
        "width": x_end - x_left,
        "transform": plan.profile["transform"] * Affine.translation(x_left, y_top),
    }
    specs = plan.band_specs(probabilities)
    regression = plan.regression
    if regression and probabilities:
        log.info("a value map has no probability bands; --probabilities ignored")
    areas = AreaCounter(plan.class_names, profile["crs"], profile["transform"])
    values_seen = ValueSummary(plan.class_names, plan.units) if regression else None
    run_id = run_id or uuid.uuid4().hex
    tags = _tags(plan, members, opts.blend, opts.tta, opts.mc_dropout)
    tags["LANDLEARN_RUN_ID"] = run_id
    if block is not None:
        tags["LANDLEARN_BLOCK"] = json.dumps(dataclasses.asdict(block))
    writer = MapWriter(
        out, profile=profile, bands=specs, colors=None if regression else plan.colors,
        tags=tags, dtype="float32" if regression else "uint8",
    )  # fmt: skip
    width = profile["width"]
    row: dict[str, Any] = {}

    def sink(y0: int, x0: int, acc: np.ndarray, wsum: np.ndarray) -> None:
        probs, valid, extra = block_products(plan, acc, wsum)
        y0, x0 = y0 - y_top, x0 - x_left  # scene px -> px of what is written
        if values_seen is not None:
            bands = value_bands(probs, valid, extra)
            if "buf" not in row:
                row["y0"] = y0
                row["buf"] = np.empty((len(specs), bands.shape[1], width), np.float32)
            row["buf"][:, :, x0 : x0 + bands.shape[2]] = bands
            values_seen.add(bands[: plan.model.num_classes], valid)
            return
        cls, others = quantized_bands(plan, probs, valid, extra, probabilities)
        if "buf" not in row:
            row["y0"] = y0
            row["buf"] = np.empty((len(specs), cls.shape[0], width), np.uint8)
        xs = slice(x0, x0 + cls.shape[1])
        row["buf"][0, :, xs] = cls
        for i, band in enumerate(others, start=1):
            row["buf"][i, :, xs] = band
        areas.add(y0, cls)

    def row_done(r: int) -> None:
        if "buf" in row:
            writer.write(row.pop("y0"), row.pop("buf"))

    try:
        with writer, rasterio.Env(GDAL_CACHEMAX=plan.cache_bytes):
            with _out_of_memory_is_one_line(plan, batch_size):
                _stream(plan, sink, row_done, batch_size, progress, opts.seed)
            cog = writer.finish()
            counts = plan.model.counts
            counts.warn(plan.scene, nodata="no-data (255) in the map")
            summary = areas.summary() if values_seen is None else values_seen.summary()
            if not counts.clean:
                summary["screened"] = {
                    "pixels": counts.pixels,
                    "nonfinite": counts.nonfinite,
                    "absurd": counts.absurd,
                    "nonfinite_outputs": counts.nonfinite_outputs,
                }
            summary["source"] = _source(plan)
            if plan.missing:
                summary["missing_inputs"] = list(plan.missing)
            summary["map"] = out.name
            summary["run_id"] = run_id
            if block is not None:
                summary["block"] = dataclasses.asdict(block)
            write_sidecars(
                files, cog, summary, plan.class_names, plan.colors, values_seen,
                specs[0].name, run_id,
            )  # fmt: skip
            # one group: sidecars first, the GeoTIFF last, interrupts held in between
            commit_renames([*files.sidecar_pairs(), *writer.pending()])
            log.info("wrote %s", out)
    finally:
        files.cleanup()
    area_path, preview_path = files.areas, files.preview
    seconds = time.perf_counter() - start
    n = len(plan.grid)
    log.info("%d windows in %.1f s (%.2f windows/s)", n, seconds, n / max(seconds, 1e-9))
    return MapResult(
        out, area_path, preview_path, [s.name for s in specs], len(plan.grid), seconds, summary
    )


def _source(plan: Plan) -> str | dict[str, str]:
    """The raster mapped, or ``{input name: raster}`` for several inputs."""
    if len(plan.sources) == 1:
        return plan.sources[0].path
    return {str(s.name): s.path for s in plan.sources}


def _check_map_outputs(
    files: MapFiles, scene: Scene, members: list[BundleLike], overwrite: bool
) -> None:
    """Refuse unsafe output paths before any work (:mod:`landlearn.safety`)."""
    if files.tif.suffix.lower() not in (".tif", ".tiff"):
        raise LandlearnError("a map is a GeoTIFF; give an output path ending in .tif", files.tif)
    inputs = [
        *scene_paths(scene),
        *(m for m in members if not isinstance(m, Predictor | Ensemble)),
    ]
    check_outputs(files.outputs(), inputs, overwrite=overwrite)


def _tags(
    plan: Plan, members: list[BundleLike], blend: str, tta: str | None, mc_dropout: int
) -> dict[str, str]:
    names = [
        m.meta.model_name if isinstance(m, Predictor | Ensemble) else Path(m).name for m in members
    ]
    if plan.regression:
        what = {"TARGETS": json.dumps(plan.class_names), "UNITS": json.dumps(plan.units)}
    else:
        what = {
            "CLASS_NAMES": json.dumps(plan.class_names),
            "CLASS_COLORS": json.dumps(plan.colors),
        }
    return {
        **what,
        "LANDLEARN_BUNDLES": json.dumps(names),
        "LANDLEARN_SOURCE": plan.scene.name
        if len(plan.sources) == 1
        else json.dumps({str(s.name): Path(s.path).name for s in plan.sources}),
        "LANDLEARN_TASK": plan.model.task,
        "LANDLEARN_TILING": json.dumps(
            {"tile": plan.grid.tile_h, "overlap": plan.grid.overlap, "blend": blend}
        ),
        "LANDLEARN_UNCERTAINTY": json.dumps(
            {"tta": tta, "mc_dropout": mc_dropout, "ensemble": len(members)}
        ),
        **({"LANDLEARN_MISSING_INPUTS": json.dumps(list(plan.missing))} if plan.missing else {}),
    }
