"""Exact overlays of geometries with a regular grid: numpy where the geometry allows,
shapely otherwise.

The pieces :mod:`grids.allocate` builds allocations from: line segments cut at cell edges
(:func:`split_segments`), polygon ∩ rectangle areas by Green's theorem on a raster's pixel and
cell edges (:func:`rectilinear_weights`), and the general polygon ∩ pixel ∩ cell overlay with an
STRtree (:func:`pixel_weights`). Overlays run on coordinates relative to the grid's lower-left
corner (:func:`to_local`, :func:`local_grid`); :class:`AreaMeasure` turns their areas into m².
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import shapely

from grids.grid import Grid, ellipsoid_area_from_equator, metres_per_square_degree


def to_local(geoms: np.ndarray, grid: Grid) -> np.ndarray:
    """Geometries relative to the grid's lower-left corner.

    Overlays of arbitrary polygons at projected coordinates of 10⁶ m lose ~10⁻⁸ of an area to
    rounding (5e-9 measured for a reprojected polygon on a Lambert grid); relative to the corner
    the coordinates are ~10⁴–10⁵ m and the error ~1e-10, well inside the ledger's 1e-9.

    Parameters
    ----------
    geoms : shapely geometries in the grid's CRS [grid units: m or degree]
    grid : the (world) grid whose corner ``(x0, y0)`` becomes the origin

    Returns
    -------
    The geometries shifted by ``(−x0, −y0)`` [grid units].
    """
    origin = np.array([grid.x0, grid.y0])
    return shapely.transform(geoms, lambda xy: xy - origin)


def local_grid(grid: Grid) -> Grid:
    """The same grid with its lower-left corner at the origin, for geometries from
    :func:`to_local` (cell edges at ``k·dx``, ``k·dy`` [grid units])."""
    return replace(grid, x0=0.0, y0=0.0)


class AreaMeasure:
    """Areas of corner-relative geometries in m².

    Planar on projected grids; on lon/lat grids degree² × the ellipsoid's m² per degree² at the
    geometry's centroid latitude (relative error ~(extent in radians)², 1e-8 for a 0.01° piece).
    Weights are normalised within each source, so this never changes a source's total, only its
    split between cells. (The rectangle path integrates the ellipsoid exactly instead, see
    :meth:`band`.)

    Parameters
    ----------
    world_grid : the grid in world coordinates (not :func:`local_grid`): its CRS tells whether
        areas are planar, its ``y0`` [degree] turns local latitudes back into true ones

    Attributes
    ----------
    geo : the geographic CRS of a lon/lat grid, None for a projected grid
    y0 : the grid's lower edge [grid units]
    """

    def __init__(self, world_grid: Grid):
        self.geo = world_grid.crs if world_grid.is_geographic else None
        self.y0 = world_grid.y0

    def scale(self, y_local: np.ndarray) -> np.ndarray | float:
        """Square metres per square grid unit at local latitudes ``y_local`` [m² degree⁻²]; 1.0
        on a projected grid."""
        if self.geo is None:
            return 1.0
        return metres_per_square_degree(self.geo, np.asarray(y_local) + self.y0)

    def area(self, geoms: np.ndarray) -> np.ndarray:
        """Area of each corner-relative geometry [m²] (0 for an empty one)."""
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


def window_cells(grid: Grid, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                          shapely.STRtree]:
    """Cell boxes under the geometries' joint bounding box only, so that a fine grid (10⁶ cells)
    never builds a polygon per cell.

    Parameters
    ----------
    grid : the grid, in the geometries' coordinates (a :func:`local_grid` for local ones)
    geoms : shapely geometries [grid units]

    Returns
    -------
    cells : the boxes of the cells in the window [grid units]
    index : their flat cell indices ``iy·nx + ix``
    tree : an STRtree over ``cells``
    """
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


def line_segments(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Straight segments of (multi)linestrings.

    Parameters
    ----------
    geoms : LineStrings or MultiLineStrings [grid units]

    Returns
    -------
    start, end : (n, 2) segment end points [grid units]
    owner : index into ``geoms`` of each segment's geometry
    """
    if (shapely.get_type_id(geoms) == 1).all():  # LineStrings only: skip exploding
        parts, owner = geoms, np.arange(len(geoms))
    else:
        parts, owner = shapely.get_parts(geoms, return_index=True)
    xy, part = shapely.get_coordinates(parts, return_index=True)
    same = part[1:] == part[:-1]  # consecutive vertices of one part
    return xy[:-1][same], xy[1:][same], owner[part[:-1][same]]


