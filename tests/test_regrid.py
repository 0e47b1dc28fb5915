"""Regional background (issue 16): exact regridding, readers, merge rules, time, the demo build.

Fixtures are small enough to check by hand: a 2 × 2 source grid of 3 m cells over a 3 × 3
target of 2 m cells, a mask cutting a column of cells in half, a sector both inventories have
(replaced inside the mask) and one only the regional inventory has (kept).
"""

import calendar

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
import xarray as xr

from grids.grid import Grid, ellipsoid_area_from_equator
from grids.regrid import cached_regridding, regrid_matrix
from pipeline.regional import (
    RegionalPart,
    double_counted,
    mask_fraction,
    merge,
    regional_factors,
    regional_sector,
)
from sources.gridded import (
    GriddedField,
    GriddedSource,
    GridSpec,
    load_mapping,
    read_gridded,
    sector_split,
    to_kg_per_cell,
)

UTM = pyproj.CRS.from_epsg(32651)
LL = pyproj.CRS.from_epsg(4326)
SRC = Grid(crs=UTM, x0=0, y0=0, dx=3, dy=3, nx=2, ny=2, name="src")
TGT = Grid(crs=UTM, x0=0, y0=0, dx=2, dy=2, nx=3, ny=3, name="tgt")
MASS = np.array([[1.0, 2.0], [3.0, 4.0]])  # row 0 south


def test_two_by_two_onto_three_by_three_exact():
    r = regrid_matrix(SRC, TGT)
    # target cell (iy, ix) overlaps source cells by 2×2, 2×1, 1×1 m pieces of 9 m² cells
    want = np.array([[4 * 1, 2 * 1 + 2 * 2, 4 * 2],
                     [2 * 1 + 2 * 3, 1 + 2 + 3 + 4, 2 * 2 + 2 * 4],
                     [4 * 3, 2 * 3 + 2 * 4, 4 * 4]]) / 9
    out, beyond = r.apply(MASS)
    np.testing.assert_allclose(out, want, rtol=1e-15, atol=1e-15)
    assert beyond == 0.0 and abs(out.sum() - 10.0) <= 1e-12 * 10


def test_mass_beyond_the_target_goes_outside():
    tgt = Grid(crs=UTM, x0=1, y0=1, dx=2, dy=2, nx=3, ny=3, name="shifted")  # covers 1..7
    r = regrid_matrix(SRC, tgt)
    np.testing.assert_allclose(r.outside_fraction, [5 / 9, 3 / 9, 3 / 9, 0.0], atol=1e-15)
    out, beyond = r.apply(MASS)
    assert beyond == pytest.approx(1 * 5 / 9 + 2 * 3 / 9 + 3 * 3 / 9, rel=1e-14)
    assert abs(out.sum() + beyond - MASS.sum()) <= 1e-12 * MASS.sum()
    assert out[0, 0] == pytest.approx(4 / 9 * 1, rel=1e-14)


def test_lonlat_onto_lonlat_uses_ellipsoidal_bands():
    src = Grid(crs=LL, x0=120, y0=30, dx=1, dy=1, nx=2, ny=2, name="ll")
    tgt = Grid(crs=LL, x0=120, y0=30, dx=2 / 3, dy=2 / 3, nx=3, ny=3, name="ll3")
    r = regrid_matrix(src, tgt)
    band = ellipsoid_area_from_equator(LL, np.array([30, 30 + 2 / 3, 31]))
    whole = ellipsoid_area_from_equator(LL, np.array([30, 31]))
    # target (0, 0) in source (0, 0): 2/3 of the longitudes, the band 30..30.667 of 30..31
    want = (2 / 3) * (band[1] - band[0]) / (whole[1] - whole[0])
    assert r.matrix[0, 0] == pytest.approx(want, rel=1e-12)
    assert want != pytest.approx(4 / 9, rel=1e-4)  # not the planar degree² share
    out, beyond = r.apply(MASS)
    assert beyond == pytest.approx(0.0, abs=1e-12) and out.sum() == pytest.approx(10, rel=1e-12)


