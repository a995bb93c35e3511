"""Maps of a bundle that reads two named inputs (``--input s2=… --input s1=…``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from mapping_helpers import FusionConv, away_from_window_edges, smooth_scene, write_tif

from landlearn.bundle import Predictor, meta_from_specs
from landlearn.errors import LandlearnError
from landlearn.mapping import map_scene
from landlearn.mapping.scene import predict_scene_array
from landlearn.schema import HeadSpec, InputSpec

S2 = ("blue", "green", "red", "nir")
S1 = ("VV", "VH")


@pytest.fixture
def fusion() -> Predictor:
    """A seeded two-input 3×3-conv predictor: s2 (4 bands) then s1 (2 bands)."""
    torch.manual_seed(0)
    inputs = [
        InputSpec("s2", "raster", bands=S2, mean=[100.0] * 4, std=[50.0] * 4, chip_size=32),
        InputSpec("s1", "raster", bands=S1, mean=[-12.0, -18.0], std=[3.0, 4.0], chip_size=32),
    ]
    head = HeadSpec("segmentation", "segmentation", classes=["land", "water", "cloud"])
    meta = meta_from_specs(inputs, [head], model="test_fusion_conv3x3")
    return Predictor(FusionConv({"s2": 4, "s1": 2}, 3), meta)


@pytest.fixture
def rasters(tmp_path: Path) -> dict[str, Path]:
    s2 = smooth_scene(72, 96)
    s1 = (-15 + smooth_scene(72, 96, bands=2, seed=3).astype(np.float32) / 4000.0).astype(
        np.float32
    )
    return {
        "s2": write_tif(tmp_path / "s2.tif", s2, descriptions=S2),
        "s1": write_tif(tmp_path / "s1.tif", s1, descriptions=S1),
    }


def _in_memory(pred: Predictor, rasters: dict[str, Path]) -> np.ndarray:
    """The model on the whole scene at once: each input normalised with its own statistics."""
    x = {}
    at = 0
    for name, path in rasters.items():
        with rasterio.open(path) as src:
            img = torch.from_numpy(src.read().astype(np.float32))[None]
        c = img.shape[1]
        mean, std = pred._mean[:, at : at + c], pred._std[:, at : at + c]
        x[name] = (img - mean) / std
        at += c
    with torch.no_grad():
        return torch.softmax(pred.model(x), dim=1)[0].numpy()


def test_a_two_input_map_equals_in_memory_predictionaway_from_window_edges(
    fusion: Predictor, rasters: dict[str, Path], tmp_path: Path
) -> None:
    want = _in_memory(fusion, rasters)
    got = predict_scene_array(fusion, rasters, tile=32, overlap=8)
    assert got["valid"].all()
    away = away_from_window_edges(72, 96, tile=32, overlap=8)
    assert away.mean() > 0.8
    np.testing.assert_allclose(got["probabilities"][:, away], want[:, away], atol=1e-5)
    # the order of the dict does not matter: inputs are matched by name
    swapped = {"s1": rasters["s1"], "s2": rasters["s2"]}
    again = predict_scene_array(fusion, swapped, tile=32, overlap=8)
    np.testing.assert_array_equal(again["probabilities"], got["probabilities"])
    res = map_scene(fusion, rasters, tmp_path / "map.tif", tile=32, overlap=8, preview=False)
    assert json.loads(res.areas.read_text())["source"] == {k: str(v) for k, v in rasters.items()}
    with rasterio.open(res.path) as m:
        assert json.loads(m.tags()["LANDLEARN_SOURCE"]) == {"s2": "s2.tif", "s1": "s1.tif"}


def test_an_input_on_another_grid_is_resampled_onto_the_first(
    fusion: Predictor, rasters: dict[str, Path], tmp_path: Path
) -> None:
    """S1 at 20 m (half the pixels) maps on S2's 10 m grid; a footprint elsewhere is refused."""
    with rasterio.open(rasters["s1"]) as src:
        fine = src.read()
    coarse = fine[:, ::2, ::2].copy()
    s1_20m = write_tif(tmp_path / "s1_20m.tif", coarse, descriptions=S1, pixel=20.0)
    got = predict_scene_array(fusion, {"s2": rasters["s2"], "s1": s1_20m}, tile=32, overlap=8)
    assert got["probabilities"].shape == (3, 72, 96)
    assert got["valid"][:-2, :-2].all()  # the resampled footprint covers the grid
    same = predict_scene_array(fusion, rasters, tile=32, overlap=8)
    agree = (got["probabilities"].argmax(0) == same["probabilities"].argmax(0)).mean()
    assert agree > 0.8  # smooth fields: the 20 m copy maps almost the same
    far = tmp_path / "far.tif"
    with rasterio.open(s1_20m) as src:
        profile = src.profile
        profile["transform"] = rasterio.Affine(20.0, 0.0, 900_000.0, 0.0, -20.0, 100_000.0)
        with rasterio.open(far, "w", **profile) as dst:
            dst.write(src.read())
            dst.descriptions = S1
    with pytest.raises(LandlearnError, match="does not overlap the first input"):
        predict_scene_array(fusion, {"s2": rasters["s2"], "s1": far}, tile=32, overlap=8)


def test_missing_unknown_and_short_inputs_are_one_line_and_write_nothing(
    fusion: Predictor, rasters: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "m.tif"
    cases = [
        (rasters["s2"], "the bundle reads 2 inputs \\(s2, s1\\): give each as --input"),
        ({"s2": rasters["s2"]}, "no --input s1=PATH: the bundle reads s2, s1"),
        ({**rasters, "dem": rasters["s1"]}, "the bundle has no input 'dem'; it reads s2, s1"),
        ({"s2": rasters["s1"], "s1": rasters["s1"]}, "scene lacks band\\(s\\) blue, green, red"),
    ]
    for scene, message in cases:
        with pytest.raises(LandlearnError, match=message):
            map_scene(fusion, scene, out, tile=32, overlap=8)  # type: ignore[arg-type]
        assert list(tmp_path.glob("m*")) == []


def test_an_output_on_any_named_input_is_refused_and_the_input_kept(
    fusion: Predictor, rasters: dict[str, Path]
) -> None:
    """The second input is as much the user's as the first: never overwritten by the map."""
    before = {name: path.read_bytes() for name, path in rasters.items()}
    for name in ("s2", "s1"):
        with pytest.raises(LandlearnError, match="is an input of this command; refusing"):
            map_scene(fusion, rasters, rasters[name], tile=32, overlap=8, overwrite=True)
    assert {name: path.read_bytes() for name, path in rasters.items()} == before
