"""Spatial allocation: sparse matrices from sources to grid cells.

Each ``allocate_*`` returns an :class:`Allocation` whose matrix ``A`` (cells × sources, CSR) holds
in column *j* the fractions of source *j* that fall in each cell; the column sum is the share of
the source inside the domain, and ``1 − sum`` is reported as outside-domain mass, never pushed
into edge cells. Work is vectorised with shapely 2 and an STRtree; identical geometries (a road
segment carrying several vehicle classes) are allocated once.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from affine import Affine

from grids.cache import CacheStats, allocation_key, read_cached, write_cached
from grids.grid import Grid, ellipsoid_area_from_equator, metres_per_square_degree
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


class _Measure:
    """Areas of corner-relative geometries in m²: planar on projected grids; on lon/lat grids
    degree² × the ellipsoid's m² per degree² at the geometry's centroid latitude (relative error
    ~(extent in radians)², 1e-8 for a 0.01° piece). Weights are normalised within each source,
    so this never changes a source's total, only its split between cells. (The rectangle path
    integrates the ellipsoid exactly instead, see :meth:`band`.)"""

    def __init__(self, world_grid: Grid):
        self.geo = world_grid.crs if world_grid.is_geographic else None
        self.y0 = world_grid.y0

    def scale(self, y_local: np.ndarray) -> np.ndarray | float:
        if self.geo is None:
            return 1.0
        return metres_per_square_degree(self.geo, np.asarray(y_local) + self.y0)

    def area(self, geoms: np.ndarray) -> np.ndarray:
        a = shapely.area(geoms)
        if self.geo is None:
            return a
        mid = np.nan_to_num(shapely.bounds(shapely.centroid(geoms))[..., 1])  # empty: NaN
        return a * self.scale(mid)

    def band(self, y_local: np.ndarray) -> np.ndarray:
        """Ellipsoidal area between the equator and these latitudes per degree of longitude
        [m²]: ``∮ (band(clamp(y)) − band(y0)) dx`` gives exact areas (lon/lat grids only)."""
        return ellipsoid_area_from_equator(self.geo, np.asarray(y_local) + self.y0) \
            * np.radians(1.0)

    @property
    def one_mm(self) -> float:
        """A millimetre in grid units (about, on a lon/lat grid)."""
        return 1e-3 if self.geo is None else 1e-3 / 111_000.0


def _window_cells(grid: Grid, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                           shapely.STRtree]:
    """Boxes (and flat indices, and an STRtree) of the cells under the geometries' bounding box
    only, so that a fine grid (10⁶ cells) never builds a polygon per cell."""
    if len(geoms) == 0:
        empty = np.array([], dtype=object)
        return empty, np.array([], dtype=np.int64), shapely.STRtree(empty)
    xmin, ymin, xmax, ymax = shapely.total_bounds(geoms)
    i0 = int(np.clip(np.floor((xmin - grid.x0) / grid.dx), 0, grid.nx))
    i1 = int(np.clip(np.floor((xmax - grid.x0) / grid.dx) + 1, 0, grid.nx))
    j0 = int(np.clip(np.floor((ymin - grid.y0) / grid.dy), 0, grid.ny))
    j1 = int(np.clip(np.floor((ymax - grid.y0) / grid.dy) + 1, 0, grid.ny))
    ii, jj = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1))
    ii, jj = ii.ravel(), jj.ravel()
    x, y = grid.x0 + ii * grid.dx, grid.y0 + jj * grid.dy
    cells = shapely.box(x, y, x + grid.dx, y + grid.dy)
    return cells, jj * grid.nx + ii, shapely.STRtree(cells)


def _segments(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Straight segments of (multi)linestrings: start points, end points, owning geometry."""
    if (shapely.get_type_id(geoms) == 1).all():  # LineStrings only: skip exploding
        parts, owner = geoms, np.arange(len(geoms))
    else:
        parts, owner = shapely.get_parts(geoms, return_index=True)
    xy, part = shapely.get_coordinates(parts, return_index=True)
    same = part[1:] == part[:-1]  # consecutive vertices of one part
    return xy[:-1][same], xy[1:][same], owner[part[:-1][same]]


