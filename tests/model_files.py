"""Small, format-true WRF and MCIP files for the Lambert YRD test domain (seeded, synthetic).

The domain is the WRF run MCIP would make ``config/GRIDDESC_YRD`` (``YRD9KM``: LAM_CN, 60 × 60
cells of 9 km, XORIG 702 000 m, YORIG −558 000 m) from with BTRIM = 0 and WRF_LC_REF_LAT = 34:
MCIP trims BTRIM + 1 = 1 mass cell on every side (CMAQ ``PREP/mcip/src/setgriddefs.f90:305-306,
510-511``), so the WRF mass grid d01 is 62 × 62 cells (``e_we = e_sn = 63``) whose south-west
corner is (693 000, −567 000) m on LAM_CN. An optional 3 km nest d02 (``parent_grid_ratio`` 3,
36 × 36 cells) covers Shanghai.

What is written, following the layout of real files:

* ``wrfinput_d0N`` (real.exe, ``share/output_wrf.F:336-973`` of WRF v4.7.1; fields from
  ``Registry/Registry.EM_COMMON``): dims ``Time DateStrLen west_east south_north bottom_top
  bottom_top_stag west_east_stag south_north_stag``; ``Times``, ``XLAT``, ``XLONG``,
  ``MAPFAC_M``, ``MAPFAC_MX``, ``MAPFAC_MY``, ``HGT``, ``LU_INDEX``, ``ZNW``, ``ZNU``, ``PH``,
  ``PHB``, ``P_TOP`` with ``FieldType`` 104, ``MemoryOrder``, ``description``, ``units``,
  ``stagger``; global attributes TITLE, START_DATE, the grid dimensions, DX, DY, CEN_LAT/LON,
  TRUELAT1/2, MOAD_CEN_LAT, STAND_LON, POLE_LAT/LON, GMT, JULYR, JULDAY, MAP_PROJ,
  MAP_PROJ_CHAR, MMINLU, NUM_LAND_CAT, ISWATER, ISLAKE, ISICE, ISURBAN, ISOILWATER, HYBRID_OPT,
  GRID_ID, PARENT_ID, I_PARENT_START, J_PARENT_START, PARENT_GRID_RATIO.
* ``geo_em.d0N.nc`` (geogrid, WPS v4.6 ``geogrid/src/output_module.F:1349-1392``,
  ``process_tile_module.F:311-358``): ``XLAT_M``, ``XLONG_M``, ``XLAT_C``, ``XLONG_C``,
  ``MAPFAC_M``, ``MAPFAC_MX``, ``MAPFAC_MY``, ``HGT_M``, ``LU_INDEX`` (``stagger`` "M"/"CORNER",
  ``sr_x``/``sr_y``), lower-case nest attributes (``grid_id``, ``parent_id``, ...),
  ``corner_lats``/``corner_lons``, ``FLAG_MF_XY``.
* ``METCRO3D_YRD9KM`` (MCIP, I/O API GRDDED3; header ``PREP/mcip/src/comheader.f90:49-71``,
  variables ``init_ctm.f90``): ``TFLAG``, ``JACOBF``, ``JACOBM``, ``DENSA_J``, ``WHAT_JD``,
  ``TA``, ``QV``, ``PRES``, ``DENS``, ``ZH``, ``ZF`` on 20 layers, 2 hourly steps; VGTYP −9999
  (WRF's default HYBRID_OPT 2, ``setgriddefs.f90:450-455``), VGTOP = P_TOP, VGLVLS = ZNW.

The atmosphere is hydrostatic (ICAO lapse rate) over seeded terrain with a seeded temperature
offset per column, so layer heights differ from cell to cell; ZF of the METCRO3D equals
(PH + PHB)/g − HGT of the wrfinput in the MCIP window. Run ``python -m tests.model_files DIR``
to write the set (and ``GRIDDESC``) into DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pyproj

from grids.grid import griddesc_crs

#: WRF's gravity (share/module_model_constants.F) and the ICAO lapse rate
G, LAPSE, T0, P0, R_D = 9.81, 0.0065, 288.15, 101_325.0, 287.0
P_TOP = 5000.0
#: full eta levels, 1 at the surface to 0 at the top: 20 layers
ZNW = np.array([1.0, 0.996, 0.99, 0.98, 0.97, 0.96, 0.945, 0.93, 0.91, 0.89, 0.865, 0.84, 0.8,
                0.75, 0.7, 0.6, 0.5, 0.4, 0.3, 0.15, 0.0])
#: the LAM_CN projection of config/GRIDDESC_YRD and the WRF domains on it (SW dot corner [m])
LAM_CN = griddesc_crs(2, 25.0, 40.0, 110.0, 110.0, 34.0)
D01 = {"grid_id": 1, "parent_id": 1, "e_we": 63, "e_sn": 63, "dx": 9000.0,
       "sw": (693_000.0, -567_000.0), "i_parent_start": 1, "j_parent_start": 1, "ratio": 1}
D02 = {"grid_id": 2, "parent_id": 1, "e_we": 37, "e_sn": 37, "dx": 3000.0,
       "i_parent_start": 33, "j_parent_start": 25, "ratio": 3}
D02["sw"] = (D01["sw"][0] + (D02["i_parent_start"] - 1) * D01["dx"],
             D01["sw"][1] + (D02["j_parent_start"] - 1) * D01["dx"])
DOMAINS = {1: D01, 2: D02}
#: MODIS land use as WPS writes it by default (MODIFIED_IGBP_MODIS_NOAH, 21 categories)
LAND_USE = {"MMINLU": "MODIFIED_IGBP_MODIS_NOAH", "NUM_LAND_CAT": 21, "ISWATER": 17,
            "ISLAKE": 21, "ISICE": 15, "ISURBAN": 13, "ISOILWATER": 14}
#: the MCIP window of d01: BTRIM = 0 → one cell off each side, 60 × 60
MCIP = {"XORIG": 702_000.0, "YORIG": -558_000.0, "NCOLS": 60, "NROWS": 60, "offset": 1}


def _centres(dom: dict, stagger: str = "M") -> tuple[np.ndarray, np.ndarray]:
    """(x, y) on LAM_CN of the mass points (M) or the corners (C) of ``dom``."""
    nx, ny, dx = dom["e_we"] - 1, dom["e_sn"] - 1, dom["dx"]
    half = 0.5 if stagger == "M" else 0.0
    n_x, n_y = (nx, ny) if stagger == "M" else (nx + 1, ny + 1)
    return np.meshgrid(dom["sw"][0] + (np.arange(n_x) + half) * dx,
                       dom["sw"][1] + (np.arange(n_y) + half) * dx)


def _lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = pyproj.Transformer.from_crs(LAM_CN, LAM_CN.geodetic_crs,
                                           always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def _mapfac(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The map factor of the Lambert projection (conformal: the meridional scale)."""
    return np.asarray(pyproj.Proj(LAM_CN).get_factors(lon, lat).meridional_scale)


