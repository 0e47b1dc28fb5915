"""Region polygons ↔ cells (grids.regions) on a 4 × 3 grid of 1 km cells, answers by hand."""

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely

from grids.grid import Grid
from grids.regions import (
    OUTSIDE,
    read_regions,
    region_names,
    region_of_cells,
    region_of_points,
    region_weights,
)

CRS = pyproj.CRS.from_epsg(32651)
GRID = Grid(crs=CRS, x0=300_000, y0=3_400_000, dx=1000, dy=1000, nx=4, ny=3, name="T")
# West: columns 0-1, all rows; East: columns 2-3, rows 0-1 and half of row 2
WEST = shapely.box(300_000, 3_400_000, 302_000, 3_403_000)
EAST = shapely.box(302_000, 3_400_000, 304_000, 3_402_500)


def regions(**columns) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(columns, geometry=[WEST, EAST], crs=CRS)


def test_read_regions_fills_codes_and_names_and_repairs(tmp_path):
    bowtie = shapely.Polygon([(300_000, 3_400_000), (301_000, 3_401_000),
                              (301_000, 3_400_000), (300_000, 3_401_000)])
    path = tmp_path / "b.gpkg"
    gpd.GeoDataFrame({"name_en": ["A", "B"]}, geometry=[bowtie, EAST],
                     crs=CRS).to_file(path, layer="other")
    got = read_regions(path)  # no 'districts' layer: the first one
    assert list(got["district_code"]) == ["1", "2"] and list(got["name_zh"]) == ["", ""]
    assert got.geometry.is_valid.all()
    assert got.geometry.area.iloc[0] == 500_000  # both triangles of the bow tie
    assert read_regions(path, invent_codes=False) is None
    assert read_regions(None) is None and read_regions(tmp_path / "missing.gpkg") is None


def test_weights_names_and_cells():
    r = regions(district_code=["1", "2"], name_en=["West", ""], name_zh=["西", "东"])
    sparse = region_weights(GRID, r.to_crs("EPSG:4326"))
    assert sparse.shape == (12, 2) and sparse.format == "csr"
    w = sparse.toarray()
    # only the (cell, region) pairs that share area are stored (here slivers of the reprojection)
    assert sparse.nnz == np.count_nonzero(w) < w.size
    np.testing.assert_allclose(w[:, 0].reshape(3, 4)[:, :2], 1.0, atol=1e-6)
    np.testing.assert_allclose(w[:, 1].reshape(3, 4)[:, 2:], [[1, 1], [1, 1], [.5, .5]],
                               atol=1e-6)
    assert region_names(r) == ["West 西", "东"]
    cells = region_of_cells(region_weights(GRID, r), region_names(r))
    assert cells[0] == "West 西" and cells[3] == "东" and cells[11] == "东 (50%)"
    assert region_of_cells(w, region_names(r)) == cells  # dense weights name the same
    assert region_of_cells(np.zeros((2, 0)), []) == [OUTSIDE, OUTSIDE]


def test_overlapping_regions_count_a_cell_once():
    r = gpd.GeoDataFrame({"district_code": ["a", "b"]}, geometry=[WEST, WEST], crs=CRS)
    w = region_weights(GRID, r)
    np.testing.assert_allclose(w.sum(axis=1).reshape(3, 4)[:, :2], 1.0)
    np.testing.assert_allclose(w.toarray()[:6:4], 0.5)  # shared evenly


def test_region_of_points():
    r = regions(district_code=["W", "E"])
    src = gpd.GeoDataFrame(geometry=[shapely.Point(300_500, 3_400_500),
                                     shapely.Point(303_500, 3_402_800),
                                     shapely.box(302_100, 3_400_100, 302_900, 3_400_900)],
                           crs=CRS, index=[7, 7, 3])
    assert list(region_of_points(src, r.to_crs("EPSG:4326"))) == ["W", "", "E"]


def test_weights_take_inner_cells_whole_and_cut_only_the_crossed_ones():
    """A disc over a 40 × 30 grid: cells inside it weigh their own area, the others the area of
    their intersection with it, each pair as a brute-force intersection of every cell gives."""
    grid = Grid(crs=CRS, x0=300_000, y0=3_400_000, dx=100, dy=100, nx=40, ny=30, name="D")
    disc = shapely.Point(302_000, 3_401_500).buffer(1_200, quad_segs=64)
    w = region_weights(grid, gpd.GeoDataFrame({"district_code": ["d"]}, geometry=[disc],
                                              crs=CRS)).toarray()[:, 0]
    cells = grid.cell_polygons()
    want = shapely.area(shapely.intersection(disc, cells)) / (grid.dx * grid.dy)
    np.testing.assert_allclose(w, want, rtol=1e-12, atol=0)
    inside = shapely.contains_properly(disc, cells)
    assert 300 < inside.sum() < (want > 0).sum() < 600  # most cells whole, a ring of crossed
    np.testing.assert_allclose(w[inside], 1.0, rtol=1e-12)
    assert np.isclose(w.sum() * grid.dx * grid.dy, disc.area, rtol=1e-12)


@pytest.mark.parametrize("band_cells", [1, 170, 40 * 30])
def test_weights_are_the_same_whatever_the_band_of_rows(monkeypatch, band_cells):
    """The boxes are made a band of rows at a time (1 row, 4 rows with a short last band, the
    whole grid): the same weights, bit for bit, in the same flat cell order."""
    import grids.regions

    grid = Grid(crs=CRS, x0=300_000, y0=3_400_000, dx=100, dy=100, nx=40, ny=30, name="D")
    discs = [shapely.Point(302_000, 3_401_500).buffer(1_200), shapely.box(299_950, 3_400_050,
                                                                          301_020, 3_403_500)]
    r = gpd.GeoDataFrame({"district_code": ["d", "b"]}, geometry=discs, crs=CRS)
    whole = region_weights(grid, r)
    monkeypatch.setattr(grids.regions, "BAND_CELLS", band_cells)
    banded = region_weights(grid, r)
    np.testing.assert_array_equal(banded.toarray(), whole.toarray())
    banded = banded.toarray()
    cells = grid.cell_polygons()
    want = np.stack([shapely.area(shapely.intersection(d, cells)) for d in discs], axis=1)
    over = want.sum(axis=1) > grid.dx * grid.dy  # the overlap, scaled to sum to 1
    want[over] /= want[over].sum(axis=1, keepdims=True) / (grid.dx * grid.dy)
    np.testing.assert_allclose(banded, want / (grid.dx * grid.dy), rtol=1e-12, atol=1e-15)
