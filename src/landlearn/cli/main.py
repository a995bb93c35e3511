"""``landlearn``: the command-line entry point.

Lightning subcommands (``fit``, ``validate``, ``test``, ``predict``) go to LightningCLI; the rest
are plain subcommands, one module each. A ``LandlearnError`` becomes one line on stderr and exit
code 2 (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from landlearn.cli.common import eprint, setup_logging
from landlearn.errors import LandlearnError
from landlearn.registry import unknown_name
from landlearn.version import __version__

log = logging.getLogger(__name__)

__all__ = ["main"]

LIGHTNING = ("fit", "validate", "test", "predict")
# name → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("landlearn.cli.demo", "train and map a synthetic scene end to end (no downloads)"),
    "evaluate": ("landlearn.cli.evaluate", "score a bundle on a labelled folder or raster pair"),
    "map": ("landlearn.cli.map", "map a GeoTIFF scene into a land-cover COG with uncertainty"),
    "report": ("landlearn.cli.report", "figures and an HTML page for a run folder"),
    "lr-find": ("landlearn.cli.lr_find", "suggest a learning rate for a config"),
    "bundle": ("landlearn.cli.bundle", "merge bundles into one ensemble bundle (bundle merge)"),
    "pseudo-label": ("landlearn.cli.pseudo_label", "a teacher bundle's confident pixels as masks"),
    "globe": ("landlearn.cli.globe", "fetch GLOBE observations and photos (globe download)"),
    "experiment": (
        "landlearn.cli.experiment",
        "compare methods over seeds (semisup, fusion, sensors, globe)",
    ),
}

_USAGE = (
    f"""landlearn {__version__}: land-use / land-cover models from imagery to maps

usage: landlearn [-q] [--debug] COMMAND ...

training (LightningCLI; `landlearn fit --help` for all options):
  fit --config X.yaml        train; ends by testing and exporting model.safetensors
  validate|test|predict --config X.yaml [--ckpt_path C]

commands:
"""
    + "".join(f"  {n:<25}{h}\n" for n, (_, h) in COMMANDS.items())
    + """
options:
  -q, --quiet                warnings only, no progress bars
  --debug                    show tracebacks
  --version                  print the version

examples:
  landlearn demo --out landlearn-demo
  landlearn fit --config configs/eurosat_resnet18.yaml --seed 0
  landlearn map model.safetensors scene.tif -o map.tif --mc-dropout 8
"""
)


def _split_globals(argv: list[str]) -> tuple[list[str], bool, bool]:
    quiet = debug = False
    rest: list[str] = []
    for a in argv:
        if a in ("-q", "--quiet"):
            quiet = True
        elif a == "--debug":
            debug = True
        else:
            rest.append(a)
    return rest, quiet, debug


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``landlearn``; returns the process exit code."""
    args, quiet, debug = _split_globals(list(sys.argv[1:] if argv is None else argv))
    setup_logging(quiet=quiet, debug=debug)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_USAGE)
        return 0
    if args[0] == "--version":
        sys.stdout.write(f"landlearn {__version__}\n")
        return 0
    try:
        if args[0] in LIGHTNING:
            from landlearn.cli.lightning import run_lightning

            return run_lightning(args)
        return _run_command(args)
    except KeyboardInterrupt:
        eprint("interrupted")
        return 130
    except Exception as exc:
        user_error = _user_error(exc)
        if user_error is None or debug:
            raise
        eprint(f"error: {user_error.one_line()}")
        return 2


def _user_error(exc: BaseException) -> LandlearnError | None:
    """The ``LandlearnError`` behind ``exc`` (jsonargparse and Lightning wrap it), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, LandlearnError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _run_command(args: list[str]) -> int:
    name = args[0]
    if name not in COMMANDS:
        raise unknown_name("command", name, [*COMMANDS, *LIGHTNING], "see `landlearn --help`")
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(
        prog=f"landlearn {name}",
        description=(module.__doc__ or COMMANDS[name][1]).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    ns = parser.parse_args(args[1:])
    return int(module.run(ns) or 0)


if __name__ == "__main__":
    sys.exit(main())
