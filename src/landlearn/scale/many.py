"""``map_many``: map many scenes (or scenes too big for one worker) into one folder.

One unit of work per scene; a scene larger than ``block`` px on a side becomes blocks mapped
separately with the whole scene's windows (so they join without a seam, pixel for pixel the
one-piece map), then joined into the scene's COG. Units run on an engine: ``local`` (this
process, one at a time, no Ray import) or ``ray`` (actors that load the bundle once; a local Ray,
or a cluster by address). A unit that fails with anything but a user error (a bad scene) or
whose worker dies is retried ``retries`` times, then its scene is reported and skipped while
the others go on. ``manifest.json`` records what each finished COG was made from, so a re-run
maps only missing or stale scenes. At the end: a VRT mosaic and a catalogue (see
:mod:`landlearn.scale.catalogue`). An interrupt stops the workers and leaves no partial file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from landlearn.errors import LandlearnError
from landlearn.mapping import Block, MapOptions
from landlearn.mapping.options import map_options
from landlearn.mapping.outputs import MapFiles
from landlearn.mapping.reader import check_scene, open_scene
from landlearn.safety import Output, check_outputs
from landlearn.scale.catalogue import (
    CATALOGUE,
    FOOTPRINTS,
    map_info,
    write_catalogue,
    write_mosaics,
)
from landlearn.scale.engines import FAULT_ENV, Done, Engine, LocalEngine, RayEngine, Worker
from landlearn.scale.jobs import BLOCKS_DIR, SceneArg, SceneJob, Unit, scene_jobs
from landlearn.scale.manifest import MANIFEST, Manifest, file_sha256, options_hash, sha256_of

__all__ = ["ENGINES", "ManyProgress", "ManyResult", "map_many"]

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


@dataclass
class ManyProgress:
    """Where a ``map_many`` run stands, given to its ``progress`` callback."""

    scenes_done: int
    scenes_total: int
    windows: int
    seconds: float
    last: str = ""


@dataclass
class ManyResult:
    """What ``map_many`` did: scenes done, skipped (already finished) and failed (with why)."""

    out_dir: Path
    done: list[str]
    skipped: list[str]
    failed: dict[str, str]
    mosaics: list[Path]
    catalogue: Path
    footprints: Path
    windows: int
    seconds: float
    retried: int = 0
    maps: dict[str, Path] = field(default_factory=dict)

    @property
    def scenes_per_second(self) -> float:
        """Scenes mapped (not skipped) per second of the whole run."""
        return len(self.done) / self.seconds if self.seconds > 0 else float("inf")


def _bundle_paths(bundle: Any, ensemble: Sequence[Any]) -> list[str]:
    items = list(bundle) if isinstance(bundle, list | tuple) else [bundle]
    paths = []
    for b in [*items, *ensemble]:
        if not isinstance(b, str | os.PathLike):
            raise LandlearnError("map_many takes bundle files (each worker loads its own copy)")
        if not Path(b).is_file():
            raise LandlearnError("bundle not found", b)
        paths.append(os.fspath(b))
    return paths


def _scene_size(job: SceneJob) -> tuple[int, int]:
    """Height and width of the scene's first raster (the grid everything is mapped on).

    Raises:
        LandlearnError: an unreadable raster.
    """
    for path in job.paths:
        check_scene(path)
    with open_scene(job.paths[0]) as src:
        return src.height, src.width


def _outputs(jobs: Sequence[SceneJob], out_dir: Path, preview: bool) -> list[Output]:
    outs = [o for job in jobs for o in MapFiles(job.out, preview).outputs()]
    names = (MANIFEST, CATALOGUE, FOOTPRINTS, "mosaic.vrt")
    return [*outs, *(Output(out_dir / n, "text") for n in names)]


def _temporaries(job: SceneJob) -> list[Path]:
    """Temporary files a killed worker may have left beside ``job``'s outputs."""
    folder = job.out.parent
    pattern = re.compile(
        rf"^\.{re.escape(job.name)}\.(tif|tif\.aux\.xml|areas\.json|qml|preview\.png)"
        r"\.[0-9a-f]{8}\."
    )
    return [p for p in folder.glob(f".{job.name}.*") if pattern.match(p.name)]


