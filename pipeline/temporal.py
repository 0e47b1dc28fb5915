"""Temporal factors: month × weekday × hour profiles per sector, Chinese holidays, local → UTC.

Profiles are written in local time (``Asia/Shanghai`` by default) as relative *rate* weights:
the emission rate in a local hour is proportional to ``month[m] · weekday[d] · hour[h]``. With
holidays on, a sector whose ``holiday_as`` is ``sunday`` takes the Sunday weekday weight on
statutory holidays (including the in-lieu days off) and the mean Monday–Friday weight on make-up
working days (调休), from the maintained ``chinesecalendar`` package. A sector with a ``period``
(optional sectors.csv columns ``period``, ``period_factor``) multiplies its weights on the local
days of that period by ``period_factor``: a period is a ``chinesecalendar`` holiday name (its
statutory days off in the year, e.g. ``Spring Festival``) or a date range
``YYYY-MM-DD/YYYY-MM-DD`` (inclusive). Factors are then evaluated
for every UTC hour of the output year and normalised so that each sector's factors sum to 1:
the hours of the output year carry exactly the annual total.
"""

from __future__ import annotations

from pathlib import Path

import chinese_calendar
import numpy as np
import pandas as pd
import xarray as xr

from sources.errors import ConfigError, Problems
from sources.tables import read_table

LENGTHS = {"month": 12, "weekday": 7, "hour": 24}
FIRST_INDEX = {"month": 1, "weekday": 1, "hour": 0}
SECTOR_COLUMNS = ["sector", "month_profile", "weekday_profile", "hour_profile", "holiday_as"]
HOLIDAYS = tuple(h.value for h in chinese_calendar.Holiday)


