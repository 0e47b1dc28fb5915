"""Benchmark: Tongyuan's spatial allocation against emiproc 2.10 and a plain shapely 2 baseline.

Generates (seeded) a Shanghai-sized synthetic problem at scale ×N on the default grid
(EPSG:32651, 1 km, x0 295000, y0 3392000, 130 × 138 cells): 5 000·N point sources, 50 000·N
road segments of 100 m–2 km (2–6 vertices), 200·N irregular (star-shaped, 12–60 vertices)
polygons, and a 500 m proxy raster (GeoTIFF, grid CRS, offset from the cell edges, 10 km beyond
the domain, ~15 % zero pixels) plus a uniform raster of the same geometry. Some sources lie
partly or wholly beyond the grid. Every source carries a random emission ``E`` (kg).

The inputs are written to a temporary directory (GeoPackage layers ``points``, ``lines``,
``areas``; ``grid.json``; the GeoTIFFs) and each method runs in its own subprocess, which reads
them (not timed), times ``--repeat`` runs and reports median seconds and its peak RSS:

* **tongyuan** (this interpreter): ``grids.allocate.allocate`` on one GeoDataFrame with
  ``source_id, kind, proxy, geometry`` and a fresh ``grids.proxy.Proxy`` per run (raster read
  and pixel polygons included), then the gridded field ``A @ E``. Timed twice: with the real
  proxy (headline) and with the uniform proxy (= area weights, emiproc's semantics).
* **shapely** (this interpreter, no Tongyuan code): STRtree + vectorised
  ``shapely.intersection`` of sources with cell boxes (and, for polygons, with proxy pixels).
* **emiproc** (a separate venv with ``emiproc==2.10.0``, see ``bench/emiproc-requirements.txt``):
  ``Inventory.from_gdf(gdfs={"points": …, "lines": …, "areas": …})`` and
  ``emiproc.regrid.remap_inventory`` onto ``emiproc.grids.RegularGrid``.

emiproc has no proxy rasters: it spreads a polygon by area. So the fields are compared where the
semantics agree: points, lines, and polygons by area (Tongyuan with the uniform proxy) against
emiproc; the full field with the real proxy against the shapely baseline. Each comparison
reports max cell |difference| / max cell value (must be ≤ 1e-9) and the relative difference of
totals (≤ 1e-12); Tongyuan's own balance ``gridded + outside = read`` is checked to 1e-12 too.
Ends with one line per scale::

    RESULT scale=N tongyuan_s=… emiproc_s=… ratio=… ratio_vs_shapely=… max_rel_diff=… peak_rss_mb=…

``ratio`` is emiproc_s / tongyuan_s, ``ratio_vs_shapely`` shapely_s / tongyuan_s, both with the
real proxy on Tongyuan's side; ``peak_rss_mb`` is the Tongyuan subprocess's peak.

Usage (from the repository root, project venv)::

    .venv/bin/python bench/allocation.py --scale 1 --repeat 3
    .venv/bin/python bench/allocation.py --scale 1 4 16 --repeat 1   # scaling table

The emiproc venv is taken from ``--emiproc-python`` / ``$EMIPROC_PYTHON`` or
``/tmp/emiproc-venv/bin/python``; ``--setup-emiproc`` creates it there if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()
REQUIREMENTS = REPO / "bench" / "emiproc-requirements.txt"
DEFAULT_EMIPROC_VENV = Path("/tmp/emiproc-venv")

GRID = {"crs": "EPSG:32651", "x0": 295000.0, "y0": 3392000.0, "dx": 1000.0, "dy": 1000.0,
        "nx": 130, "ny": 138, "name": "shanghai_utm51n_1km"}
PROXY_RES = 500.0
PROXY_MARGIN = 10_000.0
PROXY_OFFSET = (137.0, 211.0)  # so pixel edges do not coincide with cell edges
CELL_TOL = 1e-9    # max cell |diff| / max cell value
TOTAL_TOL = 1e-12  # relative difference of totals


# --------------------------------------------------------------------------- generation

def generate(scale: int, seed: int, work: Path) -> dict:
    """Write the synthetic problem to ``work`` and return a summary."""
    import geopandas as gpd
    import rasterio
    import shapely
    from rasterio.transform import from_origin
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([seed, scale])
    x0, y0 = GRID["x0"], GRID["y0"]
    x1, y1 = x0 + GRID["nx"] * GRID["dx"], y0 + GRID["ny"] * GRID["dy"]
    centres = np.column_stack([rng.uniform(x0 + 10e3, x1 - 10e3, 25),
                               rng.uniform(y0 + 10e3, y1 - 10e3, 25)])
    sigmas = rng.uniform(3e3, 15e3, 25)

    def clustered(n: int, share: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
        k = int(round(n * share))
        which = rng.integers(0, len(centres), k)
        xc = centres[which, 0] + rng.normal(0, 1, k) * sigmas[which]
        yc = centres[which, 1] + rng.normal(0, 1, k) * sigmas[which]
        xu = rng.uniform(x0 - margin, x1 + margin, n - k)
        yu = rng.uniform(y0 - margin, y1 + margin, n - k)
        return np.concatenate([xc, xu]), np.concatenate([yc, yu])

    # points: 80 % clustered (industrial zones), 20 % uniform, a few beyond the grid
    n_pt = 5000 * scale
    px, py = clustered(n_pt, 0.8, 2e3)
    points = shapely.points(px, py)

    # roads: 100 m – 2 km (log-uniform), 2–6 vertices, gently bending
    n_ln = 50_000 * scale
    sx, sy = clustered(n_ln, 0.7, 2e3)
    length = np.exp(rng.uniform(np.log(100.0), np.log(2000.0), n_ln))
    nv = rng.integers(2, 7, n_ln)
    offsets = np.concatenate([[0], np.cumsum(nv)])
    seg = np.repeat(length / (nv - 1), nv)
    heading = np.repeat(rng.uniform(0, 2 * np.pi, n_ln), nv) + rng.normal(0, 0.25, nv.sum())
    first = np.zeros(nv.sum(), dtype=bool)
    first[offsets[:-1]] = True
    step_x = np.where(first, 0.0, seg * np.cos(heading))
    step_y = np.where(first, 0.0, seg * np.sin(heading))
    cx = np.cumsum(step_x)
    cy = np.cumsum(step_y)
    line_id = np.repeat(np.arange(n_ln), nv)
    cx = cx - (cx[offsets[:-1]] - sx)[line_id]
    cy = cy - (cy[offsets[:-1]] - sy)[line_id]
    lines = shapely.linestrings(np.column_stack([cx, cy]), indices=line_id)

    # polygons: star-shaped around a centre (always simple), radius 1–6 km
    n_pg = 200 * scale
    gx = rng.uniform(x0 - 2e3, x1 + 2e3, n_pg)
    gy = rng.uniform(y0 - 2e3, y1 + 2e3, n_pg)
    r0 = np.exp(rng.uniform(np.log(1000.0), np.log(6000.0), n_pg))
    polys = []
    for i in range(n_pg):
        m = int(rng.integers(12, 61))
        # one vertex per angular sector: strictly increasing angles, so the ring is simple
        ang = (np.arange(m) + rng.uniform(0.15, 0.85, m)) * (2 * np.pi / m)
        k = np.arange(1, 4)
        wob = (rng.normal(0, 0.15, (3, 1)) * np.cos(k[:, None] * ang + rng.uniform(0, 6.3, (3, 1)))
               ).sum(axis=0)
        r = r0[i] * np.clip(0.75 + wob + rng.uniform(-0.2, 0.2, m), 0.2, 1.4)
        ring = np.column_stack([gx[i] + r * np.cos(ang), gy[i] + r * np.sin(ang)])
        polys.append(shapely.Polygon(ring))
    polys = np.array(polys, dtype=object)
    assert shapely.is_valid(polys).all()

    crs = GRID["crs"]
    layers = {
        "points": (points, "point", ""),
        "lines": (lines, "line", ""),
        "areas": (polys, "area", "population"),
    }
    gpkg = work / "sources.gpkg"
    summary = {"scale": scale, "seed": seed}
    for name, (geoms, kind, proxy) in layers.items():
        e = rng.lognormal(mean=2.0, sigma=1.5, size=len(geoms))
        ids = [f"{name[0].upper()}{i:07d}" for i in range(len(geoms))]
        gdf = gpd.GeoDataFrame({"source_id": ids, "kind": kind, "proxy": proxy, "E": e},
                               geometry=geoms, crs=crs)
        gdf.to_file(gpkg, layer=name, driver="GPKG", engine="pyogrio")
        summary[name] = len(gdf)

    # proxy raster: smooth log-normal field (population-like), ~15 % zero pixels (water)
    w = int((GRID["nx"] * GRID["dx"] + 2 * PROXY_MARGIN) / PROXY_RES)
    h = int((GRID["ny"] * GRID["dy"] + 2 * PROXY_MARGIN) / PROXY_RES)
    field = gaussian_filter(rng.standard_normal((h, w)), 6.0)
    field = (field - field.mean()) / field.std()
    values = np.exp(1.2 * field) * 100.0
    values[field < np.quantile(field, 0.15)] = 0.0
    transform = from_origin(x0 - PROXY_MARGIN + PROXY_OFFSET[0],
                            y1 + PROXY_MARGIN + PROXY_OFFSET[1], PROXY_RES, PROXY_RES)
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "float64",
               "crs": crs, "transform": transform}
    for name, arr in (("population", values), ("uniform", np.ones_like(values))):
        with rasterio.open(work / f"{name}.tif", "w", **profile) as dst:
            dst.write(arr, 1)
    (work / "grid.json").write_text(json.dumps(GRID))
    summary["proxy_pixels"] = w * h
    return summary


def read_layers(work: Path) -> dict:
    """The three layers as GeoDataFrames (any interpreter with geopandas + pyogrio)."""
    import geopandas as gpd
    return {name: gpd.read_file(work / "sources.gpkg", layer=name, engine="pyogrio")
            for name in ("points", "lines", "areas")}


def peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeat: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


# --------------------------------------------------------------------------- workers

def worker_tongyuan(work: Path, repeat: int) -> dict:
    import geopandas as gpd
    import pandas as pd

    sys.path.insert(0, str(REPO))
    from grids.allocate import allocate
    from grids.grid import Grid
    from grids.proxy import Proxy

    layers = read_layers(work)
    gdf = gpd.GeoDataFrame(pd.concat(list(layers.values()), ignore_index=True),
                           crs=layers["points"].crs)
    e = gdf["E"].to_numpy()
    kinds = gdf["kind"].to_numpy()
    grid = Grid.from_config(json.loads((work / "grid.json").read_text()))
    rss_inputs = peak_rss_mb()

    def run(raster: str):
        def go():
            proxies = {"population": Proxy("population", str(work / f"{raster}.tif"))}
            alloc = allocate(gdf, grid, proxies)
            return alloc, alloc.matrix @ e
        return go

    res, fields = {}, {}
    for label, raster in (("proxy", "population"), ("area", "uniform")):
        times, (alloc, _) = timed(run(raster), repeat)
        res[f"{label}_s"] = statistics.median(times)
        res[f"{label}_runs"] = times
        a = alloc.matrix.tocsc()
        for kind in ("point", "line", "area"):
            cols = np.flatnonzero(kinds == kind)
            fields[f"{label}_{kind}"] = (a[:, cols] @ e[cols]).reshape(grid.shape)
            # the ledger's balance: gridded + outside = read
            res[f"{label}_{kind}_balance"] = float(
                abs(fields[f"{label}_{kind}"].sum() + (alloc.outside_fraction[cols] * e[cols]).sum()
                    - e[cols].sum()) / e[cols].sum())
        res[f"{label}_nnz"] = int(alloc.matrix.nnz)
        res[f"{label}_fallback"] = len(alloc.fallback)
    np.savez(work / "fields_tongyuan.npz", **fields)
    res["rss_inputs_mb"] = rss_inputs
    res["peak_rss_mb"] = peak_rss_mb()
    return res


def worker_shapely(work: Path, repeat: int) -> dict:
    """Plain vectorised shapely 2: STRtree queries and intersections with cell boxes/pixels."""
    import rasterio
    import shapely

    layers = read_layers(work)
    g = json.loads((work / "grid.json").read_text())
    nx, ny = g["nx"], g["ny"]
    geoms = {k: v.geometry.to_numpy() for k, v in layers.items()}
    es = {k: v["E"].to_numpy() for k, v in layers.items()}
    rss_inputs = peak_rss_mb()

    def go():
        xs = g["x0"] + np.arange(nx) * g["dx"]
        ys = g["y0"] + np.arange(ny) * g["dy"]
        xx, yy = np.meshgrid(xs, ys)
        cells = shapely.box(xx.ravel(), yy.ravel(), xx.ravel() + g["dx"], yy.ravel() + g["dy"])
        tree = shapely.STRtree(cells)
        out = {}
        # points: split among the cells they touch (one, except exactly on an edge)
        s, c = tree.query(geoms["points"], predicate="intersects")
        cnt = np.bincount(s, minlength=len(geoms["points"]))
        out["point"] = np.bincount(c, weights=es["points"][s] / cnt[s], minlength=nx * ny)
        # lines: length in each cell / total length
        s, c = tree.query(geoms["lines"], predicate="intersects")
        piece = shapely.length(shapely.intersection(geoms["lines"][s], cells[c]))
        out["line"] = np.bincount(c, weights=es["lines"][s] * piece
                                  / shapely.length(geoms["lines"])[s], minlength=nx * ny)
        # polygons × proxy pixels × cells
        with rasterio.open(work / "population.tif") as src:
            v = src.read(1)
            tr = src.transform
        r, q = np.nonzero(v > 0)
        px0, py1 = tr * (q, r)
        px1, py0 = tr * (q + 1, r + 1)
        pix = shapely.box(px0, py0, px1, py1)
        dens = v[r, q] / shapely.area(pix)
        polys = geoms["areas"]
        p, k = shapely.STRtree(pix).query(polys, predicate="intersects")
        parts = shapely.intersection(polys[p], pix[k])
        wp = dens[k] * shapely.area(parts)
        wtot = np.bincount(p, weights=wp, minlength=len(polys))
        j, c = tree.query(parts, predicate="intersects")
        a = dens[k[j]] * shapely.area(shapely.intersection(parts[j], cells[c]))
        ok = wtot[p[j]] > 0
        area = np.bincount(c[ok], weights=es["areas"][p[j][ok]] * a[ok] / wtot[p[j][ok]],
                           minlength=nx * ny)
        # a polygon on zero proxy everywhere is spread by area (Tongyuan's documented fallback)
        zero = np.flatnonzero(wtot == 0)
        j, c = tree.query(polys[zero], predicate="intersects")
        a = shapely.area(shapely.intersection(polys[zero][j], cells[c]))
        area += np.bincount(c, weights=es["areas"][zero][j] * a / shapely.area(polys[zero])[j],
                            minlength=nx * ny)
        out["area"] = area
        return {kk: vv.reshape(ny, nx) for kk, vv in out.items()}

    times, fields = timed(go, repeat)
    np.savez(work / "fields_shapely.npz", **fields)
    return {"s": statistics.median(times), "runs": times, "rss_inputs_mb": rss_inputs,
            "peak_rss_mb": peak_rss_mb()}


def worker_emiproc(work: Path, repeat: int) -> dict:
    import logging
    from importlib.metadata import version

    import pandas as pd
    from emiproc.grids import RegularGrid
    from emiproc.inventories import Inventory
    from emiproc.regrid import remap_inventory

    logging.getLogger("emiproc").setLevel(logging.WARNING)
    layers = read_layers(work)
    g = json.loads((work / "grid.json").read_text())
    gdfs = {name: gdf[["E", "geometry"]] for name, gdf in layers.items()}
    rss_inputs = peak_rss_mb()

    def go():
        grid = RegularGrid(xmin=g["x0"], ymin=g["y0"], nx=g["nx"], ny=g["ny"], dx=g["dx"],
                           dy=g["dy"], name=g["name"], crs=g["crs"])
        inv = Inventory.from_gdf(gdfs=dict(gdfs), name="bench")
        return remap_inventory(inv, grid)

    times, out = timed(go, repeat)
    nx, ny = g["nx"], g["ny"]
    fields = {}
    for name, kind in (("points", "point"), ("lines", "line"), ("areas", "area")):
        v = out.gdf[(name, "E")].to_numpy()
        # emiproc's RegularGrid orders cells column-major: k = ix * ny + iy
        fields[kind] = v.reshape(nx, ny).T
    np.savez(work / "fields_emiproc.npz", **fields)
    return {"s": statistics.median(times), "runs": times, "rss_inputs_mb": rss_inputs,
            "peak_rss_mb": peak_rss_mb(), "emiproc": version("emiproc"), "pandas": pd.__version__,
            "shapely": version("shapely"), "geopandas": version("geopandas")}


def worker_demo(work: Path, repeat: int) -> dict:
    """Allocate the shipped demo (config/shanghai.yaml) on the grid in ``work/grid.json``.

    The weight of every source is 1, so the field counts sources per cell (fractions summed).
    """
    sys.path.insert(0, str(REPO))
    from grids.allocate import allocate
    from grids.grid import Grid
    from pipeline.config import load_config
    from pipeline.steps import load_tables, read_inputs

    cfg = load_config(REPO / "config" / "shanghai.yaml")
    tables = load_tables(cfg)
    activity, _, _ = read_inputs(cfg, tables)
    grid = Grid.from_config(json.loads((work / "grid.json").read_text()))
    rss_inputs = peak_rss_mb()
    times, alloc = timed(lambda: allocate(activity, grid, tables.proxies), repeat)
    w = np.ones(len(activity))
    field = (alloc.matrix @ w).reshape(grid.shape)
    np.savez(work / "field.npz", field=field, outside=alloc.outside_fraction)
    return {"s": statistics.median(times), "runs": times, "nnz": int(alloc.matrix.nnz),
            "sources": len(activity), "cells": grid.size,
            "matrix_mb": (alloc.matrix.data.nbytes + alloc.matrix.indices.nbytes
                          + alloc.matrix.indptr.nbytes) / 2**20,
            "balance": float(abs(field.sum() + alloc.outside_fraction.sum() - len(activity))
                             / len(activity)),
            "rss_inputs_mb": rss_inputs, "peak_rss_mb": peak_rss_mb()}


def bench_fine(args) -> dict:
    """The demo on the 1 km grid and on a 100 m grid over the same extent (1300 × 1380 cells):
    time, peak RSS, matrix size; the 100 m field summed over 10 × 10 blocks must equal the 1 km
    field (cell edges coincide, allocation is exact)."""
    out = {}
    fields = {}
    for cell in (1000, 100):
        k = 1000 // cell
        g = dict(GRID, dx=float(cell), dy=float(cell), nx=GRID["nx"] * k, ny=GRID["ny"] * k,
                 name=f"shanghai_{cell}m")
        work = Path(tempfile.mkdtemp(prefix=f"tongyuan-fine-{cell}-"))
        try:
            (work / "grid.json").write_text(json.dumps(g))
            r = run_worker(sys.executable, "demo", work, args.repeat)
            fields[cell] = np.load(work / "field.npz")["field"]
        finally:
            shutil.rmtree(work, ignore_errors=True)
        out[cell] = r
        print(f"demo on {cell:>4} m ({g['nx']} × {g['ny']} = {r['cells']:,} cells): "
              f"{r['s']:.2f} s (runs {', '.join(f'{t:.2f}' for t in r['runs'])}); "
              f"{r['sources']:,} sources, nnz {r['nnz']:,}, matrix {r['matrix_mb']:.1f} MB; "
              f"peak RSS {r['peak_rss_mb']:.0f} MB ({r['rss_inputs_mb']:.0f} MB after reading); "
              f"balance {r['balance']:.1e}", flush=True)
    coarse = fields[100].reshape(GRID["ny"], 10, GRID["nx"], 10).sum(axis=(1, 3))
    cell_diff, tot_diff = compare(fields[1000], coarse)
    ok = cell_diff <= CELL_TOL and tot_diff <= TOTAL_TOL and all(
        r["balance"] <= TOTAL_TOL for r in out.values())
    print(f"100 m summed to 1 km vs 1 km: max cell |diff| / max cell {cell_diff:.1e}, totals "
          f"{tot_diff:.1e}  {'ok' if ok else 'FAIL'}")
    return {"s_1km": out[1000]["s"], "s_100m": out[100]["s"],
            "rss_100m_mb": out[100]["peak_rss_mb"], "rss_1km_mb": out[1000]["peak_rss_mb"],
            "nnz_100m": out[100]["nnz"], "max_rel_diff": cell_diff, "ok": ok}


WORKERS = {"tongyuan": worker_tongyuan, "shapely": worker_shapely, "emiproc": worker_emiproc,
           "demo": worker_demo}


# --------------------------------------------------------------------------- driver

def run_worker(python: str, method: str, work: Path, repeat: int) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([python, str(HERE), "--worker", method, "--dir", str(work),
                           "--repeat", str(repeat)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{method} worker failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max cell |a − b| / max |a|, |Σa − Σb| / |Σa|)"""
    scale = np.abs(a).max()
    cell = float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(b).max())
    tot = float(abs(a.sum() - b.sum()) / abs(a.sum())) if a.sum() != 0 else float(abs(b.sum()))
    return cell, tot


