"""Region polygons ↔ grid cells: the one reader of a boundaries file and the one set of weights.

A boundaries file (config ``boundaries:``) is a GeoPackage or any vector file whose layer
``districts`` (else its first layer) holds one polygon per region with the columns
``district_code``, ``name_zh`` and ``name_en``.

- :func:`read_regions` reads it, repairs invalid geometries and fills missing columns;
- :func:`region_weights` gives the exact share of each cell inside each region;
- :func:`region_of_cells` names the region holding most of each cell;
- :func:`region_names` gives display names;
- :func:`region_of_points` gives the code of the region holding each source.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import scipy.sparse as sp
import shapely

from grids.grid import Grid

CODE = "district_code"
NAMES = ("name_zh", "name_en")
OUTSIDE = "outside districts"
#: :func:`region_weights` makes and indexes the boxes of about this many cells at a time
BAND_CELLS = 2**17


def read_regions(path: str | Path | None, layer: str = "districts", *,
                 invent_codes: bool = True) -> gpd.GeoDataFrame | None:
    """Region polygons (``district_code``, ``name_zh``, ``name_en``, geometry), or None.

    Parameters
    ----------
    path : GeoPackage (or any vector file) with the regions; None or a missing file → None
    layer : layer name, used when the file has it (else the first layer is read)
    invent_codes : a file without ``district_code`` gets the codes ``"1"``, ``"2"``, … (for
        tables and maps); with False such a file gives None, for callers that select regions
        by their code and must not match invented ones

    Returns
    -------
    geopandas.GeoDataFrame or None
        One row per region, index 0..n-1, geometries made valid, in the file's CRS. Missing
        name columns are empty strings.
    """
    if path is None or not Path(path).exists():
        return None
    try:
        gdf = gpd.read_file(path, layer=layer)
    except Exception:  # noqa: BLE001 - a file without that layer: take its first layer
        gdf = gpd.read_file(path)
    if CODE not in gdf.columns:
        if not invent_codes:
            return None
        gdf[CODE] = [f"{i + 1}" for i in range(len(gdf))]
    for col in NAMES:
        if col not in gdf.columns:
            gdf[col] = ""
    gdf["geometry"] = shapely.make_valid(gdf.geometry.values)
    return gdf.reset_index(drop=True)


def region_weights(grid: Grid, regions: gpd.GeoDataFrame) -> sp.csr_array:
    """Exact area weights of the grid cells in each region.

    ``w[cell, r] = area(cell ∩ region r) / area(cell)``, from shapely 2 vectorised
    intersections of the STRtree candidate pairs, in the grid CRS; a cell inside a region is
    taken whole and only the cells its boundary crosses are intersected (as
    :func:`grids.overlay.pixel_weights` does: on a 100 m grid of the city, 1.79 M cells, the
    intersections took 23 s), a band of rows at a time (its 1.79 M boxes and their index took
    0.8 GB at once). Where region polygons overlap, a cell's weights are scaled down
    so that they sum to at most 1 (no mass counted twice). Sparse: a cell lies in one region
    or a few (dense, 16 districts on that grid were 0.23 GB; sparse, 22 MB).

    Parameters
    ----------
    grid : the grid
    regions : region polygons in any CRS (see :func:`read_regions`)

    Returns
    -------
    scipy.sparse.csr_array
        (ny·nx, n regions) weights [1], flat cell index ``iy·nx + ix``; ``t @ w`` sums a
        (…, cells) array by region, ``w.sum(axis=1)`` is each cell's share in any region.
    """
    geoms = regions.to_crs(grid.crs).geometry.to_numpy()
    shapely.prepare(geoms)  # the containment test indexes each region's edges once
    cell_ids, region_ids, values = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    band = max(1, BAND_CELLS // grid.nx)
    for iy in range(0, grid.ny, band):  # a band of rows at a time: never 1.79 M boxes at once
        cells = grid.cell_polygons(slice(iy, iy + band))
        r_idx, c_idx = shapely.STRtree(cells).query(geoms, predicate="intersects")
        if r_idx.size:
            area = shapely.area(cells[c_idx])
            cut = ~shapely.contains_properly(geoms[r_idx], cells[c_idx])
            area[cut] = shapely.area(shapely.intersection(geoms[r_idx[cut]],
                                                          cells[c_idx[cut]]))
            cell_ids.append(iy * grid.nx + c_idx)  # each (region, cell) pair once
            region_ids.append(r_idx)
            values.append(area / (grid.dx * grid.dy))
    w = sp.csr_array((np.concatenate(values), (np.concatenate(cell_ids),
                                               np.concatenate(region_ids))),
                     shape=(grid.size, len(geoms)))
    w.eliminate_zeros()  # cells that only touch a region's edge
    total = w.sum(axis=1)
    over = total > 1.0
    if over.any():
        w.data /= np.repeat(np.where(over, total, 1.0), np.diff(w.indptr))  # row by row
    return w


def region_of_cells(weights: np.ndarray | sp.sparray, names: list[str]) -> list[str]:
    """Name of the region holding most of each cell (with its share if < 99.5 %).

    Parameters
    ----------
    weights : (cells, regions) weights from :func:`region_weights` (sparse or dense)
    names : one name per region (see :func:`region_names`)

    Returns
    -------
    list of str
        Per cell: the name, ``"name (40%)"``, or :data:`OUTSIDE`.
    """
    out = []
    if not weights.shape[1] or not weights.shape[0]:
        best, shares = np.zeros(weights.shape[0], int), np.zeros(weights.shape[0])
    elif sp.issparse(weights):
        best = np.asarray(weights.argmax(axis=1)).ravel()
        shares = weights.max(axis=1).toarray().ravel()
    else:
        best = weights.argmax(axis=1)
        shares = weights[np.arange(weights.shape[0]), best]
    for r, share in zip(best, shares, strict=True):
        if share <= 0:
            out.append(OUTSIDE)
        elif share < 0.995:
            out.append(f"{names[r]} ({share:.0%})")
        else:
            out.append(names[r])
    return out


def region_names(regions: gpd.GeoDataFrame) -> list[str]:
    """``name_en name_zh`` or, without names, the code, per region."""
    names = []
    for _, r in regions.iterrows():
        en, zh = str(r.get("name_en") or "").strip(), str(r.get("name_zh") or "").strip()
        names.append(f"{en} {zh}".strip() or str(r[CODE]))
    return names


def region_of_points(points_gdf: gpd.GeoDataFrame | gpd.GeoSeries,
                     regions: gpd.GeoDataFrame) -> np.ndarray:
    """``district_code`` of the region holding each geometry's representative point.

    Parameters
    ----------
    points_gdf : sources (points, lines or polygons) with a CRS; a line or polygon is placed at
        its representative point, a point at itself
    regions : region polygons in any CRS (see :func:`read_regions`)

    Returns
    -------
    numpy.ndarray
        One code (str) per row of ``points_gdf``, ``""`` outside every region; where regions
        overlap, the first one in file order.
    """
    geometry = points_gdf.geometry if isinstance(points_gdf, gpd.GeoDataFrame) else points_gdf
    pts = gpd.GeoDataFrame(geometry=geometry.representative_point(), crs=points_gdf.crs)
    pts = pts.reset_index(drop=True)
    joined = gpd.sjoin(pts, regions[[CODE, "geometry"]].to_crs(points_gdf.crs), how="left",
                       predicate="within")
    codes = joined.loc[~joined.index.duplicated(keep="first"), CODE].reindex(pts.index)
    return codes.fillna("").astype(str).to_numpy()
