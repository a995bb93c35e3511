"""Ensembles of bundles: the mean of the members' probabilities, and members that cannot mix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import landlearn
from landlearn.bundle import BundleMeta, load_bundle, save_bundle
from landlearn.ensemble import Ensemble, load_ensemble
from landlearn.errors import LandlearnError
from landlearn.models import build_model

CLASSES = ["water", "forest", "urban"]
BANDS = ["red", "green", "blue"]


def _bundle(
    path: Path,
    seed: int,
    *,
    classes: list[str] = CLASSES,
    bands: list[str] = BANDS,
    mean: float = 100.0,
    task: str = "classification",
) -> Path:
    torch.manual_seed(seed)
    if task == "classification":
        model = build_model("small_cnn", in_channels=len(bands), num_classes=len(classes))
        name, kwargs = "small_cnn", {}
    else:
        model = build_model("unet", in_channels=len(bands), num_classes=len(classes),
                            encoder="resnet18")  # fmt: skip
        name, kwargs = "unet", {"encoder": "resnet18"}
    meta = BundleMeta(
        task=task, model_name=name, model_kwargs=kwargs, band_names=bands,
        mean=[mean] * len(bands), std=[50.0] * len(bands), class_names=classes, chip_size=32,
    )  # fmt: skip
    return save_bundle(path, model, meta)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255


def test_mean_of_the_members(tmp_path: Path, images: torch.Tensor) -> None:
    # The second member has other normalisation statistics: each member applies its own.
    a, b = _bundle(tmp_path / "a.safetensors", 0), _bundle(tmp_path / "b.safetensors", 1, mean=80)
    pa, pb = load_bundle(a).predict_proba(images), load_bundle(b).predict_proba(images)
    assert not torch.allclose(pa, pb)  # two different models, or the test proves nothing
    ens = load_ensemble([a, b])
    assert len(ens) == 2
    probs = ens.predict_proba(images)
    torch.testing.assert_close(probs, (pa + pb) / 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    assert torch.equal(ens.predict(images), ((pa + pb) / 2).argmax(1))
    assert ens.class_names == CLASSES
    assert ens.band_names == BANDS
    assert ens.task == "classification"


def test_one_member_is_the_bundle_itself(tmp_path: Path, images: torch.Tensor) -> None:
    a = _bundle(tmp_path / "a.safetensors", 0)
    torch.testing.assert_close(
        load_ensemble([a]).predict_proba(images), load_bundle(a).predict_proba(images)
    )


def test_tta_averages_each_member(tmp_path: Path, images: torch.Tensor) -> None:
    a, b = _bundle(tmp_path / "a.safetensors", 0), _bundle(tmp_path / "b.safetensors", 1)
    want = (
        load_bundle(a).predict_proba(images, tta="d4")
        + load_bundle(b).predict_proba(images, tta="d4")
    ) / 2
    torch.testing.assert_close(load_ensemble([a, b]).predict_proba(images, tta="d4"), want)


def test_segmentation_members_average_per_pixel(tmp_path: Path, images: torch.Tensor) -> None:
    a = _bundle(tmp_path / "a.safetensors", 0, task="segmentation")
    b = _bundle(tmp_path / "b.safetensors", 1, task="segmentation")
    probs = load_ensemble([a, b]).predict_proba(images)
    assert probs.shape == (5, 3, 32, 32)
    want = (load_bundle(a).predict_proba(images) + load_bundle(b).predict_proba(images)) / 2
    torch.testing.assert_close(probs, want)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": ["water", "urban", "forest"]}, "same classes, in order"),
        ({"bands": ["nir", "red", "green"]}, "same bands"),
        ({"task": "segmentation"}, "mixes classification and segmentation"),
    ],
)
def test_members_that_cannot_mix_are_refused_naming_the_file(
    tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    a = _bundle(tmp_path / "a.safetensors", 0)
    b = _bundle(tmp_path / "b.safetensors", 1, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(LandlearnError, match=match) as info:
        load_ensemble([a, b])
    assert info.value.path == str(b)


def test_band_names_match_case_insensitively(tmp_path: Path) -> None:
    a = _bundle(tmp_path / "a.safetensors", 0)
    b = _bundle(tmp_path / "b.safetensors", 1, bands=["Red", "GREEN", "blue"])
    assert len(load_ensemble([a, b])) == 2


def test_missing_member_and_empty_ensemble(tmp_path: Path) -> None:
    a = _bundle(tmp_path / "a.safetensors", 0)
    with pytest.raises(LandlearnError, match="no such file") as info:
        load_ensemble([a, tmp_path / "gone.safetensors"])
    assert info.value.path == str(tmp_path / "gone.safetensors")
    with pytest.raises(LandlearnError, match="at least one"):
        Ensemble([])


def test_public_names() -> None:
    assert landlearn.Ensemble is Ensemble
    assert landlearn.load_ensemble is load_ensemble


# ---- one-file ensembles (bundle format 2, combine: mean) --------------------------------


def _header(path: Path) -> dict[str, object]:
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {})["landlearn"])


def test_saved_ensemble_loads_as_the_same_ensemble(tmp_path: Path, images: torch.Tensor) -> None:
    a, b = _bundle(tmp_path / "a.safetensors", 0), _bundle(tmp_path / "b.safetensors", 1, mean=80)
    c = _bundle(tmp_path / "c.safetensors", 2)
    ens = load_ensemble([a, b, c])
    path = ens.save(tmp_path / "ens.safetensors")
    raw = _header(path)
    assert raw["combine"] == "mean"
    assert raw["format_version"] == 2
    models = raw["models"]
    assert isinstance(models, list)
    assert [m["name"] for m in models] == ["member0", "member1", "member2"]
    assert "inputs" in models[1]
    assert "inputs" not in models[0]
    assert models[1]["inputs"][0]["mean"] == [80.0] * 3
    loaded = load_bundle(path)
    assert isinstance(loaded, Ensemble)
    assert len(loaded) == 3
    assert loaded.class_names == CLASSES
    assert loaded.band_names == BANDS
    assert torch.equal(loaded.predict_proba(images), ens.predict_proba(images))
    assert torch.equal(loaded.predict(images, tta="d4"), ens.predict(images, tta="d4"))
    by_head = loaded.predict({"image": images})
    assert list(by_head) == ["classification"]
    assert torch.equal(by_head["classification"], ens.predict(images))
    # a one-file ensemble among the paths of an ensemble adds its members
    assert len(load_ensemble([path, a])) == 4


def test_saved_ensemble_maps_and_evaluates_like_its_members(tmp_path: Path) -> None:
    import sys

    import numpy as np
    import rasterio

    sys.path.insert(0, str(Path(__file__).resolve().parent / "mapping"))
    from mapping_helpers import smooth_scene, write_tif

    from landlearn.evaluation import evaluate
    from landlearn.mapping import map_scene

    bands = ["blue", "green", "red"]
    a = _bundle(tmp_path / "a.safetensors", 0, task="segmentation", bands=bands)
    b = _bundle(tmp_path / "b.safetensors", 1, task="segmentation", bands=bands, mean=80)
    ens = load_ensemble([a, b]).save(tmp_path / "ens.safetensors")
    scene = write_tif(tmp_path / "scene.tif", smooth_scene(60, 70, bands=3),
                      descriptions=bands)  # fmt: skip
    one = map_scene(ens, scene, tmp_path / "one.tif", tile=32, overlap=8, probabilities=True)
    two = map_scene(a, scene, tmp_path / "two.tif", ensemble=[b], tile=32, overlap=8,
                    probabilities=True)  # fmt: skip
    assert "ensemble_variance" in one.bands
    assert one.bands == two.bands
    with rasterio.open(one.path) as r1, rasterio.open(two.path) as r2:
        assert np.array_equal(r1.read(), r2.read())
    loaded = load_bundle(ens)
    three = map_scene(loaded, scene, tmp_path / "three.tif", tile=32, overlap=8)
    with rasterio.open(one.path) as r1, rasterio.open(three.path) as r3:
        assert np.array_equal(r1.read(1), r3.read(1))
    labels = write_tif(tmp_path / "labels.tif", (smooth_scene(60, 70, bands=1) % 3).astype(
        np.uint8), descriptions=["class"])  # fmt: skip
    m1 = evaluate(ens, scene, labels)
    m2 = evaluate(a, scene, labels, ensemble=[b])
    assert m1["overall_accuracy"] == m2["overall_accuracy"]
    assert m1["confusion_matrix"] == m2["confusion_matrix"]
