"""The package version, in a bottom-layer module so that nothing imports the package root back."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
