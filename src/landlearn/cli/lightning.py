"""``landlearn fit|validate|test|predict --config X.yaml`` (see :mod:`landlearn.lightning_cli`)."""

from __future__ import annotations

from landlearn.lightning_cli import make_cli

__all__ = ["run_lightning"]


def run_lightning(argv: list[str]) -> int:
    """Run a LightningCLI subcommand in-process; returns the exit code."""
    make_cli(argv, run=True)
    return 0
