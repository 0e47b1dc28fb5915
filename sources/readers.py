"""Readers for point, line and area sources (CSV, GeoPackage, Parquet/GeoParquet, Shapefile).

Readers rename source columns to the house names at the boundary, validate every row, reproject
once to the grid CRS and return ``(table, metadata)``. The table is the *activity table* every
later step reads: a GeoDataFrame with one row per source (``source_id``, ``kind``, ``sector``,
``fuel``, ``technology``, ``control``, ``activity``, ``activity_unit``, geometry), plus
``input_file`` and ``input_row`` (the 1-based data row or feature number) so that any later error
can still point at the input.
"""

from __future__ import annotations

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

from sources import validate
from sources.errors import CRSMissingError, GeometryError, InputError, MissingColumnError
from sources.files import sha256_file, sha256_or_missing

FORMATS = {".csv": "csv", ".gpkg": "gpkg", ".parquet": "parquet", ".geoparquet": "parquet",
           ".shp": "shapefile"}


def _read_raw(path: Path, fmt: str, layer: str | None) -> pd.DataFrame:
    """Read the file into a (Geo)DataFrame without touching its columns."""
    if fmt == "csv":
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(path, f"cannot parse CSV ({exc})",
                             expected="a UTF-8 CSV with a header row") from exc
        return df
    if fmt == "parquet":
        try:
            try:
                return gpd.read_parquet(path)
            except ValueError:  # plain Parquet without GeoParquet metadata
                return pd.read_parquet(path)
        except (OSError, pyarrow.ArrowException) as exc:
            raise InputError(path, f"cannot read Parquet ({exc})",
                             expected="a (Geo)Parquet file") from exc
    try:
        df = pyogrio.read_dataframe(path, layer=layer)
    except pyogrio.errors.DataSourceError as exc:
        raise InputError(path, f"cannot open ({exc})", expected="a readable GeoPackage or "
                         "Shapefile (with its .shx/.dbf/.prj beside the .shp)") from exc
    except pyogrio.errors.DataLayerError as exc:
        raise InputError(path, f"cannot read layer ({exc})", column=None, value=layer,
                         expected=f"one of the layers {[n for n, _ in pyogrio.list_layers(path)]}"
                         ) from exc
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
                raise GeometryError(path, "coordinate is missing or not a number", row=i + 1,
                                    column=col, value=raw.iloc[i], expected="a finite number")
            xy.append(values)
        return gpd.GeoSeries(shapely.points(xy[0], xy[1]), index=df.index)
    if wkt_column in df.columns:
        geoms = []
        for i, text in enumerate(df[wkt_column]):
            try:
                geoms.append(shapely.from_wkt(text) if isinstance(text, str) and text else None)
            except shapely.errors.GEOSException as exc:
                raise GeometryError(path, f"cannot parse WKT ({exc})", row=i + 1,
                                    column=wkt_column, value=str(text)[:80],
                                    expected="WKT such as 'LINESTRING (x1 y1, x2 y2)'") from exc
        return gpd.GeoSeries(geoms, index=df.index)
    want = f"columns {x_column!r} and {y_column!r}" if kind == "point" else f"a WKT column {wkt_column!r}"
    raise MissingColumnError(path, "no geometry", column=x_column if kind == "point" else wkt_column,
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
    """

    keys: pd.DataFrame | None = None
    devices: set[str] | None = None
    proxies: set[str] | None = None
    species: list[str] | None = None
    sector_proxies: Mapping[str, str] | None = None


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
    voc = vocabulary or Vocabulary()
    crs, columns, layer = lay.crs, lay.columns, lay.layer
    keys, devices, proxies = voc.keys, voc.devices, voc.proxies
    species, sector_proxies = voc.species, voc.sector_proxies
    path = Path(path)
    if kind not in validate.GEOMETRY_TYPES:
        raise InputError(path, "unknown source kind", value=kind, expected="point, line or area")
    if not path.exists():
        raise InputError(path, "file not found", expected="an existing file (paths in the config "
                         "are relative to the config file)")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(path, "unsupported file format", value=path.suffix,
                         expected=f"one of {sorted(FORMATS)}")
    raw = _read_raw(path, fmt, layer)
    if columns:
        clash = sorted(set(columns.values()) & (set(raw.columns) - set(columns)))
        if clash:
            raise InputError(path, "the column mapping would create duplicate columns",
                             column=clash[0], value=dict(columns),
                             expected=f"map to names not already in the file ({clash})")
        raw = raw.rename(columns=dict(columns))
    raw = raw.reset_index(drop=True)
    raw["input_row"] = np.arange(1, len(raw) + 1)
    file_crs = raw.crs if isinstance(raw, gpd.GeoDataFrame) else None
    if isinstance(raw, gpd.GeoDataFrame) and raw.geometry.name in raw.columns:
        gdf = raw
    else:
        geometry = _geometry_from_columns(raw, path, kind, lay.x_column, lay.y_column,
                                          lay.wkt_column)
        gdf = gpd.GeoDataFrame(raw, geometry=geometry)
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
    source_crs = file_crs if file_crs is not None else (
        pyproj.CRS.from_user_input(crs) if crs is not None else None)
    if source_crs is None:
        raise CRSMissingError(path, "no coordinate reference system", column="crs",
                              expected="a file with a CRS, or 'crs: EPSG:4326' (or similar) in "
                              "the input's config entry")
    gdf = gdf.set_crs(source_crs, allow_override=True)

    if kind == "area" and sector_proxies and "proxy" not in gdf.columns:
        gdf["proxy"] = ""  # every row takes its sector's proxy below
    validate.check_columns(gdf, kind, str(path))
    gdf = validate.check_text(gdf, str(path))
    validate.check_unique_ids(gdf, str(path))
    gdf = validate.check_activity(gdf, str(path))
    if kind == "point":
        gdf = validate.check_numeric_optional(gdf, validate.STACK_COLUMNS, str(path))
    if species is not None:
        gdf = validate.check_reported(gdf, species, str(path))
    if kind == "area":
        gdf["proxy"] = gdf["proxy"].fillna("").astype(str).str.strip()
        if sector_proxies:
            empty = gdf["proxy"] == ""
            gdf.loc[empty, "proxy"] = gdf.loc[empty, "sector"].map(
                dict(sector_proxies)).fillna("")
    validate.check_geometry(gdf, kind, str(path))
    if keys is not None:
        validate.check_keys(gdf, keys, devices or set(), str(path), proxies)

    gdf = gdf.to_crs(target_crs)
    validate.check_projected(gdf, str(path))
    gdf["kind"] = kind
    gdf["input_file"] = str(path)
    meta = InputMeta(name=name, path=str(path), kind=kind, format=fmt, sha256=sha256_file(path),
                     source_crs=source_crs.to_string(), rows=int(len(gdf)), layer=layer)
    return gdf, meta


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
