"""Map many scenes, or scenes too big for one worker, on an engine (issue #20).

``map_many`` runs one unit of work per scene (or per block of a big scene) on the ``local``
engine (this process) or on Ray actors, then writes a VRT mosaic and a catalogue.
"""

from __future__ import annotations

from landlearn.scale.jobs import read_scene_list
from landlearn.scale.many import ManyProgress, ManyResult, map_many

__all__ = ["ManyProgress", "ManyResult", "map_many", "read_scene_list"]
