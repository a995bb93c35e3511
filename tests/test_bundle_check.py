"""Hostile and odd bundle headers and checkpoints: one clear LandlearnError each (issue 21).

``HEADERS`` edit the format-1 fields of a format-1 file (what the format-1 writer made, kept in
``tests/data/bundle_v1.py``): old files are still user input. ``V2_HEADERS`` edit format 2.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from landlearn.bundle import BundleMeta, load_bundle, read_meta, save_bundle
from landlearn.bundle_check import check_map_classes, resolve_max_params, validate_meta
from landlearn.ensemble import load_ensemble
from landlearn.errors import LandlearnError
from landlearn.models import build_model
from tests.data.bundle_v1 import v1_of

Edit = Callable[[dict[str, Any]], None]


def _meta(**kw: Any) -> BundleMeta:
    base: dict[str, Any] = dict(
        task="classification", model_name="small_cnn", model_kwargs={"dropout": 0.0},
        band_names=["red", "green", "blue"], mean=[10.0, 20.0, 30.0], std=[2.0, 4.0, 8.0],
        class_names=["water", "forest"], class_colors=[[0, 0, 255], [0, 128, 0]], chip_size=32,
    )  # fmt: skip
    base.update(kw)
    return BundleMeta(**base)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """A real 3-band, 2-class small_cnn bundle written by save_bundle."""
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=3, num_classes=2)
    return save_bundle(tmp_path / "good.safetensors", model, _meta())


def _header(path: Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {})["landlearn"])


def _hostile(
    good: Path,
    edit: Edit | str,
    tensors: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    *,
    v1: bool = True,
) -> Path:
    """``good``'s tensors with an edited header (a function of the JSON, or the raw text).

    ``v1``: edit the format-1 header of ``good`` (and its unprefixed tensors), else format 2.
    """
    raw, state = v1_of(good) if v1 else (_header(good), load_file(str(good)))
    if isinstance(edit, str):
        text = edit
    else:
        edit(raw)
        text = json.dumps(raw)
    if tensors is not None:
        state = tensors(state)
    out = good.with_name("hostile.safetensors")
    save_file(state, str(out), metadata={"landlearn": text})
    return out


def _set(**kw: Any) -> Edit:
    return lambda raw: raw.update(kw)


def _pop(key: str) -> Edit:
    return lambda raw: raw.pop(key) and None


HEADERS: list[tuple[str, Edit | str, str]] = [
    ("list", "[1, 2]", r"landlearn entry\) is a list, expected a JSON object$"),
    ("null", "null", r"landlearn entry\) is null, expected a JSON object$"),
    ("number", "3", r"is an integer, expected a JSON object"),
    ("not json", "{oops", r"bundle metadata is not valid JSON \(Expecting property name"),
    ("deep", "[" * 100_000, r"not valid JSON|nested too deeply"),
    ("version str", _set(format_version="1"), r"format_version must be an integer >= 0, got '1'"),
    ("version neg", _set(format_version=-1), r"format_version must be an integer >= 0, got -1"),
    ("version float", _set(format_version=1.0), r"got 1.0 \(a number\)"),
    ("version new", _set(format_version=99), r"bundle format 99 is newer .* upgrade landlearn"),
    ("task", _set(task="bogus"), r"unknown bundle task 'bogus'; known: classification, segm"),
    ("task typo", _set(task="clasification"), r"did you mean 'classification'\?"),
    ("mode", _set(mode=3), r"unknown bundle mode 3; known: multiclass, binary, multilabel"),
    ("lacks", _pop("mean"), r"bundle metadata lacks mean$"),
    ("classes null", _set(class_names=None), r"class_names must be a list of names, got null"),
    ("classes int", _set(class_names=[0, 1]), r"class_names\[0\] must be a non-empty string"),
    ("classes empty", _set(class_names=[]), r"class_names is empty"),
    ("classes dup", _set(class_names=["a", "a"]), r"class_names name 'a' more than once"),
    (
        "classes ctrl",
        _set(class_names=["a", "b\nerror: x"]),
        r"class_names\[1\] 'b\\nerror: x' holds a control character",
    ),
    ("bands null", _set(band_names=None), r"band_names must be a list of names, got null"),
    ("bands int", _set(band_names=[1, 2, 3]), r"band_names\[0\] must be a non-empty string"),
    ("bands empty", _set(band_names=[]), r"band_names is empty"),
    ("bands dup", _set(band_names=["r", "g", "r"]), r"band_names name 'r' more than once"),
    ("mean len", _set(mean=[1.0]), r"mean has 1 values but band_names has 3 \(red, green, blue\)"),
    ("mean str", _set(mean="abc"), r"mean must be a list of numbers, got a string"),
    ("mean strs", _set(mean=["a", "b", "c"]), r"mean\[0\] \(red\) must be a number, got 'a'"),
    ("mean nested", _set(mean=[[1], [2], [3]]), r"mean\[0\] \(red\) must be a number, got \[1\]"),
    ("mean nan", _set(mean=[1.0, math.nan, 2.0]), r"mean\[1\] \(green\) is nan, must be finite"),
    ("std inf", _set(std=[1.0, 1.0, math.inf]), r"std\[2\] \(blue\) is inf, must be finite"),
    ("std neg", _set(std=[1.0, -2.0, 1.0]), r"std\[1\] \(green\) is -2.0, must be >= 0"),
    ("std bool", _set(std=[True, 1.0, 1.0]), r"std\[0\] \(red\) must be a number, got True"),
    ("chip 0", _set(chip_size=0), r"chip_size must be between 1 and 65536, got 0$"),
    ("chip neg", _set(chip_size=-32), r"chip_size must be between 1 and 65536, got -32"),
    ("chip str", _set(chip_size="32"), r"chip_size must be an integer, got '32' \(a string\)"),
    ("chip bool", _set(chip_size=True), r"chip_size must be an integer, got True"),
    ("chip huge", _set(chip_size=10**6), r"chip_size must be between 1 and 65536, got 1000000"),
    ("colors str", _set(class_colors="red"), r"class_colors must be a list, got a string"),
    ("colors short", _set(class_colors=[[0, 0]]), r"class_colors\[0\] must be 3 or 4 integers"),
    ("colors 256", _set(class_colors=[[0, 0, 256]]), r"0-255 \(RGB or RGBA\), got \[0, 0, 256\]"),
    ("colors str v", _set(class_colors=[["a", 0, 0]]), r"class_colors\[0\] must be 3 or 4"),
    ("colors float", _set(class_colors=[[0.5, 0, 0]]), r"class_colors\[0\] must be 3 or 4"),
    ("metrics", _set(metrics=[1]), r"bundle metrics must be a JSON object, got a list"),
    ("ignore", _set(ignore_index="255"), r"ignore_index must be an integer, got '255'"),
    ("kwargs list", _set(model_kwargs=[1]), r"model_kwargs must be a JSON object .* got a list"),
    (
        "kwargs key",
        _set(model_kwargs={"widht": 8}),
        r"model 'small_cnn' does not take model_kwargs key 'widht'; did you mean 'width'\? "
        r"it takes depth, dropout, in_channels, num_classes, width$",
    ),
    (
        "kwargs type",
        _set(model_kwargs={"width": "16"}),
        r"model 'small_cnn': model_kwargs width must be an integer, got '16' \(a string\)",
    ),
    (
        "kwargs value",
        _set(model_kwargs={"depth": 0}),
        r"model 'small_cnn' with depth=0: small_cnn needs .* >= 1",
    ),
    (
        "kwargs dropout",
        _set(model_kwargs={"dropout": 3.0}),
        r"model 'small_cnn' cannot be built from the bundle's model_kwargs \(ValueError: dropout",
    ),
    (
        "in_channels",
        _set(model_kwargs={"in_channels": 4}),
        r"model_kwargs in_channels is 4 but band_names has 3",
    ),
    (
        "num_classes",
        _set(model_kwargs={"num_classes": 5}),
        r"model_kwargs num_classes is 5 but class_names has 2",
    ),
    (
        "model name",
        _set(model_name="small_cn"),
        r"unknown model 'small_cn'; did you mean 'small_cnn'",
    ),
    ("model type", _set(model_name=7), r"model_name must be a string, got 7"),
    (
        "model task",
        _set(task="segmentation"),
        r"model 'small_cnn' is a classification model but the bundle's task is 'segmentation'",
    ),
]


@pytest.mark.parametrize(
    ("edit", "match"), [(e, m) for _, e, m in HEADERS], ids=[i for i, *_ in HEADERS]
)
def test_hostile_header_is_one_clear_error(good: Path, edit: Edit | str, match: str) -> None:
    path = _hostile(good, edit)
    with pytest.raises(LandlearnError, match=match) as info:
        load_bundle(path)
    assert info.value.path == str(path)
    assert "\n" not in str(info.value)


class _Net(torch.nn.Module):
    def __init__(self, in_channels: int = 3, classes: int = 2, hidden: int = 4) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, classes, 1)


def _net(*, in_channels: int, num_classes: int, pretrained: bool = False, dropout: float = 0.0,
         **kwargs: Any) -> torch.nn.Module:  # fmt: skip
    return _Net(in_channels, num_classes, **kwargs)


def test_keys_passed_on_are_checked_against_kwargs_from(good: Path) -> None:
    from landlearn.models.registry import MODELS, register_model

    if "test_passes_on" not in MODELS:
        register_model("test_passes_on", task="classification", kwargs_from=_Net)(_net)
    edit = _set(model_name="test_passes_on", model_kwargs={"hiden": 8})
    with pytest.raises(LandlearnError, match=r"model 'test_passes_on' does not take model_kwargs "
                       r"key 'hiden'; did you mean 'hidden'\? it takes classes, dropout, hidden, "
                       r"in_channels, num_classes$"):  # fmt: skip
        load_bundle(_hostile(good, edit))
    edit = _set(model_name="test_passes_on", model_kwargs={"hidden": "8"})
    with pytest.raises(LandlearnError, match=r"model_kwargs hidden must be an integer, got '8'"):
        load_bundle(_hostile(good, edit))


def test_unknown_key_passed_on_to_timm_is_caught_when_built(good: Path) -> None:
    edit = _set(model_name="resnet18", model_kwargs={"small_input": True, "fo": 1})
    want = (
        r"^.*: model 'resnet18' with small_input=True, fo=1 cannot be built from the bundle's "
        r"model_kwargs \(TypeError: ResNet.__init__\(\) got an unexpected keyword argument 'fo'\)$"
    )
    with pytest.raises(LandlearnError, match=want):
        load_bundle(_hostile(good, edit))


def test_zero_std_keeps_the_floor(good: Path) -> None:
    """Std 0 (a constant band) in format 1 loads as the predictor's floor 1e-12."""
    pred = load_bundle(_hostile(good, _set(std=[0.0, 4.0, 8.0])))
    assert pred.meta.std == [1e-12, 4.0, 8.0]
    assert float(pred._std.flatten()[0]) == pytest.approx(1e-12)


