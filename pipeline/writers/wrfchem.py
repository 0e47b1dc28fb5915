"""WRF-Chem anthropogenic emission files ``wrfchemi_d01_<YYYY-MM-DD_HH:MM:SS>``.

One file per UTC day with 24 hourly frames (``io_style_emissions = 2``, ``frames_per_auxinput5
= 24``, ``auxinput5_interval_m = 60``). Variables ``E_<species>`` (Time, emissions_zdim,
south_north, west_east) in float32 — gases in mol km⁻² h⁻¹, aerosols in µg m⁻² s⁻¹ (the Registry
writes "ug/m3 m/s") — with ``emissions_zdim = kemit`` (zero above the highest emitting level).
With ``meta.emiss_opt`` the file carries exactly the variables of that Registry package
(:mod:`pipeline.wrfchem_packages`), zero where the mechanism has no species, and a day with a
species the package does not read is refused. Each variable has the
WRF field attributes (FieldType 104, MemoryOrder "XYZ", description, units, stagger); ``Times``
(Time × DateStrLen = 19); global attributes WRF checks against its domain (TITLE containing "V4."
as WRF 4 requires, START_DATE, WEST-EAST/SOUTH-NORTH/BOTTOM-TOP_GRID_DIMENSION as staggered
sizes, DX, DY, MAP_PROJ, TRUELAT1, TRUELAT2, STAND_LON, CEN_LAT, CEN_LON, MOAD_CEN_LAT, GRIDTYPE
"C"). Written as netCDF 64-bit offset to a temporary name and renamed.

Fluxes are per physical cell area, DX·DY/m² (m the map factor at the cell centre; WRF-Chem adds
them per unit physical area): with the run's ``wrfinput``/``geo_em`` (``meta.wrf_domain``) its
MAPFAC_MX·MAPFAC_MY, its XLAT/XLONG and its projection, land-use (MMINLU, NUM_LAND_CAT, ISWATER,
ISLAKE, ISICE, ISURBAN, ISOILWATER) and nest attributes are written; without it the map factor
comes from pyproj.

WRF has no UTM projection: the grid must be Lambert conformal (MAP_PROJ 1) or lat/lon (6, DX and
DY then in metres along the equator, as WPS writes them) and must match the WRF domain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pandas as pd
import pyproj
import xarray as xr

from grids.grid import WRF_MAP_PROJ, Grid
from pipeline.wrfchem_packages import KIND_UNITS, package, unread
from pipeline.writers import WriteMeta
from pipeline.writers.classic import classic_file
from sources.errors import ConfigError
from sources.units import factor_to, ureg

#: the file's units, per area: gases (amount of substance) and aerosols (mass)
GAS_UNITS, AEROSOL_UNITS = "mol km^-2 hr^-1", "ug m^-2 s^-1"
HOUR_S = factor_to("hour", "s")


def check_grid(grid: Grid) -> None:
    """Refuse a grid WRF cannot describe (see :func:`wrf_projection`)."""
    wrf_projection(grid)


def wrf_projection(grid: Grid) -> dict[str, Any]:
    """MAP_PROJ and its parameters for a Lambert conformal or lat/lon grid."""
    lon, lat = grid.lonlat()
    cen_lon, cen_lat = float(lon.mean()), float(lat.mean())
    if grid.is_geographic:
        m_per_deg = 2 * np.pi * grid.crs.ellipsoid.semi_major_metre / 360.0
        return {"MAP_PROJ": 6, "TRUELAT1": 0.0, "TRUELAT2": 0.0, "STAND_LON": 0.0,
                "DX": grid.dx * m_per_deg, "DY": grid.dy * m_per_deg,
                "CEN_LAT": cen_lat, "CEN_LON": cen_lon}
    cf = grid.crs.to_cf()
    if cf.get("grid_mapping_name") != "lambert_conformal_conic":
        raise ConfigError(f"grid {grid.name!r} ({grid.crs.to_string()}): WRF-Chem files need a "
                          "Lambert conformal or lat/lon grid matching the WRF domain (WRF has no "
                          "UTM projection); read the domain from its GRIDDESC (grid: {griddesc: "
                          "..., name: ...}) or give a lat/lon grid")
    sp = np.atleast_1d(cf["standard_parallel"]).astype(float)
    return {"MAP_PROJ": 1, "TRUELAT1": float(sp[0]), "TRUELAT2": float(sp[-1]),
            "STAND_LON": float(cf["longitude_of_central_meridian"]), "DX": grid.dx,
            "DY": grid.dy,
            "CEN_LAT": cen_lat, "CEN_LON": cen_lon}


def wrf_cell_area_m2(grid: Grid) -> np.ndarray:
    """Physical area of each cell [m²] in WRF's convention, DX·DY / m² with the map factor m at
    the cell centre (``dyn_em/module_bc_em.F:1233-1238``; m from pyproj, the areal scale
    k·h = m² of the conformal projection), for a grid without a WRF domain file; the cells of a
    lon/lat grid are areas on the ellipsoid already."""
    if grid.is_geographic:
        return grid.cell_area_m2
    lon, lat = grid.lonlat()
    scale = pyproj.Proj(grid.crs).get_factors(lon, lat).areal_scale
    return grid.dx * grid.dy / np.asarray(scale, dtype=np.float64)


def cell_area_m2(meta: WriteMeta) -> np.ndarray:
    """The areas the fluxes are per [m²]: the WRF domain's DX·DY/(MAPFAC_MX·MAPFAC_MY) when
    its file is named, else :func:`wrf_cell_area_m2` of the grid."""
    if meta.wrf_domain is not None:
        return meta.wrf_domain.true_cell_area_m2
    return wrf_cell_area_m2(meta.grid)


def file_units(units: str) -> str:
    """The WRF-Chem unit of a species given in ``units`` (amount or mass per second per cell)."""
    per_area = ureg.Unit(units) / ureg.Unit("m**2")
    return GAS_UNITS if per_area.is_compatible_with(GAS_UNITS) else AEROSOL_UNITS


def _variables(day: xr.Dataset, emiss_opt: int | None) -> dict[str, tuple[str | None, str, str]]:
    """File variable → (species of ``day`` or None for a zero field, pint unit, unit attribute)."""
    names = [str(n) for n in day.data_vars]
    if emiss_opt is None:
        out = {}
        for n in names:
            u = file_units(day[n].attrs["units"])
            out[f"E_{n}"] = (n, u, u)
        return out
    gas = {n: ureg.Unit(day[n].attrs["units"]).is_compatible_with("mol/s") for n in names}
    problems = unread(emiss_opt, [(n, gas[n]) for n in names])
    if problems:
        raise ConfigError(f"WRF-Chem emiss_opt {emiss_opt} ({package(emiss_opt).name}) does not "
                          "read " + "; ".join(problems))
    out = {}
    for v in package(emiss_opt).variables.values():
        n = v.name[2:]
        attr, unit = KIND_UNITS[v.kind]
        out[v.name] = (n if n in gas else None, unit, v.units or attr)
    return out


def write(day: xr.Dataset, path: str | Path, meta: WriteMeta) -> None:
    """Write one day: the first 24 hours of ``day``'s model species ``(time, z, y, x)`` per grid
    cell (any unit of amount or mass per second) as ``E_<species>``, divided by the cell areas
    into mol km-2 hr-1 or ug m-2 s-1, materialised one species at a time (see
    :mod:`pipeline.writers` for the interface)."""
    path, grid = Path(path), meta.grid
    start = pd.Timestamp(day["time"].values[0])
    proj = wrf_projection(grid) if meta.wrf_domain is None else {}
    n_t, n_day, ny, nx = 24, day.sizes["z"], grid.ny, grid.nx
    n_z = meta.kemit if meta.kemit is not None else n_day
    if n_day > n_z:
        raise ConfigError(f"{path.name}: the day has emissions in {n_day} levels but kemit is "
                          f"{n_z}: WRF-Chem would not read the levels above")
    variables_ = _variables(day, meta.emiss_opt)
    with classic_file(path, {"Time": None, "DateStrLen": 19, "west_east": nx,
                             "south_north": ny, "emissions_zdim": n_z}) as nc:
        times = nc.createVariable("Times", "S1", ("Time", "DateStrLen"))
        stamps = [f"{start + pd.Timedelta(hours=h):%Y-%m-%d_%H:%M:%S}" for h in range(n_t)]
        variables = {}
        for name, (n, _, unit_attr) in variables_.items():
            v = nc.createVariable(name, "f4", ("Time", "emissions_zdim", "south_north",
                                               "west_east"))
            v.FieldType = np.int32(104)
            v.MemoryOrder = "XYZ"
            v.description = (day[n].attrs.get("description", name) if n is not None
                             else "EMISSIONS (none in this inventory)")
            v.units = unit_attr
            v.stagger = ""
            v.coordinates = "XLONG XLAT"
            variables[name] = v
        dom = meta.wrf_domain
        if dom is not None and (dom.grid.nx, dom.grid.ny) != (nx, ny):
            raise ConfigError(f"{path.name}: the grid is {nx} × {ny} cells, the WRF domain of "
                              f"{dom.path} {dom.grid.nx} × {dom.grid.ny}")
        lon, lat = (dom.lon, dom.lat) if dom is not None else grid.lonlat()
        coords = {}
        for name, arr, desc in (("XLONG", lon, "LONGITUDE, WEST IS NEGATIVE"),
                                ("XLAT", lat, "LATITUDE, SOUTH IS NEGATIVE")):
            v = nc.createVariable(name, "f4", ("south_north", "west_east"))
            v.FieldType = np.int32(104)
            v.MemoryOrder = "XY "
            v.description = desc
            v.units = "degree_east" if name == "XLONG" else "degree_north"
            v.stagger = ""
            coords[name] = (v, arr)
        for k, v in _global_attrs(meta, start, proj, n_z).items():
            nc.setncattr(k, v)
        # data only after the whole header is defined (a classic file whose header grows after
        # data are written is rewritten)
        times[:] = netCDF4.stringtochar(np.array(stamps, dtype="S19"))
        for v, arr in coords.values():
            v[:] = arr.astype(np.float32)
        area = cell_area_m2(meta)
        for name, (n, unit, _) in variables_.items():
            values = np.zeros((n_t, n_z, ny, nx), dtype=np.float32)
            if n is None:
                variables[name][:] = values
                continue
            # per cell → per m2 of the cell → the file's unit (pint: 3.6e9 for mol/s → mol km-2
            # hr-1, 1e6 for g/s → ug m-2 s-1)
            factor = factor_to(f"({day[n].attrs['units']}) / m**2", unit)
            got = np.asarray(day[n].isel(time=slice(0, n_t)).transpose("time", "z", "y", "x")
                             .values)
            if got.shape != (n_t, n_day, ny, nx):
                raise ValueError(f"E_{n}: expected {(n_t, n_day, ny, nx)}, got {got.shape}")
            values[:, :n_day] = got * (factor / area)
            variables[name][:] = values
            if meta.on_written is not None:  # the day's 24 hours, back in the day's units
                back = area / factor
                meta.on_written(n, float((values.astype(np.float64) * back).sum() * HOUR_S))


def _global_attrs(meta: WriteMeta, start: pd.Timestamp, proj: dict[str, Any], n_z: int
                  ) -> dict[str, Any]:
    """The global attributes WRF checks against its domain, for the day starting at ``start``:
    with a WRF domain file, its own values (:data:`grids.grid.WRF_DOMAIN_ATTRIBUTES`: the
    projection, MMINLU/NUM_LAND_CAT/IS*, the nest), which ``input_wrf`` re-reads from every
    input stream (``share/input_wrf.F:510-633, 825-886``); else derived from the grid."""
    grid = meta.grid
    attrs: dict[str, Any] = {
        "TITLE": f" OUTPUT FROM TONGYUAN, WRF V4.0 COMPATIBLE emissions, {meta.mechanism}",
        "START_DATE": f"{start:%Y-%m-%d_%H:%M:%S}",
        "SIMULATION_START_DATE": f"{start:%Y-%m-%d_%H:%M:%S}",
        "WEST-EAST_GRID_DIMENSION": np.int32(grid.nx + 1),
        "SOUTH-NORTH_GRID_DIMENSION": np.int32(grid.ny + 1),
        "BOTTOM-TOP_GRID_DIMENSION": np.int32(n_z + 1),
        "GRIDTYPE": "C",
    }
    if meta.wrf_domain is not None:  # the run's own values, as stored in its wrfinput/geo_em
        attrs.update(meta.wrf_domain.attrs)
        code = int(attrs["MAP_PROJ"])
        attrs.setdefault("MAP_PROJ_CHAR", WRF_MAP_PROJ.get(code, ""))
    else:
        attrs.update({
            "DX": np.float32(proj["DX"]), "DY": np.float32(proj["DY"]),
            "MAP_PROJ": np.int32(proj["MAP_PROJ"]),
            "TRUELAT1": np.float32(proj["TRUELAT1"]), "TRUELAT2": np.float32(proj["TRUELAT2"]),
            "STAND_LON": np.float32(proj["STAND_LON"]),
            "CEN_LAT": np.float32(proj["CEN_LAT"]), "CEN_LON": np.float32(proj["CEN_LON"]),
            "MOAD_CEN_LAT": np.float32(proj["CEN_LAT"]),
            "POLE_LAT": np.float32(90.0), "POLE_LON": np.float32(0.0)})
    attrs["tongyuan_build_id"] = str(meta.attrs.get("tongyuan_build_id", ""))
    return attrs
