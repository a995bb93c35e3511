"""Fixtures of the mapping tests; the helpers live in ``mapping_helpers``."""

from __future__ import annotations

from pathlib import Path

import pytest
from mapping_helpers import make_bundle, smooth_scene, write_tif


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A 4-band, 3-class 1×1-conv bundle."""
    return make_bundle(tmp_path / "conv1x1.safetensors")


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    """A 300×420 4-band uint16 scene in EPSG:32633 with band names."""
    return write_tif(tmp_path / "scene.tif", smooth_scene(300, 420))