def split_segments(a: np.ndarray, b: np.ndarray, grid: Grid
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut straight segments ``a → b`` at the grid's cell edges, exactly, in numpy.

    A piece lying exactly on the edge between two cells belongs to both closed boxes and is
    listed twice with ``half = 0.5`` (on the domain's own edge, half is outside), every other
    piece once with 1.

    Parameters
    ----------
    a, b : (n, 2) segment start and end points relative to the grid corner [grid units]
    grid : the :func:`local_grid` (cell edges at ``k·dx``, ``k·dy``)

    Returns
    -------
    segment : per piece, the index of the segment it comes from
    cell : its flat cell index ``iy·nx + ix`` (``-1`` beyond the grid)
    t0 : where it starts, as the parameter along ``a → b`` [1]
    dt : how much of the segment it spans [1]; a segment's ``dt`` sum to 1 to rounding
    half : its multiplicity [1], 0.5 on a cell edge, else 1
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


@dataclass(frozen=True)
class _Boxes:
    """Axis-aligned boxes ``x0 ≤ x ≤ x1``, ``y0 ≤ y ≤ y1``, one per element [grid units]."""

    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray


def _box_overlap_areas(edges: np.ndarray, sign: np.ndarray, members: np.ndarray,
                       first: np.ndarray, count: np.ndarray, boxes: _Boxes,
                       band=None) -> np.ndarray:
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
    x0, y0, x1, y1 = boxes.x0, boxes.y0, boxes.x1, boxes.y1
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


def rectilinear_weights(polys: np.ndarray, values: np.ndarray, transform, grid: Grid,
                         measure: AreaMeasure | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proxy weights of polygons on a raster whose pixels are axis-aligned boxes in the grid CRS.

    Pixel edges and cell edges together cut the plane into rectangles, each inside one pixel and
    one cell (or beyond the grid). A rectangle weighs value × area(rectangle ∩ polygon) / the
    pixel's area, the overlap computed exactly from the polygon's edges in the rectangle's column
    (:func:`_box_overlap_areas`): no geometry is built, and the work grows with the rectangles
    in the polygons' bounding boxes times the few edges per column.

    Parameters
    ----------
    polys : Polygons or MultiPolygons relative to the grid corner (:func:`to_local`)
        [grid units]
    values : (rows, columns) proxy raster values [proxy unit, e.g. persons per pixel]
    transform : the raster's north-up affine transform (``b = d = 0``), already shifted to the
        grid corner [grid units]
    grid : the :func:`local_grid`
    measure : on a lon/lat grid, its :class:`AreaMeasure`: overlaps are then integrated on the
        ellipsoid [m²]; None (or a projected grid's measure) for planar areas

    Returns
    -------
    polygon : index into ``polys`` of each weight
    cell : flat cell index ``iy·nx + ix``, or −1 for the part beyond the grid
    weight : ``Σ value × area(piece) / area(pixel)`` [proxy unit]
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
                                  np.where(found, gcount[g], 0),
                                  _Boxes(xe[i], ye[j], xe[i + 1], ye[j + 1]), band)
        # rectangles beyond the polygon (in its column) get 0 to rounding, ~1e-16 of the box
        good = area > 1e-12 * box_area(i, j)
        p, i, j = p[good], i[good], j[good]
        inside = (ccol[i] >= 0) & (ccol[i] < grid.nx) & (crow[j] >= 0) & (crow[j] < grid.ny)
        out_p.append(p)
        out_c.append(np.where(inside, crow[j] * grid.nx + ccol[i], -1))
        out_w.append(v[good] / pix_area[prow[j]] * area[good])
        start = stop
    return np.concatenate(out_p), np.concatenate(out_c), np.concatenate(out_w)


def _within_box(bounds: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Whether each (xmin, ymin, xmax, ymax) row of ``bounds`` lies within the box (rows of,
    or one) ``box``."""
    box = np.broadcast_to(box, bounds.shape)
    return ((bounds[:, 0] >= box[:, 0]) & (bounds[:, 1] >= box[:, 1])
            & (bounds[:, 2] <= box[:, 2]) & (bounds[:, 3] <= box[:, 3]))


def pixel_weights(polys: np.ndarray, pix_geoms: np.ndarray, pix_values: np.ndarray,
                  grid: Grid, measure: AreaMeasure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proxy weights of polygons on arbitrary pixel polygons (a raster reprojected to the grid).

    Polygon ∩ pixel with an STRtree of the pixels, then each piece ∩ cell with an STRtree of the
    cells under it (:func:`window_cells`); a piece's part beyond the grid goes to cell −1.

    Parameters
    ----------
    polys : Polygons or MultiPolygons [grid units]
    pix_geoms : the pixels as polygons, in the same coordinates as ``polys`` [grid units]
    pix_values : one proxy value per pixel [proxy unit, e.g. persons per pixel]
    grid : the grid in the same coordinates (:func:`local_grid` for corner-relative ones)
    measure : turns areas into m² (:class:`AreaMeasure` of the world grid)

    Returns
    -------
    The same (polygon, cell or −1, weight [proxy unit]) triples as
    :func:`rectilinear_weights`.
    """
    pix_areas = measure.area(pix_geoms)
    ptree = shapely.STRtree(pix_geoms)
    p_i, k_i = ptree.query(polys, predicate="intersects")
    # a pixel inside a polygon is its own piece: only the pixels its boundary crosses are cut
    # (an intersection costs the polygon's vertices, hundreds for a district, per pixel)
    shapely.prepare(polys)  # the containment tests below then index each polygon's edges once
    whole = shapely.contains_properly(polys[p_i], pix_geoms[k_i])
    parts = pix_geoms[k_i].copy()
    cut = ~whole
    parts[cut] = shapely.intersection(polys[p_i[cut]], pix_geoms[k_i[cut]])
    density = pix_values[k_i] / pix_areas[k_i]
    part_areas = pix_areas[k_i].copy()
    part_areas[cut] = measure.area(parts[cut])
    w_parts = density * part_areas
    good = w_parts > 0
    parts, p_i, density, w_parts = parts[good], p_i[good], density[good], w_parts[good]
    # the domain and the cells are boxes: a piece whose bounds lie within one is inside it
    bounds = shapely.bounds(parts)
    beyond = ~_within_box(bounds, np.array(grid.bounds))
    w_out = np.zeros(parts.size)
    w_out[beyond] = density[beyond] * measure.area(shapely.difference(parts[beyond],
                                                                       grid.domain))
    cells, cell_idx, tree = window_cells(grid, parts)
    c_j, c_i = tree.query(parts, predicate="intersects")
    a = part_areas[good][c_j]  # a piece inside a cell (it may touch the next ones: area 0)
    cut = ~_within_box(bounds[c_j], shapely.bounds(cells[c_i]))
    a[cut] = measure.area(shapely.intersection(parts[c_j[cut]], cells[c_i[cut]]))
    w = density[c_j] * a
    ok = w > 0
    return (np.concatenate([p_i[c_j[ok]], p_i]), np.concatenate([cell_idx[c_i[ok]],
                                                                  np.full(p_i.size, -1)]),
            np.concatenate([w[ok], w_out]))
