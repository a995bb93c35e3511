"""The benchmark scripts still run: one tiny budget each, records written and complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _run(script: str, *args: str, data: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if data is not None:
        env["LANDLEARN_DATA"] = str(data)
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip


def test_train_step_times_every_combination(tmp_path: Path) -> None:
    out = tmp_path / "ts.json"
    # tiny batches and chips: where bf16 is emulated (AVX2-only CPUs) the full cases take minutes
    proc = _run("train_step.py", "--steps", "1", "--warmup", "0", "--threads", "1", "--batch", "2",
                "--size", "32", "--json", str(out), "--md", str(tmp_path / "ts.md"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 8
    assert all(r["images_per_s"] > 0 and r["batch"] == 2 for r in rows)
    assert {r["case"] for r in rows} == {"resnet18 32x32 b2", "unet-resnet18 32x32 b2"}
    assert {(r["channels_last"], r["bf16"]) for r in rows} == {
        (a, b) for a in (False, True) for b in (False, True)
    }
    assert "× NCHW fp32" in (tmp_path / "ts.md").read_text()


@pytest.mark.real
def test_eurosat_both_sides_on_a_tiny_budget(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    bundle = tmp_path / "ll.safetensors"
    proc = _run("eurosat.py", "--limit-train", "100", "--epochs", "1", "--batch-size", "32",
                "--num-workers", "0", "--json", str(out), "--tta", "--crop", "0.7",
                "--bundle", str(bundle), data=shared_data)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert [r["side"] for r in record["runs"]] == ["landlearn", "torchgeo"]
    for run in record["runs"]:
        assert run["n_test"] == 1000
        assert 0.0 <= run["test_accuracy"] <= 1.0
        assert run["train_samples_seen"] == run["n_train"]
        assert 0.0 <= run["test_accuracy_tta"] <= 1.0
    assert "random resized crop (p 0.5, scale 0.7..1)" in record["recipes"]["augmentation"]
    from landlearn.bundle import load_bundle

    assert load_bundle(bundle).class_names == record["runs"][0]["metrics"]["class_names"]
    assert set(record["ratios"]) >= {"throughput_landlearn_over_torchgeo"}
    assert "epoch 1/1" in proc.stdout


@pytest.mark.real
def test_segmentation_full_and_sparse_on_a_tiny_budget(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    proc = _run("segmentation.py", "--datasets", "dubai", "--epochs", "1",
                "--limit-train-chips", "4", "--sparse", "0.05", "--chip-size", "128",
                "--batch-size", "4", "--num-workers", "0", "--tta", "--color", "0.5",
                "--json", str(out),
                "--md", str(tmp_path / "s.md"), data=shared_data)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    runs = record["runs"]["dubai"]
    assert [(r["side"], r["point_fraction"]) for r in runs] == [
        ("landlearn", 1.0),
        ("torchgeo", 1.0),
        ("landlearn", 0.05),
    ]
    for r in runs:
        assert 0.0 <= r["miou"] <= 1.0 and 0.0 <= r["miou_tta"] <= 1.0
        assert len(r["per_class_iou"]) == len(r["class_names"]) == 5  # Unlabeled is ignored
    assert 0.0 <= record["ratios"]["dubai"]["miou_0.05_points_over_full"]
    md = (tmp_path / "s.md").read_text()
    assert "mIoU d4 TTA" in md and "brightness and contrast 1 ± 0.5" in md
