"""Row-level checks of activity tables.

Every failure raises a :class:`~sources.errors.TongyuanError` subclass naming the file, the row
(1-based data row, header excluded; for GeoPackage/Shapefile/Parquet the feature number), the
column, the value and what would be right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from sources.errors import (
    ActivityError,
    DuplicateSourceError,
    GeometryError,
    MissingColumnError,
    Problems,
    UnitError,
    UnknownKeyError,
)
from sources.tables import numbers, read_table, units
from sources.units import factor_to, parse_unit

BASE_COLUMNS = ["source_id", "sector", "fuel", "technology", "activity", "activity_unit"]
OPTIONAL_TEXT = {"subsector": "", "control": "none"}
STACK_COLUMNS = ["stack_height_m", "stack_diameter_m", "exit_temp_k", "exit_velocity_m_s"]
GEOMETRY_TYPES = {
    "point": ("Point",),
    "line": ("LineString", "MultiLineString"),
    "area": ("Polygon", "MultiPolygon"),
}


def check_columns(df: pd.DataFrame, kind: str, path: str) -> None:
    required = list(BASE_COLUMNS) + (["proxy"] if kind == "area" else [])
    for col in required:
        if col not in df.columns:
            raise MissingColumnError(path, f"required column {col!r} is missing", column=col,
                                     expected=f"columns {required} (map other names with "
                                     "'columns:' in the input's config entry); found "
                                     f"{[c for c in df.columns if c != 'input_row']}")


def check_text(df: pd.DataFrame, path: str) -> pd.DataFrame:
    """Required text columns are non-empty strings; optional ones get defaults."""
    df = df.copy()
    for col in ["source_id", "sector", "fuel", "technology", "activity_unit"]:
        values = df[col]
        empty = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise (ActivityError if col == "activity_unit" else UnknownKeyError)(
                path, "empty value", row=int(df["input_row"].iloc[i]), column=col,
                value=values.iloc[i], expected="a non-empty string")
        df[col] = values.astype(str).str.strip()
    for col, default in OPTIONAL_TEXT.items():
        if col not in df.columns:
            df[col] = default
        df[col] = df[col].fillna(default).astype(str).str.strip().replace("", default)
    return df


def check_unique_ids(df: pd.DataFrame, path: str) -> None:
    dup = df["source_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        first = df.loc[dup].iloc[0]["source_id"]
        rows = df.loc[df["source_id"] == first, "input_row"].tolist()
        raise DuplicateSourceError(path, f"duplicate source_id in rows {rows}", row=int(rows[1]),
                                   column="source_id", value=first,
                                   expected="each source_id exactly once")


def check_activity(df: pd.DataFrame, path: str) -> pd.DataFrame:
    df = df.copy()
    raw = df["activity"]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = ("negative activity" if np.isfinite(values[i])
                else "activity is missing or not a number")
        raise ActivityError(path, what, row=int(df["input_row"].iloc[i]), column="activity",
                            value=raw.iloc[i], source_id=df["source_id"].iloc[i],
                            expected="a finite number >= 0")
    df["activity"] = values
    for i, text in enumerate(df["activity_unit"]):
        try:
            parse_unit(text)
        except UnitError as exc:
            ambiguous = exc.problem.startswith("ambiguous")
            raise UnitError(path, exc.problem if ambiguous else "unparseable unit",
                            row=int(df["input_row"].iloc[i]), column="activity_unit",
                            value=text, source_id=df["source_id"].iloc[i],
                            expected=exc.expected if ambiguous else
                            "a pint unit string such as 't', 'm**3', 'km', 'head'") from exc
    return df


def check_numeric_optional(df: pd.DataFrame, columns: list[str], path: str,
                           positive: bool = False) -> pd.DataFrame:
    """Optional numeric columns: empty allowed (NaN), otherwise a finite number >= 0."""
    df = df.copy()
    for col in columns:
        if col not in df.columns:
            continue
        raw = df[col]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        given = ~(raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy())
        bad = given & (~np.isfinite(values) | (values < 0) | ((values == 0) & positive))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ActivityError(path, "invalid number", row=int(df["input_row"].iloc[i]),
                                column=col, value=raw.iloc[i], source_id=df["source_id"].iloc[i],
                                expected="empty or a finite number "
                                + ("> 0" if positive else ">= 0"))
        df[col] = np.where(given, values, np.nan)
    return df


def check_geometry(df: pd.DataFrame, kind: str, path: str) -> None:
    geom = df.geometry.to_numpy()
    missing = shapely.is_missing(geom) | shapely.is_empty(geom)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise GeometryError(path, "geometry is missing or empty", row=int(df["input_row"].iloc[i]),
                            column="geometry", value=None if shapely.is_missing(geom[i]) else
                            geom[i].wkt, source_id=df["source_id"].iloc[i],
                            expected=f"a non-empty {' or '.join(GEOMETRY_TYPES[kind])}")
    types = shapely.get_type_id(geom)
    allowed = [shapely.GeometryType[t.upper()].value for t in
               ("point", "linestring", "multilinestring", "polygon", "multipolygon")
               if t in {g.lower() for g in GEOMETRY_TYPES[kind]}]
    wrong = ~np.isin(types, allowed)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise GeometryError(path, f"wrong geometry type for a {kind} source",
                            row=int(df["input_row"].iloc[i]), column="geometry",
                            value=geom[i].geom_type, source_id=df["source_id"].iloc[i],
                            expected=" or ".join(GEOMETRY_TYPES[kind]))
    coords_ok = np.isfinite(shapely.bounds(geom)).all(axis=1)
    invalid = ~shapely.is_valid(geom) | ~coords_ok
    if invalid.any():
        i = int(np.flatnonzero(invalid)[0])
        reason = shapely.is_valid_reason(geom[i]) if coords_ok[i] else "non-finite coordinates"
        raise GeometryError(path, f"invalid geometry ({reason})", row=int(df["input_row"].iloc[i]),
                            column="geometry", value=geom[i].wkt[:120],
                            source_id=df["source_id"].iloc[i],
                            expected="a valid geometry (fix it in GIS, e.g. with make_valid)")
    if kind == "line":
        # overlapping parts (a MultiLineString drawn twice, a line retracing itself) would be
        # dissolved by the geometry engine and their mass lost: refuse them
        dissolved = shapely.length(shapely.union(geom, geom))
        overlap = dissolved < shapely.length(geom) * (1 - 1e-9)
        if overlap.any():
            i = int(np.flatnonzero(overlap)[0])
            raise GeometryError(path, "line overlaps itself (parts drawn more than once)",
                                row=int(df["input_row"].iloc[i]), column="geometry",
                                value=geom[i].wkt[:120], source_id=df["source_id"].iloc[i],
                                expected="each stretch of road or lane once per source")
    if kind in ("line", "area"):
        size = shapely.length(geom) if kind == "line" else shapely.area(geom)
        zero = size <= 0
        if zero.any():
            i = int(np.flatnonzero(zero)[0])
            raise GeometryError(path, f"{'line length' if kind == 'line' else 'polygon area'} is 0",
                                row=int(df["input_row"].iloc[i]), column="geometry",
                                value=geom[i].wkt[:120], source_id=df["source_id"].iloc[i],
                                expected="a line of positive length" if kind == "line"
                                else "a polygon of positive area")


#: largest coordinate magnitude after reprojection [m, or degrees on a lon/lat grid]: the
#: Earth's circumference is 4e7 m
MAX_COORDINATE = {"m": 1e8, "degree": 540.0}


def check_projected(df: pd.DataFrame, path: str, units: str = "m") -> None:
    """After reprojection every coordinate must be finite (swapped lon/lat give inf) and on
    the Earth (a vertex at x = 1e300 is a typo, not a source)."""
    bounds = shapely.bounds(df.geometry.to_numpy())
    far = np.isfinite(bounds).all(axis=1) & (np.abs(bounds) > MAX_COORDINATE[units]).any(axis=1)
    if far.any():
        i = int(np.flatnonzero(far)[0])
        raise GeometryError(path, "coordinate far beyond the Earth in the grid CRS",
                            row=int(df["input_row"].iloc[i]), column="geometry",
                            value=[float(b) for b in bounds[i]], source_id=df["source_id"].iloc[i],
                            expected=f"coordinates within ±{MAX_COORDINATE[units]:g} {units} "
                            "(a typo in a vertex, or the wrong CRS?)")
    bad = ~np.isfinite(bounds).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GeometryError(path, "coordinates cannot be projected to the grid CRS (swapped "
                            "lon/lat, or the wrong CRS?)", row=int(df["input_row"].iloc[i]),
                            column="geometry", source_id=df["source_id"].iloc[i],
                            expected="coordinates valid in the input's CRS")


def check_keys(df: pd.DataFrame, keys: pd.DataFrame, devices: set[str], path: str,
               proxies: set[str] | None = None) -> None:
    """Sector, fuel, technology (and their combination), control devices and proxies are known."""
    for col in ["sector", "fuel", "technology"]:
        known = set(keys[col])
        bad = ~df[col].isin(known).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UnknownKeyError(path, f"unknown {col}", row=int(df["input_row"].iloc[i]),
                                  column=col, value=df[col].iloc[i],
                                  source_id=df["source_id"].iloc[i],
                                  expected=f"one of {sorted(known)} (emission_factors.csv)")
    combo = pd.MultiIndex.from_frame(df[["sector", "fuel", "technology"]])
    known_combo = pd.MultiIndex.from_frame(keys[["sector", "fuel", "technology"]])
    bad = ~combo.isin(known_combo)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        opts = keys[keys["sector"] == df["sector"].iloc[i]]
        raise UnknownKeyError(path, "no emission factors for this sector/fuel/technology",
                              row=int(df["input_row"].iloc[i]), column="technology",
                              value=tuple(combo[i]), source_id=df["source_id"].iloc[i],
                              expected="one of " + ", ".join(
                                  f"({r.fuel}, {r.technology})" for r in opts.itertuples()))
    for i, control in enumerate(df["control"]):
        if control == "none":
            continue
        parts = [d.strip() for d in control.split("+")]
        twice = sorted({d for d in parts if parts.count(d) > 1})
        if twice:
            raise UnknownKeyError(path, f"control device {twice[0]!r} listed twice",
                                  row=int(df["input_row"].iloc[i]), column="control",
                                  value=control, source_id=df["source_id"].iloc[i],
                                  expected="each device once (its efficiency applies once)")
        unknown = [d for d in parts if d not in devices]
        if unknown:
            raise UnknownKeyError(path, f"unknown control device {unknown[0]!r}",
                                  row=int(df["input_row"].iloc[i]), column="control", value=control,
                                  source_id=df["source_id"].iloc[i],
                                  expected=f"'none' or '+'-joined devices from {sorted(devices)}")
    if proxies is not None and "proxy" in df.columns:
        bad = ~df["proxy"].isin(proxies).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            if df["proxy"].iloc[i] == "":
                raise UnknownKeyError(path, "area source without a proxy",
                                      row=int(df["input_row"].iloc[i]), column="proxy", value="",
                                      source_id=df["source_id"].iloc[i],
                                      expected=f"a proxy name in column 'proxy' ({sorted(proxies)})"
                                      f", or 'sector_proxies: {{{df['sector'].iloc[i]}: NAME}}' "
                                      "in the config")
            raise UnknownKeyError(path, "unknown proxy", row=int(df["input_row"].iloc[i]),
                                  column="proxy", value=df["proxy"].iloc[i],
                                  source_id=df["source_id"].iloc[i],
                                  expected=f"one of the configured proxies {sorted(proxies)}")


def check_bounds(df: pd.DataFrame, bounds: pd.DataFrame, path: str) -> None:
    """Activity of each source at most the plausibility bound of its sector and unit.

    ``bounds`` has columns ``sector`` (or ``*``: every sector), ``unit`` and ``max_value``
    (the largest credible activity of one source per year, in ``unit``). A source is checked
    against the rows whose unit has the dimension of its activity unit, its sector's row
    before ``*``.
    """
    for (sector, unit), grp in df.groupby(["sector", "activity_unit"], sort=False):
        bound = _bound_for(bounds, str(sector), str(unit))
        if bound is None:
            continue
        limit, bound_unit, reference = bound
        values = grp["activity"].to_numpy(dtype=float) * factor_to(str(unit), bound_unit)
        over = np.flatnonzero(~(values <= limit))
        if over.size:
            i = int(over[0])
            raise ActivityError(path, f"implausible activity for one {sector} source "
                                f"({values[i]:.3g} {bound_unit}, more than the bound "
                                f"{limit:.3g} {bound_unit})", row=int(grp["input_row"].iloc[i]),
                                column="activity", value=grp["activity"].iloc[i],
                                source_id=grp["source_id"].iloc[i],
                                expected=f"at most {limit:g} {bound_unit} per source and year "
                                f"({reference}); check the value and its activity_unit")


def _bound_for(bounds: pd.DataFrame, sector: str, unit: str) -> tuple[float, str, str] | None:
    dim = parse_unit(unit).dimensionality
    for key in (sector, "*"):
        rows = bounds[bounds["sector"] == key]
        for r in rows.itertuples():
            if parse_unit(r.unit).dimensionality == dim:
                return float(r.max_value), str(r.unit), str(r.reference)
    return None


def check_reported(df: pd.DataFrame, species: list[str], path: str) -> pd.DataFrame:
    """``reported_<species>_kg`` columns: known species, empty or a number >= 0."""
    cols = [c for c in df.columns if c.startswith("reported_") and c.endswith("_kg")]
    for col in cols:
        sp = col[len("reported_"):-len("_kg")]
        if sp not in species:
            raise UnknownKeyError(path, "reported column for an unknown species", column=col,
                                  value=sp,
                                  expected=f"reported_<species>_kg with species in {species}")
    return check_numeric_optional(df, cols, path)


def check_unique_across(tables: list[tuple[str, pd.DataFrame]]) -> None:
    """A source_id may appear in only one input file."""
    seen: dict[str, tuple[str, int]] = {}
    for path, df in tables:
        for sid, row in zip(df["source_id"], df["input_row"], strict=True):
            if sid in seen:
                other = seen[sid]
                raise DuplicateSourceError(path,
                                           f"source_id also used in {other[0]} row {other[1]}",
                                           row=int(row), column="source_id", value=sid,
                                           expected="source ids unique across all inputs")
            seen[sid] = (path, int(row))


def load_activity_bounds(path: str | Path) -> pd.DataFrame:
    """The plausibility bounds table (``sector``, ``unit``, ``max_value``, ``reference``):
    units parsed, bounds finite and positive, one row per sector and unit (every problem
    reported, together)."""
    path = Path(path)
    found = Problems()
    df = read_table(path, ["sector", "unit", "max_value", "reference"], "activity-bounds",
                    unique=["sector", "unit"], problems=found)
    df["max_value"] = numbers(df, "max_value", path, 0.0, problems=found)
    units(df, "unit", path, found, example="'t', 'm**3', 'km', 'TJ'")
    found.raise_any()
    return df
