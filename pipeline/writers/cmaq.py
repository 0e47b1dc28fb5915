"""CMAQ emission files: Models-3 I/O API conventions, one file per UTC day with 25 hourly steps.

Dimensions ``TSTEP`` (unlimited), ``DATE-TIME`` (2), ``LAY``, ``VAR``, ``ROW``, ``COL``; ``TFLAG``
(int32, TSTEP × VAR × DATE-TIME: YYYYDDD, HHMMSS); every species a float32 (REAL) variable
``(TSTEP, LAY, ROW, COL)`` per grid cell — gases in moles/s, aerosols in g/s — with ``long_name``
and ``units`` padded to 16 characters and ``var_desc`` to 80; global attributes FTYPE = 1
(GRDDED3), SDATE/STIME, TSTEP = 10000, the horizontal grid (GDTYP, P_ALP, P_BET, P_GAM, XCENT,
YCENT, XORIG, YORIG, XCELL, YCELL, NCOLS, NROWS, NTHIK), the vertical grid (VGTYP, VGTOP,
VGLVLS), GDNAM, UPNAM, ``VAR-LIST`` and FILEDESC (cjcoats.github.io/ioapi/DATATYPES.html,
VBLE.html; CMAQ User's Guide, emission units). Written as netCDF 64-bit offset, the classic
format the I/O API reads, to a temporary name and renamed.

Horizontal types: UTM (GDTYP 5, P_ALP = zone), Lambert conformal (2), lat/lon (1); a build
refuses UTM and lat/lon (:func:`check_grid`: no MCIP grid is one). Vertical: heights above
ground (VGHVAL3), or the model's own levels (``meta.vertical_levels``, MCIP's). The 25th step
is 00 UTC of the next day (from the next day's profile where the year has it; on the year's last
day the day's own 00 UTC hour is repeated).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import xarray as xr

from grids.grid import Grid
from pipeline.writers import WriteMeta
from pipeline.writers.classic import classic_file
from sources.errors import ConfigError
from sources.units import factor_to, ureg

VGHVAL3 = 6  # I/O API: H (m) above ground (VGZVAL3 = 5 is above sea level)
#: the file's units, per grid cell: gases (amount of substance) and aerosols (mass)
GAS_UNITS, AEROSOL_UNITS = "moles/s", "g/s"
HOUR_S = factor_to("hour", "s")


def _pad(text: str, n: int) -> str:
    return f"{text:<{n}.{n}}"


def ioapi_horizontal(grid: Grid) -> dict[str, Any]:
    """GDTYP and projection parameters of ``grid`` (UTM, Lambert conformal or lat/lon)."""
    crs = grid.crs
    common = {"XORIG": float(grid.x0), "YORIG": float(grid.y0), "XCELL": float(grid.dx),
              "YCELL": float(grid.dy), "NCOLS": int(grid.nx), "NROWS": int(grid.ny),
              "NTHIK": 1}
    if grid.is_geographic:
        return {"GDTYP": 1, "P_ALP": 0.0, "P_BET": 0.0, "P_GAM": 0.0, "XCENT": 0.0,
                "YCENT": 0.0, **common}
    zone = crs.utm_zone
    if zone:
        if zone.endswith("S"):
            raise ConfigError(f"grid {grid.name!r}: southern-hemisphere UTM is not written to "
                              "I/O API files")
        return {"GDTYP": 5, "P_ALP": float(zone[:-1]), "P_BET": 0.0, "P_GAM": 0.0,
                "XCENT": 0.0, "YCENT": 0.0, **common}
    cf = crs.to_cf()
    if cf.get("grid_mapping_name") == "lambert_conformal_conic":
        sp = np.atleast_1d(cf["standard_parallel"]).astype(float)
        lat1, lat2 = float(sp[0]), float(sp[-1])
        lon0 = float(cf["longitude_of_central_meridian"])
        lat0 = float(cf["latitude_of_projection_origin"])
        if cf.get("false_easting") or cf.get("false_northing"):
            # XCENT/YCENT: the lon/lat of the Cartesian origin (x = y = 0)
            lon0c, lat0c = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True
                                                       ).transform(0.0, 0.0)
        else:
            lon0c, lat0c = lon0, lat0
        return {"GDTYP": 2, "P_ALP": lat1, "P_BET": lat2, "P_GAM": lon0,
                "XCENT": float(lon0c), "YCENT": float(lat0c), **common}
    raise ConfigError(f"grid {grid.name!r}: CRS {crs.to_string()} has no I/O API grid type "
                      "here; CMAQ files need a UTM, Lambert conformal or lat/lon grid")


def check_grid(grid: Grid) -> None:
    """Refuse a grid the I/O API cannot describe (see :func:`ioapi_horizontal`) or MCIP cannot
    make: MCIP writes Lambert (GDTYP 2), polar-stereographic (6) and Mercator (7) grids only and
    stops otherwise (``PREP/mcip/src/setgriddefs.f90:371-379``, CMAQ 5.4), and CCTM stops on an
    emission file whose header differs from the GRIDDESC grid ("File header inconsistent with
    GRIDDESC", ``CCTM/src/util/util/subhfile.F:184``), so a UTM (5) or lat/lon (1) file cannot
    be read by any MCIP-driven run."""
    gdtyp = ioapi_horizontal(grid)["GDTYP"]
    if gdtyp in (1, 5):
        kind = "UTM (GDTYP 5)" if gdtyp == 5 else "lon/lat (GDTYP 1)"
        raise ConfigError(
            f"grid {grid.name!r} ({grid.crs.to_string()}) is a {kind} grid: MCIP makes only "
            "Lambert conformal, polar-stereographic and Mercator grids (setgriddefs.f90), and "
            "CCTM stops on an emission file that does not match its GRIDDESC (subhfile.F). "
            "Build the CMAQ files on MCIP's GRIDDESC grid: grid: {griddesc: GRIDDESC, name: "
            "<grid name>}")


def _yyyyddd(ts: pd.Timestamp) -> int:
    return ts.year * 1000 + ts.dayofyear


def file_units(units: str) -> str:
    """The I/O API unit of a species given in ``units`` (amount or mass per second per cell)."""
    return GAS_UNITS if ureg.Unit(units).is_compatible_with(GAS_UNITS) else AEROSOL_UNITS


def write(day: xr.Dataset, path: str | Path, meta: WriteMeta) -> None:
    """Write one day: ``day`` holds model species ``(time = 25, z, y, x)`` per grid cell (any
    unit of amount or mass per second), converted to moles/s or g/s and materialised one species
    at a time after the header is defined (see :mod:`pipeline.writers` for the interface)."""
    path, grid = Path(path), meta.grid
    names = [str(n) for n in day.data_vars]
    start = pd.Timestamp(day["time"].values[0])
    n_t, n_lay, n_row, n_col = 25, day.sizes["z"], grid.ny, grid.nx
    if len(meta.layers_m) < n_lay + 1:
        raise ValueError(f"{n_lay} layers need {n_lay + 1} interfaces, got {meta.layers_m}")
    interfaces_m = np.asarray(meta.layers_m[:n_lay + 1], dtype=float)
    for n in names:
        if len(n) > 16:
            raise ConfigError(f"model species name {n!r} is longer than 16 characters")
    units = {n: file_units(day[n].attrs["units"]) for n in names}
    now = _written_at(meta)
    steps = [start + pd.Timedelta(hours=h) for h in range(25)]
    horiz = ioapi_horizontal(grid)
    with classic_file(path, {"TSTEP": None, "DATE-TIME": 2, "LAY": n_lay, "VAR": len(names),
                             "ROW": n_row, "COL": n_col}) as nc:
        tflag = nc.createVariable("TFLAG", "i4", ("TSTEP", "VAR", "DATE-TIME"))
        tflag.setncattr("units", _pad("<YYYYDDD,HHMMSS>", 16))
        tflag.setncattr("long_name", _pad("TFLAG", 16))
        tflag.setncattr("var_desc", _pad("Timestep-valid flags:  (1) YYYYDDD or (2) HHMMSS", 80))
        variables = {}
        for n in names:
            v = nc.createVariable(n, "f4", ("TSTEP", "LAY", "ROW", "COL"))
            v.setncattr("long_name", _pad(day[n].attrs.get("long_name", n), 16))
            v.setncattr("units", _pad(units[n], 16))
            v.setncattr("var_desc", _pad(day[n].attrs.get("var_desc", n), 80))
            variables[n] = v
        for k, v in _global_attrs(meta, start, horiz, interfaces_m, names, now).items():
            nc.setncattr(k, v)
        # header complete (define everything before any data: a classic file whose header
        # grows after data are written is rewritten); variables are then filled one at a time
        flags = np.array([[_yyyyddd(t), t.hour * 10000] for t in steps], dtype=np.int32)
        tflag[:] = np.repeat(flags[:, None, :], len(names), axis=1)
        for n in names:
            factor = factor_to(day[n].attrs["units"], units[n])
            values = np.asarray(day[n].transpose("time", "z", "y", "x").values)
            if values.shape != (n_t, n_lay, n_row, n_col):
                raise ValueError(f"{n}: expected {(n_t, n_lay, n_row, n_col)}, got "
                                 f"{values.shape}")
            values = values if factor == 1.0 else values * factor
            if meta.on_written_exact is not None:  # before float32, in the day's units
                exact = float(values[:24].sum() * HOUR_S)
                meta.on_written_exact(n, exact if factor == 1.0 else exact / factor)
            values = values.astype(np.float32)
            variables[n][:] = values
            if meta.on_written is not None:  # the day's 24 hours, back in the day's units
                amount = float(values[:24].astype(np.float64).sum() * HOUR_S)
                meta.on_written(n, amount if factor == 1.0 else amount / factor)


def _vertical(meta: WriteMeta, interfaces_m: np.ndarray) -> dict[str, Any]:
    """VGTYP, VGTOP, VGLVLS: the model's own (``meta.vertical_levels``: MCIP's, the first
    NLAYS + 1 levels, as SMOKE writes emission layers) or heights above ground (VGHVAL3)."""
    if meta.vertical_levels is None:
        return {"VGTYP": np.int32(VGHVAL3), "VGTOP": np.float32(interfaces_m[-1]),
                "VGLVLS": np.asarray(interfaces_m, dtype=np.float32)}
    vgtyp, vgtop, vglvls = meta.vertical_levels
    if len(vglvls) < len(interfaces_m):
        raise ValueError(f"{len(interfaces_m) - 1} layers need {len(interfaces_m)} VGLVLS, "
                         f"the model has {len(vglvls)}")
    return {"VGTYP": np.int32(vgtyp), "VGTOP": np.float32(vgtop),
            "VGLVLS": np.asarray(vglvls[:len(interfaces_m)], dtype=np.float32)}


def _written_at(meta: WriteMeta) -> time.struct_time:
    """CDATE/CTIME and WDATE/WTIME: the start of the build (the UTC time its id begins with,
    ``YYYYmmddTHHMMSS…Z-…``), so that a day's file is the same bytes whichever process of the
    build writes it and when; the clock for a file written outside a build."""
    build_id = str(meta.attrs.get("tongyuan_build_id", ""))
    try:
        return time.strptime(build_id[:15], "%Y%m%dT%H%M%S")
    except ValueError:
        return time.gmtime()


def _global_attrs(meta: WriteMeta, start: pd.Timestamp, horiz: dict[str, Any],
                  interfaces_m: np.ndarray, names: list[str], now: time.struct_time
                  ) -> dict[str, Any]:
    """The I/O API global attributes of the day starting at ``start``."""
    return {
        "IOAPI_VERSION": _pad("ioapi-3.2 (written by Tongyuan)", 80),
        "EXEC_ID": _pad(str(meta.attrs.get("tongyuan_build_id", "tongyuan")), 80),
        "FTYPE": np.int32(1),
        "CDATE": np.int32(now.tm_year * 1000 + now.tm_yday),
        "CTIME": np.int32(now.tm_hour * 10000 + now.tm_min * 100 + now.tm_sec),
        "WDATE": np.int32(now.tm_year * 1000 + now.tm_yday),
        "WTIME": np.int32(now.tm_hour * 10000 + now.tm_min * 100 + now.tm_sec),
        "SDATE": np.int32(_yyyyddd(start)), "STIME": np.int32(0), "TSTEP": np.int32(10000),
        "NTHIK": np.int32(horiz["NTHIK"]), "NCOLS": np.int32(horiz["NCOLS"]),
        "NROWS": np.int32(horiz["NROWS"]), "NLAYS": np.int32(len(interfaces_m) - 1),
        "NVARS": np.int32(len(names)), "GDTYP": np.int32(horiz["GDTYP"]),
        **{k: np.float64(horiz[k]) for k in ("P_ALP", "P_BET", "P_GAM", "XCENT", "YCENT",
                                             "XORIG", "YORIG", "XCELL", "YCELL")},
        **_vertical(meta, interfaces_m),
        "GDNAM": _pad(meta.gdnam or meta.grid.name, 16),
        "UPNAM": _pad("TONGYUAN", 16),
        "VAR-LIST": "".join(_pad(n, 16) for n in names),
        "FILEDESC": _pad(f"Tongyuan model-ready emissions, {meta.mechanism}, "
                         f"{start:%Y-%m-%d} UTC, gases moles/s and aerosols g/s per cell; "
                         f"build {meta.attrs.get('tongyuan_build_id', '')}", 80 * 60),
        "HISTORY": _pad(str(meta.attrs.get("history", "")), 80),
    }
