"""Fetch GLOBE observations and their photos from the public GLOBE API.

The API (``https://api.globe.gov/search/v1/measurement/protocol/measureddate/``, the endpoint
NASA's GLOBE Observer tools use) answers ``{"count", "message", "results": [...]}``; each
result holds the site columns (``protocol``, ``measuredDate``, ``siteId``, ``latitude`` …) and
the protocol's own fields under ``data`` (``landcoversMucCode``, ``skyconditionsNorthPhotoUrl``
…). :func:`flatten` lifts ``data`` into columns, which gives the table as the API's CSV export
flattens it — the layout :func:`landlearn.data.globe.read_land_covers` and
:func:`~landlearn.data.globe.read_sky_conditions` read.

:func:`download` writes ``DIR/<protocol>.csv`` (through a temporary name) and, unless told not
to, each photo a URL column names as ``DIR/photos/<observation id>_<Direction>.jpg`` (the
layout of ``sky_colombia``). It is resumable: a photo already on disk is not fetched again.
Requests are polite: one at a time, ``delay`` seconds apart, with a User-Agent naming
landlearn. Offline (or the API down), it fails with one line.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from landlearn.atomic import atomic_path
from landlearn.errors import LandlearnError
from landlearn.version import __version__

log = logging.getLogger(__name__)

__all__ = ["API", "PROTOCOLS", "download", "flatten", "query_url"]

API = "https://api.globe.gov/search/v1/measurement/protocol/measureddate/"
PROTOCOLS = {"land_covers": "landcovers", "sky_conditions": "skyconditions"}
"""Protocol name → the prefix of its fields."""
_ID = {"land_covers": "landcoversLandCoverId", "sky_conditions": "skyconditionsObservationId"}
_DIRECTIONS = {"North": "North", "East": "East", "South": "South", "West": "West",
               "Upward": "Up", "Downward": "Down"}  # fmt: skip
Fetch = Callable[[str], bytes]


def _check_date(value: str, what: str) -> str:
    try:
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    except (ValueError, TypeError):
        raise LandlearnError(f"{what} must be a date such as 2024-01-31, got {value!r}") from None


def query_url(protocol: str, start: str, end: str, bbox: Sequence[float] | None = None) -> str:
    """The API URL of one protocol's observations between two dates (inside ``bbox``).

    Args:
        bbox: ``(min_lon, min_lat, max_lon, max_lat)`` in degrees.

    Raises:
        LandlearnError: unknown protocol, a bad date, or a malformed box.
    """
    if protocol not in PROTOCOLS:
        raise LandlearnError(f"unknown protocol {protocol!r}; choose {', '.join(PROTOCOLS)}")
    params = {"protocols": protocol, "startdate": _check_date(start, "--start"),
              "enddate": _check_date(end, "--end")}  # fmt: skip
    if params["startdate"] > params["enddate"]:
        raise LandlearnError(f"--start {start} is after --end {end}")
    url = API
    if bbox is not None:
        if len(bbox) != 4:
            raise LandlearnError(f"--bbox is min_lon,min_lat,max_lon,max_lat; got {bbox}")
        lon0, lat0, lon1, lat1 = (float(v) for v in bbox)
        if not (-180 <= lon0 < lon1 <= 180 and -90 <= lat0 < lat1 <= 90):
            raise LandlearnError(
                f"--bbox {lon0},{lat0},{lon1},{lat1}: need min < max within ±180 / ±90 degrees"
            )
        url = API + "lat/lon/"
        params.update(minlat=str(lat0), maxlat=str(lat1), minlon=str(lon0), maxlon=str(lon1))
    params.update(geojson="FALSE", sample="FALSE")
    return url + "?" + urllib.parse.urlencode(params)


def flatten(response: Any, where: str = "GLOBE API response") -> pd.DataFrame:
    """The ``results`` of an API response as one row per observation, ``data`` lifted up.

    Raises:
        LandlearnError: not an API response (no ``results`` list, or a result not an object).
    """
    results = response.get("results") if isinstance(response, dict) else None
    if not isinstance(results, list):
        message = response.get("message") if isinstance(response, dict) else None
        raise LandlearnError(
            f"{where}: no 'results' list (message: {message!r}); the API may be down"
        )
    rows = []
    for i, item in enumerate(results):
        if not isinstance(item, dict) or not isinstance(item.get("data", {}), dict):
            raise LandlearnError(f"{where}: result {i} is not an observation object")
        row = {k: v for k, v in item.items() if k != "data"}
        row.update(item.get("data") or {})
        rows.append(row)
    return pd.DataFrame(rows)


def _http_get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": f"landlearn/{__version__}"})
    with urllib.request.urlopen(request, timeout=60) as answer:  # https URLs only
        return bytes(answer.read())


def _get(fetch: Fetch, url: str, what: str) -> bytes:
    try:
        return fetch(url)
    except urllib.error.HTTPError as exc:
        raise LandlearnError(f"{what}: HTTP {exc.code} from {url}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LandlearnError(
            f"{what}: cannot reach {urllib.parse.urlsplit(url).netloc} ({reason}); offline? "
            "Files fetched so far are kept and a re-run resumes"
        ) from None


def _photo_urls(df: pd.DataFrame, protocol: str) -> list[tuple[str, str, str]]:
    """``(observation id, direction, url)`` of every photo URL in the table."""
    prefix, id_column = PROTOCOLS[protocol], _ID[protocol]
    if id_column not in df.columns:
        return []
    out = []
    for _, row in df.iterrows():
        obs = str(row[id_column]).strip()
        for api_name, short in _DIRECTIONS.items():
            url = row.get(f"{prefix}{api_name}PhotoUrl")
            if isinstance(url, str) and url.strip().lower().startswith("https://"):
                out.append((obs, short, url.strip()))
    return out


def download(
    protocol: str,
    start: str,
    end: str,
    out_dir: str | os.PathLike[str],
    *,
    bbox: Sequence[float] | None = None,
    photos: bool = True,
    delay: float = 1.0,
    fetch: Fetch = _http_get,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fetch observations (and photos) into ``out_dir``; what was written and skipped.

    Raises:
        LandlearnError: bad options, the API unreachable or not answering as expected.
    """
    url = query_url(protocol, start, end, bbox)
    out = Path(out_dir)
    raw = _get(fetch, url, "GLOBE API")
    try:
        response = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LandlearnError(f"GLOBE API: the answer to {url} is not JSON") from None
    df = flatten(response)
    table = out / f"{protocol}.csv"
    with atomic_path(table) as tmp:
        df.to_csv(tmp, index=False)
    found = _photo_urls(df, protocol) if photos else []
    fetched = kept = 0
    folder = out / "photos"
    for i, (obs, direction, photo_url) in enumerate(found):
        target = folder / f"{obs}_{direction}.jpg"
        if target.is_file() and target.stat().st_size > 0:
            kept += 1
        else:
            if fetched:
                time.sleep(delay)
            data = _get(fetch, photo_url, f"photo {target.name}")
            folder.mkdir(exist_ok=True)
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
            fetched += 1
        if progress is not None:
            progress(i + 1, len(found))
    summary = {"table": str(table), "observations": len(df), "photos_fetched": fetched,
               "photos_already_there": kept, "url": url}  # fmt: skip
    log.info("GLOBE %s: %d observations → %s; photos %d fetched, %d already there",
             protocol, len(df), table, fetched, kept)  # fmt: skip
    return summary
