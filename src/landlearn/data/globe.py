"""GLOBE Observer tables as the GLOBE API flattens them: land covers and sky conditions.

**Land covers** (:func:`read_land_covers`, protocol ``land_covers``). ``landcoversMucCode`` is a
MUC code (Modified UNESCO Classification) such as ``M91`` or ``M1121``: ``M`` and 1 to 4 digits,
one digit per level. Its **first digit is the level-1 class** (:data:`MUC_LEVEL1`, 0 Closed Forest
… 9 Urban): ``M01`` is 0 (closed forest, evergreen), ``M1121`` is 1 (woodland), ``M9`` is 9
(urban, level 1 only). Codes are kept as strings, since ``01`` is not ``1``. In ``lc.csv`` the
level-1 classes agree with the first word of every description (0 "Trees, Closely Spaced",
1 "Trees, Loosely Spaced" or "Woodland", 2 and 3 "Shrubs", 4 "Herbaceous/Grassland", 5 "Barren",
7 "Open Water", 8 "Cultivated", 9 "Urban").

``landcovers{North,East,South,West}Classifications`` list what the observer saw in one direction,
``; ``-separated: ``70% MUC 91 [Urban, Residential Property]; 20% MUC 31 (l) [Shrubs, …]``, each
a percent, a MUC code, an optional detail in brackets (``b``, ``n``, ``l``, ``c``, ``1``: kept as
it is) and the description. The percents of one direction need not add up to 100 (30 to 330 in
``lc.csv``): they are the observer's estimates, kept as given.

**Sky conditions** (:func:`read_sky_conditions`, protocol ``sky_conditions``): a folder with the
flattened table (``aggregated_globe_data.csv``) and ``photos/<skyconditionsObservationId>_
<North|East|South|West|Up|Down>.jpg``. A direction's photo is *expected* where its
``skyconditions<Direction>PhotoUrl`` holds a URL; empty and ``pending approval`` mean none.

Both readers keep every column of the file (numbers and booleans typed) and its index (the
spreadsheet row minus 2, see :func:`landlearn.data.tables.row_name`), and add parsed columns.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from landlearn.data.tables import read_table, row_name, to_booleans, to_dates
from landlearn.errors import LandlearnError

__all__ = [
    "LAND_COVER_DIRECTIONS",
    "MUC_LEVEL1",
    "SKY_CLOUD_TYPES",
    "SKY_PHOTO_DIRECTIONS",
    "SKY_TARGETS",
    "LandCover",
    "parse_classifications",
    "parse_muc_code",
    "read_land_covers",
    "read_sky_conditions",
]

log = logging.getLogger(__name__)

MUC_LEVEL1 = {
    0: "Closed Forest",
    1: "Woodland",
    2: "Shrubland",
    3: "Dwarf Shrubland",
    4: "Herbaceous Vegetation",
    5: "Barren",
    6: "Wetland",
    7: "Open Water",
    8: "Cultivated Land",
    9: "Urban",
}
"""MUC level-1 classes: the first digit of a MUC code."""
LAND_COVER_DIRECTIONS = ("North", "East", "South", "West")
SKY_PHOTO_DIRECTIONS = ("North", "East", "South", "West", "Up", "Down")
"""Photo name suffixes; ``Up`` / ``Down`` are the ``Upward`` / ``Downward`` URL columns."""
SKY_TARGETS = ("SnowIce", "LeavesOnTrees", "DryGround")
"""Boolean surface conditions (``skyconditions<Name>``), typed as pandas ``boolean``."""
SKY_CLOUD_TYPES = (
    "Cirrus",
    "Cirrocumulus",
    "Cirrostratus",
    "Altostratus",
    "Altocumulus",
    "Cumulus",
    "Stratocumulus",
    "Stratus",
    "Nimbostratus",
    "Cumulonimbus",
)
"""Cloud-type flags: ``True`` where ticked, empty where not (read as ``False``)."""

_ENTRY = re.compile(r"^(\d{1,3})\s*%\s*MUC\s+(\d{1,4})\s*(?:\(([^)]*)\))?\s*\[([^\]]*)\]$")
_CODE = re.compile(r"^M?(\d{1,4})$")
_URL_COLUMN = {"Up": "Upward", "Down": "Downward"}
_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


class LandCover(NamedTuple):
    """One part of a direction's classification: ``70% MUC 31 (l) [Shrubs, ...]``."""

    percent: int
    code: str
    description: str
    detail: str | None = None

    @property
    def level1(self) -> int:
        """The MUC level-1 class (first digit of the code)."""
        return int(self.code[0])


