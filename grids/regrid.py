"""Exact conservative regridding of gridded inventories onto any target grid.

A source cell is an area source of uniform density: the share of it in a target cell is
``area(source cell ∩ target cell) / area(source cell)``, computed exactly in the *source* grid's
CRS, where source cells are axis-aligned boxes and the target cells are polygons (their edges
sampled ``densify`` times between corners, from one lattice of nodes so that neighbouring
cells share their edges bit for bit and tile the domain without gap or overlap). The overlap
is :func:`grids.overlay.rectilinear_weights` (Green's theorem on the box edges), integrated on
the ellipsoid for a lon/lat source (MEIC 0.25°, EDGAR 0.1°) and in the plane for a projected
one (MEIC's Lambert product). No nearest-neighbour, no bilinear.

The share of each source cell beyond the target domain is measured separately, from the
domain's outline, so that ``Σ regridded + outside = Σ source`` is a real check (to ~1e-15
relative; :data:`MASS_RTOL` is enforced). The matrix (target cells × source cells, CSR) is
cached per (source grid, target grid) under a content key (:func:`regrid_key`), in the
:mod:`grids.cache` npz format: a second regrid of another species, month or year is one
sparse product.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj
import scipy.sparse as sp
import shapely
from affine import Affine

from grids.cache import CacheStats, read_cached, write_cached
from grids.grid import Grid
from grids.overlay import (
    AreaMeasure,
    _box_overlap_areas,
    _Boxes,
    _column_edges,
    local_grid,
    rectilinear_weights,
    to_local,
)
from sources.errors import MassBalanceError

#: bump when the method changes its matrices: cached ones of older versions are then ignored
REGRID_VERSION = "2"
#: Σ regridded + outside must equal Σ source to this relative tolerance
MASS_RTOL = 1e-12


@dataclass(frozen=True)
class Regridding:
    """The conservative map from a source grid to a target grid.

    Attributes
    ----------
    matrix : CSR (target.size × source.size): share of each source cell in each target cell [1]
    outside_fraction : per source cell, its share beyond the target domain [1], measured from
        the domain outline (not as ``1 − column sum``)
    source, target : the grids
    """

    matrix: sp.csr_matrix
    outside_fraction: np.ndarray
    source: Grid
    target: Grid

    def apply(self, mass: np.ndarray) -> tuple[np.ndarray, float]:
        """Regrid one field of masses per source cell.

        Parameters
        ----------
        mass : (source.ny, source.nx) mass per source cell, row 0 the southernmost [kg]

        Returns
        -------
        (target.ny, target.nx) mass per target cell [kg] and the mass beyond the target [kg];
        raises :class:`MassBalanceError` when they do not add up to the source to
        :data:`MASS_RTOL`.
        """
        m = np.asarray(mass, dtype=float).ravel()
        if m.size != self.source.size:
            raise ValueError(f"field has {m.size} cells, the source grid {self.source.size}")
        out = np.asarray(self.matrix @ m).reshape(self.target.shape)
        beyond = float(self.outside_fraction @ m)
        check_mass(float(m.sum()), float(out.sum()), beyond, self.source.name)
        return out, beyond


def check_mass(source_kg: float, regridded_kg: float, outside_kg: float, what: str) -> None:
    """Raise :class:`MassBalanceError` unless regridded + outside = source to MASS_RTOL."""
    scale = max(abs(source_kg), abs(regridded_kg) + abs(outside_kg))
    if scale > 0 and abs(regridded_kg + outside_kg - source_kg) > MASS_RTOL * scale:
        raise MassBalanceError(
            f"regridding {what}: regridded {regridded_kg:.17g} + outside {outside_kg:.17g} != "
            f"source {source_kg:.17g} (relative "
            f"{abs(regridded_kg + outside_kg - source_kg) / scale:.2e} > {MASS_RTOL:.0e})")


def regrid_key(source: Grid, target: Grid, densify: int) -> str:
    """Content key of a regridding: both grids (with their CRS as WKT), the sampling of the
    target's edges and the method version."""
    h = hashlib.sha256(f"tongyuan-regrid-{REGRID_VERSION}|{densify}|".encode())
    for g in (source, target):
        h.update(json.dumps(g.describe(), sort_keys=True).encode())
        h.update(g.crs.to_wkt().encode())
    return h.hexdigest()


