"""Fixtures of the many-scene tests: the mapping tests' tiny models, bundles and scenes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import rasterio

MAPPING = str(Path(__file__).resolve().parents[1] / "mapping")
if MAPPING not in sys.path:
    sys.path.insert(0, MAPPING)

from mapping_helpers import make_bundle, smooth_scene, write_tif  # noqa: E402


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A 4-band, 3-class 3×3-conv bundle."""
    return make_bundle(tmp_path / "conv3x3.safetensors", "test_conv3x3")


@pytest.fixture
def scenes(tmp_path: Path) -> list[Path]:
    """Four 4-band scenes of different sizes, side by side in EPSG:32633."""
    out = []
    for i in range(4):
        path = tmp_path / "in" / f"tile_{i}.tif"
        path.parent.mkdir(exist_ok=True)
        write_tif(path, smooth_scene(150 + 20 * i, 170, seed=i))
        with rasterio.open(path, "r+") as dst:  # tiles side by side, 2 km apart
            t = dst.transform
            dst.transform = rasterio.Affine(t.a, 0, t.c + 2000.0 * i, 0, t.e, t.f)
        out.append(path)
    return out