def parse_muc_code(text: str) -> str:
    """``"M1121"`` → ``"1121"`` (digits as a string: ``01`` stays ``01``).

    Raises:
        ValueError: not ``M`` and 1 to 4 digits.
    """
    match = _CODE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a MUC code (M and 1-4 digits, e.g. M91)")
    return match.group(1)


def parse_classifications(text: str) -> list[LandCover]:
    """A direction's classification string as its parts, in the order given.

    Raises:
        ValueError: a part that is not ``<percent>% MUC <code> [(<detail>)] [<description>]``,
            or a percent above 100.
    """
    out = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        match = _ENTRY.match(part)
        if match is None or int(match.group(1)) > 100:
            raise ValueError(f"{part!r} is not '<percent>% MUC <code> [<description>]'")
        percent, code, detail, description = match.groups()
        out.append(LandCover(int(percent), code, description.strip(), detail))
    return out


def read_land_covers(path: str | os.PathLike[str], *, errors: str = "raise") -> pd.DataFrame:
    """A GLOBE ``land_covers`` table, one row per observation, with parsed columns added.

    Added: ``measured_date`` (UTC datetime of ``measuredDate``); ``muc_code`` (``"91"``),
    ``muc_level1`` (nullable int 0-9) and ``muc_level1_name`` from ``landcoversMucCode``;
    per direction ``d`` in ``north, east, south, west``: ``d_covers`` (list of
    :class:`LandCover`, empty where none was given) and ``d_muc<k>_pct`` for k = 0..9, the
    summed percent of level-1 class k in that direction (NaN where the direction has no
    classification, 0 where it has one without that class). ``latitude``, ``longitude`` and
    ``elevation`` are float64.

    Args:
        path: the CSV (or parquet) file.
        errors: ``raise`` on a malformed MUC code or classification, or ``skip``: drop its row
            with a logged warning.

    Raises:
        LandlearnError: a missing column, a non-number in latitude / longitude / elevation,
            a bad date, or (``errors="raise"``) a malformed code or classification, naming
            file, row and column.
    """
    _check_option("errors", errors)
    columns = [f"landcovers{d}Classifications" for d in LAND_COVER_DIRECTIONS]
    df = read_table(
        path,
        numeric=["latitude", "longitude", "elevation"],
        required=["measuredDate", "landcoversMucCode", *columns],
    )
    df["measured_date"] = to_dates(df, "measuredDate")
    bad: dict[int, str] = {}
    codes: list[str | None] = []
    for i, value in enumerate(df["landcoversMucCode"]):
        codes.append(_parsed(df, i, "landcoversMucCode", value, parse_muc_code, errors, bad))
    df["muc_code"] = pd.Series(codes, index=df.index, dtype=object)
    level1 = [None if c is None else int(c[0]) for c in codes]
    df["muc_level1"] = pd.array(level1, dtype="Int64")
    df["muc_level1_name"] = [None if k is None else MUC_LEVEL1[k] for k in level1]
    for direction, column in zip(LAND_COVER_DIRECTIONS, columns, strict=True):
        parts = [
            _parsed(df, i, column, v, parse_classifications, errors, bad) or []
            for i, v in enumerate(df[column])
        ]
        given = np.array([len(p) > 0 for p in parts], dtype=bool)
        key = direction.lower()
        df[f"{key}_covers"] = pd.Series(parts, index=df.index, dtype=object)
        for k in MUC_LEVEL1:
            pct = [float(sum(p.percent for p in row if p.level1 == k)) for row in parts]
            df[f"{key}_muc{k}_pct"] = np.where(given, pct, np.nan)
    if bad:
        first = bad[min(bad)]
        log.warning(
            "%s: skipped %d row(s) with malformed values; first: %s",
            df.attrs["path"],
            len(bad),
            first,
        )
        df = df.drop(index=df.index[sorted(bad)])
    return df


