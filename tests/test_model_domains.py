"""The models' own grids and layers: WRF-Chem files built against a wrfinput/geo_em (dims,
land-use and projection attributes, fluxes per physical cell area), refused on another grid;
CMAQ files in MCIP's METCRO3D layers; CMAQ refused on grids MCIP cannot make."""

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pyproj
import pytest
import xarray as xr

from grids.grid import Grid, read_griddesc, read_wrf_domain
from sources.errors import ConfigError
from tests.model_files import D01, D02, LAND_USE, MCIP, ZNW, write_yrd_domain
from tests.world import POINTS_CSV, SPECIATION, SPECIATION_W3, write_world

REPO = Path(__file__).resolve().parent.parent
DAY = ("2024-03-01", "2024-03-01")


@pytest.fixture(scope="module")
def yrd(tmp_path_factory) -> dict[str, Path]:
    return write_yrd_domain(tmp_path_factory.mktemp("yrd"), start="2024-03-01", nest=True)


def _world(world: Path, grid: str, extra: str = "", wrfchem: str = "") -> Path:
    """The fixture world on ``grid`` (a YAML flow mapping) with the test mechanisms."""
    (world.parent / "speciation.csv").write_text(SPECIATION + SPECIATION_W3)
    text = world.read_text()
    start = text.index("grid:")
    text = text[:start] + f"grid: {grid}" + text[text.index("\n", start):]
    text = text.replace("  temporal_profiles: temporal_profiles.csv\n",
                        "  temporal_profiles: temporal_profiles.csv\n"
                        "  speciation: speciation.csv\n")
    text = text.replace("output: {dir: ../out}", "output: {dir: ../out, wrfchem: "
                        "{emiss_opt: 3, mechanism: w3, kemit: 6" + wrfchem + "}}")
    world.write_text(text + extra)
    return world


def _build(world: Path, tmp_path: Path, formats: list[str]):
    from pipeline.build import run_build

    return run_build(world, out=tmp_path / "out", period=DAY, formats=formats, mechanism="t1")


# ----------------------------------------------------------------- reading the domain files

def test_domain_of_wrfinput_and_geo_em(yrd):
    """The mass grid of d01 is 62 × 62 cells of 9 km (e_we − 1) on the domain's Lambert
    projection, its cell centres are the file's XLAT/XLONG, and geo_em gives the same domain."""
    w = read_wrf_domain(yrd["wrfinput_d01"])
    g = read_wrf_domain(yrd["geo_em.d01.nc"])
    assert (w.kind, g.kind) == ("wrfinput", "geo_em")
    for d in (w, g):
        assert (d.grid.nx, d.grid.ny, d.grid.dx, d.grid.dy) == (62, 62, 9000.0, 9000.0)
        assert d.grid_id == 1 and d.grid.name == "WRF_D01"
        lon, lat = d.grid.lonlat()
        np.testing.assert_allclose(lat, d.lat, atol=2e-5)
        np.testing.assert_allclose(lon, d.lon, atol=2e-5)
        assert d.attrs["MMINLU"] == "MODIFIED_IGBP_MODIS_NOAH" and int(d.attrs["ISURBAN"]) == 13
    np.testing.assert_array_equal(w.true_cell_area_m2, g.true_cell_area_m2)
    # true area = DX·DY / MAPFAC_M² read from the file, independently
    with netCDF4.Dataset(yrd["wrfinput_d01"]) as nc:
        m = np.asarray(nc["MAPFAC_M"][0], dtype=np.float64)
    np.testing.assert_allclose(w.true_cell_area_m2, 9000.0 ** 2 / m ** 2, rtol=1e-15)
    # the cell centres of the MCIP window are the GRIDDESC_YRD cells (1 cell trimmed)
    mcip = Grid(**read_griddesc(REPO / "config" / "GRIDDESC_YRD", "YRD9KM"))
    lon_m, lat_m = mcip.lonlat()
    np.testing.assert_allclose(lat_m, w.lat[1:-1, 1:-1], atol=2e-5)
    np.testing.assert_allclose(lon_m, w.lon[1:-1, 1:-1], atol=2e-5)
    # the nest: 36 × 36 cells of 3 km starting at parent cell (33, 25), 1-based
    n = read_wrf_domain(yrd["geo_em.d02.nc"])
    assert (n.grid.nx, n.grid.ny, n.grid.dx, n.grid_id) == (36, 36, 3000.0, 2)
    assert n.grid.x0 - w.grid.x0 == pytest.approx((D02["i_parent_start"] - 1) * D01["dx"],
                                                   abs=0.05)
    assert n.grid.y0 - w.grid.y0 == pytest.approx((D02["j_parent_start"] - 1) * D01["dx"],
                                                   abs=0.05)


