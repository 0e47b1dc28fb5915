"""Readers of gridded inventories: MEIC, EDGAR, any CF NetCDF or GeoTIFF raster with units.

Every reader returns :class:`GriddedField` records (one per inventory sector × species ×
month, or × year) holding the values as stored, their unit and the source grid as a plain
:class:`GridSpec` (cells axis-aligned in the file's CRS, row 0 the *southernmost*);
:func:`to_kg_per_cell` turns them into kg per cell for the period through pint, whatever the
unit: a mass per cell (MEIC ``t``/Mg per month and cell, EDGAR ``emi`` t/yr), a flux
(EDGAR ``kg m-2 s-1``) or a mass per area. Every file read is listed with its sha256
(:func:`sources.files.sha256_file`) for the build's provenance.

Formats (``format`` of a :class:`GriddedSource`):

- ``meic_asc``: MEIC's ESRI ASCII grids, one file per month × sector × species, named like
  ``2020_01__transportation__NOx.asc`` (pattern configurable); lon/lat 0.25° on WGS 84, or
  MEIC's Lambert product with ``crs`` given (header corners then in metres). Unit ``t`` (Mg
  per cell and month) unless told otherwise.
- ``meic_nc``: the same grids as NetCDF: GMT grid files (``x_range``, ``y_range``,
  ``spacing``, ``dimension``, ``z``) as MEIC distributes them, or CF files with 1-D
  coordinates.
- ``edgar``: EDGAR NetCDF, one file per species × sector (``..._NOx_2022_TRO_flx.nc``
  with ``fluxes`` in kg m-2 s-1, or ``..._emi.nc`` with ``emissions`` in tonnes per cell),
  annual or with 12 monthly time steps.
- ``cf``: any CF NetCDF raster (1-D x/y or lon/lat coordinates, ``units`` attribute, optional
  12-step ``time``); each data variable is a species unless ``variable`` names one.
- ``geotiff``: a one-band GeoTIFF with ``sector``, ``species`` and ``units`` given.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import xarray as xr

from sources.errors import ConfigError, InputError, Problems, UnitError
from sources.files import sha256_file
from sources.tables import numbers, read_table
from sources.units import Q_, parse_unit

FORMATS = ("meic_asc", "meic_nc", "edgar", "cf", "geotiff")
DEFAULT_PATTERNS = {"meic_asc": "{year}_{month}__{sector}__{species}.asc",
                    "meic_nc": "{year}_{month}__{sector}__{species}.nc",
                    "edgar": "{prefix}_{species}_{year}_{sector}_{kind}.nc",
                    "cf": "*.nc", "geotiff": "*.tif"}
#: unit spellings of inventory files that pint reads otherwise (or not at all)
UNIT_ALIASES = {"tonnes": "t", "tonne": "t", "ton/month/grid": "t", "mg/month/grid": "Mg",
                "ton": "t", "tons": "t"}



def regional_sector(sector: str, inventory: str, month: int | None) -> str:
    """The build sector of regional mass: ``road@meic`` (annual), ``road@meic-01`` (January)."""
    return f"{sector}@{inventory}" + (f"-{month:02d}" if month else "")


def base_sector(name: str) -> str:
    """Our sector behind a regional sector name (``road@meic-01`` → ``road``); any other
    name is its own."""
    return name.split("@", 1)[0]

@dataclass(frozen=True)
class GridSpec:
    """A regular source grid: ``crs`` (anything pyproj reads), lower-left corner, cell size and
    counts [CRS units: degree or m]; row 0 is the southernmost."""

    crs: str
    x0: float
    y0: float
    dx: float
    dy: float
    nx: int
    ny: int


@dataclass(frozen=True)
class GriddedSource:
    """One gridded inventory as configured.

    Attributes
    ----------
    name : its name (the ``inventory`` column of the mapping tables)
    format : one of :data:`FORMATS`
    path : a file, or a directory whose files match ``pattern``
    pattern : file names with ``{year}``, ``{month}``, ``{sector}``, ``{species}`` fields
        (``{prefix}``, ``{kind}``: ignored text); None: :data:`DEFAULT_PATTERNS`
    units : the unit of the stored values where the file says none (e.g. ``t`` for MEIC ASCII)
    crs : the grid's CRS where the file says none (default lon/lat WGS 84)
    year : the inventory year, where the file name says none
    sector, species : fixed labels for formats whose names carry none (geotiff, cf)
    variable : the NetCDF variable to read (default: every data variable / the usual name)
    """

    name: str
    format: str
    path: str
    pattern: str | None = None
    units: str | None = None
    crs: str | None = None
    year: int | None = None
    sector: str | None = None
    species: str | None = None
    variable: str | None = None


@dataclass(frozen=True)
class GriddedField:
    """One field of a gridded inventory, values as stored (row 0 south).

    ``month`` is 1..12 for a monthly field, None for an annual one; ``year`` the inventory
    year (None: unknown, the build year is used for flux units).
    """

    inventory: str
    sector: str
    species: str
    month: int | None
    year: int | None
    grid: GridSpec
    values: np.ndarray
    unit: str
    path: str


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    fields = {"year": r"(?P<year>\d{4})", "month": r"(?P<month>\d{1,2})",
              "sector": r"(?P<sector>.+?)", "species": r"(?P<species>[^_]+?)",
              "prefix": r"(?:.+?)", "kind": r"(?:[A-Za-z]+)"}
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}|\*", pattern):
        out += re.escape(pattern[pos:m.start()])
        out += ".*?" if m.group(0) == "*" else fields.get(m.group(1), rf"(?P<{m.group(1)}>.+?)")
        pos = m.end()
    return re.compile(out + re.escape(pattern[pos:]) + "$")


def list_files(src: GriddedSource) -> list[tuple[Path, dict[str, str]]]:
    """The files of an inventory with the fields their names carry, in name order."""
    path = Path(src.path)
    pattern = src.pattern or DEFAULT_PATTERNS[src.format]
    rx = _pattern_regex(pattern)
    files = [path] if path.is_file() else sorted(p for p in path.glob("*") if p.is_file())
    if not path.exists():
        raise InputError(str(path), "gridded inventory not found",
                         expected="a file or a directory of inventory files")
    out = []
    for f in files:
        m = rx.match(f.name)
        if m is not None:
            out.append((f, {k: v for k, v in m.groupdict().items() if v is not None}))
    if not out:
        raise InputError(str(path), f"no file matches the pattern {pattern!r}",
                         expected=f"file names like {pattern}")
    return out


def normalise_unit(text: str) -> str:
    """An inventory file's unit text in pint's spelling (``kg m-2 s-1`` → ``kg m**-2 s**-1``,
    ``Tonnes`` → ``t``)."""
    t = str(text).strip()
    if t.lower() in UNIT_ALIASES:
        return UNIT_ALIASES[t.lower()]
    return re.sub(r"([A-Za-z])(-?\d+)", r"\1**\2", t)


def to_kg_per_cell(field: GriddedField, cell_area_m2: np.ndarray, year: int) -> np.ndarray:
    """The field as kg per cell over its period (its month, or its year).

    A mass is taken as per cell; a mass per area is multiplied by ``cell_area_m2`` (on the
    ellipsoid for lon/lat grids), a mass per time by the seconds of the period (of the field's
    year, else ``year``), a flux by both. Negative or non-finite values are refused.
    """
    unit = parse_unit(normalise_unit(field.unit))
    q = Q_(1.0, unit)
    y = field.year or year
    days = calendar.monthrange(y, field.month)[1] if field.month else (
        366 if calendar.isleap(y) else 365)
    seconds = Q_(days * 86400.0, "s")
    area = Q_(1.0, "m**2")
    v = np.asarray(field.values, dtype=float)
    bad = ~np.isfinite(v) | (v < 0)
    if bad.any():
        raise InputError(field.path, f"{int(bad.sum())} cells are negative or not finite",
                         expected="emissions >= 0 (missing cells as 0 or NODATA)")
    for mult in ((), ("t",), ("a",), ("t", "a")):
        qq = q * (seconds if "t" in mult else 1) * (area if "a" in mult else 1)
        if qq.check("[mass]"):
            scale = float(qq.to("kg").magnitude)
            return v * (np.asarray(cell_area_m2) if "a" in mult else 1.0) * scale
    raise UnitError(field.path, f"unit {field.unit!r} is not a mass, mass per area, mass per "
                    "time or flux", value=field.unit, expected="t, Mg, kg, kg m-2 s-1, t/yr")


def read_esri_ascii(path: Path) -> tuple[np.ndarray, float, float, float, int, int]:
    """(values south-first, xll, yll, cellsize, ncols, nrows) of an ESRI ASCII grid; NODATA
    cells are 0. Centre-registered headers (``xllcenter``) are moved to the corner."""
    header: dict[str, str] = {}
    with path.open(encoding="ascii", errors="replace") as fh:
        for _ in range(6):
            pos = fh.tell()
            parts = fh.readline().split()
            if len(parts) == 2 and parts[0][0].isalpha():
                header[parts[0].lower()] = parts[1]
            else:
                fh.seek(pos)
                break
        data = np.loadtxt(fh, dtype=float, ndmin=2)
    try:
        nx, ny, cs = int(header["ncols"]), int(header["nrows"]), float(header["cellsize"])
        x = float(header.get("xllcorner", header.get("xllcenter")))
        y = float(header.get("yllcorner", header.get("yllcenter")))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(str(path), f"ESRI ASCII header incomplete ({exc})",
                         expected="ncols, nrows, xllcorner, yllcorner, cellsize") from exc
    if "xllcenter" in header:
        x, y = x - cs / 2, y - cs / 2
    if data.shape != (ny, nx):
        raise InputError(str(path), f"{data.shape[0]} × {data.shape[1]} values, header says "
                         f"{ny} × {nx}", expected="nrows lines of ncols values")
    nodata = header.get("nodata_value")
    if nodata is not None:
        data = np.where(data == float(nodata), 0.0, data)
    return data[::-1].copy(), x, y, cs, nx, ny


def _axis(values: np.ndarray, name: str, path: str) -> tuple[float, float, bool]:
    """(first edge, step, descending) of a regular 1-D coordinate of cell centres."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        raise InputError(path, f"coordinate {name!r} has fewer than 2 values")
    d = np.diff(v)
    if not np.allclose(d, d[0], rtol=1e-6, atol=0):
        raise InputError(path, f"coordinate {name!r} is not regular",
                         expected="equally spaced cell centres")
    step = abs(float(d.mean()))
    lo = float(v.min())
    return lo - step / 2, step, bool(d[0] < 0)


