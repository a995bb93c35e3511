"""Small bundles and data in real formats for the CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from rasterio.transform import from_origin

from landlearn.bundle import BundleMeta, save_bundle
from landlearn.models import build_model


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``landlearn`` in-process; returns (exit code, stdout, stderr)."""
    from landlearn.cli.main import main

    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cls_bundle(tmp_path: Path) -> Path:
    """A 3-band, 2-class small_cnn classification bundle."""
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=3, num_classes=2)
    meta = BundleMeta(
        task="classification", model_name="small_cnn", model_kwargs={},
        band_names=["red", "green", "blue"], mean=[100.0] * 3, std=[50.0] * 3,
        class_names=["water", "forest"], class_colors=[[0, 0, 255], [0, 128, 0]], chip_size=32,
    )  # fmt: skip
    return save_bundle(tmp_path / "cls.safetensors", model, meta)


@pytest.fixture
def seg_bundle(tmp_path: Path) -> Path:
    """A 3-band, 2-class U-Net bundle (chips of 32)."""
    torch.manual_seed(0)
    model = build_model("unet", in_channels=3, num_classes=2, encoder="resnet18")
    meta = BundleMeta(
        task="segmentation", model_name="unet", model_kwargs={"encoder": "resnet18"},
        band_names=["red", "green", "blue"], mean=[100.0] * 3, std=[50.0] * 3,
        class_names=["water", "forest"], class_colors=[[0, 0, 255], [0, 128, 0]], chip_size=32,
    )  # fmt: skip
    return save_bundle(tmp_path / "seg.safetensors", model, meta)


def write_png(path: Path, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def write_mask_pair(root: Path, mask: np.ndarray, size: int = 32) -> Path:
    """``root/images/a.png`` (random RGB, ``size``²) and ``root/masks/a.png`` (``mask``)."""
    write_png(root / "images" / "a.png", size=size)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(root / "masks" / "a.png")
    return root


def write_tif(
    path: Path,
    bands: int = 3,
    size: int = 32,
    crs: str | None = "EPSG:32633",
    dtype: str = "uint8",
    value: np.ndarray | None = None,
) -> Path:
    rng = np.random.default_rng(1)
    data = value if value is not None else rng.integers(0, 2, (bands, size, size)).astype(dtype)
    profile = {
        "driver": "GTiff", "width": data.shape[-1], "height": data.shape[-2],
        "count": data.shape[0], "dtype": data.dtype.name,
        "transform": from_origin(500000, 5100000, 10, 10),
    }  # fmt: skip
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path
