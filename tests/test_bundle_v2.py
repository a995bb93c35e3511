"""Bundle format 2: specs, named models, several inputs and heads, hostile format-2 headers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from landlearn.bundle import BundleMeta, ModelEntry, Predictor, load_bundle, read_meta, save_bundle
from landlearn.errors import LandlearnError
from landlearn.models import build_model
from landlearn.schema import HeadSpec, InputSpec

S2 = InputSpec("s2", "raster", bands=["B02", "B03", "B04"], mean=[100.0, 200.0, 300.0],
               std=[10.0, 20.0, 30.0])  # fmt: skip
S1 = InputSpec("s1", "raster", bands=["VV", "VH"], mean=[-10.0, -17.0], std=[3.0, 4.0])
WATER = HeadSpec("water", "segmentation", classes=["land", "water"])
FUSION_KWARGS = {"encoder": "tu-mobilenetv3_small_050", "encoder_depth": 3,
                 "decoder_channels": [16, 8, 4]}  # fmt: skip


def _fusion(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model("early_fusion_unet", in_channels={"s2": 3, "s1": 2}, num_classes=2,
                        **FUSION_KWARGS).eval()  # fmt: skip
    meta = BundleMeta(
        inputs=[S2, S1], heads=[WATER], chip_size=32,
        models=[ModelEntry("model", "early_fusion_unet", dict(FUSION_KWARGS))],
    )  # fmt: skip
    return save_bundle(tmp_path / "fusion.safetensors", model, meta), model


def _pair(seed: int = 0, n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "s2": torch.rand(n, 3, 32, 32, generator=g) * 300 + 50,
        "s1": torch.rand(n, 2, 32, 32, generator=g) * 10 - 20,
    }


def _header(path: Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {})["landlearn"])


def test_fusion_bundle_views_and_header(tmp_path: Path) -> None:
    path, _ = _fusion(tmp_path)
    raw = _header(path)
    assert raw["format_version"] == 2
    assert raw["combine"] == "single"
    assert [i["name"] for i in raw["inputs"]] == ["s2", "s1"]
    assert raw["heads"][0]["classes"] == ["land", "water"]
    assert raw["models"] == [{"name": "model", "registry": "early_fusion_unet",
                              "kwargs": FUSION_KWARGS}]  # fmt: skip
    assert all(k.startswith("model.") for k in load_file(str(path)))
    meta = read_meta(path)
    assert meta.inputs == [S2, S1]
    assert meta.heads[0].classes == ("land", "water")
    assert meta.band_names == ["B02", "B03", "B04", "VV", "VH"]
    assert meta.mean == [100.0, 200.0, 300.0, -10.0, -17.0]
    assert meta.std[3:] == [3.0, 4.0]
    assert meta.in_channels == 5
    assert meta.in_channels_by_input == {"s2": 3, "s1": 2}
    assert meta.task == "segmentation"
    assert meta.num_classes == 2
    assert meta.ignore_index == 255
    assert meta.class_colors
    assert len(meta.class_colors) == 2


def test_multi_input_predicts_with_per_input_statistics(tmp_path: Path) -> None:
    path, model = _fusion(tmp_path)
    pred = load_bundle(path)
    assert isinstance(pred, Predictor)
    assert pred.multi_input
    x = _pair()
    with torch.no_grad():
        z = {n: (x[n] - torch.tensor(s.mean).view(1, -1, 1, 1)) / torch.tensor(s.std).view(
            1, -1, 1, 1) for n, s in (("s2", S2), ("s1", S1))}  # fmt: skip
        want = torch.softmax(model(z), dim=1)
    got = pred.predict_proba(x)
    torch.testing.assert_close(got, want)
    out = pred.predict(x)
    assert set(out) == {"water"}
    assert torch.equal(out["water"], want.argmax(1))
    # the stacked tensor (bands in meta.band_names order) is the same model input
    stacked = torch.cat([x["s2"], x["s1"]], dim=1)
    torch.testing.assert_close(pred.predict_proba(stacked), got)
    torch.testing.assert_close(
        pred.predict_proba(x, tta="d4"), pred.predict_proba(stacked, tta="d4")
    )


def test_non_finite_pixels_of_any_input_are_no_data(tmp_path: Path) -> None:
    pred = load_bundle(_fusion(tmp_path)[0])
    x = _pair()
    x["s1"][0, 1, 3, 4] = float("nan")
    x["s2"][1, 0, 10, 11] = float("inf")
    classes = pred.predict(x)["water"]
    assert classes[0, 3, 4] == 255
    assert classes[1, 10, 11] == 255
    assert int((classes == 255).sum()) == 2
    probs = pred.predict_proba(x)
    assert torch.isnan(probs[0, :, 3, 4]).all()
    assert not torch.isnan(probs[0, :, 3, 5]).any()


def test_missing_or_wrong_inputs_are_one_line(tmp_path: Path) -> None:
    pred = load_bundle(_fusion(tmp_path)[0])
    x = _pair()
    with pytest.raises(LandlearnError, match=r"missing input 's1'; the bundle reads s2, s1"):
        pred.predict({"s2": x["s2"]})
    with pytest.raises(LandlearnError, match=r"input 's1': expected 2 bands \(VV, VH\), got"):
        pred.predict_proba({"s2": x["s2"], "s1": x["s2"]})
    with pytest.raises(LandlearnError, match="expected 5 bands"):
        pred.predict_proba(x["s2"])


def test_regression_head_gives_values_in_units(tmp_path: Path) -> None:
    table = InputSpec("meta", "table", bands=["a", "b", "c"], mean=[1.0, 2.0, 3.0],
                      std=[2.0, 2.0, 2.0])  # fmt: skip
    head = HeadSpec("lfmc", "regression", targets=["moisture"], units=["%"], mean=[100.0],
                    std=[25.0])  # fmt: skip
    torch.manual_seed(0)
    model = build_model("mlp_regressor", in_channels=3, num_classes=1).eval()
    meta = BundleMeta(inputs=[table], heads=[head], models=[ModelEntry("model", "mlp_regressor")])
    pred = load_bundle(save_bundle(tmp_path / "reg.safetensors", model, meta))
    assert pred.meta.task == "regression"
    assert pred.meta.class_names == ["moisture"]
    x = torch.tensor([[1.0, 2.0, 3.0], [5.0, 0.0, float("nan")]])
    with torch.no_grad():
        z = (x[:1] - torch.tensor([[1.0, 2.0, 3.0]])) / 2.0
        want = model(z) * 25.0 + 100.0
    got = pred.predict({"meta": x})["lfmc"]
    torch.testing.assert_close(got[:1], want)
    assert torch.isnan(got[1]).all()  # a non-finite feature: no value
    with pytest.raises(LandlearnError, match="regression head; use predict"):
        pred.predict_proba({"meta": x})


def test_two_models_need_one_module_each(tmp_path: Path) -> None:
    model = build_model("small_cnn", in_channels=3, num_classes=2)
    meta = BundleMeta(
        inputs=[InputSpec("image", bands=["r", "g", "b"], mean=[0.0] * 3, std=[1.0] * 3)],
        heads=[HeadSpec("label", "classification", classes=["a", "b"])],
        models=[ModelEntry("member0", "small_cnn"), ModelEntry("member1", "small_cnn")],
        combine="mean",
    )
    with pytest.raises(LandlearnError, match="names 2 models"):
        save_bundle(tmp_path / "x.safetensors", model, meta)
    with pytest.raises(LandlearnError, match="do not match the bundle's models"):
        save_bundle(tmp_path / "x.safetensors", {"member0": model}, meta)


# ---- hostile format-2 headers: one line each -------------------------------------------------

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """A 3-band, 2-class small_cnn bundle in format 2."""
    torch.manual_seed(0)
    meta = BundleMeta(
        task="classification", model_name="small_cnn", model_kwargs={}, band_names=["r", "g", "b"],
        mean=[1.0, 2.0, 3.0], std=[1.0, 1.0, 1.0], class_names=["water", "forest"], chip_size=32,
    )  # fmt: skip
    return save_bundle(tmp_path / "good.safetensors", build_model("small_cnn", in_channels=3,
                       num_classes=2), meta)  # fmt: skip


def _edit(fn: Callable[[dict[str, Any]], object]) -> Edit:
    """An edit of the header in place (``fn``'s result is dropped)."""

    def edit(raw: dict[str, Any]) -> None:
        fn(raw)

    return edit


V2_HEADERS: list[tuple[str, Edit, str]] = [
    ("inputs missing", _edit(lambda r: r.pop("inputs")), r"bundle metadata lacks inputs$"),
    ("inputs dict", _edit(lambda r: r.update(inputs={})), r"bundle inputs must be a list of obj"),
    ("inputs empty", _edit(lambda r: r.update(inputs=[])), r"bundle inputs is empty"),
    ("input int", _edit(lambda r: r.update(inputs=[3])), r"bundle inputs\[0\] must be an object"),
    ("input key", _edit(lambda r: r["inputs"][0].update(band=[])),
     r"unknown bundle inputs\[0\] key 'band'; did you mean 'bands'\?"),
    ("bands int", _edit(lambda r: r["inputs"][0].update(bands=5)),
     r"bundle inputs\[0\].bands must be a list of names, got an integer"),
    ("bands ctrl", _edit(lambda r: r["inputs"][0].update(bands=["r", "g\n", "b"])),
     r"bundle inputs\[0\].bands\[1\] 'g\\n' holds a control character"),
    ("bands dup", _edit(lambda r: r["inputs"][0].update(bands=["r", "r", "b"])),
     r"bundle inputs\[0\] is invalid: input 'image': bands repeat 'r'"),
    ("mean len", _edit(lambda r: r["inputs"][0].update(mean=[1.0])),
     r"inputs\[0\] is invalid: input 'image': mean / std have 1 / 3 values for 3 bands"),
    ("mean null", _edit(lambda r: r["inputs"][0].update(mean=None)),
     r"bundle inputs\[0\] has no mean; a bundle stores the training statistics"),
    ("std nan", _edit(lambda r: r["inputs"][0].update(std=[1.0, float("nan"), 1.0])),
     r"bundle inputs\[0\].std\[1\] is nan, must be finite"),
    ("std 0", _edit(lambda r: r["inputs"][0].update(std=[1.0, 0.0, 1.0])),
     r"std must be positive"),
    ("input kind", _edit(lambda r: r["inputs"][0].update(kind="rastr")),
     r"unknown kind 'rastr'; did you mean 'raster'\?"),
    ("inputs dup", _edit(lambda r: r["inputs"].append(dict(r["inputs"][0]))),
     r"bundle inputs name 'image' more than once"),
    ("heads missing", _edit(lambda r: r.pop("heads")), r"bundle metadata lacks heads$"),
    ("head kind", _edit(lambda r: r["heads"][0].update(kind="segmentaton")),
     r"did you mean 'segmentation'\?"),
    ("head classes", _edit(lambda r: r["heads"][0].update(classes=["a", 1])),
     r"bundle heads\[0\].classes\[1\] must be a non-empty string, got 1"),
    ("head one class", _edit(lambda r: r["heads"][0].update(classes=["a"], colors=[])),
     r"needs at least 2 class names"),
    ("head rgba", _edit(lambda r: r["heads"][0].update(colors=[[0, 0, 0, 9], [1, 1, 1, 9]])),
     r"bundle heads\[0\].colors\[0\] must be 3 integers 0-255 \(RGB\)"),
    ("head ignore", _edit(lambda r: r["heads"][0].update(ignore_index="255")),
     r"bundle heads\[0\].ignore_index must be an integer or null, got '255'"),
    ("head variance", _edit(lambda r: r["heads"][0].update(variance="no")),
     r"variance must be true or false or null"),
    ("models missing", _edit(lambda r: r.pop("models")), r"bundle metadata lacks models$"),
    ("model key", _edit(lambda r: r["models"][0].update(registy="x")),
     r"unknown bundle models\[0\] key 'registy'; did you mean 'registry'\?"),
    ("model name dot", _edit(lambda r: r["models"][0].update(name="a.b")),
     r"bundle models\[0\].name 'a.b' holds a dot"),
    ("model registry", _edit(lambda r: r["models"][0].update(registry="small_cn")),
     r"unknown model 'small_cn'; did you mean 'small_cnn'"),
    ("model kwargs", _edit(lambda r: r["models"][0].update(kwargs=[1])),
     r"bundle models\[0\].kwargs must be a JSON object"),
    ("kwargs key", _edit(lambda r: r["models"][0].update(kwargs={"widht": 8})),
     r"model 'small_cnn' does not take model_kwargs key 'widht'; did you mean 'width'\?"),
    ("kwargs big", _edit(lambda r: r["models"][0].update(kwargs={"width": 2500})),
     r"would have 5.6e8 parameters \(2.3 GB\); limit 2e8"),
    ("num_classes", _edit(lambda r: r["models"][0].update(kwargs={"num_classes": 5})),
     r"bundle models\[0\].kwargs num_classes is 5 but the heads have 2 outputs"),
    ("in_channels", _edit(lambda r: r["models"][0].update(kwargs={"in_channels": 4})),
     r"bundle models\[0\].kwargs in_channels is 4 but the inputs have 3 bands"),
    ("models dup", _edit(lambda r: r.update(models=r["models"] * 2, combine="mean")),
     r"bundle models name 'model' more than once"),
    ("combine", _edit(lambda r: r.update(combine="max")),
     r"unknown bundle combine 'max'; known: single, mean, first"),
    ("combine first", _edit(lambda r: r.update(combine="first")),
     r"bundle combine 'first' needs two models or more; use 'single'"),
    ("combine single", _edit(lambda r: r.update(models=[r["models"][0], {**r["models"][0],
     "name": "b"}])), r"bundle combine 'single' needs exactly one model, got 2"),
    ("member inputs", _edit(lambda r: r["models"][0].update(inputs=[{**r["inputs"][0],
     "name": "s2"}])), r"bundle models\[0\].inputs are \[\('s2', 3\)\] but the bundle's inputs"),
    ("mode", _edit(lambda r: r.update(mode="one")), r"unknown bundle mode 'one'"),
    ("chip", _edit(lambda r: r.update(chip_size=0)), r"chip_size must be between 1 and 65536"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "match"), [(e, m) for _, e, m in V2_HEADERS], ids=[i for i, *_ in V2_HEADERS]
)
def test_hostile_v2_header_is_one_clear_error(good: Path, edit: Edit, match: str) -> None:
    raw = _header(good)
    edit(raw)
    bad = good.with_name("hostile.safetensors")
    save_file(load_file(str(good)), str(bad), metadata={"landlearn": json.dumps(raw)})
    with pytest.raises(LandlearnError, match=match) as info:
        load_bundle(bad)
    assert info.value.path == str(bad)
    assert "\n" not in str(info.value)


def test_tensors_outside_the_models_and_misfits_name_keys(good: Path) -> None:
    state = load_file(str(good))
    del state["model.features.0.weight"]
    state["foo"] = torch.zeros(1)
    state["model.fc.1.weight"] = torch.zeros(3, 64)
    bad = good.with_name("hostile.safetensors")
    save_file(state, str(bad), metadata={"landlearn": json.dumps(_header(good))})
    with pytest.raises(LandlearnError) as info:
        load_bundle(bad)
    assert info.value.message == (
        "weights do not fit model 'small_cnn': missing features.0.weight; unexpected foo; "
        "shape of fc.1.weight is (3, 64) in the file, (2, 64) in the model"
    )


def test_unknown_top_level_keys_are_dropped(good: Path) -> None:
    raw = _header(good) | {"future_field": [1, 2]}
    bad = good.with_name("newer.safetensors")
    save_file(load_file(str(good)), str(bad), metadata={"landlearn": json.dumps(raw)})
    assert read_meta(bad) == read_meta(good)


# ---- the task's bundle metadata ----------------------------------------------------------


def test_task_meta_from_its_specs(tmp_path: Path) -> None:
    from landlearn.tasks import SegmentationTask

    task = SegmentationTask(model="early_fusion_unet", model_kwargs=dict(FUSION_KWARGS),
                            num_classes=2)  # fmt: skip
    task.input_specs = [S2.with_stats([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]), S1]  # type: ignore[attr-defined]
    task.head_specs = [WATER]  # type: ignore[attr-defined]
    task.data_info = {"chip_size": 32}
    meta = task.bundle_meta({"water_iou": 0.5})
    assert meta.inputs[0].mean == (1.0, 2.0, 3.0)
    assert meta.inputs[1] == S1
    assert meta.heads == [WATER.__class__(**{**WATER.__dict__, "colors": meta.heads[0].colors})]
    kwargs = meta.model_kwargs
    assert kwargs["in_channels"] == {"s2": 3, "s1": 2}
    assert kwargs["num_classes"] == 2
    assert kwargs["dropout"] == 0.0
    assert kwargs["encoder"] == FUSION_KWARGS["encoder"]
    assert meta.chip_size == 32
    assert meta.metrics == {"water_iou": 0.5}
    torch.manual_seed(0)
    model = build_model("early_fusion_unet", **kwargs).eval()
    pred = load_bundle(save_bundle(tmp_path / "t.safetensors", model, meta))
    assert pred.predict(_pair())["water"].shape == (2, 32, 32)
    assert BundleMeta.from_json(meta.to_json()) == meta  # what a checkpoint stores


def test_task_meta_without_specs_is_format_1_content() -> None:
    from landlearn.tasks import ClassificationTask

    task = ClassificationTask(model="small_cnn", num_classes=2, in_channels=3,
                              class_names=["a", "b"])  # fmt: skip
    task.data_info = {"band_names": ["r", "g", "b"], "mean": [1, 2, 3], "std": [4, 5, 6],
                      "chip_size": 64}  # fmt: skip
    meta = task.bundle_meta()
    assert [s.name for s in meta.inputs] == ["image"]
    assert meta.band_names == ["r", "g", "b"]
    assert meta.mean == [1.0, 2.0, 3.0]
    assert meta.std == [4.0, 5.0, 6.0]
    assert meta.heads[0].kind == "classification"
    assert meta.class_names == ["a", "b"]
    assert meta.model_kwargs == {"dropout": 0.0, "num_classes": 2, "in_channels": 3}
    assert meta.chip_size == 64


def _gated_bundle(tmp_path: Path, **kw: Any) -> Path:
    torch.manual_seed(0)
    kwargs = {"decoder_channels": [16, 8, 8, 8, 8], **kw}
    model = build_model("gated_fusion_unet", in_channels={"s2": 3, "s1": 2}, num_classes=2,
                        **kwargs).eval()  # fmt: skip
    meta = BundleMeta(inputs=[S2, S1], heads=[WATER], chip_size=32,
                      models=[ModelEntry("model", "gated_fusion_unet", kwargs)])  # fmt: skip
    return save_bundle(tmp_path / "gated.safetensors", model, meta)


def test_fusion_bundle_predicts_without_an_input_it_was_trained_to_miss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pred = load_bundle(_gated_bundle(tmp_path, modality_dropout=0.3))
    assert pred.can_do_without
    x = _pair()
    full = pred.predict_proba(x)
    assert pred.last_missing == ()
    with caplog.at_level("WARNING"):
        s1_only = pred.predict_proba({"s1": x["s1"]})
    assert pred.last_missing == ("s2",)
    assert "predicting without input(s) s2" in caplog.text
    assert s1_only.shape == full.shape
    assert torch.isfinite(s1_only).all()
    pred.strict = True  # the user asks for strict
    with pytest.raises(LandlearnError, match=r"missing input 's2'.*predictor is strict"):
        pred.predict_proba({"s1": x["s1"]})


def test_fusion_bundle_without_modality_dropout_refuses_a_missing_input(tmp_path: Path) -> None:
    pred = load_bundle(_gated_bundle(tmp_path, modality_dropout=0.0))
    assert not pred.can_do_without
    with pytest.raises(LandlearnError, match="not trained with modality_dropout"):
        pred.predict_proba({"s1": _pair()["s1"]})
    with pytest.raises(LandlearnError, match="missing input 's2'"):
        pred.predict_proba({})
