"""Tabular inputs: read a CSV or parquet table and encode its rows as float32 features.

:class:`TableEncoder` learns every statistic from the rows given to :meth:`~TableEncoder.fit`
(the training split) and applies them to any rows; the result is the ``meta`` input of
``DESIGN.md``, ``(N, F)`` float32, with ``feature_names`` in column order. Columns by role:

- ``numeric``: ``(x - mean) / max(std, MIN_STD)`` with the training mean and population std
  (the one normalisation, :func:`landlearn.data.normalize.normalize`). Missing → the training
  mean (0 after standardising).
- ``boolean``: 1 / 0 from True / False, 1 / 0, ``yes`` / ``no``, ``true`` / ``false`` (any case).
  Missing → the training fraction of true values.
- ``categorical``: one-hot ``<col>=<value>`` over the values seen in training (sorted), plus
  ``<col>=__unknown__`` for values not seen in training and for missing values.
- ``date``: ISO 8601 strings or datetimes (naive ones read as UTC): ``<col>__doy_sin`` and
  ``<col>__doy_cos`` of the day of year, and a one-hot meteorological season
  ``<col>__season=winter|spring|summer|autumn`` (DJF, MAM, JJA, SON north of the equator; shifted
  by six months where the row's latitude is below 0, so January is summer there). The latitude
  is that of ``latlon``; without ``latlon`` every row counts as northern (a warning at fit), and
  a row without latitude gets no season (all four 0).
- ``latlon``: the unit vector ``latlon__x, __y, __z`` of the point on the sphere. Chosen over
  ``sin(lat), sin(lon), cos(lon)`` because it is continuous everywhere: across the date line and
  at the poles, where every longitude is the same place. Missing lat or lon → ``(0, 0, 0)``.

Indicator columns ``<col>__missing`` (1 where the value was missing) follow one rule: a numeric,
boolean or date column, or the latlon pair, gets one when the *training* rows miss a value there.
A value missing at transform time in a column without indicator is still imputed as above.

Only numeric columns are standardised; indicators, booleans, one-hots and the sine / cosine /
unit-vector features stay as they are (already 0 / 1 or within -1..1). The encoder's output is
therefore final: :meth:`TableEncoder.input_spec` states mean 0 and std 1 for every feature, so
normalising it again (as the datamodules do per input) changes nothing.

Rows in error messages are counted as a spreadsheet shows them: the header is row 1, the first
data row is row 2, for tables read by :func:`read_table` (which records the file in
``df.attrs["path"]``; the index must still be :func:`read_table`'s). Other frames are named by
their index label (``index 7``).
"""

from __future__ import annotations

import copy
import importlib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from landlearn.data.normalize import MIN_STD, normalize
from landlearn.errors import LandlearnError
from landlearn.registry import did_you_mean
from landlearn.schema import InputSpec

__all__ = [
    "ENCODER_FORMAT",
    "SEASONS",
    "UNKNOWN",
    "TableEncoder",
    "read_table",
    "require_columns",
    "row_name",
    "to_booleans",
    "to_dates",
    "to_numbers",
]

log = logging.getLogger(__name__)

ENCODER_FORMAT = 1
"""Version of :meth:`TableEncoder.to_dict`'s layout."""
UNKNOWN = "__unknown__"
"""The one-hot bucket of categories not seen in training (and of missing values)."""
SEASONS = ("winter", "spring", "summer", "autumn")
_TRUE = frozenset({"true", "yes", "1", "1.0"})
_FALSE = frozenset({"false", "no", "0", "0.0"})
_ROLES = ("numeric", "boolean", "categorical", "date")
Where = str | os.PathLike[str]


def row_name(df: pd.DataFrame, position: int) -> str:
    """``row 12`` (spreadsheet row: header 1) for a :func:`read_table` frame, else ``index 7``."""
    label = df.index[position]
    if df.attrs.get("path") and isinstance(label, int | np.integer):
        return f"row {int(label) + 2}"
    return f"index {label!r}"


