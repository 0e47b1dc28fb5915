"""Hourly measured emissions of stacks (CEMS) replacing the profiled hours.

A CEMS file (CSV or Parquet, listed under ``cems:`` in the config) has one row per stack, species
and UTC hour::

    source_id,time_utc,species,value,unit
    P0001,2024-07-01T05:00,SO2,12.5,kg

``time_utc`` is the start of the hour. For each (stack, species) with measurements the rule is:

* the stack's **annual total stays the inventory's** (activity × emission factor, the same source
  as every other species), so the ledger's balance is untouched;
* measured hours carry their measured mass;
* the gap hours share the **remaining** annual total (annual − measured) in proportion to the
  sector's profile over those hours (uniformly if the profile is zero on all of them);
* if the measured hours alone exceed the annual total, they are scaled down to it and the gaps
  get nothing; if every hour of the year is measured, the measurements are scaled to the
  annual total either way; the scale factor is reported in ``cems.csv``.

In the hourly files this is a correction added to the profiled field in the stack's cell:
``(series[h] − factor[sector, h] · annual)``, which sums to zero over the year. ``cems.csv`` of
the build lists per stack and species the annual, measured and gap-filled mass, hours and scale;
the ledger gains ``cems_measured_kg`` (measured mass in the written hours) per sector × species.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pint

from sources.errors import InputError, TongyuanError, UnitError
from sources.tables import read_table
from sources.units import factor_to

COLUMNS = ["source_id", "time_utc", "species", "value", "unit"]


@dataclass
class Cems:
    """The measured pairs of a build."""

    table: pd.DataFrame         # per (source_id, species): sector, annual, measured, filled ...
    src: np.ndarray             # activity row of each pair
    species: list[str]          # inventory species of each pair
    sectors: list[str]
    cells: np.ndarray           # flat cell of each pair's stack (-1: beyond the grid)
    series: np.ndarray          # (pairs, hours of the year) kg, measured or gap-filled
    measured: np.ndarray        # (pairs, hours) bool
    correction: np.ndarray      # (pairs, hours) kg: series − profiled, for gridded pairs


def _read(path: Path) -> pd.DataFrame:
    """The CEMS columns as text (values are converted row by row, with the row named)."""
    df = read_table(path, COLUMNS, "CEMS")[COLUMNS].copy()
    df["input_row"] = np.arange(len(df)) + 1
    df["input_file"] = str(path)
    return df


@dataclass(frozen=True)
class RowContext:
    """What a CEMS row is checked against: the stacks (None: ids not checked), the species and
    the hours of the build year."""

    pos: dict[str, int] | None
    kinds: np.ndarray
    species: list[str]
    hour_of: dict
    year: int


def _bad(r, column: str, message: str, value=None, expected: str | None = None):
    raise InputError(r.input_file, message, row=int(r.input_row), column=column,
                     value=value, source_id=str(r.source_id), expected=expected)


def convert_row(r, ctx: RowContext) -> tuple[int, str, int, float]:
    """(activity row, species, hour of the year, kg) of one CEMS row, or an
    :class:`InputError` naming its file, row, column and value."""
    j = -1
    if ctx.pos is not None:
        j = ctx.pos.get(str(r.source_id), -1)
        if j < 0:
            _bad(r, "source_id", "unknown stack", r.source_id, "a source_id of a point source")
        if ctx.kinds[j] != "point":
            _bad(r, "source_id", f"CEMS data for a {ctx.kinds[j]} source", r.source_id,
                 "a point source (stack)")
    if r.species not in ctx.species:
        _bad(r, "species", "unknown species", r.species, f"one of {list(ctx.species)}")
    try:
        t = pd.Timestamp(r.time_utc)
    except (ValueError, TypeError):
        _bad(r, "time_utc", "not a time", r.time_utc, "ISO 8601, e.g. 2024-07-01T05:00")
    if t is pd.NaT:
        _bad(r, "time_utc", "not a time", r.time_utc, "ISO 8601, e.g. 2024-07-01T05:00")
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    if t != t.floor("h"):
        _bad(r, "time_utc", "not the start of an hour", r.time_utc, "HH:00")
    h = ctx.hour_of.get(np.datetime64(t, "h"))
    if h is None:
        _bad(r, "time_utc", f"outside the build year {ctx.year} (UTC)", r.time_utc)
    try:
        value = float(r.value)
    except (TypeError, ValueError):
        _bad(r, "value", "not a number", r.value, "a finite number >= 0")
    if not np.isfinite(value) or value < 0:
        _bad(r, "value", "negative or missing measurement", r.value, "a finite number >= 0")
    try:
        kg_per_unit = factor_to(str(r.unit), "kg")
    except UnitError as exc:  # unparsable or ambiguous ('ton' is 907 kg to pint)
        _bad(r, "unit", exc.problem, r.unit, "kg, t, g, ...")
    except pint.errors.DimensionalityError:
        _bad(r, "unit", "not a mass unit", r.unit, "kg, t, g, ...")
    kg = value * kg_per_unit
    if not np.isfinite(kg):
        _bad(r, "value", "measurement beyond the float range in kg", r.value,
             "a finite mass")
    return j, str(r.species), int(h), kg


def cems_errors(paths: list[Path], activity: pd.DataFrame | None, species: list[str],
                year: int) -> list[InputError]:
    """Every problem of the CEMS files, row by row (``tongyuan check``); with ``activity``
    None the stack ids are not checked."""
    errors: list[InputError] = []
    hours = pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq="h", inclusive="left")
    ids = None if activity is None else activity["source_id"].astype(str).to_numpy()
    ctx = RowContext(pos=None if ids is None else {s: i for i, s in enumerate(ids)},
                     kinds=np.array([]) if activity is None else activity["kind"].to_numpy(),
                     species=species, year=year,
                     hour_of={t: i for i, t in enumerate(hours.values.astype("datetime64[h]"))})
    for path in paths:
        try:
            df = _read(Path(path))
        except TongyuanError as exc:
            errors.append(exc)
            continue
        for r in df.itertuples():
            try:
                convert_row(r, ctx)
            except InputError as exc:
                errors.append(exc)
    return errors


def read_cems(paths: list[Path], activity: pd.DataFrame, emissions: pd.DataFrame,
              factors, matrix, year: int) -> Cems | None:
    """Read, check and gap-fill the CEMS series (see the module docstring)."""
    if not paths:
        return None
    frames = [_read(Path(p)) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    ids = activity["source_id"].astype(str).to_numpy()
    times = factors["time"].values.astype("datetime64[h]")
    ctx = RowContext(pos={s: i for i, s in enumerate(ids)}, kinds=activity["kind"].to_numpy(),
                     species=list(emissions.columns), year=year,
                     hour_of={t: i for i, t in enumerate(times)})
    rows = [(*convert_row(r, ctx), r) for r in df.itertuples()]
    m = pd.DataFrame([(j, s, h, kg) for j, s, h, kg, _ in rows],
                     columns=["src", "species", "hour", "kg"])
    dup = m.duplicated(["src", "species", "hour"])
    if dup.any():
        r = rows[int(np.flatnonzero(dup.to_numpy())[0])][4]
        _bad(r, "time_utc", "hour measured twice for this stack and species", r.time_utc)

    fac = factors.to_numpy()
    sector_index = {str(s): i for i, s in enumerate(factors["sector"].values)}
    inside = np.asarray(matrix.sum(axis=0)).ravel()
    csc = matrix.tocsc()
    n_h = times.size
    pairs = list(m.groupby(["src", "species"], sort=True))
    series = np.zeros((len(pairs), n_h))
    measured = np.zeros((len(pairs), n_h), dtype=bool)
    correction = np.zeros((len(pairs), n_h))
    cells = np.full(len(pairs), -1)
    table, src, species, sectors = [], [], [], []
    for k, ((j, sp), g) in enumerate(pairs):
        sector = str(activity["sector"].iloc[j])
        profile = fac[sector_index[sector]]
        annual = float(emissions[sp].iloc[j])
        hours = g["hour"].to_numpy()
        meas = g["kg"].to_numpy()
        total_m = float(meas.sum())
        scale = 1.0
        covers_year = hours.size == n_h
        if total_m > annual or (covers_year and total_m > 0):
            # above the annual total, or every hour measured: the measurements carry exactly
            # the annual total (there are no gaps to take a remainder)
            scale = annual / total_m if total_m > 0 else 1.0
        measured[k, hours] = True
        series[k, hours] = meas * scale
        gaps = ~measured[k]
        remaining = annual - float(series[k].sum())
        if gaps.any() and scale == 1.0 and remaining > 0:
            w = profile[gaps]
            w = w / w.sum() if w.sum() > 0 else np.full(gaps.sum(), 1.0 / gaps.sum())
            series[k, gaps] = remaining * w
        col = csc[:, j]
        if inside[j] > 0 and col.nnz:
            cells[k] = int(col.indices[np.argmax(col.data)])
            correction[k] = (series[k] - profile * annual) * inside[j]
        table.append({"source_id": ids[j], "species": sp, "sector": sector,
                      "annual_kg": annual, "measured_kg": float(series[k, hours].sum()),
                      "gap_filled_kg": float(series[k, gaps].sum()),
                      "measured_hours": int(hours.size), "gap_hours": int(gaps.sum()),
                      "measured_scale": scale, "gridded": bool(cells[k] >= 0)})
        src.append(j)
        species.append(sp)
        sectors.append(sector)
    return Cems(pd.DataFrame(table), np.array(src, dtype=np.int64), species, sectors, cells,
                series, measured, correction)


def written_adjustment(cems: Cems, written_hours: np.ndarray) -> pd.DataFrame:
    """Per (sector, species): the correction summed over the written hours [kg] and the measured
    mass in them (``cems_measured_kg``)."""
    rows = []
    for k in range(len(cems.species)):
        if cems.cells[k] < 0:
            continue
        rows.append({"sector": cems.sectors[k], "species": cems.species[k],
                     "correction_kg": float(cems.correction[k, written_hours].sum()),
                     "cems_measured_kg": float(
                         cems.series[k, written_hours & cems.measured[k]].sum())})
    if not rows:
        return pd.DataFrame(columns=["correction_kg", "cems_measured_kg"],
                            index=pd.MultiIndex.from_tuples([], names=["sector", "species"]))
    return pd.DataFrame(rows).groupby(["sector", "species"]).sum()
