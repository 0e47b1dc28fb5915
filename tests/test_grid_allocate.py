import numpy as np
import pyproj
import pytest
import shapely

from grids.allocate import allocate
from grids.grid import Grid
from pipeline.build import read_inputs
from pipeline.config import load_config
from sources.errors import ConfigError


def default_grid():
    return Grid.from_config({"crs": "EPSG:32651", "x0": 295000, "y0": 3392000, "dx": 1000,
                             "dy": 1000, "nx": 130, "ny": 138})


def test_default_grid_covers_shanghai():
    g = default_grid()
    assert g.bounds == (295000, 3392000, 425000, 3530000)
    lon, lat = g.lonlat()
    assert lon.shape == lat.shape == (138, 130)
    # Shanghai: E 120°52'–122°12', N 30°40'–31°53' lies inside the grid's lon/lat range
    assert lon.min() < 120.87 and lon.max() > 122.2
    assert lat.min() < 30.67 and lat.max() > 31.88
    assert g.transform * (0, 0) == (295000, 3392000)
    attrs = g.cf_grid_mapping()
    assert attrs["grid_mapping_name"] == "transverse_mercator"
    assert pyproj.CRS.from_wkt(attrs["crs_wkt"]).to_epsg() == 32651
    polys = g.cell_polygons()
    assert len(polys) == g.size and polys[131].bounds == (296000, 3393000, 297000, 3394000)


def test_cell_index_half_open():
    g = default_grid()
    idx = g.cell_index(np.array([295000, 295999.9, 296000, 425000, 294999]),
                       np.array([3392000, 3392000, 3393000, 3392000, 3392000]))
    assert idx.tolist() == [0, 0, 131, -1, -1]


def test_bad_grid_is_refused():
    with pytest.raises(ConfigError, match="not projected"):
        Grid.from_config({"crs": "EPSG:4326", "x0": 0, "y0": 0, "dx": 1, "dy": 1, "nx": 1, "ny": 1})
    with pytest.raises(ConfigError, match="must be positive"):
        Grid.from_config({"crs": "EPSG:32651", "x0": 0, "y0": 0, "dx": 0, "dy": 1, "nx": 1, "ny": 1})


@pytest.fixture()
def alloc(world, tables):
    activity, _, _ = read_inputs(load_config(world), tables)
    return activity, allocate(activity, tables.grid, tables.proxies)


def column(alloc_result, sid):
    activity, a = alloc_result
    j = int(np.flatnonzero(activity.source_id.to_numpy() == sid)[0])
    col = a.matrix[:, j].toarray().ravel()
    return col, a.outside_fraction[j]


def test_points(alloc):
    col, out = column(alloc, "P1")
    assert col[0] == 1 and col.sum() == 1 and out == 0
    col, out = column(alloc, "P2")
    assert col[2 * 4 + 3] == 1 and out == 0
    col, out = column(alloc, "P3")
    assert col.sum() == 0 and out == 1


def test_line_crossing_cells_by_length(alloc):
    col, out = column(alloc, "L1")
    assert col[0] == pytest.approx(0.5, abs=1e-15) and col[1] == pytest.approx(0.5, abs=1e-15)
    assert out == 0


def test_line_partly_outside_goes_to_ledger_not_edge(alloc):
    col, out = column(alloc, "L2")
    assert col[1 * 4 + 3] == pytest.approx(0.25, abs=1e-15)
    assert col.sum() == pytest.approx(0.25, abs=1e-15)
    assert out == pytest.approx(0.75, abs=1e-15)


def test_line_on_cell_edge_is_not_double_counted(alloc):
    col, out = column(alloc, "L3")
    assert col.sum() == pytest.approx(1.0, abs=1e-12)
    assert col[0] == pytest.approx(0.5) and col[1] == pytest.approx(0.5)


def test_area_proxy_weights(alloc):
    col, out = column(alloc, "A1")
    assert col[0] == pytest.approx(0.75, abs=1e-12) and col[1] == pytest.approx(0.25, abs=1e-12)
    assert out == 0


def test_polygon_straddling_domain_edge(alloc):
    col, out = column(alloc, "A2")
    assert col[2 * 4 + 3] == pytest.approx(0.5, abs=1e-12)
    assert col.sum() == pytest.approx(0.5, abs=1e-12)
    assert out == pytest.approx(0.5, abs=1e-12)


def test_zero_proxy_falls_back_to_area_and_is_reported(alloc):
    _, a = alloc
    col, out = column(alloc, "A3")
    assert col[1 * 4 + 2] == pytest.approx(1.0, abs=1e-12)
    assert a.fallback == ("A3",)


