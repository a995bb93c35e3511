"""Contrastive pre-training: NT-Xent, views, the pair sampler, encoder bundles, linear probe."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from landlearn.data.views import GeoViews, band_group_view
from landlearn.errors import LandlearnError
from landlearn.tasks import ClassificationTask, ContrastiveTask, SegmentationTask
from landlearn.tasks.contrastive import nt_xent


def _hand_nt_xent(z0: torch.Tensor, z1: torch.Tensor, t: float) -> float:
    z = torch.nn.functional.normalize(torch.cat([z0, z1]), dim=1).double()
    n = z0.shape[0]
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = [float(z[i] @ z[k]) / t for k in range(2 * n) if k != i]
        total += -float(z[i] @ z[pos]) / t + math.log(sum(math.exp(s) for s in sims))
    return total / (2 * n)


def test_nt_xent_equals_the_hand_computed_value() -> None:
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    for t in (0.1, 0.5):
        assert float(nt_xent(z0, z1, t)) == pytest.approx(_hand_nt_xent(z0, z1, t), rel=1e-5)
    # identical views are the easiest positives: a lower loss than random pairs
    assert float(nt_xent(z0, z0, 0.5)) < float(nt_xent(z0, z1, 0.5))


def test_views_share_geometry_across_inputs_and_differ_between_calls() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16)
    geometry_only = GeoViews(brightness=0, contrast=0, band_dropout=0, blur=0)
    one = geometry_only({"s2": x, "s1": x[:, :2]})
    assert torch.allclose(one["s2"][:, :2], one["s1"])  # one map for both sensors of a chip
    two = geometry_only({"s2": x})
    assert not torch.allclose(one["s2"], two["s2"])  # a second call draws other views
    views = GeoViews()
    a, b = views({"image": x})["image"], views({"image": x})["image"]
    assert a.shape == b.shape == x.shape
    assert not torch.allclose(a, b)


def test_quarter_turns_and_flips_are_exact() -> None:
    x = torch.arange(2 * 25, dtype=torch.float32).reshape(1, 2, 5, 5)
    turns = GeoViews(flip=0, rotate=1, crop_scale=(1, 1), crop_ratio=(1, 1), brightness=0,
                     contrast=0, band_dropout=0, blur=0)  # fmt: skip
    torch.manual_seed(1)
    out = turns({"image": x})["image"]
    assert any(torch.equal(out, torch.rot90(x, k, (2, 3))) for k in (1, 2, 3))
    flips = GeoViews(flip=1, rotate=0, crop_scale=(1, 1), crop_ratio=(1, 1), brightness=0,
                     contrast=0, band_dropout=0, blur=0)  # fmt: skip
    assert torch.allclose(flips({"image": x})["image"], x.flip(-1), atol=1e-5)


def test_band_groups_and_bad_view_options() -> None:
    x = torch.ones(2, 5, 4, 4)
    v = band_group_view(x, [0, 1, 2])
    assert v[:, :3].eq(1).all()
    assert v[:, 3:].eq(0).all()
    with pytest.raises(LandlearnError, match="within bands"):
        band_group_view(x, [7])
    with pytest.raises(LandlearnError, match="probability"):
        GeoViews(flip=2)
    with pytest.raises(LandlearnError, match="unknown option"):
        ContrastiveTask(views={"zoom": 2})
    with pytest.raises(LandlearnError, match="band_groups"):
        ContrastiveTask(method="dual_simclr", band_groups=[[0], [1]])


def _write(path: Path, array: np.ndarray, res: float) -> None:
    with rasterio.open(path, "w", driver="GTiff", height=array.shape[1], width=array.shape[2],
                       count=array.shape[0], dtype="float32", crs="EPSG:32633",
                       transform=Affine(res, 0, 500000.0, 0, -res, 5000000.0)) as dst:  # fmt: skip
        dst.write(array.astype(np.float32))


def test_pair_sampler_gives_co_located_chips(tmp_path: Path) -> None:
    """S2 at 10 m and S1 at 20 m both hold the easting of each pixel: chips must agree."""
    from landlearn.data.aligned_datamodule import AlignedRasterDataModule

    def easting(n: int, res: float) -> np.ndarray:
        x = 500000.0 + (np.arange(n) + 0.5) * res
        return np.broadcast_to((x - 500000.0) / 10.0, (n, n))

    s2 = np.stack([easting(128, 10.0), np.ones((128, 128))])
    s1 = easting(64, 20.0)[None]
    _write(tmp_path / "s2.tif", s2, 10.0)
    _write(tmp_path / "s1.tif", s1, 20.0)
    dm = AlignedRasterDataModule(
        inputs={"s2": str(tmp_path / "s2.tif"), "s1": str(tmp_path / "s1.tif")},
        chip_size=16, samples_per_epoch=8, val_fraction=0.0, test_fraction=0.0, batch_size=8,
        resampling="bilinear", seed=0,
    )  # fmt: skip
    dm.setup("fit")
    assert dm.train_dataset is not None
    for i in range(4):
        chip = dm.train_dataset[i]
        assert set(chip) == {"s2", "s1"}  # no label: unlabelled chips
        # bilinear from 20 m to 10 m is exact for a linear ramp away from the edges
        inner = (slice(2, -2), slice(2, -2))
        assert np.allclose(chip["s2"][0][inner], chip["s1"][0][inner], atol=1e-3)


def _pretrained(tmp_path: Path, **kwargs: object) -> Path:
    task = ContrastiveTask(encoder="resnet18", memory_bank_size=0, **kwargs)  # type: ignore[arg-type]
    for p in task.encoders.parameters():  # not the fresh initialisation a model starts with
        p.data.add_(0.01)
    return task.export_bundle(tmp_path / "encoder.safetensors")


def test_encoder_bundle_starts_a_classifier_and_a_unet_with_equal_tensors(tmp_path: Path) -> None:
    path = _pretrained(tmp_path, in_channels=4)
    saved = load_file(str(path))
    clf = ClassificationTask(model="resnet18", num_classes=5, in_channels=4, weights=str(path))
    state = clf.model.state_dict()  # type: ignore[union-attr]
    encoder_keys = [k[len("image.") :] for k in saved]
    assert all(torch.equal(state[k], saved[f"image.{k}"]) for k in encoder_keys)
    unet = SegmentationTask(model="unet", num_classes=3, in_channels=4, weights=str(path))
    ustate = unet.model.state_dict()  # type: ignore[union-attr]
    shared = [k for k in encoder_keys if f"encoder.{k}" in ustate]
    assert len(shared) > 0.9 * len(encoder_keys)  # timm's and smp's ResNet names agree
    assert all(torch.equal(ustate[f"encoder.{k}"], saved[f"image.{k}"]) for k in shared)
    from landlearn.bundle import load_bundle

    with pytest.raises(LandlearnError, match="encoder bundle"):
        load_bundle(path)


def test_vit_small_encoder_pretrains_on_64px_and_starts_the_vit_classifier(tmp_path: Path) -> None:
    task = ContrastiveTask(encoder="vit_small_patch16_224", in_channels=4, memory_bank_size=0,
                           encoder_kwargs={"dynamic_img_size": True})  # fmt: skip
    loss, _ = task._contrast({"image": torch.randn(4, 4, 64, 64)})
    assert torch.isfinite(loss)
    path = task.export_bundle(tmp_path / "vit.safetensors")
    saved = load_file(str(path))
    clf = ClassificationTask(model="vit_small", num_classes=3, in_channels=4, weights=str(path))
    state = clf.model.state_dict()  # type: ignore[union-attr]
    keys = [k[len("image.") :] for k in saved]
    assert all(torch.equal(state[k], saved[f"image.{k}"]) for k in keys)


def test_dual_encoder_bundle_fills_each_fusion_branch_and_one_sensor(tmp_path: Path) -> None:
    path = _pretrained(tmp_path, method="dual_simclr", in_channels={"s2": 4, "s1": 2})
    saved = load_file(str(path))
    fusion = ClassificationTask(model="late_fusion", num_classes=3, in_channels={"s2": 4, "s1": 2},
                                weights=str(path))  # fmt: skip
    state = fusion.model.state_dict()  # type: ignore[union-attr]
    for sensor in ("s2", "s1"):
        keys = [k for k in saved if k.startswith(sensor + ".")]
        assert all(torch.equal(state[f"branches.{k}"], saved[k]) for k in keys)
    one = SegmentationTask(model="unet", num_classes=2, in_channels={"s1": 2}, weights=str(path))
    ustate = one.model.state_dict()  # type: ignore[union-attr]
    s1 = [k[3:] for k in saved if k.startswith("s1.") and f"encoder.{k[3:]}" in ustate]
    assert s1
    assert all(torch.equal(ustate[f"encoder.{k}"], saved[f"s1.{k}"]) for k in s1)
    # a single-input model named like neither sensor: told which encoders there are
    with pytest.raises(LandlearnError, match="s2"):
        SegmentationTask(model="unet", num_classes=2, in_channels=2, weights=str(path))


def test_linear_probe_leaves_the_encoder_unchanged(tmp_path: Path) -> None:
    path = _pretrained(tmp_path, in_channels=3)
    pl.seed_everything(0)
    task = ClassificationTask(model="resnet18", num_classes=3, in_channels=3, weights=str(path),
                              freeze_encoder=True, lr=0.05, channels_last=False)  # fmt: skip
    assert task.model is not None
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    data = [{"image": torch.randn(3, 32, 32), "label": torch.tensor(i % 3)} for i in range(16)]
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, train_dataloaders=DataLoader(data, batch_size=8))  # type: ignore[arg-type]
    after = task.model.state_dict()
    head = [k for k in after if k.startswith("fc.")]
    assert head
    assert any(not torch.equal(before[k], after[k]) for k in head)  # the head learnt
    encoder = [k for k in after if not k.startswith("fc.")]
    assert all(torch.equal(before[k], after[k]) for k in encoder)  # weights and BN statistics


def test_encoder_lr_makes_two_parameter_groups(tmp_path: Path) -> None:
    path = _pretrained(tmp_path, in_channels=3)
    task = ClassificationTask(model="resnet18", num_classes=3, in_channels=3, weights=str(path),
                              lr=1e-3, encoder_lr=1e-5)  # fmt: skip
    opt = task.configure_optimizers()
    groups = opt.param_groups
    assert sorted(g["lr"] for g in groups) == [1e-5, 1e-3]
    assert sum(len(g["params"]) for g in groups) == len(list(task.parameters()))


def test_memory_bank_survives_a_checkpoint() -> None:
    task = ContrastiveTask(encoder="test_resnet", in_channels=3, memory_bank_size=8,
                           projection_dim=4, hidden_dim=8)  # fmt: skip
    x = {"image": torch.randn(4, 3, 32, 32)}
    task.train()
    loss, _ = task._contrast(x)
    loss.backward()
    bank = task.loss_fn.memory_bank  # type: ignore[union-attr]
    assert int(bank.bank_ptr) == 4  # the batch's second views are in the bank
    ckpt: dict[str, object] = {}
    task.on_save_checkpoint(ckpt)
    fresh = ContrastiveTask(encoder="test_resnet", in_channels=3, memory_bank_size=8,
                            projection_dim=4, hidden_dim=8)  # fmt: skip
    fresh.on_load_checkpoint(ckpt)
    fresh.restore_bank()
    fresh_bank = fresh.loss_fn.memory_bank  # type: ignore[union-attr]
    assert torch.equal(fresh_bank.bank, bank.bank)
    assert int(fresh_bank.bank_ptr) == 4


@pytest.mark.real
def test_simclr_on_real_eurosat_lowers_its_loss(shared_data: Path, tmp_path: Path) -> None:
    import landlearn
    from landlearn.bundle.encoder import read_encoder_meta
    from landlearn.data.datamodules import ImageFolderDataModule

    dm = ImageFolderDataModule(str(shared_data / "eurosat_rgb/test"), batch_size=32,
                               val_fraction=0.0, test_fraction=0.0)  # fmt: skip
    task = ContrastiveTask(encoder="test_resnet", memory_bank_size=0, lr=3e-3)
    result = landlearn.train(model=task, datamodule=dm, name="ssl", root=tmp_path, report=False,
                             accelerator="cpu", max_epochs=3, limit_train_batches=8,
                             enable_progress_bar=False)  # fmt: skip
    meta = read_encoder_meta(result.bundle)  # type: ignore[arg-type]
    assert meta is not None
    assert meta.method == "simclr"
    assert meta.encoders == {"image": "test_resnet"}
    assert len(meta.inputs[0].mean or []) == 3  # the training statistics travel with it
    assert meta.metrics["train_loss"] < math.log(2 * 32 - 1)  # below chance


@pytest.mark.real
def test_experiment_ssl_runs_every_row_on_a_tiny_budget(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tests.cli.conftest import run_cli

    out = tmp_path / "ssl"
    code, _, err = run_cli(["experiment", "ssl", "--eurosat", str(shared_data / "eurosat_rgb"),
                            "--fractions", "0.01", "--seeds", "0", "--encoder", "test_resnet",
                            "--pretrain-epochs", "1", "--pretrain-images", "32", "--epochs", "1",
                            "--batch-size", "16", "--memory-bank", "32",
                            "--limit-test-batches", "2", "-o", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    record = json.loads((out / "ssl.json").read_text())
    assert sorted(r["row"] for r in record["runs"]) == ["finetune", "probe", "scratch"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in record["runs"])
    assert record["runs"][0]["labelled"] >= 10  # at least one image per class
    assert (out / "ssl.png").is_file()
    assert "fine-tune − scratch" in (out / "ssl.md").read_text()


def test_experiment_ssl_bad_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.cli.conftest import run_cli

    (tmp_path / "data").mkdir()
    code, _, err = run_cli(["experiment", "ssl", "--eurosat", str(tmp_path / "data"), "-o",
                            str(tmp_path / "o")], capsys)  # fmt: skip
    assert code == 2
    assert "train/ and test/" in err


@pytest.mark.real
def test_date_vs_date_pretrains_one_shared_encoder_on_real_ssl4eo(
    shared_data: Path, tmp_path: Path
) -> None:
    """SSL4EO's two L1C dates of one place: one encoder for both, placed into an S2 U-Net."""
    import landlearn
    from landlearn.bundle.encoder import read_encoder_meta
    from landlearn.data.aligned_datamodule import AlignedRasterDataModule
    from landlearn.data.stacks import ssl4eo_dates

    (pair,) = ssl4eo_dates(shared_data / "ssl4eo_s12", tmp_path / "stacks")
    dm = AlignedRasterDataModule(inputs=pair, chip_size=32, samples_per_epoch=16,
                                 val_fraction=0.0, test_fraction=0.0, batch_size=8)  # fmt: skip
    task = ContrastiveTask(method="dual_simclr", shared_encoder=True, encoder="resnet18",
                           memory_bank_size=0)  # fmt: skip
    result = landlearn.train(model=task, datamodule=dm, name="dates", root=tmp_path,
                             report=False, accelerator="cpu", max_epochs=1,
                             enable_progress_bar=False)  # fmt: skip
    assert list(task.encoders) == ["t0"]
    assert list(task.heads) == ["t0"]
    assert task.input_names == ["t0", "t1"]
    meta = read_encoder_meta(result.bundle)  # type: ignore[arg-type]
    assert meta is not None
    assert meta.encoders == {"t0": "resnet18"}
    assert meta.options["shared_encoder"] is True
    assert [s.name for s in meta.inputs] == ["t0"]
    assert len(meta.inputs[0].bands) == 12
    assert math.isfinite(meta.metrics["train_loss"])
    unet = SegmentationTask(model="unet", model_kwargs={"encoder": "resnet18"}, num_classes=2,
                            in_channels=12, weights=str(result.bundle))  # fmt: skip
    saved = load_file(str(result.bundle))
    got = dict(unet.model.named_parameters())
    conv = next(k for k in got if k.endswith("encoder.conv1.weight"))
    assert torch.equal(got[conv].detach(), saved["t0.conv1.weight"])
    with pytest.raises(LandlearnError, match="shared_encoder needs method: dual_simclr"):
        ContrastiveTask(method="simclr", shared_encoder=True)
    with pytest.raises(LandlearnError, match="one band count"):
        ContrastiveTask(method="dual_simclr", shared_encoder=True, in_channels={"a": 3, "b": 2})


