"""Presto time-series datamodule: features, Presto's split, train-only statistics, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import fixture_maker

from landlearn.data.presto import PRESTO_BANDS, PrestoDataModule, load_presto, presto_features
from landlearn.errors import LandlearnError


@pytest.fixture(scope="module")
def presto(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake ``presto/`` folder (``fuel_moisture/npy``), see ``tests/data/presto/make.py``."""
    return fixture_maker("presto").make(tmp_path_factory.mktemp("presto"))


def test_features_columns_and_order(presto: Path) -> None:
    arrays = load_presto(presto)
    x, names = presto_features(arrays)
    assert x.shape == (60, 3 * 18 + 4)
    assert len(names) == x.shape[1]
    assert names[:2] == ["VV_m0", "VH_m0"]
    assert names[53] == "NDVI_m2"
    assert names[-4:] == ["lat", "lon", "month_sin", "month_cos"]
    assert x[7, 18 + 17] == arrays.eo[7, 1, 17]  # month-major: NDVI of month 1
    angle = 2 * np.pi * arrays.month[7, -1] / 12
    assert x[7, -2:] == pytest.approx([np.sin(angle), np.cos(angle)])
    only_eo, eo_names = presto_features(arrays, ["eo"])
    assert only_eo.shape == (60, 54)
    assert eo_names[17] == f"{PRESTO_BANDS[-1]}_m0"


def test_split_specs_and_train_only_statistics(presto: Path) -> None:
    dm = PrestoDataModule(presto / "fuel_moisture", batch_size=8)  # the task folder works too
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 40, "val": 0, "test": 20}
    spec, head = dm.input_spec, dm.head_spec
    assert spec is not None
    assert head is not None
    assert dm.input_specs == [spec]
    assert dm.head_specs == [head]
    assert spec.kind == "table"
    assert spec.name == "meta"
    assert list(spec.bands) == dm.columns
    raw_train = dm.arrays("train", normalized=False)[0].astype(np.float64)
    assert spec.mean is not None
    assert spec.mean[5] == pytest.approx(raw_train[:, 5].mean(), rel=1e-6)
    y_train = dm.arrays("train")[1]
    assert head.targets == ("lfmc",)
    assert head.units == ("%",)
    assert head.kind == "regression"
    assert head.mean == pytest.approx([y_train.mean()])
    assert head.std == pytest.approx([y_train.std()])
    x, _ = dm.arrays("train")
    assert np.abs(x.mean(0)).max() < 1e-5
    assert np.isfinite(x).all()
    assert x[3, 18] == 0.0  # the NaN observation (row 3, month 1, VV) became the mean
    assert dm.val_dataloader() == []


def test_batches_are_normalised_after_transfer(presto: Path) -> None:
    dm = PrestoDataModule(presto, batch_size=16, seed=1)
    batch = next(iter(dm.train_dataloader()))
    assert batch["meta"].shape == (16, 58)
    assert batch["target"].shape == (16, 1)
    assert batch["target"].dtype == torch.float32
    assert float(batch["target"].min()) > 1.0
    out = dm.on_after_batch_transfer(dict(batch), 0)
    spec = dm.input_spec
    assert spec is not None
    assert spec.mean is not None
    assert spec.std is not None
    want = (batch["meta"][0] - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    torch.testing.assert_close(out["meta"][0], torch.nan_to_num(want.float()))


def test_validation_holds_out_whole_sites(presto: Path) -> None:
    dm = PrestoDataModule(presto, val_fraction=0.25, seed=0)
    dm.setup()
    sites = load_presto(presto).site
    train, val = set(sites[dm.splits["train"]]), set(sites[dm.splits["val"]])
    assert len(val) == 2
    assert not train & val
    assert len(dm.splits["val"]) == 10
    assert len(dm.splits["test"]) == 20
    limited = PrestoDataModule(presto, limit_train=7)
    limited.setup()
    assert len(limited.splits["train"]) == 7


def test_bad_input(presto: Path, tmp_path: Path) -> None:
    with pytest.raises(LandlearnError, match=r"no Presto fuel_moisture files"):
        load_presto(tmp_path)
    with pytest.raises(LandlearnError, match=r"unknown Presto task 'fuel'; known: fuel_moisture"):
        load_presto(presto, task="fuel")
    with pytest.raises(LandlearnError, match=r"features must be distinct names from eo, latlon"):
        presto_features(load_presto(presto), ["eo", "ndvi"])
    broken = tmp_path / "broken"
    shutil.copytree(presto / "fuel_moisture" / "npy", broken)
    np.save(broken / "latlon.npy", np.zeros((59, 2)))
    with pytest.raises(LandlearnError, match=r"latlon.npy: 59 rows but target.npy has 60"):
        load_presto(broken)
    (broken / "month.npy").write_bytes(b"not npy")
    with pytest.raises(LandlearnError, match=r"month.npy: cannot read Presto array"):
        load_presto(broken)
    dm = PrestoDataModule(presto)
    with pytest.raises(LandlearnError, match=r"unknown split 'dev'; expected train, val or test"):
        dm.arrays("dev")


@pytest.mark.real
def test_real_fuel_moisture(shared_data: Path) -> None:
    dm = PrestoDataModule(shared_data / "presto" / "fuel_moisture", val_fraction=0.15)
    dm.setup()
    n = {k: len(v) for k, v in dm.splits.items()}
    assert n["test"] == 735
    assert n["train"] + n["val"] == 2313 - 735
    assert n["val"] > 0
    arrays = load_presto(shared_data / "presto")
    assert arrays.eo.shape == (2313, 3, 18)
    assert not set(arrays.site[dm.splits["test"]]) & set(arrays.site[dm.splits["train"]])
    for split in ("train", "val", "test"):
        x, y = dm.arrays(split)
        assert x.shape == (n[split], 58)
        assert x.dtype == np.float32
        assert np.isfinite(x).all()
        assert 30.0 <= y.min()
        assert y.max() <= 320.0
    x_train = dm.arrays("train")[0]
    assert np.abs(x_train.mean(0)).max() < 1e-4
    assert np.abs(x_train.std(0) - 1).max() < 1e-3
    head = dm.head_spec
    assert head is not None
    assert head.mean is not None
    assert 80 < head.mean[0] < 130
