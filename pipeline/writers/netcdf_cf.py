"""CF-1.8 NetCDF4 writer: one file per UTC day, 24 hourly steps.

Variables ``(time, y, x)`` in kg m-2 s-1 with ``standard_name`` where CF has one and
``cell_methods: "time: mean"`` (hourly means; ``time`` labels the start of the hour, ``time_bnds``
= [t, t + 1 h]), projected ``x``/``y`` coordinates with their cell edges (``x_bnds``,
``y_bnds``), 2-D ``lat``/``lon`` auxiliary coordinates with the cell corners (``lon_bnds``,
``lat_bnds``), a scalar ``crs`` grid-mapping variable written the rioxarray way (``to_cf()``
attributes plus ``crs_wkt``), and ``cell_area`` so that ``Σ flux × cell_area × 3600`` gives kg
exactly. Every file passes ``compliance-checker --test cf:1.8 --criteria strict``. Compressed
with zlib (deflate) level 1, chunked one hour × whole grid. Written to a temporary name and
renamed, so a file either is complete or does not exist.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import is_dask_collection

from grids.grid import Grid
from pipeline.writers import WriteMeta
from sources.units import factor_to

CONVENTIONS = "CF-1.8"
#: the unit of every species variable
UNITS = "kg m-2 s-1"


#: the coordinates xarray writes as such (the others of :func:`static_coords` are variables)
COORDS = ("x", "y", "lon", "lat")


def static_coords(grid: Grid) -> dict[str, Any]:
    """Coordinates, their cell bounds and the ancillary variables shared by every file of a
    build (computed once): name → (dims, values, attrs).

    ``x_bnds``/``y_bnds`` (dim ``bnds``, 2) are the cell edges in the grid's plane;
    ``lon_bnds``/``lat_bnds`` (dim ``nv``, 4) the cell corners in lon/lat, counter-clockwise
    from the south-west corner (CF §7.1), for conservative regridding (cdo ``remapcon``,
    xESMF).
    """
    lon, lat = grid.lonlat()
    lon_c, lat_c = grid.corner_lonlat()
    edges_x = float(grid.x0) + np.arange(grid.nx + 1) * float(grid.dx)
    edges_y = float(grid.y0) + np.arange(grid.ny + 1) * float(grid.dy)
    if grid.is_geographic:  # lon/lat grid: x and y are longitude and latitude
        x = ("x", grid.x, {"standard_name": "longitude", "long_name": "longitude of cell centre",
                           "units": "degrees_east", "axis": "X", "bounds": "x_bnds"})
        y = ("y", grid.y, {"standard_name": "latitude", "long_name": "latitude of cell centre",
                           "units": "degrees_north", "axis": "Y", "bounds": "y_bnds"})
    else:
        x = ("x", grid.x, {"standard_name": "projection_x_coordinate", "long_name": "x of cell "
                           "centre", "units": "m", "axis": "X", "bounds": "x_bnds"})
        y = ("y", grid.y, {"standard_name": "projection_y_coordinate", "long_name": "y of cell "
                           "centre", "units": "m", "axis": "Y", "bounds": "y_bnds"})
    return {
        "x": x,
        "y": y,
        # 2-D copies for tools that expect them; on a lon/lat grid x and y carry the standard
        # names (CF wants exactly one longitude and one latitude variable there)
        "lon": (("y", "x"), lon, {**({} if grid.is_geographic else {"standard_name": "longitude"}),
                                  "long_name": "longitude of cell centre",
                                  "units": "degrees_east", "bounds": "lon_bnds"}),
        "lat": (("y", "x"), lat, {**({} if grid.is_geographic else {"standard_name": "latitude"}),
                                  "long_name": "latitude of cell centre",
                                  "units": "degrees_north", "bounds": "lat_bnds"}),
        # bounds inherit units and standard_name from their coordinate (CF §7.1)
        "x_bnds": (("x", "bnds"), np.stack([edges_x[:-1], edges_x[1:]], axis=-1), {}),
        "y_bnds": (("y", "bnds"), np.stack([edges_y[:-1], edges_y[1:]], axis=-1), {}),
        "lon_bnds": (("y", "x", "nv"), lon_c, {}),
        "lat_bnds": (("y", "x", "nv"), lat_c, {}),
        "crs": ((), np.int32(0), grid.cf_grid_mapping()),
        "cell_area": (("y", "x"), grid.cell_area_m2, {
            "standard_name": "cell_area", "units": "m2", "grid_mapping": "crs",
            "long_name": "area of grid cell on the ellipsoid" if grid.is_geographic
            else "area of grid cell in the grid's projected plane"}),
    }


def with_static(ds: xr.Dataset, static: Mapping[str, Any],
                names: Iterable[str] | None = None) -> xr.Dataset:
    """``ds`` with the :func:`static_coords` ``names`` (all: None): x, y, lon, lat as
    coordinates, the others as variables. None carries a _FillValue (CF §2.5.1), the bounds
    no ``coordinates`` attribute (xarray would give the corners ``lat lon``); the corners are
    deflated."""
    for name in static if names is None else names:
        dims, values, attrs = static[name]
        if name in COORDS:
            ds = ds.assign_coords({name: (dims, values, attrs)})
        else:
            ds[name] = xr.Variable(dims, values, attrs)
        ds[name].encoding = {"_FillValue": None}
        if name.endswith("_bnds"):
            ds[name].encoding["coordinates"] = None
        if name in ("lon_bnds", "lat_bnds"):  # 1.1 MB a day on the demo grid, 0.6 MB zipped
            ds[name].encoding.update({"zlib": True, "complevel": 1})
    return ds


def write_static(static: Mapping[str, Any], path: str | Path) -> None:
    """The file every day file of a build starts from (:attr:`WriteMeta.template`): the
    :func:`static_coords` ``static`` alone, encoded as :func:`write` encodes them, written
    atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with_static(xr.Dataset(), static).to_netcdf(tmp, engine="netcdf4", format="NETCDF4")
    os.replace(tmp, path)


