"""The supervised task over named inputs and heads: hooks, regression, two inputs."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from tests.conftest import fixture_maker
from torch import nn

from landlearn.data.aligned_datamodule import AlignedRasterDataModule
from landlearn.data.presto import PrestoDataModule
from landlearn.errors import LandlearnError
from landlearn.tasks import ClassificationTask, RegressionTask, SegmentationTask, SupervisedTask

SEN1FLOODS11 = "sen1floods11"


def _trainer(tmp_path: Path, **kwargs: object) -> pl.Trainer:
    options: dict[str, object] = {
        "accelerator": "cpu", "max_epochs": 1, "default_root_dir": tmp_path, "logger": False,
        "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
    }  # fmt: skip
    return pl.Trainer(**{**options, **kwargs})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def presto(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(fixture_maker("presto").make(tmp_path_factory.mktemp("presto")))


# ---- regression ----------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["mse", "gaussian_nll"])
def test_regression_task_trains_and_scores_in_target_units(
    presto: Path, tmp_path: Path, loss: str
) -> None:
    """The test metrics equal MAE / RMSE / R² computed by hand from ``predict`` on the same rows."""
    pl.seed_everything(0)
    dm = PrestoDataModule(presto, batch_size=16, val_fraction=0.25)
    task = RegressionTask(model="mlp_regressor", model_kwargs={"hidden": [32]}, loss=loss, lr=0.01)
    trainer = _trainer(tmp_path, max_epochs=3)
    trainer.fit(task, datamodule=dm)
    assert task.monitor == "val_rmse"
    assert task.monitor_mode == "min"
    assert "val_rmse" in trainer.callback_metrics
    assert "val_r2" in trainer.callback_metrics
    trainer.test(task, datamodule=dm, verbose=False)
    got = task.test_results
    assert got is not None
    assert got["targets"] == ["lfmc"]
    x, y = dm.arrays("test")  # normalised features, targets in %
    task.eval()
    with torch.no_grad():
        pred = task.predict_step({"meta": torch.as_tensor(x)}, 0).double().numpy()
    assert pred.shape == (len(y), 1)
    err = pred[:, 0] - y
    assert got["mae"] == pytest.approx(np.abs(err).mean(), rel=1e-5)
    assert got["rmse"] == pytest.approx(math.sqrt((err**2).mean()), rel=1e-5)
    r2 = 1 - (err**2).sum() / ((y - y.mean()) ** 2).sum()
    assert got["r2"] == pytest.approx(r2, rel=1e-4, abs=1e-6)
    assert (got["nll"] is not None) == (loss == "gaussian_nll")
    assert task.model is not None
    assert task.model.out.out_features == (2 if loss != "mse" else 1)


def test_regression_task_refuses_a_class_loss_and_a_wrong_target_count(
    presto: Path, tmp_path: Path
) -> None:
    with pytest.raises(LandlearnError, match="regression loss"):
        RegressionTask(model="mlp_regressor", loss="ce")
    task = RegressionTask(model="mlp_regressor", num_targets=3)
    with pytest.raises(LandlearnError, match="num_targets=3 but the data's head"):
        _trainer(tmp_path, fast_dev_run=1).fit(task, datamodule=PrestoDataModule(presto))


# ---- hooks -----------------------------------------------------------------------------------


class _L1Task(ClassificationTask):
    """A subclass that swaps the loss through the hook, as a user would."""

    def configure_losses(self, datamodule: object = None) -> None:
        self.losses = nn.ModuleDict({self.head_names[0]: _SoftL1()})


class _SoftL1(nn.Module):
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        onehot = nn.functional.one_hot(target, logits.shape[1]).float()
        return (logits.softmax(1) - onehot).abs().mean()


def test_the_hooks_build_model_losses_and_metrics_per_head(images: Path, tmp_path: Path) -> None:
    from landlearn.data.datamodules import ImageFolderDataModule

    dm = ImageFolderDataModule(root=images / "rgb", batch_size=4, val_fraction=0.25)
    task = _L1Task(model="small_cnn", lr=0.01)
    _trainer(tmp_path, fast_dev_run=2).fit(task, datamodule=dm)
    assert isinstance(task.losses["classification"], _SoftL1)
    assert list(task.val_metrics) == ["classification"] == task.head_names
    assert task.input_names == ["image"]
    assert [s.name for s in task.input_specs] == ["image"]
    assert isinstance(task, SupervisedTask)


def test_a_single_input_model_on_two_inputs_is_one_line(tmp_path: Path) -> None:
    dm = _two_input_module(tmp_path)
    task = SegmentationTask(model="unet", model_kwargs={"encoder": "resnet18"})
    with pytest.raises(LandlearnError, match="reads one input but the data gives 2 \\(s2, s1\\)"):
        _trainer(tmp_path, fast_dev_run=1).fit(task, datamodule=dm)


def _two_input_module(tmp_path: Path) -> AlignedRasterDataModule:
    """A small two-sensor scene on one grid: 4 optical bands, 2 radar bands, a water label."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    h = w = 96
    water = np.zeros((h, w), np.uint8)
    water[:, : w // 3] = 1
    opt = rng.normal(0.2, 0.02, (4, h, w)).astype(np.float32)
    opt[3] -= 0.15 * water
    sar = rng.normal(-10, 1, (2, h, w)).astype(np.float32) - 8 * water
    paths = {}
    for name, data in (("s2", opt), ("s1", sar), ("label", water[None])):
        path = tmp_path / f"{name}.tif"
        with rasterio.open(
            path, "w", driver="GTiff", width=w, height=h, count=data.shape[0], dtype=data.dtype,
            crs="EPSG:32633", transform=from_origin(500_000, 5_000_000, 10, 10),
        ) as dst:  # fmt: skip
            dst.write(data)
        paths[name] = str(path)
    return AlignedRasterDataModule(
        inputs={"s2": paths["s2"], "s1": paths["s1"]}, label=paths["label"], chip_size=32,
        samples_per_epoch=16, batch_size=4, val_fraction=0.25, test_fraction=0.25,
        class_names=["land", "water"],
    )  # fmt: skip


def test_two_inputs_train_validate_test_and_keep_examples(tmp_path: Path) -> None:
    """Each input reaches the early-fusion model by name.

    Each input reaches the early-fusion model under its own name; the report's examples come
    from the first input; TTA averages over the same transform of both inputs.
    """
    pl.seed_everything(0)
    dm = _two_input_module(tmp_path)
    task = SegmentationTask(model="early_fusion_unet", model_kwargs={"encoder": "resnet18"},
                            num_examples=2, tta="d4")  # fmt: skip
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(task, datamodule=dm)
    assert task.hparams["in_channels"] == {"s2": 4, "s1": 2}
    assert task.input_names == ["s2", "s1"]
    assert task.is_multi_input
    trainer.test(task, datamodule=dm, verbose=False)
    assert task.test_results is not None
    assert 0 <= task.test_results["miou"] <= 1
    assert len(task.test_examples["image"]) == 2
    assert task.test_examples["image"][0].shape == (32, 32, 3)
    batch = dm.on_after_batch_transfer(next(iter(dm.test_dataloader())), 0)
    x = task.inputs(batch)
    assert isinstance(x, dict)
    assert list(x) == ["s2", "s1"]
    with torch.no_grad():
        task.eval()
        plain = task.probs(task(x))
        turned = task.probs(task({k: v.flip(-1) for k, v in x.items()})).flip(-1)
        tta = task.predict_step(batch, 0)
    # the d4 mean contains the flipped prediction turned back: it lies between the two
    assert tta.shape == plain.shape
    assert not torch.equal(tta, plain)
    assert torch.isfinite(turned).all()


@pytest.mark.real
def test_real_early_fusion_trains_on_spain_and_tests_on_india(
    shared_data: Path, tmp_path: Path
) -> None:
    """S1 + S2 train on Spain and test on India.

    S1 + S2 of Sen1Floods11's Spain chip train the early-fusion U-Net a few steps; India's
    chip is the test split: water IoU is a finite number between 0 and 1.
    """
    root = shared_data / SEN1FLOODS11

    def files(site: str) -> dict[str, str]:
        return {"s2": str(root / "S2" / f"{site}_S2Hand.tif"),
                "s1": str(root / "S1" / f"{site}_S1Hand.tif")}  # fmt: skip

    dm = AlignedRasterDataModule(
        inputs=files("Spain_7370579"), label=str(root / "Labels" / "Spain_7370579_LabelHand.tif"),
        test_inputs=files("India_900498"),
        test_label=str(root / "Labels" / "India_900498_LabelHand.tif"),
        remap={0: 0, 1: 1}, class_names=["not_water", "water"], chip_size=64,
        samples_per_epoch=16, val_fraction=0.2, test_fraction=0.0, batch_size=8,
    )  # fmt: skip
    pl.seed_everything(0)
    task = SegmentationTask(model="early_fusion_unet", model_kwargs={"encoder": "resnet18"})
    trainer = _trainer(tmp_path, max_epochs=1, limit_val_batches=1, limit_test_batches=4)
    trainer.fit(task, datamodule=dm)
    assert task.hparams["in_channels"] == {"s2": 13, "s1": 2}
    specs = {s.name: s for s in task.input_specs}
    assert specs["s1"].mean is not None
    assert specs["s1"].mean[0] < 0
    trainer.test(task, datamodule=dm, verbose=False)
    assert task.test_results is not None
    iou = task.test_results["per_class"]["iou"][1]
    assert iou is not None
    assert 0.0 <= iou <= 1.0
    assert math.isfinite(iou)