def _xy_names(da: xr.DataArray) -> tuple[str, str]:
    dims = list(da.dims)[-2:]
    return dims[1], dims[0]


def _from_dataarray(da: xr.DataArray, src: GriddedSource, path: Path, sector: str,
                    species: str, year: int | None) -> list[GriddedField]:
    """Fields of one (time?, y, x) variable: 12 time steps are months, 1 (or none) a year."""
    xn, yn = _xy_names(da)
    x0, dx, xdesc = _axis(da[xn].values, xn, str(path))
    y0, dy, ydesc = _axis(da[yn].values, yn, str(path))
    crs = src.crs or str(da.attrs.get("crs_wkt", "") or "EPSG:4326")
    unit = str(da.attrs.get("units") or src.units or "")
    if not unit:
        raise UnitError(str(path), f"variable {da.name!r} has no units attribute",
                        expected="a units attribute, or 'units' in the regional config")
    arr = np.asarray(da.values, dtype=float)
    arr = np.nan_to_num(arr, nan=0.0)
    if ydesc:
        arr = arr[..., ::-1, :]
    if xdesc:
        arr = arr[..., :, ::-1]
    grid = GridSpec(crs=crs, x0=x0, y0=y0, dx=dx, dy=dy, nx=arr.shape[-1], ny=arr.shape[-2])
    if arr.ndim == 2 or arr.shape[0] == 1:
        return [GriddedField(src.name, sector, species, None, year, grid,
                             arr.reshape(arr.shape[-2:]), unit, str(path))]
    if arr.ndim == 3 and arr.shape[0] == 12:
        return [GriddedField(src.name, sector, species, m + 1, year, grid, arr[m], unit,
                             str(path)) for m in range(12)]
    raise InputError(str(path), f"variable {da.name!r} has shape {arr.shape}",
                     expected="(y, x), or (12 months, y, x)")