def _domain_centre(dom: dict) -> tuple[float, float]:
    """(lat, lon) at mass-grid i = e_we/2, j = e_sn/2 (1-based), as WPS computes CEN_LAT/LON
    and MOAD_CEN_LAT (``geogrid/src/output_module.F:359-369``)."""
    x = dom["sw"][0] + (dom["e_we"] / 2 - 0.5) * dom["dx"]
    y = dom["sw"][1] + (dom["e_sn"] / 2 - 0.5) * dom["dx"]
    lon, lat = _lonlat(np.array(x), np.array(y))
    return float(lat), float(lon)


def _terrain(lon: np.ndarray, lat: np.ndarray, seed: int = 15) -> np.ndarray:
    """Hills in the south-west (Zhejiang, Anhui), plain elsewhere [m], seeded noise."""
    rng = np.random.default_rng(seed)
    hills = 900.0 * np.exp(-(((lon - 118.6) / 1.0) ** 2 + ((lat - 29.6) / 0.8) ** 2))
    return hills + rng.uniform(0.0, 5.0, lon.shape) * (lon < 121.0)


def _atmosphere(hgt: np.ndarray, lon: np.ndarray, lat: np.ndarray, hour: int = 0
                ) -> dict[str, np.ndarray]:
    """Heights above sea level of the w levels [m] (nz+1, ny, nx), layer pressure [Pa] and
    temperature [K]; hydrostatic in a column with lapse rate LAPSE and surface temperature
    T0 + a smooth, seeded offset (± 3 K) and a 0.5 K/h warming."""
    rng = np.random.default_rng(1515)
    phase = rng.uniform(0, 2 * np.pi, 2)
    t_sfc = (T0 - LAPSE * hgt + 3.0 * np.sin(np.radians(lon) * 20 + phase[0])
             * np.cos(np.radians(lat) * 25 + phase[1]) + 0.5 * hour)
    p_sfc = P0 * (1 - LAPSE * hgt / T0) ** (G / (R_D * LAPSE))
    p_w = P_TOP + ZNW[:, None, None] * (p_sfc - P_TOP)[None]
    # T = t_sfc − Γ z' with z' above ground: p/p_sfc = (T/t_sfc)^(g/RΓ)
    t_w = t_sfc[None] * (p_w / p_sfc[None]) ** (R_D * LAPSE / G)
    z_w = hgt[None] + (t_sfc[None] - t_w) / LAPSE
    p_mid = 0.5 * (p_w[1:] + p_w[:-1])
    t_mid = 0.5 * (t_w[1:] + t_w[:-1])
    return {"z_w": z_w, "p_mid": p_mid, "t_mid": t_mid, "p_sfc": p_sfc}