def test_columns_sum_with_outside_to_one(alloc):
    _, a = alloc
    np.testing.assert_allclose(a.inside_fraction + a.outside_fraction, 1.0, atol=1e-12)


def _lines(grid, wkts):
    import geopandas as gpd

    return gpd.GeoDataFrame({"source_id": [f"X{i}" for i in range(len(wkts))], "kind": "line"},
                            geometry=shapely.from_wkt(wkts), crs=grid.crs)


def fixture_grid():
    return Grid.from_config({"crs": "EPSG:32651", "x0": 300000, "y0": 3400000, "dx": 1000,
                             "dy": 1000, "nx": 4, "ny": 3})


def test_line_partly_on_an_edge_splits_only_that_part():
    """1000 m inside cell (0,0), then 500 m on the edge x = 301 000 between cells (0,0), (0,1)."""
    from grids.allocate import allocate_lines

    g = fixture_grid()
    a = allocate_lines(_lines(g, ["LINESTRING (300000 3400500, 301000 3400500, 301000 3401000)"]),
                       g)
    col = a.matrix[:, 0].toarray().ravel()
    assert col[0] == pytest.approx(1250 / 1500, abs=1e-12)
    assert col[1] == pytest.approx(250 / 1500, abs=1e-12)
    assert a.outside_fraction[0] == pytest.approx(0, abs=1e-12)


def test_line_on_the_domain_edge_is_half_outside():
    from grids.allocate import allocate_lines

    g = fixture_grid()
    a = allocate_lines(_lines(g, ["LINESTRING (300200 3400000, 300800 3400000)"]), g)
    assert a.matrix[:, 0].sum() == pytest.approx(0.5, abs=1e-12)
    assert a.outside_fraction[0] == pytest.approx(0.5, abs=1e-12)


def test_polygon_beyond_its_proxy_raster_is_refused(world, tables):
    """A polygon reaching beyond the raster would hand the uncovered part's share to the covered
    part (possibly pushing outside-domain mass inside): refused, naming the source."""
    from sources.errors import GeometryError

    data = world.parent.parent / "data"
    (data / "areas.csv").write_text(
        "source_id,sector,fuel,technology,activity,activity_unit,proxy,geometry\n"
        'A9,residential,natural_gas,stove,1000,m**3,population,"POLYGON ((303000 3402000, '
        '307000 3402000, 307000 3403000, 303000 3403000, 303000 3402000))"\n')
    activity, _, _ = read_inputs(load_config(world), tables)
    with pytest.raises(GeometryError, match=r"population.tif, source_id 'A9': proxy raster "
                       r"'population' does not cover the polygon of an area source \(1.000 km²"):
        allocate(activity, tables.grid, tables.proxies)


def _same(a, b):
    assert (a.matrix != b.matrix).nnz == 0  # bit-identical entries
    np.testing.assert_array_equal(a.outside_fraction, b.outside_fraction)
    assert a.fallback == b.fallback
    assert list(a.source_ids) == list(b.source_ids)


def test_allocation_cache_reuses_unchanged_geometries(world, tables, tmp_path):
    from grids.allocate import CacheStats

    activity, _, _ = read_inputs(load_config(world), tables)
    cache = tmp_path / "cache"
    fresh = allocate(activity, tables.grid, tables.proxies)
    first, again = CacheStats(), CacheStats()
    a1 = allocate(activity, tables.grid, tables.proxies, cache_dir=cache, stats=first)
    assert first.kinds == {"point": "computed", "line": "computed", "area": "computed"}
    assert len(list(cache.glob("*.npz"))) == 3
    # new activity values and ids, same geometries: every matrix comes from the cache
    changed = activity.copy()
    changed["activity"] = changed["activity"] * 2
    a2 = allocate(changed, tables.grid, tables.proxies, cache_dir=cache, stats=again)
    assert again.kinds == {"point": "hit", "line": "hit", "area": "hit"}
    _same(fresh, a1)
    _same(fresh, a2)
    assert "A3" in a2.fallback  # positions of fallback sources survive the round trip
    # move one stack: only the points are recomputed, and into the new cell
    moved = activity.copy()
    j = int(np.flatnonzero(moved["source_id"].to_numpy() == "P2")[0])
    moved.loc[j, "geometry"] = shapely.Point(300_500, 3_400_500)
    st = CacheStats()
    a3 = allocate(moved, tables.grid, tables.proxies, cache_dir=cache, stats=st)
    assert st.kinds == {"point": "computed", "line": "hit", "area": "hit"}
    assert a3.matrix[0, j] == 1.0