def _read_gmt(ds: xr.Dataset, src: GriddedSource, path: Path, fields: dict[str, str]
              ) -> GriddedField:
    """A GMT grid file (``x_range``, ``y_range``, ``spacing``, ``dimension``, ``z``): MEIC's
    NetCDF. ``z`` runs row by row from the north; pixel registration (``node_offset`` 1)
    gives the outer edges in the ranges, grid-line registration the outer centres."""
    nx, ny = (int(v) for v in ds["dimension"].values)
    dx, dy = (float(v) for v in ds["spacing"].values)
    xr_, yr_ = ds["x_range"].values.astype(float), ds["y_range"].values.astype(float)
    pixel = int(ds["z"].attrs.get("node_offset", ds.attrs.get("node_offset", 1))) == 1
    x0 = xr_[0] if pixel else xr_[0] - dx / 2
    y0 = yr_[0] if pixel else yr_[0] - dy / 2
    z = np.nan_to_num(np.asarray(ds["z"].values, dtype=float).reshape(ny, nx), nan=0.0)[::-1]
    unit = str(ds["z"].attrs.get("units") or src.units or "t")
    return GriddedField(src.name, fields["sector"], fields["species"], _month(fields),
                        _year(fields, src), GridSpec(src.crs or "EPSG:4326", float(x0),
                                                     float(y0), dx, dy, nx, ny),
                        z.copy(), unit, str(path))


