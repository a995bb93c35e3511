"""Shared fixtures: the real data folder beside the checkout, seeded RNGs, fast torch."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests using it are ``@pytest.mark.real`` and skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


_LOGGERS = ("", "landlearn", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")


@pytest.fixture(autouse=True)
def _logging_state() -> Iterator[None]:
    """A CLI test's ``setup_logging(quiet=True)`` must not silence the next test's log."""
    saved = {name: logging.getLogger(name).level for name in _LOGGERS}
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)
    root.handlers[:] = handlers


@pytest.fixture(autouse=True)
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(1)


def fixture_maker(name: str) -> ModuleType:
    """The module ``tests/data/<name>/make.py`` (its ``make(out_dir)`` writes the fixture)."""
    path = ROOT / "tests" / "data" / name / "make.py"
    spec = importlib.util.spec_from_file_location(f"_make_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Image-folder fixtures (RGB JPEG classes, 5-band GeoTIFF classes, TorchGeo EuroSAT)."""
    return fixture_maker("image_folder").make(tmp_path_factory.mktemp("image_folder"))


@pytest.fixture(scope="session")
def masks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Image + mask folder fixtures."""
    return fixture_maker("mask_folder").make(tmp_path_factory.mktemp("mask_folder"))


@pytest.fixture(scope="session")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GeoTIFF image + label raster fixtures."""
    return fixture_maker("raster_pair").make(tmp_path_factory.mktemp("raster_pair"))
