"""map_scene end to end on small generated GeoTIFFs with tiny test-only models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from mapping_helpers import make_bundle, smooth_scene, write_tif

from landlearn.bundle import load_bundle
from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.mapping import map_scene
from landlearn.mapping.blend import TileGrid, weight_window
from landlearn.mapping.scene import predict_scene_array


def reference_probabilities(
    bundle: Path, scene: Path, tile: int, overlap: int, blend: str
) -> np.ndarray:
    """Straightforward in-memory sliding window: whole padded scene, whole-scene accumulator."""
    pred = load_bundle(bundle)
    with rasterio.open(scene) as src:
        img = src.read().astype(np.float32)
    _, h, w = img.shape
    g = TileGrid.build(h, w, tile, overlap)
    m = g.margin
    hp, wp = g.y0(g.rows - 1) + g.tile_h + m, g.x0(g.cols - 1) + g.tile_w + m
    padded = np.pad(img, ((0, 0), (m, hp - h - m), (m, wp - w - m)), mode="reflect")
    weight = weight_window(g.tile_h, g.tile_w, overlap, blend)
    acc = np.zeros((pred.meta.num_classes, hp, wp), np.float32)
    wsum = np.zeros((hp, wp), np.float32)
    for r in range(g.rows):
        for c in range(g.cols):
            ys = slice(r * g.stride_y, r * g.stride_y + g.tile_h)
            xs = slice(c * g.stride_x, c * g.stride_x + g.tile_w)
            p = pred.predict_proba(padded[None, :, ys, xs])[0].numpy()
            acc[:, ys, xs] += p * weight
            wsum[ys, xs] += weight
    return (acc / wsum)[:, m : m + h, m : m + w]


def test_equals_in_memory_reference(tmp_path: Path, scene: Path) -> None:
    bundle = make_bundle(tmp_path / "b.safetensors", "test_conv3x3")
    expected = reference_probabilities(bundle, scene, 64, 16, "cosine")
    got = predict_scene_array(bundle, scene, tile=64, overlap=16, blend="cosine", batch_size=3)
    assert got["valid"].all()
    np.testing.assert_allclose(got["probabilities"], expected, rtol=0, atol=1e-5)
    # the written map holds the same argmax and the confidence to its uint8 quantisation
    res = map_scene(bundle, scene, tmp_path / "m.tif", tile=64, overlap=16, preview=False)
    with rasterio.open(res.path) as src:
        cls, conf = src.read(1), src.read(2).astype(np.float32) * src.scales[1]
    top = np.sort(expected, axis=0)
    clear = top[-1] - top[-2] > 1e-4  # ties may go either way
    np.testing.assert_array_equal(cls[clear], expected.argmax(0)[clear])
    np.testing.assert_allclose(conf, expected.max(0), atol=0.5 / 254 + 1e-6)


def test_georeference_nodata_colours_names_and_cog(tmp_path: Path, bundle: Path) -> None:
    data = smooth_scene(600, 700)
    data[:, :40, :60] = 0  # a no-data corner
    scene = write_tif(tmp_path / "s.tif", data, nodata=0, crs="EPSG:32618")
    res = map_scene(bundle, scene, tmp_path / "out" / "m.tif", tile=128, overlap=32)
    with rasterio.open(scene) as s, rasterio.open(res.path) as m:
        assert m.crs == s.crs
        assert m.transform == s.transform
        assert m.shape == s.shape
        assert m.nodata == IGNORE_INDEX
        assert m.dtypes[0] == "uint8"
        assert m.count == 2
        cls = m.read(1)
        assert (cls[:40, :60] == IGNORE_INDEX).all()
        assert (m.read(2)[:40, :60] == 255).all()
        assert (cls[40:] < 3).all()
        assert (cls[:, 60:] < 3).all()
        cmap = m.colormap(1)
        assert cmap[0][:3] == tuple(load_bundle(bundle).meta.class_colors[0])
        assert cmap[IGNORE_INDEX][3] == 0
        names = ["class_0", "class_1", "class_2"]
        assert json.loads(m.tags()["CLASS_NAMES"]) == names
        assert all(n in m.descriptions[0] for n in names)
        assert m.descriptions[1] == "confidence"
    assert_cog(res.path)
    areas = json.loads(res.areas.read_text())
    assert areas["unit"] == "km2"
    assert areas["nodata_pixels"] == 40 * 60
    total = sum(c["pixels"] for c in areas["classes"])
    assert total == 600 * 700 - 40 * 60
    assert sum(c["area"] for c in areas["classes"]) == pytest.approx(total * 100 / 1e6)
    assert res.preview is not None
    assert res.preview.read_bytes()[:4] == b"\x89PNG"


def assert_cog(path: Path) -> None:
    """The essential checks of GDAL's validate_cloud_optimized_geotiff.py."""
    head = path.read_bytes()[:400]
    assert b"GDAL_STRUCTURAL_METADATA_SIZE" in head
    assert b"LAYOUT=IFDS_BEFORE_DATA" in head
    assert b"BLOCK_ORDER=ROW_MAJOR" in head
    with rasterio.open(path) as src:
        assert src.profile["tiled"]
        assert src.profile["compress"] == "deflate"
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        overviews = src.overviews(1)
        assert overviews
        assert overviews == sorted(overviews)
        main = int(src.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    with rasterio.open(path, overview_level=len(overviews) - 1) as ovr:
        smallest = int(ovr.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    assert smallest < main  # overview data precede full-resolution data


def test_constant_model_gives_seamless_constant_map(tmp_path: Path, scene: Path) -> None:
    def init(model: torch.nn.Module) -> None:
        with torch.no_grad():
            model.bias.copy_(torch.tensor([0.0, 2.0, 0.5]))

    bundle = make_bundle(tmp_path / "c.safetensors", "test_constant", init=init)
    res = map_scene(bundle, scene, tmp_path / "c.tif", tile=64, overlap=24, preview=False)
    with rasterio.open(res.path) as m:
        cls, conf = m.read(1), m.read(2)
    assert (cls == 1).all()
    assert np.unique(conf).size == 1  # no seams: identical everywhere


def test_two_tile_sizes_agree_away_from_edges(tmp_path: Path, scene: Path) -> None:
    bundle = make_bundle(tmp_path / "b.safetensors", "test_conv3x3", seed=3)
    a = predict_scene_array(bundle, scene, tile=64, overlap=16)["probabilities"]
    b = predict_scene_array(bundle, scene, tile=128, overlap=32)["probabilities"]
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert np.abs(a[inner] - b[inner]).max() < 2e-3
    assert (a.argmax(0) == b.argmax(0)).mean() > 0.999


@pytest.mark.parametrize("blend", ["linear", "none"])
def test_other_blends_run(tmp_path: Path, scene: Path, bundle: Path, blend: str) -> None:
    got = predict_scene_array(bundle, scene, tile=64, overlap=16, blend=blend)
    np.testing.assert_allclose(got["probabilities"].sum(0), 1.0, atol=1e-5)


def test_all_nan_scene_gives_all_nodata(tmp_path: Path, bundle: Path) -> None:
    data = np.full((4, 80, 90), np.nan, np.float32)
    scene = write_tif(tmp_path / "nan.tif", data)
    res = map_scene(bundle, scene, tmp_path / "nan_map.tif", tile=32, overlap=8)
    with rasterio.open(res.path) as m:
        assert (m.read() == IGNORE_INDEX).all()
    assert json.loads(res.areas.read_text())["valid_pixels"] == 0


def test_nan_pixels_are_nodata(tmp_path: Path, bundle: Path) -> None:
    data = smooth_scene(80, 90).astype(np.float32)
    data[2, 10:20, 30:35] = np.nan
    scene = write_tif(tmp_path / "holes.tif", data)
    got = predict_scene_array(bundle, scene, tile=32, overlap=8)
    assert not got["valid"][10:20, 30:35].any()
    assert got["valid"].sum() == 80 * 90 - 50
    assert np.isfinite(got["probabilities"][:, got["valid"]]).all()


def test_raster_without_crs_warns_and_maps_without_crs(tmp_path: Path, bundle: Path) -> None:
    scene = write_tif(tmp_path / "nocrs.tif", smooth_scene(60, 70), crs=None)
    with pytest.warns(UserWarning, match="no CRS"):
        res = map_scene(bundle, scene, tmp_path / "nocrs_map.tif", tile=32, overlap=8)
    with rasterio.open(res.path) as m:
        assert m.crs is None
    assert json.loads(res.areas.read_text())["unit"] is None


def test_too_few_bands_is_a_clear_error(tmp_path: Path, bundle: Path) -> None:
    scene = write_tif(tmp_path / "rgb.tif", smooth_scene(40, 40, bands=3))
    with pytest.raises(LandlearnError, match=r"lacks band.*nir"):
        map_scene(bundle, scene, tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()


def test_non_raster_is_a_clear_error(tmp_path: Path, bundle: Path) -> None:
    text = tmp_path / "notes.tif"
    text.write_text("not a raster\n")
    with pytest.raises(LandlearnError, match="not a raster"):
        map_scene(bundle, text, tmp_path / "x.tif")
    with pytest.raises(LandlearnError, match="no such file"):
        map_scene(bundle, tmp_path / "missing.tif", tmp_path / "x.tif")


def test_bands_by_name_index_and_in_order(
    tmp_path: Path, bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = smooth_scene(50, 60)
    named = write_tif(tmp_path / "named.tif", data[::-1], descriptions=["B08", "B04", "B03", "B02"])
    plain = write_tif(tmp_path / "plain.tif", data, descriptions=None)
    a = predict_scene_array(bundle, named, tile=32, overlap=8)["probabilities"]
    with caplog.at_level("WARNING"):
        b = predict_scene_array(bundle, plain, tile=32, overlap=8)["probabilities"]
    assert "taking its 4 bands in order" in caplog.text
    c = predict_scene_array(bundle, named, tile=32, overlap=8, bands=[4, 3, "red", "nir"])
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c["probabilities"], atol=1e-6)


def test_existing_output_survives_interruption(tmp_path: Path, scene: Path, bundle: Path) -> None:
    out = tmp_path / "m.tif"
    out.write_bytes(b"precious")

    def stop(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        map_scene(
            bundle, scene, out, tile=32, overlap=8, batch_size=2, progress=stop, overwrite=True
        )
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.tif", "scene.tif", "conv1x1.safetensors"]
    )


def test_progress_reports_every_window(tmp_path: Path, scene: Path, bundle: Path) -> None:
    seen: list[tuple[int, int]] = []
    res = map_scene(
        bundle,
        scene,
        tmp_path / "m.tif",
        tile=64,
        overlap=16,
        progress=lambda d, t: seen.append((d, t)),
        preview=False,
    )
    assert seen[-1] == (res.windows, res.windows)
    assert len(seen) == -(-res.windows // 4)


def test_qgis_style_names_every_class_in_its_colour(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from landlearn.mapping.outputs import write_qgis_style

    tmp = write_qgis_style(tmp_path / "m.qml", ["water", "a & b"], [[0, 0, 255], [10, 20, 30]])
    root = ET.parse(tmp).getroot()
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None
    assert renderer.get("type") == "paletted"
    assert renderer.get("band") == "1"
    entries = [(e.get("value"), e.get("label"), e.get("color")) for e in root.iter("paletteEntry")]
    assert entries == [("0", "water", "#0000ff"), ("1", "a & b", "#0a141e")]


def test_an_alpha_flagged_band_the_bundle_reads_is_data_not_a_mask(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A band GDAL calls alpha is read as data.

    A 4-band uint8 GeoTIFF written with default settings is RGBA to GDAL: its 4th band (NIR
    here) is "alpha". Read as data with a warning: pixels whose NIR is 0 stay mapped, and the
    probabilities equal those of the same pixels in a file without the alpha flag.
    """
    data = (smooth_scene(64, 72) // 256).astype(np.uint8)
    data[3, 10:30, 5:40] = 0  # dark NIR (water): an "alpha" of 0
    order = ("red", "green", "blue", "nir")
    bundle = make_bundle(tmp_path / "rgbn.safetensors", band_names=order)
    rgba = write_tif(tmp_path / "rgba.tif", data, descriptions=None)
    with rasterio.open(rgba) as src:
        assert src.colorinterp[3] == rasterio.enums.ColorInterp.alpha
    plain = tmp_path / "plain.tif"
    write_tif(plain, data, descriptions=order)
    with caplog.at_level("WARNING"):
        got = predict_scene_array(bundle, rgba, tile=32, overlap=8)
    assert "band 4 is flagged as alpha by GDAL but the bundle reads it as 'nir'" in caplog.text
    want = predict_scene_array(bundle, plain, tile=32, overlap=8)
    assert got["valid"].all()
    np.testing.assert_array_equal(got["probabilities"], want["probabilities"])