def test_lonlat_onto_utm_conserves_mass_and_caches(tmp_path):
    src = Grid(crs=LL, x0=120.5, y0=30.5, dx=0.1, dy=0.1, nx=12, ny=12, name="ec")
    tgt = Grid(crs=UTM, x0=295_000, y0=3_392_000, dx=5000, dy=5000, nx=26, ny=28, name="sh")
    field = np.random.default_rng(1).random(src.shape)
    r = cached_regridding(src, tgt, tmp_path)
    out, beyond = r.apply(field)
    assert 0 < beyond < field.sum()
    assert abs(out.sum() + beyond - field.sum()) <= 1e-12 * field.sum()
    again = cached_regridding(src, tgt, tmp_path)
    assert (again.matrix != r.matrix).nnz == 0 and len(list(tmp_path.glob("regrid-*.npz"))) == 1


def _asc(path, rows, x0=120.0, y0=30.0, cs=0.25):
    head = f"ncols {len(rows[0])}\nnrows {len(rows)}\nxllcorner {x0}\nyllcorner {y0}\n" \
           f"cellsize {cs}\nNODATA_value -9999\n"
    path.write_text(head + "\n".join(" ".join(str(v) for v in r) for r in rows) + "\n")


def test_meic_ascii_reader_flips_rows_and_hashes(tmp_path):
    _asc(tmp_path / "2020_01__transportation__NOx.asc", [[1, 2], [3, -9999]])  # north row first
    fields, files = read_gridded(GriddedSource(name="meic", format="meic_asc",
                                               path=str(tmp_path), units="t"))
    (f,) = fields
    assert (f.sector, f.species, f.month, f.year) == ("transportation", "NOx", 1, 2020)
    np.testing.assert_array_equal(f.values, [[3, 0], [1, 2]])  # row 0 south, NODATA 0
    assert f.grid == GridSpec("EPSG:4326", 120.0, 30.0, 0.25, 0.25, 2, 2)
    assert len(files) == 1 and len(files[0][1]) == 64
    np.testing.assert_array_equal(to_kg_per_cell(f, np.ones((2, 2)), 2020), [[3e3, 0], [1e3, 2e3]])


def test_edgar_flux_netcdf_becomes_kg_per_cell(tmp_path):
    lat, lon = np.array([30.05, 30.15]), np.array([120.05, 120.15, 120.25])
    flux = np.full((2, 3), 1e-10)
    da = xr.DataArray(flux, dims=("lat", "lon"), coords={"lat": lat, "lon": lon},
                      attrs={"units": "kg m-2 s-1"}, name="fluxes")
    da.to_dataset().to_netcdf(tmp_path / "v8.0_FT2022_AP_NOx_2022_TRO_flx.nc")
    fields, _ = read_gridded(GriddedSource(name="edgar", format="edgar", path=str(tmp_path)))
    (f,) = fields
    assert (f.sector, f.species, f.year, f.month) == ("TRO", "NOx", 2022, None)
    area = Grid(crs=LL, x0=f.grid.x0, y0=f.grid.y0, dx=f.grid.dx, dy=f.grid.dy, nx=3, ny=2
                ).cell_area_m2
    kg = to_kg_per_cell(f, area, 2022)
    np.testing.assert_allclose(kg, 1e-10 * area * 365 * 86400, rtol=1e-12)
    assert f.grid.x0 == pytest.approx(120.0) and f.grid.dx == pytest.approx(0.1)


def test_shipped_mapping_splits_sum_to_one():
    sec, spc = load_mapping("config/regional_sectors.csv", "config/regional_species.csv")
    assert sector_split(sec, "meic", "transportation", "NOx") == {"road": 0.7, "offroad": 0.2,
                                                                  "shipping": 0.1}
    assert sum(sector_split(sec, "meic", "industry", "VOC").values()) == pytest.approx(1.0)
    assert "solvents" in sector_split(sec, "meic", "industry", "VOC")
    assert set(spc[spc.their_species == "PMcoarse"].species) == {"PM10"}


# ----------------------------------------------------------------------- merge, by hand
# target 3 × 3 of 2 m cells; the mask covers x 0..3: column 0 whole, column 1 half
MASK = gpd.GeoDataFrame({"district_code": ["1"]}, geometry=[shapely.box(0, 0, 3, 6)], crs=UTM)


