"""The benchmark scripts still run: one tiny budget each, records written and complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    beside = tmp_path / "ll_run"  # the same run files as landlearn fit, by the same callback
    for name in ("metrics.json", "metrics.md", "examples.npz", "report/index.html"):
        assert (beside / name).is_file(), name
    own = json.loads((beside / "metrics.json").read_text())["overall_accuracy"]
    assert load_bundle(bundle).meta.metrics["overall_accuracy"] == own
    assert set(record["ratios"]) >= {"throughput_landlearn_over_torchgeo"}
    assert "epoch 1/1" in proc.stdout


@pytest.mark.slow  # ~20 s: the suite is near its 15-minute budget on 2 cores
@pytest.mark.real
def test_ssl_throughput_both_sides_on_a_tiny_budget(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    proc = _run("ssl_throughput.py", "--limit-train", "64", "--epochs", "1", "--batch-size",
                "16", "--memory-bank", "32", "--json", str(out), data=shared_data)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert [r["side"] for r in record["runs"]] == ["landlearn", "torchgeo"]
    for run in record["runs"]:
        assert run["images"] > 0
        assert run["images_per_s"] > 0
        assert run["last_train_loss"] is not None
    assert record["ratios"]["images_per_s_landlearn_over_torchgeo"] > 0


@pytest.mark.real
@pytest.mark.slow  # 150 s on 2 cores (three fits + d4 TTA on Dubai): the suite's 15-min budget
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
        assert 0.0 <= r["miou"] <= 1.0
        assert 0.0 <= r["miou_tta"] <= 1.0
        assert len(r["per_class_iou"]) == len(r["class_names"]) == 5  # Unlabeled is ignored
    assert 0.0 <= record["ratios"]["dubai"]["miou_0.05_points_over_full"]
    md = (tmp_path / "s.md").read_text()
    assert "mIoU d4 TTA" in md
    assert "brightness and contrast 1 ± 0.5" in md


def test_fuel_moisture_on_a_tiny_fake_presto(tmp_path: Path) -> None:
    import importlib.util

    from tests.conftest import fixture_maker

    data = fixture_maker("presto").make(tmp_path / "presto")
    out = tmp_path / "fm.json"
    # in-process: a subprocess would spend ~10 s importing torch and lightning again
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(
            "_fm", ROOT / "benchmarks" / "fuel_moisture.py"
        )
        assert spec is not None
        assert spec.loader is not None
        fm = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fm)
        md_path = str(tmp_path / "m.md")
        argv = ["--data", str(data), "--epochs", "2", "--seeds", "0", "1", "--hidden", "8",
                "--batch-size", "16", "--json", str(out), "--md", md_path]  # fmt: skip
        code = fm.main(argv)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert code == 0
    record = json.loads(out.read_text())
    assert record["rows"] == {"train": 40, "val": 0, "test": 20}
    assert record["features"] == 58
    assert [(r["model"], r["seed"]) for r in record["runs"]] == [
        (m, s) for m in ("mlp", "mlp_nll", "hgb", "rf") for s in (0, 1)
    ]
    for r in record["runs"]:
        assert r["metrics"]["per_target"]["count"] == [20]
        assert r["metrics"]["mae"] > 0
        assert (r["metrics"]["nll"] is not None) == (r["model"] == "mlp_nll")
    assert record["summary"]["hgb"]["r2"][1] == 0.0  # no randomness in the boosted trees
    assert record["runs"][0]["metrics"] != record["runs"][1]["metrics"]  # seeds differ
    md = (tmp_path / "m.md").read_text()
    assert md.startswith("| model | R² | MAE (%) |")
    assert "| mlp_nll |" in md


@pytest.mark.real
def test_sen1floods11_fusion_against_one_sensor_on_a_tiny_budget(
    shared_data: Path, tmp_path: Path
) -> None:
    """Each variant runs ``landlearn fit`` on its config (through ``landlearn.train``)."""
    out, md = tmp_path / "s.json", tmp_path / "s.md"
    proc = _run("sen1floods11.py", "--epochs", "1", "--samples", "16", "--seeds", "0",
                "--variants", "s1s2", "s1", "--runs", str(tmp_path / "runs"),
                "--json", str(out), "--md", str(md))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    assert [(r["variant"], r["seed"]) for r in record["runs"]] == [("s1s2", 0), ("s1", 0)]
    for r in record["runs"]:
        assert 0.0 <= r["water_iou"] <= 1.0
        assert 0.0 <= r["miou"] <= 1.0
        assert (Path(r["run"]) / "metrics.json").is_file()
    text = md.read_text()
    assert text.startswith("| inputs | water IoU (India) |")
    assert "| S1 only |" in text


@pytest.mark.real
def test_s1_to_nir_against_per_pixel_baselines_on_a_tiny_budget(
    shared_data: Path, tmp_path: Path
) -> None:
    out, md = tmp_path / "n.json", tmp_path / "n.md"
    proc = _run("s1_to_nir.py", "--epochs", "1", "--samples", "8", "--seeds", "0",
                "--json", str(out), "--md", str(md))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    models = [r["model"] for r in record["runs"]]
    assert models == ["linear (VV, VH)", "random forest (VV, VH)", "U-Net ResNet-18 (landlearn)"]
    for r in record["runs"]:
        assert np.isfinite([r["r2"], r["mae"], r["rmse"]]).all()
        assert 0 < r["mae"] <= r["rmse"]
    assert md.read_text().startswith("| model (train Spain, test India) | R² |")


@pytest.mark.real
def test_jem_tables_on_a_tiny_budget(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "j.json"
    proc = _run("jem.py", "--limit-train", "60", "--epochs", "1", "--seeds", "0",
                "--fractions", "0.5", "--sgld-steps", "2", "--buffer", "32", "--size", "16",
                "--tables", "fractions", "ood", "guard", "steps", "steps_accuracy",
                "--time-batches", "1", "--guard-regs", "none", "u:0.2", "g:1",
                "--steps-compare", "2", "4", "--ood-sets", "deepglobe/test_unlabelled:1224",
                "--out", str(tmp_path / "runs"), "--json", str(out),
                "--md", str(tmp_path / "j.md"), data=shared_data)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert {r["method"] for r in record["fractions"]} == {"plain", "jem"}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in record["fractions"])
    assert [r["n_out"] for r in record["ood"]] == [4, 4]  # 2448² → 2 × 2 chips of 1224 px
    assert {(r["action"], tuple(r["reg"] or ())) for r in record["guard"]} == {
        (a, g) for a in ("stop", "restore") for g in (("", 0.0), ("u", 0.2), ("g", 1.0))
    } | {("plain", ())}
    assert "regularisers none, REG_u α 0.2, REG_g α 1" in (tmp_path / "j.md").read_text()
    assert all("divergence" in r for r in record["guard"] if r["action"] != "plain")
    assert [r["sgld_steps"] for r in record["steps"]] == [2, 4]
    assert [r["sgld_steps"] for r in record["steps_accuracy"]] == [2, 4]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in record["steps_accuracy"])
    assert "AUROC energy" in (tmp_path / "j.md").read_text()
    assert list(tmp_path.glob("j_reliability_*.png"))


def test_semisup_self_training_on_a_tiny_budget(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    proc = _run("semisup.py", "--max-steps", "2", "--seeds", "0", "--chip", "64",
                "--methods", "fixed", "balanced", "mean_teacher", "--out", str(tmp_path / "runs"),
                "--json", str(out), "--md", str(tmp_path / "s.md"), data=shared_data)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == [
        "100 % labels", "supervised", "self-training (fixed τ)", "self-training (class-balanced)",
        "mean teacher",
    ]  # fmt: skip
    assert all(0.0 <= r["miou"] <= 1.0 for r in rows)
    balanced = rows[3]
    assert 0.0 < balanced["pl_kept"] <= 1.0
    assert 0.0 <= balanced["pl_accuracy"] <= 1.0
    assert list((tmp_path / "runs" / "pseudo_balanced_s0" / "masks").glob("*.png"))
    again = _run("semisup.py", "--table-from", str(out), data=shared_data)
    assert "gap recovered" in again.stdout


@pytest.mark.slow  # 70–160 s on 2 cores (7 interpreters, each Ray run starts Ray): `-m slow`
def test_map_many_rows_on_a_tiny_budget(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="map_many's Ray rows need the ray extra")
    out, md = tmp_path / "m.json", tmp_path / "m.md"
    # --quick's sizes, smaller still: the suite has 2 cores and each Ray run starts its own Ray
    proc = _run("map_many.py", "--quick", "--scene-size", "512", "--big-sizes", "1024", "2048",
                "--block", "1024", "--tile", "256", "--overlap", "32",
                "--work", str(tmp_path / "work"), "--json", str(out), "--md", str(md))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = json.loads(out.read_text())
    runs = record["scenes"]["runs"]
    assert list(runs) == ["local", "ray-1", "ray-2"]
    for name, r in runs.items():
        assert r["scenes"] == 2
        assert r["windows"] > 0
        assert r["seconds"] > 0
        assert r["scenes_per_s"] > 0
        assert len(r.get("worker_peak_rss", [])) == {"local": 0, "ray-1": 1, "ray-2": 2}[name]
    assert runs["ray-2"]["ray_init_s"] > 0
    assert all(v > 2**20 for v in runs["ray-2"]["worker_peak_rss"])
    assert set(record["scenes"]["ratios"]) >= {"ray2_over_ray1", "ray1_overhead"}
    assert [b["size"] for b in record["big"]] == [1024, 2048]
    small, big = record["big"]
    assert (small["blocks"], big["blocks"]) == (1, 4)
    assert len(big["blocked"]["worker_peak_rss"]) == 2
    assert big["one_piece"]["seconds"] > 0
    assert big["one_piece"]["driver_peak_rss"] > 2**20
    assert big["blocked_over_one_piece_time"] > 0
    assert "gpu" not in record
    text = md.read_text()
    assert "Ray 2 workers ÷ 1 worker" in text
    assert "GPU row: not run" in text


@pytest.mark.slow
@pytest.mark.real
def test_jem_seg_table_on_slovenia(shared_data: Path, tmp_path: Path) -> None:
    """Issue 17, experiment 4's multispectral half: the seg table on the 13-band Slovenia scene."""
    out = tmp_path / "s.json"
    proc = _run("jem.py", "--tables", "seg", "--seg-data", "slovenia", "--seg-chips", "32",
                "--seg-epochs", "1", "--seg-batches", "2", "--seg-energies", "mean", "--seeds",
                "0", "--sgld-steps", "2", "--buffer", "16", "--out", str(tmp_path / "runs"),
                "--json", str(out), "--md", str(tmp_path / "s.md"), data=shared_data)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["seg"]
    assert [r["method"] for r in rows] == ["plain", "jem_restore", "jem_stop"]
    assert all(0.0 <= r["miou"] <= 1.0 for r in rows)
    assert "Slovenia S2 L1C 13 bands" in (tmp_path / "s.md").read_text()