def _lattice(target: Grid, crs: pyproj.CRS, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes of the target's cell edges, ``k`` per cell side, in ``crs``: (ny·k+1, nx·k+1).

    Only the nodes on cell edges (every ``k``-th row or column of the lattice) are projected;
    the others, inside the cells and never used, are NaN."""
    xs = target.x0 + np.arange(target.nx * k + 1) * (target.dx / k)
    ys = target.y0 + np.arange(target.ny * k + 1) * (target.dy / k)
    xx, yy = np.meshgrid(xs, ys)
    if target.crs.equals(crs):
        return xx, yy
    tr = pyproj.Transformer.from_crs(target.crs, crs, always_xy=True)
    if k == 1:
        return tuple(np.asarray(a) for a in tr.transform(xx, yy))  # type: ignore[return-value]
    rows, cols = np.arange(xx.shape[0]), np.arange(xx.shape[1])
    on_edge = (rows[:, None] % k == 0) | (cols[None, :] % k == 0)
    lx, ly = np.full(xx.shape, np.nan), np.full(xx.shape, np.nan)
    px, py = tr.transform(xx[on_edge], yy[on_edge])
    lx[on_edge], ly[on_edge] = px, py
    return lx, ly


def _ring_index(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of a cell's ring in the lattice, counter-clockwise, closed."""
    s = np.arange(k)
    rows = np.concatenate([np.zeros(k), s, np.full(k, k), k - s, [0]]).astype(np.int64)
    cols = np.concatenate([s, np.full(k, k), k - s, np.zeros(k), [0]]).astype(np.int64)
    return rows, cols


def target_rings(target: Grid, crs: pyproj.CRS, densify: int, lon_from: float | None = None
                 ) -> tuple[np.ndarray, shapely.Polygon]:
    """The target cells' rings (flat cell order, counter-clockwise in the target CRS, closed)
    as an (n cells, 4·k + 1, 2) array of coordinates in ``crs``, and the domain outline as a
    polygon in ``crs``; ``k`` = ``densify`` points per side when the CRSs differ, else 1.

    ``lon_from``: on a lon/lat ``crs``, longitudes below it are moved up by 360° (a source grid
    on 0..360°).
    """
    k = 1 if target.crs.equals(crs) else max(int(densify), 1)
    lx, ly = _lattice(target, crs, k)
    if lon_from is not None:
        lx = np.where(lx < lon_from, lx + 360.0, lx)
    dr, dc = _ring_index(k)
    iy, ix = np.divmod(np.arange(target.size), target.nx)
    r = iy[:, None] * k + dr[None, :]
    c = ix[:, None] * k + dc[None, :]
    rings = np.stack([lx[r, c], ly[r, c]], axis=-1)
    ny, nx = lx.shape
    br = np.concatenate([np.zeros(nx - 1), np.arange(ny - 1), np.full(nx - 1, ny - 1),
                         np.arange(ny - 1, 0, -1), [0]]).astype(np.int64)
    bc = np.concatenate([np.arange(nx - 1), np.full(ny - 1, nx - 1), np.arange(nx - 1, 0, -1),
                         np.zeros(ny - 1), [0]]).astype(np.int64)
    outline = shapely.Polygon(np.column_stack([lx[br, bc], ly[br, bc]]))
    return rings, outline


def target_polygons(target: Grid, crs: pyproj.CRS, densify: int, lon_from: float | None = None
                    ) -> tuple[np.ndarray, shapely.Polygon]:
    """The target cells (flat order) as shapely polygons in ``crs`` and the domain outline
    (:func:`target_rings`)."""
    rings, outline = target_rings(target, crs, densify, lon_from)
    return shapely.polygons(rings), outline


def _ring_areas(x: np.ndarray, y: np.ndarray, base: np.ndarray, band) -> np.ndarray:
    """Area of closed rings (rows of ``x``, ``y``, corner-relative source coordinates) by
    Green's theorem, ``|∮ (band(y) − band(base)) dx|`` with Simpson's rule on each straight
    edge [m²] (``band`` None: planar, ``G = y − base``); the same integrand as
    :func:`grids.overlay.rectilinear_weights` for a ring that stays inside one source box."""
    ym = 0.5 * (y[:, 1:] + y[:, :-1])
    if band is None:
        g, gm = y - base[:, None], ym - base[:, None]
    else:
        b0 = band(base)[:, None]
        g, gm = band(y) - b0, band(ym) - b0
    integral = (np.diff(x, axis=1) * (g[:, 1:] + 4 * gm + g[:, :-1]) / 6).sum(axis=1)
    return np.abs(integral)


def _cut_cell_weights(x: np.ndarray, y: np.ndarray, i_lo: np.ndarray, i_hi: np.ndarray,
                      j_lo: np.ndarray, j_hi: np.ndarray, win: Grid, band
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shares of target cells cut by source cell edges: ring × box overlaps by Green's theorem
    (:func:`grids.overlay._box_overlap_areas`, the integrand of
    :func:`~grids.overlay.rectilinear_weights`), from the ring arrays without building geometry.

    Parameters
    ----------
    x, y : (cells, ring points) corner-relative ring coordinates in the source CRS
    i_lo, i_hi, j_lo, j_hi : the source columns and rows under each ring's bounding box
    win : the source window (its cells are the boxes)
    band : the ellipsoid's area from the equator per degree of longitude (lon/lat), or None

    Returns
    -------
    ring index, window cell index, share of the window cell [1]
    """
    m = len(x)
    if m == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    n_e = x.shape[1] - 1
    edges = np.column_stack([x[:, :-1].ravel(), y[:, :-1].ravel(), x[:, 1:].ravel(),
                             y[:, 1:].ravel()])
    e_poly = np.repeat(np.arange(m), n_e)
    shoelace = (x[:, :-1] * y[:, 1:] - x[:, 1:] * y[:, :-1]).sum(axis=1)
    sign = np.where(shoelace >= 0, 1.0, -1.0)[e_poly]  # an exterior ring counter-clockwise
    xe = np.arange(win.nx + 1) * win.dx
    gkeys, gfirst, gcount, members = _column_edges(edges, e_poly, xe)
    i0, i1 = np.clip(i_lo, 0, win.nx - 1), np.clip(i_hi, 0, win.nx - 1)
    j0, j1 = np.clip(j_lo, 0, win.ny - 1), np.clip(j_hi, 0, win.ny - 1)
    ni, nj = i1 - i0 + 1, j1 - j0 + 1
    cnt = ni * nj
    p = np.repeat(np.arange(m), cnt)
    k = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    i = i0[p] + k % ni[p]
    j = j0[p] + k // ni[p]
    key = p * win.nx + i
    g = np.clip(np.searchsorted(gkeys, key), 0, max(len(gkeys) - 1, 0))
    found = gkeys[g] == key if len(gkeys) else np.zeros(len(key), dtype=bool)
    yb0, yb1 = j * win.dy, (j + 1) * win.dy
    area = _box_overlap_areas(edges, sign, members, np.where(found, gfirst[g], 0),
                              np.where(found, gcount[g], 0),
                              _Boxes(i * win.dx, yb0, (i + 1) * win.dx, yb1), band)
    box = win.dx * (yb1 - yb0) if band is None else win.dx * (band(yb1) - band(yb0))
    good = area > 1e-12 * box  # boxes beyond the ring (in its column) get 0 to rounding
    return p[good], (j * win.nx + i)[good], area[good] / box[good]


def _window(source: Grid, outline: shapely.Polygon) -> tuple[int, int, int, int]:
    """Source columns i0..i1 and rows j0..j1 (exclusive) under the outline's bounding box."""
    xmin, ymin, xmax, ymax = outline.bounds
    i0 = int(np.clip(np.floor((xmin - source.x0) / source.dx), 0, source.nx))
    i1 = int(np.clip(np.floor((xmax - source.x0) / source.dx) + 1, 0, source.nx))
    j0 = int(np.clip(np.floor((ymin - source.y0) / source.dy), 0, source.ny))
    j1 = int(np.clip(np.floor((ymax - source.y0) / source.dy) + 1, 0, source.ny))
    return i0, i1, j0, j1


def regrid_matrix(source: Grid, target: Grid, densify: int = 4) -> Regridding:
    """The exact conservative :class:`Regridding` from ``source`` to ``target``.

    A target cell that lies inside one source cell (most cells when the target is finer) has
    the share ``area(cell) / area(source cell)``, its area integrated on its own ring
    (:func:`_ring_areas`, no geometry built); the cells cut by source cell edges go through
    :func:`grids.overlay.rectilinear_weights`. Both integrate the same edges with the same rule,
    on the ellipsoid for a lon/lat source.

    Parameters
    ----------
    source : the inventory's grid (lon/lat in degrees, or projected), cells axis-aligned
    target : the build's grid (UTM, lon/lat, Lambert ...)
    densify : points per target cell side when the CRSs differ (a Lambert or UTM cell's
        straight side is a curve in lon/lat; 4 keeps the chord error far below 1e-9 of a 1 km
        cell)
    """
    lon_from = source.x0 if source.is_geographic and source.x0 + source.nx * source.dx > 180 \
        else None
    rings, outline = target_rings(target, source.crs, densify, lon_from)
    i0, i1, j0, j1 = _window(source, outline)
    matrix = sp.csr_matrix((target.size, source.size))
    outside = np.ones(source.size)
    if i1 <= i0 or j1 <= j0:
        return Regridding(matrix, outside, source, target)
    win = Grid(crs=source.crs, x0=source.x0 + i0 * source.dx, y0=source.y0 + j0 * source.dy,
               dx=source.dx, dy=source.dy, nx=i1 - i0, ny=j1 - j0, name=f"{source.name}-window")
    measure, lgrid = AreaMeasure(win), local_grid(win)
    band = measure.band if measure.geo is not None else None
    ones, transform = np.ones(win.shape), Affine(win.dx, 0.0, 0.0, 0.0, win.dy, 0.0)
    # corner-relative coordinates, as grids.overlay.to_local makes them
    x, y = rings[..., 0] - win.x0, rings[..., 1] - win.y0
    fx, fy = x.min(axis=1) / win.dx, y.min(axis=1) / win.dy
    ci, cj = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    hi_i = np.ceil(x.max(axis=1) / win.dx).astype(np.int64) - 1
    hi_j = np.ceil(y.max(axis=1) / win.dy).astype(np.int64) - 1
    beyond = (hi_i < 0) | (ci >= win.nx) | (hi_j < 0) | (cj >= win.ny)  # no source under it
    single = ~beyond & (np.maximum(hi_i, ci) == ci) & (np.maximum(hi_j, cj) == cj) \
        & (ci >= 0) & (cj >= 0) & (ci < win.nx) & (cj < win.ny)
    cut = np.flatnonzero(~beyond & ~single)
    one = np.flatnonzero(single)
    # whole cells inside one source cell: their own area over the source cell's
    base = cj[one] * win.dy
    area = _ring_areas(x[one], y[one], base, band)
    if band is None:
        box = np.full(one.size, win.dx * win.dy)
    else:
        box = win.dx * (band(base + win.dy) - band(base))
    p1, c1, w1 = one, cj[one] * win.nx + ci[one], area / box
    # cells cut by source edges: the exact polygon × box overlay
    p2, c2, w2 = _cut_cell_weights(x[cut], y[cut], ci[cut], hi_i[cut], cj[cut], hi_j[cut],
                                   win, band)
    ok = c2 >= 0
    p = np.concatenate([p1, cut[p2[ok]]])
    c = np.concatenate([c1, c2[ok]])
    w = np.concatenate([w1, w2[ok]])
    _, co, wo = rectilinear_weights(to_local(np.array([outline]), win), ones, transform, lgrid,
                                    measure)
    # window cell → source cell
    wy, wx = np.divmod(np.arange(win.size), win.nx)
    to_source = (wy + j0) * source.nx + (wx + i0)
    matrix = sp.csr_matrix((w, (p, to_source[c])), shape=(target.size, source.size))
    inside = np.bincount(co[co >= 0], weights=wo[co >= 0], minlength=win.size)
    outside[to_source] = np.clip(1.0 - inside, 0.0, 1.0)
    return Regridding(matrix, outside, source, target)


def cached_regridding(source: Grid, target: Grid, cache_dir: str | Path | None = None,
                      densify: int = 4, stats: CacheStats | None = None) -> Regridding:
    """:func:`regrid_matrix`, reused from ``cache_dir/regrid-<key>.npz`` when present (the npz
    format of :mod:`grids.cache`); ``stats`` records ``hit`` or ``computed`` under the source
    grid's name and the file name."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"regrid-{regrid_key(source, target, densify)}.npz"
        got = read_cached(path, source.size, target) if path.exists() else None
        if got is not None:
            if stats is not None:
                stats.kinds[source.name] = "hit"
                stats.files.append(path.name)
            return Regridding(got[0], got[1], source, target)
    reg = regrid_matrix(source, target, densify)
    if path is not None:
        write_cached(path, reg.matrix, reg.outside_fraction, np.array([], dtype=np.int64))
        if stats is not None:
            stats.files.append(path.name)
    if stats is not None:
        stats.kinds[source.name] = "computed"
    return reg
