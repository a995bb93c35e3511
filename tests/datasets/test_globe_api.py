"""GLOBE API download on a response rebuilt from real sky_colombia rows; offline; bad options."""

from __future__ import annotations

import json
import math
import urllib.error
from pathlib import Path

import pandas as pd
import pytest
from tests.cli.conftest import run_cli

from landlearn.data.globe import read_sky_conditions
from landlearn.data.globe_api import API, download, flatten, query_url
from landlearn.errors import LandlearnError

SKY = "globe_observer/sky_colombia"


def _recorded(shared: Path, rows: int = 3) -> tuple[bytes, dict[str, bytes]]:
    """A recorded-style answer: real rows in the API's envelope, and their real photos.

    The envelope is the API's ``{count, message, results: [{site fields…, data: {...}}]}``;
    the rows are the first of ``aggregated_globe_data.csv``.
    """
    df = pd.read_csv(shared / SKY / "aggregated_globe_data.csv").head(rows)
    results, photos = [], {}
    for _, row in df.iterrows():
        plain = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                 for k, v in row.items()}  # fmt: skip
        site = {k: v for k, v in plain.items() if not k.startswith("skyconditions")}
        data = {k: v for k, v in plain.items() if k.startswith("skyconditions")}
        results.append({**site, "data": data})
        obs = row["skyconditionsObservationId"]
        for api, short in (("North", "North"), ("East", "East"), ("South", "South"),
                           ("West", "West"), ("Upward", "Up")):  # fmt: skip
            url = row.get(f"skyconditions{api}PhotoUrl")
            file = shared / SKY / "photos" / f"{obs}_{short}.jpg"
            if isinstance(url, str) and url.startswith("https://") and file.is_file():
                photos[url] = file.read_bytes()
    body = {"count": len(results), "message": "success", "results": results}
    return json.dumps(body).encode(), photos


@pytest.mark.real
def test_download_writes_the_table_and_photos_that_the_reader_links(
    shared_data: Path, tmp_path: Path
) -> None:
    body, photos = _recorded(shared_data)
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return body if url.startswith(API) else photos[url]

    out = tmp_path / "sky"
    summary = download("sky_conditions", "2026-01-01", "2026-03-31", out, delay=0, fetch=fetch)
    assert summary["observations"] == 3
    assert summary["photos_fetched"] == len(photos) > 0
    df = read_sky_conditions(out, table="sky_conditions.csv", missing_photo="skip")
    assert len(df) >= 1
    assert all(Path(p).is_file() for links in df["photos"] for p in links.values())
    again = download("sky_conditions", "2026-01-01", "2026-03-31", out, delay=0, fetch=fetch)
    assert again["photos_fetched"] == 0  # resumed: nothing fetched twice
    assert again["photos_already_there"] == len(photos)
    assert sum(u.startswith(API) for u in calls) == 2


def test_query_urls_follow_the_api() -> None:
    url = query_url("land_covers", "2024-06-01", "2024-06-30")
    assert url.startswith(API + "?protocols=land_covers&startdate=2024-06-01&enddate=2024-06-30")
    assert url.endswith("geojson=FALSE&sample=FALSE")
    box = query_url("sky_conditions", "2024-06-01", "2024-06-30", (-79, -4, -67, 12))
    assert box.startswith(API + "lat/lon/?")
    assert "minlat=-4.0&maxlat=12.0&minlon=-79.0&maxlon=-67.0" in box


def test_flatten_lifts_the_protocol_fields() -> None:
    df = flatten({"results": [{"siteId": 1, "data": {"landcoversMucCode": "M91"}}]})
    assert list(df.columns) == ["siteId", "landcoversMucCode"]
    with pytest.raises(LandlearnError, match="no 'results' list"):
        flatten({"message": "error"})


def test_offline_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(request: object, timeout: float = 0) -> bytes:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    out = tmp_path / "dl"
    args = ["--protocol", "land_covers", "--start", "2024-06-01", "--end", "2024-06-30"]
    code, _, err = run_cli(["globe", "download", *args, "-o", str(out)], capsys)
    assert code == 2
    assert "cannot reach api.globe.gov" in err
    assert err.strip().count("\n") == 0
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "land_covers", "--start", "2024-13-01", "--end", "2024-06-30"],
         "--start must be a date"),
        (["--protocol", "land_covers", "--start", "2024-07-01", "--end", "2024-06-30"],
         "is after --end"),
        (["--protocol", "land_covers", "--start", "2024-06-01", "--end", "2024-06-30",
          "--bbox=10,0,5,1"], "need min < max"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["globe", "download", *args, "-o", str(tmp_path / "o")], capsys)
    assert code == 2
    assert message in err
    assert not (tmp_path / "o").exists()
