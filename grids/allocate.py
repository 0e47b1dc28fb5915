"""Spatial allocation: sparse matrices from sources to grid cells.

Each ``allocate_*`` returns an :class:`Allocation` whose matrix ``A`` (cells × sources, CSR) holds
in column *j* the fractions of source *j* that fall in each cell; the column sum is the share of
the source inside the domain, and ``1 − sum`` is reported as outside-domain mass, never pushed
into edge cells. Work is vectorised with shapely 2 and an STRtree; identical geometries (a road
segment carrying several vehicle classes) are allocated once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely

from grids.grid import Grid
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
    """Each point to the cell containing it (half-open cells); points outside get an empty column."""
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


def _to_local(geoms: np.ndarray, grid: Grid) -> np.ndarray:
    """Geometries relative to the grid's lower-left corner.

    Overlays of arbitrary polygons at projected coordinates of 10⁶ m lose ~10⁻⁸ of an area to
    rounding (5e-9 measured for a reprojected polygon on a Lambert grid); relative to the corner
    the coordinates are ~10⁴–10⁵ m and the error ~1e-10, well inside the ledger's 1e-9.
    """
    origin = np.array([grid.x0, grid.y0])
    return shapely.transform(geoms, lambda xy: xy - origin)


def _local_grid(grid: Grid) -> Grid:
    return dataclasses.replace(grid, x0=0.0, y0=0.0)


def _cell_tree(grid: Grid) -> tuple[np.ndarray, shapely.STRtree]:
    cells = grid.cell_polygons()
    return cells, shapely.STRtree(cells)


def allocate_lines(gdf, grid: Grid) -> Allocation:
    """Lines by exact length fraction per cell.

    The fraction of line *j* in cell *c* is ``length(line ∩ cell) / length(line)``. A piece lying
    exactly on the edge between two cells belongs to both closed boxes and is split half and half
    (on the domain's own edge, half is outside).
    """
    _check_crs(gdf, grid)
    geoms = gdf.geometry.to_numpy()
    first, inverse = _unique_geometries(geoms)
    ug = _to_local(geoms[first], grid)
    grid = _local_grid(grid)  # cell indices are unchanged by the shift
    total = shapely.length(ug)
    if (total <= 0).any():
        j = int(first[np.flatnonzero(total <= 0)[0]])
        raise GeometryError(None, "line of zero length", source_id=str(gdf["source_id"].iloc[j]))
    cells, tree = _cell_tree(grid)
    src, cell = tree.query(ug, predicate="intersects")
    pieces = shapely.intersection(ug[src], cells[cell])
    # a piece lying on the edge shared by two cells belongs to both closed boxes: count half
    on_edge = shapely.length(shapely.intersection(pieces, shapely.boundary(cells[cell])))
    length = shapely.length(pieces) - 0.5 * on_edge
    keep = length > 0
    src, cell, length = src[keep], cell[keep], length[keep]
    frac = length / total[src]
    matrix = _expand(cell, src, frac, ug.size, inverse, grid.size)
    boundary = shapely.boundary(grid.domain)
    outside = (shapely.length(shapely.difference(ug, grid.domain))
               + 0.5 * shapely.length(shapely.intersection(ug, boundary))) / total
    return Allocation(matrix=matrix, source_ids=gdf["source_id"].to_numpy(),
                      outside_fraction=outside[inverse])


def allocate_areas(gdf, grid: Grid, proxies: dict) -> Allocation:
    """Polygons by exact area × proxy weight, normalised within each polygon.

    The weight of cell *c* for polygon *p* with proxy raster values ``v_k`` over pixels ``k`` is
    ``Σ_k v_k · area(k ∩ p ∩ c) / area(k)``, divided by the same sum over the whole polygon, so
    the part of the polygon outside the grid keeps its share (reported as outside the domain).
    A polygon whose proxy is zero everywhere falls back to area weights and is listed in
    :attr:`Allocation.fallback`. ``proxies`` maps the names in the ``proxy`` column to
    :class:`grids.proxy.Proxy` objects.
    """
    _check_crs(gdf, grid)
    geoms = gdf.geometry.to_numpy()
    names = gdf["proxy"].to_numpy()
    first, inverse = _unique_geometries(geoms, names)
    ug, un = _to_local(geoms[first], grid), names[first]
    world_grid, grid = grid, _local_grid(grid)  # overlays relative to the corner
    cells, tree = _cell_tree(grid)
    rows_all, cols_all, vals_all = [], [], []
    fallback_unique: list[int] = []
    outside = np.zeros(ug.size)
    for name in np.unique(un):
        idx = np.flatnonzero(un == name)
        polys = ug[idx]
        proxy = proxies[name]
        # the proxy must cover each polygon: weights are unknown where it does not, and that part
        # would silently take the covered part's share (possibly pushing outside mass inside)
        extent = _to_local(np.array([proxy.extent(grid.crs)]), world_grid)[0]
        uncovered = shapely.area(shapely.difference(polys, extent))
        # a raster reprojected to the grid has curved (densified) edges while a polygon's
        # reprojected edges stay straight: a polygon sharing the raster's edge leaves a sliver
        # of well under a millimetre's width, which is not a coverage gap
        same_crs = proxy.crs().equals(grid.crs)
        tol = 1e-9 * shapely.area(polys) if same_crs else 1e-3 * shapely.length(polys)
        bad = uncovered > tol
        if bad.any():
            j = int(first[idx[np.flatnonzero(bad)[0]]])
            raise GeometryError(proxy.path, f"proxy raster {name!r} does not cover the polygon "
                                f"of an area source ({uncovered[bad][0] / 1e6:.3f} km² outside "
                                "the raster)", source_id=str(gdf["source_id"].iloc[j]),
                                expected="a proxy raster covering every polygon that uses it")
        pix_geoms, pix_values, pix_areas = proxy.pixels(grid.crs)
        pix_geoms = _to_local(pix_geoms, world_grid)
        ptree = shapely.STRtree(pix_geoms)
        p_i, k_i = ptree.query(polys, predicate="intersects")
        parts = shapely.intersection(polys[p_i], pix_geoms[k_i])
        density = pix_values[k_i] / pix_areas[k_i]
        w_parts = density * shapely.area(parts)
        w_total = np.bincount(p_i, weights=w_parts, minlength=idx.size)
        w_out = np.bincount(p_i, weights=density * shapely.area(
            shapely.difference(parts, grid.domain)), minlength=idx.size)
        outside[idx] = np.divide(w_out, w_total, out=np.zeros(idx.size), where=w_total > 0)
        good = w_parts > 0
        parts, p_i, density = parts[good], p_i[good], density[good]
        c_j, c_i = tree.query(parts, predicate="intersects")
        w = density[c_j] * shapely.area(shapely.intersection(parts[c_j], cells[c_i]))
        has = w_total > 0
        ok = w > 0
        rows_all.append(c_i[ok])
        cols_all.append(idx[p_i[c_j[ok]]])
        vals_all.append(w[ok] / w_total[p_i[c_j[ok]]])
        empty = np.flatnonzero(~has)
        if empty.size:  # proxy all zero inside these polygons: area weights
            fallback_unique.extend(idx[empty].tolist())
            fp = polys[empty]
            a_j, a_i = tree.query(fp, predicate="intersects")
            a = shapely.area(shapely.intersection(fp[a_j], cells[a_i]))
            ok = a > 0
            rows_all.append(a_i[ok])
            cols_all.append(idx[empty[a_j[ok]]])
            vals_all.append(a[ok] / shapely.area(fp)[a_j[ok]])
            outside[idx[empty]] = (shapely.area(shapely.difference(fp, grid.domain))
                                   / shapely.area(fp))
    rows = np.concatenate(rows_all) if rows_all else np.array([], dtype=np.int64)
    cols = np.concatenate(cols_all) if cols_all else np.array([], dtype=np.int64)
    vals = np.concatenate(vals_all) if vals_all else np.array([], dtype=float)
    matrix = _expand(rows, cols, vals, ug.size, inverse, grid.size)
    fb_set = set(fallback_unique)
    fallback = tuple(str(s) for s, u in zip(gdf["source_id"], inverse, strict=True) if u in fb_set)
    return Allocation(matrix=matrix, source_ids=gdf["source_id"].to_numpy(),
                      outside_fraction=outside[inverse], fallback=fallback)


#: bump when an allocation method changes its results: cached matrices of older versions are
#: then ignored
ALLOCATION_VERSION = "3"


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def allocation_key(gdf, kind: str, grid: Grid, proxies: dict | None) -> str:
    """Content hash of what an allocation depends on: the geometries in order (and the proxy
    name of each area source), the grid, the proxy rasters' bytes and the method version.

    Activity, fuels, factors and ids do not enter: changing a source's attributes keeps the key.
    """
    h = hashlib.sha256()
    h.update(f"tongyuan-allocation-{ALLOCATION_VERSION}|{kind}|".encode())
    h.update(json.dumps(grid.describe(), sort_keys=True).encode())
    h.update(grid.crs.to_wkt().encode())
    wkb = shapely.to_wkb(gdf.geometry.to_numpy(), hex=False)
    h.update(np.array([len(w) for w in wkb], dtype=np.int64).tobytes())
    h.update(b"".join(wkb))
    if kind == "area":
        names = [str(n) for n in gdf["proxy"].to_numpy()]
        h.update("\x1f".join(names).encode())
        for name in sorted(set(names)):
            proxy = (proxies or {}).get(name)
            if proxy is not None and Path(proxy.path).exists():
                h.update(f"{name}={_file_digest(proxy.path)}".encode())
    return h.hexdigest()


def _load_cached(path: Path, n: int, grid: Grid) -> tuple[sp.csr_matrix, np.ndarray,
                                                          np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            matrix = sp.csc_matrix((z["data"], z["indices"], z["indptr"]),
                                   shape=tuple(z["shape"])).tocsr()
            outside, fallback = z["outside"], z["fallback"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # unreadable (a killed write): recompute
    if matrix.shape != (grid.size, n) or outside.shape != (n,):
        return None
    return matrix, outside, fallback


def _store(path: Path, alloc: Allocation) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    csc = alloc.matrix.tocsc()
    pos = {s: i for i, s in enumerate(alloc.source_ids)}
    fallback = np.array([pos[s] for s in alloc.fallback], dtype=np.int64)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, data=csc.data, indices=csc.indices, indptr=csc.indptr,
                 shape=np.array(csc.shape), outside=alloc.outside_fraction, fallback=fallback)
        os.replace(tmp, path)  # readers see a whole file or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class CacheStats:
    """What :func:`allocate` did per source kind: ``hit`` or ``computed``."""

    kinds: dict[str, str] = field(default_factory=dict)


def allocate(gdf, grid: Grid, proxies: dict | None = None, cache_dir: str | Path | None = None,
             stats: CacheStats | None = None) -> Allocation:
    """Allocate an activity table of mixed kinds; columns follow the table's row order.

    With ``cache_dir``, each source kind's matrix is stored under the content hash of its
    geometries, the grid and the proxies (:func:`allocation_key`) and reused when they have not
    changed, so a new activity value reuses every matrix and a moved road rebuilds only the
    lines. ``stats`` records per kind whether the cache was hit.
    """
    kinds = gdf["kind"].to_numpy()
    parts: list[tuple[np.ndarray, Allocation]] = []
    for kind, fn in (("point", allocate_points), ("line", allocate_lines), ("area", allocate_areas)):
        pos = np.flatnonzero(kinds == kind)
        if pos.size == 0:
            continue
        sub = gdf.iloc[pos]
        ids = sub["source_id"].to_numpy()
        cached = path = None
        if cache_dir is not None:
            _check_crs(sub, grid)
            path = Path(cache_dir) / f"{kind}-{allocation_key(sub, kind, grid, proxies)}.npz"
            cached = _load_cached(path, len(sub), grid) if path.exists() else None
        if cached is not None:
            matrix, outside, fb = cached
            alloc = Allocation(matrix=matrix, source_ids=ids, outside_fraction=outside,
                               fallback=tuple(str(ids[i]) for i in fb))
        else:
            alloc = fn(sub, grid, proxies or {}) if kind == "area" else fn(sub, grid)
            if path is not None:
                _store(path, alloc)
        if stats is not None:
            stats.kinds[kind] = "hit" if cached is not None else "computed"
        parts.append((pos, alloc))
    n = len(gdf)
    if not parts:
        return Allocation(matrix=sp.csr_matrix((grid.size, n)), source_ids=np.array([], dtype=object),
                          outside_fraction=np.zeros(n))
    order = np.concatenate([p for p, _ in parts])
    stacked = sp.hstack([a.matrix for _, a in parts], format="csc")
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.arange(n)
    matrix = stacked[:, perm].tocsr()
    outside = np.concatenate([a.outside_fraction for _, a in parts])[perm]
    fallback = tuple(s for _, a in parts for s in a.fallback)
    return Allocation(matrix=matrix, source_ids=gdf["source_id"].to_numpy(),
                      outside_fraction=outside, fallback=fallback)