def _part(sector, value):
    return RegionalPart("meic", sector, "NOx", None, np.full(TGT.size, float(value)))


def test_mask_cuts_cells_by_exact_area_fraction():
    np.testing.assert_allclose(mask_fraction(TGT, MASK).reshape(3, 3),
                               [[1, 0.5, 0]] * 3, rtol=0, atol=1e-15)


def test_sector_in_both_is_replaced_only_regional_is_kept():
    inside = mask_fraction(TGT, MASK)
    road, ag = _part("road", 9.0), _part("livestock", 4.0)
    m_road, m_ag = merge([road, ag], {"road"}, inside)
    np.testing.assert_allclose(m_road.kept.reshape(3, 3), [[0, 4.5, 9]] * 3, atol=1e-15)
    assert m_road.replaced == pytest.approx(3 * 9 + 3 * 4.5, rel=1e-15)
    np.testing.assert_array_equal(m_ag.kept, np.full(9, 4.0))  # the city has no livestock
    assert m_ag.replaced == 0.0
    for m in (m_road, m_ag):  # the merge ledger balances
        assert m.part.read == pytest.approx(m.kept.sum() + m.replaced + m.part.outside,
                                            rel=1e-12)
    local = xr.DataArray(np.zeros((2, 1, 3, 3)), dims=("sector", "species", "y", "x"),
                         coords={"sector": ["road", "livestock"], "species": ["NOx"],
                                 "y": TGT.y, "x": TGT.x})
    local.loc["road", "NOx", :, TGT.x[0]] = 5.0  # local road in column 0
    assert double_counted(local, [m_road, m_ag], inside, {"road"}) == []
    # not replacing road: local and regional road inside the mask in the same cells
    kept_both = merge([road], set(), inside)
    assert double_counted(local, kept_both, inside, set())


def test_monthly_regional_factors_keep_their_month():
    times = pd.date_range("2024-01-01", "2024-12-31 23:00", freq="h")
    base = xr.DataArray(np.full((1, times.size), 1 / times.size), dims=("sector", "time"),
                        coords={"sector": ["road"], "time": times.to_numpy()})
    names = [regional_sector("road", "meic", 2), regional_sector("road", "meic", None)]
    f = regional_factors(base, names, "UTC")
    feb = (times.month == 2)
    assert f.sel(sector="road@meic-02").to_numpy()[feb].sum() == pytest.approx(1.0, rel=1e-12)
    assert f.sel(sector="road@meic-02").to_numpy()[~feb].sum() == 0.0
    assert f.sel(sector="road@meic").to_numpy()[0] == pytest.approx(1 / times.size)
    assert calendar.isleap(2024)


def test_gridded_field_unit_refused(tmp_path):
    f = GriddedField("x", "a", "b", None, 2024, GridSpec("EPSG:4326", 0, 0, 1, 1, 1, 1),
                     np.ones((1, 1)), "m", "f.asc")
    with pytest.raises(Exception, match="not a mass"):
        to_kg_per_cell(f, np.ones((1, 1)), 2024)


