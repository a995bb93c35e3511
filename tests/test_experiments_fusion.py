"""The fusion studies: controlled table baselines, clouds, summaries, a real smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from landlearn.errors import LandlearnError
from landlearn.experiments.fusion import (
    FusionOptions,
    canonical_correlation,
    classical_baselines,
    summarise,
)
from landlearn.experiments.sensors import SensorOptions, _clouded, _iou, cloud_mask
from landlearn.experiments.sensors import summarise as sensor_table
from tests.cli.conftest import run_cli


def _blobs(informative: bool, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 600)
    centres = rng.normal(size=(3, 5)) * 3
    x = (centres[y] if informative else 0) + rng.normal(size=(600, 5))
    return x[:400], y[:400], x[400:], y[400:]


def test_classical_baselines_follow_the_table_information() -> None:
    good = classical_baselines(*_blobs(True), seed=0)
    noise = classical_baselines(*_blobs(False), seed=0)
    assert set(good) == {"kmeans_rf", "dbscan_rf", "lasso"}
    assert min(good.values()) > 0.9
    assert max(noise.values()) < 0.5  # three classes: chance is a third


def test_canonical_correlation_is_high_only_for_an_informative_table() -> None:
    x, y, _, _ = _blobs(True)
    xn, yn, _, _ = _blobs(False)
    assert canonical_correlation(x, y) > 0.9
    assert canonical_correlation(xn, yn) < 0.3


def test_fusion_summary_states_each_claim() -> None:
    opts = FusionOptions(dials=[0.0, 0.5], interaction=True, models=["late", "gated"])
    rows = []
    for seed, bump in ((0, 0.0), (1, 0.02)):
        for setting, acc in (("dial 0", {"image only": 0.6, "table only": 0.1, "late": 0.58,
                                          "gated": 0.605}),
                             ("dial 0.5", {"image only": 0.6, "table only": 0.4, "late": 0.7,
                                           "gated": 0.68}),
                             ("interaction", {"image only": 0.5, "table only": 0.5,
                                              "late": 0.8, "gated": 0.6})):  # fmt: skip
            for row, a in acc.items():
                rows.append({"setting": setting, "row": row, "seed": seed, "accuracy": a + bump,
                             "s_per_epoch": 1.0, "importance": {"meta": 0.01}})  # fmt: skip
    settings = [{"setting": s, "seed": 0, "cca": 0.5} for s in ("dial 0", "dial 0.5",
                                                               "interaction")]  # fmt: skip
    text = summarise(rows, settings, opts)
    assert "| late | 0.5900 ± 0.0141 | 0.7100 ± 0.0141 | 0.8100 ± 0.0141 |" in text
    assert "dial 0: every fusion within 1 point of image-only: no" in text
    assert "closest: gated (gated, as claimed)" in text
    assert (
        "dial 0.5: best fusion (late, 71.0 %) beats both single inputs by ≥ 5 points: yes" in text
    )
    assert (
        "interaction: best fusion (late, 81.0 %) beats both single inputs by ≥ 15 points: yes"
        in text
    )


def test_cloud_mask_covers_the_fraction_in_blobs_and_clouds_are_bright() -> None:
    mask = cloud_mask((128, 128), 0.5, seed=0)
    assert abs(mask.mean() - 0.5) < 0.01
    # blobs, not salt and pepper: most pixels share their neighbour's state
    assert (mask[:, 1:] == mask[:, :-1]).mean() > 0.95
    assert np.array_equal(mask, cloud_mask((128, 128), 0.5, seed=0))
    s2 = np.full((13, 128, 128), 500, dtype=np.int16)
    cloudy = _clouded(s2, mask, seed=0)
    assert (cloudy[:, mask] > 5000).all()
    assert (cloudy[:, ~mask] == 500).all()


def test_iou_ignores_no_data_labels() -> None:
    label = np.array([[1, 1, 0, -1]])
    assert _iou(np.array([[1, 0, 0, 1]]), label) == 0.5


def test_sensor_summary_checks_cloud_robustness() -> None:
    rows = [{"row": "gated", "train": "Spain", "test": "India", "seed": s, "clear": 0.8,
             "cloud": 0.76, "s2_absent": 0.7} for s in (0, 1)]  # fmt: skip
    rows += [{"row": "s2_only", "train": "Spain", "test": "India", "seed": s, "clear": 0.8,
              "cloud": 0.3, "s2_absent": None} for s in (0, 1)]  # fmt: skip
    text = sensor_table(rows)
    assert "gated: clear 0.800, cloud 0.760 (95 % of clear) — keeps ≥ 90 %: yes" in text
    assert "s2_only: clear 0.800, cloud 0.300 (37 % of clear)" in text
    assert "| s2_only | 0.8000 ± 0.0000 | 0.3000 ± 0.0000 | – |" in text


def test_bad_study_options_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(LandlearnError, match="dials must be in"):
        FusionOptions(dials=[2.0]).check()
    with pytest.raises(LandlearnError, match="Sen1Floods11 chip missing"):
        SensorOptions(root=str(tmp_path)).check()
    data = tmp_path / "data"
    data.mkdir()
    code, _, err = run_cli(["experiment", "fusion", "--eurosat", str(data), "-o",
                            str(tmp_path / "o")], capsys)  # fmt: skip
    assert code == 2
    assert "expected EuroSAT RGB train/ and test/ folders" in err
    assert err.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()


@pytest.mark.real
def test_fusion_study_runs_on_eurosat(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study"
    code, stdout, _ = run_cli(
        ["experiment", "fusion", "--eurosat", str(shared_data / "eurosat_rgb"), "--dials", "0.5",
         "--models", "late", "gated", "--seeds", "0", "--per-class", "3", "--test-per-class",
         "2", "--epochs", "1", "--encoder", "test_resnet", "-o", str(out)], capsys,
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "fusion.json").read_text())
    rows = {(r["setting"], r["row"]) for r in record["rows"]}
    assert ("dial 0.5", "gated") in rows
    assert ("interaction", "lasso") in rows
    assert ("interaction", "image only") in rows
    gated = next(r for r in record["rows"] if r["row"] == "gated")
    assert set(gated["importance"]) == {"image", "meta"}
    assert abs(sum(gated["gate"].values()) - 1) < 1e-3
    assert (out / "fusion.png").stat().st_size > 10_000
    assert "Claims (means over seeds):" in stdout


@pytest.mark.real
def test_globe_land_cover_features_use_training_rows_only(shared_data: Path) -> None:
    from landlearn.data.globe import read_land_covers
    from landlearn.experiments.globe import land_cover_features

    df = read_land_covers(shared_data / "globe_observer/lc.csv", errors="skip")
    train = np.arange(0, len(df), 2)
    x = land_cover_features(df, train)
    assert x.shape[0] == len(df)
    assert np.isfinite(x).all()
    moved = df.copy()
    rest = np.setdiff1d(np.arange(len(df)), train)
    moved.loc[moved.index[rest], "elevation"] = 1e5  # would shift any statistic that saw them
    assert np.allclose(land_cover_features(moved, train)[train], x[train])
    fewer = land_cover_features(df, train, directional=False)
    assert fewer.shape[1] < x.shape[1] - 30


@pytest.mark.real
def test_globe_sky_photos_and_table_train_a_gated_fusion(shared_data: Path, tmp_path: Path) -> None:
    from landlearn.experiments.globe import sky_ingestion

    record = sky_ingestion(shared_data / "globe_observer/sky_colombia", tmp_path, epochs=1)
    assert record["observations"] == 47
    assert record["image"] == [3, 64, 96]  # five 32 px views as a 2 × 3 collage
    assert sum(record["train / val / test"]) == 47
    assert record["classes"] == ["dry", "not dry"]
    assert Path(record["bundle"]).is_file()


@pytest.mark.real
def test_experiment_bigearthnet_cli_runs_the_ingestion_check(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ben"
    code, _, err = run_cli(["experiment", "bigearthnet", "--root",
                            str(shared_data / "bigearthnet_pairs"), "--encoder", "test_resnet",
                            "--epochs", "1", "-o", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    record = json.loads((out / "bigearthnet.json").read_text())
    assert record["s2"] == [12, 120, 120]
    assert record["s1"] == [2, 120, 120]
    assert record["prediction_shape"] == [1, record["classes"]]
    assert set(record["prediction_values"]) <= {0, 1}
    assert record["missing_inputs"] == ["s1"]
    assert "too few to" in (out / "bigearthnet.md").read_text()


def test_experiment_bigearthnet_bad_root_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    args = ["experiment", "bigearthnet", "--root", str(root), "-o", str(tmp_path / "o")]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "BigEarthNet-S1" in err


@pytest.mark.parametrize("study", ["bigearthnet", "ssl", "globe"])
def test_experiment_refuses_an_output_folder_inside_its_input(
    study: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    keep = data / "keep.txt"
    keep.write_text("the user's file")
    flag = {"bigearthnet": "--root", "ssl": "--eurosat", "globe": "--sky"}[study]
    for out in (data, data / "study"):
        code, _, err = run_cli(["experiment", study, flag, str(data), "-o", str(out)], capsys)
        assert code == 2
        assert err.strip().count("\n") == 0
        assert "inside the study's input" in err
    assert sorted(p.name for p in data.iterdir()) == ["keep.txt", "train"]  # nothing written
    assert keep.read_text() == "the user's file"
