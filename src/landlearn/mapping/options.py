"""How to map: one dataclass for every entry point (``map_scene``, ``landlearn map``, blocks).

Example:
    >>> from landlearn.mapping import MapOptions, map_scene
    >>> opts = MapOptions(tile=256, overlap=32, mc_dropout=8, probabilities=True)
    >>> map_scene("model.safetensors", "scene.tif", "map.tif", opts)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from landlearn.errors import LandlearnError
from landlearn.registry import did_you_mean

__all__ = ["MapOptions", "map_options"]


@dataclass(frozen=True)
class MapOptions:
    """Options of a map run (the defaults are ``landlearn map``'s).

    Attributes:
        tile: window size in px (classification bundles use their chip size).
        overlap: px shared by neighbouring windows, blended with ``blend``.
        blend: ``cosine``, ``linear`` or ``none``.
        batch_size: windows per model call.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        tta: ``"d4"`` averages the 8 flips / rotations.
        mc_dropout: number of passes with dropout on (0 = off).
        probabilities: add one probability band per class.
        bands: scene bands (names or 1-based indexes) in the bundle's order; default: by name.
        preview: write ``<stem>.preview.png``.
        seed: seed of the MC-dropout draws.
        overwrite: let the outputs replace files landlearn did not write (never an input).
    """

    tile: int = 512
    overlap: int = 64
    blend: str = "cosine"
    batch_size: int = 4
    device: str = "cpu"
    tta: str | None = None
    mc_dropout: int = 0
    probabilities: bool = False
    bands: Sequence[str | int] | None = None
    preview: bool = True
    seed: int | None = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(self.bands))

    def replace(self, **changes: Any) -> MapOptions:
        """A copy with ``changes`` (unknown names refused, as by :func:`map_options`)."""
        return map_options(self, **changes)

    @property
    def uncertainty(self) -> dict[str, Any]:
        """The options that add uncertainty bands."""
        return {"tta": self.tta, "mc_dropout": self.mc_dropout}


_FIELDS = tuple(f.name for f in dataclasses.fields(MapOptions))


def map_options(options: MapOptions | None = None, **changes: Any) -> MapOptions:
    """``options`` (default :class:`MapOptions`) with keyword ``changes``.

    Raises:
        LandlearnError: a keyword that is not a map option (with the nearest name).
    """
    unknown = [k for k in changes if k not in _FIELDS]
    if unknown:
        tip = did_you_mean(unknown[0], _FIELDS, otherwise=f"options are {', '.join(_FIELDS)}")
        raise LandlearnError(f"unknown map option {unknown[0]!r}; {tip}")
    return dataclasses.replace(options or MapOptions(), **changes)
