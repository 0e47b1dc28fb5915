from pathlib import Path

import numpy as np
import pyproj
import pytest
import shapely

from grids.allocate import allocate
from grids.grid import Grid
from pipeline.config import load_config
from pipeline.steps import read_inputs
from sources.errors import ConfigError
from tests.world import lcc_world


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
    with pytest.raises(ConfigError, match="neither projected"):
        Grid.from_config({"crs": "EPSG:4978", "x0": 0, "y0": 0, "dx": 1, "dy": 1, "nx": 1, "ny": 1})
    with pytest.raises(ConfigError, match="latitudes -90..90"):
        Grid.from_config({"crs": "EPSG:4326", "x0": 120, "y0": 80, "dx": 1, "dy": 1, "nx": 2,
                          "ny": 20})
    with pytest.raises(ConfigError, match="must be positive"):
        Grid.from_config({"crs": "EPSG:32651", "x0": 0, "y0": 0, "dx": 0, "dy": 1, "nx": 1,
                          "ny": 1})


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
    from grids.cache import CacheStats

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
    from grids.cache import CacheStats

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


def test_lambert_grid_from_griddesc_allocates_and_conserves_mass(world):
    from pipeline.steps import load_tables

    crs, x0, y0 = lcc_world(world)
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

    lcc_world(world)
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


# ----------------------------------------------------------------- regular-grid fast paths, dask

def _reference_lines(geoms, grid):
    """Line fractions by shapely overlay with every cell box (edge pieces half to each side)."""
    cells = grid.cell_polygons()
    ref = np.zeros((grid.size, len(geoms)))
    for j, line in enumerate(geoms):
        total = line.length
        for c, box in enumerate(cells):
            piece = shapely.intersection(line, box)
            on_edge = shapely.intersection(piece, box.boundary).length
            ref[c, j] = (piece.length - 0.5 * on_edge) / total
    return ref


def test_lines_cut_in_numpy_match_shapely_overlay():
    """The numpy cutter against a brute-force shapely overlay: random lines, lines along inner
    and outer cell edges, through cell corners, multi-part lines and lines leaving the grid."""
    from grids.allocate import allocate_lines

    g = Grid.from_config({"crs": "EPSG:32651", "x0": 300000, "y0": 3400000, "dx": 1000,
                          "dy": 500, "nx": 5, "ny": 4})
    rng = np.random.default_rng(7)
    wkts = ["LINESTRING (301000 3400200, 301000 3401700)",            # on an inner x edge
            "LINESTRING (300300 3401000, 302700 3401000)",            # on an inner y edge
            "LINESTRING (300000 3400100, 300000 3400900)",            # on the west domain edge
            "LINESTRING (300000 3400000, 303000 3401500)",            # through corners
            "LINESTRING (299500 3400250, 305500 3400250)",            # leaves both sides
            "LINESTRING (302500 3400100, 302500 3400100.5, 302600 3400900)",
            "MULTILINESTRING ((300100 3400100, 301900 3401900), (303100 3400400, 304900 3400400))"]
    for _ in range(25):
        xy = np.column_stack([rng.uniform(299000, 306000, 4), rng.uniform(3399500, 3402500, 4)])
        wkts.append(shapely.LineString(xy).wkt)
    gdf = _lines(g, wkts)
    a = allocate_lines(gdf, g)
    ref = _reference_lines(gdf.geometry.to_numpy(), g)
    np.testing.assert_allclose(a.matrix.toarray(), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.outside_fraction, 1 - ref.sum(axis=0), rtol=0, atol=1e-12)
    # the line on x = 301 000 (1 500 m): half to each side, by row
    col = a.matrix[:, 0].toarray().ravel()
    assert col[[0, 1, 5, 6, 10, 11, 15, 16]] == pytest.approx(
        [0.1, 0.1, 1 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 15, 1 / 15], abs=1e-15)
    assert a.outside_fraction[2] == pytest.approx(0.5) and a.outside_fraction[4] == \
        pytest.approx(1 / 6)


