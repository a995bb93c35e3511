"""Project-wide constants. Defined once, imported everywhere."""

from __future__ import annotations

IGNORE_INDEX = 255
"""Unlabelled pixel in masks on disk, in losses, in metrics and no-data of class maps."""

BUNDLE_FORMAT_VERSION = 2
"""Version of the model bundle's JSON metadata (see ``landlearn.bundle``)."""

MIN_STD = 1e-6
"""Floor of every standard deviation used to normalise, so a constant band does not divide by
zero: training statistics, the datamodules' and the predictor's normalisation all use it."""

__all__ = ["BUNDLE_FORMAT_VERSION", "IGNORE_INDEX", "MIN_STD"]