def test_the_domain_refuses_grids_that_are_not_its_own(yrd):
    """Same dims but another projection or cell size: refused, naming what differs."""
    dom = read_wrf_domain(yrd["wrfinput_d01"])
    g = dom.grid
    other = Grid(pyproj.CRS.from_proj4("+proj=lcc +lat_1=30 +lat_2=60 +lat_0=31 +lon_0=110 "
                                       "+R=6370000 +units=m +no_defs"),
                 g.x0, g.y0, g.dx, g.dy, g.nx, g.ny, name="OTHER")
    with pytest.raises(ConfigError, match=r"grid 'OTHER' .*: the grid's projection .* is not "
                       r"the WRF domain's \(MAP_PROJ 1 Lambert Conformal, TRUELAT1 25.0, "
                       r"TRUELAT2 40.0, STAND_LON 110.0\)"):
        dom.check_grid(other)
    coarse = Grid(g.crs, g.x0, g.y0, 12_000.0, 12_000.0, g.nx, g.ny, name="C12")
    with pytest.raises(ConfigError, match=r"cells of 12000.0 × 12000.0 m but the WRF domain has "
                       r"DX = 9000.0 m, DY = 9000.0 m"):
        dom.check_grid(coarse)
    dom.check_grid(g)  # its own grid passes


def test_a_domain_file_that_is_not_one_is_refused(yrd, tmp_path):
    bad = tmp_path / "wrfinput_d01"
    bad.write_bytes(Path(yrd["wrfinput_d01"]).read_bytes())
    with netCDF4.Dataset(bad, "a") as nc:
        nc.setncattr("STAND_LON", np.float32(112.0))  # attributes no longer describe XLAT/XLONG
    with pytest.raises(ConfigError, match=r"wrfinput_d01: its cell centres are not a regular "
                       r"9000 × 9000 m grid on its own projection attributes"):
        read_wrf_domain(bad)
    with pytest.raises(ConfigError, match="not a wrfinput .* or geo_em .* file"):
        read_wrf_domain(yrd["METCRO3D"])


# ----------------------------------------------------------------- WRF-Chem on the domain