def _time_bounds(ds: xr.Dataset, encoding: dict[str, dict[str, Any]], long_name: str) -> None:
    """CF attributes of the hourly ``time`` axis of ``ds`` (labels the start of each UTC
    hour) and its bounds ``time_bnds`` = [t, t + 1 h], encoded as ``time`` is."""
    t = ds["time"].values
    ds["time"].attrs.update({"standard_name": "time", "long_name": long_name, "axis": "T",
                             "bounds": "time_bnds"})
    ds["time_bnds"] = xr.Variable(("time", "bnds"),
                                  np.stack([t, t + np.timedelta64(1, "h")], axis=-1))
    encoding["time_bnds"] = {k: v for k, v in encoding["time"].items()}


def check_grid(grid: Grid) -> None:
    """Every grid Tongyuan reads has a CF grid mapping: nothing to refuse."""


def _pint_units(udunits: str) -> str:
    """A UDUNITS unit string (``g m-2 s-1``) as pint reads it (``g m**-2 s**-1``)."""
    return re.sub(r"(?<=[A-Za-z])(-?\d+)", r"**\1", udunits)


def _in_cf_units(ds: xr.Dataset) -> xr.Dataset:
    """Species in kg m-2 s-1 (through pint; a variable already in them is left as it is)."""
    for v in ds.data_vars:
        units = ds[v].attrs.get("units", UNITS)
        if units != UNITS:
            ds[v] = ds[v] * factor_to(_pint_units(units), _pint_units(UNITS))
            ds[v].attrs["units"] = UNITS
    return ds


def write(day: xr.Dataset, path: str | Path, meta: WriteMeta) -> None:
    """Write one day of the cube (already computed, 24 hours of fluxes per area) to ``path``
    atomically, in kg m-2 s-1 (see :mod:`pipeline.writers` for the interface); a lazy species
    a few hours at a time, each slab given to ``meta.on_slab`` as it is written."""
    path = Path(path)
    dtype, complevel = meta.dtype, meta.complevel
    year = meta.year if meta.year is not None else pd.Timestamp(day["time"].values[0]).year
    ds = _in_cf_units(day.copy())
    species = list(ds.data_vars)
    if meta.template is None:
        ds = with_static(ds, meta.static if meta.static is not None else static_coords(meta.grid))
    else:  # the template has them (x and y with their attributes): the day is appended
        ds = ds.drop_vars([c for c in ("x", "y") if c in ds.coords])
    ds.attrs = {"Conventions": CONVENTIONS, **meta.attrs}
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    encoding: dict[str, dict[str, Any]] = {
        v: {"dtype": dtype, "zlib": complevel > 0, "complevel": complevel,
            "shuffle": meta.shuffle, "chunksizes": (1, ny, nx), "_FillValue": None}
        for v in species}
    encoding["time"] = {"dtype": "int32", "units": f"hours since {year}-01-01 00:00:00",
                        "calendar": "proleptic_gregorian", "_FillValue": None}
    _time_bounds(ds, encoding, "start of the hourly emission interval (UTC)")
    tmp = path.with_name(f".{path.name}.tmp")
    lazy = [v for v in species if is_dask_collection(ds[v].data)]
    if meta.template is not None:
        shutil.copyfile(meta.template, tmp)
    ds.drop_vars(lazy).to_netcdf(tmp, mode="w" if meta.template is None else "a",
                                 engine="netcdf4", format="NETCDF4",
                                 encoding={k: e for k, e in encoding.items() if k not in lazy})
    if lazy:
        _stream(tmp, ds, lazy, encoding, meta.slab_hours, meta.on_slab)
    os.replace(tmp, path)


