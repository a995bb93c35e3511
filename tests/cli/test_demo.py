"""`landlearn demo` end to end at a small size: bundle, map, metrics, report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import rasterio

from landlearn.bundle import load_bundle
from landlearn.data import synthetic
from tests.cli.conftest import run_cli


def test_demo_writes_everything_a_user_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "landlearn-demo"  # the default output folder, under the working directory
    code, stdout, err = run_cli(["demo", "--epochs", "1", "--size", "128", "--seed", "3"], capsys)
    assert code == 0, err
    assert "seed_everything: 3" in (out / "demo.yaml").read_text()
    predictor = load_bundle(out / "model.safetensors")
    assert predictor.meta.class_names == list(synthetic.CLASSES)
    assert predictor.meta.class_colors == synthetic.COLORS
    assert predictor.meta.band_names == ["blue", "green", "red", "nir"]
    with (
        rasterio.open(out / "new_area_landcover.tif") as src,
        rasterio.open(out / "data" / "new_area.tif") as scene,
    ):
        assert src.crs == scene.crs
        assert src.transform == scene.transform
        assert src.nodata == 255
        assert src.dtypes[0] == "uint8"
        assert src.colormap(1)[0][:3] == tuple(synthetic.COLORS[0])
        assert "water" in src.tags()["CLASS_NAMES"]
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert (out / "new_area_landcover.qml").is_file()  # QGIS opens it with classes and names
    assert (out / "new_area_landcover.tif.aux.xml").is_file()  # GDAL colour table of band 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["overall_accuracy"] <= 1.0
    assert metrics["demo"]["new_area_map_accuracy"] > 0.2  # one epoch: better than chance
    assert (out / "report" / "index.html").stat().st_size > 50_000
    assert "map accuracy" in stdout
    # the printed test metrics are the ones in metrics.json
    for label, key in (("test overall accuracy", "overall_accuracy"), ("test mIoU", "miou")):
        assert re.search(rf"{label}\W+{metrics[key]:.3f}", stdout), (label, stdout)