def read_sky_conditions(
    folder: str | os.PathLike[str],
    *,
    missing_photo: str = "raise",
    directions: tuple[str, ...] = ("North", "East", "South", "West", "Up"),
    table: str = "aggregated_globe_data.csv",
    photos: str = "photos",
) -> pd.DataFrame:
    """GLOBE ``sky_conditions`` observations with their photos linked by observation id.

    Added: ``observation_id``, ``measured_at`` (UTC datetime of ``skyconditionsMeasuredAt``)
    and ``photos``, a dict direction → ``Path`` of each photo of ``directions`` found. The
    targets :data:`SKY_TARGETS` become nullable booleans and the cloud-type flags plain
    booleans, in place; ``skyconditionsCloudCover`` stays a string.

    Args:
        folder: holds ``table`` and the ``photos`` folder.
        missing_photo: what to do when a direction's URL says there is a photo but no file is
            there: ``raise``, or ``skip`` (drop the row, logged).
        directions: photo names to link, of :data:`SKY_PHOTO_DIRECTIONS`. ``Down`` is not in
            the default: ``sky_colombia`` has the Downward URLs but not their photos.

    Raises:
        LandlearnError: a missing file, folder or column, a repeated observation id, a bad
            value, or (``missing_photo="raise"``) a missing photo, naming the observation id
            and direction.
    """
    _check_option("missing_photo", missing_photo)
    unknown = [d for d in directions if d not in SKY_PHOTO_DIRECTIONS]
    if unknown:
        raise LandlearnError(
            f"unknown photo direction {unknown[0]!r}; expected one of "
            f"{', '.join(SKY_PHOTO_DIRECTIONS)}"
        )
    root = Path(folder)
    photo_dir = root / photos
    if not photo_dir.is_dir():
        raise LandlearnError("no photos folder; expected <folder>/photos", photo_dir)
    urls = [f"skyconditions{_URL_COLUMN.get(d, d)}PhotoUrl" for d in directions]
    targets = [f"skyconditions{t}" for t in SKY_TARGETS]
    df = read_table(
        root / table,
        numeric=["latitude", "longitude", "elevation"],
        required=["skyconditionsObservationId", "skyconditionsMeasuredAt", *targets, *urls],
    )
    for column in targets:
        df[column] = pd.array(_none_for_nan(to_booleans(df, column)), dtype="boolean")
    for name in SKY_CLOUD_TYPES:
        column = f"skyconditions{name}"
        if column in df.columns:
            df[column] = np.nan_to_num(to_booleans(df, column), nan=0.0).astype(bool)
    df["measured_at"] = to_dates(df, "skyconditionsMeasuredAt")
    ids = df["skyconditionsObservationId"].astype(str).str.strip()
    repeated = ids[ids.duplicated()]
    if len(repeated):
        i = int(np.flatnonzero(ids.duplicated().to_numpy())[0])
        raise LandlearnError(
            f"{row_name(df, i)}: observation id {repeated.iloc[0]!r} repeats", df.attrs["path"]
        )
    df["observation_id"] = ids
    files = {p.stem: p for p in sorted(photo_dir.iterdir()) if p.suffix.lower() in _PHOTO_SUFFIXES}
    linked: list[dict[str, Path]] = []
    missing: dict[Any, str] = {}
    for i, obs in enumerate(ids):
        found = {d: files[f"{obs}_{d}"] for d in directions if f"{obs}_{d}" in files}
        for direction, url in zip(directions, urls, strict=True):
            if direction in found or not _is_url(df[url].iloc[i]):
                continue
            problem = (
                f"{row_name(df, i)}: observation {obs!r} has a {direction} photo URL but no "
                f"file {obs}_{direction}.jpg"
            )
            if missing_photo == "raise":
                raise LandlearnError(f"{problem}; add it or pass missing_photo='skip'", photo_dir)
            missing.setdefault(df.index[i], problem)
        linked.append(found)
    if missing:
        first = next(iter(missing.values()))
        log.warning(
            "%s: skipped %d row(s) with a missing photo; first: %s", photo_dir, len(missing), first
        )
    df["photos"] = pd.Series(linked, index=df.index, dtype=object)
    return df.drop(index=list(missing))


def _check_option(name: str, value: str) -> None:
    if value not in ("raise", "skip"):
        raise LandlearnError(f"{name} must be 'raise' or 'skip', got {value!r}")


def _parsed(
    df: pd.DataFrame, i: int, column: str, value: Any, parse: Any, errors: str, bad: dict[int, str]
) -> Any:
    """``parse(value)``; None where empty; a malformed value raised or noted in ``bad``."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return parse(value)
    except ValueError as exc:
        problem = f"{row_name(df, i)}, column {column!r}: {exc}"
        if errors == "raise":
            raise LandlearnError(problem, df.attrs["path"]) from None
        bad.setdefault(i, problem)
        return None


def _none_for_nan(values: np.ndarray) -> list[bool | None]:
    return [None if np.isnan(v) else bool(v) for v in values]


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))