def _month(fields: dict[str, str]) -> int | None:
    return int(fields["month"]) if "month" in fields else None


def _year(fields: dict[str, str], src: GriddedSource) -> int | None:
    return int(fields["year"]) if "year" in fields else src.year


def _read_meic_asc(src: GriddedSource) -> list[GriddedField]:
    out = []
    for path, f in list_files(src):
        if "sector" not in f or "species" not in f:
            raise ConfigError(f"regional inventory {src.name!r}: the pattern must carry "
                              "{sector} and {species}")
        values, x, y, cs, nx, ny = read_esri_ascii(path)
        out.append(GriddedField(src.name, f["sector"], f["species"], _month(f), _year(f, src),
                                GridSpec(src.crs or "EPSG:4326", x, y, cs, cs, nx, ny), values,
                                src.units or "t", str(path)))
    return out


def _open(path: Path) -> xr.Dataset:
    try:
        return xr.open_dataset(path, decode_times=False, mask_and_scale=True)
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"cannot read NetCDF ({exc})") from exc


def _data_vars(ds: xr.Dataset, wanted: str | None) -> list[str]:
    if wanted is not None:
        if wanted not in ds.data_vars:
            raise InputError(str(ds.encoding.get("source", "")), f"no variable {wanted!r}",
                             expected=f"one of {sorted(ds.data_vars)}")
        return [wanted]
    return [v for v in ds.data_vars if ds[v].ndim >= 2]


def _read_netcdf(src: GriddedSource) -> list[GriddedField]:
    out = []
    for path, f in list_files(src):
        with _open(path) as ds:
            if src.format == "meic_nc" and "z" in ds and "dimension" in ds:
                out.append(_read_gmt(ds, src, path, f))
                continue
            names = _data_vars(ds, src.variable)
            if src.format == "edgar" and src.variable is None:
                names = [v for v in names if v in ("fluxes", "emissions", "emi")
                         or v.startswith("emi_")] or names
            for v in names:
                species = f.get("species") or src.species or v
                sector = f.get("sector") or src.sector
                if sector is None:
                    raise ConfigError(f"regional inventory {src.name!r}: {path.name} names no "
                                      "sector; give 'sector' or a pattern with {sector}")
                out += _from_dataarray(ds[v].load(), src, path, sector, species,
                                       _year(f, src))
    return out


def _read_geotiff(src: GriddedSource) -> list[GriddedField]:
    out = []
    for path, f in list_files(src):
        with rasterio.open(path) as r:
            t = r.transform
            if t.b != 0 or t.d != 0:
                raise InputError(str(path), "rotated raster", expected="a north-up raster")
            values = np.nan_to_num(r.read(1, masked=True).filled(0).astype(float))
            crs = src.crs or (r.crs.to_wkt() if r.crs else "EPSG:4326")
            unit = src.units or r.tags().get("units") or r.tags(1).get("units")
            if not unit:
                raise UnitError(str(path), "raster has no units", expected="'units' in config")
            dx, dy = abs(t.a), abs(t.e)
            y0 = t.f + t.e * r.height if t.e < 0 else t.f
            values = values[::-1] if t.e < 0 else values  # row 0 south
            sector = f.get("sector") or src.sector
            species = f.get("species") or src.species
            if sector is None or species is None:
                raise ConfigError(f"regional inventory {src.name!r}: give 'sector' and "
                                  "'species' (or a pattern naming them) for GeoTIFF files")
            out.append(GriddedField(src.name, sector, species, _month(f), _year(f, src),
                                    GridSpec(crs, t.c, y0, dx, dy, r.width, r.height),
                                    values.copy(), unit, str(path)))
    return out


