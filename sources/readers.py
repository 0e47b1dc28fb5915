"""Readers for point, line and area sources (CSV, Excel .xlsx, GeoPackage, GeoJSON,
Parquet/GeoParquet, Shapefile).

Readers rename source columns to the house names at the boundary, validate every row, reproject
once to the grid CRS and return ``(table, metadata)``. The table is the *activity table* every
later step reads: a GeoDataFrame with one row per source (``source_id``, ``kind``, ``sector``,
``fuel``, ``technology``, ``control``, ``activity``, ``activity_unit``, geometry), plus
``input_file`` and ``input_row`` (the 1-based data row or feature number) so that any later error
can still point at the input.
"""

from __future__ import annotations

import csv
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow
import pyogrio
import pyproj
import shapely
from openpyxl.utils.exceptions import InvalidFileException

from sources import validate
from sources.errors import CRSMissingError, GeometryError, InputError, MissingColumnError
from sources.files import sha256_file, sha256_or_missing

FORMATS = {".csv": "csv", ".gpkg": "gpkg", ".parquet": "parquet", ".geoparquet": "parquet",
           ".shp": "shapefile", ".geojson": "geojson", ".xlsx": "xlsx"}

_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _csv_header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return next(csv.reader(fh), [])


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        header = _csv_header(path)
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as exc:
        m = _RAGGED.search(str(exc))
        if m is None:
            raise InputError(path, f"cannot parse CSV ({exc})",
                             expected="a UTF-8 CSV with a header row") from exc
        raise InputError(path, f"{m.group(3)} fields where the header has {m.group(1)}",
                         row=int(m.group(2)) - 1, expected="one value per column (quote values "
                         "that contain commas)") from exc
    except (pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot parse CSV ({exc})",
                         expected="a UTF-8 CSV with a header row") from exc
    _no_twice(path, [h.strip() for h in header])
    return df


def _no_twice(path: Path, header: list[str], sheet: str | None = None) -> None:
    seen = [h for i, h in enumerate(header) if h in header[:i] and h]
    if seen:
        raise InputError(path, f"column {seen[0]!r} given twice"
                         + (f" in sheet {sheet!r}" if sheet else ""), column=seen[0],
                         expected="each column once (pandas would rename the second silently)")


def _read_xlsx(path: Path, sheet: str | None) -> tuple[pd.DataFrame, str]:
    """A worksheet as text (empty cells NaN) and the sheet's name; header in row 1."""
    try:
        with pd.ExcelFile(path, engine="openpyxl") as book:
            names = [str(n) for n in book.sheet_names]
            name = sheet if sheet is not None else names[0]
            if name not in names:
                raise InputError(path, "no such sheet", column="sheet", value=sheet,
                                 expected=f"one of the sheets {names} ('sheet:' in the input's "
                                 "config entry)")
            header = book.parse(name, header=None, nrows=1, dtype=str)
            df = book.parse(name, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, InvalidFileException) as exc:
        raise InputError(path, f"cannot read workbook ({type(exc).__name__}: {exc})",
                         expected="an Excel .xlsx workbook") from exc
    row1 = [str(v).strip() for v in header.iloc[0]] if len(header) else []
    _no_twice(path, [h for h in row1 if h != "nan"], name)
    return df, name


def _read_raw(path: Path, fmt: str, layer: str | None) -> pd.DataFrame:
    """Read the file into a (Geo)DataFrame without touching its columns."""
    if fmt == "csv":
        return _read_csv(path)
    if fmt == "parquet":
        try:
            try:
                return gpd.read_parquet(path)
            except ValueError:  # plain Parquet without GeoParquet metadata
                return pd.read_parquet(path)
        except (OSError, ValueError, pyarrow.ArrowException) as exc:
            raise InputError(path, f"cannot read Parquet ({exc})",
                             expected="a (Geo)Parquet file") from exc
    try:
        df = pyogrio.read_dataframe(path, layer=layer)
    except pyogrio.errors.DataLayerError as exc:
        layers = [n for n, _ in pyogrio.list_layers(path)]
        raise InputError(path, f"cannot read layer ({exc})", column=None, value=layer,
                         expected=f"one of the layers {layers}") from exc
    except (pyogrio.errors.DataSourceError, pyogrio.errors.FieldError,
            pyogrio.errors.GeometryError, pyogrio.errors.CRSError, OSError) as exc:
        raise InputError(path, f"cannot open ({exc})", expected="a readable GeoPackage, GeoJSON "
                         "or Shapefile (with its .shx/.dbf/.prj beside the .shp)") from exc
    return df