def test_rectilinear_proxy_overlay_equals_pixel_polygons(tmp_path):
    """North-up rasters in the grid's CRS are overlaid as rectangles in numpy; the result equals
    the general pixel-polygon overlay (used for reprojected rasters) to rounding."""
    import rasterio
    from rasterio.transform import from_origin

    from grids.overlay import AreaMeasure, local_grid, pixel_weights, rectilinear_weights
    from grids.proxy import Proxy

    g = Grid.from_config({"crs": "EPSG:32651", "x0": 0, "y0": 0, "dx": 1000, "dy": 1000,
                          "nx": 6, "ny": 5})
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 10, (16, 20))
    values[values < 2] = 0
    path = tmp_path / "p.tif"
    with rasterio.open(path, "w", driver="GTiff", width=20, height=16, count=1, dtype="float64",
                       crs="EPSG:32651", transform=from_origin(-1130, 5370, 430, 430)) as dst:
        dst.write(values, 1)
    polys = np.array([shapely.Point(2400, 2100).buffer(1800, 7),
                      shapely.box(500, 500, 5500, 1500),
                      shapely.Polygon([(-800, -700), (6700, 300), (3000, 5100)]),
                      shapely.box(1000, 1000, 2000, 2000),
                      # a hole, a clockwise exterior, two parts
                      shapely.Point(3000, 2500).buffer(2000).difference(
                          shapely.Point(3100, 2400).buffer(700)),
                      shapely.Polygon([(200, 200), (200, 4200), (1300, 4200), (1300, 200)]),
                      shapely.MultiPolygon([shapely.box(4100, 300, 4900, 800),
                                            shapely.box(5100, 3300, 6400, 4800)])])
    proxy = Proxy("p", str(path))
    vals, transform, _ = proxy.read()
    fast = rectilinear_weights(polys, vals, transform, local_grid(g))
    slow = pixel_weights(polys, *proxy.pixels(g.crs), g, AreaMeasure(g))

    def dense(t):
        p, c, w = t
        out = np.zeros((len(polys), g.size + 1))
        np.add.at(out, (p, np.where(c < 0, g.size, c)), w)
        return out

    f, s = dense(fast), dense(slow)
    assert f[:, -1].sum() > 0  # some weight lies beyond the grid
    np.testing.assert_allclose(f, s, rtol=1e-12, atol=1e-9 * s.max())


def test_chunked_allocation_is_bit_identical_on_every_scheduler(world, tables, monkeypatch):
    """Chunks of sources computed by dask threads or processes give the same matrix, bit for
    bit, as one chunk computed in this process."""
    import grids.allocate as ga

    activity, _, _ = read_inputs(load_config(world), tables)
    one = allocate(activity, tables.grid, tables.proxies, scheduler="synchronous")
    monkeypatch.setattr(ga, "MIN_CHUNK", {"point": 1, "line": 1, "area": 1})
    monkeypatch.setattr(ga, "scheduler_workers", lambda s: 3)  # 6 chunks per kind
    for scheduler in ("threads", "processes", "synchronous"):
        _same(one, allocate(activity, tables.grid, tables.proxies, scheduler=scheduler))


def test_build_on_a_distributed_local_cluster_is_bit_identical(world, prefect_harness, tmp_path):
    """A build whose allocation runs on a dask.distributed LocalCluster of 2 worker processes
    writes the same files, bit for bit, as the default build."""
    import xarray as xr
    from distributed import LocalCluster

    from pipeline.flows import build_inventory

    day = ("2024-03-01", "2024-03-01")
    local = build_inventory(str(world), out_dir=str(tmp_path / "a"), period=day)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        remote = build_inventory(str(world), out_dir=str(tmp_path / "b"), period=day,
                                 scheduler=cluster.scheduler_address)
    assert {n: c["allocation"] for n, c in remote.cache.items()} == {
        "points": "computed", "lines": "computed", "areas": "computed"}
    for name in ("annual.nc", "hourly/20240301.nc"):
        a = xr.open_dataset(Path(local.build_dir) / name)
        b = xr.open_dataset(Path(remote.build_dir) / name)
        with a, b:
            for v in a.data_vars:
                np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=f"{name}: {v}")


# ----------------------------------------------------------------- lon/lat grids

def test_lonlat_cell_areas_are_on_the_ellipsoid():
    """An octant bounded by the equator and two meridians has geodesic edges, so GeographicLib
    (pyproj.Geod) gives its area exactly: one cell of 90° × 90° must match it; a 0.01° cell
    over Shanghai matches a densified geodesic polygon; the globe sums to the WGS84 area."""
    geod = pyproj.Geod(ellps="WGS84")
    octant = Grid.from_config({"crs": "EPSG:4326", "x0": 0, "y0": 0, "dx": 90, "dy": 90,
                               "nx": 1, "ny": 1})
    a, _ = geod.polygon_area_perimeter([0, 90, 45], [0, 0, 90])
    assert octant.cell_area_m2[0, 0] == pytest.approx(abs(a), rel=1e-12)
    globe = Grid.from_config({"crs": "EPSG:4326", "x0": -180, "y0": -90, "dx": 1, "dy": 1,
                              "nx": 360, "ny": 180})
    assert globe.cell_area_m2.sum() == pytest.approx(8 * abs(a), rel=1e-12)
    sh = Grid.from_config({"crs": "EPSG:4326", "x0": 121.4, "y0": 31.2, "dx": 0.01, "dy": 0.01,
                           "nx": 2, "ny": 3})
    lon = np.r_[np.linspace(121.41, 121.42, 2001), np.linspace(121.42, 121.41, 2001)]
    lat = np.r_[np.full(2001, 31.22), np.full(2001, 31.23)]
    ref, _ = geod.polygon_area_perimeter(lon, lat)
    assert sh.cell_area_m2[2, 1] == pytest.approx(abs(ref), rel=1e-9)
    assert sh.units == "degree" and sh.is_geographic
    lon2, lat2 = sh.lonlat()
    assert lon2[0, 0] == pytest.approx(121.405) and lat2[2, 0] == pytest.approx(31.225)


