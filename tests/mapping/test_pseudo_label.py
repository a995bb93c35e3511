"""Issue #18: pseudo-labels from a teacher bundle (thresholds, files, safety, CLI, real data)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from mapping_helpers import make_bundle, smooth_scene, write_tif
from PIL import Image

from landlearn.cli.main import main
from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.mapping import predict_scene_array
from landlearn.pseudo import BINS, apply_thresholds, class_thresholds, pseudo_label


def _hist(samples: dict[int, np.ndarray], k: int) -> np.ndarray:
    hist = np.zeros((k, BINS), np.int64)
    for c, conf in samples.items():
        hist[c] = np.bincount(np.clip((conf * BINS).astype(int), 0, BINS - 1), minlength=BINS)
    return hist


def test_a_fixed_threshold_loses_an_unsure_class_and_class_balanced_keeps_every_class() -> None:
    rng = np.random.default_rng(0)
    sure, unsure = rng.uniform(0.9, 1.0, 1000), rng.uniform(0.4, 0.6, 1000)
    hist = _hist({0: sure, 1: unsure}, 3)  # class 2 is never predicted
    fixed = class_thresholds(hist, threshold=0.8)
    assert list(fixed) == [0.8, 0.8, 0.8]
    assert (unsure >= fixed[1]).sum() == 0  # the unsure class is gone
    balanced = class_thresholds(hist, class_balanced=0.3)
    for c, conf in ((0, sure), (1, unsure)):
        kept = (conf >= balanced[c]).mean()
        assert 0.3 <= kept <= 0.3 + 2 / BINS * 10  # the most confident 30 % of each class
    assert balanced[2] == 1.0
    capped = class_thresholds(hist, threshold=0.95, class_balanced=0.3)  # never above 0.95
    assert capped[0] == 0.95
    assert capped[1] == pytest.approx(balanced[1])
    with pytest.raises(LandlearnError, match="in \\(0, 1\\]"):
        class_thresholds(hist, threshold=1.5)


def test_below_the_threshold_and_at_no_data_is_ignore_index() -> None:
    probs = np.array([[[0.95, 0.6], [0.2, np.nan]], [[0.05, 0.4], [0.8, np.nan]]], np.float32)
    valid = np.array([[True, True], [True, False]])
    mask, conf = apply_thresholds(probs, valid, np.array([0.9, 0.7]))
    assert mask.tolist() == [[0, IGNORE_INDEX], [1, IGNORE_INDEX]]
    assert np.isnan(conf[1, 1])
    assert conf[0, 1] == pytest.approx(0.6)


def test_pseudo_labels_keep_the_grid_match_the_teacher_and_are_safe(tmp_path: Path) -> None:
    teacher = make_bundle(tmp_path / "teacher.safetensors")
    data = tmp_path / "unlabelled"
    data.mkdir()
    scene = write_tif(data / "a.tif", smooth_scene(96, 128))
    res = pseudo_label(teacher, data, tmp_path / "pl", threshold=0.5, tile=64, overlap=16)
    probs = predict_scene_array(teacher, scene, tile=64, overlap=16)["probabilities"]
    expected = np.where(probs.max(0) >= 0.5, probs.argmax(0), IGNORE_INDEX)
    with rasterio.open(res.masks[0]) as m, rasterio.open(scene) as src:
        assert m.crs == src.crs and m.transform == src.transform  # noqa: PT018
        got = m.read(1)
    assert (got == expected).all()
    assert (got == IGNORE_INDEX).any() and (got != IGNORE_INDEX).any()  # noqa: PT018
    with rasterio.open(res.confidence[0]) as c:
        assert np.allclose(c.read(1), probs.max(0), atol=1e-3)
    summary = json.loads((tmp_path / "pl" / "pseudo_labels.json").read_text())
    kept = sum(c["kept_pixels"] for c in summary["classes"])
    assert kept == int((got != IGNORE_INDEX).sum())
    assert summary["kept_share"] == pytest.approx(kept / got.size)
    assert not list((tmp_path / "pl").glob(".landlearn-pseudo.*"))  # the work folder is gone
    pseudo_label(teacher, data, tmp_path / "pl", threshold=0.6, tile=64, overlap=16)  # ours: ok
    foreign = tmp_path / "other"
    (foreign / "masks").mkdir(parents=True)
    (foreign / "masks" / "a.tif").write_bytes(b"a user's label raster")
    with pytest.raises(LandlearnError, match="refusing to overwrite"):
        pseudo_label(teacher, data, foreign, threshold=0.5)
    assert (foreign / "masks" / "a.tif").read_bytes() == b"a user's label raster"


def test_the_cli_writes_png_masks_for_plain_images_and_reports_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = make_bundle(tmp_path / "t.safetensors", band_names=("red", "green", "blue"))
    data = tmp_path / "photos"
    data.mkdir()
    rgb = np.clip(smooth_scene(64, 80, bands=3), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(rgb).save(data / "p1.png")
    true = tmp_path / "true"
    true.mkdir()
    probs = predict_scene_array(teacher, data / "p1.png", tile=64, overlap=16)["probabilities"]
    Image.fromarray(probs.argmax(0).astype(np.uint8)).save(true / "p1.png")  # the teacher's own
    out = tmp_path / "pl"
    argv = ["pseudo-label", str(teacher), str(data), "-o", str(out), "--class-balanced", "0.5",
            "--masks", str(true), "--tile", "64", "--overlap", "16"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "accuracy 100.0 %" in printed
    with Image.open(out / "masks" / "p1.png") as m:
        assert m.info["Software"] == "landlearn"
        mask = np.asarray(m)
    assert mask.shape == (64, 80)
    kept = mask != IGNORE_INDEX
    for c in np.unique(probs.argmax(0)):  # every predicted class keeps at least about half
        assert kept[probs.argmax(0) == c].mean() >= 0.45  # (more where confidences tie in a bin)
    assert 0.45 <= kept.mean() <= 0.75


def test_true_masks_beside_their_images_pair_with_the_masks(tmp_path: Path) -> None:
    """DeepGlobe keeps ``<id>_sat.jpg`` beside ``<id>_mask.png``: the mask is the truth."""
    teacher = make_bundle(tmp_path / "t.safetensors", band_names=("red", "green", "blue"))
    both = tmp_path / "both"
    both.mkdir()
    rgb = np.clip(smooth_scene(64, 80, bands=3), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    Image.fromarray(rgb).save(both / "7_sat.png")
    probs = predict_scene_array(teacher, both / "7_sat.png", tile=64, overlap=16)["probabilities"]
    Image.fromarray(probs.argmax(0).astype(np.uint8)).save(both / "7_mask.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = pseudo_label(
            teacher, [both / "7_sat.png"], tmp_path / "pl", class_balanced=1.0, true_masks=both,
            tile=64, overlap=16,
        )  # fmt: skip
    assert res.summary["accuracy"] > 0.99  # the image itself read as truth: near 0
    # a plain image gives a PNG mask: no "no CRS" line per image (a folder of 100 gave 100)
    assert not [w for w in caught if "no CRS" in str(w.message)]


def test_a_bad_true_mask_is_one_line_before_any_mask_is_written(tmp_path: Path) -> None:
    """The true masks are read with the datasets' rules, and refused before any output."""
    teacher = make_bundle(tmp_path / "t.safetensors", band_names=("red", "green", "blue"))
    both = tmp_path / "both"
    both.mkdir()
    rgb = np.clip(smooth_scene(64, 80, bands=3), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    for stem in ("1", "2"):
        Image.fromarray(rgb).save(both / f"{stem}_sat.png")
    Image.fromarray(np.zeros((64, 80), np.uint8)).save(both / "1_mask.png")
    Image.fromarray(np.full((64, 80), 5, np.uint8)).save(both / "2_mask.png")  # 3 classes
    csv = tmp_path / "classes.csv"
    csv.write_text("name,hex\na,#000000\nb,#FF0000\nc,#00FF00\n", encoding="utf-8")
    images = [both / "1_sat.png", both / "2_sat.png"]
    with pytest.raises(LandlearnError, match="mask code 5 but the colour table has 3") as err:
        pseudo_label(teacher, images, tmp_path / "pl", class_balanced=1.0, true_masks=both,
                     classes_csv=csv, tile=64, overlap=16)  # fmt: skip
    assert "2_mask.png" in str(err.value)
    assert not list((tmp_path / "pl").rglob("*.png"))  # image 1's mask was not written either
    assert not list((tmp_path / "pl").rglob("*.tif"))


def test_a_classification_teacher_or_missing_data_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cls = make_bundle(tmp_path / "cls.safetensors", "test_patch", num_classes=2)
    (tmp_path / "d").mkdir()
    write_tif(tmp_path / "d" / "a.tif", smooth_scene(64, 64))
    assert main(["pseudo-label", str(cls), str(tmp_path / "d"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "segmentation bundle" in err
    assert "Traceback" not in err
    seg = make_bundle(tmp_path / "seg.safetensors")
    assert main(["pseudo-label", str(seg), str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_real_dubai_images_with_their_rgb_masks(shared_data: Path, tmp_path: Path) -> None:
    dubai = shared_data / "dubai"
    teacher = make_bundle(tmp_path / "t.safetensors", band_names=("red", "green", "blue"),
                          num_classes=6, mean=[120.0] * 3, std=[60.0] * 3)  # fmt: skip
    image = dubai / "tile1" / "images" / "image_part_001.jpg"
    res = pseudo_label(teacher, [image], tmp_path / "pl", class_balanced=0.5,
                       true_masks=dubai / "tile1" / "masks",
                       classes_csv=dubai / "classes.csv")  # fmt: skip
    with Image.open(res.masks[0]) as m, Image.open(image) as src:
        assert m.size == src.size
    s = res.summary
    assert s["accuracy"] is not None
    assert 0.0 <= s["accuracy"] <= 1.0
    assert s["images"][0]["accuracy"] == pytest.approx(s["accuracy"])