@pytest.mark.real
def test_experiment_ssl_sensors_pretrains_on_every_archive_and_scores_water(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tests.cli.conftest import run_cli

    out = tmp_path / "ssl_sensors"
    code, _, err = run_cli(["experiment", "ssl-sensors", "--root",
                            str(shared_data / "sen1floods11"), "--ssl4eo",
                            str(shared_data / "ssl4eo_s12"), "--bigearthnet",
                            str(shared_data / "bigearthnet_pairs"), "--rows", "scratch",
                            "dual_s2", "--fractions", "0.05", "--seeds", "0",
                            "--pretrain-epochs", "1", "--pretrain-chips", "16", "--epochs", "1",
                            "--samples-per-epoch", "16", "--memory-bank", "32", "-o",
                            str(out)], capsys)  # fmt: skip
    assert code == 0, err
    record = json.loads((out / "ssl_sensors.json").read_text())
    assert len(record["scenes"]) == 1 + 2 + 6  # the other chip, 2 SSL4EO dates, 6 BigEarthNet
    (pre,) = record["pretraining"]
    assert pre["kind"] == "dual"
    assert pre["chips_per_epoch"] > 16
    assert sorted(r["row"] for r in record["runs"]) == ["dual_s2", "scratch"]
    for run in record["runs"]:
        assert 0.0 <= run["iou"] <= 1.0
        assert 0.03 < run["train_points"] / 210_000 < 0.07  # ~5 % of the train blocks' pixels
    assert "transductive" in (out / "ssl_sensors.md").read_text()
    assert (out / "ssl_sensors.png").is_file()
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["experiment", "ssl-sensors", "--root", str(tmp_path / "empty"),
                            "-o", str(tmp_path / "o")], capsys)  # fmt: skip
    assert code == 2
    assert "Sen1Floods11 chip missing" in err


