"""How talkative a run is: ``-q`` (warnings only) and ``--debug`` (tracebacks, full usage).

Set once by the CLI (``landlearn.cli.common.setup_logging``); read by the library code that
decides how much to print (progress bars, Lightning's tables, jsonargparse's usage).
"""

from __future__ import annotations

__all__ = ["is_debug", "is_quiet", "set_verbosity"]

_STATE = {"quiet": False, "debug": False}


def set_verbosity(quiet: bool = False, debug: bool = False) -> None:
    """Remember ``-q`` / ``--debug``."""
    _STATE["quiet"] = bool(quiet)
    _STATE["debug"] = bool(debug)


def is_quiet() -> bool:
    """Whether ``-q`` was given."""
    return _STATE["quiet"]


def is_debug() -> bool:
    """Whether ``--debug`` was given."""
    return _STATE["debug"]