def test_yrd_demo_build_merges_local_and_regional(tmp_path):
    """The shipped YRD demo, one day, CF + CMAQ + WRF-Chem: every land cell of the domain has
    emissions, Shanghai's own sources replace MEIC inside the city, the ledgers balance, the
    CMAQ and WRF-Chem files carry local + regional CO (read back from the files), and the
    report maps where each inventory holds."""
    import netCDF4

    from pipeline.build import run_build
    from pipeline.config import load_config
    from pipeline.report.build_dir import open_build
    from pipeline.report.regional import holdings
    from pipeline.writers.wrfchem import wrf_cell_area_m2
    from tests.cf_checker import assert_cf_clean

    r = run_build("config/yrd.yaml", out=tmp_path / "out", period=("2024-07-01", "2024-07-01"),
                  formats=["cf", "cmaq", "wrfchem"])
    t = r.ledger.table
    reg = t[t["regional_read"] > 0]
    assert len(reg) and (reg.index.get_level_values("sector").str.contains("@meic-07")).any()
    lhs = reg["regional_read"]
    rhs = reg["regional_gridded"] + reg["regional_outside"] + reg["replaced_by_local"]
    assert ((lhs - rhs).abs() <= 1e-9 * lhs).all()
    assert reg["replaced_by_local"].sum() > 0 and reg["regional_outside"].sum() > 0
    with xr.open_dataset(r.build_dir / "annual.nc") as ds:
        a = ds["annual_emissions"].sel(species="NOx")
        sectors = [str(s) for s in a["sector"].values]
        local = a.sel(sector=[s for s in sectors if "@" not in s]).sum("sector")
        regional = a.sel(sector=[s for s in sectors if "@" in s]).sum("sector")
        assert int((regional > 0).sum()) > 0.9 * regional.size  # MEIC over the whole domain
        assert float(local.sum()) > 0 and float((local > 0).sum()) > 50  # Shanghai's own
        # CO of 1 July (UTC) as annual.nc × temporal factors, local and regional apart [kg]
        co = ds["annual_emissions"].sel(species="CO").sum(("y", "x")).to_pandas()
        f = ds["temporal_factor"].sel(time=slice("2024-07-01T00", "2024-07-01T23"))
        day = (f.sum("time").to_pandas() * co)
    want_reg = float(day[[s for s in day.index if "@" in s]].sum())
    want = float(day.sum())
    assert 0.5 * want < want_reg < want  # both inventories matter on this domain
    with netCDF4.Dataset(next((r.build_dir / "cmaq").glob("*.nc"))) as nc:
        cmaq = float(np.asarray(nc["CO"][:24], dtype=float).sum()) * 3600 * 28.0101e-3
    # WRF-Chem fluxes are per physical cell area, DX·DY/m² (pipeline/writers/wrfchem.py)
    area_km2 = wrf_cell_area_m2(Grid.from_config(load_config("config/yrd.yaml").grid)) / 1e6
    with netCDF4.Dataset(next((r.build_dir / "wrfchem").glob("wrfchemi_*"))) as nc:
        e_co = np.asarray(nc["E_CO"][:24], dtype=float).sum(axis=(0, 1))
        wrf = float((e_co * area_km2).sum()) * 28.0101e-3
    assert cmaq == pytest.approx(want, rel=1e-5) and wrf == pytest.approx(want, rel=1e-5)
    # the model-read ledger covers the regional sectors too: all their CO is read
    reg_co = reg.xs("CO", level="species")
    for fmt in ("cmaq", "wrfchem"):
        np.testing.assert_allclose(reg_co[f"{fmt}_read_kg"], reg_co["gridded_kg"], rtol=1e-9)
    assert any(m.startswith("regional_meic_") for m in r.manifest.inputs)
    # the merge map: regional-only cells outside, replaced cells over Shanghai
    with xr.open_dataset(r.build_dir / "regional_merge.nc") as mm:
        rep = mm["replaced_by_local"].sel(species="NOx").to_numpy()
        inside = mm["local_mask_fraction"].to_numpy()
    assert rep.sum() == pytest.approx(float(reg.xs("NOx", level="species")
                                           ["replaced_by_local"].sum()), rel=1e-9)
    assert (rep[inside == 0] == 0).all() and (rep[inside > 0] > 0).any()
    assert_cf_clean(r.build_dir / "regional_merge.nc")
    cat, share = holdings(open_build(r.build_dir), "NOx")
    counts = np.bincount(cat.ravel(), minlength=5)
    assert counts[1] > 0.9 * cat.size and counts[3] == int((rep > 0).sum())
    assert np.nanmax(share[cat == 1], initial=0.0) == 0.0
    page = (r.build_dir / "report" / "index.html").read_text(encoding="utf-8")
    assert "Regional background" in page and "map_holdings.png" in page