def test_wrfchemi_built_against_the_wrfinput(world, tmp_path, yrd):
    """grid: {wrf: wrfinput_d01} and vertical: {wrfinput: wrfinput_d01}: the wrfchemi has the
    mass grid's dims, the file's MMINLU/IS* and projection attributes, its XLAT/XLONG, and
    Σ flux × DX·DY/MAPFAC_M² × 1 h = the inventory's mass (the CF file's) to 1e-6; each stack's
    SO2 lands in the WRF η layer of its own cell that contains its height, the tops being
    (PH + PHB)/9.81 − HGT of that cell in the wrfinput (P1 made 240 m tall)."""
    pts = world.parent.parent / "data" / "points.csv"
    pts.write_text(POINTS_CSV.replace("3400500,100", "3400500,240"))
    source = yrd["wrfinput_d01"]
    _world(world, f"{{wrf: {source}}}", extra=f"vertical: {{wrfinput: {source}}}\n")
    r = _build(world, tmp_path, ["cf", "wrfchem"])
    build = Path(r.build_dir)
    path = build / "wrfchem" / "wrfchemi_d01_2024-03-01_00:00:00"
    with netCDF4.Dataset(source) as src:
        want = {k: src.getncattr(k) for k in src.ncattrs()}
        m = np.asarray(src["MAPFAC_M"][0], dtype=np.float64)
        lat = np.asarray(src["XLAT"][0])
        tops = ((np.asarray(src["PH"][0], dtype=np.float64)
                 + np.asarray(src["PHB"][0], dtype=np.float64)) / 9.81
                - np.asarray(src["HGT"][0], dtype=np.float64))[1:]
    true_area = 9000.0 * 9000.0 / m ** 2
    with netCDF4.Dataset(path) as nc, xr.open_dataset(build / "hourly" / "20240301.nc") as cf:
        assert (nc.dimensions["west_east"].size, nc.dimensions["south_north"].size) == (62, 62)
        assert nc.dimensions["emissions_zdim"].size == 6
        assert nc.getncattr("WEST-EAST_GRID_DIMENSION") == 63
        assert nc.getncattr("SOUTH-NORTH_GRID_DIMENSION") == 63
        assert nc.getncattr("BOTTOM-TOP_GRID_DIMENSION") == ZNW.size  # the model's levels
        for k in ("MMINLU", "NUM_LAND_CAT", "ISWATER", "ISLAKE", "ISICE", "ISURBAN",
                  "ISOILWATER", "MAP_PROJ", "TRUELAT1", "TRUELAT2", "STAND_LON", "CEN_LAT",
                  "CEN_LON", "MOAD_CEN_LAT", "POLE_LAT", "POLE_LON", "DX", "DY"):
            assert nc.getncattr(k) == want[k], k
        assert nc.MMINLU == LAND_USE["MMINLU"] and nc.ISURBAN == 13 and nc.ISWATER == 17
        for k in ("GRID_ID", "PARENT_ID", "I_PARENT_START", "J_PARENT_START",
                  "PARENT_GRID_RATIO"):
            assert nc.getncattr(k) == 1, k
        assert "JULDAY" not in nc.ncattrs() and "GMT" not in nc.ncattrs()
        np.testing.assert_array_equal(nc["XLAT"][:], lat)
        # gases: mol km-2 hr-1 × km² = mol per hour; aerosols: ug m-2 s-1 × m² × 3600 s
        nox_mol = sum((nc[v][:].astype(np.float64) * true_area / 1e6).sum()
                      for v in ("E_NO", "E_NO2"))
        so2 = (nc["E_SO2"][:].astype(np.float64) * true_area / 1e6).sum(axis=(0, 2, 3))
        pm_ug = sum((nc[v][:].astype(np.float64) * true_area).sum() * 3600
                    for v in ("E_SO4J", "E_PM25J", "E_ECJ", "E_ORGJ"))
        kg = {sp: float((cf[sp] * cf["cell_area"]).sum() * 3600)
              for sp in ("NOx", "SO2", "PM2_5")}
    assert nox_mol * 46.0055 / 1000 == pytest.approx(kg["NOx"], rel=1e-6)
    assert so2.sum() * 64.066 / 1000 == pytest.approx(kg["SO2"], rel=1e-6)
    assert pm_ug / 1e9 == pytest.approx(kg["PM2_5"], rel=1e-6)
    # per projected area instead, 1.5–1.7 % would be added (the map factor is < 1 here)
    assert 0.983 < m.min() and m.max() < 0.995
    # the levels: each stack in its own cell's η layer
    dom = read_wrf_domain(source)
    stacks = pd.read_csv(pts)
    x, y = pyproj.Transformer.from_crs(32651, dom.grid.crs, always_xy=True).transform(
        stacks["x"].to_numpy(float), stacks["y"].to_numpy(float))
    cols = ((x - dom.grid.x0) // dom.grid.dx).astype(int)
    rows = ((y - dom.grid.y0) // dom.grid.dy).astype(int)
    so2_kg = {"P1": 1000.0, "P2": 5000.0, "P3": 1000.0}  # 10 kg/t, FGD 90 % on P1
    levels, by_level = {}, np.zeros(6)
    for sid, h, row, col in zip(stacks["source_id"], stacks["stack_height_m"], rows, cols):
        levels[sid] = int(np.searchsorted(tops[:, row, col], h, side="right"))
        by_level[levels[sid]] += so2_kg[sid]
    assert levels["P1"] > levels["P2"] > 0
    np.testing.assert_allclose(so2 / so2.sum(), by_level / by_level.sum(), rtol=1e-6,
                               atol=1e-12)


def test_wrfchem_writer_on_a_geo_em_domain(tmp_path, yrd):
    """The writer with a geo_em domain: its lower-case nest attributes become WRF's names, its
    XLAT_M are the file's XLAT, and 1 mol/s in a cell is 3.6e9 mol km-2 hr-1 over the cell's
    DX·DY/MAPFAC_M² [m²]."""
    import dask.array as da

    from pipeline.writers import FORMATS, WriteMeta

    dom = read_wrf_domain(yrd["geo_em.d01.nc"])
    shape = (25, 1, dom.grid.ny, dom.grid.nx)
    day = xr.Dataset({"NO": (("time", "z", "y", "x"), da.ones(shape), {
        "units": "mol/s", "long_name": "NO", "description": "NO emissions (gas)"})},
        coords={"time": pd.date_range("2024-03-01", periods=25, freq="h"), "z": [1]})
    got: dict[str, float] = {}
    path = tmp_path / "wrfchemi_d01_2024-03-01_00:00:00"
    FORMATS["wrfchem"].writer.write(day, path, WriteMeta(
        grid=dom.grid, mechanism="t", kemit=2, wrf_domain=dom, on_written=got.__setitem__))
    with netCDF4.Dataset(yrd["geo_em.d01.nc"]) as src, netCDF4.Dataset(path) as nc:
        m = np.asarray(src["MAPFAC_M"][0], dtype=np.float64)
        assert (nc.GRID_ID, nc.PARENT_ID, nc.PARENT_GRID_RATIO) == (1, 1, 1)
        assert nc.MMINLU == src.MMINLU and nc.ISICE == src.ISICE == 15
        assert nc.CEN_LAT == src.CEN_LAT and nc.MAP_PROJ_CHAR == "Lambert Conformal"
        assert nc.getncattr("BOTTOM-TOP_GRID_DIMENSION") == 3  # geo_em has no levels: kemit+1
        np.testing.assert_array_equal(nc["XLAT"][:], src["XLAT_M"][0])
        np.testing.assert_array_equal(nc["E_NO"][0, 0],
                                      (3.6e9 * m ** 2 / 9000.0 ** 2).astype(np.float32))
        assert float(np.abs(nc["E_NO"][:, 1]).max()) == 0.0
    assert got["NO"] == pytest.approx(24 * 3600 * 62 * 62, rel=1e-7)


def test_wrfchemi_for_a_nest_is_named_and_attributed_as_the_nest(world, tmp_path, yrd):
    _world(world, f"{{wrf: {yrd['wrfinput_d02']}}}")
    r = _build(world, tmp_path, ["cf", "wrfchem"])
    build = Path(r.build_dir)
    files = sorted(p.name for p in (build / "wrfchem").iterdir())
    assert files == ["namelist.snippet", "wrfchemi_d02_2024-03-01_00:00:00"]
    with netCDF4.Dataset(build / "wrfchem" / files[1]) as nc:
        assert (nc.dimensions["west_east"].size, nc.DX, nc.GRID_ID, nc.PARENT_ID) == \
            (36, 3000.0, 2, 1)
        assert (nc.I_PARENT_START, nc.J_PARENT_START, nc.PARENT_GRID_RATIO) == (33, 25, 3)
        assert nc.MOAD_CEN_LAT != nc.CEN_LAT  # d01's centre latitude, not the nest's
    assert "wrfchemi_d02_2024-03-01_00:00:00" in (build / "wrfchem" / files[0]).read_text()


def test_wrfchemi_on_another_grid_than_its_domain_is_refused(world, tmp_path, yrd):
    """The MCIP GRIDDESC grid (2 cells smaller), and a grid of the right size shifted by one
    cell, are refused before anything is built."""
    griddesc = REPO / "config" / "GRIDDESC_YRD"
    _world(world, f"{{griddesc: {griddesc}, name: YRD9KM}}",
           wrfchem=f", domain_file: {yrd['wrfinput_d01']}")
    with pytest.raises(ConfigError, match=r"grid 'YRD9KM' .*wrfinput_d01: the grid has 60 × 60 "
                       r"cells but the WRF mass grid is 62 × 62 \(WEST-EAST_GRID_DIMENSION 63 − "
                       r"1, SOUTH-NORTH_GRID_DIMENSION 63 − 1\)"):
        _build(world, tmp_path, ["cf", "wrfchem"])
    assert not (tmp_path / "out" / "latest-period").exists()
    crs = "+proj=lcc +lat_1=25 +lat_2=40 +lat_0=34 +lon_0=110 +R=6370000 +units=m +no_defs"
    shifted = (f"{{crs: '{crs}', x0: {MCIP['XORIG']}, y0: {MCIP['YORIG'] - 9000}, dx: 9000, "
               "dy: 9000, nx: 62, ny: 62, name: SHIFTED}")
    other = _world(write_world(tmp_path / "w2"), shifted,
                   wrfchem=f", domain_file: {yrd['geo_em.d01.nc']}")
    with pytest.raises(ConfigError, match=r"cell \(south_north \d+, west_east \d+\) of the grid "
                       r"is centred 9,0\d\d\.\d m from the WRF cell centre"):
        _build(other, tmp_path, ["cf", "wrfchem"])


# ----------------------------------------------------------------- CMAQ in MCIP's layers

def test_cmaq_layers_follow_metcro3d(world, tmp_path, yrd):
    """vertical: {metcro3d: …}: the CMAQ file carries MCIP's VGTYP, VGTOP and the first
    NLAYS + 1 VGLVLS, and each stack's SO2 lands in the MCIP layer of its own cell that contains
    its height (ZF of that cell, mean of the file's steps); P1 is made 240 m tall."""
    pts = world.parent.parent / "data" / "points.csv"
    pts.write_text(POINTS_CSV.replace("3400500,100", "3400500,240"))
    griddesc = REPO / "config" / "GRIDDESC_YRD"
    _world(world, f"{{griddesc: {griddesc}, name: YRD9KM}}",
           extra=f"vertical: {{metcro3d: {yrd['METCRO3D']}}}\n")
    r = _build(world, tmp_path, ["cf", "cmaq"])
    build = Path(r.build_dir)
    with netCDF4.Dataset(yrd["METCRO3D"]) as met:
        zf = np.asarray(met["ZF"][:], dtype=np.float64).mean(axis=0)  # (lay, row, col)
        vglvls, vgtyp, vgtop = np.asarray(met.VGLVLS), met.VGTYP, met.VGTOP
    np.testing.assert_array_equal(vglvls, ZNW.astype(np.float32))
    crs = pyproj.CRS.from_proj4("+proj=lcc +lat_1=25 +lat_2=40 +lat_0=34 +lon_0=110 "
                                "+R=6370000 +units=m +no_defs")
    stacks = pd.read_csv(pts)
    x, y = pyproj.Transformer.from_crs(32651, crs, always_xy=True).transform(
        stacks["x"].to_numpy(float), stacks["y"].to_numpy(float))
    cols = ((x - MCIP["XORIG"]) // 9000).astype(int)
    rows = ((y - MCIP["YORIG"]) // 9000).astype(int)
    so2_kg = {"P1": 1000.0, "P2": 5000.0, "P3": 1000.0}  # 10 kg/t, FGD 90 % on P1
    want = np.zeros(zf.shape[0])
    layer_of = {}
    for sid, h, row, col in zip(stacks["source_id"], stacks["stack_height_m"], rows, cols):
        k = int(np.searchsorted(zf[:, row, col], h, side="right"))  # 0-based layer
        layer_of[sid] = k
        want[k] += so2_kg[sid]
    assert layer_of["P1"] > layer_of["P2"] > 0
    with netCDF4.Dataset(next((build / "cmaq").glob("*.nc"))) as nc:
        n = nc.NLAYS
        assert n == layer_of["P1"] + 1  # up to the highest layer holding emissions
        assert nc.VGTYP == vgtyp == -9999 and nc.VGTOP == vgtop == np.float32(5000.0)
        np.testing.assert_array_equal(nc.VGLVLS, vglvls[:n + 1])
        so2 = np.asarray(nc["SO2"][:24], dtype=np.float64).sum(axis=(0, 2, 3))
    np.testing.assert_allclose(so2 / so2.sum(), want[:n] / want.sum(), rtol=1e-6, atol=1e-12)


def test_metcro3d_of_another_grid_is_refused(world, tmp_path, yrd):
    _world(world, f"{{wrf: {yrd['wrfinput_d01']}}}",
           extra=f"vertical: {{metcro3d: {yrd['METCRO3D']}}}\n")
    with pytest.raises(ConfigError, match=r"METCRO3D_YRD9KM: grid 'WRF_D01' is not the grid of "
                       r"this METCRO3D: .*NCOLS 62 \(METCRO3D 60\)"):
        _build(world, tmp_path, ["cf", "cmaq"])


def test_cmaq_on_a_utm_grid_is_refused_at_check_time(world, tmp_path):
    """The fixture world's UTM grid: refused by the build before any work, and by
    ``tongyuan check`` for a config that asks for CMAQ files."""
    from pipeline.check import check_config

    (world.parent / "speciation.csv").write_text(SPECIATION)
    text = world.read_text().replace("  temporal_profiles: temporal_profiles.csv\n",
                                     "  temporal_profiles: temporal_profiles.csv\n"
                                     "  speciation: speciation.csv\n")
    world.write_text(text.replace("output: {dir: ../out}",
                                  "output: {dir: ../out, formats: [cf, cmaq], mechanism: t1}"))
    message = (r"grid 'T1KM' \(EPSG:32651\) is a UTM \(GDTYP 5\) grid: MCIP makes only Lambert "
               r"conformal, polar-stereographic and Mercator grids")
    with pytest.raises(ConfigError, match=message):
        _build(world, tmp_path, ["cf", "cmaq"])
    assert not (tmp_path / "out" / "latest-period").exists()
    problems = check_config(world)
    assert len(problems) == 1 and "is a UTM (GDTYP 5) grid" in str(problems[0])



def test_sigma_layers_are_written_as_wrf_eta_levels(tmp_path):
    """vertical.sigma: the CMAQ header says VGTYP 7 (VGWRFEM), VGTOP = ptop_pa and the first
    NLAYS + 1 sigma levels, not heights."""
    import dask.array as da

    from pipeline.config import VerticalConfig
    from pipeline.model_ready import vertical_levels
    from pipeline.writers import FORMATS, WriteMeta

    levels = vertical_levels(VerticalConfig(sigma=[1.0, 0.99, 0.95, 0.8, 0.0], ptop_pa=10000))
    assert levels == (7, 10000.0, (1.0, 0.99, 0.95, 0.8, 0.0))
    assert vertical_levels(VerticalConfig(layers_m=[0, 50, 100])) is None
    grid = Grid(**read_griddesc(REPO / "config" / "GRIDDESC_YRD", "YRD9KM"))
    day = xr.Dataset({"NO": (("time", "z", "y", "x"), da.ones((25, 2, grid.ny, grid.nx)),
                             {"units": "mol/s"})},
                     coords={"time": pd.date_range("2024-03-01", periods=25, freq="h"),
                             "z": [1, 2]})
    path = tmp_path / "c.nc"
    FORMATS["cmaq"].writer.write(day, path, WriteMeta(grid=grid, layers_m=(0.0, 90.0, 500.0),
                                                      vertical_levels=levels))
    with netCDF4.Dataset(path) as nc:
        assert (nc.VGTYP, nc.VGTOP, nc.NLAYS) == (7, 10000.0, 2)
        np.testing.assert_array_equal(nc.VGLVLS, np.float32([1.0, 0.99, 0.95]))