def _geometry_from_columns(df: pd.DataFrame, path: Path, kind: str, x_column: str,
                           y_column: str, wkt_column: str) -> gpd.GeoSeries:
    if kind == "point" and x_column in df.columns and y_column in df.columns:
        xy = []
        for col in (x_column, y_column):
            raw = df[col]
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
            bad = ~np.isfinite(values)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise GeometryError(path, "coordinate is missing or not a number",
                                    row=int(df["input_row"].iloc[i]), column=col, value=raw.iloc[i],
                                    expected="a finite number")
            xy.append(values)
        return gpd.GeoSeries(shapely.points(xy[0], xy[1]), index=df.index)
    if wkt_column in df.columns:
        geoms = []
        for i, text in enumerate(df[wkt_column]):
            try:
                geoms.append(shapely.from_wkt(text) if isinstance(text, str) and text else None)
            except shapely.errors.GEOSException as exc:
                raise GeometryError(path, f"cannot parse WKT ({exc})",
                                    row=int(df["input_row"].iloc[i]), column=wkt_column,
                                    value=str(text)[:80],
                                    expected="WKT such as 'LINESTRING (x1 y1, x2 y2)'") from exc
        return gpd.GeoSeries(geoms, index=df.index)
    want = (f"columns {x_column!r} and {y_column!r}" if kind == "point"
            else f"a WKT column {wkt_column!r}")
    raise MissingColumnError(path, "no geometry",
                             column=x_column if kind == "point" else wkt_column,
                             expected=want + " (set x_column/y_column/wkt_column in the config)")


@dataclass(frozen=True)
class InputMeta:
    """What a build records of one file it read: the ``inputs.csv`` row of a build and the
    ``input_sha256_<name>`` attributes of its files.

    Attributes
    ----------
    name : the input's name in the config (``proxy_<name>``, ``cems_<file stem>`` for proxies
        and CEMS files, ``scenario`` for a scenario file)
    path : the file read
    kind : ``point``, ``line``, ``area``, ``cems``, ``proxy`` or ``scenario``
    format : file format (``csv``, ``gpkg``, ``parquet``, ``shapefile``, ``geotiff``, ``yaml``)
    sha256 : :func:`sources.files.sha256_file` of the file (all parts of a Shapefile); None
        when the file does not exist
    source_crs : the CRS the file's geometries were read in, before reprojection
    rows : number of sources read
    layer : the GeoPackage layer read
    """

    name: str
    path: str
    kind: str
    format: str
    sha256: str | None
    source_crs: str | None = None
    rows: int | None = None
    layer: str | None = None

    @classmethod
    def of_file(cls, path: str | Path, kind: str, name: str, format: str | None = None,
                rows: int | None = None) -> InputMeta:
        """The record of a file that is hashed but not read as sources (a proxy raster, a CEMS
        table, a scenario)."""
        path = Path(path)
        return cls(name=name, path=str(path), kind=kind,
                   format=format or path.suffix.lstrip("."),
                   sha256=sha256_or_missing(path, None), rows=rows)


@dataclass(frozen=True)
class FileLayout:
    """How an input file is laid out, from its config entry.

    Attributes
    ----------
    crs : CRS of the input when the file carries none (CSV, plain Parquet); if the file has one
        and ``crs`` is given, they must agree
    columns : mapping {column in file: house column name}
    layer : GeoPackage layer
    x_column, y_column : coordinate columns of point CSVs
    wkt_column : WKT geometry column of line and area CSVs
    """

    crs: Any = None
    columns: Mapping[str, str] | None = None
    layer: str | None = None
    x_column: str = "lon"
    y_column: str = "lat"
    wkt_column: str = "geometry"
    sheet: str | None = None


@dataclass(frozen=True)
class Vocabulary:
    """The configured names rows are checked against (None: not checked).

    Attributes
    ----------
    keys : the emission-factor keys (sector, fuel, technology)
    devices : control devices with an efficiency
    proxies : proxy raster names
    species : emitted species (for ``reported_<species>_kg`` columns)
    sector_proxies : proxy per sector for area sources whose ``proxy`` is empty or absent
    bounds : plausibility bounds of activity per sector and unit
        (:func:`sources.validate.load_activity_bounds`)
    """

    keys: pd.DataFrame | None = None
    devices: set[str] | None = None
    proxies: set[str] | None = None
    species: list[str] | None = None
    sector_proxies: Mapping[str, str] | None = None
    bounds: pd.DataFrame | None = None


