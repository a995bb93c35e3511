"""The model bundle: round trip, metadata, no code on load, pickles refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from landlearn.bundle import BundleMeta, Predictor, load_bundle, read_meta, save_bundle
from landlearn.errors import LandlearnError
from landlearn.models import build_model


def _meta(**kw: object) -> BundleMeta:
    base = dict(
        task="classification",
        model_name="small_cnn",
        model_kwargs={"dropout": 0.0},
        band_names=["red", "green", "blue"],
        mean=[10.0, 20.0, 30.0],
        std=[2.0, 4.0, 8.0],
        class_names=["water", "forest"],
        chip_size=32,
        metrics={"overall_accuracy": 0.5},
    )
    base.update(kw)
    return BundleMeta(**base)  # type: ignore[arg-type]


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=3, num_classes=2).eval()
    return save_bundle(tmp_path / "m.safetensors", model, _meta()), model


def test_round_trip_gives_same_probabilities(bundle: tuple[Path, torch.nn.Module]) -> None:
    path, model = bundle
    pred = load_bundle(path)
    assert isinstance(pred, Predictor)
    x = torch.rand(2, 3, 32, 32) * 50
    mean = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    std = torch.tensor([2.0, 4.0, 8.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = torch.softmax(model((x - mean) / std), dim=1)
    got = pred.predict_proba(x)
    assert torch.allclose(got, want, atol=1e-6)
    assert pred.predict(x).shape == (2,)


def test_metadata_is_complete(bundle: tuple[Path, torch.nn.Module]) -> None:
    meta = read_meta(bundle[0])
    assert meta.band_names == ["red", "green", "blue"]
    assert meta.class_names == ["water", "forest"]
    assert len(meta.class_colors) == 2  # filled with defaults when none given
    assert meta.ignore_index == 255
    assert meta.versions["torch"] == torch.__version__
    assert meta.metrics == {"overall_accuracy": 0.5}


def test_write_is_atomic_and_leaves_no_temp(bundle: tuple[Path, torch.nn.Module]) -> None:
    path = bundle[0]
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_wrong_band_count_is_clear(bundle: tuple[Path, torch.nn.Module]) -> None:
    pred = load_bundle(bundle[0])
    with pytest.raises(LandlearnError, match="expected 3 bands"):
        pred.predict_proba(torch.zeros(1, 4, 32, 32))


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "empty"), (b"this is not a bundle", "not a landlearn bundle")],
)
def test_corrupt_files_are_refused(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(LandlearnError, match=match):
        load_bundle(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LandlearnError, match="no such file"):
        load_bundle(tmp_path / "nope.safetensors")


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran",))


def test_pickled_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "callbacks": _Evil()}, p)
    with pytest.raises(LandlearnError, match="pickled objects"):
        load_bundle(p)
    assert "code ran" not in capsys.readouterr().out


def test_plain_pickle_named_ckpt_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "plain.ckpt"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(LandlearnError, match="checkpoint"):
        load_bundle(p)


def test_checkpoint_with_tensors_only_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=3, num_classes=2)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    p = tmp_path / "ok.ckpt"
    torch.save({"state_dict": state, "landlearn_bundle_meta": _meta().to_json()}, p)
    pred = load_bundle(p)
    assert pred.meta.class_names == ["water", "forest"]
    x = torch.rand(1, 3, 32, 32)
    assert pred.predict_proba(x).shape == (1, 2)


def test_newer_format_is_refused(tmp_path: Path) -> None:
    model = build_model("small_cnn", in_channels=3, num_classes=2)
    p = save_bundle(tmp_path / "new.safetensors", model, _meta(format_version=99))
    with pytest.raises(LandlearnError, match="newer"):
        load_bundle(p)


def test_d4_tta_is_the_mean_over_the_eight_transforms(
    bundle: tuple[Path, torch.nn.Module],
) -> None:
    from landlearn.d4 import D4, d4_forward

    pred = load_bundle(bundle[0])
    x = torch.rand(2, 3, 32, 32) * 50
    want = torch.stack([pred.predict_proba(d4_forward(x, k, f)) for k, f in D4]).mean(0)
    got = pred.predict_proba(x, tta="d4")
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, pred.predict_proba(x), atol=1e-4)  # it does average
    # and the averaged prediction no longer depends on how the chip is turned
    assert torch.allclose(pred.predict_proba(torch.rot90(x, 1, (-2, -1)), tta="d4"), got, atol=1e-5)


def test_d4_tta_turns_maps_back(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("unet", in_channels=3, num_classes=2, encoder="resnet18").eval()
    meta = _meta(task="segmentation", model_name="unet", model_kwargs={"encoder": "resnet18"})
    pred = load_bundle(save_bundle(tmp_path / "s.safetensors", model, meta))
    x = torch.rand(1, 3, 32, 32) * 50
    got = pred.predict_proba(x, tta="d4")
    assert got.shape == (1, 2, 32, 32)
    assert torch.allclose(got.sum(1), torch.ones(1, 32, 32), atol=1e-5)
    # equivariant: turn and mirror the input, and the averaged map turns and mirrors with it
    turned = pred.predict_proba(torch.rot90(x.flip(-1), 1, (-2, -1)), tta="d4")
    assert torch.allclose(turned, torch.rot90(got.flip(-1), 1, (-2, -1)), atol=1e-5)


def test_unknown_tta_is_refused(bundle: tuple[Path, torch.nn.Module]) -> None:
    with pytest.raises(LandlearnError, match="unknown TTA 'd8'"):
        load_bundle(bundle[0]).predict_proba(torch.rand(1, 3, 32, 32), tta="d8")
