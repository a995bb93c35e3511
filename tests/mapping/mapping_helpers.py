"""Tiny test-only models (registered on import), bundles and GeoTIFF writers for mapping tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from torch import nn

from landlearn.bundle import BundleMeta, save_bundle
from landlearn.mapping.blend import TileGrid
from landlearn.models.registry import MODELS, register_model


class Conv(nn.Module):
    """A k×k convolution (zero padding) with optional dropout before it."""

    def __init__(self, in_channels: int, num_classes: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout2d(dropout)
        self.conv = nn.Conv2d(in_channels, num_classes, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.drop(x))


class Constant(nn.Module):
    """Logits that ignore the image: a learnt bias only."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return self.bias.view(1, -1, 1, 1).expand(b, -1, h, w)


class PatchClassifier(nn.Module):
    """Mean over the patch, then a linear layer: a classification model."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def _builder(make: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def build(
        *, in_channels: int, num_classes: int, pretrained: bool = False, dropout: float = 0.0
    ) -> nn.Module:
        return make(in_channels, num_classes, dropout)

    return build


_TEST_MODELS: dict[str, tuple[str, Callable[..., nn.Module]]] = {
    "test_conv1x1": ("segmentation", lambda i, k, d: Conv(i, k, 1, d)),
    "test_conv3x3": ("segmentation", lambda i, k, d: Conv(i, k, 3, d)),
    "test_constant": ("segmentation", lambda i, k, d: Constant(k)),
    "test_patch": ("classification", lambda i, k, d: PatchClassifier(i, k)),
}
for _name, (_task, _make) in _TEST_MODELS.items():
    if _name not in MODELS:
        register_model(_name, task=_task)(_builder(_make))


def register_test_models() -> None:
    """Nothing: importing this module registers the test models (a Ray worker setup hook)."""


def make_bundle(
    path: Path,
    model_name: str = "test_conv1x1",
    band_names: Sequence[str] = ("blue", "green", "red", "nir"),
    num_classes: int = 3,
    *,
    seed: int = 0,
    dropout: float = 0.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    chip_size: int = 32,
    init: Callable[[nn.Module], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Build a tiny registered model with seeded weights and save it as a bundle."""
    task = _TEST_MODELS[model_name][0] if model_name in _TEST_MODELS else "segmentation"
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"dropout": dropout} if dropout else {}
    model = MODELS.get(model_name)(
        in_channels=len(band_names), num_classes=num_classes, dropout=dropout
    )
    if init is not None:
        init(model)
    meta = BundleMeta(
        task=task,
        model_name=model_name,
        model_kwargs=kwargs,
        band_names=list(band_names),
        mean=list(mean) if mean is not None else [100.0] * len(band_names),
        std=list(std) if std is not None else [50.0] * len(band_names),
        class_names=[f"class_{i}" for i in range(num_classes)],
        chip_size=chip_size,
        extra=extra,
    )
    return save_bundle(path, model, meta)


def write_tif(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    nodata: float | None = None,
    descriptions: Sequence[str] | None = ("blue", "green", "red", "nir"),
    pixel: float = 10.0,
    block: int | None = 256,
) -> Path:
    """Write (C, H, W) as a GeoTIFF with a transform (and CRS unless None)."""
    c, h, w = data.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": c,
        "dtype": data.dtype.name,
        "transform": Affine(pixel, 0.0, 500000.0, 0.0, -pixel, 5100000.0),
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    if block and h >= block and w >= block:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions is not None:
            for i, d in enumerate(descriptions[:c], start=1):
                dst.set_band_description(i, d)
    return path


def smooth_scene(h: int, w: int, bands: int = 4, seed: int = 0) -> np.ndarray:
    """A smooth, seeded uint16 image with structure at several scales."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((bands, h, w), np.float32)
    for b in range(bands):
        fy, fx, ph = [*rng.uniform(0.01, 0.08, 2).tolist(), rng.uniform(0, 6)]
        out[b] = (
            100 + 60 * np.sin(fy * yy + ph) * np.cos(fx * xx) + 20 * rng.standard_normal((h, w))
        )
    return np.clip(out, 0, None).astype(np.uint16)


class FusionConv(nn.Module):
    """A two-input test model: the named inputs stacked along channels, then a 3×3 conv."""

    def __init__(self, in_channels: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.input_names = list(in_channels)
        self.conv = nn.Conv2d(sum(in_channels.values()), num_classes, 3, padding=1)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.conv(torch.cat([x[n] for n in self.input_names], dim=1))


if "test_fusion_conv3x3" not in MODELS:

    @register_model("test_fusion_conv3x3", task="segmentation", multi_input=True)
    def _fusion(
        *, in_channels: dict[str, int], num_classes: int, pretrained: bool = False,
        dropout: float = 0.0,
    ) -> nn.Module:  # fmt: skip
        return FusionConv(dict(in_channels), num_classes)


def away_from_window_edges(h: int, w: int, tile: int, overlap: int) -> np.ndarray:
    """Pixels away from window edges and the scene border.

    Pixels that are not the first / last row or column of any window nor on the scene's
    border (there a 3×3 conv sees the window's zero padding, or reflection).
    """
    g = TileGrid.build(h, w, tile, overlap)
    ok = np.ones((h, w), bool)
    ok[[0, -1], :] = ok[:, [0, -1]] = False
    for r in range(g.rows):
        for y in (g.y0(r), g.y0(r) + g.tile_h - 1):
            if 0 <= y < h:
                ok[y] = False
    for c in range(g.cols):
        for x in (g.x0(c), g.x0(c) + g.tile_w - 1):
            if 0 <= x < w:
                ok[:, x] = False
    return ok
