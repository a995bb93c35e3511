"""``weights: PATH``: a model starts from every matching tensor of a bundle or encoder bundle."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from landlearn.errors import LandlearnError
from landlearn.models import build_model
from landlearn.models.weights import load_matching_weights
from landlearn.tasks import SegmentationTask


def _unet(
    in_channels: int | dict[str, int], name: str = "unet", classes: int = 2
) -> torch.nn.Module:
    torch.manual_seed(len(str(in_channels)))
    return build_model(name, in_channels=in_channels, num_classes=2, encoder="resnet18")


@pytest.mark.parametrize("prefix", ["", "model."], ids=["v1 names", "v2 names"])
def test_a_unet_bundle_starts_an_early_fusion_unet(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every tensor but the first convolution (13 bands there, 15 here) is loaded."""
    source = _unet(13)
    path = tmp_path / "unet.safetensors"
    save_file({prefix + k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = _unet({"s2": 13, "s1": 2}, "early_fusion_unet")
    with caplog.at_level(logging.INFO, logger="landlearn.models.weights"):
        report = load_matching_weights(target, path)
    assert list(report.left) == ["net.encoder.conv1.weight"]
    assert (
        "(64, 15, 7, 7) here, (64, 13, 7, 7) in the file" in report.left["net.encoder.conv1.weight"]
    )
    got = target.state_dict()
    for key, value in source.state_dict().items():
        if key != "encoder.conv1.weight":
            assert torch.equal(got["net." + key], value), key
    assert f"loaded {len(got) - 1} of {len(got)} tensors" in caplog.text


def test_an_encoder_bundle_starts_the_encoder_and_leaves_the_decoder(tmp_path: Path) -> None:
    source = _unet(4)
    encoder = {k: v for k, v in source.state_dict().items() if k.startswith("encoder.")}
    path = tmp_path / "encoder.safetensors"
    save_file(encoder, str(path))
    report = load_matching_weights(_unet(4), path)
    assert set(report.loaded) == set(encoder)
    assert report.unused == []
    assert all(not k.startswith("encoder.") for k in report.left)
    assert all(why == "not in the file" for why in report.left.values())


def test_bad_weights_files_are_one_line(tmp_path: Path) -> None:
    model = _unet(3)
    with pytest.raises(LandlearnError, match="weights file not found"):
        load_matching_weights(model, tmp_path / "missing.safetensors")
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"x")
    with pytest.raises(LandlearnError, match="checkpoints and pickles are not loaded"):
        load_matching_weights(model, ckpt)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(LandlearnError, match="not a readable safetensors file"):
        load_matching_weights(model, junk)
    other = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(3, 3)}, str(other))
    with pytest.raises(LandlearnError, match="no tensor of the file fits this model"):
        load_matching_weights(model, other)


def test_the_task_loads_weights_from_a_path_and_true_false_stay_pretrained(tmp_path: Path) -> None:
    source = _unet(3)
    path = tmp_path / "unet.safetensors"
    save_file({"model." + k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    task = SegmentationTask(model="unet", model_kwargs={"encoder": "resnet18"}, num_classes=2,
                            in_channels=3, weights=str(path))  # fmt: skip
    assert task.model is not None
    for key, value in source.state_dict().items():
        assert torch.equal(task.model.state_dict()[key], value), key
    fresh = SegmentationTask(model="unet", model_kwargs={"encoder": "resnet18"}, num_classes=2,
                             in_channels=3, weights=False)  # fmt: skip
    assert fresh.model is not None
    assert not torch.equal(fresh.model.state_dict()["encoder.conv1.weight"],
                           source.state_dict()["encoder.conv1.weight"])  # fmt: skip
