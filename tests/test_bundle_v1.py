"""Format-1 bundles (written by the frozen format-1 writer) load, predict and map as before."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from landlearn.bundle import Predictor, load_bundle, read_meta, save_bundle
from landlearn.finite import screen, void_nonfinite
from landlearn.models import build_model
from tests.data import bundle_v1

MAPPING = Path(__file__).resolve().parent / "mapping"


@pytest.fixture(scope="module")
def v1_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundles ``tests/data/make_all.py`` generated, else the same written afresh."""
    made = {
        "cls": bundle_v1.OUT / "cls_v1.safetensors",
        "seg": bundle_v1.OUT / "seg_v1.safetensors",
    }
    if all(p.is_file() for p in made.values()):
        return made
    return bundle_v1.main(tmp_path_factory.mktemp("bundle_v1"))


def _header(path: Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {})["landlearn"])


def _direct_proba(path: Path, x: torch.Tensor) -> torch.Tensor:
    """Format 1's prediction, from the file's JSON and tensors without landlearn.bundle."""
    raw = _header(path)
    assert raw["format_version"] == 1
    kwargs = {"in_channels": len(raw["band_names"]), "num_classes": len(raw["class_names"]),
              **raw["model_kwargs"], "pretrained": False}  # fmt: skip
    model = build_model(raw["model_name"], **kwargs).eval()
    model.load_state_dict(load_file(str(path)))  # format 1: names without a prefix
    c = len(raw["band_names"])
    mean = torch.tensor(raw["mean"], dtype=torch.float32).view(1, c, 1, 1)
    std = torch.tensor(raw["std"], dtype=torch.float32).view(1, c, 1, 1).clamp_min(1e-12)
    spatial = raw["task"] == "segmentation"
    with torch.inference_mode():
        z, nodata, _ = screen(x, mean, std, per_sample=not spatial)
        probs = torch.softmax(model(z).float(), dim=1) / 1
        return void_nonfinite(probs, nodata, spatial)[0]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit, NaN (no-data) where the other has NaN (``torch.equal`` says NaN != NaN)."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(-1.0), b.nan_to_num(-1.0))


def _images(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 4, 32, 32, generator=g) * 200 + 20
    x[1, 2, 5, 7] = float("nan")  # a no-data pixel: screened as format 1 did
    return x


@pytest.mark.parametrize("kind", ["cls", "seg"])
def test_v1_predicts_bit_for_bit(v1_files: dict[str, Path], kind: str) -> None:
    path = v1_files[kind]
    pred = load_bundle(path)
    assert isinstance(pred, Predictor)
    x = _images()
    want = _direct_proba(path, x)
    got = pred.predict_proba(x)
    assert _same(got, want)
    assert torch.isnan(got[1]).any()
    assert not torch.isnan(got[0]).any()
    assert _same(pred.predict_proba({"image": x}), want)  # the dict form, one input
    meta = pred.meta
    assert meta.format_version == 1
    assert meta.model_name == _header(path)["model_name"]
    assert [s.name for s in meta.inputs] == ["image"]
    assert meta.band_names == _header(path)["band_names"]


def test_v1_upgrade_keeps_every_field(v1_files: dict[str, Path]) -> None:
    raw = _header(v1_files["cls"])
    meta = read_meta(v1_files["cls"])
    assert meta.task == raw["task"]
    assert meta.mode == raw["mode"]
    assert meta.class_names == raw["class_names"]
    assert meta.class_colors == raw["class_colors"]
    assert meta.mean == raw["mean"]
    assert meta.std == [50.0, 40.0, 30.0, 1e-12]
    assert meta.model_kwargs == raw["model_kwargs"]
    assert meta.chip_size == raw["chip_size"]
    assert meta.metrics == raw["metrics"]
    assert meta.versions == raw["versions"]
    assert meta.ignore_index == raw["ignore_index"]
    assert meta.in_channels == 4
    assert meta.heads[0].kind == "classification"
    assert meta.combine == "single"


@pytest.mark.parametrize("kind", ["cls", "seg"])
def test_v2_resave_is_format_2_and_predicts_the_same(
    v1_files: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    old = load_bundle(v1_files[kind])
    new_path = save_bundle(tmp_path / "v2.safetensors", old.model, old.meta)
    raw = _header(new_path)
    assert raw["format_version"] == 2
    assert [m["name"] for m in raw["models"]] == ["model"]
    assert all(k.startswith("model.") for k in load_file(str(new_path)))
    new = load_bundle(new_path)
    assert new.meta.to_json() == old.meta.to_json()
    x = _images(1)
    assert _same(new.predict_proba(x), old.predict_proba(x))


@pytest.mark.parametrize(("kind", "opts"), [("seg", {"tile": 32, "overlap": 8}), ("cls", {})])
def test_v1_maps_like_its_v2_resave(
    v1_files: dict[str, Path], kind: str, opts: dict[str, Any], tmp_path: Path
) -> None:
    if str(MAPPING) not in sys.path:
        sys.path.insert(0, str(MAPPING))
    from mapping_helpers import smooth_scene, write_tif

    from landlearn.mapping import map_scene

    scene = write_tif(tmp_path / "scene.tif", smooth_scene(70, 90))
    old = load_bundle(v1_files[kind])
    v2 = save_bundle(tmp_path / "v2.safetensors", old.model, old.meta)
    a = map_scene(v1_files[kind], scene, tmp_path / "a.tif", probabilities=True, **opts)
    b = map_scene(v2, scene, tmp_path / "b.tif", probabilities=True, **opts)
    with rasterio.open(a.path) as ra, rasterio.open(b.path) as rb:
        pixels = ra.read()
        assert np.array_equal(pixels, rb.read())
        assert ra.colormap(1) == rb.colormap(1)
        for key in ("CLASS_NAMES", "CLASS_COLORS", "LANDLEARN_TASK", "LANDLEARN_TILING"):
            assert ra.tags()[key] == rb.tags()[key]
    assert len(np.unique(pixels[0])) > 1 or kind == "cls"  # a map, not a constant


def test_checkpoint_with_format_1_metadata_loads(v1_files: dict[str, Path], tmp_path: Path) -> None:
    """A task checkpoint written before format 2 (format-1 JSON, ``model.`` state keys)."""
    raw = _header(v1_files["cls"])
    state = {f"model.{k}": v for k, v in load_file(str(v1_files["cls"])).items()}
    ckpt = tmp_path / "old.ckpt"
    torch.save({"state_dict": state, "landlearn_bundle_meta": json.dumps(raw)}, ckpt)
    pred = load_bundle(ckpt)
    assert pred.meta.format_version == 1
    assert pred.meta.class_names == raw["class_names"]
    x = _images(2)
    assert _same(pred.predict_proba(x), _direct_proba(v1_files["cls"], x))