def read_gridded(src: GriddedSource) -> tuple[list[GriddedField], list[tuple[str, str]]]:
    """Every field of a gridded inventory, and (path, sha256) of every file read."""
    if src.format not in FORMATS:
        raise ConfigError(f"regional inventory {src.name!r}: unknown format {src.format!r}; "
                          f"formats are {list(FORMATS)}")
    if src.format == "meic_asc":
        fields = _read_meic_asc(src)
    elif src.format == "geotiff":
        fields = _read_geotiff(src)
    else:
        fields = _read_netcdf(src)
    files = list(dict.fromkeys(f.path for f in fields))
    return fields, [(p, sha256_file(p)) for p in files]


def load_mapping(sectors_path: str | Path, species_path: str | Path
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The mapping tables of regional inventories to ours.

    ``sectors_path``: ``inventory, their_sector, sector, species, fraction, reference`` (and
    optionally ``verified``: yes/no): the share of their sector going to our ``sector``;
    ``species`` is ``*`` for every species or one of *their* species for a species-specific
    split (it then replaces the ``*`` rows of that sector for that species). Per (inventory,
    their sector, species) the fractions sum to 1.

    ``species_path``: ``inventory, their_species, species, factor, reference``: their species
    → ours, times ``factor`` (several rows may feed one of ours: PM25 + PMcoarse → PM10).
    """
    found = Problems()  # every bad row of both tables, raised together
    sec = found.attempt(read_table, sectors_path, ["inventory", "their_sector", "sector",
                                                   "species", "fraction", "reference"],
                        "regional sector mapping", comment="#",
                        unique=["inventory", "their_sector", "sector", "species"], problems=found)
    spc = found.attempt(read_table, species_path, ["inventory", "their_species", "species",
                                                   "factor", "reference"],
                        "regional species mapping", comment="#",
                        unique=["inventory", "their_species", "species"], problems=found)
    for df, col, path in ((sec, "fraction", sectors_path), (spc, "factor", species_path)):
        if df is not None:
            df[col] = numbers(df, col, path, 0.0, np.inf, found)
    if sec is not None and "verified" in sec.columns:
        for i, value in sec.loc[~sec["verified"].isin(["yes", "no"]), "verified"].items():
            found.add(ConfigError.at(sectors_path, "'verified' must be yes or no (was the "
                                     "split checked against its source?)", row=int(i) + 1,
                                     column="verified", value=value, expected="yes or no"))
    if sec is not None and not found:
        sums = sec.groupby(["inventory", "their_sector", "species"])["fraction"].sum()
        for (inv, sector, species), total in sums[(sums - 1.0).abs() > 1e-9].items():
            found.add(ConfigError(f"{sectors_path}: fractions of {inv} {sector!r} (species "
                                  f"{species}) sum to {total:.9g}, not 1: mass would be "
                                  "created or lost"))
    found.raise_any()
    return sec, spc


def sector_split(mapping: pd.DataFrame, inventory: str, their_sector: str,
                 their_species: str) -> dict[str, float]:
    """Our sector → fraction for one of their sectors and species ({} if unmapped)."""
    m = mapping[(mapping["inventory"] == inventory) & (mapping["their_sector"] == their_sector)]
    own = m[m["species"] == their_species]
    use = own if len(own) else m[m["species"] == "*"]
    return {str(r.sector): float(r.fraction) for r in use.itertuples()}


def species_map(mapping: pd.DataFrame, inventory: str, their_species: str) -> dict[str, float]:
    """Our species → factor for one of their species ({} if unmapped)."""
    m = mapping[(mapping["inventory"] == inventory)
                & (mapping["their_species"] == their_species)]
    return {str(r.species): float(r.factor) for r in m.itertuples()}
