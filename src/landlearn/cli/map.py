"""``landlearn map BUNDLE SCENE -o OUT.tif``: a land-cover COG of any GeoTIFF scene.

``landlearn map BUNDLE SCENES… --out-dir DIR``: many scenes (or a scene list), locally or on Ray.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from landlearn.scale.jobs import SceneArg

__all__ = ["EXAMPLE", "HELP", "add_arguments", "named_inputs", "run"]

log = logging.getLogger(__name__)

HELP = "map a GeoTIFF scene into a land-cover COG with confidence and uncertainty"
EXAMPLE = """examples:
  landlearn map model.safetensors scene.tif -o map.tif
  landlearn map model.safetensors scene.tif -o map.tif --mc-dropout 8 --probabilities
  landlearn map a.safetensors scene.tif -o map.tif --ensemble b.safetensors c.safetensors
  landlearn map model.safetensors naip.tif -o map.tif --bands 1 2 3 4 --device cuda
  landlearn map s1s2.safetensors --input s2=S2.tif --input s1=S1.tif -o water.tif
  landlearn map model.safetensors tiles/*.tif --out-dir maps/
  landlearn map model.safetensors tiles/*.tif --out-dir maps/ --engine ray --workers 4
  landlearn map model.safetensors big.vrt --out-dir maps/ --engine ray --address ray://head:10001
  landlearn map s1s2.safetensors pairs.csv --out-dir maps/   (CSV header: name,s2,s1)

Writes OUT.tif (COG: band 1 class with colour table in OUT.tif.aux.xml, band 2 confidence,
then probabilities / entropy / mutual information / ensemble variance as asked, and an energy
band for a JEM bundle (higher = less like the training data); uint8, values × the band's scale
+ its offset), OUT.qml (QGIS style: classes by name and colour), OUT.areas.json
(pixels and km² per class) and OUT.preview.png, committed together at the end. An existing
landlearn map there is replaced; any other file (a bundle, a label raster, an input) is refused
unless --overwrite is given (inputs always are).

A pixel-regression bundle writes float32 bands instead (one per target, described "name (unit)",
NaN no-data; a std band per target with --tta, --mc-dropout or --ensemble); OUT.areas.json then
holds each target's pixels, mean, std, min, max and 2nd-98th percentiles, and OUT.qml draws
band 1 as a viridis ramp over them.

With --out-dir every scene (a raster, or a .csv / .yaml list of scenes: one row of named inputs
each) gets those files in DIR, then DIR/mosaic.vrt (all maps, colour table kept: open it in
QGIS), DIR/catalogue.json and DIR/footprints.geojson (per-scene and total km² per class) and
DIR/manifest.json: a re-run maps only scenes that are missing or stale (new bundle, options or
input). A scene larger than --block px on a side is mapped in blocks joined without a seam. A
failing scene is retried (--retries), then reported in one line while the others go on; the
exit code is then 2. --engine ray (pip install 'landlearn[ray]') spreads scenes and blocks over
--workers Ray actors that each load the bundle once; without --address a local Ray is started."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landlearn map``."""
    parser.description = HELP
    parser.epilog = EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("bundle", metavar="BUNDLE", help="model bundle (.safetensors)")
    parser.add_argument(
        "scenes", metavar="SCENE", nargs="*", default=[],
        help="input raster (any GDAL format); or give each input with --input; with --out-dir "
        "any number of rasters and .csv / .yaml scene lists",
    )  # fmt: skip
    parser.add_argument(
        "--input", action="append", default=[], metavar="NAME=PATH", dest="inputs",
        help="a named input of a multi-input bundle, e.g. --input s2=S2.tif --input s1=S1.tif "
        "(on another grid than the first: resampled onto it)",
    )  # fmt: skip
    parser.add_argument("-o", "--out", metavar="OUT.tif", help="output COG (one scene)")
    parser.add_argument("--out-dir", metavar="DIR", help="folder of the maps of many scenes")
    many = parser.add_argument_group("many scenes (with --out-dir)")
    many.add_argument("--engine", choices=["local", "ray"], default="local",
                      help="local: this process, one unit at a time; ray: Ray actors")  # fmt: skip
    many.add_argument("--address", default=None, metavar="ADDR",
                      help="Ray cluster to join (ray://HOST:10001 or auto); default: start a "
                      "local Ray")  # fmt: skip
    many.add_argument("--workers", type=int, default=2, help="Ray actors (2)")
    many.add_argument("--threads", type=int, default=1, help="CPU threads per Ray worker (1)")
    many.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="F",
                      help="share of a GPU per Ray worker (0: CPU)")  # fmt: skip
    many.add_argument("--block", type=int, default=8192,
                      help="a scene over this many px on a side is mapped in blocks")  # fmt: skip
    many.add_argument("--retries", type=int, default=2, help="tries after a failure (2)")
    parser.add_argument("--tile", type=int, default=512, help="window size in px (512)")
    parser.add_argument("--overlap", type=int, default=64, help="window overlap in px (64)")
    parser.add_argument("--blend", choices=["cosine", "linear", "none"], default="cosine")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per model call")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--tta", choices=["d4"], default=None, help="8 flips/rotations")
    parser.add_argument(
        "--mc-dropout", type=int, default=0, metavar="N", help="N passes with dropout on"
    )
    parser.add_argument(
        "--ensemble", nargs="+", default=[], metavar="BUNDLE", help="more bundles to average"
    )
    parser.add_argument(
        "--probabilities", action="store_true", help="add one probability band per class"
    )
    parser.add_argument(
        "--bands",
        nargs="+",
        default=None,
        metavar="B",
        help="scene bands (names or 1-based numbers) in the bundle's order",
    )
    parser.add_argument("--no-preview", action="store_true", help="skip the PNG preview")
    parser.add_argument("--seed", type=int, default=0, help="seed of the MC-dropout draws")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing output files that landlearn did not write (never an input)",
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    """``kill`` cleans up like Ctrl-C: temporary files removed, the target untouched."""
    raise KeyboardInterrupt


def _scene(scenes: list[str], inputs: list[str]) -> str | dict[str, str]:
    """The positional scene, or ``{name: path}`` of the ``--input NAME=PATH`` options.

    Raises:
        LandlearnError: neither or both given, several scenes, a malformed or repeated
            ``--input``.
    """
    from landlearn.errors import LandlearnError

    if len(scenes) > 1:
        raise LandlearnError(f"{len(scenes)} scenes: -o writes one map; use --out-dir DIR")
    scene = scenes[0] if scenes else None
    if scene is not None and inputs:
        raise LandlearnError("give the scene or --input NAME=PATH options, not both")
    if scene is not None:
        return scene
    if not inputs:
        raise LandlearnError("no scene: give SCENE, or --input NAME=PATH for each input")
    return named_inputs(inputs)


def named_inputs(inputs: list[str]) -> dict[str, str]:
    """``["s2=S2.tif", "s1=S1.tif"]`` → ``{"s2": "S2.tif", "s1": "S1.tif"}``.

    Raises:
        LandlearnError: a malformed or repeated ``--input``.
    """
    from landlearn.errors import LandlearnError

    named: dict[str, str] = {}
    for item in inputs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise LandlearnError(f"--input {item!r}: expected NAME=PATH, e.g. s2=S2.tif")
        if name in named:
            raise LandlearnError(f"--input {name} given twice")
        named[name] = path
    return named


def run(args: argparse.Namespace) -> int:
    """Map the scene; the dispatcher turns a LandlearnError into one line and exit 2.

    Raises:
        LandlearnError: unreadable scene or bundle, missing bands, bad options.
    """
    from landlearn.cli.common import progress_bar
    from landlearn.errors import LandlearnError
    from landlearn.mapping import MapOptions, map_scene

    if (args.out is None) == (args.out_dir is None):
        raise LandlearnError("give -o OUT.tif (one scene) or --out-dir DIR (many), one of them")
    bands = [int(b) if b.isdigit() else b for b in args.bands] if args.bands else None
    options = MapOptions(
        tile=args.tile, overlap=args.overlap, blend=args.blend, batch_size=args.batch_size,
        device=args.device, tta=args.tta, mc_dropout=args.mc_dropout,
        probabilities=args.probabilities, bands=bands, preview=not args.no_preview,
        seed=args.seed, overwrite=args.overwrite,
    )  # fmt: skip
    if args.out_dir is not None:
        return _run_many(args, options)
    scene = _scene(args.scenes, args.inputs)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with progress_bar("mapping") as bar:
            task = bar.add_task("mapping", total=None, rate="")
            start = time.perf_counter()

            def progress(done: int, total: int) -> None:
                rate = done / max(time.perf_counter() - start, 1e-9)
                bar.update(task, completed=done, total=total, rate=f"{rate:.1f} windows/s")

            result = map_scene(
                args.bundle, scene, args.out, options, ensemble=args.ensemble,
                progress=progress,
            )  # fmt: skip
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info(
        "map: %s (%d windows, %.1f windows/s); %s: %s",
        result.path,
        result.windows,
        result.windows_per_second,
        "statistics" if "targets" in result.summary else "areas",
        result.areas,
    )
    return 0


def _many_scenes(scenes: list[str], inputs: list[str]) -> list[SceneArg]:
    """Rasters and the scenes of ``.csv`` / ``.yaml`` lists, in order; or one ``--input`` scene.

    Raises:
        LandlearnError: no scene, or a bad scene list.
    """
    from landlearn.errors import LandlearnError
    from landlearn.scale import read_scene_list

    out: list[SceneArg] = [] if not inputs else [named_inputs(inputs)]
    for item in scenes:
        if item.lower().endswith((".csv", ".yaml", ".yml")):
            out.extend(read_scene_list(item))
        else:
            out.append(item)
    if not out:
        raise LandlearnError("no scenes: give rasters or a .csv / .yaml scene list")
    return out


def _run_many(args: argparse.Namespace, options: object) -> int:
    """``--out-dir``: map every scene; one line per failed scene and exit 2 if any failed."""
    import sys

    from landlearn.cli.common import progress_bar
    from landlearn.mapping import MapOptions
    from landlearn.scale import ManyProgress, map_many

    assert isinstance(options, MapOptions)
    scenes = _many_scenes(args.scenes, args.inputs)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with progress_bar("scenes") as bar:
            task = bar.add_task("scenes", total=len(scenes), rate="")

            def progress(p: ManyProgress) -> None:
                rate = p.windows / max(p.seconds, 1e-9)
                bar.update(task, completed=p.scenes_done, total=p.scenes_total,
                           rate=f"{rate:.1f} windows/s")  # fmt: skip

            result = map_many(
                args.bundle, scenes, args.out_dir, options, ensemble=args.ensemble,
                engine=args.engine, address=args.address, workers=args.workers,
                threads=args.threads, gpus_per_worker=args.gpus_per_worker, block=args.block,
                retries=args.retries, progress=progress,
            )  # fmt: skip
    finally:
        signal.signal(signal.SIGTERM, previous)
    for reason in result.failed.values():
        print(f"error: {reason}", file=sys.stderr)
    return 2 if result.failed else 0