def split_segments(a: np.ndarray, b: np.ndarray, grid: Grid
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut straight segments ``a → b`` at the grid's cell edges, exactly, in numpy.

    Coordinates are relative to the grid corner (cell edges at ``k·dx``, ``k·dy``). Returns, per
    piece, the segment it comes from, its flat cell index (``-1`` beyond the grid), where it
    starts and how much of the segment it spans (parameters ``t0`` and ``dt`` along ``a → b``;
    a segment's ``dt`` sum to 1 to rounding) and the piece's multiplicity ``half``: a piece lying
    exactly on the edge between two cells belongs to both closed boxes and is listed twice with
    ``half = 0.5`` (on the domain's own edge, half is outside), every other piece once with 1.
    """
    n = len(a)
    d = b - a
    cell_size = np.array([grid.dx, grid.dy])
    lo = np.floor(np.minimum(a, b) / cell_size) + 1          # first edge index strictly above min
    hi = np.ceil(np.maximum(a, b) / cell_size) - 1           # last edge index strictly below max
    count = np.maximum(hi - lo + 1, 0).astype(np.int64)      # crossings per axis
    seg_t, t = [np.arange(n), np.arange(n)], [np.zeros(n), np.ones(n)]
    for axis in (0, 1):
        c = count[:, axis]
        owner = np.repeat(np.arange(n), c)
        k = lo[owner, axis] + (np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c))
        seg_t.append(owner)
        t.append((k * cell_size[axis] - a[owner, axis]) / d[owner, axis])
    seg_t, t = np.concatenate(seg_t), np.clip(np.concatenate(t), 0.0, 1.0)
    order = np.lexsort((t, seg_t))
    seg_t, t = seg_t[order], t[order]
    ok = seg_t[1:] == seg_t[:-1]
    seg, t0, t1 = seg_t[:-1][ok], t[:-1][ok], t[1:][ok]
    share = t1 - t0
    keep = share > 0
    seg, t0, share = seg[keep], t0[keep], share[keep]
    mid = a[seg] + (t0 + 0.5 * share)[:, None] * d[seg]
    ij = np.floor(mid / cell_size).astype(np.int64)
    # a segment lying on a cell edge (constant x = k·dx, or y = k·dy): half to each side
    edge = np.zeros((len(seg), 2), dtype=bool)
    for axis in (0, 1):
        on = (d[seg, axis] == 0)
        kk = np.round(a[seg, axis] / cell_size[axis])
        edge[:, axis] = on & (kk * cell_size[axis] == a[seg, axis])
    on_edge = edge.any(axis=1)
    if on_edge.any():
        e = np.flatnonzero(on_edge)
        other = ij[e].copy()
        other[edge[e, 0], 0] -= 1
        other[edge[e, 1], 1] -= 1
        half = np.ones(len(seg))
        half[e] = 0.5
        seg = np.concatenate([seg, seg[e]])
        t0 = np.concatenate([t0, t0[e]])
        share = np.concatenate([share, share[e]])
        half = np.concatenate([half, half[e]])
        ij = np.concatenate([ij, other])
    else:
        half = np.ones(len(seg))
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < grid.nx) & (ij[:, 1] >= 0) & (ij[:, 1] < grid.ny)
    cell = np.where(inside, ij[:, 1] * grid.nx + ij[:, 0], -1)
    return seg, cell, t0, share, half


def allocate_lines(gdf, grid: Grid) -> Allocation:
    """Lines by exact length fraction per cell.

    The fraction of line *j* in cell *c* is ``length(line ∩ cell) / length(line)``. Each straight
    segment is cut at the cell edges in numpy (:func:`split_segments`: the grid is regular, so no
    cell polygons and no spatial index are needed). A piece lying exactly on the edge between two
    cells belongs to both closed boxes and is split half and half (on the domain's own edge, half
    is outside). The outside share is the length of the pieces beyond the grid over the line's
    length measured by shapely, so the ledger's balance checks the cutting.
    """
    _check_crs(gdf, grid)
    geoms = gdf.geometry.to_numpy()
    first, inverse = _unique_geometries(geoms)
    ug = geoms[first]
    a, b, owner = _segments(ug)
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
    a, b, world, grid = a - origin, b - origin, grid, _local_grid(grid)
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


def _ring_edges(polys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges of every ring of ``polys`` as (x1, y1, x2, y2) rows, with an orientation sign
    (+1 where the ring runs as an exterior should, counter-clockwise, or a hole clockwise) and
    the polygon each belongs to."""
    parts, owner = shapely.get_parts(polys, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    exterior = np.r_[True, ring_part[1:] != ring_part[:-1]]
    sign = np.where(shapely.is_ccw(rings) == exterior, 1.0, -1.0)
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[1:] == ring[:-1]
    edges = np.column_stack([xy[:-1][same], xy[1:][same]])
    e_ring = ring[:-1][same]
    e_poly = owner[ring_part[e_ring]]
    return edges, sign[e_ring], e_poly


def _column_edges(edges: np.ndarray, e_poly: np.ndarray, xe: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which edges reach into which column ``xe[i] < x < xe[i+1]``, grouped by (polygon,
    column): sorted group keys ``polygon · ncols + i``, each group's first position and size in
    ``members`` (edge indices). Vertical edges are left out: they add nothing to ∮ G dx."""
    ncols = len(xe) - 1
    lo_x = np.minimum(edges[:, 0], edges[:, 2])
    hi_x = np.maximum(edges[:, 0], edges[:, 2])
    i0 = np.clip(np.searchsorted(xe, lo_x, side="right") - 1, 0, ncols - 1)
    i1 = np.clip(np.searchsorted(xe, hi_x, side="left") - 1, 0, ncols - 1)
    n = np.where(hi_x > lo_x, np.maximum(i1 - i0 + 1, 0), 0)
    e = np.repeat(np.arange(len(edges)), n)
    col = i0[e] + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    key = e_poly[e] * ncols + col
    order = np.argsort(key, kind="stable")
    keys, first, count = np.unique(key[order], return_index=True, return_counts=True)
    return keys, first, count, e[order]


def _box_overlap_areas(edges: np.ndarray, sign: np.ndarray, members: np.ndarray,
                       first: np.ndarray, count: np.ndarray, x0: np.ndarray, y0: np.ndarray,
                       x1: np.ndarray, y1: np.ndarray, band=None) -> np.ndarray:
    """Exact area of polygon ∩ box for each box q, by Green's theorem, in numpy.

    With ``G(y) = clamp(y, y0, y1) − y0``, the area of P ∩ box is ``−∮ G dx`` along P's
    boundary restricted to the box's column ``x0 ≤ x ≤ x1`` (the column's sides have dx = 0).
    Each edge's integral is exact: the edge is cut where it enters the column and where y
    crosses y0 and y1, and G is linear on each piece. Box q sums over the edges
    ``members[first[q] : first[q] + count[q]]`` (those of its polygon reaching its column);
    same answer as a GEOS overlay, without building geometries.

    With ``band`` (a lon/lat grid: area from the equator per degree of longitude), ``G(y) =
    band(clamp(y, y0, y1)) − band(y0)`` and the result is the area on the ellipsoid [m²]; G is
    then smooth but not linear on a piece, and Simpson's rule integrates it (error ~(Δφ)⁴,
    1e-16 of a 0.01° piece).
    """
    q = np.repeat(np.arange(len(x0)), count)
    e = members[np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())]
    ax, ay, bx, by = edges[e, 0], edges[e, 1], edges[e, 2], edges[e, 3]
    dx, dy = bx - ax, by - ay
    with np.errstate(divide="ignore", invalid="ignore"):
        ta, tb = (x0[q] - ax) / dx, (x1[q] - ax) / dx
        t_lo = np.clip(np.fmin(ta, tb), 0.0, 1.0)
        t_hi = np.clip(np.fmax(ta, tb), 0.0, 1.0)
        u0, u1 = (y0[q] - ay) / dy, (y1[q] - ay) / dy
    u0 = np.clip(np.nan_to_num(u0, nan=0.0, posinf=0.0, neginf=0.0), t_lo, t_hi)
    u1 = np.clip(np.nan_to_num(u1, nan=0.0, posinf=0.0, neginf=0.0), t_lo, t_hi)
    ts = np.sort(np.column_stack([t_lo, u0, u1, t_hi]), axis=1)
    lo, hi = y0[q][:, None], y1[q][:, None]
    if band is None:
        g = np.clip(ay[:, None] + ts * dy[:, None], lo, hi) - lo
        integral = (np.diff(ts, axis=1) * 0.5 * (g[:, 1:] + g[:, :-1])).sum(axis=1) * dx
    else:
        tm = 0.5 * (ts[:, 1:] + ts[:, :-1])
        base = band(lo)
        g = band(np.clip(ay[:, None] + ts * dy[:, None], lo, hi)) - base
        gm = band(np.clip(ay[:, None] + tm * dy[:, None], lo, hi)) - base
        integral = (np.diff(ts, axis=1) * (g[:, 1:] + 4 * gm + g[:, :-1]) / 6).sum(axis=1) * dx
    return -np.bincount(q, weights=integral * sign[e], minlength=len(x0))


def _rectilinear_weights(polys: np.ndarray, values: np.ndarray, transform, grid: Grid,
                         measure: _Measure | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proxy weights of polygons on a raster whose pixels are axis-aligned boxes in the grid CRS.

    Pixel edges and cell edges together cut the plane into rectangles, each inside one pixel and
    one cell (or beyond the grid). A rectangle weighs value × area(rectangle ∩ polygon) / the
    pixel's area, the overlap computed exactly from the polygon's edges in the rectangle's column
    (:func:`_box_overlap_areas`): no geometry is built, and the work grows with the rectangles
    in the polygons' bounding boxes times the few edges per column. Coordinates are relative to
    the grid corner (``grid`` is the local grid, ``transform`` already shifted). Returns
    (polygon, cell or −1, weight) triples.
    """
    h, w = values.shape
    cols_x = transform.c + transform.a * np.arange(w + 1)     # pixel column edges
    rows_y = transform.f + transform.e * np.arange(h + 1)     # pixel row edges
    px = np.sort(cols_x)
    py = np.sort(rows_y)
    xe = np.unique(np.concatenate([px, np.arange(grid.nx + 1) * grid.dx]))
    ye = np.unique(np.concatenate([py, np.arange(grid.ny + 1) * grid.dy]))
    xe = xe[(xe >= px[0]) & (xe <= px[-1])]
    ye = ye[(ye >= py[0]) & (ye <= py[-1])]
    xm, ym = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
    # pixel column/row and cell column/row of each strip
    pcol = np.floor((xm - transform.c) / transform.a).astype(np.int64)
    prow = np.floor((ym - transform.f) / transform.e).astype(np.int64)
    ccol = np.floor(xm / grid.dx).astype(np.int64)
    crow = np.floor(ym / grid.dy).astype(np.int64)
    if measure is not None and measure.geo is not None:  # lon/lat: areas on the ellipsoid
        band = measure.band
        pix_area = abs(transform.a) * np.abs(np.diff(band(rows_y)))  # per pixel row [m²]

        def box_area(i, j):
            return (xe[i + 1] - xe[i]) * (band(ye[j + 1]) - band(ye[j]))
    else:
        band = None
        pix_area = np.full(h, abs(transform.a * transform.e))

        def box_area(i, j):
            return (xe[i + 1] - xe[i]) * (ye[j + 1] - ye[j])
    b = shapely.bounds(polys)
    i0 = np.clip(np.searchsorted(xe, b[:, 0], side="right") - 1, 0, len(xm))
    i1 = np.clip(np.searchsorted(xe, b[:, 2], side="left"), 0, len(xm))
    j0 = np.clip(np.searchsorted(ye, b[:, 1], side="right") - 1, 0, len(ym))
    j1 = np.clip(np.searchsorted(ye, b[:, 3], side="left"), 0, len(ym))
    ni, nj = np.maximum(i1 - i0, 0), np.maximum(j1 - j0, 0)
    edges, sign, e_poly = _ring_edges(polys)
    gkeys, gfirst, gcount, members = _column_edges(edges, e_poly, xe)
    out_p, out_c, out_w = [], [], []
    start = 0
    budget = 200_000  # rectangles per batch: bounds memory on fine grids and large polygons
    while start < len(polys):
        stop, total = start, 0
        while stop < len(polys) and (stop == start or total + ni[stop] * nj[stop] <= budget):
            total += ni[stop] * nj[stop]
            stop += 1
        sel = np.arange(start, stop)
        cnt = (ni * nj)[sel]
        p = np.repeat(sel, cnt)
        k = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        i = i0[p] + k % ni[p]
        j = j0[p] + k // ni[p]
        v = values[prow[j], pcol[i]]
        keep = v > 0
        p, i, j, v = p[keep], i[keep], j[keep], v[keep]
        key = p * len(xm) + i
        g = np.clip(np.searchsorted(gkeys, key), 0, max(len(gkeys) - 1, 0))
        found = gkeys[g] == key if len(gkeys) else np.zeros(len(key), dtype=bool)
        area = _box_overlap_areas(edges, sign, members, np.where(found, gfirst[g], 0),
                                  np.where(found, gcount[g], 0), xe[i], ye[j], xe[i + 1],
                                  ye[j + 1], band)
        # rectangles beyond the polygon (in its column) get 0 to rounding, ~1e-16 of the box
        good = area > 1e-12 * box_area(i, j)
        p, i, j = p[good], i[good], j[good]
        inside = (ccol[i] >= 0) & (ccol[i] < grid.nx) & (crow[j] >= 0) & (crow[j] < grid.ny)
        out_p.append(p)
        out_c.append(np.where(inside, crow[j] * grid.nx + ccol[i], -1))
        out_w.append(v[good] / pix_area[prow[j]] * area[good])
        start = stop
    return np.concatenate(out_p), np.concatenate(out_c), np.concatenate(out_w)


def _pixel_weights(polys: np.ndarray, pix_geoms: np.ndarray, pix_values: np.ndarray,
                   grid: Grid, measure: _Measure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proxy weights of polygons on arbitrary pixel polygons (a raster reprojected to the grid):
    polygon ∩ pixel, then ∩ cell with an STRtree. Same triples as :func:`_rectilinear_weights`."""
    pix_areas = measure.area(pix_geoms)
    ptree = shapely.STRtree(pix_geoms)
    p_i, k_i = ptree.query(polys, predicate="intersects")
    parts = shapely.intersection(polys[p_i], pix_geoms[k_i])
    density = pix_values[k_i] / pix_areas[k_i]
    w_parts = density * measure.area(parts)
    good = w_parts > 0
    parts, p_i, density, w_parts = parts[good], p_i[good], density[good], w_parts[good]
    w_out = density * measure.area(shapely.difference(parts, grid.domain))
    cells, cell_idx, tree = _window_cells(grid, parts)
    c_j, c_i = tree.query(parts, predicate="intersects")
    w = density[c_j] * measure.area(shapely.intersection(parts[c_j], cells[c_i]))
    ok = w > 0
    return (np.concatenate([p_i[c_j[ok]], p_i]), np.concatenate([cell_idx[c_i[ok]],
                                                                  np.full(p_i.size, -1)]),
            np.concatenate([w[ok], w_out]))


def allocate_areas(gdf, grid: Grid, proxies: dict) -> Allocation:
    """Polygons by exact area × proxy weight, normalised within each polygon.

    The weight of cell *c* for polygon *p* with proxy raster values ``v_k`` over pixels ``k`` is
    ``Σ_k v_k · area(k ∩ p ∩ c) / area(k)``, divided by the same sum over the whole polygon, so
    the part of the polygon outside the grid keeps its share (reported as outside the domain).
    A raster in the grid's CRS with north-up pixels is overlaid as rectangles in numpy
    (:func:`_rectilinear_weights`); any other raster through its reprojected pixel polygons.
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
    origin = np.array([world_grid.x0, world_grid.y0])
    measure = _Measure(world_grid)
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
            p_i, cell, w = _rectilinear_weights(polys, values, local, grid, measure)
        else:
            pix_geoms, pix_values = proxy.pixels(world_grid.crs)
            p_i, cell, w = _pixel_weights(polys, _to_local(pix_geoms, world_grid), pix_values,
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
            cells, cell_idx, tree = _window_cells(grid, fp)
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


def _allocate_kind(kind: str, gdf, grid: Grid, proxies: dict | None) -> Allocation:
    if kind == "point":
        return allocate_points(gdf, grid)
    if kind == "line":
        return allocate_lines(gdf, grid)
    return allocate_areas(gdf, grid, proxies or {})


def _scheduler_workers(scheduler: str | None) -> int:
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
    import dask

    if not jobs:
        return []
    distributed = scheduler is not None and "://" in scheduler
    client = None
    try:
        if distributed:
            from distributed import Client
            client = Client(scheduler, timeout="30s")
            workers = max(sum(client.nthreads().values()), 1)
        else:
            workers = _scheduler_workers(scheduler)
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
