"""The shared grid every source is allocated onto.

Cells are indexed ``(iy, ix)`` with ``iy = 0`` the southernmost row (y ascending, as written to
NetCDF); the flat cell index is ``iy * nx + ix``. Cell ``(iy, ix)`` covers the half-open box
``[x0 + ix·dx, x0 + (ix+1)·dx) × [y0 + iy·dy, y0 + (iy+1)·dy)`` in grid-CRS metres.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import netCDF4
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
        """Build from a mapping or object with crs, x0, y0, dx, dy, nx, ny (and name), or with
        ``griddesc`` and ``name`` (a GRIDDESC grid), or with ``wrf`` (the mass grid of a WRF
        ``wrfinput_d0N``/``geo_em.d0N.nc``, :func:`read_wrf_domain`; ``name`` optional)."""
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        if get("wrf"):  # the mass grid of a WRF domain (wrfinput_d0N or geo_em.d0N.nc)
            grid = read_wrf_domain(get("wrf")).grid
            return replace(grid, name=str(get("name"))) if get("name") else grid
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

    def cell_polygons(self, rows: slice = slice(None)) -> np.ndarray:
        """Shapely boxes of all cells in flat-index order (length ny*nx), or of the cells of
        ``rows`` (in the same order: flat index ``rows.start·nx`` first)."""
        xs = self.x0 + np.arange(self.nx) * self.dx
        ys = self.y0 + np.arange(self.ny)[rows] * self.dy
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


#: global attributes of a WRF domain file that WRF re-reads from every input stream (projection,
#: land use) or that describe the domain (nest): copied into every ``wrfchemi`` built for it.
#: Not GMT/JULYR/JULDAY/START_DATE: WRF would reset its clock from them at every read
#: (``share/input_wrf.F:572-587``).
WRF_DOMAIN_ATTRIBUTES = (
    "DX", "DY", "MAP_PROJ", "TRUELAT1", "TRUELAT2", "STAND_LON", "CEN_LAT", "CEN_LON",
    "MOAD_CEN_LAT", "POLE_LAT", "POLE_LON", "MMINLU", "NUM_LAND_CAT", "ISWATER", "ISLAKE",
    "ISICE", "ISURBAN", "ISOILWATER", "GRID_ID", "PARENT_ID", "I_PARENT_START",
    "J_PARENT_START", "PARENT_GRID_RATIO")
#: WRF MAP_PROJ codes (``share/output_wrf.F:943-955``)
WRF_MAP_PROJ = {1: "Lambert Conformal", 2: "Polar Stereographic", 3: "Mercator",
                6: "Cylindrical Equidistant"}
#: how far a cell centre of the file may lie from the regular grid its projection attributes
#: define, as a share of the cell size (XLAT/XLONG are float32: ~0.2 m)
CENTRE_TOLERANCE = 0.01


def wrf_crs(map_proj: int, truelat1: float, truelat2: float, stand_lon: float,
            moad_cen_lat: float, where: str = "WRF domain") -> pyproj.CRS:
    """The CRS of a WRF domain (WRF/WPS sphere of 6 370 km, ``share/module_llxy.F:152``):
    MAP_PROJ 1 Lambert conformal (true latitudes, STAND_LON; origin at MOAD_CEN_LAT), 2 polar
    stereographic (true at TRUELAT1), 3 Mercator (true at TRUELAT1). Lat-lon domains (6) are
    refused."""
    r = f"+R={MODEL_EARTH_RADIUS_M:.0f} +units=m +no_defs"
    if map_proj == 1:
        return pyproj.CRS.from_proj4(f"+proj=lcc +lat_1={truelat1} +lat_2={truelat2} "
                                     f"+lat_0={moad_cen_lat} +lon_0={stand_lon} {r}")
    if map_proj == 2:
        pole = 90 if truelat1 >= 0 else -90
        return pyproj.CRS.from_proj4(f"+proj=stere +lat_0={pole} +lat_ts={truelat1} "
                                     f"+lon_0={stand_lon} {r}")
    if map_proj == 3:
        return pyproj.CRS.from_proj4(f"+proj=merc +lat_ts={truelat1} +lon_0={stand_lon} {r}")
    raise ConfigError(f"{where}: MAP_PROJ {map_proj} "
                      f"({WRF_MAP_PROJ.get(map_proj, 'unknown')}) is not supported; Tongyuan "
                      "reads Lambert conformal (1), polar stereographic (2) and Mercator (3) "
                      "WRF domains")


@dataclass(frozen=True, eq=False)
class WrfDomain:
    """A WRF domain as its ``wrfinput_d0N`` (real.exe) or ``geo_em.d0N.nc`` (geogrid) file
    describes it: the mass grid, its cell-centre lon/lat and map factors, and the global
    attributes a ``wrfchemi`` for it must carry (:data:`WRF_DOMAIN_ATTRIBUTES`).

    The mass grid is (WEST-EAST_GRID_DIMENSION − 1) × (SOUTH-NORTH_GRID_DIMENSION − 1) cells
    (``share/output_wrf.F:456-460``); its origin is fitted to the file's XLAT/XLONG (geo_em:
    XLAT_M/XLONG_M) on the projection of MAP_PROJ, TRUELAT1/2, STAND_LON, and every cell centre
    must lie within :data:`CENTRE_TOLERANCE` of a cell of that grid.
    """

    path: Path
    #: ``wrfinput`` or ``geo_em``
    kind: str
    grid: Grid
    #: cell-centre latitude and longitude [degrees], (ny, nx), as in the file
    lat: np.ndarray
    lon: np.ndarray
    #: map factors at mass points in x and y (MAPFAC_MX, MAPFAC_MY; MAPFAC_M where absent)
    mapfac_x: np.ndarray
    mapfac_y: np.ndarray
    #: the global attributes to copy, name → value as stored (numpy scalar or str)
    attrs: dict[str, Any]

    @property
    def grid_id(self) -> int:
        return int(self.attrs.get("GRID_ID", 1))

    @property
    def true_cell_area_m2(self) -> np.ndarray:
        """Physical area of each mass cell [m²], (ny, nx): DX·DY / (MAPFAC_MX · MAPFAC_MY).

        WRF's physical distance is dx/m ("1/dX = mx/dx", ``dyn_em/module_bc_em.F:1233-1238``;
        MAPFAC_MX = MAPFAC_MY = MAPFAC_M on regular domains, WPS
        ``geogrid/src/process_tile_module.F:349-358``), and WRF-Chem adds a flux per unit
        physical area (no map factor in ``chem/module_emissions_anthropogenics.F:86-88``).
        """
        return self.grid.dx * self.grid.dy / (self.mapfac_x * self.mapfac_y)

    def check_grid(self, grid: Grid, what: str = "the wrfchemi files") -> None:
        """Refuse ``grid`` unless it is this domain's mass grid: same dims, projection, DX/DY
        and cell centres within :data:`CENTRE_TOLERANCE` of a cell."""
        where = f"{what} on grid {grid.name!r} for {self.path}"
        d = self.grid
        if (grid.nx, grid.ny) != (d.nx, d.ny):
            raise ConfigError(
                f"{where}: the grid has {grid.nx} × {grid.ny} cells but the WRF mass grid is "
                f"{d.nx} × {d.ny} (WEST-EAST_GRID_DIMENSION {d.nx + 1} − 1, "
                f"SOUTH-NORTH_GRID_DIMENSION {d.ny + 1} − 1); WRF would read every field as "
                "zero (smaller) or misplace it (larger). An MCIP GRIDDESC is 2·(BTRIM+1) cells "
                f"smaller than the WRF grid: build the WRF-Chem files with grid: {{wrf: "
                f"{self.path.name}}}")
        if grid.is_geographic or abs(grid.dx - d.dx) > 1e-6 * d.dx \
                or abs(grid.dy - d.dy) > 1e-6 * d.dy:
            raise ConfigError(f"{where}: cells of {grid.dx} × {grid.dy} {grid.units} but the "
                              f"WRF domain has DX = {d.dx} m, DY = {d.dy} m")
        proj = self.attrs
        cf = grid.crs.to_cf()
        want = {1: "lambert_conformal_conic", 2: "polar_stereographic",
                3: "mercator"}[int(proj["MAP_PROJ"])]
        same = cf.get("grid_mapping_name") == want
        if same and want == "lambert_conformal_conic":
            sp = sorted(np.atleast_1d(cf["standard_parallel"]).astype(float).tolist())
            sp = sp * 2 if len(sp) == 1 else sp
            same = (np.allclose(sp, sorted([float(proj["TRUELAT1"]), float(proj["TRUELAT2"])]),
                                atol=1e-4)
                    and abs(float(cf["longitude_of_central_meridian"])
                            - float(proj["STAND_LON"])) < 1e-4)
        if not same:
            raise ConfigError(
                f"{where}: the grid's projection ({grid.crs.to_string()}) is not the WRF "
                f"domain's (MAP_PROJ {int(proj['MAP_PROJ'])} "
                f"{WRF_MAP_PROJ.get(int(proj['MAP_PROJ']), '')}, TRUELAT1 "
                f"{float(proj['TRUELAT1'])}, TRUELAT2 {float(proj['TRUELAT2'])}, STAND_LON "
                f"{float(proj['STAND_LON'])})")
        x, y = pyproj.Transformer.from_crs(grid.crs.geodetic_crs, grid.crs, always_xy=True
                                           ).transform(self.lon.astype(float),
                                                       self.lat.astype(float))
        xx, yy = np.meshgrid(grid.x, grid.y)
        off = np.hypot(np.asarray(x) - xx, np.asarray(y) - yy)
        worst = np.unravel_index(int(np.argmax(off)), off.shape)
        if off[worst] > CENTRE_TOLERANCE * min(d.dx, d.dy):
            j, i = (int(v) for v in worst)
            raise ConfigError(
                f"{where}: cell (south_north {j}, west_east {i}) of the grid is centred "
                f"{off[worst]:,.1f} m from the WRF cell centre ({float(self.lat[j, i]):.5f}°N, "
                f"{float(self.lon[j, i]):.5f}°E); allowed {CENTRE_TOLERANCE:.0%} of a cell. "
                f"The grid is not the WRF domain: build with grid: {{wrf: {self.path.name}}}")


def _nc_attr(nc: Any, name: str) -> Any:
    """A global attribute by name, case-insensitively (geo_em writes grid_id, wrfinput GRID_ID)."""
    for key in nc.ncattrs():
        if key.upper() == name.upper():
            return nc.getncattr(key)
    return None


def open_model_file(path: str | Path, what: str) -> netCDF4.Dataset:
    """A model's own NetCDF file (wrfinput, geo_em, METCRO3D) opened for reading, or a
    :class:`ConfigError` naming the file and ``what`` it was meant to be."""
    try:
        return netCDF4.Dataset(path)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"{path}: cannot open {what} ({exc})") from exc


def read_wrf_domain(path: str | Path) -> WrfDomain:
    """The WRF domain of a ``wrfinput_d0N`` or ``geo_em.d0N.nc`` file (see :class:`WrfDomain`).

    wrfinput: XLAT, XLONG, MAPFAC_M/MX/MY (``Registry/Registry.EM_COMMON:52-53, 1391-1395``);
    geo_em: XLAT_M, XLONG_M, MAPFAC_M/MX/MY (WPS ``geogrid/src/process_tile_module.F:311-358``);
    both (Time, south_north, west_east), the first time is used. Global attributes as written by
    ``share/output_wrf.F:456-467, 888-973`` and ``geogrid/src/output_module.F:1349-1392``.
    """
    path = Path(path)
    with open_model_file(path, "the WRF domain file") as nc:
        names = set(nc.variables)
        if {"XLAT_M", "XLONG_M"} <= names:
            kind, lat_name, lon_name = "geo_em", "XLAT_M", "XLONG_M"
        elif {"XLAT", "XLONG"} <= names:
            kind, lat_name, lon_name = "wrfinput", "XLAT", "XLONG"
        else:
            raise ConfigError(f"{path}: not a wrfinput (XLAT, XLONG) or geo_em (XLAT_M, "
                              "XLONG_M) file: it has neither pair of variables")
        need = ("WEST-EAST_GRID_DIMENSION", "SOUTH-NORTH_GRID_DIMENSION", "DX", "DY",
                "MAP_PROJ", "TRUELAT1", "TRUELAT2", "STAND_LON", "CEN_LAT", "CEN_LON")
        missing = [a for a in need if _nc_attr(nc, a) is None]
        if missing:
            raise ConfigError(f"{path}: global attributes {missing} are missing; a {kind} file "
                              "written by WRF/WPS has them")
        attrs = {a: _nc_attr(nc, a) for a in WRF_DOMAIN_ATTRIBUTES
                 if _nc_attr(nc, a) is not None}
        attrs.setdefault("MOAD_CEN_LAT", attrs["CEN_LAT"])
        nx = int(_nc_attr(nc, "WEST-EAST_GRID_DIMENSION")) - 1
        ny = int(_nc_attr(nc, "SOUTH-NORTH_GRID_DIMENSION")) - 1
        bt = _nc_attr(nc, "BOTTOM-TOP_GRID_DIMENSION")
        if kind == "wrfinput" and bt is not None:
            attrs["BOTTOM-TOP_GRID_DIMENSION"] = bt

        def field(name: str) -> np.ndarray:
            v = nc.variables[name]
            arr = np.asarray(v[0] if v.ndim == 3 else v[:], dtype=np.float64)
            if arr.shape != (ny, nx):
                raise ConfigError(f"{path}: {name} is {arr.shape[0]} × {arr.shape[1]} "
                                  f"(south_north × west_east) but the global attributes give a "
                                  f"mass grid of {ny} × {nx}")
            return arr

        lat, lon = field(lat_name), field(lon_name)
        if "MAPFAC_M" not in names:
            raise ConfigError(f"{path}: no MAPFAC_M (map factor on mass points); a {kind} "
                              "file written by WRF/WPS has it")
        m = field("MAPFAC_M")
        mx = field("MAPFAC_MX") if "MAPFAC_MX" in names else m
        my = field("MAPFAC_MY") if "MAPFAC_MY" in names else m
    map_proj = int(attrs["MAP_PROJ"])
    crs = wrf_crs(map_proj, float(attrs["TRUELAT1"]), float(attrs["TRUELAT2"]),
                  float(attrs["STAND_LON"]), float(attrs["MOAD_CEN_LAT"]), where=str(path))
    dx, dy = float(attrs["DX"]), float(attrs["DY"])
    x, y = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True).transform(lon, lat)
    x0 = float(np.mean(np.asarray(x) - (np.arange(nx)[None, :] + 0.5) * dx))
    y0 = float(np.mean(np.asarray(y) - (np.arange(ny)[:, None] + 0.5) * dy))
    gid = int(attrs.get("GRID_ID", 1))
    grid = Grid(crs, x0, y0, dx, dy, nx, ny, name=f"WRF_D{gid:02d}")
    domain = WrfDomain(path, kind, grid, lat, lon, mx, my, attrs)
    try:
        domain.check_grid(grid, what=f"{lat_name}/{lon_name}")
    except ConfigError as exc:
        raise ConfigError(f"{path}: its cell centres are not a regular {dx:g} × {dy:g} m grid "
                          f"on its own projection attributes ({exc})") from exc
    return domain
