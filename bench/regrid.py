"""Benchmark: Tongyuan's exact conservative regridding (grids/regrid.py) against CDO remapcon.

The same seeded source field (lognormal masses per cell, some cells zero, as a gridded
inventory) at 0.1° and 0.25° over East China (110–125°E, 25–40°N, lon/lat WGS 84) is regridded
onto

* the shipped 3 km Lambert domain (config/GRIDDESC, SH3KM, LCC on the 6 370 km sphere),
* the 1 km UTM grid of the Shanghai demo (EPSG:32651, 130 × 138),
* a 0.05° lon/lat grid over Shanghai (the like-for-like case: both grids lon/lat),

with Tongyuan (in this process: the matrix built from nothing, then applied; the time of a
repeat regrid with the cached matrix is shown too) and with ``cdo remapcon`` (a subprocess per
case, one thread, weights computed each run as Tongyuan's cold run does). CDO regrids densities:
it is given mass / its own (spherical) source cell area and its output density is multiplied by
its own target cell area (``cdo gridarea``), so both sides compare masses per target cell. The
Lambert and UTM targets are given to CDO as curvilinear grids with their cell corners in lon/lat.

Per case: seconds of both, max |Δcell| / max cell, and the mass balance of Tongyuan (Σ regridded
+ outside = Σ source, 1e-12). Differences that remain: CDO measures areas on a sphere and joins
cell corners by great circles; Tongyuan integrates on the WGS 84 ellipsoid and follows the
target's straight projected edges (densified). Ends with::

    RESULT tongyuan_s=… cdo_s=… ratio=… max_rel_diff=… peak_rss_mb=…

``tongyuan_s``/``cdo_s`` sum the cases (cold), ``ratio`` = cdo_s / tongyuan_s, ``max_rel_diff``
is the largest over the cases, ``peak_rss_mb`` the peak RSS of this (Tongyuan) process.

Usage (repository root, project venv; needs ``cdo`` on PATH, Debian package ``cdo``)::

    .venv/bin/python bench/regrid.py
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyproj
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grids.grid import Grid, read_griddesc  # noqa: E402
from grids.regrid import regrid_matrix  # noqa: E402

LL = pyproj.CRS.from_epsg(4326)
#: CDO's sphere (its default earth radius): Tongyuan on it shows what the ellipsoid accounts for
SPHERE = pyproj.CRS.from_proj4("+proj=longlat +R=6371000 +no_defs")


def source_grid(res: float) -> Grid:
    n = int(round(15 / res))
    return Grid(crs=LL, x0=110.0, y0=25.0, dx=res, dy=res, nx=n, ny=n, name=f"EC{res}")


def targets() -> list[Grid]:
    lam = Grid(**read_griddesc(ROOT / "config" / "GRIDDESC", "SH3KM"))
    utm = Grid(crs=pyproj.CRS.from_epsg(32651), x0=295_000, y0=3_392_000, dx=1000, dy=1000,
               nx=130, ny=138, name="SH1KM")
    ll = Grid(crs=LL, x0=120.8, y0=30.6, dx=0.05, dy=0.05, nx=34, ny=32, name="SH005")
    return [lam, utm, ll]


def field(src: Grid, seed: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.lognormal(3.0, 1.5, src.shape)
    m[rng.random(src.shape) < 0.1] = 0.0
    return m


def write_source(path: Path, src: Grid, mass: np.ndarray, area: np.ndarray) -> None:
    lon, lat = src.x, src.y
    ds = xr.Dataset({"e": (("lat", "lon"), mass / area, {"units": "kg m-2"})},
                    coords={"lat": ("lat", lat, {"units": "degrees_north",
                                                 "standard_name": "latitude"}),
                            "lon": ("lon", lon, {"units": "degrees_east",
                                                 "standard_name": "longitude"})})
    ds.to_netcdf(path)


def write_target(path: Path, tgt: Grid) -> None:
    """The target as CDO reads it: lon/lat centres and corners (curvilinear unless lon/lat)."""
    if tgt.is_geographic:
        ds = xr.Dataset({"d": (("lat", "lon"), np.zeros(tgt.shape))},
                        coords={"lat": ("lat", tgt.y, {"units": "degrees_north"}),
                                "lon": ("lon", tgt.x, {"units": "degrees_east"})})
        ds.to_netcdf(path)
        return
    tr = pyproj.Transformer.from_crs(tgt.crs, tgt.crs.geodetic_crs, always_xy=True)
    lon, lat = tgt.lonlat()
    xe = tgt.x0 + np.arange(tgt.nx + 1) * tgt.dx
    ye = tgt.y0 + np.arange(tgt.ny + 1) * tgt.dy
    ex, ey = np.meshgrid(xe, ye)
    clon, clat = (np.asarray(a) for a in tr.transform(ex, ey))
    corners = [(0, 0), (0, 1), (1, 1), (1, 0)]  # counter-clockwise from the lower left
    blon = np.stack([clon[j:j + tgt.ny, i:i + tgt.nx] for j, i in corners], axis=-1)
    blat = np.stack([clat[j:j + tgt.ny, i:i + tgt.nx] for j, i in corners], axis=-1)
    ds = xr.Dataset({"d": (("y", "x"), np.zeros(tgt.shape), {"coordinates": "lat lon"}),
                     "lon_bnds": (("y", "x", "nv"), blon), "lat_bnds": (("y", "x", "nv"), blat)},
                    coords={"lon": (("y", "x"), lon, {"units": "degrees_east",
                                                      "bounds": "lon_bnds"}),
                            "lat": (("y", "x"), lat, {"units": "degrees_north",
                                                      "bounds": "lat_bnds"})})
    ds.to_netcdf(path)


def cdo_area(path: Path, out: Path) -> np.ndarray:
    subprocess.run(["cdo", "-s", "gridarea", str(path), str(out)], check=True,
                   capture_output=True)
    with xr.open_dataset(out) as ds:
        return ds["cell_area"].to_numpy()


def run_case(src: Grid, tgt: Grid, work: Path) -> dict[str, float]:
    mass = field(src)
    s_nc, t_nc = work / f"{src.name}.nc", work / f"{tgt.name}.nc"
    if not s_nc.exists():
        # CDO's spherical source areas (its densities must be mass over its own areas)
        write_target(work / f"{src.name}_tmpl.nc", src)
        write_source(s_nc, src, mass, cdo_area(work / f"{src.name}_tmpl.nc",
                                               work / f"{src.name}_area.nc"))
    write_target(t_nc, tgt)
    t_area = cdo_area(t_nc, work / f"{tgt.name}_area.nc")
    t0 = time.perf_counter()
    reg = regrid_matrix(src, tgt)
    out, beyond = reg.apply(mass)
    ty = time.perf_counter() - t0
    t1 = time.perf_counter()
    reg.apply(mass)
    warm = time.perf_counter() - t1
    balance = abs(out.sum() + beyond - mass.sum()) / mass.sum()
    out_nc = work / f"out_{src.name}_{tgt.name}.nc"
    t2 = time.perf_counter()
    subprocess.run(["cdo", "-s", "-P", "1", f"remapcon,{t_nc}", str(s_nc), str(out_nc)],
                   check=True, capture_output=True)
    tc = time.perf_counter() - t2
    with xr.open_dataset(out_nc) as ds:
        dens = np.nan_to_num(ds["e"].to_numpy().reshape(tgt.shape))
    cdo_mass = dens * t_area.reshape(tgt.shape)
    # compare where the target lies wholly inside the source (CDO leaves partial cells alone)
    rel = float(np.abs(out - cdo_mass).max() / out.max())
    rel_sphere = float("nan")
    if tgt.is_geographic:  # the same on CDO's sphere: what remains is CDO's own arithmetic
        on = {k: getattr(src, k) for k in ("x0", "y0", "dx", "dy", "nx", "ny")}
        ts = {k: getattr(tgt, k) for k in ("x0", "y0", "dx", "dy", "nx", "ny")}
        o2, _ = regrid_matrix(Grid(crs=SPHERE, **on), Grid(crs=SPHERE, **ts)).apply(mass)
        rel_sphere = float(np.abs(o2 - cdo_mass).max() / o2.max())
    return {"tongyuan_s": ty, "warm_s": warm, "cdo_s": tc, "rel": rel, "balance": balance,
            "rel_sphere": rel_sphere}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    if shutil.which("cdo") is None:
        sys.exit("cdo is not installed (Debian: apt-get install -y cdo)")
    ver = subprocess.run(["cdo", "--version"], capture_output=True, text=True)
    print((ver.stdout or ver.stderr).splitlines()[0])
    tot_t = tot_c = 0.0
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"{'source':>8} {'target':>7} {'cells':>7} {'tongyuan_s':>10} {'warm_s':>8} "
              f"{'cdo_s':>7} {'max|Δ|/max':>11} {'on sphere':>10} {'balance':>9}")
        for res in (0.1, 0.25):
            src = source_grid(res)
            for tgt in targets():
                r = run_case(src, tgt, work)
                tot_t += r["tongyuan_s"]
                tot_c += r["cdo_s"]
                worst = max(worst, r["rel"])
                print(f"{src.name:>8} {tgt.name:>7} {tgt.size:>7} {r['tongyuan_s']:>10.3f} "
                      f"{r['warm_s']:>8.4f} {r['cdo_s']:>7.3f} {r['rel']:>11.2e} "
                      f"{r['rel_sphere']:>10.2e} {r['balance']:>9.1e}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT tongyuan_s={tot_t:.3f} cdo_s={tot_c:.3f} ratio={tot_c / tot_t:.2f} "
          f"max_rel_diff={worst:.2e} peak_rss_mb={rss:.0f}")


if __name__ == "__main__":
    main()
