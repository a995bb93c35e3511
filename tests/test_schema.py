"""InputSpec / HeadSpec: validation with one-line errors, defaults by kind, JSON round trip."""

from __future__ import annotations

import json
import math

import pytest

from landlearn.conventions import IGNORE_INDEX
from landlearn.errors import LandlearnError
from landlearn.schema import HeadSpec, InputSpec, specs_by_name


def test_input_spec_round_trips_through_json() -> None:
    spec = InputSpec(
        "s2", "raster", bands=["B02", "B03"], mean=[1, 2.5], std=[0.5, 1], nodata=0,
        chip_size=64, resolution=10,
    )  # fmt: skip
    assert spec.bands == ("B02", "B03")
    assert spec.mean == (1.0, 2.5)
    assert spec.num_bands == 2
    text = json.dumps(spec.to_dict())
    back = InputSpec.from_dict(json.loads(text))
    assert back == spec
    assert back.to_dict()["chip_size"] == 64
    assert back.resolution == 10.0


def test_nan_nodata_is_json_safe() -> None:
    spec = InputSpec("s1", bands=["VV", "VH"], nodata=math.nan)
    d = spec.to_dict()
    assert d["nodata"] == "nan"
    json.dumps(d, allow_nan=False)  # strict JSON: would raise on a float NaN
    back = InputSpec.from_dict(d)
    assert back.nodata is not None
    assert math.isnan(back.nodata)


def test_table_input_and_with_stats() -> None:
    spec = InputSpec("meta", "table", bands=["a", "b", "c"])
    assert not spec.has_stats
    filled = spec.with_stats([0, 1, 2], [1, 1, 2])
    assert filled.std == (1.0, 1.0, 2.0)
    assert filled.has_stats
    assert spec.mean is None
    with pytest.raises(LandlearnError, match=r"input 'meta': a table input has no chip_size"):
        InputSpec("meta", "table", bands=["a"], chip_size=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "rastr"}, r"^input 'x': unknown kind 'rastr'; did you mean 'raster'\?$"),
        ({"kind": "zzz"}, r"expected one of raster, table, photos"),
        ({"bands": []}, r"input 'x': give its band or column names"),
        ({"bands": "B1"}, r"bands must be a list of names, got the string 'B1'"),
        ({"bands": ["B1", "B1"]}, r"bands repeat 'B1'"),
        ({"mean": [0.0, 1.0]}, r"give both mean and std, or neither"),
        ({"mean": [0.0], "std": [1.0]}, r"mean / std have 1 / 1 values for 2 bands"),
        ({"mean": [0, 0], "std": [1, 0]}, r"std must be positive"),
        ({"mean": [0, math.nan], "std": [1, 1]}, r"mean must be finite"),
        ({"chip_size": 0}, r"chip_size must be a positive integer, got 0"),
        ({"chip_size": 2.5}, r"chip_size must be a positive integer"),
        ({"resolution": -10}, r"resolution must be positive"),
        ({"nodata": "none"}, r"nodata must be a number, 'nan' or null"),
    ],
)
def test_bad_input_specs(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"name": "x", "bands": ["B1", "B2"], **kwargs}
    with pytest.raises(LandlearnError, match=message):
        InputSpec(**args)  # type: ignore[arg-type]


def test_input_spec_from_dict_names_the_file_and_unknown_keys() -> None:
    with pytest.raises(
        LandlearnError, match=r"^m.json: unknown InputSpec key 'band'; did you mean"
    ):
        InputSpec.from_dict({"name": "x", "kind": "raster", "band": ["B1"]}, "m.json")
    with pytest.raises(LandlearnError, match=r"^m.json: InputSpec needs kind$"):
        InputSpec.from_dict({"name": "x"}, "m.json")
    with pytest.raises(LandlearnError, match=r"^m.json: input 'x': std must be positive"):
        InputSpec.from_dict(
            {"name": "x", "kind": "raster", "bands": ["B"], "mean": [0], "std": [-1]}, "m.json"
        )
    with pytest.raises(LandlearnError, match="InputSpec must be a mapping, got list"):
        InputSpec.from_dict([1, 2])  # type: ignore[arg-type]