def _var(nc, name, dtype, dims, values, *, memory, description, units, stagger="", extra=None):
    v = nc.createVariable(name, dtype, dims)
    v.FieldType = np.int32(104)
    v.MemoryOrder = memory
    v.description = description
    v.units = units
    v.stagger = stagger
    for k, val in (extra or {}).items():
        v.setncattr(k, val)
    v[:] = values
    return v


def _domain_attrs(dom: dict) -> dict:
    cen_lat, cen_lon = _domain_centre(dom)
    moad_lat, _ = _domain_centre(D01)
    return {"DX": np.float32(dom["dx"]), "DY": np.float32(dom["dx"]),
            "CEN_LAT": np.float32(cen_lat), "CEN_LON": np.float32(cen_lon),
            "TRUELAT1": np.float32(25.0), "TRUELAT2": np.float32(40.0),
            "MOAD_CEN_LAT": np.float32(moad_lat), "STAND_LON": np.float32(110.0),
            "POLE_LAT": np.float32(90.0), "POLE_LON": np.float32(0.0)}


def write_wrfinput(path: Path, grid_id: int = 1, start: str = "2024-03-01") -> Path:
    """A real.exe ``wrfinput_d0N`` of domain ``grid_id`` (1 or 2) at ``start`` 00 UTC."""
    dom = DOMAINS[grid_id]
    nx, ny, nz = dom["e_we"] - 1, dom["e_sn"] - 1, ZNW.size - 1
    x, y = _centres(dom)
    lon, lat = _lonlat(x, y)
    hgt = _terrain(lon, lat)
    atm = _atmosphere(hgt, lon, lat)
    t = pd.Timestamp(start)
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        for name, size in (("Time", None), ("DateStrLen", 19), ("west_east", nx),
                           ("south_north", ny), ("bottom_top", nz), ("bottom_top_stag", nz + 1),
                           ("west_east_stag", nx + 1), ("south_north_stag", ny + 1)):
            nc.createDimension(name, size)
        times = nc.createVariable("Times", "S1", ("Time", "DateStrLen"))
        times[:] = netCDF4.stringtochar(np.array([f"{t:%Y-%m-%d_%H:%M:%S}"], dtype="S19"))
        xy = ("Time", "south_north", "west_east")
        for name, arr, desc, units in (
                ("XLAT", lat, "LATITUDE, SOUTH IS NEGATIVE", "degree_north"),
                ("XLONG", lon, "LONGITUDE, WEST IS NEGATIVE", "degree_east")):
            _var(nc, name, "f4", xy, arr[None], memory="XY ", description=desc, units=units,
                 extra={"coordinates": "XLONG XLAT"})
        m = _mapfac(lon, lat)
        for name, desc in (("MAPFAC_M", "Map scale factor on mass grid"),
                           ("MAPFAC_MX", "Map scale factor on mass grid, x direction"),
                           ("MAPFAC_MY", "Map scale factor on mass grid, y direction")):
            _var(nc, name, "f4", xy, m[None], memory="XY ", description=desc, units="",
                 extra={"coordinates": "XLONG XLAT"})
        _var(nc, "HGT", "f4", xy, hgt[None], memory="XY ", description="Terrain Height",
             units="m", extra={"coordinates": "XLONG XLAT"})
        lu = np.where(hgt > 100, 5, 12).astype(np.float32)  # forest on hills, cropland
        lu[(np.abs(lon - 121.45) < 0.25) & (np.abs(lat - 31.2) < 0.2)] = 13  # urban Shanghai
        _var(nc, "LU_INDEX", "f4", xy, lu[None], memory="XY ", description="LAND USE CATEGORY",
             units="", extra={"coordinates": "XLONG XLAT"})
        _var(nc, "ZNW", "f4", ("Time", "bottom_top_stag"), ZNW[None], memory="Z  ",
             description="eta values on full (w) levels", units="", stagger="Z")
        _var(nc, "ZNU", "f4", ("Time", "bottom_top"), 0.5 * (ZNW[1:] + ZNW[:-1])[None],
             memory="Z  ", description="eta values on half (mass) levels", units="")
        z_base = _standard_z(hgt)
        w = ("Time", "bottom_top_stag", "south_north", "west_east")
        _var(nc, "PHB", "f4", w, (G * z_base)[None], memory="XYZ",
             description="base-state geopotential", units="m2 s-2", stagger="Z",
             extra={"coordinates": "XLONG XLAT"})
        _var(nc, "PH", "f4", w, (G * (atm["z_w"] - z_base))[None], memory="XYZ",
             description="perturbation geopotential", units="m2 s-2", stagger="Z",
             extra={"coordinates": "XLONG XLAT"})
        _var(nc, "P_TOP", "f4", ("Time",), np.array([P_TOP]), memory="0  ",
             description="PRESSURE TOP OF THE MODEL", units="Pa")
        attrs = {
            "TITLE": " OUTPUT FROM REAL_EM V4.7.1 PREPROCESSOR",
            "START_DATE": f"{t:%Y-%m-%d_%H:%M:%S}",
            "SIMULATION_START_DATE": f"{t:%Y-%m-%d_%H:%M:%S}",
            "WEST-EAST_GRID_DIMENSION": np.int32(dom["e_we"]),
            "SOUTH-NORTH_GRID_DIMENSION": np.int32(dom["e_sn"]),
            "BOTTOM-TOP_GRID_DIMENSION": np.int32(nz + 1),
            "GRIDTYPE": "C", "DT": np.float32(dom["dx"] / 1000 * 5),
            **_domain_attrs(dom),
            "GMT": np.float32(0.0), "JULYR": np.int32(t.year), "JULDAY": np.int32(t.day_of_year),
            "MAP_PROJ": np.int32(1), "MAP_PROJ_CHAR": "Lambert Conformal",
            "MMINLU": LAND_USE["MMINLU"],
            **{k: np.int32(v) for k, v in LAND_USE.items() if k != "MMINLU"},
            "HYBRID_OPT": np.int32(2),
            "GRID_ID": np.int32(grid_id), "PARENT_ID": np.int32(dom["parent_id"]),
            "I_PARENT_START": np.int32(dom["i_parent_start"]),
            "J_PARENT_START": np.int32(dom["j_parent_start"]),
            "PARENT_GRID_RATIO": np.int32(dom["ratio"]),
        }
        for k, v in attrs.items():
            nc.setncattr(k, v)
    return path


