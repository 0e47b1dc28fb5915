"""The shared grid every source is allocated onto.

Cells are indexed ``(iy, ix)`` with ``iy = 0`` the southernmost row (y ascending, as written to
NetCDF); the flat cell index is ``iy * nx + ix``. Cell ``(iy, ix)`` covers the half-open box
``[x0 + ix·dx, x0 + (ix+1)·dx) × [y0 + iy·dy, y0 + (iy+1)·dy)`` in grid-CRS metres.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely
from affine import Affine

from sources.errors import ConfigError

#: the sphere WRF and CMAQ (MCIP, I/O API) assume for their map projections [m]
MODEL_EARTH_RADIUS_M = 6_370_000.0

#: the least memory one grid cell costs a build [bytes]: one UTC day of hourly fields of the 12
#: primary species and CO2e in float64 (8 × 24 × 13)
BYTES_PER_CELL = 8 * 24 * 13


def memory_bytes() -> int:
    """Physical memory of this machine [bytes] (64 GiB if the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 64 << 30


def griddesc_crs(gdtyp: int, p_alp: float, p_bet: float, p_gam: float, xcent: float,
                 ycent: float, where: str = "GRIDDESC") -> pyproj.CRS:
    """The CRS of an I/O API (CMAQ) horizontal coordinate system.

    GDTYP 1 is longitude/latitude in degrees; GDTYP 2 is Lambert conformal conic with true
    latitudes ``P_ALP``, ``P_BET``, central meridian ``P_GAM`` and the Cartesian origin at
    (``XCENT``, ``YCENT``); both on the 6 370 km sphere of WRF/MCIP. Other types are refused
    with a clear message.
    """
    if int(gdtyp) == 1:
        return pyproj.CRS.from_proj4(f"+proj=longlat +R={MODEL_EARTH_RADIUS_M:.0f} +no_defs")
    if int(gdtyp) != 2:
        raise ConfigError(f"{where}: GDTYP {gdtyp} is not supported; Tongyuan reads lat/lon "
                          "(GDTYP 1) and Lambert conformal (GDTYP 2) grids; polar stereographic "
                          "(6) and Mercator (7) grids are not supported in this release")
    base = (f"+proj=lcc +lat_1={p_alp} +lat_2={p_bet} +lat_0={ycent} +lon_0={p_gam} "
            f"+R={MODEL_EARTH_RADIUS_M:.0f} +units=m +no_defs")
    crs = pyproj.CRS.from_proj4(base + " +x_0=0 +y_0=0")
    if abs(float(xcent) - float(p_gam)) > 1e-9:  # origin off the central meridian
        x, y = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True).transform(
            float(xcent), float(ycent))
        crs = pyproj.CRS.from_proj4(base + f" +x_0={-x!r} +y_0={-y!r}")
    return crs


_TOKEN = re.compile(r"'([^']*)'|([^\s,']+)")


def read_griddesc(path: str | Path, grid_name: str) -> dict[str, Any]:
    """Grid ``grid_name`` of an I/O API GRIDDESC file as Grid arguments (crs, x0, ..., name).

    The file has a header line, then two segments, each ended by a blank name ``' '``:
    coordinate systems (a name line, then GDTYP P_ALP P_BET P_GAM XCENT YCENT) and grids (a name
    line, then COORD-NAME XORIG YORIG XCELL YCELL NCOLS NROWS NTHIK).
    """
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read GRIDDESC ({exc.strerror})") from exc

    def tokens(line: str) -> list[str]:
        return [a if a != "" or b == "" else b for a, b in _TOKEN.findall(line)]

    coords: dict[str, list[str]] = {}
    grids: dict[str, list[str]] = {}
    segment, i = coords, 1  # line 1 is the (ignored) header
    while i < len(lines):
        name = tokens(lines[i])
        name = name[0].strip() if name else ""
        if name == "":
            if segment is grids:
                break
            segment, i = grids, i + 1
            continue
        if i + 1 >= len(lines):
            raise ConfigError(f"{path}, line {i + 1}: {name!r} has no parameter line")
        segment[name] = tokens(lines[i + 1])
        i += 2
    if grid_name not in grids:
        raise ConfigError(f"{path}: no grid {grid_name!r}; grids in the file: {sorted(grids)}")
    g = grids[grid_name]
    try:
        coord = g[0]
        xorig, yorig, xcell, ycell = (float(v) for v in g[1:5])
        ncols, nrows = int(float(g[5])), int(float(g[6]))
        if coord not in coords:
            raise ConfigError(f"{path}: grid {grid_name!r} uses coordinate system {coord!r}, "
                              f"which the file does not define ({sorted(coords)})")
        gdtyp, p_alp, p_bet, p_gam, xcent, ycent = (float(v) for v in coords[coord][:6])
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"{path}: grid {grid_name!r}: cannot read its parameters ({exc}); "
                          "expected 'COORD' XORIG YORIG XCELL YCELL NCOLS NROWS NTHIK and "
                          "GDTYP P_ALP P_BET P_GAM XCENT YCENT") from exc
    crs = griddesc_crs(int(gdtyp), p_alp, p_bet, p_gam, xcent, ycent,
                       where=f"{path}: coordinate system {coord!r}")
    return {"crs": crs, "x0": xorig, "y0": yorig, "dx": xcell, "dy": ycell, "nx": ncols,
            "ny": nrows, "name": grid_name}