def test_jem_guard_regulariser_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = _run("jem.py", "--tables", "guard", "--guard-regs", "x:0.2",
                "--json", str(tmp_path / "j.json"))  # fmt: skip
    assert proc.returncode == 2
    assert "regulariser 'x:0.2': expected none or r|u|g:ALPHA" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "j.json").exists()


@pytest.mark.real
def test_dual_simclr_loss_per_bank_on_one_epoch(shared_data: Path, tmp_path: Path) -> None:
    proc = _run("dual_simclr_loss.py", "--epochs", "1", "--geometries", "shared",
                "--memory-banks", "0", "--data-root", str(shared_data),
                "-o", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "dual_loss.json").read_text())
    row = record["shared_bank0"]
    assert row["memory_bank"] == 0
    assert len(row["per_epoch"]) == 1
    assert row["chance"] == pytest.approx(np.log(2 * 64 - 1))  # in-batch: 2B − 2 negatives
    assert 0.0 < row["final"] < 2 * row["chance"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--memory-banks", "-1"], "memory bank size must be >= 0"),
     (["--data-root", "/nonexistent"], "Sen1Floods11 chip missing")],
)  # fmt: skip
def test_dual_simclr_loss_bad_input_is_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = _run("dual_simclr_loss.py", *args, "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
