"""Streaming, blended, georeferenced land-cover maps (issue #8)."""

from __future__ import annotations

from landlearn.mapping.outputs import stale_sidecars
from landlearn.mapping.scene import map_scene

__all__ = ["map_scene", "stale_sidecars"]