def _lonlat_world(world, dx=0.01):
    """The fixture world on a lon/lat grid of ``dx`` degrees covering it."""
    tr = pyproj.Transformer.from_crs(32651, 4326, always_xy=True)
    lon, lat = tr.transform([299_000, 305_000], [3_399_000, 3_404_000])
    x0, y0 = (round(float(np.floor(v / dx) * dx), 6) for v in (lon[0], lat[0]))
    nx, ny = int(np.ceil((lon[1] - x0) / dx)), int(np.ceil((lat[1] - y0) / dx))
    text = world.read_text()
    start = text.index("grid:")
    end = text.index("\n", start)
    world.write_text(text[:start] + f"grid: {{crs: 'EPSG:4326', x0: {x0!r}, y0: {y0!r}, dx: {dx}, "
                     f"dy: {dx}, nx: {nx}, ny: {ny}, name: LL001}}" + text[end:])
    return x0, y0, nx, ny


def test_lonlat_grid_allocates_by_true_length_and_area(world):
    """On a lon/lat grid: points by cell, lines by geodesic length, polygons by ellipsoidal area
    (proxy raster in UTM, reprojected); every source's shares plus outside sum to 1."""
    import geopandas as gpd

    from grids.allocate import allocate_areas, allocate_lines
    from grids.proxy import Proxy
    from pipeline.steps import load_tables

    x0, y0, nx, ny = _lonlat_world(world)
    cfg = load_config(world)
    tables = load_tables(cfg)
    g = tables.grid
    assert g.is_geographic and (g.nx, g.ny) == (nx, ny)
    activity, _, _ = read_inputs(cfg, tables)
    assert activity.crs.equals(g.crs)
    a = allocate(activity, g, tables.proxies)
    inside = np.asarray(a.matrix.sum(axis=0)).ravel()
    np.testing.assert_allclose(inside + a.outside_fraction, 1.0, rtol=0, atol=1e-12)
    # a meridian segment: its shares are its geodesic lengths per cell
    geod = g.crs.get_geod()
    lon = x0 + 0.0123
    line = gpd.GeoDataFrame({"source_id": ["L"], "kind": ["line"]}, crs=g.crs,
                            geometry=[shapely.LineString([(lon, y0 + 0.005), (lon, y0 + 0.025)])])
    col = allocate_lines(line, g).matrix[:, 0].toarray().ravel()
    parts = [geod.inv(lon, y0 + a0, lon, y0 + a1)[2] for a0, a1 in
             ((0.005, 0.01), (0.01, 0.02), (0.02, 0.025))]
    ix = 1
    assert col[[ix, nx + ix, 2 * nx + ix]] == pytest.approx(np.array(parts) / sum(parts),
                                                             rel=1e-12)
    # a polygon on a proxy of uniform density per m² (pixel value = its ellipsoidal area; a
    # lon/lat pixel's value is spread over its m²): shares are ellipsoidal areas per cell
    import rasterio
    from rasterio.transform import from_origin

    path = world.parent / "uniform_ll.tif"
    pix = Grid.from_config({"crs": "EPSG:4326", "x0": x0, "y0": y0, "dx": 0.001, "dy": 0.001,
                            "nx": 40, "ny": 40}).cell_area_m2[::-1]  # north-up rows
    with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=1, dtype="float64",
                       crs="EPSG:4326", transform=from_origin(x0, y0 + 0.04, 0.001, 0.001)) as d:
        d.write(pix, 1)
    box = shapely.box(x0 + 0.003, y0 + 0.004, x0 + 0.013, y0 + 0.027)
    poly = gpd.GeoDataFrame({"source_id": ["A"], "kind": ["area"], "proxy": ["u"]}, crs=g.crs,
                            geometry=[box])
    col = allocate_areas(poly, g, {"u": Proxy("u", str(path))}).matrix[:, 0].toarray().ravel()

    def geo_area(x_a, x_b, y_a, y_b):
        return Grid.from_config({"crs": "EPSG:4326", "x0": x_a, "y0": y_a, "dx": x_b - x_a,
                                 "dy": y_b - y_a, "nx": 1, "ny": 1}).cell_area_m2[0, 0]

    rows = [(0.004, 0.01), (0.01, 0.02), (0.02, 0.027)]
    want = np.array([[geo_area(x0 + xa, x0 + xb, y0 + ya, y0 + yb) for xa, xb in
                      ((0.003, 0.01), (0.01, 0.013))] for ya, yb in rows])
    got = np.array([[col[r * nx], col[r * nx + 1]] for r in range(3)])
    np.testing.assert_allclose(got, want / want.sum(), rtol=1e-8)


