"""``landlearn evaluate``: every layout, ``--out`` writes metrics, ``--tta``, ``--ensemble``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from landlearn.bundle import BundleMeta, load_bundle, save_bundle
from landlearn.models import build_model
from tests.cli.conftest import run_cli, write_mask_pair, write_png, write_tif


def _class_folder(root: Path, n: int = 3) -> Path:
    for c, name in enumerate(("water", "forest")):
        for i in range(n):
            write_png(root / name / f"{i}.png", seed=10 * c + i)
    return root


def _manual_accuracy(bundle: Path, root: Path, tta: str | None) -> float:
    pred = load_bundle(bundle)
    hits, total = 0, 0
    for c, name in enumerate(pred.class_names):
        for f in sorted((root / name).glob("*.png")):
            x = torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1).float()
            hits += int(pred.predict(x, tta=tta).item() == c)
            total += 1
    return hits / total


@pytest.mark.parametrize("tta", [None, "d4"])
def test_class_folder_scores_and_writes_json(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tta: str | None
) -> None:
    root = _class_folder(tmp_path / "data")
    out = tmp_path / "m.json"
    extra = ["--tta", tta] if tta else []
    code, stdout, err = run_cli(["evaluate", str(cls_bundle), str(root), "--out", str(out),
                                 *extra], capsys)  # fmt: skip
    assert code == 0, err
    metrics = json.loads(out.read_text())
    assert metrics["overall_accuracy"] == pytest.approx(_manual_accuracy(cls_bundle, root, tta))
    assert metrics.get("tta") == tta
    assert "overall accuracy" in stdout.lower()
    assert ("Test-time augmentation: d4" in stdout) == (tta == "d4")


def test_raster_pair_scores(
    seg_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = write_tif(tmp_path / "img.tif", bands=3, size=64)
    lab = write_tif(tmp_path / "lab.tif", bands=1, size=64)
    code, _, err = run_cli(["evaluate", str(seg_bundle), str(img), str(lab), "--tta", "d4",
                            "--out", str(tmp_path / "m.json")], capsys)  # fmt: skip
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0.0 <= metrics["overall_accuracy"] <= 1.0
    assert metrics["tta"] == "d4"


def test_mask_folder_scores(
    seg_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[:] = (0, 0, 255)
    mask[:, 16:] = (0, 128, 0)
    write_mask_pair(tmp_path / "d", mask)
    code, stdout, err = run_cli(["evaluate", str(seg_bundle), str(tmp_path / "d")], capsys)
    assert code == 0, err
    assert "water" in stdout
    assert "forest" in stdout


def test_unknown_tta_is_an_argument_error(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _class_folder(tmp_path / "data", n=1)
    with pytest.raises(SystemExit) as exc:
        run_cli(["evaluate", str(cls_bundle), str(root), "--tta", "d8"], capsys)
    assert exc.value.code == 2


def test_index_masks_with_remap(
    seg_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Single-band class-code masks: codes 10 / 20 → classes 0 / 1, code 0 → ignore."""
    codes = np.full((32, 32), 10, np.uint8)
    codes[:, 16:] = 20
    codes[:4] = 0
    write_mask_pair(tmp_path / "d", codes)
    out = tmp_path / "m.json"
    code, _, err = run_cli(["evaluate", str(seg_bundle), str(tmp_path / "d"), "--remap",
                            "10:0,20:1,0:255", "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    metrics = json.loads(out.read_text())
    cm = np.array(metrics["confusion_matrix"])
    assert cm.sum() == 28 * 32  # the four ignored rows are not scored
    assert cm.sum(axis=1).tolist() == [28 * 16, 28 * 16]  # true class counts after the remap
    # the accuracy is the Predictor's own on the 28 labelled rows
    pred = load_bundle(seg_bundle)
    img = np.array(Image.open(tmp_path / "d" / "images" / "a.png")).transpose(2, 0, 1)
    want = pred.predict(torch.from_numpy(img.copy()).float())[0, 4:]
    got_acc = (want.numpy() == (np.arange(32) >= 16)[None, :]).mean()
    assert metrics["overall_accuracy"] == pytest.approx(got_acc)


def test_top_level_load_bundle(cls_bundle: Path) -> None:
    import landlearn

    pred = landlearn.load_bundle(cls_bundle)
    assert pred.class_names == ["water", "forest"]
    assert pred.predict_proba(torch.rand(1, 3, 32, 32) * 255).shape == (1, 2)


def _second_bundle(tmp_path: Path, classes: tuple[str, ...] = ("water", "forest")) -> Path:
    """Another 3-band small_cnn with other weights and statistics than ``cls_bundle``."""
    torch.manual_seed(1)
    model = build_model("small_cnn", in_channels=3, num_classes=len(classes))
    meta = BundleMeta(
        task="classification", model_name="small_cnn", model_kwargs={},
        band_names=["red", "green", "blue"], mean=[90.0] * 3, std=[60.0] * 3,
        class_names=list(classes), chip_size=32,
    )  # fmt: skip
    return save_bundle(tmp_path / "second.safetensors", model, meta)


def test_ensemble_scores_the_mean_probabilities(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _class_folder(tmp_path / "data", n=4)
    second = _second_bundle(tmp_path)
    out = tmp_path / "m.json"
    args = ["evaluate", str(cls_bundle), str(root), "--ensemble", str(second), "--tta", "d4"]
    code, stdout, err = run_cli([*args, "--out", str(out)], capsys)
    assert code == 0, err
    metrics = json.loads(out.read_text())
    assert metrics["ensemble"] == [str(cls_bundle), str(second)]
    assert metrics["tta"] == "d4"
    assert "Ensemble: mean probabilities of 2 bundles" in stdout
    members = [load_bundle(cls_bundle), load_bundle(second)]
    hits, total = 0, 0
    for c, name in enumerate(members[0].class_names):
        for f in sorted((root / name).glob("*.png")):
            x = torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1).float()
            p = sum(m.predict_proba(x, tta="d4") for m in members) / 2
            hits += int(p.argmax(1).item() == c)
            total += 1
    assert metrics["overall_accuracy"] == pytest.approx(hits / total)


def test_ensemble_member_with_other_classes_is_one_line(
    cls_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _class_folder(tmp_path / "data", n=1)
    other = _second_bundle(tmp_path, classes=("forest", "water"))
    out = tmp_path / "m.json"
    capsys.readouterr()  # the log lines of writing the bundles
    code, _, err = run_cli(["evaluate", str(cls_bundle), str(root), "--ensemble", str(other),
                            "--out", str(out)], capsys)  # fmt: skip
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {other}: ensemble members must have the same classes, in order: "
        "forest, water vs water, forest"
    ]
    assert not out.exists()


@pytest.mark.real
def test_ensemble_on_real_eurosat_jpegs(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two 10-class bundles with other statistics, scored together on real EuroSAT test JPEGs."""
    import shutil

    test = shared_data / "eurosat_rgb" / "test"
    classes = sorted(p.name for p in test.iterdir() if p.is_dir())
    root = tmp_path / "eurosat"
    for c in classes:  # 3 real images per class, in the same class-folder layout
        (root / c).mkdir(parents=True)
        for f in sorted((test / c).glob("*.jpg"))[:3]:
            shutil.copy(f, root / c / f.name)
    paths = []
    for seed, mean in ((0, 90.0), (1, 110.0)):
        torch.manual_seed(seed)
        model = build_model("small_cnn", in_channels=3, num_classes=len(classes))
        meta = BundleMeta(
            task="classification", model_name="small_cnn", model_kwargs={},
            band_names=["red", "green", "blue"], mean=[mean] * 3, std=[40.0] * 3,
            class_names=classes, chip_size=64,
        )  # fmt: skip
        paths.append(save_bundle(tmp_path / f"m{seed}.safetensors", model, meta))
    out = tmp_path / "m.json"
    args = ["evaluate", str(paths[0]), str(root), "--ensemble", str(paths[1]), "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    metrics = json.loads(out.read_text())
    members = [load_bundle(p) for p in paths]
    hits = 0
    for c, name in enumerate(classes):
        for f in sorted((root / name).glob("*.jpg")):
            x = torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1).float()
            hits += int((sum(m.predict_proba(x) for m in members) / 2).argmax(1).item() == c)
    assert metrics["overall_accuracy"] == pytest.approx(hits / (3 * len(classes)))
    assert np.array(metrics["confusion_matrix"]).sum() == 3 * len(classes)
