"""``landlearn map BUNDLE SCENE -o OUT.tif``: a land-cover COG of any GeoTIFF scene."""

from __future__ import annotations

import argparse
import logging
import signal
import time
from types import FrameType

__all__ = ["EXAMPLE", "HELP", "add_arguments", "named_inputs", "run"]

log = logging.getLogger(__name__)

HELP = "map a GeoTIFF scene into a land-cover COG with confidence and uncertainty"
EXAMPLE = """examples:
  landlearn map model.safetensors scene.tif -o map.tif
  landlearn map model.safetensors scene.tif -o map.tif --mc-dropout 8 --probabilities
  landlearn map a.safetensors scene.tif -o map.tif --ensemble b.safetensors c.safetensors
  landlearn map model.safetensors naip.tif -o map.tif --bands 1 2 3 4 --device cuda
  landlearn map s1s2.safetensors --input s2=S2.tif --input s1=S1.tif -o water.tif

Writes OUT.tif (COG: band 1 class with colour table in OUT.tif.aux.xml, band 2 confidence,
then probabilities / entropy / mutual information / ensemble variance as asked; uint8, values
× the band's scale), OUT.qml (QGIS style: classes by name and colour), OUT.areas.json
(pixels and km² per class) and OUT.preview.png, committed together at the end. An existing
landlearn map there is replaced; any other file (a bundle, a label raster, an input) is refused
unless --overwrite is given (inputs always are).

A pixel-regression bundle writes float32 bands instead (one per target, described "name (unit)",
NaN no-data; a std band per target with --tta, --mc-dropout or --ensemble); OUT.areas.json then
holds each target's pixels, mean, std, min, max and 2nd-98th percentiles, and OUT.qml draws
band 1 as a viridis ramp over them."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landlearn map``."""
    parser.description = HELP
    parser.epilog = EXAMPLE
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("bundle", metavar="BUNDLE", help="model bundle (.safetensors)")
    parser.add_argument(
        "scene", metavar="SCENE", nargs="?", default=None,
        help="input raster (any GDAL format); or give each input with --input",
    )  # fmt: skip
    parser.add_argument(
        "--input", action="append", default=[], metavar="NAME=PATH", dest="inputs",
        help="a named input of a multi-input bundle, e.g. --input s2=S2.tif --input s1=S1.tif "
        "(on another grid than the first: resampled onto it)",
    )  # fmt: skip
    parser.add_argument("-o", "--out", required=True, metavar="OUT.tif", help="output COG")
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


def _scene(scene: str | None, inputs: list[str]) -> str | dict[str, str]:
    """The positional scene, or ``{name: path}`` of the ``--input NAME=PATH`` options.

    Raises:
        LandlearnError: neither or both given, a malformed or repeated ``--input``.
    """
    from landlearn.errors import LandlearnError

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
    from landlearn.mapping import MapOptions, map_scene

    bands = [int(b) if b.isdigit() else b for b in args.bands] if args.bands else None
    scene = _scene(args.scene, args.inputs)
    options = MapOptions(
        tile=args.tile, overlap=args.overlap, blend=args.blend, batch_size=args.batch_size,
        device=args.device, tta=args.tta, mc_dropout=args.mc_dropout,
        probabilities=args.probabilities, bands=bands, preview=not args.no_preview,
        seed=args.seed, overwrite=args.overwrite,
    )  # fmt: skip
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