def load_profiles(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{profile_id: {kind: weights}}`` from the tidy profiles table, with complete vectors.

    Every bad row and every incomplete profile is reported, together (:class:`Problems`)."""
    path = Path(path)
    found = Problems()
    df = read_table(path, ["profile_id", "kind", "index", "value", "reference"],
                    "temporal-profile", problems=found)
    values = pd.to_numeric(df["value"], errors="coerce")
    index = pd.to_numeric(df["index"], errors="coerce")
    good = np.ones(len(df), bool)
    for i in range(len(df)):
        kind = df["kind"].iloc[i]
        if kind not in LENGTHS:
            found.add(ConfigError.at(path, "unknown kind", row=i + 1, column="kind", value=kind,
                                     expected=f"one of {list(LENGTHS)}"))
            good[i] = False
            continue
        if not np.isfinite(values.iloc[i]) or values.iloc[i] < 0:
            found.add(ConfigError.at(path, "not a weight", row=i + 1, column="value",
                                     value=df["value"].iloc[i], expected="a number >= 0"))
        lo = FIRST_INDEX[kind]
        if not (lo <= index.iloc[i] < lo + LENGTHS[kind]) or index.iloc[i] != int(index.iloc[i]):
            found.add(ConfigError.at(path, "index out of range", row=i + 1, column="index",
                                     value=df["index"].iloc[i], expected=f"an integer "
                                     f"{lo}..{lo + LENGTHS[kind] - 1} for {kind}"))
            good[i] = False
    out: dict[str, dict[str, np.ndarray]] = {}
    tidy = df.assign(v=values, i=index.where(good, -1).astype(int))
    for (pid, kind), grp in tidy.loc[good].groupby(["profile_id", "kind"]):
        idx = grp["i"].to_numpy() - FIRST_INDEX[kind]
        if sorted(idx.tolist()) != list(range(LENGTHS[kind])):
            bad_rows = [int(r) + 1 for r in grp.index] if len(grp) <= 3 else None
            found.add(ConfigError(
                f"{path}: profile {pid!r} ({kind}) has indices "
                f"{sorted((idx + FIRST_INDEX[kind]).tolist())}; expected each of "
                f"{FIRST_INDEX[kind]}..{FIRST_INDEX[kind] + LENGTHS[kind] - 1} once"
                + (f" (rows {bad_rows})" if bad_rows else "")))
            continue
        if not np.isfinite(grp["v"].to_numpy()).all() or (grp["v"] < 0).any():
            continue  # a bad weight, reported above
        vec = np.empty(LENGTHS[kind])
        vec[idx] = grp["v"].to_numpy()
        if vec.sum() <= 0:
            found.add(ConfigError(f"{path}: profile {pid!r} ({kind}) is all zero"))
            continue
        out.setdefault(str(pid), {})[str(kind)] = vec
    found.raise_any()
    return out


def load_sectors(path: str | Path, profiles: dict[str, dict[str, np.ndarray]] | None
                 ) -> pd.DataFrame:
    """The sectors table, checked against the profiles it names (every problem reported;
    with ``profiles`` None, a broken profile table, the names are not checked)."""
    path = Path(path)
    found = Problems()
    df = read_table(path, SECTOR_COLUMNS + ["reference"], "sector", problems=found)
    for i in np.flatnonzero(df["sector"].duplicated().to_numpy()):
        first = int(np.flatnonzero((df["sector"] == df["sector"].iloc[i]).to_numpy())[0])
        found.add(ConfigError.at(path, f"duplicate sector {df['sector'].iloc[i]!r} (rows "
                                 f"{first + 1} and {i + 1})", row=int(i) + 1, column="sector",
                                 value=df["sector"].iloc[i], expected="each sector once"))
    for i, row in enumerate(df.itertuples()):
        for kind in LENGTHS if profiles is not None else ():
            pid = getattr(row, f"{kind}_profile")
            if kind not in profiles.get(pid, {}):
                found.add(ConfigError.at(path, f"no {kind} profile {pid!r} in the "
                                         "temporal-profile table", row=i + 1,
                                         column=f"{kind}_profile", value=pid,
                                         expected=f"a profile_id with kind {kind}"))
        if row.holiday_as not in ("sunday", "none"):
            found.add(ConfigError.at(path, "unknown holiday rule", row=i + 1,
                                     column="holiday_as", value=row.holiday_as,
                                     expected="'sunday' or 'none'"))
    df = _check_periods(df, path, found)
    found.raise_any()
    return df
def _date_range(spec: str) -> tuple[np.datetime64, np.datetime64] | None:
    """``(first, last)`` of ``"YYYY-MM-DD/YYYY-MM-DD"``, or None if ``spec`` is not one."""
    parts = spec.split("/")
    if len(parts) != 2:
        return None
    try:
        first, last = (np.datetime64(p.strip(), "D") for p in parts)
    except ValueError:
        return None
    return (first, last) if first <= last else None


def _check_periods(df: pd.DataFrame, path: Path, found: Problems) -> pd.DataFrame:
    """Fill and check the optional ``period`` / ``period_factor`` columns."""
    if "period" not in df.columns:
        return df.assign(period="none", period_factor=1.0)
    factor = pd.to_numeric(df.get("period_factor", pd.Series(["1"] * len(df))), errors="coerce")
    for i, (spec, f) in enumerate(zip(df["period"], factor, strict=True)):
        if spec != "none" and spec not in HOLIDAYS and _date_range(spec) is None:
            found.add(ConfigError.at(path, "unknown period", row=i + 1, column="period",
                                     value=spec, expected=f"'none', a holiday of "
                                     f"{list(HOLIDAYS)} or 'YYYY-MM-DD/YYYY-MM-DD'"))
        if not (np.isfinite(f) and f > 0):
            found.add(ConfigError.at(path, "not a period factor", row=i + 1,
                                     column="period_factor", value=df["period_factor"].iloc[i],
                                     expected="a number > 0"))
    return df.assign(period_factor=factor.to_numpy(dtype=float))


def period_days(spec: str, dates: np.ndarray) -> np.ndarray:
    """Which local calendar ``dates`` fall in the period ``spec`` (see the module text)."""
    if spec == "none":
        return np.zeros(dates.size, bool)
    span = _date_range(spec)
    if span is not None:
        days = dates.astype("datetime64[D]")
        return (days >= span[0]) & (days <= span[1])
    out = np.zeros(dates.size, bool)
    for i, d in enumerate(dates):
        try:
            on_holiday, name = chinese_calendar.get_holiday_detail(d)
        except NotImplementedError:
            continue  # a next-year date without a published calendar (checked in day_types)
        out[i] = bool(on_holiday and name == spec)
    return out


def utc_hours(year: int) -> pd.DatetimeIndex:
    """Every UTC hour of ``year`` (8 784 in a leap year)."""
    return pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq="h", inclusive="left", tz="UTC")


def day_types(dates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(statutory holiday, make-up working day) flags for local calendar dates."""
    holiday = np.zeros(dates.size, bool)
    makeup = np.zeros(dates.size, bool)
    for i, d in enumerate(dates):
        try:
            on_holiday, name = chinese_calendar.get_holiday_detail(d)
        except NotImplementedError as exc:
            if (d.month, d.day) == (1, 1) and d == dates[-1]:
                # the last UTC hours of a year fall on local 1 January of the next one, whose
                # calendar may not be published yet: New Year's Day is always a statutory holiday
                on_holiday, name = True, "New Year's Day"
            else:
                raise ConfigError(f"the chinesecalendar package has no holiday data for {d} "
                                  f"({exc}); upgrade it, or set temporal.holidays: false") from exc
        holiday[i] = bool(on_holiday and name is not None)
        makeup[i] = bool((not on_holiday) and name is not None)
    return holiday, makeup


def temporal_factors(sectors: pd.DataFrame, profiles: dict[str, dict[str, np.ndarray]],
                     year: int, timezone: str = "Asia/Shanghai",
                     holidays: bool = True) -> xr.DataArray:
    """Fraction of each sector's annual total in every UTC hour of ``year``.

    Returns
    -------
    DataArray (sector, time) float64 [1]; each sector sums to 1 over ``time`` (UTC, naive
    datetime64 values with ``attrs['timezone'] = 'UTC'``).
    """
    times = utc_hours(year)
    local = times.tz_convert(timezone)
    month = local.month.to_numpy() - 1
    weekday = local.weekday.to_numpy()
    hour = local.hour.to_numpy()
    dates, inverse = np.unique(np.asarray(local.date), return_inverse=True)
    if holidays:
        hol_d, mak_d = day_types(dates)
        hol, mak = hol_d[inverse], mak_d[inverse]
    else:
        hol = mak = np.zeros(times.size, bool)
    out = np.empty((len(sectors), times.size))
    for i, row in enumerate(sectors.itertuples()):
        w_month = profiles[row.month_profile]["month"]
        w_week = profiles[row.weekday_profile]["weekday"]
        w_hour = profiles[row.hour_profile]["hour"]
        day_w = w_week[weekday]
        if row.holiday_as == "sunday":
            day_w = np.where(hol, w_week[6], np.where(mak, w_week[:5].mean(), day_w))
        w = w_month[month] * day_w * w_hour[hour]
        if row.period != "none":
            w = w * np.where(period_days(row.period, dates)[inverse], row.period_factor, 1.0)
        total = w.sum()
        if total <= 0:
            raise ConfigError(f"sector {row.sector!r}: temporal weights are zero for all of {year}")
        out[i] = w / total
    return xr.DataArray(out, dims=("sector", "time"),
                        coords={"sector": sectors["sector"].to_numpy(),
                                "time": times.tz_localize(None).to_numpy()},
                        name="temporal_factor",
                        attrs={"units": "1", "timezone": "UTC", "profile_timezone": timezone,
                               "long_name": "fraction of the annual total emitted in the hour"})