def emiproc_python(args) -> str | None:
    if args.no_emiproc:
        return None
    py = args.emiproc_python or os.environ.get("EMIPROC_PYTHON") or str(
        DEFAULT_EMIPROC_VENV / "bin" / "python")
    if not Path(py).exists():
        if not args.setup_emiproc:
            raise SystemExit(f"no emiproc interpreter at {py}; create it with --setup-emiproc or:\n"
                             f"  python3 -m venv {DEFAULT_EMIPROC_VENV} && "
                             f"{DEFAULT_EMIPROC_VENV}/bin/pip install -r {REQUIREMENTS}")
        venv = Path(py).parent.parent
        print(f"creating the emiproc venv {venv} ...", flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "-r", str(REQUIREMENTS)], check=True)
    return py


def bench_scale(scale: int, args, epy: str | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"tongyuan-alloc-x{scale}-"))
    try:
        t0 = time.perf_counter()
        summary = generate(scale, args.seed, work)
        print(f"\n== scale ×{scale}: {summary['points']:,} points, {summary['lines']:,} lines, "
              f"{summary['areas']:,} polygons, proxy {summary['proxy_pixels']:,} pixels of "
              f"{PROXY_RES:.0f} m (generated and written in {time.perf_counter() - t0:.1f} s)",
              flush=True)
        ty = run_worker(sys.executable, "tongyuan", work, args.repeat)
        print(f"tongyuan : {ty['proxy_s']:8.2f} s with proxy, {ty['area_s']:.2f} s by area "
              f"(runs {', '.join(f'{t:.2f}' for t in ty['proxy_runs'])}); nnz {ty['proxy_nnz']:,}; "
              f"peak RSS {ty['peak_rss_mb']:.0f} MB ({ty['rss_inputs_mb']:.0f} MB after reading "
              "inputs)", flush=True)
        sh = run_worker(sys.executable, "shapely", work, args.repeat)
        print(f"shapely 2: {sh['s']:8.2f} s (runs {', '.join(f'{t:.2f}' for t in sh['runs'])}); "
              f"peak RSS {sh['peak_rss_mb']:.0f} MB", flush=True)
        em = None
        if epy:
            em = run_worker(epy, "emiproc", work, args.repeat)
            print(f"emiproc  : {em['s']:8.2f} s (runs {', '.join(f'{t:.2f}' for t in em['runs'])})"
                  f"; peak RSS {em['peak_rss_mb']:.0f} MB; emiproc {em['emiproc']}, pandas "
                  f"{em['pandas']}", flush=True)

        ft = np.load(work / "fields_tongyuan.npz")
        fs = np.load(work / "fields_shapely.npz")
        checks = []  # (what, cell, total)
        full_t = ft["proxy_point"] + ft["proxy_line"] + ft["proxy_area"]
        full_s = fs["point"] + fs["line"] + fs["area"]
        checks.append(("tongyuan vs shapely, all sources (proxy)", *compare(full_t, full_s)))
        for kind in ("point", "line", "area"):
            checks.append((f"tongyuan vs shapely, {kind}s (proxy)",
                           *compare(ft[f"proxy_{kind}"], fs[kind])))
        if em:
            fe = np.load(work / "fields_emiproc.npz")
            for kind in ("point", "line"):
                checks.append((f"tongyuan vs emiproc, {kind}s", *compare(ft[f"proxy_{kind}"],
                                                                       fe[kind])))
            checks.append(("tongyuan vs emiproc, polygons by area (uniform proxy)",
                           *compare(ft["area_area"], fe["area"])))
            checks.append(("tongyuan vs emiproc, all sources by area",
                           *compare(ft["area_point"] + ft["area_line"] + ft["area_area"],
                                    fe["point"] + fe["line"] + fe["area"])))
        print("\nfield agreement (max cell |diff| / max cell; relative difference of totals):")
        ok = True
        for what, cell, tot in checks:
            good = cell <= CELL_TOL and tot <= TOTAL_TOL
            ok &= good
            print(f"  {what:55s} {cell:9.2e} {tot:9.2e}  {'ok' if good else 'FAIL'}")
        bal = max(ty[f"{lab}_{k}_balance"] for lab in ("proxy", "area")
                  for k in ("point", "line", "area"))
        print(f"  {'tongyuan balance |gridded + outside − read| / read':55s} {'':9s} {bal:9.2e}  "
              f"{'ok' if bal <= TOTAL_TOL else 'FAIL'}")
        ok &= bal <= TOTAL_TOL
        max_rel = max(c for _, c, _ in checks)
        out = {"scale": scale, "tongyuan_s": ty["proxy_s"], "tongyuan_area_s": ty["area_s"],
               "shapely_s": sh["s"], "emiproc_s": em["s"] if em else float("nan"),
               "max_rel_diff": max_rel, "max_total_diff": max(t for *_, t in checks),
               "peak_rss_mb": ty["peak_rss_mb"], "ok": ok,
               "n": summary["points"] + summary["lines"] + summary["areas"]}
        out["ratio"] = out["emiproc_s"] / out["tongyuan_s"]
        out["ratio_area"] = out["emiproc_s"] / out["tongyuan_area_s"]
        out["ratio_vs_shapely"] = out["shapely_s"] / out["tongyuan_s"]
        print(f"\nratio emiproc / tongyuan: {out['ratio']:.1f}× (tongyuan with proxy), "
              f"{out['ratio_area']:.1f}× (tongyuan by area, same semantics as emiproc); "
              f"shapely / tongyuan: {out['ratio_vs_shapely']:.2f}×", flush=True)
        if args.keep:
            shutil.copytree(work, args.keep / f"x{scale}", dirs_exist_ok=True)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, nargs="+", default=[1], help="problem size ×N (several: "
                    "a scaling table)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per method (median)")
    ap.add_argument("--seed", type=int, default=20241125)
    ap.add_argument("--emiproc-python", help="interpreter of the emiproc venv")
    ap.add_argument("--setup-emiproc", action="store_true",
                    help="create the emiproc venv if missing")
    ap.add_argument("--no-emiproc", action="store_true", help="skip emiproc")
    ap.add_argument("--keep", type=Path, help="keep inputs and fields here")
    ap.add_argument("--fine", action="store_true", help="instead: allocate the shipped demo on "
                    "the 1 km grid and on a 100 m grid (1300 × 1380 cells)")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.dir, args.repeat)))
        return

    if args.fine:
        r = bench_fine(args)
        print(f"\nRESULT grid=100m cells={GRID['nx'] * GRID['ny'] * 100} "
              f"tongyuan_s={r['s_100m']:.2f} tongyuan_1km_s={r['s_1km']:.2f} "
              f"ratio_100m_vs_1km={r['s_100m'] / r['s_1km']:.1f} nnz={r['nnz_100m']} "
              f"max_rel_diff={r['max_rel_diff']:.1e} peak_rss_mb={r['rss_100m_mb']:.0f}")
        sys.exit(0 if r["ok"] else 1)
    epy = emiproc_python(args)
    results = [bench_scale(s, args, epy) for s in args.scale]
    if len(results) > 1:
        base = results[0]
        print("\nscaling (time per ×1 of work relative to the smallest scale; 1.00 = linear):")
        print(f"  {'scale':>5} {'sources':>10} {'tongyuan s':>11} {'':>5} {'shapely s':>10} "
              f"{'':>5} {'emiproc s':>10} {'':>5} {'RSS MB':>7}")
        for r in results:
            k = r["scale"] / base["scale"]
            print(f"  {r['scale']:>5} {r['n']:>10,} {r['tongyuan_s']:>11.2f} "
                  f"{r['tongyuan_s'] / base['tongyuan_s'] / k:>5.2f} {r['shapely_s']:>10.2f} "
                  f"{r['shapely_s'] / base['shapely_s'] / k:>5.2f} {r['emiproc_s']:>10.2f} "
                  f"{r['emiproc_s'] / base['emiproc_s'] / k:>5.2f} {r['peak_rss_mb']:>7.0f}")
    print()
    for r in results:
        print(f"RESULT scale={r['scale']} tongyuan_s={r['tongyuan_s']:.2f} "
              f"emiproc_s={r['emiproc_s']:.2f} ratio={r['ratio']:.2f} "
              f"ratio_vs_shapely={r['ratio_vs_shapely']:.2f} max_rel_diff={r['max_rel_diff']:.1e} "
              f"peak_rss_mb={r['peak_rss_mb']:.0f}")
    if not all(r["ok"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