def _standard_z(hgt: np.ndarray) -> np.ndarray:
    """Base-state heights of the w levels [m above sea level]: the ICAO column (T0 at sea
    level) above the terrain, the base state of PHB."""
    p_sfc = P0 * (1 - LAPSE * hgt / T0) ** (G / (R_D * LAPSE))
    p_w = P_TOP + ZNW[:, None, None] * (p_sfc - P_TOP)[None]
    return T0 / LAPSE * (1 - (p_w / P0) ** (R_D * LAPSE / G))


def write_geo_em(path: Path, grid_id: int = 1) -> Path:
    """A geogrid ``geo_em.d0N.nc`` of domain ``grid_id``."""
    dom = DOMAINS[grid_id]
    nx, ny = dom["e_we"] - 1, dom["e_sn"] - 1
    lon, lat = _lonlat(*_centres(dom))
    lon_c, lat_c = _lonlat(*_centres(dom, "C"))
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        for name, size in (("Time", None), ("DateStrLen", 19), ("west_east", nx),
                           ("south_north", ny), ("south_north_stag", ny + 1),
                           ("west_east_stag", nx + 1), ("land_cat", 21)):
            nc.createDimension(name, size)
        times = nc.createVariable("Times", "S1", ("Time", "DateStrLen"))
        times[:] = netCDF4.stringtochar(np.array(["0000-00-00_00:00:00"], dtype="S19"))
        xy = ("Time", "south_north", "west_east")
        sr = {"sr_x": np.int32(1), "sr_y": np.int32(1)}
        for name, arr, desc, units in (
                ("XLAT_M", lat, "Latitude on mass grid", "degrees latitude"),
                ("XLONG_M", lon, "Longitude on mass grid", "degrees longitude")):
            _var(nc, name, "f4", xy, arr[None], memory="XY ", description=desc, units=units,
                 stagger="M", extra=sr)
        c = ("Time", "south_north_stag", "west_east_stag")
        for name, arr, desc, units in (
                ("XLAT_C", lat_c, "Latitude at grid cell corners", "degrees latitude"),
                ("XLONG_C", lon_c, "Longitude at grid cell corners", "degrees longitude")):
            _var(nc, name, "f4", c, arr[None], memory="XY ", description=desc, units=units,
                 stagger="CORNER", extra=sr)
        m = _mapfac(lon, lat)
        for name, desc in (("MAPFAC_M", "Mapfactor on mass grid"),
                           ("MAPFAC_MX", "Mapfactor (x-dir) on mass grid"),
                           ("MAPFAC_MY", "Mapfactor (y-dir) on mass grid")):
            _var(nc, name, "f4", xy, m[None], memory="XY ", description=desc, units="none",
                 stagger="M", extra=sr)
        hgt = _terrain(lon, lat)
        _var(nc, "HGT_M", "f4", xy, hgt[None], memory="XY ",
             description="GMTED2010 30-arc-second topography height", units="meters MSL",
             stagger="M", extra=sr)
        _var(nc, "LU_INDEX", "f4", xy, np.where(hgt > 100, 5, 12)[None].astype(np.float32),
             memory="XY ", description="Dominant category", units="category", stagger="M",
             extra=sr)
        corners = [lat[0, 0], lat[-1, 0], lat[-1, -1], lat[0, -1]]
        corners_lon = [lon[0, 0], lon[-1, 0], lon[-1, -1], lon[0, -1]]
        attrs = {
            "TITLE": "OUTPUT FROM GEOGRID V4.6.0",
            "SIMULATION_START_DATE": "0000-00-00_00:00:00",
            "WEST-EAST_GRID_DIMENSION": np.int32(dom["e_we"]),
            "SOUTH-NORTH_GRID_DIMENSION": np.int32(dom["e_sn"]),
            "BOTTOM-TOP_GRID_DIMENSION": np.int32(0),
            "WEST-EAST_PATCH_START_UNSTAG": np.int32(1),
            "WEST-EAST_PATCH_END_UNSTAG": np.int32(nx),
            "SOUTH-NORTH_PATCH_START_UNSTAG": np.int32(1),
            "SOUTH-NORTH_PATCH_END_UNSTAG": np.int32(ny),
            "GRIDTYPE": "C", **{k: v for k, v in _domain_attrs(dom).items()
                                if k in ("DX", "DY")},
            "DYN_OPT": np.int32(2),
            **{k: v for k, v in _domain_attrs(dom).items() if k not in ("DX", "DY")},
            "corner_lats": np.array(corners * 4, dtype=np.float32),
            "corner_lons": np.array(corners_lon * 4, dtype=np.float32),
            "MAP_PROJ": np.int32(1), "MMINLU": LAND_USE["MMINLU"],
            **{k: np.int32(v) for k, v in LAND_USE.items() if k != "MMINLU"},
            "grid_id": np.int32(grid_id), "parent_id": np.int32(dom["parent_id"]),
            "i_parent_start": np.int32(dom["i_parent_start"]),
            "j_parent_start": np.int32(dom["j_parent_start"]),
            "i_parent_end": np.int32(dom["i_parent_start"] + nx // dom["ratio"]),
            "j_parent_end": np.int32(dom["j_parent_start"] + ny // dom["ratio"]),
            "parent_grid_ratio": np.int32(dom["ratio"]),
            "sr_x": np.int32(1), "sr_y": np.int32(1), "FLAG_MF_XY": np.int32(1),
        }
        for k, v in attrs.items():
            nc.setncattr(k, v)
    return path


def _pad(text: str, n: int) -> str:
    return f"{text:<{n}.{n}}"


#: METCRO3D variables: name → (units, description) as MCIP names them (init_ctm.f90)
METCRO3D_VARIABLES = {
    "JACOBF": ("m", "Jacobian at layer face scaled by MSFX2"),
    "JACOBM": ("m", "Jacobian at layer middle scaled by MSFX2"),
    "DENSA_J": ("kg m-2", "J-weighted air density (dry) scaled by MSFX2"),
    "WHAT_JD": ("kg m-1 s-1", "J- and density weighted vert contravariant-W"),
    "TA": ("K", "air temperature"),
    "QV": ("kg kg-1", "water vapor mixing ratio"),
    "PRES": ("Pa", "pressure"),
    "DENS": ("kg m-3", "density of air (dry)"),
    "ZH": ("m", "mid-layer height above ground"),
    "ZF": ("m", "full-layer height above ground"),
}


def write_metcro3d(path: Path, start: str = "2024-03-01", steps: int = 2) -> Path:
    """MCIP's ``METCRO3D`` for the YRD9KM window of d01 (I/O API, netCDF classic)."""
    t0 = pd.Timestamp(start)
    off, ncols, nrows = MCIP["offset"], MCIP["NCOLS"], MCIP["NROWS"]
    x, y = _centres(D01)
    lon, lat = _lonlat(x, y)
    hgt = _terrain(lon, lat)
    win = (slice(off, off + nrows), slice(off, off + ncols))
    m2 = (_mapfac(lon, lat) ** 2)[win]
    nz = ZNW.size - 1
    fields = {n: np.zeros((steps, nz, nrows, ncols), dtype=np.float32)
              for n in METCRO3D_VARIABLES}
    for s in range(steps):
        atm = _atmosphere(hgt, lon, lat, hour=s)
        zf = (atm["z_w"][1:] - hgt[None])[(slice(None), *win)]
        z0 = np.zeros((1, nrows, ncols))
        zw = np.concatenate([z0, zf])
        zh = 0.5 * (zw[1:] + zw[:-1])
        pres, ta = atm["p_mid"][(slice(None), *win)], atm["t_mid"][(slice(None), *win)]
        dens = pres / (R_D * ta)
        jac = (atm["p_sfc"][win] - P_TOP)[None] / (G * dens)  # hydrostatic dz/deta
        vals = {"JACOBF": jac * m2, "JACOBM": jac * m2, "DENSA_J": dens * jac * m2,
                "WHAT_JD": np.zeros_like(dens), "TA": ta, "QV": np.full_like(ta, 0.008),
                "PRES": pres, "DENS": dens, "ZH": zh, "ZF": zf}
        for n, v in vals.items():
            fields[n][s] = v
    names = list(METCRO3D_VARIABLES)
    now = pd.Timestamp("2026-12-07 00:00")
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        for name, size in (("TSTEP", None), ("DATE-TIME", 2), ("LAY", nz), ("VAR", len(names)),
                           ("ROW", nrows), ("COL", ncols)):
            nc.createDimension(name, size)
        tflag = nc.createVariable("TFLAG", "i4", ("TSTEP", "VAR", "DATE-TIME"))
        tflag.setncattr("units", _pad("<YYYYDDD,HHMMSS>", 16))
        tflag.setncattr("long_name", _pad("TFLAG", 16))
        tflag.setncattr("var_desc", _pad("Timestep-valid flags:  (1) YYYYDDD or (2) HHMMSS", 80))
        variables = {}
        for n in names:
            v = nc.createVariable(n, "f4", ("TSTEP", "LAY", "ROW", "COL"))
            units, desc = METCRO3D_VARIABLES[n]
            v.setncattr("long_name", _pad(n, 16))
            v.setncattr("units", _pad(units, 16))
            v.setncattr("var_desc", _pad(desc, 80))
            variables[n] = v
        attrs = {
            "IOAPI_VERSION": _pad("ioapi-3.2: $Id: init3.F90 200 2020-04-17 $", 80),
            "EXEC_ID": _pad("mcip", 80), "FTYPE": np.int32(1),
            "CDATE": np.int32(now.year * 1000 + now.day_of_year), "CTIME": np.int32(0),
            "WDATE": np.int32(now.year * 1000 + now.day_of_year), "WTIME": np.int32(0),
            "SDATE": np.int32(t0.year * 1000 + t0.day_of_year), "STIME": np.int32(0),
            "TSTEP": np.int32(10000), "NTHIK": np.int32(1), "NCOLS": np.int32(ncols),
            "NROWS": np.int32(nrows), "NLAYS": np.int32(nz), "NVARS": np.int32(len(names)),
            "GDTYP": np.int32(2), "P_ALP": np.float64(25.0), "P_BET": np.float64(40.0),
            "P_GAM": np.float64(110.0), "XCENT": np.float64(110.0), "YCENT": np.float64(34.0),
            "XORIG": np.float64(MCIP["XORIG"]), "YORIG": np.float64(MCIP["YORIG"]),
            "XCELL": np.float64(9000.0), "YCELL": np.float64(9000.0),
            "VGTYP": np.int32(-9999), "VGTOP": np.float32(P_TOP),
            "VGLVLS": ZNW.astype(np.float32), "GDNAM": _pad("YRD9KM", 16),
            "UPNAM": _pad("METCRO", 16), "VAR-LIST": "".join(_pad(n, 16) for n in names),
            "FILEDESC": _pad("MCIP-style METCRO3D (synthetic test file, tests/model_files.py)",
                             80 * 60),
            "HISTORY": _pad("", 80),
        }
        for k, v in attrs.items():
            nc.setncattr(k, v)
        stamps = [t0 + pd.Timedelta(hours=s) for s in range(steps)]
        flags = np.array([[t.year * 1000 + t.day_of_year, t.hour * 10000] for t in stamps],
                         dtype=np.int32)
        tflag[:] = np.repeat(flags[:, None, :], len(names), axis=1)
        for n in names:
            variables[n][:] = fields[n]
    return path


def write_yrd_domain(folder: Path, start: str = "2024-03-01", nest: bool = False
                     ) -> dict[str, Path]:
    """wrfinput_d01, geo_em.d01.nc, METCRO3D_YRD9KM (and d02 with ``nest``) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"wrfinput_d01": write_wrfinput(folder / "wrfinput_d01", 1, start),
           "geo_em.d01.nc": write_geo_em(folder / "geo_em.d01.nc", 1),
           "METCRO3D": write_metcro3d(folder / "METCRO3D_YRD9KM", start)}
    if nest:
        out["wrfinput_d02"] = write_wrfinput(folder / "wrfinput_d02", 2, start)
        out["geo_em.d02.nc"] = write_geo_em(folder / "geo_em.d02.nc", 2)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else "yrd-domain")
    paths = write_yrd_domain(folder, nest=True)
    griddesc = Path(__file__).resolve().parents[1] / "config" / "GRIDDESC_YRD"
    (folder / "GRIDDESC").write_text(griddesc.read_text())
    for name, p in paths.items():
        print(f"{name}: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
