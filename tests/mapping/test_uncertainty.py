"""MC dropout, D4 TTA, ensembles and classification bundles."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from mapping_helpers import make_bundle, smooth_scene, write_tif

from landlearn.bundle import load_bundle
from landlearn.errors import LandlearnError
from landlearn.mapping import map_scene
from landlearn.mapping.scene import predict_scene_array
from landlearn.mapping.uncertainty import D4, d4_forward, d4_inverse, entropy, mc_dropout


def test_d4_inverse_undoes_forward() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    outs = {tuple(d4_forward(x, k, f).flatten().tolist()) for k, f in D4}
    assert len(D4) == 8
    assert len(outs) == 8
    for k, f in D4:
        assert torch.equal(d4_inverse(d4_forward(x, k, f), k, f), x)


def test_entropy_bounds() -> None:
    p = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(entropy(p, dim=1), [0.0, np.log(3)], atol=1e-9)


def test_mc_dropout_switches_only_dropout(tmp_path: Path) -> None:
    pred = load_bundle(make_bundle(tmp_path / "d.safetensors", dropout=0.5))
    bn = torch.nn.BatchNorm2d(3).eval()
    pred.model.add_module("bn", bn)
    with mc_dropout(pred.model):
        assert pred.model.drop.training
        assert not bn.training
    assert not pred.model.drop.training
    plain = load_bundle(make_bundle(tmp_path / "p.safetensors"))
    with pytest.raises(LandlearnError, match="dropout"), mc_dropout(plain.model):
        pass


def test_mc_dropout_map_has_entropy_and_mutual_information(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "d.safetensors", "test_conv3x3", dropout=0.3)
    scene = write_tif(tmp_path / "s.tif", smooth_scene(70, 90))
    got = predict_scene_array(bundle, scene, tile=32, overlap=8, mc_dropout=4, seed=1)
    again = predict_scene_array(bundle, scene, tile=32, overlap=8, mc_dropout=4, seed=1)
    np.testing.assert_array_equal(got["probabilities"], again["probabilities"])  # seeded
    mi, h = got["mutual_information"], got["entropy"]
    assert (mi >= 0).all()
    assert (mi <= h + 1e-6).all()
    assert mi.max() > 1e-4
    res = map_scene(bundle, scene, tmp_path / "mc.tif", tile=32, overlap=8, mc_dropout=3)
    with rasterio.open(res.path) as m:
        assert m.descriptions[2:] == ("entropy", "mutual_information")
        ent = m.read(3).astype(float) * m.scales[2]
    assert 0 < ent.max() <= np.log(3) + 1e-6


def test_tta_d4_on_symmetric_model_changes_nothing_but_adds_entropy(
    tmp_path: Path, bundle: Path, scene: Path
) -> None:
    plain = predict_scene_array(bundle, scene, tile=64, overlap=16)
    tta = predict_scene_array(bundle, scene, tile=64, overlap=16, tta="d4")
    np.testing.assert_allclose(tta["probabilities"], plain["probabilities"], atol=1e-5)
    assert "entropy" in tta
    assert "mutual_information" not in tta


def test_ensemble_averages_members_and_reports_variance(tmp_path: Path, scene: Path) -> None:
    a = make_bundle(tmp_path / "a.safetensors", seed=1)
    b = make_bundle(tmp_path / "b.safetensors", seed=2)
    pa = predict_scene_array(a, scene, tile=64, overlap=16)["probabilities"]
    pb = predict_scene_array(b, scene, tile=64, overlap=16)["probabilities"]
    both = predict_scene_array(a, scene, tile=64, overlap=16, ensemble=[b])
    np.testing.assert_allclose(both["probabilities"], (pa + pb) / 2, atol=1e-5)
    expected_var = (((pa - pb) / 2) ** 2).sum(0)
    np.testing.assert_allclose(both["ensemble_variance"], expected_var, atol=1e-5)
    res = map_scene([a, b], scene, tmp_path / "e.tif", tile=64, overlap=16, probabilities=True)
    with rasterio.open(res.path) as m:
        assert m.count == 2 + 3 + 2
        assert m.descriptions[-1] == "ensemble_variance"


def test_ensemble_with_other_classes_is_refused(tmp_path: Path, scene: Path) -> None:
    a = make_bundle(tmp_path / "a.safetensors")
    b = make_bundle(tmp_path / "b.safetensors", num_classes=4)
    with pytest.raises(LandlearnError, match="same classes"):
        map_scene(a, scene, tmp_path / "x.tif", ensemble=[b])


def test_classification_bundle_gives_patch_level_map(tmp_path: Path) -> None:
    data = np.zeros((4, 96, 128), np.uint16)
    data[:, :, 64:] = 200  # left half dark, right half bright
    scene = write_tif(tmp_path / "halves.tif", data)

    def init(model: torch.nn.Module) -> None:
        with torch.no_grad():
            model.fc.weight.zero_()
            model.fc.weight[1] = 1.0  # class 1 scores the (normalised) brightness
            model.fc.bias.zero_()

    bundle = make_bundle(tmp_path / "cls.safetensors", "test_patch", num_classes=2, init=init)
    res = map_scene(bundle, scene, tmp_path / "cls_map.tif", tile=512, overlap=16)
    with rasterio.open(res.path) as m:
        cls = m.read(1)
        tiling = json.loads(m.tags()["LANDLEARN_TILING"])
    assert tiling["tile"] == 32  # the bundle's chip size, not --tile
    assert (cls[:, :48] == 0).all()
    assert (cls[:, 80:] == 1).all()


JEM_EXTRA = {"jem": {"energy": "-logsumexp(logits)",
                     "energy_reference": {"p0.5": -10.0, "p5": -8.0, "p50": -4.0, "p95": -1.0,
                                          "p99.5": 1.0}}}  # fmt: skip


def test_a_jem_bundle_maps_an_energy_band_and_a_plain_one_does_not(tmp_path: Path) -> None:
    data = np.zeros((4, 96, 128), np.uint16)
    data[:, :, 64:] = 200

    def init(model: torch.nn.Module) -> None:
        with torch.no_grad():
            model.fc.weight.zero_()
            model.fc.weight[1] = 1.0
            model.fc.bias.zero_()

    scene = write_tif(tmp_path / "halves.tif", data)
    jem = make_bundle(tmp_path / "jem.safetensors", "test_patch", num_classes=2, init=init,
                      extra=JEM_EXTRA)  # fmt: skip
    plain = make_bundle(tmp_path / "plain.safetensors", "test_patch", num_classes=2, init=init)
    with rasterio.open(map_scene(jem, scene, tmp_path / "jem.tif").path) as m:
        names = list(m.descriptions)
        band = names.index("energy") + 1
        assert band == m.count  # the last band
        stored = m.read(band)
        e_map = stored * m.scales[band - 1] + m.offsets[band - 1]
        tags = m.tags(band)
        assert m.offsets[0] == 0.0
    with rasterio.open(map_scene(plain, scene, tmp_path / "plain.tif").path) as m:
        assert "energy" not in m.descriptions
    # the window's logits: class 0 scores 0, class 1 the sum of its 4 normalised band means
    left, right = 4 * (0 - 100) / 50, 4 * (200 - 100) / 50
    expected_left = -math.log(1 + math.exp(left))
    expected_right = -math.log(1 + math.exp(right))
    lo, hi = -10.0 - 11.0, 1.0 + 3 * 11.0  # a spread below the 0.5th, three above the 99.5th
    step = (hi - lo) / 254
    assert abs(e_map[:, 16:40] - expected_left).max() <= step  # away from edges and the seam
    assert abs(e_map[:, 88:112] - expected_right).max() <= step
    assert (stored != 255).all()
    assert tags["VALIDATION_ENERGY_P99.5"] == "1"
    assert tags["UNIT"] == "energy"


def test_energy_of_a_jem_segmenter_is_per_pixel_and_averaged_over_tta(
    tmp_path: Path, scene: Path
) -> None:
    bundle = make_bundle(tmp_path / "seg.safetensors", extra=JEM_EXTRA)
    arrays = predict_scene_array(bundle, scene, tta="d4", tile=64, overlap=16)
    assert arrays["energy"].shape == arrays["valid"].shape
    with rasterio.open(scene) as src:
        x = (torch.from_numpy(src.read().astype(np.float32)) - 100.0) / 50.0
    from landlearn.bundle import load_bundle

    logits = load_bundle(bundle).model(x[None])[0]  # a 1×1 conv: no window effects
    expected = -torch.logsumexp(logits, 0).detach().numpy()
    ok = arrays["valid"]
    assert np.allclose(arrays["energy"][ok], expected[ok], atol=1e-4)
