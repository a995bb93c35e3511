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
    assert ens.class_names == CLASSES and ens.band_names == BANDS and ens.task == "classification"


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
