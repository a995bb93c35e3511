"""Image-folder classification, colour tables, image + mask folders, sparse points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from landlearn.conventions import IGNORE_INDEX
from landlearn.data.folders import (
    ColorTable,
    ImageFolderDataset,
    MaskFolderDataset,
    sparse_points,
)
from landlearn.errors import LandlearnError


def test_image_folder_rgb(images: Path) -> None:
    ds = ImageFolderDataset(images / "rgb")
    assert ds.classes == ["Forest", "River", "Urban"]
    assert len(ds) == 20
    assert ds.targets.count(0) == 10
    assert ds.band_names == ["red", "green", "blue"]
    sample = ds[12]
    assert sample["image"].shape == (3, 16, 16)
    assert sample["image"].dtype == torch.float32
    assert sample["image"].max() > 1  # raw units, not normalised
    assert sample["label"].dtype == torch.int64
    assert int(sample["label"]) == ds.targets[12]


def test_image_folder_geotiff_bands(images: Path) -> None:
    ds = ImageFolderDataset(images / "ms", bands=[4, 1])
    assert ds.band_names == ["B08", "B02"]
    assert ds[0]["image"].shape == (2, 16, 16)


def test_image_folder_files_and_subset(images: Path) -> None:
    files = sorted((images / "rgb" / "River").glob("*.jpg"))[:2]
    files += sorted((images / "rgb" / "Urban").glob("*.jpg"))[:1]
    ds = ImageFolderDataset(files=files)
    assert ds.classes == ["River", "Urban"]
    assert ds.targets == [0, 0, 1]
    sub = ds.subset([2])
    assert sub.targets == [1]
    assert sub.classes == ds.classes


def test_image_folder_errors(tmp_path: Path, images: Path) -> None:
    with pytest.raises(LandlearnError, match="not found"):
        ImageFolderDataset(tmp_path / "missing")
    with pytest.raises(LandlearnError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "Forest").mkdir()
    (tmp_path / "Forest" / "notes.txt").write_text("x")
    with pytest.raises(LandlearnError, match="class folder has no images") as err:
        ImageFolderDataset(tmp_path)
    assert err.value.path == str(tmp_path / "Forest")
    with pytest.raises(LandlearnError, match="not among classes"):
        ImageFolderDataset(images / "rgb", classes=["Forest", "River"])


def test_color_table_csv_formats(masks: Path) -> None:
    dg = ColorTable.from_csv(masks / "deepglobe" / "classes.csv")
    assert dg.class_names == ["urban_land", "agriculture_land", "water"]
    assert dg.class_colors[2] == [0, 0, 255]
    dubai = ColorTable.from_csv(masks / "dubai" / "classes.csv")
    assert dubai.class_names == ["Building", "Land", "Water"]
    assert dubai.class_colors[0] == [0x3C, 0x10, 0x98]
    rgb = np.array([[[0, 0, 255], [0, 0, 0]], [[0, 255, 255], [255, 255, 0]]], np.uint8)
    out = dg.encode(rgb)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[2, IGNORE_INDEX], [0, 1]])


def test_color_table_unknown_colour_names_file_colour_pixel() -> None:
    table = ColorTable(["a", "b"], ["#000000", (255, 0, 0)])
    rgb = np.zeros((5, 12, 3), np.uint8)
    rgb[3, 9] = (12, 200, 7)
    with pytest.raises(LandlearnError, match=r"\(12, 200, 7\) at row 3, col 9") as err:
        table.encode(rgb, path="m.png")
    assert err.value.path == "m.png"
    with pytest.raises(LandlearnError, match="same colour"):
        ColorTable(["a", "b"], ["#000000", (0, 0, 0)])
    with pytest.raises(LandlearnError, match="RGB mask"):
        table.encode(np.zeros((4, 4), np.uint8))


def test_color_table_bad_csv(tmp_path: Path) -> None:
    bad = tmp_path / "c.csv"
    bad.write_text("label,value\nx,1\n")
    with pytest.raises(LandlearnError, match="name,hex"):
        ColorTable.from_csv(bad)


def test_mask_folder_deepglobe_naming_and_chips(masks: Path) -> None:
    root = masks / "deepglobe"
    table = ColorTable.from_csv(root / "classes.csv")
    ds = MaskFolderDataset(root / "images", root / "masks", table, chip_size=32)
    assert [p.name for p in ds.masks] == [f"{i}_mask.png" for i in (11, 22, 33, 44)]
    assert len(ds) == 4 * 2 * 2  # 40 × 48 → 2 × 2 chips of 32
    sample = ds[1]  # top-right chip: cols 32..64 of 48, so 16 padded columns
    assert sample["image"].shape == (3, 32, 32)
    assert sample["mask"].dtype == torch.int64
    assert (sample["mask"][:, 16:] == IGNORE_INDEX).all()
    assert set(sample["mask"][:, :16].unique().tolist()) <= {0, 1, 2, IGNORE_INDEX}
    whole = MaskFolderDataset(root / "images", root / "masks", table, files=["22_sat.jpg"])
    assert len(whole) == 1
    assert whole[0]["mask"].shape == (40, 48)
    counts = whole.label_counts()
    assert counts[:3].sum() + (whole[0]["mask"] == IGNORE_INDEX).sum() == 40 * 48


def test_mask_folder_same_names_and_same_folder(masks: Path, tmp_path: Path) -> None:
    root = masks / "dubai"
    table = ColorTable.from_csv(root / "classes.csv")
    ds = MaskFolderDataset(root / "images", root / "masks", table)
    assert [p.stem for p in ds.files] == [p.stem for p in ds.masks]
    both = masks / "deepglobe"
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in [*(both / "images").iterdir(), *(both / "masks").iterdir()]:
        (flat / p.name).write_bytes(p.read_bytes())
    ds = MaskFolderDataset(flat, flat, ColorTable.from_csv(both / "classes.csv"))
    assert len(ds) == 4
    assert all(m.stem.endswith("_mask") for m in ds.masks)


def test_mask_folder_index_masks_remap(masks: Path) -> None:
    root = masks / "index"
    ds = MaskFolderDataset(root / "images", root / "masks", remap={1: 0, 2: 1, 8: 2})
    values = set(torch.cat([ds[i]["mask"].flatten() for i in range(len(ds))]).tolist())
    assert values == {0, 1, 2, IGNORE_INDEX}  # code 0 is unmapped → ignored
    assert ds.band_names == ["B1", "B2", "B3"]


def test_mask_folder_errors(masks: Path) -> None:
    bad = masks / "badcolour"
    table = ColorTable.from_csv(masks / "deepglobe" / "classes.csv")
    ds = MaskFolderDataset(bad / "images", bad / "masks", table)
    with pytest.raises(LandlearnError, match=r"\(12, 200, 7\) at row 5, col 7") as err:
        ds[0]
    assert err.value.path is not None
    assert err.value.path.endswith("x_mask.png")
    with pytest.raises(LandlearnError, match="no colour table"):
        MaskFolderDataset(bad / "images", bad / "masks")[0]
    mm = masks / "mismatch"
    with pytest.raises(LandlearnError, match=r"image m.png is 20×20 but mask m.png is 20×24"):
        MaskFolderDataset(mm / "images", mm / "masks")
    with pytest.raises(LandlearnError, match="no mask for image"):
        MaskFolderDataset(masks / "dubai" / "images", masks / "index" / "masks")


def test_mask_folder_palette_png_decodes_its_colours_not_its_indices(tmp_path: Path) -> None:
    # A palette PNG whose palette order is not the colour table's (Dubai's tile 2: index 0 is
    # Land, the table starts with Building): with a table the colours are the labels.
    from PIL import Image

    table = ColorTable(["a", "b", "unknown"], ["#FF0000", "#00FF00", "#9B9B9B"])
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images" / "t.png")
    pal = Image.fromarray(np.array([[0, 1, 2, 3]] * 4, np.uint8), mode="P")
    pal.putpalette([0, 255, 0, 155, 155, 155, 255, 0, 0, 0, 255, 0] + [0] * 756)
    pal.save(tmp_path / "masks" / "t.png")
    ds = MaskFolderDataset(tmp_path / "images", tmp_path / "masks", table)
    np.testing.assert_array_equal(ds[0]["mask"][0].numpy(), [1, IGNORE_INDEX, 0, 1])
    Image.fromarray(np.array([[0, 1, 2, 5]] * 4, np.uint8), mode="L").save(
        tmp_path / "masks" / "t.png"
    )  # index codes beyond the table are a one-line error, not a loss-time IndexError
    with pytest.raises(LandlearnError, match="mask code 5 but the colour table has 2 classes"):
        MaskFolderDataset(tmp_path / "images", tmp_path / "masks", table)[0]


def test_sparse_points_keeps_fraction_per_class() -> None:
    mask = np.zeros((20, 20), np.int64)
    mask[:, 10:] = 1
    mask[0, 0] = IGNORE_INDEX
    sparse = sparse_points(mask, 0.1, seed=3)
    assert (sparse == 0).sum() == round(0.1 * 199)
    assert (sparse == 1).sum() == 20
    assert sparse[0, 0] == IGNORE_INDEX
    np.testing.assert_array_equal(sparse, sparse_points(mask, 0.1, seed=3))
    tiny = sparse_points(torch.from_numpy(mask), 0.001, seed=0)
    assert isinstance(tiny, torch.Tensor)
    assert (tiny == 0).sum() == 1
    assert (tiny == 1).sum() == 1


@pytest.mark.real
def test_real_dubai_colour_table(shared_data: Path) -> None:
    root = shared_data / "dubai"
    table = ColorTable.from_csv(root / "classes.csv")
    assert table.class_names == ["Building", "Land", "Road", "Vegetation", "Water"]
    ds = MaskFolderDataset(
        root / "tile1" / "images", root / "tile1" / "masks", table, chip_size=256,
        files=["image_part_001.jpg"],
    )  # fmt: skip
    assert len(ds) == 4 * 3  # 644 × 797 px → 3 rows × 4 cols of 256
    sample = ds[0]
    assert sample["image"].shape == (3, 256, 256)
    assert set(sample["mask"].unique().tolist()) <= {0, 1, 2, 3, 4, IGNORE_INDEX}


@pytest.mark.real
def test_real_dubai_tile2_palette_masks_match_the_readme_counts(shared_data: Path) -> None:
    # Tile 2's masks are palette PNGs in another order than classes.csv: the counts the data
    # README gives per colour must come out per class (Land 1,487,689 is the largest).
    root = shared_data / "dubai"
    table = ColorTable.from_csv(root / "classes.csv")
    ds = MaskFolderDataset(root / "tile2" / "images", root / "tile2" / "masks", table, chip_size=64)
    codes = np.concatenate([ds.decode_mask(k).ravel() for k in range(len(ds.masks))])
    counts = np.bincount(codes[codes != IGNORE_INDEX], minlength=table.num_classes)
    named = dict(zip(table.class_names, counts.tolist(), strict=True))
    assert named == {"Building": 306_455, "Land": 1_487_689, "Road": 316_813,
                     "Vegetation": 143_896, "Water": 181_051}  # fmt: skip


@pytest.mark.real
def test_real_deepglobe_pair_as_chips(shared_data: Path) -> None:
    root = shared_data / "deepglobe" / "train"
    table = ColorTable.from_csv(shared_data / "deepglobe" / "classes.csv")
    ds = MaskFolderDataset(root, root, table, chip_size=512, files=["794214_sat.jpg"])
    assert len(ds) == 5 * 5  # 2448² in 512 chips, last row / col padded
    last = ds[len(ds) - 1]
    assert last["image"].shape == (3, 512, 512)
    assert (last["mask"][400:, :] == IGNORE_INDEX).all()  # 2448 - 4 * 512 = 400 real rows
    values = set(last["mask"][:400, :400].unique().tolist())
    assert values <= {3, 4, 5}  # 794214 holds only forest, water and barren land


@pytest.mark.real
def test_real_eurosat_rgb_subset(shared_data: Path) -> None:
    root = shared_data / "eurosat_rgb" / "train"
    files = [root / c / f"{c}_{i}.jpg" for c in ("Forest", "River", "SeaLake") for i in (1, 2)]
    ds = ImageFolderDataset(files=files)
    assert ds.classes == ["Forest", "River", "SeaLake"]
    assert ds.band_names == ["red", "green", "blue"]
    sample = ds[5]
    assert sample["image"].shape == (3, 64, 64)
    assert int(sample["label"]) == 2