def test_class_colors_fill_and_cut_with_a_warning(
    good: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from landlearn.colors import default_colors

    with caplog.at_level(logging.WARNING, logger="landlearn.bundle_check"):
        few = read_meta(_hostile(good, _set(class_colors=[[1, 2, 3, 255]])))
    assert few.class_colors == [[1, 2, 3], default_colors(2)[1]]  # RGB kept (format-1 RGBA)
    assert "1 class_colors for 2 classes; filled from the default palette" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="landlearn.bundle_check"):
        many = read_meta(_hostile(good, _set(class_colors=[[1, 1, 1], [2, 2, 2], [3, 3, 3]])))
    assert many.class_colors == [[1, 1, 1], [2, 2, 2]]
    assert "3 class_colors for 2 classes; the extra ones ignored" in caplog.text
    none = read_meta(_hostile(good, _pop("class_colors")))
    assert none.class_colors == default_colors(2)


def test_valid_header_is_unchanged_by_the_validator(good: Path) -> None:
    raw = _header(good)
    assert raw["format_version"] == 2
    assert json.loads(BundleMeta(**validate_meta(raw, good)).to_json()) == raw
    assert read_meta(good) == _meta(versions=raw["versions"])
    old, _ = v1_of(good)  # format 1: the same fields come back, as format 1 did
    clean = validate_meta(old, good)
    assert {k: clean[k] for k in old} == old
    assert BundleMeta(**clean).to_json() == read_meta(good).to_json()