def _fail(df: pd.DataFrame, position: int, column: str, problem: str) -> LandlearnError:
    return LandlearnError(
        f"{row_name(df, position)}, column {column!r}: {problem}", df.attrs.get("path")
    )


def require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise naming the first of ``columns`` that ``df`` lacks, with the nearest column's name.

    Raises:
        LandlearnError: a missing column.
    """
    have = [str(c) for c in df.columns]
    for name in columns:
        if name not in df.columns:
            more = " ..." if len(have) > 8 else ""
            same = [c for c in have if c.lower() == name.lower()]  # difflib is case-sensitive
            others = f"columns: {', '.join(have[:8])}{more}"
            tip = f"did you mean {same[0]!r}?" if same else did_you_mean(name, have, others)
            raise LandlearnError(f"missing required column {name!r}; {tip}", df.attrs.get("path"))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (``95.0``, not ``np.float64(95.0)``) for messages."""
    return value.item() if isinstance(value, np.generic) else value


def _given(series: pd.Series) -> np.ndarray:
    """Where a value is present: not NaN / None and not a blank string."""
    blank = series.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(bool)
    return series.notna().to_numpy(bool) & ~blank


def to_numbers(df: pd.DataFrame, column: str) -> np.ndarray:
    """``df[column]`` as float64, NaN where missing.

    Raises:
        LandlearnError: a value that is not a finite number, naming its row and column.
    """
    series = df[column]
    given = _given(series)
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(np.float64)
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    bad = given & ~np.isfinite(numbers)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = _plain(series.iloc[i])
        what = "a finite number" if np.isinf(numbers[i]) else "a number"
        raise _fail(df, i, column, f"{value!r} is not {what}")
    return np.where(given, numbers, np.nan)


def to_booleans(df: pd.DataFrame, column: str) -> np.ndarray:
    """``df[column]`` as 1.0 / 0.0, NaN where missing (True/False, 1/0, yes/no, true/false).

    Raises:
        LandlearnError: another value, naming its row and column.
    """
    series = df[column]
    out = np.full(len(series), np.nan)
    for i, (value, given) in enumerate(zip(series, _given(series), strict=True)):
        if not given:
            continue
        word = str(value).strip().lower()
        if word in _TRUE or word in _FALSE:
            out[i] = 1.0 if word in _TRUE else 0.0
        else:
            raise _fail(
                df, i, column, f"{_plain(value)!r} is not a boolean (true/false, yes/no, 1/0)"
            )
    return out


def to_dates(df: pd.DataFrame, column: str) -> pd.DatetimeIndex:
    """``df[column]`` as UTC datetimes (ISO 8601 strings; naive ones read as UTC), NaT if missing.

    Raises:
        LandlearnError: a value that is not a date, naming its row and column.
    """
    series = df[column]
    given = _given(series)
    dates = pd.DatetimeIndex(pd.to_datetime(series, errors="coerce", utc=True, format="ISO8601"))
    bad = given & dates.isna()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(
            df, i, column, f"{_plain(series.iloc[i])!r} is not a date (use ISO 8601, 2021-01-31)"
        )
    return dates


def _categories(df: pd.DataFrame, column: str) -> list[str | None]:
    """Values as strings (``3.0`` as ``3``, so a column read with NaN matches one without)."""
    out: list[str | None] = []
    for value, given in zip(df[column], _given(df[column]), strict=True):
        if not given:
            out.append(None)
        elif isinstance(value, float) and value.is_integer():
            out.append(str(int(value)))
        else:
            out.append(str(value).strip())
    return out


