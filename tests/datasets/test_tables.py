"""Table reading and encoding: training statistics only, unknowns, missing values, seasons."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landlearn.data.tables import UNKNOWN, TableEncoder, read_table
from landlearn.errors import LandlearnError


def _frame(rng: np.random.Generator, n: int, loc: float, land: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "elevation": rng.normal(loc, 2.0 + loc / 10, n),
            "dry": rng.choice(["yes", "no"], n),
            "land": rng.choice(land, n),
        }
    )


def test_statistics_come_from_the_training_rows_only() -> None:
    rng = np.random.default_rng(0)
    train = _frame(rng, 40, 10.0, ["forest", "urban"])
    valid = _frame(rng, 30, 1000.0, ["water"])
    enc = TableEncoder(numeric=["elevation"], boolean=["dry"], categorical=["land"]).fit(train)
    out = enc.transform(valid)
    mean, std = train["elevation"].mean(), train["elevation"].std(ddof=0)
    assert enc.state is not None
    assert enc.state["numeric"]["elevation"]["mean"] == pytest.approx(mean, rel=1e-12)
    assert enc.state["numeric"]["elevation"]["std"] == pytest.approx(std, rel=1e-12)
    assert enc.state["boolean"]["dry"]["mean"] == pytest.approx((train["dry"] == "yes").mean())
    np.testing.assert_allclose(out[:, 0], (valid["elevation"] - mean) / std, rtol=1e-5)
    # Validation's values are far away: leaking them would move the statistics a lot.
    both = pd.concat([train, valid], ignore_index=True)
    leaked = TableEncoder(numeric=["elevation"]).fit(both).state
    assert leaked is not None
    assert abs(leaked["numeric"]["elevation"]["mean"] - mean) > 100
    assert enc.feature_names == ["elevation", "dry", "land=forest", "land=urban", f"land={UNKNOWN}"]


def test_unseen_and_missing_categories_go_to_the_unknown_bucket() -> None:
    enc = TableEncoder(categorical=["land"]).fit(pd.DataFrame({"land": ["urban", "forest"]}))
    out = enc.transform(pd.DataFrame({"land": ["forest", "desert", None, " urban "]}))
    assert enc.feature_names == ["land=forest", "land=urban", "land=__unknown__"]
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0]])


def test_integer_categories_match_whether_or_not_the_column_had_nan() -> None:
    enc = TableEncoder(categorical=["zone"]).fit(pd.DataFrame({"zone": [3, 7]}))
    out = enc.transform(pd.DataFrame({"zone": [7.0, np.nan]}))
    np.testing.assert_array_equal(out, [[0, 1, 0], [0, 0, 1]])


def test_missing_values_get_the_training_mean_and_an_indicator() -> None:
    train = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [2.0, 4.0, 6.0], "wet": [True, None, True]})
    enc = TableEncoder(numeric=["a", "b"], boolean=["wet"]).fit(train)
    assert enc.feature_names == ["a", "a__missing", "b", "wet", "wet__missing"]
    out = enc.transform(pd.DataFrame({"a": [np.nan, 3.0], "b": [np.nan, 6.0], "wet": [None, 0]}))
    # a: mean 2, std 1; b has no indicator (complete in training) but is imputed all the same.
    np.testing.assert_allclose(out, [[0, 1, 0, 1, 1], [1, 0, 1.224745, 0, 0]], rtol=1e-5)
    assert out.dtype == np.float32


def test_boolean_words_in_any_case() -> None:
    df = pd.DataFrame({"snow": ["yes", "No", "TRUE", "false", 1, 0, "  True "]})
    out = TableEncoder(boolean=["snow"]).fit_transform(df)
    np.testing.assert_array_equal(out[:, 0], [1, 0, 1, 0, 1, 0, 1])
    with pytest.raises(LandlearnError, match=r"index 1, column 'snow': 'maybe' is not a boolean"):
        TableEncoder(boolean=["snow"]).fit(pd.DataFrame({"snow": ["yes", "maybe"]}))


def test_season_flips_south_of_the_equator() -> None:
    df = pd.DataFrame(
        {
            "when": ["2021-01-15", "2021-01-15", "2021-07-10T12:00:00", "2021-04-01", None],
            "lat": [45.0, -33.9, -33.9, -10.0, 5.0],
            "lon": [7.0, 18.4, 18.4, 0.0, 0.0],
        }
    )
    enc = TableEncoder(date=["when"], latlon=("lat", "lon")).fit(df)
    out = pd.DataFrame(enc.transform(df), columns=enc.feature_names)
    seasons = [f"when__season={s}" for s in ("winter", "spring", "summer", "autumn")]
    picked = [
        seasons[i].split("=")[1] if out.loc[r, seasons].sum() else None
        for r, i in enumerate(out[seasons].to_numpy().argmax(1))
    ]
    assert picked == ["winter", "summer", "winter", "autumn", None]
    # Day of year is the same feature in both hemispheres; the missing date is flagged.
    assert out.loc[0, "when__doy_sin"] == out.loc[1, "when__doy_sin"]
    assert out.loc[0, "when__doy_sin"] == pytest.approx(np.sin(2 * np.pi * 14 / 365), abs=1e-6)
    assert out["when__missing"].tolist() == [0, 0, 0, 0, 1]


def test_latlon_is_a_unit_vector_continuous_across_the_date_line() -> None:
    df = pd.DataFrame({"lat": [0.0, 90.0, 10.0, 10.0, np.nan], "lon": [0.0, 33.0, 180, -180, 1]})
    enc = TableEncoder(latlon=("lat", "lon")).fit(df)
    out = enc.transform(df)
    assert enc.feature_names == ["latlon__x", "latlon__y", "latlon__z", "latlon__missing"]
    np.testing.assert_allclose(out[0], [1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out[1], [0, 0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(out[2], out[3], atol=1e-6)
    np.testing.assert_array_equal(out[4], [0, 0, 0, 1])
    with pytest.raises(LandlearnError, match=r"column 'lat': 95.0 is out of range"):
        enc.transform(pd.DataFrame({"lat": [95.0], "lon": [0.0]}))


def test_round_trip_through_json_gives_identical_output() -> None:
    rng = np.random.default_rng(1)
    df = _frame(rng, 25, 5.0, ["a", "b", "c"])
    df.loc[3, "elevation"] = np.nan
    df["date"] = pd.date_range("2021-01-01", periods=25, freq="17D").astype(str)
    df["lat"], df["lon"] = rng.uniform(-60, 60, 25), rng.uniform(-180, 180, 25)
    enc = TableEncoder(
        numeric=["elevation"],
        boolean=["dry"],
        categorical=["land"],
        date=["date"],
        latlon=("lat", "lon"),
    ).fit(df)
    again = TableEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again.feature_names == enc.feature_names
    np.testing.assert_array_equal(again.transform(df), enc.transform(df))
    spec = again.input_spec()
    assert (spec.name, spec.kind, list(spec.bands)) == ("meta", "table", enc.feature_names)
    assert set(spec.mean or ()) == {0.0}
    assert set(spec.std or ()) == {1.0}
    with pytest.raises(LandlearnError, match="table encoder format 7"):
        TableEncoder.from_dict({**enc.to_dict(), "format": 7})
    broken = enc.to_dict()
    del broken["state"]["categorical"]["land"]
    with pytest.raises(LandlearnError, match="malformed table encoder"):
        TableEncoder.from_dict(broken, where="bundle.json")


def test_infer_roles_by_documented_rules() -> None:
    df = pd.DataFrame(
        {
            "Unnamed: 0": [0, 1, 2, 3],
            "siteId": [11, 12, 13, 14],
            "Latitude": [1.0, 2.0, -3.0, 4.0],
            "Longitude": [5.0, 6.0, 7.0, 8.0],
            "elevation": [100, 200, 300, 400],
            "dry": ["yes", "no", None, "Yes"],
            "measured": ["2021-01-01", "2021-02-01T10:00:00", None, "2021-03-01"],
            "land": ["forest", "urban", "forest", None],
            "notes": ["a", "b", "c", "d"],
            "label": [0, 1, 0, 1],
        }
    )
    enc = TableEncoder.infer(df, exclude=["label"], max_categories=3)
    assert enc.roles == {
        "numeric": ["elevation"],
        "boolean": ["dry"],
        "categorical": ["land"],
        "date": ["measured"],
    }
    assert enc.latlon == ("Latitude", "Longitude")


def test_errors_name_file_row_and_column(tmp_path: Path) -> None:
    rows = [f"{i},{100 + i},forest" for i in range(1, 12)]
    rows[10] = "11,abc,forest"  # the 11th data row: row 12 in a spreadsheet (header is row 1)
    path = tmp_path / "lc.csv"
    path.write_text("id,elevation,land\n" + "\n".join(rows) + "\n")
    with pytest.raises(LandlearnError) as info:
        read_table(path, numeric=["elevation"])
    assert str(info.value) == f"{path}: row 12, column 'elevation': 'abc' is not a number"
    df = read_table(path)  # read as text; the encoder names the same row
    with pytest.raises(LandlearnError) as info:
        TableEncoder(numeric=["elevation"]).fit(df.iloc[5:])
    assert str(info.value) == f"{path}: row 12, column 'elevation': 'abc' is not a number"
    with pytest.raises(LandlearnError) as info:
        read_table(path, required=["elevaton"])
    assert info.value.message == "missing required column 'elevaton'; did you mean 'elevation'?"
    with pytest.raises(LandlearnError, match=r"row 3, column 'land': no value in a required"):
        TableEncoder(numeric=["id"], required=["land"]).fit(
            pd.DataFrame({"id": [1, 2], "land": ["a", None]}).pipe(_as_read, path)
        )


def _as_read(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    df.attrs["path"] = str(path)
    return df


def test_encoder_refuses_misuse() -> None:
    with pytest.raises(LandlearnError, match="not fitted"):
        TableEncoder(numeric=["a"]).transform(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(LandlearnError, match="'a' has two roles"):
        TableEncoder(numeric=["a"], categorical=["a"])
    with pytest.raises(LandlearnError, match="no value in the training rows"):
        TableEncoder(numeric=["a"]).fit(pd.DataFrame({"a": [np.nan, np.nan]}))
    enc = TableEncoder(numeric=["a"]).fit(pd.DataFrame({"a": [1.0, 2.0]}))
    with pytest.raises(LandlearnError, match="missing required column 'a'; did you mean 'A'"):
        enc.transform(pd.DataFrame({"A": [1.0]}))
    with pytest.raises(LandlearnError, match=r"index 'x', column 'a': 'inf' is not a finite"):
        enc.transform(pd.DataFrame({"a": ["inf"]}, index=["x"]))


def test_parquet_without_pyarrow_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(LandlearnError) as info:
        read_table(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: reading parquet needs pyarrow, which is not installed")


def test_unreadable_tables_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(LandlearnError, match="no such table file"):
        read_table(tmp_path / "none.csv")
    (tmp_path / "t.xlsx").write_bytes(b"x")
    with pytest.raises(LandlearnError, match=r"unknown table format '.xlsx'"):
        read_table(tmp_path / "t.xlsx")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(LandlearnError, match="cannot read the table") as info:
        read_table(tmp_path / "bad.csv")
    assert "\n" not in str(info.value)
