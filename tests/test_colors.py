"""Class colours: the default palette, hex strings, user colours."""

from __future__ import annotations

import pytest

import landlearn.bundle.meta
from landlearn.colors import default_colors, hex_color, parse_colors
from landlearn.errors import LandlearnError


def test_default_colors_are_tab10_then_tab20() -> None:
    ten = default_colors(10)
    assert ten[0] == [31, 119, 180]
    assert ten[1] == [255, 127, 14]
    assert len({tuple(c) for c in ten}) == 10
    twelve = default_colors(12)
    assert twelve[0] == [31, 119, 180]
    assert twelve[1] == [174, 199, 232]
    assert all(0 <= v <= 255 for c in twelve for v in c)
    assert default_colors(0) == []


def test_hex_color_uses_the_first_three_values() -> None:
    assert hex_color([255, 0, 16]) == "#ff0010"
    assert hex_color((1, 2, 3, 255)) == "#010203"


def test_parse_colors_accepts_lists_fractions_and_dicts() -> None:
    assert parse_colors([[255, 0, 0, 9], [0, 128, 0, 255]], 2, "x") == [(255, 0, 0), (0, 128, 0)]
    assert parse_colors([[1.0, 0.5, 0.0]], 1, "x.json") == [(255, 128, 0)]  # 0-1 floats
    assert parse_colors([[1, 0, 0]], 1, "x.json") == [(1, 0, 0)]  # whole numbers stay 0-255
    assert parse_colors({"water": [0, 0, 255], "land": [0, 255, 0]}, 2, "x") == [
        (0, 0, 255), (0, 255, 0)
    ]  # fmt: skip
    assert parse_colors({"class_colors": [[9, 9, 9], [8, 8, 8]]}, 1, "x") == [(9, 9, 9)]


def test_parse_colors_errors_name_the_file() -> None:
    with pytest.raises(LandlearnError, match=r"^c\.json: expected 3 class colours"):
        parse_colors([[1, 2, 3]], 3, "c.json")
    with pytest.raises(LandlearnError, match=r"^c\.json: class colours must be a list"):
        parse_colors([[1, 2, 3], "red"], 2, "c.json")


def test_bundle_defines_no_colour_helpers() -> None:
    assert landlearn.bundle.meta.default_colors is default_colors  # imported, not a copy
    assert not hasattr(landlearn.bundle, "hex_color")
