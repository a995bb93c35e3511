"""Non-finite and absurd pixels: no-data in ``evaluate`` and the Python API, never fed to a model.

Issue 21, "silently wrong results": NaN / inf pixels made ``evaluate`` predict class 0 for every
scored pixel, one inf pixel in a 256² input turned all outputs to NaN, 3e38 made every pixel
class 0 with confidence 0.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from landlearn.bundle import load_bundle
from landlearn.conventions import IGNORE_INDEX
from landlearn.ensemble import load_ensemble
from landlearn.finite import ABSURD_STD, FiniteCounts
from tests.cli.conftest import run_cli, write_tif

MEAN = 100.0  # the fixtures' bundle statistics
STD = 50.0


def _image(seed: int = 0, size: int = 64) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(MEAN, STD, (1, 3, size, size)).astype(np.float32))


def test_one_inf_pixel_is_one_nan_output(seg_bundle: Path) -> None:
    pred = load_bundle(seg_bundle)
    clean = _image()
    dirty = clean.clone()
    dirty[0, 1, 10, 20] = float("inf")
    dirty[0, 0, 40, 3] = float("nan")
    filled = clean.clone()
    filled[0, :, 10, 20] = MEAN  # what the model sees instead: the training mean
    filled[0, :, 40, 3] = MEAN
    counts = FiniteCounts()
    probs = pred.predict_proba(dirty, counts=counts)
    void = torch.isnan(probs).any(dim=1)[0]
    assert void.sum() == 2
    assert void[10, 20]
    assert void[40, 3]
    expect = pred.predict_proba(filled)
    assert torch.allclose(probs[:, :, ~void], expect[:, :, ~void])
    assert (counts.pixels, counts.nonfinite, counts.absurd) == (64 * 64, 2, 0)
    classes = pred.predict(dirty)
    assert classes[0, 10, 20] == IGNORE_INDEX
    assert classes[0, 40, 3] == IGNORE_INDEX
    assert (classes[0][~void] < 2).all()


def test_absurd_values_are_clamped_counted_and_warned(
    seg_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pred = load_bundle(seg_bundle)
    dirty = _image()
    dirty[0, 2, 5:7, 5:8] = 3e38  # 6 pixels
    clamped = dirty.clone()
    clamped[0, 2, 5:7, 5:8] = MEAN + ABSURD_STD * STD
    with caplog.at_level(logging.WARNING, logger="landlearn"):
        probs = pred.predict_proba(dirty)
    assert torch.isfinite(probs).all()
    assert torch.allclose(probs, pred.predict_proba(clamped))
    assert "6 of 4,096 pixels lie beyond ±50 std" in caplog.text


def test_scene_classifier_voids_the_image_not_the_batch(cls_bundle: Path) -> None:
    pred = load_bundle(cls_bundle)
    batch = torch.cat([_image(0, 32), _image(1, 32), _image(2, 32)])
    batch[1, 0, 3, 3] = float("nan")
    counts = FiniteCounts()
    probs = pred.predict_proba(batch, counts=counts)
    assert torch.isnan(probs[1]).all()
    assert torch.isfinite(probs[[0, 2]]).all()
    assert torch.allclose(probs[[0, 2]], pred.predict_proba(batch[[0, 2]]))
    assert (counts.unit, counts.pixels, counts.nonfinite) == ("images", 3, 1)
    assert pred.predict(batch).tolist()[1] == IGNORE_INDEX


def test_ensemble_follows_the_rule(seg_bundle: Path, cls_bundle: Path, tmp_path: Path) -> None:
    ens = load_ensemble([seg_bundle, seg_bundle])
    dirty = _image()
    dirty[0, :, 0, 0] = float("-inf")
    counts = FiniteCounts()
    probs = ens.predict_proba(dirty, counts=counts)
    assert torch.isnan(probs[0, :, 0, 0]).all()
    assert torch.isfinite(probs[0, :, 1:, :]).all()
    assert counts.nonfinite == 1  # counted once, not once per member
    assert ens.predict(dirty)[0, 0, 0] == IGNORE_INDEX


def _scene_and_labels(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    image = rng.normal(MEAN, STD, (3, 64, 64)).astype(np.float32)
    labels = rng.integers(0, 2, (1, 64, 64)).astype(np.uint8)
    return image, labels


def test_evaluate_leaves_nonfinite_pixels_out(
    seg_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image, labels = _scene_and_labels(tmp_path)
    dirty = image.copy()
    dirty[:, 8:16, 8:24] = np.nan  # 128 pixels
    dirty[1, 30, 30] = np.inf
    # the same scene as the model sees it, with the reference unlabelled there: same numbers
    filled, masked = image.copy(), labels.copy()
    bad = ~np.isfinite(dirty).all(axis=0)
    filled[:, bad] = MEAN
    masked[0, bad] = IGNORE_INDEX
    runs, errs = {}, {}
    for name, img, lab in (("dirty", dirty, labels), ("filled", filled, masked)):
        img_path = write_tif(tmp_path / f"{name}.tif", value=img)
        lab_path = write_tif(tmp_path / f"{name}_lab.tif", value=lab)
        out = tmp_path / f"{name}.json"
        code, _, err = run_cli(
            ["evaluate", str(seg_bundle), str(img_path), str(lab_path), "--out", str(out)],
            capsys,
        )
        assert code == 0, err
        runs[name] = json.loads(out.read_text())
        errs[name] = " ".join(err.split())
    assert runs["dirty"]["screened"]["nonfinite"] == 129
    assert "screened" not in runs["filled"]
    for key in ("overall_accuracy", "miou", "confusion"):
        if key in runs["filled"]:
            assert runs["dirty"][key] == runs["filled"][key], key
    assert "129 of 4,096 pixels hold NaN or inf" in errs["dirty"]
    assert "NaN" not in errs["filled"]
