"""Spatial allocation: sparse matrices from sources to grid cells.

Each ``allocate_*`` returns an :class:`Allocation` whose matrix ``A`` (cells × sources, CSR) holds
in column *j* the fractions of source *j* that fall in each cell; the column sum is the share of
the source inside the domain, and ``1 − sum`` is reported as outside-domain mass, never pushed
into edge cells. Work is vectorised with shapely 2 and an STRtree; identical geometries (a road
segment carrying several vehicle classes) are allocated once. The exact numpy overlays are in
:mod:`grids.overlay`, the content-keyed matrix cache in :mod:`grids.cache`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from affine import Affine

from grids.cache import CacheStats, allocation_key, read_cached, write_cached
from grids.grid import Grid
from grids.overlay import (
    AreaMeasure,
    line_segments,
    local_grid,
    pixel_weights,
    rectilinear_weights,
    split_segments,
    to_local,
    window_cells,
)
from sources.errors import CRSMismatchError, GeometryError


@dataclass(frozen=True)
class Allocation:
    """Allocation of one set of sources.

    Attributes
    ----------
    matrix : CSR (grid.size × n_sources), entries are fractions [1]
    source_ids : ids of the columns, in order
    outside_fraction : share of each source beyond the grid [1], measured from the geometry
        independently of ``matrix`` (so that the ledger's balance is a real check)
    fallback : ids of area sources whose proxy was zero everywhere (spread by area instead)
    """

    matrix: sp.csr_matrix
    source_ids: np.ndarray
    outside_fraction: np.ndarray
    fallback: tuple[str, ...] = field(default=())

    @property
    def inside_fraction(self) -> np.ndarray:
        return np.asarray(self.matrix.sum(axis=0)).ravel()

    def __post_init__(self) -> None:
        frac = self.inside_fraction
        if frac.size and (frac.max() > 1 + 1e-9 or self.matrix.data.min(initial=0) < 0):
            raise ValueError("allocation columns must lie in [0, 1]")


def _check_crs(gdf, grid: Grid) -> None:
    if gdf.crs is None or not grid.crs.equals(gdf.crs):
        raise CRSMismatchError(
            f"sources are in {gdf.crs.to_string() if gdf.crs else 'no CRS'} but the grid is in "
            f"{grid.crs.to_string()}; reproject on ingest (sources.readers does)")


def _unique_geometries(geoms: np.ndarray, extra: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of unique geometries (by WKB, and ``extra`` key) and the inverse map."""
    keys = pd.Series(shapely.to_wkb(geoms, hex=False), dtype=object)
    if extra is not None:
        keys = pd.Series([w + b"|" + str(e).encode() for w, e in zip(keys, extra, strict=True)],
                         dtype=object)
    inverse, uniques = pd.factorize(keys)
    first = np.full(len(uniques), -1, dtype=np.int64)
    order = np.arange(len(inverse))[::-1]  # last assignment wins: first occurrence
    first[inverse[order]] = order
    return first, inverse.astype(np.int64)


def _expand(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_unique: int,
            inverse: np.ndarray, n_cells: int) -> sp.csr_matrix:
    """Matrix over unique geometries → matrix over all sources (columns repeated)."""
    unique = sp.csc_matrix((vals, (rows, cols)), shape=(n_cells, n_unique))
    return unique[:, inverse].tocsr()


def allocate_points(gdf, grid: Grid) -> Allocation:
    """Each point to the cell containing it (half-open cells); points outside get an empty
    column."""
    _check_crs(gdf, grid)
    geoms = gdf.geometry.to_numpy()
    x, y = shapely.get_x(geoms), shapely.get_y(geoms)
    cell = grid.cell_index(x, y)
    inside = cell >= 0
    cols = np.flatnonzero(inside)
    matrix = sp.csr_matrix((np.ones(cols.size), (cell[inside], cols)),
                           shape=(grid.size, len(gdf)))
    return Allocation(matrix=matrix, source_ids=gdf["source_id"].to_numpy(),
                      outside_fraction=(~inside).astype(float))


def allocate_lines(gdf, grid: Grid) -> Allocation:
    """Lines by exact length fraction per cell.

    The fraction of line *j* in cell *c* is ``length(line ∩ cell) / length(line)``. Each straight
    segment is cut at the cell edges in numpy (:func:`grids.overlay.split_segments`: the grid is
    regular, so no cell polygons and no spatial index are needed). A piece lying exactly on the
    edge between two cells belongs to both closed boxes and is split half and half (on the
    domain's own edge, half is outside). The outside share is the length of the pieces beyond the
    grid over the line's length measured by shapely, so the ledger's balance checks the cutting.
    """
    _check_crs(gdf, grid)
    geoms = gdf.geometry.to_numpy()
    first, inverse = _unique_geometries(geoms)
    ug = geoms[first]
    a, b, owner = line_segments(ug)
    if grid.is_geographic:  # geodesic metres on the ellipsoid, per straight (lon/lat) segment
        seg_len = grid.crs.get_geod().inv(a[:, 0], a[:, 1], b[:, 0], b[:, 1])[2]
        total = np.bincount(owner, weights=seg_len, minlength=ug.size)
    else:
        seg_len = np.hypot(*(b - a).T)
        total = shapely.length(ug)
    if (total <= 0).any():
        j = int(first[np.flatnonzero(total <= 0)[0]])
        raise GeometryError(None, "line of zero length", source_id=str(gdf["source_id"].iloc[j]))
    origin = np.array([grid.x0, grid.y0])  # cut relative to the grid corner
    a, b, world, grid = a - origin, b - origin, grid, local_grid(grid)
    seg, cell, t0, dt, half = split_segments(a, b, grid)
    src = owner[seg]
    if world.is_geographic:  # each piece's own geodesic length (metres per degree vary)
        p0 = a[seg] + t0[:, None] * (b - a)[seg] + origin
        p1 = a[seg] + (t0 + dt)[:, None] * (b - a)[seg] + origin
        length = half * world.crs.get_geod().inv(p0[:, 0], p0[:, 1], p1[:, 0], p1[:, 1])[2]
        total = np.bincount(src, weights=length, minlength=ug.size)
    else:
        length = half * dt * seg_len[seg]
    inside = cell >= 0
    frac = length[inside] / total[src[inside]]
    matrix = _expand(cell[inside], src[inside], frac, ug.size, inverse, grid.size)
    outside = np.bincount(src[~inside], weights=length[~inside], minlength=ug.size) / total
    return Allocation(matrix=matrix, source_ids=gdf["source_id"].to_numpy(),
                      outside_fraction=outside[inverse])


def allocate_areas(gdf, grid: Grid, proxies: dict) -> Allocation:
    """Polygons by exact area × proxy weight, normalised within each polygon.

    The weight of cell *c* for polygon *p* with proxy raster values ``v_k`` over pixels ``k`` is
    ``Σ_k v_k · area(k ∩ p ∩ c) / area(k)``, divided by the same sum over the whole polygon, so
    the part of the polygon outside the grid keeps its share (reported as outside the domain).
    A raster in the grid's CRS with north-up pixels is overlaid as rectangles in numpy
    (:func:`grids.overlay.rectilinear_weights`); any other raster through its reprojected pixel
    polygons (:func:`grids.overlay.pixel_weights`). A polygon whose proxy is zero everywhere
    falls back to area weights and is listed in :attr:`Allocation.fallback`. ``proxies`` maps the
    names in the ``proxy`` column to :class:`grids.proxy.Proxy` objects.
    """
    _check_crs(gdf, grid)
    geoms = gdf.geometry.to_numpy()
    names = gdf["proxy"].to_numpy()
    first, inverse = _unique_geometries(geoms, names)
    ug, un = to_local(geoms[first], grid), names[first]
    world_grid, grid = grid, local_grid(grid)  # overlays relative to the corner
    origin = np.array([world_grid.x0, world_grid.y0])
    measure = AreaMeasure(world_grid)
    rows_all, cols_all, vals_all = [], [], []
    fallback_unique: list[int] = []
    outside = np.zeros(ug.size)
    for name in np.unique(un):
        idx = np.flatnonzero(un == name)
        polys = ug[idx]
        proxy = proxies[name]
        # the proxy must cover each polygon: weights are unknown where it does not, and that part
        # would silently take the covered part's share (possibly pushing outside mass inside)
        extent = to_local(np.array([proxy.extent(grid.crs)]), world_grid)[0]
        uncovered = shapely.area(shapely.difference(polys, extent))
        # a raster reprojected to the grid has curved (densified) edges while a polygon's
        # reprojected edges stay straight chords: a polygon sharing the raster's edge leaves a
        # sliver (≤ 1 mm wide onto Lambert, ~1 cm for 4 km edges onto lon/lat), not a coverage
        # gap; gaps of real rasters are pixels wide. Slivers under 10 cm are accepted.
        same_crs = proxy.crs().equals(grid.crs)
        tol = (1e-9 * shapely.area(polys) if same_crs
               else 100 * measure.one_mm * shapely.length(polys))
        bad = uncovered > tol
        if bad.any():
            j = int(first[idx[np.flatnonzero(bad)[0]]])
            km2 = measure.area(shapely.difference(polys[bad][:1], extent))[0] / 1e6
            raise GeometryError(proxy.path, f"proxy raster {name!r} does not cover the polygon "
                                f"of an area source ({km2:.3f} km² outside "
                                "the raster)", source_id=str(gdf["source_id"].iloc[j]),
                                expected="a proxy raster covering every polygon that uses it")
        values, transform, _ = proxy.read()
        if same_crs and transform.b == 0 and transform.d == 0:
            local = Affine(transform.a, 0.0, transform.c - origin[0], 0.0, transform.e,
                           transform.f - origin[1])
            p_i, cell, w = rectilinear_weights(polys, values, local, grid, measure)
        else:
            pix_geoms, pix_values = proxy.pixels(world_grid.crs)
            p_i, cell, w = pixel_weights(polys, to_local(pix_geoms, world_grid), pix_values,
                                          grid, measure)
        w_total = np.bincount(p_i, weights=w, minlength=idx.size)
        beyond = cell < 0
        w_out = np.bincount(p_i[beyond], weights=w[beyond], minlength=idx.size)
        outside[idx] = np.divide(w_out, w_total, out=np.zeros(idx.size), where=w_total > 0)
        rows_all.append(cell[~beyond])
        cols_all.append(idx[p_i[~beyond]])
        vals_all.append(w[~beyond] / w_total[p_i[~beyond]])
        empty = np.flatnonzero(w_total <= 0)
        if empty.size:  # proxy all zero inside these polygons: area weights
            fallback_unique.extend(idx[empty].tolist())
            fp = polys[empty]
            cells, cell_idx, tree = window_cells(grid, fp)
            a_j, a_i = tree.query(fp, predicate="intersects")
            a = measure.area(shapely.intersection(fp[a_j], cells[a_i]))
            ok = a > 0
            beyond_area = measure.area(shapely.difference(fp, grid.domain))
            # normalise by the measured pieces themselves, so that shares plus outside are 1 to
            # rounding even where each piece is measured on the ellipsoid separately
            whole = np.bincount(a_j[ok], weights=a[ok], minlength=fp.size) + beyond_area
            rows_all.append(cell_idx[a_i[ok]])
            cols_all.append(idx[empty[a_j[ok]]])
            vals_all.append(a[ok] / whole[a_j[ok]])
            outside[idx[empty]] = beyond_area / whole
    rows = np.concatenate(rows_all) if rows_all else np.array([], dtype=np.int64)
    cols = np.concatenate(cols_all) if cols_all else np.array([], dtype=np.int64)
    vals = np.concatenate(vals_all) if vals_all else np.array([], dtype=float)
    matrix = _expand(rows, cols, vals, ug.size, inverse, grid.size)
    fb_set = set(fallback_unique)
    fallback = tuple(str(s) for s, u in zip(gdf["source_id"], inverse, strict=True) if u in fb_set)
    return Allocation(matrix=matrix, source_ids=gdf["source_id"].to_numpy(),
                      outside_fraction=outside[inverse], fallback=fallback)


#: smallest chunk worth a task, per source kind (points are trivial, polygons heavy)
MIN_CHUNK = {"point": 100_000, "line": 5_000, "area": 25}


def outside_share(gdf, grid: Grid) -> np.ndarray:
    """Share of each source beyond the grid [1], without a full allocation (``tongyuan
    check``): points and lines exactly as :func:`allocate_points` and :func:`allocate_lines`
    measure it, areas by the part of the polygon's area beyond the grid's bounds (the build
    weighs an area's part by its proxy; the two agree for a polygon wholly in or out)."""
    _check_crs(gdf, grid)
    out = np.zeros(len(gdf))
    kinds = gdf["kind"].to_numpy()
    for kind in ("point", "line"):
        rows = np.flatnonzero(kinds == kind)
        if rows.size:
            out[rows] = _allocate_kind(kind, gdf.iloc[rows], grid, None).outside_fraction
    rows = np.flatnonzero(kinds == "area")
    if rows.size:
        polys = gdf.geometry.to_numpy()[rows]
        inside = shapely.area(shapely.intersection(polys, shapely.box(*grid.bounds)))
        out[rows] = np.clip(1.0 - inside / shapely.area(polys), 0.0, 1.0)
    return out


def _allocate_kind(kind: str, gdf, grid: Grid, proxies: dict | None) -> Allocation:
    if kind == "point":
        return allocate_points(gdf, grid)
    if kind == "line":
        return allocate_lines(gdf, grid)
    return allocate_areas(gdf, grid, proxies or {})


def scheduler_workers(scheduler: str | None) -> int:
    """How many chunks of work a local ``scheduler`` runs at once: 1 for ``"synchronous"``, else
    the CPU count (threads or processes)."""
    if scheduler == "synchronous":
        return 1
    return max(os.cpu_count() or 1, 1)


def _compute_chunks(jobs: list[tuple[str, object]], grid: Grid, proxies: dict | None,
                    scheduler: str | None) -> list[Allocation]:
    """Allocations of ``(kind, sources)`` jobs, partitioned over contiguous chunks of sources and
    computed together with dask, so that every core (or worker) has work from every kind.

    Every source's column is computed from that source alone, so the matrix is the same, bit for
    bit, whatever the chunking and scheduler. ``scheduler``: ``None``/``"threads"`` (dask's
    thread pool: shapely 2 and numpy release the GIL), ``"processes"``, ``"synchronous"``, or
    the address of a ``dask.distributed`` scheduler (``tcp://host:8786``), whose workers must
    import Tongyuan and read the proxy rasters at the same paths.
    """
    if not jobs:
        return []
    distributed = scheduler is not None and "://" in scheduler
    client = None
    try:
        if distributed:
            # imported here: distributed costs ~0.4 s per process (every CLI call, every dask
            # process worker) and only a scheduler address needs it
            from distributed import Client
            client = Client(scheduler, timeout="30s")
            workers = max(sum(client.nthreads().values()), 1)
        else:
            workers = scheduler_workers(scheduler)
        chunks: list[list[tuple[int, int]]] = []
        for kind, gdf in jobs:
            n = len(gdf)
            k = int(min(max(n // MIN_CHUNK[kind], 1), 2 * workers))
            edges = np.linspace(0, n, k + 1).astype(np.int64)
            chunks.append([(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a])
        if not distributed and all(len(c) == 1 for c in chunks) and len(jobs) == 1:
            return [_allocate_kind(jobs[0][0], jobs[0][1], grid, proxies)]
        tasks = [dask.delayed(_allocate_kind, pure=False)(kind, gdf.iloc[a:b], grid, proxies)
                 for (kind, gdf), ranges in zip(jobs, chunks, strict=True) for a, b in ranges]
        done = list(dask.compute(*tasks, scheduler=client.get if client
                                 else (scheduler or "threads")))
    finally:
        if client is not None:
            client.close()
    out = []
    for (_, gdf), ranges in zip(jobs, chunks, strict=True):
        parts, done = done[:len(ranges)], done[len(ranges):]
        out.append(Allocation(matrix=sp.hstack([p.matrix for p in parts], format="csr"),
                              source_ids=gdf["source_id"].to_numpy(),
                              outside_fraction=np.concatenate([p.outside_fraction
                                                               for p in parts]),
                              fallback=tuple(s for p in parts for s in p.fallback)))
    return out


def allocate(gdf, grid: Grid, proxies: dict | None = None, cache_dir: str | Path | None = None,
             stats: CacheStats | None = None, scheduler: str | None = None,
             groups: np.ndarray | None = None) -> Allocation:
    """Allocate an activity table of mixed kinds; columns follow the table's row order.

    With ``cache_dir``, the matrix of each source kind (of each group and kind, with ``groups``:
    one label per row, e.g. the input each source came from) is stored under the content hash
    of its geometries, the grid and the proxies (:func:`allocation_key`) and reused when they
    have not changed, so a new activity value reuses every matrix and a moved road rebuilds only
    the roads. ``stats`` records per kind (per group) whether the cache was hit. Matrices that
    must be computed are computed together in chunks of sources on ``scheduler`` (see
    :func:`_compute_chunks`).
    """
    kinds = gdf["kind"].to_numpy()
    labels = np.asarray(groups, dtype=object) if groups is not None else None
    parts: dict[tuple[str, str], tuple[np.ndarray, Allocation]] = {}
    todo: list[tuple[tuple[str, str], np.ndarray, object, Path | None]] = []
    order_of_groups = list(dict.fromkeys(labels)) if labels is not None else [None]
    keys: list[tuple[str, str]] = []  # the parts in a fixed order, whatever came from the cache
    for group, kind in [(g, k) for g in order_of_groups for k in ("point", "line", "area")]:
        member = kinds == kind if group is None else (kinds == kind) & (labels == group)
        pos = np.flatnonzero(member)
        if pos.size == 0:
            continue
        name = kind if group is None else str(group)
        keys.append((name, kind))
        sub = gdf.iloc[pos]
        _check_crs(sub, grid)
        ids = sub["source_id"].to_numpy()
        cached = path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"{kind}-{allocation_key(sub, kind, grid, proxies)}.npz"
            cached = read_cached(path, len(sub), grid) if path.exists() else None
        if cached is not None:
            matrix, outside, fb = cached
            parts[(name, kind)] = (pos, Allocation(matrix=matrix, source_ids=ids,
                                                   outside_fraction=outside,
                                                   fallback=tuple(str(ids[i]) for i in fb)))
        else:
            todo.append(((name, kind), pos, sub, path))
        if stats is not None:
            stats.kinds[name] = "hit" if cached is not None else "computed"
            if path is not None:
                stats.files.append(path.name)
    computed = _compute_chunks([(key[1], sub) for key, _, sub, _ in todo], grid, proxies,
                               scheduler)
    for (key, pos, _, path), alloc in zip(todo, computed, strict=True):
        if path is not None:
            column = {s: i for i, s in enumerate(alloc.source_ids)}
            write_cached(path, alloc.matrix, alloc.outside_fraction,
                         np.array([column[s] for s in alloc.fallback], dtype=np.int64))
        parts[key] = (pos, alloc)
    parts = [parts[k] for k in keys]
    n = len(gdf)
    if not parts:
        return Allocation(matrix=sp.csr_matrix((grid.size, n)),
                          source_ids=np.array([], dtype=object), outside_fraction=np.zeros(n))
    order = np.concatenate([p for p, _ in parts])
    stacked = sp.hstack([a.matrix for _, a in parts], format="csc")
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.arange(n)
    matrix = stacked[:, perm].tocsr()
    outside = np.concatenate([a.outside_fraction for _, a in parts])[perm]
    fallback = tuple(s for _, a in parts for s in a.fallback)
    return Allocation(matrix=matrix, source_ids=gdf["source_id"].to_numpy(),
                      outside_fraction=outside, fallback=fallback)