def read_sources(path: str | Path, kind: str, *, target_crs: pyproj.CRS,
                 layout: FileLayout | None = None, vocabulary: Vocabulary | None = None,
                 name: str = "") -> tuple[gpd.GeoDataFrame, InputMeta]:
    """Read, rename, validate and reproject one activity file.

    Parameters
    ----------
    path : input file; format from its suffix (.csv, .gpkg, .parquet, .shp)
    kind : ``point``, ``line`` or ``area``
    target_crs : the grid CRS; geometries are reprojected to it once, here
    layout : CRS, column names and layer of the file (:class:`FileLayout`)
    vocabulary : the configured names to check rows against (:class:`Vocabulary`)
    name : the input's name in the config, recorded in the metadata

    Returns
    -------
    (activity table, :class:`InputMeta`)
    """
    lay = layout or FileLayout()
    opened = _open(Path(path), kind, lay)
    try:
        gdf = _checked(opened, kind, lay, vocabulary or Vocabulary(), target_crs)
    except InputError as exc:
        raise opened.locate(exc) from exc
    meta = InputMeta(name=name, path=str(opened.path), kind=kind, format=opened.fmt,
                     sha256=sha256_file(opened.path), source_crs=gdf.attrs.pop("source_crs"),
                     rows=int(len(gdf)), layer=lay.layer)
    return gdf, meta


def source_errors(path: str | Path, kind: str, *, target_crs: pyproj.CRS,
                  layout: FileLayout | None = None, vocabulary: Vocabulary | None = None,
                  limit: int = 1000) -> list[InputError]:
    """Every problem :func:`read_sources` would find in the file, not only the first: after
    an error in one row, that row is set aside and the rest checked again (up to ``limit``
    errors). An error not in one row (a missing column, no CRS) ends the list."""
    lay = layout or FileLayout()
    voc = vocabulary or Vocabulary()
    try:
        opened = _open(Path(path), kind, lay)
    except InputError as exc:
        return [exc]
    errors: list[InputError] = []
    while len(errors) < limit:
        try:
            _checked(opened, kind, lay, voc, target_crs)
            return errors
        except InputError as exc:
            errors.append(opened.locate(exc))
            keep = opened.raw["input_row"].to_numpy() != exc.row
            if exc.row is None or keep.all():
                return errors
            opened.raw = opened.raw.loc[keep]
    return errors


@dataclass
class _Opened:
    """A file read but not yet checked: its rows (columns renamed, ``input_row`` added)."""

    path: Path
    fmt: str
    raw: pd.DataFrame
    sheet: str | None = None
    letters: dict[str, str] | None = None

    def locate(self, exc: InputError) -> InputError:
        """``exc`` with its workbook sheet and column letter (unchanged for other formats)."""
        if self.sheet is None or exc.path != str(self.path):
            return exc
        letter = (self.letters or {}).get(exc.column or "")
        return exc.in_sheet(self.sheet, f"{letter} {exc.column!r}" if letter else None)