def test_allocation_cache_survives_a_corrupt_file_and_sees_proxy_changes(world, tables,
                                                                         tmp_path):
    from grids.allocate import CacheStats

    activity, _, _ = read_inputs(load_config(world), tables)
    cache = tmp_path / "cache"
    ref = allocate(activity, tables.grid, tables.proxies, cache_dir=cache)
    for f in cache.glob("line-*.npz"):
        f.write_bytes(b"killed mid-write")
    st = CacheStats()
    _same(ref, allocate(activity, tables.grid, tables.proxies, cache_dir=cache, stats=st))
    assert st.kinds["line"] == "computed"
    # a new proxy raster (same name, other values) must not reuse the area matrix
    proxy_path = tables.proxies["population"].path
    import rasterio
    with rasterio.open(proxy_path) as src:
        data, profile = src.read(1), src.profile
    with rasterio.open(proxy_path, "w", **profile) as dst:
        dst.write(data * 2 + (data == 0) * 0.5, 1)
    st = CacheStats()
    allocate(activity, tables.grid, tables.proxies, cache_dir=cache, stats=st)
    assert st.kinds == {"point": "hit", "line": "hit", "area": "computed"}


GRIDDESC = """' '
'LAM_CN'
  2  25.000  40.000  110.000  110.000  34.000
' '
'T3KM'
'LAM_CN'  {x0}  {y0}  3000.000  3000.000  4  3  1
' '
"""


def _lcc_world(world):
    """The fixture world on a 3 km Lambert grid (CMAQ China projection, FACTS §4)."""
    from grids.grid import griddesc_crs

    crs = griddesc_crs(2, 25, 40, 110, 110, 34)
    x, y = pyproj.Transformer.from_crs(32651, crs, always_xy=True).transform(300_000, 3_400_000)
    x0, y0 = np.floor(x / 3000) * 3000 - 3000, np.floor(y / 3000) * 3000 - 3000
    (world.parent / "GRIDDESC").write_text(GRIDDESC.format(x0=x0, y0=y0))
    text = world.read_text()
    start = text.index("grid:")
    end = text.index("\n", start)
    world.write_text(text[:start] + "grid: {griddesc: GRIDDESC, name: T3KM}" + text[end:])
    return crs, x0, y0


def test_lambert_grid_from_griddesc_allocates_and_conserves_mass(world):
    from pipeline.build import load_tables

    crs, x0, y0 = _lcc_world(world)
    cfg = load_config(world)
    tables = load_tables(cfg)
    g = tables.grid
    assert (g.nx, g.ny, g.dx, g.dy, g.x0, g.y0, g.name) == (4, 3, 3000, 3000, x0, y0, "T3KM")
    cf = g.cf_grid_mapping()
    assert cf["grid_mapping_name"] == "lambert_conformal_conic"
    assert list(cf["standard_parallel"]) == [25.0, 40.0]
    assert cf["longitude_of_central_meridian"] == 110.0
    assert cf["latitude_of_projection_origin"] == 34.0
    assert g.crs.ellipsoid.semi_major_metre == 6_370_000.0
    activity, _, _ = read_inputs(cfg, tables)
    assert activity.crs.equals(g.crs)  # inputs are reprojected on ingest
    a = allocate(activity, g, tables.proxies)
    inside = np.asarray(a.matrix.sum(axis=0)).ravel()
    np.testing.assert_allclose(inside + a.outside_fraction, 1.0, rtol=0, atol=1e-9)
    # P1 sits in the cell its Lambert coordinates say
    x, y = pyproj.Transformer.from_crs(32651, crs, always_xy=True).transform(300_500, 3_400_500)
    cell = int((y - y0) // 3000) * 4 + int((x - x0) // 3000)
    j = int(np.flatnonzero(activity.source_id.to_numpy() == "P1")[0])
    assert a.matrix[cell, j] == 1.0


def test_griddesc_errors_name_the_file(world, tmp_path):
    from grids.grid import read_griddesc

    _lcc_world(world)
    path = world.parent / "GRIDDESC"
    with pytest.raises(ConfigError, match=r"no grid 'NOPE'; grids in the file: \['T3KM'\]"):
        read_griddesc(path, "NOPE")
    bad = tmp_path / "GRIDDESC"
    bad.write_text(path.read_text().replace("  2  25.000", "  7  25.000"))
    with pytest.raises(ConfigError, match="GDTYP 7 is not supported"):
        read_griddesc(bad, "T3KM")
    text = world.read_text().replace("{griddesc: GRIDDESC, name: T3KM}",
                                     "{griddesc: GRIDDESC, name: T3KM, dx: 500}")
    world.write_text(text)
    with pytest.raises(ConfigError, match="give either griddesc"):
        load_config(world)