def read_table(
    path: Where, *, numeric: Sequence[str] = (), required: Sequence[str] = ()
) -> pd.DataFrame:
    """A CSV (``.csv``, ``.tsv``) or parquet (``.parquet``, ``.pq``) table as a DataFrame.

    ``df.attrs["path"]`` holds the file, so later errors name it and the spreadsheet row.

    Args:
        path: the table file.
        numeric: columns that must hold numbers (converted to float64, NaN where empty).
        required: columns that must be present.

    Raises:
        LandlearnError: no such file, unknown suffix, unreadable table, parquet without
            pyarrow, a missing column, or a non-number in a ``numeric`` column.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file():
        raise LandlearnError("no such table file; check the path", p)
    try:
        if suffix in (".csv", ".tsv"):
            df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",")
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p, engine=_parquet_engine(p))
        else:
            raise LandlearnError(f"unknown table format {suffix!r}; give a .csv or .parquet", p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LandlearnError(f"cannot read the table: {exc}", p) from exc
    df.attrs["path"] = str(p)
    require_columns(df, [*required, *numeric])
    for column in numeric:
        df[column] = to_numbers(df, column)
    return df


def _parquet_engine(path: Path) -> str:
    try:
        importlib.import_module("pyarrow")
    except ImportError:
        raise LandlearnError(
            "reading parquet needs pyarrow, which is not installed; "
            "pip install pyarrow, or save the table as CSV",
            path,
        ) from None
    return "pyarrow"


class TableEncoder:
    """Encode table rows as float32 features with statistics of the training rows only.

    Every column named in a role must be present at :meth:`fit` and :meth:`transform`.

    Args:
        numeric: columns of numbers, standardised.
        boolean: columns of yes / no values.
        categorical: columns one-hot encoded (plus the ``__unknown__`` bucket).
        date: columns turned into day-of-year sine / cosine and the season.
        latlon: the ``(latitude, longitude)`` columns, degrees.
        required: columns that must be present and have a value in every row (role columns
            or others, e.g. the target).

    Raises:
        LandlearnError: a column named twice, or a ``latlon`` that is not two names.
    """

    def __init__(
        self,
        *,
        numeric: Sequence[str] = (),
        boolean: Sequence[str] = (),
        categorical: Sequence[str] = (),
        date: Sequence[str] = (),
        latlon: Sequence[str] | None = None,
        required: Sequence[str] = (),
    ) -> None:
        self.roles: dict[str, list[str]] = {
            "numeric": list(numeric),
            "boolean": list(boolean),
            "categorical": list(categorical),
            "date": list(date),
        }
        if latlon is not None and (isinstance(latlon, str) or len(latlon) != 2):
            raise LandlearnError(f"latlon must be two column names, got {latlon!r}")
        self.latlon: tuple[str, str] | None = None if latlon is None else (latlon[0], latlon[1])
        self.required = list(required)
        named = self.columns
        for role, names in [*self.roles.items(), ("required", self.required)]:
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise LandlearnError(f"{role} must be a list of column names, got {names!r}")
        dupes = sorted({n for n in named if named.count(n) > 1})
        if dupes:
            raise LandlearnError(f"column {dupes[0]!r} has two roles; give it one")
        if not named:
            raise LandlearnError("a table encoder needs at least one column to encode")
        self.state: dict[str, Any] | None = None

    @property
    def columns(self) -> list[str]:
        """Every encoded column, in feature order."""
        return [n for role in _ROLES for n in self.roles[role]] + list(self.latlon or ())

    @classmethod
    def infer(
        cls,
        df: pd.DataFrame,
        *,
        exclude: Sequence[str] = (),
        required: Sequence[str] = (),
        max_categories: int = 20,
    ) -> TableEncoder:
        """An (unfitted) encoder with roles guessed from ``df``; columns in ``exclude`` skipped.

        Rules, first match wins: ``latitude`` / ``longitude`` (or ``lat`` / ``lon``, any case)
        of numbers → ``latlon``; all values in the boolean words (or a bool column) →
        boolean; a datetime column, or strings that all parse as ISO 8601 dates → date;
        numbers → numeric; other strings with at most ``max_categories`` distinct values →
        categorical. Left out: identifiers (whole numbers under a name ending in ``id``, any
        case, such as ``siteId`` or ``pid``; ``Unnamed: 0``, the index pandas writes), columns
        with no value, and free text (more distinct values: URLs, notes).

        Raises:
            LandlearnError: no column could be given a role.
        """
        use = [c for c in df.columns if isinstance(c, str) and c not in exclude]
        use = [c for c in use if not _is_identifier(c, df[c])]
        lower = {c.lower(): c for c in use}
        latlon = None
        for lat, lon in (("latitude", "longitude"), ("lat", "lon")):
            if lat in lower and lon in lower:
                pair = (lower[lat], lower[lon])
                if all(pd.api.types.is_numeric_dtype(df[c]) for c in pair):
                    latlon = pair
                    break
        roles: dict[str, list[str]] = {role: [] for role in _ROLES}
        for column in use:
            if latlon and column in latlon:
                continue
            role = _guess_role(df[column], max_categories)
            if role is None:
                log.info("table: column %r left out (no values or free text)", column)
            else:
                roles[role].append(column)
        if not any(roles.values()) and latlon is None:
            raise LandlearnError("no column of the table could be encoded", df.attrs.get("path"))
        return cls(**roles, latlon=latlon, required=required)

    def fit(self, df: pd.DataFrame) -> TableEncoder:
        """Learn the statistics from ``df`` (the training rows only) and return ``self``.

        Raises:
            LandlearnError: a missing column or required value, a bad value, or a numeric
                column without any value.
        """
        self._check(df)
        state: dict[str, Any] = {"numeric": {}, "boolean": {}, "categorical": {}, "date": {}}
        for column in self.roles["numeric"]:
            x = to_numbers(df, column)
            if np.isnan(x).all():
                raise LandlearnError(
                    f"numeric column {column!r} has no value in the training rows",
                    df.attrs.get("path"),
                )
            state["numeric"][column] = {
                "mean": float(np.nanmean(x)),
                "std": max(float(np.nanstd(x)), MIN_STD),
                "indicator": bool(np.isnan(x).any()),
            }
        for column in self.roles["boolean"]:
            x = to_booleans(df, column)
            mean = float(np.nanmean(x)) if not np.isnan(x).all() else 0.5
            state["boolean"][column] = {"mean": mean, "indicator": bool(np.isnan(x).any())}
        for column in self.roles["categorical"]:
            state["categorical"][column] = sorted({v for v in _categories(df, column) if v})
        for column in self.roles["date"]:
            state["date"][column] = {"indicator": bool(to_dates(df, column).isna().any())}
        if self.latlon is not None:
            lat, lon = (to_numbers(df, c) for c in self.latlon)
            _check_degrees(df, self.latlon, lat, lon)
            state["latlon"] = {"indicator": bool((np.isnan(lat) | np.isnan(lon)).any())}
        elif self.roles["date"]:
            log.warning(
                "table: no latlon given; seasons of %s assume the northern hemisphere",
                ", ".join(self.roles["date"]),
            )
        self.state = state
        names = self.feature_names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            self.state = None
            raise LandlearnError(f"two features named {dupes[0]!r}; rename a column")
        return self

    def fit_transform(self, df: pd.DataFrame) -> np.ndarray:
        """:meth:`fit` on ``df``, then :meth:`transform` it."""
        return self.fit(df).transform(df)

    @property
    def feature_names(self) -> list[str]:
        """Names of the output columns, in order.

        Raises:
            LandlearnError: the encoder is not fitted.
        """
        state = self._fitted()
        names: list[str] = []
        for column in self.roles["numeric"] + self.roles["boolean"]:
            stats = state["numeric"].get(column) or state["boolean"][column]
            names += [column] + ([f"{column}__missing"] if stats["indicator"] else [])
        for column in self.roles["categorical"]:
            names += [f"{column}={v}" for v in [*state["categorical"][column], UNKNOWN]]
        for column in self.roles["date"]:
            names += [f"{column}__doy_sin", f"{column}__doy_cos"]
            names += [f"{column}__season={s}" for s in SEASONS]
            names += [f"{column}__missing"] if state["date"][column]["indicator"] else []
        if self.latlon is not None:
            names += ["latlon__x", "latlon__y", "latlon__z"]
            names += ["latlon__missing"] if state["latlon"]["indicator"] else []
        return names

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Features ``(N, F)`` float32 of any rows, with the training statistics.

        Raises:
            LandlearnError: not fitted, a missing column or required value, or a bad value.
        """
        state = self._fitted()
        self._check(df)
        blocks: list[np.ndarray] = [np.zeros((len(df), 0))]
        numeric = self.roles["numeric"]
        if numeric:
            stats = [state["numeric"][c] for c in numeric]
            raw = np.stack([to_numbers(df, c) for c in numeric], axis=1)  # (N, k)
            z = normalize(
                raw,
                [s["mean"] for s in stats],
                [s["std"] for s in stats],
                channel_dim=-1,
                nan_value=0.0,
            )
            for j, s in enumerate(stats):
                blocks += [z[:, j : j + 1], *_indicator(raw[:, j], s["indicator"])]
        for column in self.roles["boolean"]:
            x, s = to_booleans(df, column), state["boolean"][column]
            blocks += [np.where(np.isnan(x), s["mean"], x)[:, None]]
            blocks += _indicator(x, s["indicator"])
        for column in self.roles["categorical"]:
            known = state["categorical"][column]
            index = {v: i for i, v in enumerate(known)}
            hot = np.zeros((len(df), len(known) + 1))
            codes = [index.get(v, len(known)) if v else len(known) for v in _categories(df, column)]
            hot[np.arange(len(df)), codes] = 1.0
            blocks.append(hot)
        lat = lon = None
        if self.latlon is not None:
            lat, lon = (to_numbers(df, c) for c in self.latlon)
            _check_degrees(df, self.latlon, lat, lon)
        for column in self.roles["date"]:
            dates = to_dates(df, column)
            unknown = np.where(dates.isna(), np.nan, 0.0)
            blocks += [_date_features(dates, lat)]
            blocks += _indicator(unknown, state["date"][column]["indicator"])
        if self.latlon is not None and lat is not None and lon is not None:
            blocks += [_unit_vector(lat, lon)]
            blocks += _indicator(lat + lon, state["latlon"]["indicator"])
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def input_spec(self, name: str = "meta") -> InputSpec:
        """The table ``InputSpec`` of the encoded features: mean 0, std 1 (already standardised).

        Raises:
            LandlearnError: the encoder is not fitted.
        """
        names = self.feature_names
        return InputSpec(
            name, kind="table", bands=names, mean=[0.0] * len(names), std=[1.0] * len(names)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready roles and training statistics (for the bundle).

        Raises:
            LandlearnError: the encoder is not fitted.
        """
        return {
            "format": ENCODER_FORMAT,
            **{role: list(names) for role, names in self.roles.items()},
            "latlon": None if self.latlon is None else list(self.latlon),
            "required": list(self.required),
            "state": copy.deepcopy(self._fitted()),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: Where | None = None) -> TableEncoder:
        """Rebuild a fitted encoder from :meth:`to_dict` output; ``where`` names the file.

        Raises:
            LandlearnError: another format version, or missing or malformed fields.
        """
        if not isinstance(data, Mapping) or data.get("format") != ENCODER_FORMAT:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise LandlearnError(f"table encoder format {got!r}; expected {ENCODER_FORMAT}", where)
        try:
            roles = {k: data[k] for k in (*_ROLES, "latlon", "required")}
            encoder = cls(**roles)
            state = copy.deepcopy(dict(data["state"]))
            encoder.state = state
            encoder.feature_names  # noqa: B018 - every role column has its statistics
            for stats in [*state["numeric"].values(), *state["boolean"].values()]:
                if not all(math.isfinite(float(stats[k])) for k in stats if k != "indicator"):
                    raise ValueError("statistics must be finite")
        except LandlearnError as exc:
            raise LandlearnError(exc.message, where) from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LandlearnError(
                f"malformed table encoder ({type(exc).__name__}: {exc})", where
            ) from exc
        return encoder

    def _fitted(self) -> dict[str, Any]:
        if self.state is None:
            raise LandlearnError("the table encoder is not fitted; call fit(train_rows) first")
        return self.state

    def _check(self, df: pd.DataFrame) -> None:
        require_columns(df, [*self.columns, *self.required])
        for column in self.required:
            missing = ~_given(df[column])
            if missing.any():
                raise _fail(
                    df, int(np.flatnonzero(missing)[0]), column, "no value in a required column"
                )


def _indicator(x: np.ndarray, wanted: bool) -> list[np.ndarray]:
    return [np.isnan(x).astype(np.float64)[:, None]] if wanted else []


def _check_degrees(
    df: pd.DataFrame, names: tuple[str, str], lat: np.ndarray, lon: np.ndarray
) -> None:
    for column, x, limit in ((names[0], lat, 90.0), (names[1], lon, 360.0)):
        bad = np.abs(np.nan_to_num(x)) > limit
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(
                df, i, column, f"{float(x[i])!r} is out of range for degrees (|x| <= {limit:g})"
            )


def _date_features(dates: pd.DatetimeIndex, lat: np.ndarray | None) -> np.ndarray:
    """``(N, 6)``: day-of-year sine, cosine and the season one-hot (zeros where unknown)."""
    valid = ~dates.isna()
    doy = dates.dayofyear.to_numpy(np.float64, na_value=0.0) - 1.0
    days = np.where(dates.is_leap_year, 366.0, 365.0)
    angle = 2.0 * np.pi * doy / days
    out = np.zeros((len(dates), 2 + len(SEASONS)))
    out[:, 0] = np.where(valid, np.sin(angle), 0.0)
    out[:, 1] = np.where(valid, np.cos(angle), 0.0)
    month = dates.month.to_numpy(np.float64, na_value=0.0).astype(int)
    season = (month % 12) // 3  # 0 DJF winter, 1 MAM, 2 JJA, 3 SON (north)
    south = np.zeros(len(dates), bool) if lat is None else np.nan_to_num(lat, nan=0.0) < 0
    season = np.where(south, (season + 2) % 4, season)
    known = valid if lat is None else valid & ~np.isnan(lat)
    rows = np.flatnonzero(known)
    out[rows, 2 + season[rows]] = 1.0
    return out


def _unit_vector(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``(N, 3)`` point on the unit sphere; zeros where lat or lon is missing."""
    phi, lam = np.radians(lat), np.radians(lon)
    xyz = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)
    return np.nan_to_num(xyz, nan=0.0)


def _guess_role(series: pd.Series, max_categories: int) -> str | None:
    given = series[_given(series)]
    if given.empty:
        return None
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    words = {str(v).strip().lower() for v in given}
    if words <= _TRUE | _FALSE:
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "date"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    strings = given.astype(str)
    if strings.str.match(r"^\d{4}-\d{2}-\d{2}").all():
        parsed = pd.to_datetime(strings, errors="coerce", utc=True, format="ISO8601")
        if parsed.notna().all():
            return "date"
    return "categorical" if strings.nunique() <= max_categories else None


def _is_identifier(name: str, series: pd.Series) -> bool:
    """``Unnamed: 0`` (an index pandas wrote), or whole numbers under a name ending in ``id``."""
    if name.startswith("Unnamed: "):
        return True
    if not name.lower().endswith("id") or pd.api.types.is_bool_dtype(series):
        return False
    if not pd.api.types.is_numeric_dtype(series):
        return False
    values = series.dropna().to_numpy(np.float64)  # 0 / 1 only: a flag such as ``isValid``
    return bool(np.all(values == np.round(values)) and not set(values) <= {0.0, 1.0})