def _letter(i: int) -> str:
    """Excel column letter of 0-based column ``i`` (0 → A, 26 → AA)."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _open(path: Path, kind: str, lay: FileLayout) -> _Opened:
    """Check the path, read the file by its suffix and rename its columns."""
    if kind not in validate.GEOMETRY_TYPES:
        raise InputError(path, "unknown source kind", value=kind, expected="point, line or area")
    if not path.exists():
        raise InputError(path, "file not found", expected="an existing file (paths in the config "
                         "are relative to the config file)")
    if path.is_dir():
        raise InputError(path, "is a directory", expected="a file (.csv, .xlsx, .gpkg, .geojson, "
                         ".parquet or .shp)")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(path, "unsupported file format", value=path.suffix,
                         expected=f"one of {sorted(FORMATS)}")
    if path.stat().st_size == 0:
        raise InputError(path, "the file is empty", expected=f"a {fmt} file with a header row")
    sheet = None
    if fmt == "xlsx":
        raw, sheet = _read_xlsx(path, lay.sheet)
    else:
        raw = _read_raw(path, fmt, lay.layer)
    columns = lay.columns
    letters = {str(c): _letter(i) for i, c in enumerate(raw.columns)} if sheet else None
    if columns:
        clash = sorted(set(columns.values()) & (set(raw.columns) - set(columns)))
        if clash:
            raise InputError(path, "the column mapping would create duplicate columns",
                             column=clash[0], value=dict(columns),
                             expected=f"map to names not already in the file ({clash})")
        raw = raw.rename(columns=dict(columns))
        if letters:
            letters = {columns.get(c, c): v for c, v in letters.items()}
    raw = raw.reset_index(drop=True)
    # the 1-based data row; in a workbook the Excel row (its header is row 1)
    raw["input_row"] = np.arange(1, len(raw) + 1) + (1 if sheet else 0)
    return _Opened(path=path, fmt=fmt, raw=raw, sheet=sheet, letters=letters)


def _source_crs(path: Path, file_crs: pyproj.CRS | None, crs: Any) -> pyproj.CRS:
    """The CRS the rows are in: the file's, or the config's (they must agree); refused if
    neither gives one or it is not a map CRS (geocentric, vertical, engineering)."""
    if crs is not None:
        try:
            crs = pyproj.CRS.from_user_input(crs)
        except pyproj.exceptions.CRSError as exc:
            raise CRSMissingError(path, f"the config's CRS cannot be understood ({exc})",
                                  column="crs", value=str(crs),
                                  expected="e.g. EPSG:4326 or EPSG:32651") from exc
    if file_crs is not None and crs is not None and crs != file_crs:
        raise CRSMissingError(path, "the file's CRS differs from the CRS given in the config",
                              value=str(crs), expected=f"the file's own CRS {file_crs.to_string()} "
                              "or no 'crs' entry")
    source_crs = file_crs if file_crs is not None else crs
    if source_crs is None:
        raise CRSMissingError(path, "no coordinate reference system", column="crs",
                              expected="a file with a CRS, or 'crs: EPSG:4326' (or similar) in "
                              "the input's config entry")
    if not (source_crs.is_projected or source_crs.is_geographic):
        what = "a geocentric (x, y, z from the Earth's centre)" if source_crs.is_geocentric \
            else "not a horizontal map"
        raise CRSMissingError(path, f"the CRS is {what} CRS", column="crs",
                              value=source_crs.to_string(), expected="a projected CRS (UTM, "
                              "Lambert, ... in metres) or longitude/latitude (EPSG:4326)")
    return source_crs


def _checked(opened: _Opened, kind: str, lay: FileLayout, voc: Vocabulary,
             target_crs: pyproj.CRS) -> gpd.GeoDataFrame:
    """Geometry, CRS and every row check of :func:`read_sources`, then the reprojection."""
    path, raw = opened.path, opened.raw
    file_crs = raw.crs if isinstance(raw, gpd.GeoDataFrame) else None
    if isinstance(raw, gpd.GeoDataFrame) and raw.geometry.name in raw.columns:
        gdf = raw
    else:
        geometry = _geometry_from_columns(raw, path, kind, lay.x_column, lay.y_column,
                                          lay.wkt_column)
        gdf = gpd.GeoDataFrame(raw, geometry=geometry)
    source_crs = _source_crs(path, file_crs, lay.crs)
    gdf = gdf.set_crs(source_crs, allow_override=True)
    if kind == "area" and voc.sector_proxies and "proxy" not in gdf.columns:
        gdf["proxy"] = ""  # every row takes its sector's proxy below
    validate.check_columns(gdf, kind, str(path))
    gdf = validate.check_text(gdf, str(path))
    validate.check_unique_ids(gdf, str(path))
    gdf = validate.check_activity(gdf, str(path))
    if voc.bounds is not None:
        validate.check_bounds(gdf, voc.bounds, str(path))
    if kind == "point":
        gdf = validate.check_numeric_optional(gdf, validate.STACK_COLUMNS, str(path))
    if voc.species is not None:
        gdf = validate.check_reported(gdf, voc.species, str(path))
    if kind == "area":
        gdf["proxy"] = gdf["proxy"].fillna("").astype(str).str.strip()
        if voc.sector_proxies:
            empty = gdf["proxy"] == ""
            gdf.loc[empty, "proxy"] = gdf.loc[empty, "sector"].map(
                dict(voc.sector_proxies)).fillna("")
    with np.errstate(over="ignore", invalid="ignore"):  # a vertex at 1e300: refused below
        validate.check_geometry(gdf, kind, str(path))
    if voc.keys is not None:
        validate.check_keys(gdf, voc.keys, voc.devices or set(), str(path), voc.proxies)
    with np.errstate(over="ignore", invalid="ignore"):
        gdf = gdf.to_crs(target_crs)
    validate.check_projected(gdf, str(path), "degree" if target_crs.is_geographic else "m")
    gdf["kind"] = kind
    gdf["input_file"] = str(path)
    gdf.attrs["source_crs"] = source_crs.to_string()
    return gdf


ACTIVITY_COLUMNS = ["source_id", "kind", "sector", "subsector", "fuel", "technology", "control",
                    "activity", "activity_unit"]


def combine_activity(tables: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    """Concatenate per-file activity tables into one, checking ids are unique across files."""
    validate.check_unique_across([(t["input_file"].iloc[0] if len(t) else "", t) for t in tables])
    keep = []
    for t in tables:
        extra = [c for c in t.columns if c in validate.STACK_COLUMNS or c == "proxy"
                 or (c.startswith("reported_") and c.endswith("_kg"))]
        keep.append(t[ACTIVITY_COLUMNS + extra + ["input_file", "input_row", "geometry"]])
    out = pd.concat(keep, ignore_index=True)
    return gpd.GeoDataFrame(out, geometry="geometry", crs=tables[0].crs)
