"""Issue #20: ``map_many`` / ``landlearn map SCENES… --out-dir`` with the local engine.

Four scenes, a re-run that does nothing, a changed bundle that redoes everything, a blocked big
scene equal to the one-piece map, a corrupt scene among good ones, an injected fault retried,
and scene lists of named inputs for a two-input bundle.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from mapping_helpers import FusionConv, make_bundle, smooth_scene, write_tif

from landlearn.bundle import meta_from_specs, save_bundle
from landlearn.cli.main import main
from landlearn.errors import LandlearnError
from landlearn.mapping import map_scene
from landlearn.scale import map_many, read_scene_list
from landlearn.scale.engines import FAULT_ENV
from landlearn.schema import HeadSpec, InputSpec

FAST = {"tile": 64, "overlap": 16}


def sha(path: Path) -> str:
    """The file's SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outputs(folder: Path) -> dict[str, str]:
    """Hashes of every map and sidecar in ``folder`` (not the run's records)."""
    skip = {"manifest.json", "catalogue.json", "footprints.geojson"}  # the run's own records
    return {p.name: sha(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name not in skip}


def test_four_scenes_give_four_maps_a_mosaic_and_a_catalogue(
    tmp_path: Path, bundle: Path, scenes: list[Path]
) -> None:
    out = tmp_path / "maps"
    result = map_many(bundle, scenes, out, **FAST)
    assert result.done == [f"tile_{i}" for i in range(4)]
    assert not result.failed
    assert not result.skipped
    for i, scene in enumerate(scenes):  # each map is the one-scene map, byte for byte
        alone = tmp_path / "alone" / f"tile_{i}.tif"
        alone.parent.mkdir(exist_ok=True)
        map_scene(bundle, scene, alone, **FAST)
        with rasterio.open(alone) as a, rasterio.open(out / f"tile_{i}.tif") as b:
            assert np.array_equal(a.read(), b.read())
            assert a.profile == b.profile
    with rasterio.open(result.mosaics[0]) as vrt:
        assert vrt.crs.to_epsg() == 32633
        assert vrt.count == 2
        colours = vrt.colormap(1)
        assert colours[0][:3] != colours[1][:3]
        classes = vrt.read(1)
        assert vrt.width == 3 * 200 + 170  # four tiles 2 km apart at 10 m
        with rasterio.open(out / "tile_3.tif") as last:
            window = vrt.window(*last.bounds)
            assert np.array_equal(vrt.read(1, window=window), last.read(1))
    assert (classes == 255).any()  # the gaps between tiles are no-data
    cat = json.loads(result.catalogue.read_text())
    assert [s["name"] for s in cat["scenes"]] == result.done
    total = cat["total"]["areas"]
    for name in ("class_0", "class_1", "class_2"):
        assert total[name] == pytest.approx(sum(s["areas"][name] for s in cat["scenes"]), abs=1e-3)
    area_km2 = sum(s["width"] * s["height"] for s in cat["scenes"]) * 100 / 1e6
    assert sum(total.values()) == pytest.approx(area_km2, rel=1e-3)
    feats = json.loads(result.footprints.read_text())["features"]
    assert len(feats) == 4
    lon, lat = feats[0]["geometry"]["coordinates"][0][0]
    assert 14 < lon < 16  # EPSG:32633 easting 500 km: about 15° E
    assert 45 < lat < 47
    assert feats[0]["properties"]["area_class_0"] == cat["scenes"][0]["areas"]["class_0"]


def test_a_rerun_does_nothing_and_a_changed_bundle_redoes_everything(
    tmp_path: Path, bundle: Path, scenes: list[Path]
) -> None:
    out = tmp_path / "maps"
    map_many(bundle, scenes, out, **FAST)
    before = outputs(out)
    again = map_many(bundle, scenes, out, **FAST)
    assert again.done == []
    assert len(again.skipped) == 4
    assert outputs(out) == before
    (out / "tile_2.tif.aux.xml").unlink()  # a map whose sidecar is gone is stale
    fixed = map_many(bundle, scenes, out, **FAST)
    assert fixed.done == ["tile_2"]
    assert outputs(out) == before
    make_bundle(bundle, "test_conv3x3", seed=1)  # retrained: every scene is stale
    redone = map_many(bundle, scenes, out, **FAST)
    assert len(redone.done) == 4
    after = outputs(out)
    assert after["tile_0.tif"] != before["tile_0.tif"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["scenes"]) == {f"tile_{i}" for i in range(4)}
    assert manifest["scenes"]["tile_0"]["output_sha256"] == after["tile_0.tif"]


def test_a_blocked_big_scene_equals_the_one_piece_map(
    tmp_path: Path, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from landlearn.mapping import join

    caches: list[int] = []  # GDAL's cache while the blocks are copied into one COG

    def copy(*args: object) -> None:
        caches.append(int(rasterio.env.getenv()["GDAL_CACHEMAX"]))
        real_copy(*args)  # type: ignore[arg-type]

    real_copy = join.copy_to_cog
    monkeypatch.setattr(join, "copy_to_cog", copy)
    scene = write_tif(tmp_path / "big.tif", smooth_scene(610, 700, seed=5))
    opts = {**FAST, "probabilities": True}
    one = tmp_path / "one.tif"
    map_scene(bundle, scene, one, **opts)
    result = map_many(bundle, [scene], tmp_path / "maps", block=256, **opts)
    assert result.done == ["big"]
    # bounded, not GDAL's default of 5 % of the machine's memory (the worker's peak RSS)
    assert caches == [256 << 20]
    assert result.windows > 0
    blocked = tmp_path / "maps" / "big.tif"
    with rasterio.open(one) as a, rasterio.open(blocked) as b:
        assert a.profile == b.profile
        assert a.descriptions == b.descriptions
        assert np.array_equal(a.read(1), b.read(1))
        pa, pb = a.read().astype(np.float64), b.read().astype(np.float64)
        scale = np.array(a.scales, np.float64)[:, None, None]
        assert np.abs((pa - pb) * scale).max() <= 1e-5
        assert a.colormap(1) == b.colormap(1)
    areas = [
        json.loads(p.read_text())["classes"]
        for p in (tmp_path / "one.areas.json", tmp_path / "maps" / "big.areas.json")
    ]
    assert areas[0] == areas[1]
    assert not (tmp_path / "maps" / ".landlearn-blocks").exists()


def test_a_corrupt_scene_is_reported_in_one_line_and_the_others_finish(
    tmp_path: Path, bundle: Path, scenes: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "in" / "broken.tif"
    bad.write_bytes(scenes[0].read_bytes()[:3000])  # a truncated download
    out = tmp_path / "maps"
    code = main(["-q", "map", str(bundle), str(scenes[0]), str(bad), str(scenes[1]),
                 "--out-dir", str(out), "--tile", "64", "--overlap", "16"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert [line for line in err if "broken" in line] == err[-1:]
    assert err[-1].startswith("error: ")
    assert "broken.tif" in err[-1]
    assert sorted(p.name for p in out.glob("*.tif")) == ["tile_0.tif", "tile_1.tif"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    cat = json.loads((out / "catalogue.json").read_text())
    failed = [s for s in cat["scenes"] if s["status"] == "failed"]
    assert [s["name"] for s in failed] == ["broken"]
    assert "broken.tif" in failed[0]["error"]


def test_a_failed_unit_is_retried_and_the_outputs_are_the_same(
    tmp_path: Path, bundle: Path, scenes: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = map_many(bundle, scenes, tmp_path / "clean", **FAST)
    fault = tmp_path / "fault"
    fault.write_text("x")
    monkeypatch.setenv(FAULT_ENV, str(fault))
    result = map_many(bundle, scenes, tmp_path / "faulty", **FAST)
    assert result.retried == 1
    assert not fault.exists()
    assert result.done == clean.done
    assert outputs(tmp_path / "faulty") == outputs(tmp_path / "clean")
    fault.write_text("x")
    none = map_many(bundle, scenes[:1], tmp_path / "no-retry", retries=0, **FAST)
    assert list(none.failed) == ["tile_0"]
    assert "injected fault" in none.failed["tile_0"]
    assert not list((tmp_path / "no-retry").glob("tile_0*"))


def test_bad_arguments_are_one_line_before_anything_is_mapped(
    tmp_path: Path, bundle: Path, scenes: list[Path]
) -> None:
    with pytest.raises(LandlearnError, match="unknown engine"):
        map_many(bundle, scenes, tmp_path / "m", engine="spark")
    with pytest.raises(LandlearnError, match=r"two scenes would write tile_0\.tif"):
        map_many(bundle, [scenes[0], scenes[0]], tmp_path / "m")
    with pytest.raises(LandlearnError, match="bundle not found"):
        map_many(tmp_path / "nope.safetensors", scenes, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_ray_missing_is_one_line_naming_the_extra(
    tmp_path: Path, bundle: Path, scenes: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(LandlearnError, match=r"pip install 'landlearn\[ray\]'"):
        map_many(bundle, scenes, tmp_path / "m", engine="ray")
    assert not list((tmp_path / "m").glob("*.tif"))


S2 = ("blue", "green", "red", "nir")
S1 = ("VV", "VH")


@pytest.fixture
def fusion_bundle(tmp_path: Path) -> Path:
    """A two-input (s2 4 bands, s1 2 bands) 3×3-conv bundle."""
    torch.manual_seed(0)
    inputs = [
        InputSpec("s2", "raster", bands=S2, mean=[100.0] * 4, std=[50.0] * 4, chip_size=32),
        InputSpec("s1", "raster", bands=S1, mean=[-12.0, -18.0], std=[3.0, 4.0], chip_size=32),
    ]
    head = HeadSpec("segmentation", "segmentation", classes=["land", "water", "cloud"])
    meta = meta_from_specs(inputs, [head], model="test_fusion_conv3x3")
    return save_bundle(tmp_path / "fusion.safetensors", FusionConv({"s2": 4, "s1": 2}, 3), meta)


@pytest.mark.parametrize("fmt", ["csv", "yaml"])
def test_scene_pairs_from_a_list_map_a_two_input_bundle(
    tmp_path: Path, fusion_bundle: Path, fmt: str
) -> None:
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i in range(2):
        write_tif(folder / f"s2_{i}.tif", smooth_scene(80, 90, seed=i), descriptions=S2)
        s1 = -15 + smooth_scene(80, 90, bands=2, seed=9 + i).astype(np.float32) / 4000.0
        write_tif(folder / f"s1_{i}.tif", s1.astype(np.float32), descriptions=S1)
    if fmt == "csv":
        text = "name,s2,s1\n" + "".join(f"site{i},s2_{i}.tif,s1_{i}.tif\n" for i in range(2))
    else:
        text = "scenes:\n" + "".join(
            f"  - {{name: site{i}, s2: s2_{i}.tif, s1: s1_{i}.tif}}\n" for i in range(2)
        )
    listing = folder / f"scenes.{fmt}"
    listing.write_text(text)
    scenes = read_scene_list(listing)
    assert scenes[0] == {"name": "site0", "s2": str(folder / "s2_0.tif"),
                         "s1": str(folder / "s1_0.tif")}  # fmt: skip
    out = tmp_path / "maps"
    assert main(["-q", "map", str(fusion_bundle), str(listing), "--out-dir", str(out),
                 "--tile", "32", "--overlap", "8"]) == 0  # fmt: skip
    for i in range(2):
        alone = tmp_path / f"alone_{i}.tif"
        src = {"s2": str(folder / f"s2_{i}.tif"), "s1": str(folder / f"s1_{i}.tif")}
        map_scene(fusion_bundle, src, alone, tile=32, overlap=8)
        with rasterio.open(alone) as a, rasterio.open(out / f"site{i}.tif") as b:
            assert np.array_equal(a.read(), b.read())


def test_a_bad_scene_list_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "scenes.yaml"
    bad.write_text("scenes: {a: 1}\n")
    with pytest.raises(LandlearnError, match="expected a list"):
        read_scene_list(bad)
    empty = tmp_path / "scenes.csv"
    empty.write_text("s2,s1\n")
    with pytest.raises(LandlearnError, match="empty"):
        read_scene_list(empty)