def test_class_head_defaults_and_round_trip() -> None:
    head = HeadSpec(
        "lc", "segmentation", classes=["water", "land"], colors=[[0, 0, 255], [0, 128, 0]]
    )
    assert head.target_key == "mask"
    assert head.ignore_index == IGNORE_INDEX
    assert head.num_outputs == head.out_channels == 2
    assert head.is_spatial
    assert not head.is_regression
    assert head.colors == ((0, 0, 255), (0, 128, 0))
    back = HeadSpec.from_dict(json.loads(json.dumps(head.to_dict())))
    assert back == head
    assert HeadSpec("c", "classification", classes=["a", "b"]).target_key == "label"
    assert HeadSpec("m", "multilabel", classes=["a"]).target_key == "label"


def test_regression_head_defaults_and_round_trip() -> None:
    head = HeadSpec(
        "lfmc", "regression", targets=["lfmc"], units=["%"], mean=[100], std=[30], variance=True
    )
    assert head.target_key == "target"
    assert head.ignore_index is None
    assert head.num_outputs == 1
    assert head.out_channels == 2
    assert head.is_regression
    assert not head.is_spatial
    assert HeadSpec("h", "pixel_regression", targets=["h"]).is_spatial
    back = HeadSpec.from_dict(json.loads(json.dumps(head.to_dict())))
    assert back == head
    assert back.mean == (100.0,)
    custom = HeadSpec("y", "regression", targets=["a", "b"], target_key="yield")
    assert custom.target_key == "yield"
    assert custom.units == ()
    assert custom.mean is None


_CLS = {"kind": "classification", "classes": ["a", "b"]}
_REG = {"kind": "regression", "targets": ["t"]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({**_REG, "kind": "regresion"},
         r"^head 'h': unknown kind 'regresion'; did you mean 'regression'\?$"),
        ({**_CLS, "kind": "segmentaton"}, r"did you mean 'segmentation'\?"),
        ({**_CLS, "classes": ["a"]}, r"needs at least 2 class names"),
        ({"kind": "multilabel"}, r"a multilabel head needs at least 1 class names"),
        ({**_CLS, "targets": ["t"]}, r"has classes, not targets"),
        ({**_CLS, "ignore_index": 1}, r"ignore_index 1 is class 'b'; use 255"),
        ({**_CLS, "colors": [[0, 0, 0]]}, r"1 colours for 2 classes"),
        ({**_CLS, "colors": [[0, 0, 0], [0, 0, 256]]}, r"a colour is 3 integers 0-255"),
        ({"kind": "regression"}, r"give its target names"),
        ({**_REG, "classes": ["a"]}, r"has targets, not classes"),
        ({**_REG, "ignore_index": 255}, r"no ignore_index; unknown targets are NaN"),
        ({**_REG, "targets": ["t", "u"], "units": ["%"]}, r"1 units for 2 targets"),
        ({**_REG, "mean": [1], "std": [0]}, r"std must be positive"),
        ({**_REG, "mean": [1, 2], "std": [1, 1]}, r"2 / 2 values for 1 targets"),
        ({**_REG, "variance": "yes"}, r"variance must be true or false"),
    ],
)  # fmt: skip
def test_bad_head_specs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LandlearnError, match=message):
        HeadSpec("h", **kwargs)  # type: ignore[arg-type]


def test_head_from_dict_errors_name_the_file() -> None:
    with pytest.raises(LandlearnError, match=r"^b.json: unknown HeadSpec key 'class_names'"):
        HeadSpec.from_dict({"name": "h", "kind": "classification", "class_names": ["a"]}, "b.json")
    with pytest.raises(LandlearnError, match=r"^b.json: head name must be a non-empty string"):
        HeadSpec.from_dict({"name": "", "kind": "regression"}, "b.json")


def test_specs_by_name_refuses_duplicates() -> None:
    a, b = InputSpec("s2", bands=["B1"]), InputSpec("s1", bands=["VV"])
    assert list(specs_by_name([a, b])) == ["s2", "s1"]
    with pytest.raises(LandlearnError, match=r"two inputs named 's2'; names must be unique"):
        specs_by_name([a, a])


def test_specs_are_frozen() -> None:
    spec = InputSpec("s2", bands=["B1"])
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