@pytest.mark.parametrize("geometry", ["shared", "independent"])
def test_pair_geometry_keeps_the_sensor_pair_co_located_or_not(geometry: str) -> None:
    plain = {"brightness": 0.0, "contrast": 0.0, "band_dropout": 0.0, "blur": 0.0}
    task = ContrastiveTask(method="dual_simclr", in_channels={"s2": 2, "s1": 2}, pair_views=True,
                           pair_geometry=geometry, views=plain, memory_bank_size=0)  # fmt: skip
    seen: list[torch.Tensor] = []

    def embed(name: str, x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x.flatten(1)

    task.embed = embed  # type: ignore[method-assign]
    task.heads = torch.nn.ModuleDict({"s2": torch.nn.Identity(), "s1": torch.nn.Identity()})
    torch.manual_seed(0)
    x = torch.randn(8, 2, 16, 16)
    task._pair({"s2": x, "s1": x.clone()})
    a, b = seen
    assert not torch.equal(a, x)  # a view was drawn
    if geometry == "shared":
        torch.testing.assert_close(a, b)  # one crop / flip / turn for the pair
    else:
        assert (a - b).abs().amax(dim=(1, 2, 3)).gt(1e-3).sum() >= 6


def test_pair_geometry_unknown_name_is_one_line() -> None:
    with pytest.raises(LandlearnError, match="unknown pair_geometry 'same'"):
        ContrastiveTask(method="dual_simclr", pair_geometry="same")


def test_bank_warning_only_when_the_bank_holds_an_epoch() -> None:
    from landlearn.tasks.contrastive import bank_warning

    assert bank_warning(0, range(100)) is None  # no bank
    assert bank_warning(64, range(100)) is None  # smaller than an epoch
    assert bank_warning(64, object()) is None  # an iterable dataset: size unknown
    line = bank_warning(1024, range(732))
    assert line is not None
    assert "memory_bank_size 1024 >= the 732 training chips" in line


def test_a_fit_with_a_bank_larger_than_its_epoch_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from landlearn.data.aligned_datamodule import AlignedRasterDataModule

    rng = np.random.default_rng(0)
    _write(tmp_path / "s2.tif", rng.random((3, 64, 64)), 10.0)
    _write(tmp_path / "s1.tif", rng.random((2, 64, 64)), 10.0)
    dm = AlignedRasterDataModule(
        inputs={"s2": str(tmp_path / "s2.tif"), "s1": str(tmp_path / "s1.tif")},
        chip_size=16, samples_per_epoch=8, val_fraction=0.0, test_fraction=0.0, batch_size=4,
        seed=0,
    )  # fmt: skip
    task = ContrastiveTask(method="dual_simclr", encoder="test_resnet", use_inputs=["s2", "s1"],
                           memory_bank_size=16)  # fmt: skip
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with caplog.at_level("WARNING", logger="landlearn.tasks.contrastive"):
        trainer.fit(task, datamodule=dm)
    assert any("memory_bank_size 16 >= the 8 training chips" in r.message for r in caplog.records)