def ellipsoid_area_from_equator(crs: pyproj.CRS, lat_deg: np.ndarray) -> np.ndarray:
    """Area between the equator and latitude φ per radian of longitude [m²], on ``crs``'s
    ellipsoid: ``a²(1−e²)/2 · [sin φ/(1−e² sin² φ) + artanh(e sin φ)/e]`` (the authalic
    integral; a² sin φ on a sphere)."""
    ell = crs.ellipsoid
    a = ell.semi_major_metre
    e2 = 1.0 - (ell.semi_minor_metre / a) ** 2
    s = np.sin(np.radians(np.asarray(lat_deg, dtype=float)))
    if e2 < 1e-15:
        return a * a * s
    e = np.sqrt(e2)
    return 0.5 * a * a * (1 - e2) * (s / (1 - e2 * s * s) + np.arctanh(e * s) / e)


def metres_per_square_degree(crs: pyproj.CRS, lat_deg: np.ndarray) -> np.ndarray:
    """m² per degree² of longitude × latitude at latitude φ on ``crs``'s ellipsoid:
    (π/180)² · M(φ) N(φ) cos φ = (π/180)² · a²(1−e²) cos φ / (1−e² sin² φ)²."""
    ell = crs.ellipsoid
    a = ell.semi_major_metre
    e2 = 1.0 - (ell.semi_minor_metre / a) ** 2
    phi = np.radians(np.asarray(lat_deg, dtype=float))
    s = np.sin(phi)
    return np.radians(1.0) ** 2 * a * a * (1 - e2) * np.cos(phi) / (1 - e2 * s * s) ** 2


