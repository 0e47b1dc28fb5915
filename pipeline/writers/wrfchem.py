"""WRF-Chem anthropogenic emission files ``wrfchemi_d01_<YYYY-MM-DD_HH:MM:SS>``.

One file per UTC day with 24 hourly frames (``io_style_emissions = 2``, ``frames_per_auxinput5
= 24``, ``auxinput5_interval_m = 60``). Variables ``E_<species>`` (Time, emissions_zdim,
south_north, west_east) in float32 — gases in mol km⁻² h⁻¹, aerosols in µg m⁻² s⁻¹ — with the
WRF field attributes (FieldType 104, MemoryOrder "XYZ", description, units, stagger); ``Times``
(Time × DateStrLen = 19); global attributes WRF checks against its domain (TITLE containing "V4."
as WRF 4 requires, START_DATE, WEST-EAST/SOUTH-NORTH/BOTTOM-TOP_GRID_DIMENSION as staggered
sizes, DX, DY, MAP_PROJ, TRUELAT1, TRUELAT2, STAND_LON, CEN_LAT, CEN_LON, MOAD_CEN_LAT, GRIDTYPE
"C"). Written as netCDF 64-bit offset to a temporary name and renamed.

WRF has no UTM projection: the grid must be Lambert conformal (MAP_PROJ 1) or lat/lon (6, DX and
DY then in metres along the equator, as WPS writes them) and must match the WRF domain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pandas as pd

from grids.grid import Grid
from pipeline.writers.classic import classic_file
from sources.errors import ConfigError


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


def write(path: str | Path, day: pd.Timestamp, names: list[str],
          field: Callable[[str], np.ndarray], units: dict[str, str],
          descriptions: dict[str, str], grid: Grid, n_z: int, meta: dict[str, Any]) -> None:
    """Write one day; ``field(E_name)`` gives (24, emissions_zdim, south_north, west_east)
    float32 in the WRF-Chem units (mol km-2 hr-1 or ug m-2 s-1), one species at a time."""
    path = Path(path)
    proj = wrf_projection(grid)
    n_t, ny, nx = 24, grid.ny, grid.nx
    with classic_file(path, {"Time": None, "DateStrLen": 19, "west_east": nx,
                             "south_north": ny, "emissions_zdim": n_z}) as nc:
        times = nc.createVariable("Times", "S1", ("Time", "DateStrLen"))
        stamps = [f"{day + pd.Timedelta(hours=h):%Y-%m-%d_%H:%M:%S}" for h in range(n_t)]
        variables = {}
        for name in names:
            v = nc.createVariable(name, "f4", ("Time", "emissions_zdim", "south_north",
                                               "west_east"))
            v.FieldType = np.int32(104)
            v.MemoryOrder = "XYZ"
            v.description = descriptions.get(name, name)
            v.units = units[name]
            v.stagger = ""
            v.coordinates = "XLONG XLAT"
            variables[name] = v
        lon, lat = grid.lonlat()
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
        attrs: dict[str, Any] = {
            "TITLE": f" OUTPUT FROM TONGYUAN, WRF V4.0 COMPATIBLE emissions, "
                     f"{meta.get('mechanism', '')}",
            "START_DATE": f"{day:%Y-%m-%d_%H:%M:%S}",
            "SIMULATION_START_DATE": f"{day:%Y-%m-%d_%H:%M:%S}",
            "WEST-EAST_GRID_DIMENSION": np.int32(nx + 1),
            "SOUTH-NORTH_GRID_DIMENSION": np.int32(ny + 1),
            "BOTTOM-TOP_GRID_DIMENSION": np.int32(n_z + 1),
            "DX": np.float32(proj["DX"]), "DY": np.float32(proj["DY"]),
            "GRIDTYPE": "C", "MAP_PROJ": np.int32(proj["MAP_PROJ"]),
            "TRUELAT1": np.float32(proj["TRUELAT1"]), "TRUELAT2": np.float32(proj["TRUELAT2"]),
            "STAND_LON": np.float32(proj["STAND_LON"]),
            "CEN_LAT": np.float32(proj["CEN_LAT"]), "CEN_LON": np.float32(proj["CEN_LON"]),
            "MOAD_CEN_LAT": np.float32(proj["CEN_LAT"]),
            "POLE_LAT": np.float32(90.0), "POLE_LON": np.float32(0.0),
            "tongyuan_build_id": str(meta.get("tongyuan_build_id", "")),
        }
        for k, v in attrs.items():
            nc.setncattr(k, v)
        # data only after the whole header is defined (a classic file whose header grows after
        # data are written is rewritten)
        times[:] = netCDF4.stringtochar(np.array(stamps, dtype="S19"))
        for v, arr in coords.values():
            v[:] = arr.astype(np.float32)
        for name in names:
            values = field(name)
            if values.shape != (n_t, n_z, ny, nx):
                raise ValueError(f"{name}: expected {(n_t, n_z, ny, nx)}, got {values.shape}")
            variables[name][:] = values