def _stream(path: Path, ds: xr.Dataset, names: list[str], encoding: dict[str, dict[str, Any]],
            slab_hours: int, on_slab: Callable[[str, np.ndarray], None] | None = None) -> None:
    """Append the lazy species ``names`` to the file ``path`` a few hours at a time, one species
    after another: the file is the same bytes whatever computes the slabs, and memory holds
    ``slab_hours`` hours of one species (HDF5's chunk cache included)."""
    with netCDF4.Dataset(path, "a") as nc:
        for name in names:
            var, enc = ds[name], encoding[name]
            out = nc.createVariable(name, enc["dtype"], var.dims, zlib=enc["zlib"],
                                    complevel=enc["complevel"], shuffle=enc["shuffle"],
                                    chunksizes=enc["chunksizes"], fill_value=False)
            # a cache smaller than one chunk: HDF5 deflates and writes each chunk as it is
            # given. netCDF's default (64 MB per variable) holds the dirty chunks of every
            # species until the file closes: +65 MB per species of a 100 m day, 0.85 GB a day
            out.set_var_chunk_cache(size=1, nelems=1, preemption=1.0)
            out.setncatts(var.attrs)
            for t0 in range(0, var.sizes["time"], slab_hours):
                slab = var.isel(time=slice(t0, t0 + slab_hours)).values.astype(enc["dtype"])
                out[t0:t0 + slab.shape[0]] = slab
                if on_slab is not None:
                    on_slab(name, slab)


def write_grid_dataset(ds: xr.Dataset, path: str | Path, static: Mapping[str, Any],
                       attrs: Mapping[str, Any], encoding: Mapping[str, Mapping[str, Any]], *,
                       year: int, annual: Iterable[str] = ()) -> None:
    """Write a dataset of gridded fields (``annual.nc``, ``difference.nc``) as CF: the grid's
    coordinates, their bounds and the ``crs`` variable from ``static`` (:func:`static_coords`),
    ``Conventions`` and the build's global ``attrs``.

    The variables named in ``annual`` are annual totals [kg year-1] of the calendar ``year``:
    they get the scalar coordinate ``year`` (1 January 00 UTC) and ``cell_methods: "year:
    mean"`` (the year's mass is its mean rate over the year, in kg year-1). An
    hourly ``time`` axis (the temporal factors) gets ``time_bnds`` = [t, t + 1 h]. Coordinates
    and bounds carry no _FillValue; the labels (sector, species, measure) are written as
    character arrays (readable without NetCDF-4 strings)."""
    enc = {k: dict(v) for k, v in encoding.items()}
    ds = with_static(ds.copy(), static, [n for n in static if n != "cell_area"])
    for name in ds.coords:
        if ds[name].dtype.kind in "UO":
            enc[name] = {"dtype": "S1", "_FillValue": None}
    if "time" in ds.dims:
        enc["time"] = {"calendar": "proleptic_gregorian", **enc.get("time", {}),
                       "_FillValue": None}
        _time_bounds(ds, enc, "start of the UTC hour")
    annual = list(annual)
    if annual:  # no year_bnds: compliance-checker 6.1 refuses bounds of a scalar coordinate
        ds["year"] = xr.Variable((), np.datetime64(f"{year:04d}-01-01T00", "ns"), {
            "standard_name": "time", "long_name": f"start of the UTC calendar year {year} the "
            "annual totals cover (1 January 00 UTC to 1 January 00 UTC of the next year)"})
        enc["year"] = {"dtype": "int32", "units": f"hours since {year:04d}-01-01 00:00:00",
                       "calendar": "proleptic_gregorian", "_FillValue": None}
        for name in annual:
            coords = ds[name].attrs.get("coordinates", "")
            ds[name].attrs = {**ds[name].attrs, "coordinates": f"{coords} year".strip(),
                              "cell_methods": "year: mean"}
    ds.attrs = {"Conventions": CONVENTIONS, **attrs}
    ds.to_netcdf(path, engine="netcdf4", encoding=enc)