@dataclass(frozen=True)
class Grid:
    """A regular grid in a projected CRS, or in longitude/latitude (EPSG:4326).

    Parameters
    ----------
    crs : grid CRS
    x0, y0 : lower-left corner [m, or degrees on a lon/lat grid]
    dx, dy : cell size [m, or degrees]
    nx, ny : number of columns and rows
    name : short name written to files
    """

    crs: pyproj.CRS
    x0: float
    y0: float
    dx: float
    dy: float
    nx: int
    ny: int
    name: str = "grid"

    def __post_init__(self) -> None:
        if not isinstance(self.crs, pyproj.CRS):
            object.__setattr__(self, "crs", pyproj.CRS.from_user_input(self.crs))
        if self.dx <= 0 or self.dy <= 0 or self.nx <= 0 or self.ny <= 0:
            raise ConfigError(f"grid {self.name!r}: dx, dy, nx, ny must be positive; got "
                              f"dx={self.dx}, dy={self.dy}, nx={self.nx}, ny={self.ny}")
        need, have = self.nx * self.ny * BYTES_PER_CELL, memory_bytes()
        if need > have:
            raise ConfigError(f"grid {self.name!r}: {self.nx} × {self.ny} = "
                              f"{self.nx * self.ny:.3g} cells need at least {need / 2**30:,.1f} "
                              f"GiB (one day of hourly fields, {BYTES_PER_CELL} bytes a cell), "
                              f"more than this machine's {have / 2**30:,.1f} GiB of memory; use "
                              "larger cells (dx, dy) or a smaller domain (nx, ny)")
        if not (self.crs.is_projected or self.is_geographic):
            raise ConfigError(f"grid {self.name!r}: CRS {self.crs.to_string()} is neither "
                              "projected (UTM, Lambert, ...) nor a 2-D geographic CRS in "
                              "degrees (EPSG:4326)")
        if self.is_geographic and not (-180 <= self.x0 and self.x0 + self.nx * self.dx <= 360
                                       and -90 <= self.y0 and self.y0 + self.ny * self.dy <= 90):
            raise ConfigError(f"grid {self.name!r}: a lon/lat grid must lie within longitudes "
                              f"-180..360 and latitudes -90..90 degrees; got x0={self.x0}, "
                              f"y0={self.y0}, dx={self.dx}, dy={self.dy}, nx={self.nx}, "
                              f"ny={self.ny}")

    @property
    def is_geographic(self) -> bool:
        """A lon/lat grid (x = longitude, y = latitude, in degrees)."""
        crs = self.crs
        return (crs.is_geographic and len(crs.axis_info) == 2
                and crs.axis_info[0].unit_name == "degree")

    @property
    def units(self) -> str:
        """Unit of x0, y0, dx, dy: ``m`` or ``degree``."""
        return "degree" if self.is_geographic else "m"

    @classmethod
    def from_config(cls, cfg: Any) -> Grid:
        """Build from a mapping or object with crs, x0, y0, dx, dy, nx, ny (and name)."""
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        if get("griddesc"):
            return cls(**read_griddesc(get("griddesc"), str(get("name"))))
        try:
            crs = pyproj.CRS.from_user_input(get("crs"))
        except pyproj.exceptions.CRSError as exc:
            raise ConfigError(f"grid: cannot understand crs {get('crs')!r} ({exc})") from exc
        return cls(crs=crs, x0=float(get("x0")), y0=float(get("y0")), dx=float(get("dx")),
                   dy=float(get("dy")), nx=int(get("nx")), ny=int(get("ny")),
                   name=str(get("name", "grid")))

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)"""
        return (self.ny, self.nx)

    @property
    def size(self) -> int:
        return self.nx * self.ny

    @property
    def transform(self) -> Affine:
        """Affine from (col, row) to (x, y) with row 0 the *southern* edge (y ascending)."""
        return Affine(self.dx, 0.0, self.x0, 0.0, self.dy, self.y0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) [m]"""
        return (self.x0, self.y0, self.x0 + self.nx * self.dx, self.y0 + self.ny * self.dy)

    @property
    def x(self) -> np.ndarray:
        """Cell-centre x [m], length nx."""
        return self.x0 + (np.arange(self.nx) + 0.5) * self.dx

    @property
    def y(self) -> np.ndarray:
        """Cell-centre y [m], length ny (ascending)."""
        return self.y0 + (np.arange(self.ny) + 0.5) * self.dy

    @property
    def cell_area_m2(self) -> np.ndarray:
        """Area of each cell [m²], shape (ny, nx): in the projected plane for projected grids, on
        the CRS's ellipsoid for lon/lat grids (exact: the band between two parallels).

        Fluxes are mass / this area, so ``flux × cell_area`` returns the mass exactly; the file
        carries it as the ``cell_area`` variable.
        """
        if not self.is_geographic:
            return np.full(self.shape, self.dx * self.dy)
        edges = self.y0 + np.arange(self.ny + 1) * self.dy
        band = np.diff(ellipsoid_area_from_equator(self.crs, edges))
        return np.repeat((np.radians(self.dx) * band)[:, None], self.nx, axis=1)

    @cached_property
    def domain(self) -> shapely.Polygon:
        return shapely.box(*self.bounds)

    def cell_polygons(self) -> np.ndarray:
        """Shapely boxes of all cells in flat-index order (length ny*nx)."""
        xs = self.x0 + np.arange(self.nx) * self.dx
        ys = self.y0 + np.arange(self.ny) * self.dy
        xx, yy = np.meshgrid(xs, ys)
        return shapely.box(xx.ravel(), yy.ravel(), xx.ravel() + self.dx, yy.ravel() + self.dy)

    def cell_index(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Flat cell index of points (half-open cells); -1 outside the domain."""
        ix = np.floor((np.asarray(x, dtype=float) - self.x0) / self.dx).astype(np.int64)
        iy = np.floor((np.asarray(y, dtype=float) - self.y0) / self.dy).astype(np.int64)
        inside = (ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny)
        return np.where(inside, iy * self.nx + ix, -1)

    def lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        """2-D longitude and latitude of cell centres [degrees], each (ny, nx)."""
        xx, yy = np.meshgrid(self.x, self.y)
        if self.is_geographic:
            return xx, yy
        tr = pyproj.Transformer.from_crs(self.crs, self.crs.geodetic_crs, always_xy=True)
        lon, lat = tr.transform(xx, yy)
        return np.asarray(lon), np.asarray(lat)

    def corner_lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude of the four corners of every cell [degrees], each
        (ny, nx, 4), in CF's order (§7.1): counter-clockwise seen from above, from the
        south-west corner (SW, SE, NE, NW of the cell in the grid's plane). The cell's edges
        are straight in the grid's plane: between two corners a projected cell edge is a curve
        in lon/lat, which the corner polygon approximates."""
        xs = self.x0 + np.arange(self.nx + 1) * self.dx
        ys = self.y0 + np.arange(self.ny + 1) * self.dy
        xx, yy = np.meshgrid(xs, ys)
        if not self.is_geographic:
            tr = pyproj.Transformer.from_crs(self.crs, self.crs.geodetic_crs, always_xy=True)
            xx, yy = (np.asarray(a) for a in tr.transform(xx, yy))

        def corners(a: np.ndarray) -> np.ndarray:
            return np.stack([a[:-1, :-1], a[:-1, 1:], a[1:, 1:], a[1:, :-1]], axis=-1)

        return corners(xx), corners(yy)

    def cf_grid_mapping(self) -> dict[str, Any]:
        """CF grid-mapping attributes (pyproj ``to_cf``) plus ``crs_wkt`` and ``spatial_ref``."""
        attrs = {k: v for k, v in self.crs.to_cf().items() if v is not None}
        wkt = self.crs.to_wkt()
        attrs["crs_wkt"] = wkt
        attrs["spatial_ref"] = wkt
        return attrs

    def describe(self) -> dict[str, Any]:
        """Plain description for hashing and file attributes."""
        return {"crs": self.crs.to_string(), "x0": self.x0, "y0": self.y0, "dx": self.dx,
                "dy": self.dy, "nx": self.nx, "ny": self.ny, "name": self.name,
                "units": self.units}
