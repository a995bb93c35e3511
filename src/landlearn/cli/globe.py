"""``landlearn globe download``: GLOBE observations and photos from the public GLOBE API.

Examples:
  landlearn globe download --protocol sky_conditions --start 2026-01-01 --end 2026-03-31 \
      --bbox=-79,-4,-67,12 -o globe_sky/
  landlearn globe download --protocol land_covers --start 2024-06-01 --end 2024-06-30 -o lc/ \
      --no-photos

Writes DIR/<protocol>.csv (the API's results, one row per observation, the protocol's fields as
columns: what landlearn.data.globe.read_land_covers / read_sky_conditions read) and
DIR/photos/<observation id>_<North|East|South|West|Up|Down>.jpg. A re-run skips photos already
there; requests go one at a time, --delay seconds apart. Offline: one line, exit 2.
"""

from __future__ import annotations

import argparse
import logging

from landlearn.errors import LandlearnError

log = logging.getLogger(__name__)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``landlearn globe``."""
    from landlearn.data.globe_api import PROTOCOLS

    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("download", help="fetch observations (and photos) from the GLOBE API")
    p.add_argument("--protocol", required=True, choices=list(PROTOCOLS))
    p.add_argument("--start", required=True, help="first measured date, YYYY-MM-DD")
    p.add_argument("--end", required=True, help="last measured date, YYYY-MM-DD")
    p.add_argument(
        "--bbox",
        default=None,
        help="min_lon,min_lat,max_lon,max_lat in degrees; write --bbox=-79,-4,-67,12",
    )
    p.add_argument("--no-photos", action="store_true", help="the table only")
    p.add_argument("--delay", type=float, default=1.0, help="seconds between photo requests")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")


def run(args: argparse.Namespace) -> int:
    """Download; print what was written."""
    from landlearn.cli.common import progress_bar
    from landlearn.data.globe_api import download

    bbox = None
    if args.bbox:
        try:
            bbox = [float(v) for v in args.bbox.split(",")]
        except ValueError:
            raise LandlearnError(f"--bbox must be four numbers, got {args.bbox!r}") from None
    if args.delay < 0:
        raise LandlearnError(f"--delay must be >= 0, got {args.delay}")
    with progress_bar("photos") as bar:
        task = bar.add_task("photos", total=None, rate="")

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = download(
            args.protocol, args.start, args.end, args.out, bbox=bbox,
            photos=not args.no_photos, delay=args.delay, progress=advance,
        )  # fmt: skip
    print(
        f"{summary['observations']} observations → {summary['table']}; photos: "
        f"{summary['photos_fetched']} fetched, {summary['photos_already_there']} already there"
    )
    return 0
