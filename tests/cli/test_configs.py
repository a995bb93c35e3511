"""Every config in configs/ runs through the real CLI (fit with fast_dev_run, then a bundle)."""

from __future__ import annotations

from pathlib import Path

import pytest

from landlearn.bundle import load_bundle
from tests.cli.conftest import run_cli
from tests.conftest import ROOT, SHARED_DATA, fixture_maker

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

# Keep the suite fast: smaller chips / batches than the configs' real settings, and no
# statistics pass over all of DeepGlobe (mean / std given), without changing what runs.
OVERRIDES: dict[str, list[str]] = {
    "deepglobe_deeplabv3plus": [
        "--data.init_args.chip_size=256", "--data.init_args.batch_size=2",
        "--data.init_args.mean=[100,100,100]", "--data.init_args.std=[50,50,50]",
    ],
    "eurosat_resnet18": ["--data.init_args.batch_size=8"],
    "eurosat_jem": ["--data.init_args.batch_size=4", "--model.init_args.sgld_steps=2",
                    "--model.init_args.buffer_size=16"],
    "dubai_unet": ["--data.init_args.batch_size=2", "--data.init_args.chip_size=128"],
    "dubai_jem": ["--data.init_args.batch_size=2", "--data.init_args.chip_size=128",
                  "--model.init_args.sgld_steps=2", "--model.init_args.buffer_size=8",
                  "--model.init_args.buffer_crop=32"],
    "dubai_mean_teacher": ["--data.init_args.batch_size=2", "--data.init_args.chip_size=128"],
    **{f"sen1floods11_{v}": ["--data.init_args.batch_size=2",
                             "--data.init_args.samples_per_epoch=4"]
       for v in ("s1s2", "s2", "s1", "s1_to_nir", "gated")},
    "simclr_eurosat": ["--data.init_args.batch_size=4", "--model.init_args.memory_bank_size=16"],
    "dual_simclr_sen1floods11": ["--data.init_args.batch_size=4",
                                 "--data.init_args.samples_per_epoch=8",
                                 "--model.init_args.memory_bank_size=16"],
}  # fmt: skip


def _fake_eurosat(tmp_path: Path) -> Path:
    return Path(fixture_maker("image_folder").make(tmp_path / "fixtures")) / "eurosat"


def test_every_config_is_tested() -> None:
    assert {p.stem for p in CONFIGS} >= {
        "eurosat_resnet18", "eurosat_torchgeo", "dubai_unet", "slovenia_unet",
        "deepglobe_deeplabv3plus", "sen1floods11_s1s2", "sen1floods11_s2", "sen1floods11_s1",
        "presto_fuel_moisture", "sen1floods11_s1_to_nir", "eurosat_jem", "dubai_jem",
        "dubai_mean_teacher", "sen1floods11_gated", "simclr_eurosat", "dual_simclr_sen1floods11",
    }  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_fits_and_exports_a_bundle(
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = config.read_text()
    args = ["fit", "--config", str(config), "--trainer.fast_dev_run=1",
            f"--trainer.default_root_dir={tmp_path}", "--data.init_args.num_workers=0",
            "--trainer.accelerator=cpu", *OVERRIDES.get(config.stem, [])]  # fmt: skip
    if "../shared/data" in text:
        if not SHARED_DATA.is_dir():
            pytest.skip(f"real data not found at {SHARED_DATA}")
        monkeypatch.chdir(ROOT)  # configs name ../shared/data relative to the checkout
    if "torchgeo.datamodules.EuroSATDataModule" in text:
        args.append(f"--data.dict_kwargs.root={_fake_eurosat(tmp_path)}")
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    bundle = tmp_path / "model.safetensors"
    assert bundle.is_file(), err
    if "ContrastiveTask" in text:  # an encoder bundle: encoders and input statistics, no head
        from landlearn.bundle.encoder import read_encoder_meta

        encoder = read_encoder_meta(bundle)
        assert encoder is not None
        assert [s.name for s in encoder.inputs] == list(encoder.encoders)
        assert all(s.mean for s in encoder.inputs)
        return
    meta = load_bundle(bundle).meta
    if "RegressionTask" in text:
        kind = "pixel_regression" if "target:" in text else "regression"
        assert [h.kind for h in meta.heads] == [kind]
        assert meta.heads[0].targets
    else:
        assert meta.class_names
        assert len(meta.mean) == meta.in_channels
    assert (tmp_path / "metrics.json").is_file()