def test_width_2500_is_refused_before_any_allocation(
    good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import landlearn.bundle as bundle_mod

    def never(meta: BundleMeta) -> torch.nn.Module:
        raise AssertionError("the real model was built")

    monkeypatch.setattr(bundle_mod, "build_bundle_model", never)
    monkeypatch.delenv("LANDLEARN_MAX_PARAMS", raising=False)
    path = _hostile(good, _set(model_kwargs={"width": 2500}))
    assert path.stat().st_size < 200_000
    t0 = time.perf_counter()
    with pytest.raises(LandlearnError) as info:
        load_bundle(path)
    assert time.perf_counter() - t0 < 1.0
    assert info.value.message == (
        "model 'small_cnn' with width=2500 would have 5.6e8 parameters (2.3 GB); limit 2e8 "
        "(set LANDLEARN_MAX_PARAMS to raise it)"
    )


@pytest.mark.slow  # a fresh interpreter importing torch: ~5 s
def test_width_20000_stays_small_in_memory(good: Path) -> None:
    """In a fresh process, peak RSS grows by far less than the 28.8 GB the header asks for."""
    path = _hostile(good, _set(model_kwargs={"width": 20000}))
    code = f"""
import resource, landlearn.bundle as b, landlearn.models
from landlearn.errors import LandlearnError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    b.load_bundle({str(path)!r})
except LandlearnError as e:
    print(e.message)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    message, grown_mb = out.stdout.strip().splitlines()
    assert message == (
        "model 'small_cnn' with width=20000 would have 3.6e10 parameters (144.0 GB); limit 2e8 "
        "(set LANDLEARN_MAX_PARAMS to raise it)"
    )
    assert int(grown_mb) < 100, out.stdout


def test_parameter_cap_is_raisable(good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _hostile(good, _set(model_kwargs={"width": 64}))
    with pytest.raises(LandlearnError, match=r"would have 3.7e5 parameters \(1.5 MB\); limit 1e5"):
        load_bundle(path, max_params=1e5)
    monkeypatch.setenv("LANDLEARN_MAX_PARAMS", "1e5")
    with pytest.raises(LandlearnError, match=r"limit 1e5 \(set LANDLEARN_MAX_PARAMS"):
        load_bundle(path)
    with pytest.raises(LandlearnError, match="weights do not fit"):  # over the cap: next check
        load_bundle(path, max_params=1e6)
    monkeypatch.setenv("LANDLEARN_MAX_PARAMS", "lots")
    with pytest.raises(LandlearnError, match="LANDLEARN_MAX_PARAMS must be a positive number"):
        resolve_max_params()
    with pytest.raises(LandlearnError, match="max_params must be a positive number"):
        resolve_max_params(0)


def _drop(key: str) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    return lambda s: {k: v for k, v in s.items() if k != key}


def test_weights_that_do_not_fit_name_keys_and_shapes(good: Path) -> None:
    def swap(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        state = dict(state)
        del state["features.0.weight"]
        state["foo"] = torch.zeros(1)
        state["fc.1.weight"] = torch.zeros(3, 64)
        return state

    with pytest.raises(LandlearnError) as info:
        load_bundle(_hostile(good, lambda r: None, swap))
    assert info.value.message == (
        "weights do not fit model 'small_cnn': missing features.0.weight; unexpected foo; "
        "shape of fc.1.weight is (3, 64) in the file, (2, 64) in the model"
    )


def test_many_missing_keys_are_cut_to_three(good: Path) -> None:
    edit = _set(model_kwargs={"depth": 5})
    with pytest.raises(LandlearnError, match=r"missing features.9.weight, features.10.weight, "
                       r"features.10.bias \(\+\d+ more\); shape of fc.1.weight"):  # fmt: skip
        load_bundle(_hostile(good, edit))


# ---- checkpoints ---------------------------------------------------------------------------


def _ckpt(tmp_path: Path, **entries: object) -> Path:
    p = tmp_path / "x.ckpt"
    torch.save(entries, p)
    return p


def _state(num_classes: int = 2) -> dict[str, torch.Tensor]:
    model = build_model("small_cnn", in_channels=3, num_classes=num_classes)
    return {f"model.{k}": v for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ({"state_dict": [1, 2], "landlearn_bundle_meta": "{}"}, r"state_dict is a list, expected"),
        ({"state_dict": {}, "landlearn_bundle_meta": [1]}, r"landlearn_bundle_meta is a list, exp"),
        ({"state_dict": {}, "landlearn_bundle_meta": {"a": 1}}, r"_bundle_meta is an object"),
        ({"state_dict": {}, "landlearn_bundle_meta": 3}, r"landlearn_bundle_meta is an integer"),
        ({"state_dict": {}, "landlearn_bundle_meta": "garbage"}, r"metadata is not valid JSON"),
        ({"state_dict": {}, "landlearn_bundle_meta": "[]"}, r"landlearn entry\) is a list"),
        ({"state_dict": {}}, r"not written by a landlearn task"),
        ({"state_dict": {"model.a": 1}, "landlearn_bundle_meta": _meta().to_json()},
         r"state_dict\['model.a'\] is an integer, not a tensor"),
    ],
)  # fmt: skip
def test_hostile_checkpoint_is_one_clear_error(
    tmp_path: Path, entries: dict[str, object], match: str
) -> None:
    with pytest.raises(LandlearnError, match=match):
        load_bundle(_ckpt(tmp_path, **entries))


def test_checkpoint_as_a_list(tmp_path: Path) -> None:
    p = tmp_path / "l.ckpt"
    torch.save([1, 2], p)
    with pytest.raises(LandlearnError, match="checkpoint holds a list, expected a Lightning"):
        load_bundle(p)


def test_checkpoint_weights_that_do_not_fit(tmp_path: Path) -> None:
    p = _ckpt(tmp_path, state_dict=_state(num_classes=5), landlearn_bundle_meta=_meta().to_json())
    with pytest.raises(LandlearnError) as info:
        load_bundle(p)
    assert info.value.message == (
        "weights do not fit model 'small_cnn': shape of fc.1.weight is (5, 64) in the file, "
        "(2, 64) in the model; shape of fc.1.bias is (5,) in the file, (2,) in the model"
    )


def test_checkpoint_meta_is_validated_like_a_header(tmp_path: Path) -> None:
    meta = json.loads(_meta().to_json()) | {"chip_size": 0}
    p = _ckpt(tmp_path, state_dict=_state(), landlearn_bundle_meta=json.dumps(meta))
    with pytest.raises(LandlearnError, match="chip_size must be between 1 and 65536, got 0"):
        load_bundle(p)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran",))


def test_pickled_checkpoint_refusal_is_a_whole_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _ckpt(tmp_path, state_dict={}, callbacks=_Evil())
    with pytest.raises(LandlearnError) as info:
        load_bundle(p)
    assert info.value.message == (
        "checkpoint holds pickled objects besides weights (the Python global print); landlearn "
        "loads weights only (torch.load weights_only=True) and refused it"
    )
    assert "code ran" not in capsys.readouterr().out


def test_good_checkpoint_predicts_like_its_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=3, num_classes=2).eval()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    p = _ckpt(tmp_path, state_dict=state, landlearn_bundle_meta=_meta().to_json())
    x = torch.rand(2, 3, 32, 32) * 40
    mean, std = torch.tensor([10.0, 20.0, 30.0]), torch.tensor([2.0, 4.0, 8.0])
    with torch.no_grad():
        want = torch.softmax(model((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)), 1)
    torch.testing.assert_close(load_bundle(p).predict_proba(x), want)


# ---- classes in a map, ensembles -----------------------------------------------------------


def test_map_class_band_limit() -> None:
    check_map_classes(255)  # indexes 0..254; 255 is the no-data
    with pytest.raises(LandlearnError, match=r"^x.sft: map: 256 classes do not fit the uint8 "):
        check_map_classes(256, "x.sft")


def test_ensemble_member_error_names_the_member(good: Path) -> None:
    bad = _hostile(good, _set(chip_size="big"))
    with pytest.raises(LandlearnError, match="chip_size must be an integer") as info:
        load_ensemble([good, bad])
    assert info.value.path == str(bad)
    with pytest.raises(LandlearnError, match="limit 1e3") as info:
        load_ensemble([good, bad.with_name("good.safetensors")], max_params=1e3)
    assert info.value.path == str(good)
