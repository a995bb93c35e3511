"""GLOBE Observer tables: the real land covers and sky conditions, and handwritten bad files."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from landlearn.data.globe import (
    LandCover,
    parse_classifications,
    read_land_covers,
    read_sky_conditions,
)
from landlearn.data.tables import TableEncoder
from landlearn.errors import LandlearnError

# The first word of a level-1 class's descriptions in lc.csv (Trees: 0 closely, 1 loosely).
_FIRST_WORDS = {
    0: {"Trees"},
    1: {"Trees", "Woodland"},
    2: {"Shrubs"},
    3: {"Shrubs"},
    4: {"Herbaceous/Grassland"},
    5: {"Barren"},
    7: {"Open Water"},
    8: {"Cultivated", "Cultivated Land"},
    9: {"Urban"},
}


@pytest.fixture(scope="module")
def land_covers(shared_data: Path) -> pd.DataFrame:
    return read_land_covers(shared_data / "globe_observer" / "lc.csv")


@pytest.mark.real
def test_real_land_covers(land_covers: pd.DataFrame) -> None:
    lc = land_covers
    assert len(lc) == 296
    counts = lc["muc_level1"].value_counts().to_dict()
    assert counts == {9: 45, 1: 32, 4: 32, 0: 20, 8: 5, 7: 3, 3: 2, 5: 2, 2: 1}
    assert lc["muc_level1"].isna().sum() == 154
    assert (lc.loc[0, "muc_code"], lc.loc[0, "muc_level1_name"]) == ("71", "Open Water")
    assert set(lc.loc[lc["landcoversMucCode"] == "M01", "muc_code"]) == {"01"}
    assert lc["north_covers"].map(len).gt(0).sum() == 69
    assert lc["measured_date"].min() == pd.Timestamp("2021-01-01", tz="UTC")
    assert lc["measured_date"].max() == pd.Timestamp("2021-02-01", tz="UTC")
    assert lc["elevation"].dtype == np.float64
    assert (lc["latitude"] < 0).sum() == 59


@pytest.mark.real
def test_real_directional_classifications(land_covers: pd.DataFrame) -> None:
    lc = land_covers
    row = lc.index[lc["landcoversWestClassifications"].fillna("").str.startswith("70% MUC 91")][0]
    assert lc.loc[row, "west_covers"] == [
        LandCover(70, "91", "Urban, Residential Property"),
        LandCover(50, "43", "Herbaceous/Grassland, Short Grass"),
        LandCover(20, "31", "Shrubs, Loosely Spaced, Short Evergreen", "l"),
    ]
    pct = [lc.loc[row, f"west_muc{k}_pct"] for k in range(10)]
    assert pct == [0, 0, 0, 20, 50, 0, 0, 0, 0, 70]
    # No classification: NaN helpers (unknown), not 0 (seen and absent).
    assert lc.loc[lc["north_covers"].map(len) == 0, "north_muc9_pct"].isna().all()
    words: Counter[tuple[int, str]] = Counter()
    for d in ("north", "east", "south", "west"):
        for covers in lc[f"{d}_covers"]:
            words.update((c.level1, c.description.split(",")[0]) for c in covers)
    assert sum(words.values()) == 736
    assert all(word in _FIRST_WORDS[k] for k, word in words)


@pytest.mark.real
def test_real_land_covers_encode_from_a_training_split(land_covers: pd.DataFrame) -> None:
    lc = land_covers[land_covers["muc_level1"].notna()]
    train, valid = lc.iloc[::2], lc.iloc[1::2]
    pct = [c for c in lc.columns if c.endswith("_pct")]
    enc = TableEncoder(
        numeric=["elevation", *pct],
        boolean=["landcoversDryGround"],
        date=["measuredDate"],
        latlon=("latitude", "longitude"),
    ).fit(train)
    out = enc.transform(valid)
    assert out.shape == (71, len(enc.feature_names))
    assert np.isfinite(out).all()
    assert "north_muc9_pct__missing" in enc.feature_names


@pytest.mark.real
def test_real_sky_conditions_link_257_photos(shared_data: Path) -> None:
    sky = read_sky_conditions(shared_data / "globe_observer" / "sky_colombia")
    assert len(sky) == 54
    assert sky["photos"].map(len).sum() == 257
    per_direction = Counter(d for photos in sky["photos"] for d in photos)
    assert per_direction == {"West": 53, "Up": 52, "South": 51, "East": 51, "North": 50}
    for obs, photos in zip(sky["observation_id"], sky["photos"], strict=True):
        assert all(p.name == f"{obs}_{d}.jpg" and p.is_file() for d, p in photos.items())
    assert sky["skyconditionsLeavesOnTrees"].dtype == "boolean"
    assert sky["skyconditionsLeavesOnTrees"].sum() == 52
    assert not sky["skyconditionsSnowIce"].any()
    assert sky["skyconditionsDryGround"].sum() == 45
    assert sky["skyconditionsCumulus"].dtype == bool
    assert sky["skyconditionsCloudCover"].value_counts()["broken"] == 20
    assert sky["measured_at"].dt.year.unique().tolist() == [2026]


@pytest.mark.real
def test_real_sky_downward_photos_are_missing(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = shared_data / "globe_observer" / "sky_colombia"
    with pytest.raises(LandlearnError, match=r"has a Down photo URL but no file .*_Down\.jpg"):
        read_sky_conditions(folder, directions=("North", "Down"))
    with caplog.at_level(logging.WARNING, logger="landlearn.data.globe"):
        sky = read_sky_conditions(folder, directions=("North", "Down"), missing_photo="skip")
    assert len(sky) == 26  # 28 Downward URLs without a photo dropped
    assert "skipped 28 row(s) with a missing photo" in caplog.text


def _write_land_covers(path: Path, north: list[str]) -> Path:
    rows = [
        {
            "measuredDate": f"2021-01-0{i + 1}",
            "latitude": 10.0 - 20 * i,
            "longitude": 5.0,
            "elevation": 100.0,
            "landcoversMucCode": "M43",
            "landcoversNorthClassifications": text,
            "landcoversEastClassifications": None,
            "landcoversSouthClassifications": None,
            "landcoversWestClassifications": None,
        }
        for i, text in enumerate(north)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_malformed_classification_raises_or_skips(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = "60% MUC 43 [Herbaceous/Grassland, Short Grass]; 40% MUC 02 (b) [Trees]"
    path = _write_land_covers(tmp_path / "lc.csv", [good, "60% MUC 43 Herbaceous", good])
    with pytest.raises(LandlearnError) as info:
        read_land_covers(path)
    assert str(info.value) == (
        f"{path}: row 3, column 'landcoversNorthClassifications': '60% MUC 43 Herbaceous' is "
        "not '<percent>% MUC <code> [<description>]'"
    )
    with caplog.at_level(logging.WARNING, logger="landlearn.data.globe"):
        lc = read_land_covers(path, errors="skip")
    assert lc.index.tolist() == [0, 2]
    assert "skipped 1 row(s)" in caplog.text
    assert lc.loc[0, "north_muc4_pct"] == 60
    assert lc.loc[0, "north_muc0_pct"] == 40
    with pytest.raises(LandlearnError, match="errors must be 'raise' or 'skip'"):
        read_land_covers(path, errors="ignore")


def test_malformed_muc_code_and_percent(tmp_path: Path) -> None:
    path = _write_land_covers(tmp_path / "lc.csv", ["120% MUC 43 [Grass]"])
    with pytest.raises(LandlearnError, match=r"row 2, column 'landcoversNorth.*'120% MUC 43"):
        read_land_covers(path)
    df = pd.read_csv(path)
    df.loc[0, ["landcoversMucCode", "landcoversNorthClassifications"]] = ["X43", None]
    df.to_csv(path, index=False)
    with pytest.raises(LandlearnError, match=r"row 2, column 'landcoversMucCode': 'X43' is not"):
        read_land_covers(path)
    assert parse_classifications(" ; 5 %  MUC 9 [Urban] ;") == [LandCover(5, "9", "Urban")]


def _sky_folder(root: Path, north_urls: list[str | None], files: list[str]) -> Path:
    (root / "photos").mkdir(parents=True)
    for name in files:
        (root / "photos" / name).write_bytes(b"")
    rows = []
    for i, url in enumerate(north_urls):
        row = {
            "skyconditionsObservationId": f"obs-{i}",
            "skyconditionsMeasuredAt": "2026-03-01T12:00:00",
            "latitude": 6.2,
            "longitude": -75.5,
            "elevation": 1500.0,
            "skyconditionsSnowIce": False,
            "skyconditionsLeavesOnTrees": "true",
            "skyconditionsDryGround": None,
            "skyconditionsCumulus": True if i == 0 else None,
        }
        for d in ("North", "East", "South", "West", "Upward"):
            row[f"skyconditions{d}PhotoUrl"] = url if d == "North" else None
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "aggregated_globe_data.csv", index=False)
    return root


def test_sky_missing_photo_raises_or_skips(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = "https://data.globe.gov/system/photos/2026/03/01/1/original.jpg"
    folder = _sky_folder(tmp_path / "sky", [url, url, "pending approval"], ["obs-0_North.jpg"])
    with pytest.raises(LandlearnError) as info:
        read_sky_conditions(folder)
    assert str(info.value) == (
        f"{folder / 'photos'}: row 3: observation 'obs-1' has a North photo URL but no file "
        "obs-1_North.jpg; add it or pass missing_photo='skip'"
    )
    with caplog.at_level(logging.WARNING, logger="landlearn.data.globe"):
        sky = read_sky_conditions(folder, missing_photo="skip")
    assert sky["observation_id"].tolist() == ["obs-0", "obs-2"]  # pending: no photo expected
    assert sky["photos"].tolist() == [{"North": folder / "photos" / "obs-0_North.jpg"}, {}]
    assert sky["skyconditionsLeavesOnTrees"].tolist() == [True, True]
    assert sky["skyconditionsDryGround"].isna().all()
    assert sky["skyconditionsCumulus"].tolist() == [True, False]
    assert "obs-1" in caplog.text


def test_sky_bad_inputs(tmp_path: Path) -> None:
    folder = _sky_folder(tmp_path / "sky", [None, None], [])
    with pytest.raises(LandlearnError, match="unknown photo direction 'Upward'"):
        read_sky_conditions(folder, directions=("Upward",))
    with pytest.raises(LandlearnError, match="no photos folder"):
        read_sky_conditions(tmp_path)
    df = pd.read_csv(folder / "aggregated_globe_data.csv")
    df.loc[1, "skyconditionsObservationId"] = "obs-0"
    df["skyconditionsSnowIce"] = ["sometimes", "no"]
    df.to_csv(folder / "aggregated_globe_data.csv", index=False)
    with pytest.raises(LandlearnError, match=r"row 2, column 'skyconditionsSnowIce': 'sometimes'"):
        read_sky_conditions(folder)
    df["skyconditionsSnowIce"] = ["no", "no"]
    df.to_csv(folder / "aggregated_globe_data.csv", index=False)
    with pytest.raises(LandlearnError, match=r"row 3: observation id 'obs-0' repeats"):
        read_sky_conditions(folder)
    df.drop(columns="skyconditionsDryGround").to_csv(folder / "aggregated_globe_data.csv")
    with pytest.raises(LandlearnError, match="missing required column 'skyconditionsDryGround'"):
        read_sky_conditions(folder)
