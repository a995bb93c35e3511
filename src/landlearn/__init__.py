"""landlearn: land-use / land-cover deep learning, from imagery to georeferenced maps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "IGNORE_INDEX",
    "Ensemble",
    "LandlearnError",
    "Predictor",
    "TrainResult",
    "__version__",
    "evaluate",
    "load_bundle",
    "load_ensemble",
    "map_many",
    "map_scene",
    "train",
]

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.version import __version__

if TYPE_CHECKING:
    from landlearn.bundle import Predictor, load_bundle
    from landlearn.ensemble import Ensemble, load_ensemble
    from landlearn.evaluation import evaluate
    from landlearn.mapping import map_scene
    from landlearn.scale import map_many
    from landlearn.training import TrainResult, train


def __getattr__(name: str) -> Any:
    # Heavy modules (torch, rasterio) load on first use so `landlearn --help` stays fast.
    if name in ("load_bundle", "Predictor"):
        from landlearn import bundle

        return getattr(bundle, name)
    if name in ("Ensemble", "load_ensemble"):
        from landlearn import ensemble

        return getattr(ensemble, name)
    if name == "evaluate":
        from landlearn.evaluation import evaluate

        return evaluate
    if name in ("train", "TrainResult"):
        from landlearn import training

        return getattr(training, name)
    if name == "map_scene":
        from landlearn.mapping import map_scene

        return map_scene
    if name == "map_many":
        from landlearn.scale import map_many

        return map_many
    raise AttributeError(f"module 'landlearn' has no attribute {name!r}")
