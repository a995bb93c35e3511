"""Streaming, blended, georeferenced land-cover maps (issue #8)."""

from __future__ import annotations

from landlearn.mapping.blend import Block
from landlearn.mapping.options import MapOptions
from landlearn.mapping.outputs import stale_sidecars
from landlearn.mapping.scene import map_scene, predict_scene_array

__all__ = ["Block", "MapOptions", "map_scene", "predict_scene_array", "stale_sidecars"]
