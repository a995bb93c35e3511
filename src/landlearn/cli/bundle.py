"""Work on model bundles.

  merge   write several bundles into one ensemble bundle (combine: mean); `landlearn map` and
          `landlearn evaluate` use it like --ensemble with the same members

Examples:
  landlearn bundle merge a.safetensors b.safetensors c.safetensors -o ens.safetensors
  landlearn bundle merge a.safetensors b.safetensors -o ens.safetensors --overwrite
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)

__all__ = ["add_arguments", "check_merge_output", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands of ``landlearn bundle``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    merge = sub.add_parser(
        "merge",
        help="write bundles into one ensemble bundle",
        description="Write BUNDLE files into one bundle whose models' probabilities are "
        "averaged (each member keeps its own training statistics).",
        epilog="example:\n  landlearn bundle merge a.safetensors b.safetensors -o ens.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    merge.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundles to merge (2 or more)")
    merge.add_argument("-o", "--out", required=True, help="the ensemble bundle to write")
    merge.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing landlearn bundle at --out (never an input, never another file)",
    )


def check_merge_output(out: Path, bundles: list[str], overwrite: bool) -> None:
    """Check the output path of ``bundle merge``.

    Refuse an output that is an input, not a regular file, not writable, or a file that is
    not a landlearn bundle; an existing bundle only with ``overwrite``.

    Raises:
        LandlearnError: naming ``out`` and why.
    """
    from landlearn.bundle import read_meta
    from landlearn.safety import Output, check_outputs

    if out.suffix != ".safetensors":
        raise LandlearnError("a bundle is a .safetensors file; give an output ending in it", out)
    check_outputs([Output(out, "bundle")], bundles, overwrite=overwrite)
    if out.exists():
        try:
            read_meta(out)
        except LandlearnError:
            raise LandlearnError(
                "exists and is not a landlearn bundle; refusing to overwrite it", out
            ) from None


def run(args: argparse.Namespace) -> int:
    """Run ``landlearn bundle ACTION``.

    Raises:
        LandlearnError: fewer than two bundles, a bad member (naming its file), members that
            do not match, or an unsafe output.
    """
    from landlearn.ensemble import load_ensemble
    from landlearn.inputs import check_input_file

    if len(args.bundles) < 2:
        raise LandlearnError("bundle merge needs at least two bundles")
    for bundle in args.bundles:
        check_input_file(bundle, "bundle (.safetensors or .ckpt)")
    out = Path(args.out)
    check_merge_output(out, args.bundles, args.overwrite)
    ensemble = load_ensemble(args.bundles)  # each member checked, then check_members
    ensemble.save(out)
    log.info("wrote %s: the mean of %d models", out, len(ensemble))
    return 0
