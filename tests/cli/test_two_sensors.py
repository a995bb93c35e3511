"""Two sensors end to end, as a user runs them: fit the S1 + S2 config, evaluate, map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from landlearn.bundle import load_bundle
from tests.cli.conftest import run_cli
from tests.conftest import ROOT

DATA = Path("../shared/data/sen1floods11")


@pytest.mark.real
def test_fit_evaluate_and_map_two_sensors(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(ROOT)  # the config names ../shared/data relative to the checkout
    run = tmp_path / "run"
    code, _, err = run_cli([
        "fit", "--config", "configs/sen1floods11_s1s2.yaml", "--trainer.max_epochs=1",
        "--data.init_args.samples_per_epoch=16", "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0", "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={run}", "--no_report=true",
    ], capsys)  # fmt: skip
    assert code == 0, err
    (bundle,) = run.rglob("model.safetensors")
    meta = load_bundle(bundle).meta
    assert [s.name for s in meta.inputs] == ["s2", "s1"]
    assert [s.num_bands for s in meta.inputs] == [13, 2]
    s1 = meta.inputs[1]
    assert s1.mean is not None
    assert max(s1.mean) < 0
    (fitted,) = run.rglob("metrics.json")
    india = {"s2": str(DATA / "S2/India_900498_S2Hand.tif"),
             "s1": str(DATA / "S1/India_900498_S1Hand.tif")}  # fmt: skip
    label = str(DATA / "Labels/India_900498_LabelHand.tif")
    out = tmp_path / "eval.json"
    code, _, err = run_cli([
        "evaluate", str(bundle), "--input", f"s2={india['s2']}", "--input",
        f"s1={india['s1']}", "--label", label, "--remap", "0:0,1:1", "--out", str(out),
    ], capsys)  # fmt: skip
    assert code == 0, err
    scored = json.loads(out.read_text())
    test = json.loads(fitted.read_text())
    # evaluate scores India's grid chips as fit's test did: the same numbers
    assert scored["confusion_matrix"] == test["confusion_matrix"]
    water = tmp_path / "water.tif"
    code, _, err = run_cli([
        "map", str(bundle), "--input", f"s2={india['s2']}", "--input", f"s1={india['s1']}",
        "-o", str(water), "--tile", "128", "--overlap", "16", "--no-preview",
    ], capsys)  # fmt: skip
    assert code == 0, err
    with rasterio.open(water) as m, rasterio.open(india["s2"]) as s2:
        assert (m.width, m.height, m.crs, m.transform) == (
            s2.width, s2.height, s2.crs, s2.transform,
        )  # fmt: skip
        classes = m.read(1)
    assert set(np.unique(classes)) <= {0, 1, 255}
    assert (classes != 255).mean() > 0.9
    # a missing input: one line, exit 2, nothing written
    code, _, err = run_cli(["map", str(bundle), "--input", f"s2={india['s2']}",
                            "-o", str(tmp_path / "no.tif")], capsys)  # fmt: skip
    assert code == 2
    assert "no --input s1=PATH: the bundle reads s2, s1" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "no.tif").exists()


@pytest.mark.real
def test_pixel_regression_fits_and_maps_a_float_band_in_units(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """S1 → S2 NIR reflectance: fit on Spain, test on India, map India as float32 in units."""
    monkeypatch.chdir(ROOT)
    run = tmp_path / "run"
    code, _, err = run_cli([
        "fit", "--config", "configs/sen1floods11_s1_to_nir.yaml", "--trainer.max_epochs=1",
        "--data.init_args.samples_per_epoch=16", "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0", "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={run}", "--no_report=true",
    ], capsys)  # fmt: skip
    assert code == 0, err
    (bundle,) = run.rglob("model.safetensors")
    (head,) = load_bundle(bundle).meta.heads
    assert head.kind == "pixel_regression"
    assert head.targets == ("B8",)
    assert head.units == ("TOA reflectance x 10000",)
    assert head.mean is not None
    assert 1000 < head.mean[0] < 4000  # Spain's NIR, in the file's units
    (fitted,) = run.rglob("metrics.json")
    test = json.loads(fitted.read_text())
    assert np.isfinite(test["mae"])
    assert test["mae"] > 0
    assert np.isfinite(test["r2"])
    s1 = str(DATA / "S1/India_900498_S1Hand.tif")
    nir = tmp_path / "nir.tif"
    code, _, err = run_cli([
        "map", str(bundle), "--input", f"s1={s1}", "-o", str(nir), "--tile", "256",
        "--overlap", "32",
    ], capsys)  # fmt: skip
    assert code == 0, err
    with rasterio.open(nir) as m, rasterio.open(s1) as src:
        assert (m.crs, m.transform, m.shape) == (src.crs, src.transform, src.shape)
        assert m.dtypes == ("float32",)
        assert m.descriptions == ("B8 (TOA reflectance x 10000)",)
        values = m.read(1)
    assert np.isfinite(values).all()  # S1 has no no-data here
    stats = json.loads(nir.with_name("nir.areas.json").read_text())
    assert stats["targets"][0]["mean"] == pytest.approx(float(values.mean()), rel=1e-4)
    assert nir.with_name("nir.preview.png").exists()


def _gated_bundle(tmp_path: Path, modality_dropout: float) -> Path:
    import torch

    from landlearn.bundle import BundleMeta, ModelEntry, save_bundle
    from landlearn.models import build_model
    from landlearn.schema import HeadSpec, InputSpec

    s2_bands = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    kwargs = {"decoder_channels": [16, 8, 8, 8, 8], "modality_dropout": modality_dropout}
    torch.manual_seed(0)
    model = build_model("gated_fusion_unet", in_channels={"s2": 13, "s1": 2}, num_classes=2,
                        **kwargs).eval()  # fmt: skip
    meta = BundleMeta(
        inputs=[InputSpec("s2", bands=s2_bands, mean=[1500.0] * 13, std=[800.0] * 13),
                InputSpec("s1", bands=["VV", "VH"], mean=[-10.0, -17.0], std=[3.0, 4.0])],
        heads=[HeadSpec("segmentation", "segmentation", classes=["not_water", "water"])],
        chip_size=64, models=[ModelEntry("model", "gated_fusion_unet", kwargs)],
    )  # fmt: skip
    return save_bundle(tmp_path / f"gated_{modality_dropout}.safetensors", model, meta)


@pytest.mark.real
def test_fusion_bundle_maps_from_s1_when_s2_is_absent_and_says_so(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s1 = str(shared_data / "sen1floods11/S1/India_900498_S1Hand.tif")
    bundle = _gated_bundle(tmp_path, 0.2)
    strict = _gated_bundle(tmp_path, 0.0)  # never trained to do without: refused
    capsys.readouterr()
    out = tmp_path / "water_s1.tif"
    args = ["--tile", "128", "--overlap", "16", "--no-preview"]
    code, _, err = run_cli(["map", str(bundle), "--input", f"s1={s1}", "-o", str(out), *args],
                           capsys)  # fmt: skip
    assert code == 0, err
    assert "mapping without input(s) s2" in err
    with rasterio.open(out) as m, rasterio.open(s1) as src:
        assert (m.width, m.height, m.transform) == (src.width, src.height, src.transform)
        assert json.loads(m.tags()["LANDLEARN_MISSING_INPUTS"]) == ["s2"]
        assert (m.read(1) != 255).mean() > 0.9
    areas = json.loads(out.with_name("water_s1.areas.json").read_text())
    assert areas["missing_inputs"] == ["s2"]
    label = str(shared_data / "sen1floods11/Labels/India_900498_LabelHand.tif")
    scores = tmp_path / "eval_s1.json"
    code, _, err = run_cli(["evaluate", str(bundle), "--input", f"s1={s1}", "--label", label,
                            "--remap", "0:0,1:1", "--out", str(scores)], capsys)  # fmt: skip
    assert code == 0, err
    assert json.loads(scores.read_text())["missing_inputs"] == ["s2"]

    code, _, err = run_cli(["map", str(strict), "--input", f"s1={s1}",
                            "-o", str(tmp_path / "no.tif")], capsys)  # fmt: skip
    assert code == 2
    assert "no --input s2=PATH" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "no.tif").exists()