def test_lonlat_build_writes_cf_files_with_longitude_latitude(world, prefect_harness, tmp_path):
    import xarray as xr

    from pipeline.flows import build_inventory
    from tests.cf_checker import assert_cf_clean

    _lonlat_world(world)
    s = build_inventory(str(world), out_dir=str(tmp_path / "out"),
                        period=("2024-03-01", "2024-03-01"))
    path = Path(s.build_dir) / "hourly" / "20240301.nc"
    with xr.open_dataset(path) as ds:
        assert ds["x"].attrs["standard_name"] == "longitude"
        assert ds["y"].attrs["units"] == "degrees_north"
        assert ds["crs"].attrs["grid_mapping_name"] == "latitude_longitude"
        co2 = float((ds["CO2"] * ds["cell_area"] * 3600).sum())
    assert co2 == pytest.approx(s.totals.loc["CO2", "written_kg"], rel=1e-12)
    for f in (path, Path(s.build_dir) / "annual.nc"):
        assert_cf_clean(f)


def test_griddesc_lonlat_grid(world):
    (world.parent / "GRIDDESC").write_text(
        "' '\n'LATLON'\n  1  0.0  0.0  0.0  0.0  0.0\n' '\n'LL01'\n"
        "'LATLON'  120.9  30.7  0.01  0.01  6  5  1\n' '\n")
    text = world.read_text()
    start = text.index("grid:")
    world.write_text(text[:start] + "grid: {griddesc: GRIDDESC, name: LL01}"
                     + text[text.index("\n", start):])
    from pipeline.steps import load_tables

    g = load_tables(load_config(world)).grid
    assert g.is_geographic and (g.x0, g.y0, g.dx, g.nx, g.ny) == (120.9, 30.7, 0.01, 6, 5)
    assert g.crs.ellipsoid.semi_major_metre == 6_370_000.0
    assert g.cell_area_m2[0, 0] == pytest.approx(
        np.radians(0.01) * 6.37e6 ** 2 * (np.sin(np.radians(30.71)) - np.sin(np.radians(30.7))),
        rel=1e-12)


# ----------------------------------------------------------------- proxies chosen per sector

def test_proxy_per_sector_from_config(world):
    """Area sources without a proxy name take their sector's from ``sector_proxies``; a name in
    the file wins; none at all is an error naming file, row and source."""
    from pipeline.steps import load_tables
    from sources.errors import UnknownKeyError
    from tests.world import AREAS_CSV

    data = world.parent.parent / "data"
    rows = AREAS_CSV.replace(",population,", ",,", 1)  # A1 names no proxy
    (data / "areas.csv").write_text(rows)
    cfg = load_config(world)
    with pytest.raises(UnknownKeyError, match=r"areas.csv, row 1, source_id 'A1', column 'proxy':"
                       r" area source without a proxy.*sector_proxies: \{residential: NAME\}"):
        read_inputs(cfg, load_tables(cfg))
    world.write_text(world.read_text() + "sector_proxies: {residential: population}\n")
    cfg = load_config(world)
    tables = load_tables(cfg)
    activity, _, _ = read_inputs(cfg, tables)
    assert activity.set_index("source_id").loc["A1", "proxy"] == "population"
    a = allocate(activity, tables.grid, tables.proxies)
    j = int(np.flatnonzero(activity.source_id.to_numpy() == "A1")[0])
    col = a.matrix[:, j].toarray().ravel()
    assert col[0] == pytest.approx(0.75, abs=1e-12) and col[1] == pytest.approx(0.25, abs=1e-12)
    world.write_text(world.read_text().replace("{residential: population}",
                                               "{residential: builtup}"))
    with pytest.raises(ConfigError, match=r"sector_proxies names proxies \['builtup'\]"):
        load_config(world)
    world.write_text(world.read_text().replace("{residential: builtup}",
                                               "{housing: population}"))
    with pytest.raises(ConfigError, match=r"'sector_proxies' names unknown sectors \['housing'\]"):
        load_tables(load_config(world))
