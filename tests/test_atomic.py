"""The one JSON writer: strict JSON (NaN → null), written through a temporary name."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from landlearn.atomic import dump_json, write_json
from landlearn.cli import common
from landlearn.mapping import outputs


def test_dump_json_is_strict_json_with_nan_as_null() -> None:
    text = dump_json({"a": math.nan, "b": [1.5, float("inf"), -math.inf], "c": {"d": math.nan}})
    assert "NaN" not in text
    assert "Infinity" not in text
    assert text.endswith("}\n")
    assert json.loads(text) == {"a": None, "b": [1.5, None, None], "c": {"d": None}}
    assert text == json.dumps(json.loads(text), indent=2) + "\n"  # indented, one final newline


def test_dump_json_converts_numpy_torch_and_paths() -> None:
    data = {
        "f32": np.float32(0.5),
        "i64": np.int64(3),
        "nan32": np.float32("nan"),
        "arr": np.array([[1, 2], [3, 4]]),
        "tensor": torch.tensor([0.25, float("nan")]),
        "path": Path("a") / "b.tif",
        np.int64(7): "numpy key",
    }
    assert json.loads(dump_json(data)) == {
        "f32": 0.5,
        "i64": 3,
        "nan32": None,
        "arr": [[1, 2], [3, 4]],
        "tensor": [0.25, None],
        "path": str(Path("a") / "b.tif"),
        "7": "numpy key",
    }


def test_write_json_replaces_the_target_atomically(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}\n')
    assert write_json(target, {"miou": math.nan}) == target
    assert json.loads(target.read_text()) == {"miou": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temp left


def test_write_json_failure_leaves_the_old_file(tmp_path: Path) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot print")

    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}\n')
    with pytest.raises(RuntimeError, match="cannot print"):
        write_json(target, {"x": Unprintable()})
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_cli_and_map_write_the_same_text(tmp_path: Path) -> None:
    assert common.write_json is write_json
    tmp = tmp_path / ".areas.tmp.json"
    assert outputs.write_marked_json(tmp, {"area": math.nan}) == tmp  # the map commits it later
    data = json.loads(tmp.read_text())
    assert data["area"] is None
    assert "written_by" in data
    assert tmp.read_text() == dump_json(data)