def test_whole_cells_and_cut_cells_match_the_polygon_overlay():
    """Target cells inside one source cell take their own ring's area (no geometry built), the
    others the polygon × box overlay: the matrix is the overlay's for every cell."""
    from affine import Affine

    from grids.overlay import AreaMeasure, local_grid, rectilinear_weights, to_local
    from grids.regrid import target_polygons

    src = Grid(crs=LL, x0=120.5, y0=30.5, dx=0.1, dy=0.1, nx=12, ny=12, name="ec")
    tgt = Grid(crs=UTM, x0=330_000, y0=3_400_000, dx=2000, dy=2000, nx=30, ny=30, name="sh")
    r = regrid_matrix(src, tgt)
    cells, _ = target_polygons(tgt, LL, 4)
    p, c, w = rectilinear_weights(to_local(cells, src), np.ones(src.shape),
                                  Affine(src.dx, 0, 0, 0, src.dy, 0), local_grid(src),
                                  AreaMeasure(src))
    want = np.zeros((tgt.size, src.size))
    np.add.at(want, (p[c >= 0], c[c >= 0]), w[c >= 0])
    got = r.matrix.toarray()
    whole = (got > 0).sum(axis=1) == 1
    assert 0.3 < whole.mean() < 0.9  # both paths are exercised
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)  # shares ≤ 1, to rounding


def test_monthly_regional_factors_keep_the_local_month_and_our_shape():
    """A MEIC February field in Asia/Shanghai: its mass goes to the hours of local February
    (from 31 Jan 16:00 UTC), shaped by the base sector's own weekday/hour factors."""
    times = pd.date_range("2024-01-01", "2024-12-31 23:00", freq="h")
    rng = np.random.default_rng(16)
    base = rng.random(times.size)
    base /= base.sum()
    f = regional_factors(xr.DataArray(base[None, :], dims=("sector", "time"),
                                      coords={"sector": ["road"], "time": times.to_numpy()}),
                         [regional_sector("road", "meic", 2)], "Asia/Shanghai")
    got = f.sel(sector="road@meic-02").to_numpy()
    feb = (times >= "2024-01-31 16:00") & (times < "2024-02-29 16:00")  # local February
    assert got[~feb].sum() == 0.0 and got[feb].sum() == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(got[feb], base[feb] / base[feb].sum(), rtol=1e-12)


def test_unverified_splits_used_are_named_in_one_warning(tmp_path):
    from pipeline.regional import _unverified_rows, unverified_finding

    sec, _ = load_mapping("config/regional_sectors.csv", "config/regional_species.csv")
    split = sector_split(sec, "meic", "transportation", "SO2")
    rows = _unverified_rows(sec, "config/regional_sectors.csv", "meic", "transportation", "SO2",
                            split)
    assert len(rows) == 3 and any("shipping,SO2 0.7" in r for r in rows)
    assert _unverified_rows(sec, "x", "meic", "power", "NOx",
                            sector_split(sec, "meic", "power", "NOx")) == set()
    f = unverified_finding(rows)
    assert f.check == "unverified_regional_splits" and f.value == 3.0
    bad = tmp_path / "s.csv"
    bad.write_text("inventory,their_sector,sector,species,fraction,verified,reference\n"
                   "meic,power,power,*,1,maybe,x\n")
    with pytest.raises(Exception, match="verified' must be yes or no"):
        load_mapping(bad, "config/regional_species.csv")


def test_day_cube_leaves_out_sectors_outside_their_month():
    """A monthly regional sector has zero factors outside its month: the day's fluxes are the
    same with it left out of the product as the full (dask) cube's."""
    from pipeline.cube import day_cube, hourly_cube
    from sources.species import load_species

    registry = load_species("config/species.yaml")
    times = pd.date_range("2024-07-01", periods=24, freq="h")
    grid = TGT
    rng = np.random.default_rng(7)
    annual = xr.DataArray(rng.random((3, 1, 3, 3)), dims=("sector", "species", "y", "x"),
                          coords={"sector": ["road", "road@meic-07", "road@meic-08"],
                                  "species": ["NOx"], "y": grid.y, "x": grid.x})
    f = rng.random((3, 24)) / 1e3
    f[2] = 0.0  # August's regional road has no hour on 1 July
    factors = xr.DataArray(f, dims=("sector", "time"),
                           coords={"sector": annual["sector"].values, "time": times.to_numpy()})
    got = day_cube(annual, factors, grid, registry)["NOx"].to_numpy()
    want = hourly_cube(annual, factors, grid, registry)["NOx"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
    assert got.max() > 0