def _clean(job: SceneJob, blocks: bool = True) -> None:
    for p in _temporaries(job):
        p.unlink(missing_ok=True)
    if blocks and job.blocks_dir.exists():
        shutil.rmtree(job.blocks_dir, ignore_errors=True)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _failure(job: SceneJob, exc: BaseException) -> str:
    """One line: the scene's file and what went wrong (a LandlearnError names its own file)."""
    if isinstance(exc, LandlearnError) and exc.path:
        return exc.one_line()
    return LandlearnError(_reason(exc), job.paths[0]).one_line()


def map_many(
    bundle: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    scenes: Sequence[SceneArg],
    out_dir: str | os.PathLike[str],
    options: MapOptions | None = None,
    *,
    ensemble: Sequence[str | os.PathLike[str]] = (),
    engine: str = "local",
    address: str | None = None,
    workers: int = 1,
    threads: int = 1,
    gpus_per_worker: float = 0.0,
    block: int = 8192,
    retries: int = 2,
    progress: Callable[[ManyProgress], None] | None = None,
    **changes: Any,
) -> ManyResult:
    """Map every scene into ``out_dir``: one COG and sidecars each, a mosaic and a catalogue.

    Args:
        bundle: bundle file(s); a list is an ensemble (as are ``ensemble``'s files).
        scenes: rasters, or ``{input name: raster}`` for a multi-input bundle (a mapping may
            carry a ``name``: the output's stem; otherwise the first raster's stem).
        out_dir: the folder of the maps, ``manifest.json``, ``mosaic.vrt``,
            ``catalogue.json`` and ``footprints.geojson``.
        options: :class:`~landlearn.mapping.MapOptions` of every map (or keyword ``changes``).
        ensemble: more bundle files to average.
        engine: ``local`` (this process, no Ray) or ``ray``.
        address: a Ray cluster (``ray://host:10001``, ``auto``); default: start a local Ray.
        workers: Ray actors (each loads the bundle once).
        threads: CPU threads of each Ray worker's torch.
        gpus_per_worker: share of a GPU per Ray worker (then ``device`` cuda).
        block: a scene larger than this many px on a side is mapped in blocks of this size.
        retries: tries after the first for a unit that fails with anything but a bad-input
            error, or whose worker dies.
        progress: called with a :class:`ManyProgress` after every unit.

    Returns:
        what was done, skipped and failed (with one-line reasons), and the files written.

    Raises:
        LandlearnError: bad options, a bundle that is not a file, two scenes with one output
            name, or an output path that is not safe to write (before anything is mapped).
            A bad scene is not raised: it is reported in ``failed`` and the others go on.
    """
    start = time.perf_counter()
    opts = map_options(options, **changes)
    if engine not in ENGINES:
        raise LandlearnError(f"unknown engine {engine!r}; use local or ray")
    if workers < 1 or threads < 1 or retries < 0 or block < 256 or gpus_per_worker < 0:
        raise LandlearnError(
            "need --workers >= 1, threads >= 1, --retries >= 0, --block >= 256, "
            f"--gpus-per-worker >= 0; got {workers=} {threads=} {retries=} {block=}"
        )
    if gpus_per_worker > 0 and opts.device == "cpu":
        opts = opts.replace(device="cuda")
    bundles = _bundle_paths(bundle, ensemble)
    out = Path(out_dir)
    jobs = scene_jobs(scenes, out)
    check_outputs(
        _outputs(jobs, out, opts.preview),
        [p for j in jobs for p in j.paths] + bundles,
        overwrite=opts.overwrite,
    )
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out)
    bundle_hash = hashlib.sha256("".join(file_sha256(b) for b in bundles).encode()).hexdigest()
    opts_hash = options_hash(opts, block)

    failed: dict[str, str] = {}
    skipped: list[str] = []
    keys: dict[str, dict[str, Any]] = {}
    units: deque[Unit] = deque()
    blocks_left: dict[str, int] = {}
    for job in jobs:
        try:
            height, width = _scene_size(job)
        except LandlearnError as exc:
            failed[job.name] = _failure(job, exc)
            log.debug("%s failed: %s", job.name, failed[job.name])
            continue
        key = keys[job.name] = manifest.key(job, bundle_hash, opts_hash)
        if manifest.finished(job, key):
            skipped.append(job.name)
            continue
        _clean(job)  # what a killed earlier run left
        if max(height, width) > block:
            tiles = tuple(Block.tiling(height, width, block))
            units.extend(Unit(job, "block", b, tiles) for b in tiles)
            blocks_left[job.name] = len(tiles)
        else:
            units.append(Unit(job))
    if skipped:
        log.info("%d scene(s) already mapped with this bundle and options: skipped", len(skipped))
    run_ids = {name: sha256_of({"scene": name, **key})[:32] for name, key in keys.items()}
    to_map = {u.job.name for u in units}
    done: list[str] = []
    windows = retried = 0
    jobs_by_name = {j.name: j for j in jobs}
    began: dict[str, float] = {}

    def report(last: str = "") -> None:
        if progress is not None:
            finished = len(done) + len(failed) + len(skipped)
            progress(ManyProgress(finished, len(jobs), windows, time.perf_counter() - start, last))

    report()
    runner: Engine | None = None
    try:
        if units:
            fault = os.environ.get(FAULT_ENV) or None
            if engine == "ray":
                runner = RayEngine(
                    bundles, opts, run_ids, workers=workers, threads=threads,
                    gpus_per_worker=gpus_per_worker, address=address, fault=fault,
                )  # fmt: skip
            else:
                if workers > 1:
                    log.info("the local engine maps one unit at a time; --engine ray for more")
                runner = LocalEngine(Worker(bundles, opts, run_ids, fault=fault))
        attempts: Counter[Unit] = Counter()
        running = 0
        while units or running:
            assert runner is not None
            while units and running < runner.slots:
                unit = units.popleft()
                if unit.job.name in failed:
                    continue
                began.setdefault(unit.job.name, time.perf_counter())
                runner.submit(unit)
                running += 1
            if not running:
                break
            unit, outcome = runner.next_done()
            running -= 1
            name = unit.job.name
            if name in failed:
                continue  # another block of this scene failed already
            if isinstance(outcome, BaseException):
                retry = not isinstance(outcome, LandlearnError)
                if retry and attempts[unit] < retries:
                    attempts[unit] += 1
                    retried += 1
                    log.warning("%s failed (%s); retry %d of %d", unit.label, _reason(outcome),
                                attempts[unit], retries)  # fmt: skip
                    if unit.kind != "block":  # a block's temporaries go with its folder
                        _clean(unit.job, blocks=False)  # what the dead worker left
                    units.appendleft(unit)
                    continue
                failed[name] = _failure(unit.job, outcome)
                log.debug("%s failed: %s", name, failed[name])
                manifest.forget(unit.job)
                _clean(unit.job)
                report(name)
                continue
            assert isinstance(outcome, Done)
            windows += outcome.windows
            if unit.kind == "block":
                blocks_left[name] -= 1
                if blocks_left[name] == 0:
                    units.appendleft(Unit(unit.job, "join", None, unit.blocks))
                report()
                continue
            _clean(unit.job)  # the blocks, and any temporary of a killed try
            manifest.record(unit.job, keys[name], time.perf_counter() - began[name], opts.preview)
            done.append(name)
            report(name)
    finally:
        if runner is not None:
            runner.close()
        for name in to_map:
            if name not in done:
                _clean(jobs_by_name[name])
        blocks_root = out / BLOCKS_DIR
        if blocks_root.exists() and not any(blocks_root.iterdir()):
            blocks_root.rmdir()

    finished = [j for j in jobs if j.name in done or j.name in skipped]
    infos = [map_info(j.name, j.out) for j in finished]
    mosaics = write_mosaics(out, infos)
    status = {n: "skipped" for n in skipped}
    header = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "bundles": [Path(b).name for b in bundles],
        "bundle_sha256": bundle_hash,
        "options": {k: v for k, v in dataclasses.asdict(opts).items() if k != "overwrite"},
        "block": block,
        "engine": engine,
    }
    catalogue, footprints = write_catalogue(out, infos, failed, status, header, mosaics)
    seconds = time.perf_counter() - start
    log.info(
        "%d scene(s) in %s: %d mapped, %d already done, %d failed (%d retries, %.1f s); mosaic %s",
        len(jobs), out, len(done), len(skipped), len(failed), retried, seconds,
        ", ".join(str(m) for m in mosaics) or "none",
    )  # fmt: skip
    return ManyResult(
        out, done, skipped, failed, mosaics, catalogue, footprints, windows, seconds, retried,
        {j.name: j.out for j in finished},
    )  # fmt: skip
