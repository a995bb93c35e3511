"""Photos + table datamodule: views, training-only table statistics, photo linking, a fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import landlearn
from landlearn.data.image_table import ImageTableDataModule, link_photos
from landlearn.data.tables import read_table
from landlearn.errors import LandlearnError
from landlearn.experiments.fusion import controlled_table

ROLES = {"numeric": ["temp"], "boolean": ["snow"], "categorical": ["cover"],
         "date": ["when"], "latlon": ["lat", "lon"]}  # fmt: skip


def _table(root: Path, rows: int = 24) -> Path:
    rng = np.random.default_rng(0)
    (root / "photos").mkdir(parents=True)
    records = []
    for i in range(rows):
        label = "snow" if i % 2 else "clear"
        for view in ("north", "east"):
            pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "photos" / f"{i}_{view}.png")
        records.append({
            "north": f"photos/{i}_north.png", "east": f"photos/{i}_east.png",
            "temp": float(i), "snow": bool(i % 2), "cover": ["grass", "trees"][i % 3 == 0],
            "when": f"2024-{1 + i % 12:02d}-15", "lat": 4.6 + i / 100, "lon": -74.1,
            "label": label, "split": ["train", "train", "val", "test"][i % 4],
        })  # fmt: skip
    path = root / "obs.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    return path


def _dm(path: Path, **kw: object) -> ImageTableDataModule:
    options = {"split_column": "split", "size": 16, "batch_size": 4, **ROLES, **kw}
    return ImageTableDataModule(str(path), ["north", "east"], "label", **options)


def test_stacked_views_and_the_table_row(tmp_path: Path) -> None:
    dm = _dm(_table(tmp_path))
    dm.setup("fit")
    sample = dm.train_dataset[0]
    assert sample["image"].shape == (6, 16, 16)  # two RGB views stacked
    assert sample["meta"].ndim == 1
    assert sample["label"].ndim == 0
    specs = {s.name: s for s in dm.input_specs}
    assert specs["meta"].kind == "table"
    assert specs["image"].kind == "photos"
    assert specs["meta"].num_bands == sample["meta"].shape[0]
    assert specs["image"].bands[0].startswith("north:")
    assert dm.class_names == ["clear", "snow"]
    assert len(dm.train_dataset) == 12
    assert len(dm.val_dataset) == 6
    assert dm.table_state()["format"]


def test_collage_tiles_the_views(tmp_path: Path) -> None:
    dm = _dm(_table(tmp_path), views="collage")
    dm.setup("fit")
    image = dm.train_dataset[0]["image"]
    assert image.shape == (3, 16, 32)  # one row of two cells
    assert dm.input_specs[0].chip_size == 32


def test_table_statistics_come_from_training_rows_only(tmp_path: Path) -> None:
    path = _table(tmp_path)
    dm = _dm(path)
    dm.setup("fit")
    df = pd.read_csv(path)
    df.loc[df["split"] != "train", "temp"] = 1e6  # would move any statistic that saw them
    df.loc[df["split"] != "train", "cover"] = "sand"
    leaked = tmp_path / "leaked.csv"
    df.to_csv(leaked, index=False)
    other = _dm(leaked, root=str(tmp_path))
    other.setup("fit")
    assert other.table_state()["state"] == dm.table_state()["state"]
    unseen = other.val_dataset[0]["meta"]  # "sand" falls in the unknown bucket
    assert np.isfinite(unseen.numpy()).all()


def test_missing_photo_raises_with_row_and_column_or_is_skipped(tmp_path: Path) -> None:
    path = _table(tmp_path)
    (tmp_path / "photos" / "3_east.png").unlink()
    with pytest.raises(LandlearnError, match=r"row 5, column 'east': photo .*3_east.png not found"):
        _dm(path).setup("fit")
    dm = _dm(path, missing_photo="skip")
    dm.setup("fit")
    assert len(dm.train_dataset) + len(dm.val_dataset) + len(dm.test_dataset) == 23


def test_bad_tables_are_one_line_errors(tmp_path: Path) -> None:
    path = _table(tmp_path)
    df = pd.read_csv(path)
    df.loc[2, "split"] = "holdout"
    df.to_csv(path, index=False)
    with pytest.raises(LandlearnError, match="'holdout' is not train, val or test"):
        _dm(path).setup("fit")
    with pytest.raises(LandlearnError, match="no photo column 'west'"):
        link_photos(read_table(path), ["north", "west"])
    with pytest.raises(LandlearnError, match="views must be one of"):
        _dm(path, views="mosaic")
    df.loc[2, "split"] = "train"
    df["temp"] = df["temp"].astype(object)
    df.loc[4, "temp"] = "warm"
    df.to_csv(path, index=False)
    with pytest.raises(LandlearnError, match="'temp'"):
        _dm(path).setup("fit")


def test_fusion_of_photos_and_table_trains_and_bundles(tmp_path: Path) -> None:
    from landlearn.bundle import load_bundle
    from landlearn.tasks import ClassificationTask

    dm = _dm(_table(tmp_path))
    task = ClassificationTask(model="gated_fusion", model_kwargs={"encoder": "test_resnet"})
    result = landlearn.train(model=task, datamodule=dm, name="fuse", root=tmp_path / "runs",
                             report=False, accelerator="cpu", max_epochs=1,
                             enable_progress_bar=False)  # fmt: skip
    assert result.bundle is not None
    assert result.bundle.is_file()
    assert result.task.hparams["model_kwargs"]["tables"] == ["meta"]
    bundle = load_bundle(result.bundle)
    assert bundle.meta.model_kwargs["tables"] == ["meta"]
    assert [s.kind for s in bundle.meta.inputs] == ["photos", "table"]
    assert "accuracy" in " ".join(result.metrics)


@pytest.mark.real
def test_controlled_eurosat_table_links_label_and_table_as_set(
    shared_data: Path, tmp_path: Path
) -> None:
    root = shared_data / "eurosat_rgb"
    out = controlled_table(root, tmp_path / "inter.csv", setting="interaction", per_class=3,
                           val_per_class=1, test_per_class=2, seed=0)  # fmt: skip
    df = pd.read_csv(out)
    assert len(df) == 10 * (3 + 1 + 2)
    classes = sorted(df["eurosat_class"].unique())
    first = df["eurosat_class"].map(classes.index) < 5
    assert ((df["label"] == "positive") == (first ^ df["group"])).all()
    dial = controlled_table(root, tmp_path / "d1.csv", setting="dial", dial=1.0, per_class=3,
                            val_per_class=1, test_per_class=2, seed=0)  # fmt: skip
    d1 = pd.read_csv(dial)
    assert (d1["photo"] == df["photo"]).all()  # one seed: the same images for every setting
    signal = [f"t{i}" for i in range(1, 9)]
    dm = ImageTableDataModule(str(dial), ["photo"], "label", split_column="split", size=32,
                              numeric=signal, categorical=["site"])  # fmt: skip
    dm.setup("fit")
    assert dm.train_dataset[0]["image"].shape == (3, 32, 32)
    assert len(dm.class_names) == 10
    assert len(dm.test_dataset) == 20


@pytest.mark.real
def test_bigearthnet_pairs_resampled_to_10_m_train_a_multilabel_fusion(
    shared_data: Path, tmp_path: Path
) -> None:
    from landlearn.bundle import load_bundle
    from landlearn.data.bigearthnet import BigEarthNetPairsDataModule
    from landlearn.tasks import ClassificationTask

    dm = BigEarthNetPairsDataModule(str(shared_data / "bigearthnet_pairs"))
    facts = dm.describe()
    assert facts == {"pairs": 6, "classes": len(dm.class_names), "s2": [12, 120, 120],
                     "s1": [2, 120, 120]}  # fmt: skip
    sample = dm.train_dataset[0]
    assert sample["label"].sum() >= 1  # multi-hot CORINE labels
    task = ClassificationTask(model="gated_fusion", mode="multilabel", loss="bce",
                              model_kwargs={"encoder": "test_resnet"})  # fmt: skip
    result = landlearn.train(model=task, datamodule=dm, name="ben", root=tmp_path,
                             report=False, accelerator="cpu", max_epochs=1,
                             enable_progress_bar=False)  # fmt: skip
    assert result.metrics["samples"] == 2
    pred = load_bundle(result.bundle)
    assert [s.name for s in pred.meta.inputs] == ["s2", "s1"]
    assert pred.meta.heads[0].kind == "multilabel"
    out = pred.predict({"s2": sample["s2"], "s1": sample["s1"]})
    assert out["classification"].shape == (1, len(dm.class_names))
