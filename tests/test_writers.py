"""The one writer interface: every format's ``write(day, path, meta)`` takes the same arguments,
converts the day's fields to its own units and materialises one species at a time."""

import inspect
import re

import dask
import dask.array as da
import netCDF4
import numpy as np
import pandas as pd
import pyproj
import pytest
import xarray as xr

from grids.grid import Grid, griddesc_crs
from pipeline.provenance import global_attributes
from pipeline.writers import FORMATS, WriteMeta
from pipeline.writers.netcdf_cf import static_coords
from pipeline.writers.wrfchem import wrf_cell_area_m2

DAY = pd.Timestamp("2024-03-01")
GRID = Grid(griddesc_crs(2, 25, 40, 110, 110, 34), 300_000.0, -600_000.0, 3000.0, 3000.0, 4, 3,
            name="T3KM")
LAYERS_M = (0.0, 50.0, 150.0, 1000.0)


def _model_day(computed: list[str], n_z: int = 2) -> xr.Dataset:
    """NO (gas, 1 mol/s per cell and hour index) and PSO4 (aerosol, 2 g/s) per grid cell, 25
    steps, lazily: ``computed`` records each species when it is materialised."""
    shape = (25, n_z, GRID.ny, GRID.nx)

    def field(name: str, value: float) -> np.ndarray:
        computed.append(name)
        return np.full(shape, value) * (1 + np.arange(25))[:, None, None, None]

    def lazy(name, value, units, kind):
        arr = da.from_delayed(dask.delayed(field, pure=False)(name, value), shape, float)
        return (("time", "z", "y", "x"), arr, {
            "units": units, "long_name": name, "var_desc": f"{name} emission rate ({kind})",
            "description": f"{name} emissions ({kind})"})

    return xr.Dataset({"NO": lazy("NO", 1.0, "mol/s", "gas"),
                       "PSO4": lazy("PSO4", 2.0, "g/s", "aerosol")},
                      coords={"time": pd.date_range(DAY, periods=25, freq="h"),
                              "z": np.arange(1, n_z + 1)})


def _cf_day() -> xr.Dataset:
    t = pd.date_range(DAY, periods=24, freq="h")
    flux = np.full((24, GRID.ny, GRID.nx), 1e-9)
    return xr.Dataset({
        "SO2": (("time", "y", "x"), flux, {"units": "kg m-2 s-1", "long_name": "SO2 flux"}),
        "NOx": (("time", "y", "x"), flux * 1e3, {"units": "g m-2 s-1"})},  # converted to kg
        coords={"time": t, "y": GRID.y, "x": GRID.x})


def _meta(got: dict | None = None) -> WriteMeta:
    return WriteMeta(grid=GRID, attrs={"tongyuan_build_id": "b1", "history": "test"}, year=2024,
                     static=static_coords(GRID), mechanism="t1", layers_m=LAYERS_M,
                     on_written=None if got is None else got.__setitem__)


def test_every_writer_has_the_same_signature():
    sigs = {name: inspect.signature(f.writer.write) for name, f in FORMATS.items()}
    assert {name: list(s.parameters) for name, s in sigs.items()} == {
        name: ["day", "path", "meta"] for name in FORMATS}
    for s in sigs.values():
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in s.parameters.values())
    for f in FORMATS.values():
        f.writer.check_grid(GRID)  # the Lambert grid suits all three


def test_write_meta_is_frozen():
    with pytest.raises(AttributeError):
        _meta().mechanism = "cb6"


def test_cf_writer_writes_kg_per_m2_per_second(tmp_path):
    path = tmp_path / FORMATS["cf"].file_name(DAY)
    FORMATS["cf"].writer.write(_cf_day(), path, _meta())
    with netCDF4.Dataset(path) as nc:
        assert nc.Conventions == "CF-1.8" and nc.tongyuan_build_id == "b1"
        assert nc["SO2"].units == nc["NOx"].units == "kg m-2 s-1"
        assert nc["NOx"].dtype == np.float64 and nc["NOx"].chunking() == [1, GRID.ny, GRID.nx]
        np.testing.assert_allclose(nc["NOx"][:], 1e-9, rtol=1e-15)
        np.testing.assert_array_equal(nc["SO2"][:], 1e-9)
        assert nc["time"].units.startswith("hours since 2024-01-01")
        assert {"x", "y", "lon", "lat", "crs", "cell_area"} <= set(nc.variables)
    # without static coordinates or year: computed from the grid and the day
    FORMATS["cf"].writer.write(_cf_day(), tmp_path / "b.nc", WriteMeta(grid=GRID))
    with xr.open_dataset(path) as a, xr.open_dataset(tmp_path / "b.nc") as b:
        xr.testing.assert_identical(a.drop_attrs(deep=False), b.drop_attrs(deep=False))


def test_cmaq_writer_units_layers_and_mass(tmp_path):
    computed: list[str] = []
    got: dict[str, float] = {}
    path = tmp_path / FORMATS["cmaq"].file_name(DAY, mechanism="t1", grid=GRID.name)
    FORMATS["cmaq"].writer.write(_model_day(computed), path, _meta(got))
    assert computed == ["NO", "PSO4"]  # each species materialised once, one after the other
    with netCDF4.Dataset(path) as nc:
        assert [v for v in nc.variables] == ["TFLAG", "NO", "PSO4"]
        assert nc["NO"].units.strip() == "moles/s" and nc["PSO4"].units.strip() == "g/s"
        assert nc["NO"].var_desc.strip() == "NO emission rate (gas)"
        assert nc["NO"].dtype == np.float32 and nc["NO"].shape == (25, 2, GRID.ny, GRID.nx)
        assert list(nc.VGLVLS) == [0, 50, 150] and nc.VGTOP == 150 and nc.NLAYS == 2
        assert nc.GDNAM.strip() == "T3KM" and "t1" in nc.FILEDESC and nc.SDATE == 2024061
        assert nc.EXEC_ID.strip() == "b1"
        np.testing.assert_array_equal(nc["PSO4"][:, 0, 0, 0], 2.0 * np.arange(1, 26))
    hours = np.arange(1, 25).sum()
    cells = 2 * GRID.ny * GRID.nx
    assert got == {"NO": 1.0 * hours * cells * 3600, "PSO4": 2.0 * hours * cells * 3600}


def test_wrfchem_writer_units_per_area_and_mass(tmp_path):
    computed: list[str] = []
    got: dict[str, float] = {}
    path = tmp_path / FORMATS["wrfchem"].file_name(DAY)
    FORMATS["wrfchem"].writer.write(_model_day(computed), path, _meta(got))
    assert computed == ["NO", "PSO4"]
    # per physical area, WRF's DX·DY/m²: m = the Lambert map factor (pyproj), 0.9939 at 28.6°N
    area = 3000.0 * 3000.0 / pyproj.Proj(GRID.crs).get_factors(*GRID.lonlat()).areal_scale
    assert wrf_cell_area_m2(GRID) == pytest.approx(area, rel=1e-15)
    assert float(area.mean()) / 9e6 == pytest.approx(1.012356, abs=1e-6)
    with netCDF4.Dataset(path) as nc:
        assert [v for v in nc.variables] == ["Times", "E_NO", "E_PSO4", "XLONG", "XLAT"]
        assert nc["E_NO"].units == "mol km^-2 hr^-1" and nc["E_PSO4"].units == "ug m^-2 s^-1"
        assert nc["E_PSO4"].description == "PSO4 emissions (aerosol)"
        assert nc["E_NO"].shape == (24, 2, GRID.ny, GRID.nx)
        assert netCDF4.chartostring(nc["Times"][:])[-1] == "2024-03-01_23:00:00"
        assert "t1" in nc.TITLE and nc.tongyuan_build_id == "b1"
        # 1 mol/s per cell = 3600 mol/h over the cell's area in km2; 2 g/s = 2e6 ug/s per area
        np.testing.assert_array_equal(nc["E_NO"][0, 0], (3600.0 * 1e6 / area).astype(np.float32))
        np.testing.assert_array_equal(nc["E_PSO4"][3, 1], (4 * 2e6 / area).astype(np.float32))
    hours = np.arange(1, 25).sum()
    cells = 2 * GRID.ny * GRID.nx
    assert got["NO"] == pytest.approx(hours * cells * 3600, rel=1e-7)
    assert got["PSO4"] == pytest.approx(2 * hours * cells * 3600, rel=1e-7)


def test_model_writers_read_the_same_day(tmp_path):
    """One Dataset serves both model formats: CMAQ writes its 25 steps, WRF-Chem the first 24,
    and the two carry the same amounts."""
    day = _model_day([])
    amounts = {}
    for name in ("cmaq", "wrfchem"):
        got: dict[str, float] = {}
        FORMATS[name].writer.write(day, tmp_path / name, _meta(got))
        amounts[name] = got
    for sp in ("NO", "PSO4"):
        assert amounts["wrfchem"][sp] == pytest.approx(amounts["cmaq"][sp], rel=1e-7)


def test_model_writers_refuse_a_day_of_the_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="3 layers need 4 interfaces"):
        FORMATS["cmaq"].writer.write(_model_day([], n_z=3), tmp_path / "c.nc",
                                     WriteMeta(grid=GRID, layers_m=(0.0, 50.0, 150.0)))
    with pytest.raises(ValueError, match=r"NO: expected \(25, 2, 3, 4\), got \(24, 2, 3, 4\)"):
        FORMATS["cmaq"].writer.write(_model_day([]).isel(time=slice(0, 24)), tmp_path / "c.nc",
                                     _meta())
    assert not (tmp_path / "c.nc").exists()


def test_input_names_become_cf_attribute_names():
    attrs = global_attributes(build_id="b", cfg_hash="h", inputs={"cems_P0001_2024-07": "x",
                                                                   "points": "y"},
                              version="v", name="n", year=2024, grid_name="G")
    assert attrs["input_sha256_cems_P0001_2024_07"] == "x" and attrs["input_sha256_points"] == "y"
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", k) for k in attrs)


def _shoelace(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Signed area of each corner polygon (…, 4): positive when counter-clockwise."""
    return 0.5 * np.sum(lon * np.roll(lat, -1, axis=-1) - np.roll(lon, -1, axis=-1) * lat,
                        axis=-1)


def test_cf_day_file_has_cell_bounds_and_hourly_time_bounds(tmp_path):
    """x_bnds/y_bnds are the cell edges, lon_bnds/lat_bnds the corners counter-clockwise from
    the south-west (CF §7.1), time_bnds [t, t + 1 h] for start-of-hour labels; the file passes
    the CF-1.8 checker."""
    from tests.cf_checker import assert_cf_clean

    path = tmp_path / "day.nc"
    day = _cf_day()
    for v in day.data_vars:
        day[v].attrs.update({"long_name": f"{v} flux", "cell_methods": "time: mean"})
    attrs = global_attributes(build_id="b1", cfg_hash="h", inputs={"cems_P0001_2024-07": "x"},
                              version="v", name="n", year=2024, grid_name="T3KM")
    FORMATS["cf"].writer.write(day, path, WriteMeta(grid=GRID, attrs=attrs, year=2024,
                                                    static=static_coords(GRID)))
    with netCDF4.Dataset(path) as nc:
        assert (nc["x"].bounds, nc["y"].bounds, nc["lon"].bounds, nc["lat"].bounds,
                nc["time"].bounds) == ("x_bnds", "y_bnds", "lon_bnds", "lat_bnds", "time_bnds")
        np.testing.assert_array_equal(nc["x_bnds"][:], [[300_000, 303_000], [303_000, 306_000],
                                                        [306_000, 309_000], [309_000, 312_000]])
        np.testing.assert_array_equal(nc["y_bnds"][:], [[-600_000, -597_000],
                                                        [-597_000, -594_000],
                                                        [-594_000, -591_000]])
        # 2024-03-01 00 UTC is hour 1440 of 2024; hour k is the interval [1440 + k, 1441 + k]
        np.testing.assert_array_equal(nc["time_bnds"][:], np.stack(
            [1440 + np.arange(24), 1441 + np.arange(24)], axis=-1))
        assert nc["time_bnds"].dtype == np.int32 and nc["time"][0] == 1440
        lon_b, lat_b = nc["lon_bnds"][:], nc["lat_bnds"][:]
        assert lon_b.shape == (3, 4, 4) and "coordinates" not in nc["lon_bnds"].ncattrs()
        assert not any("_FillValue" in nc[v].ncattrs()
                       for v in ("x_bnds", "y_bnds", "lon_bnds", "lat_bnds", "time_bnds"))
        lon, lat = nc["lon"][:], nc["lat"][:]
    # the corners of cell (row 1, column 2) are the projected corners of the cell's square
    inverse = pyproj.Transformer.from_crs(GRID.crs, GRID.crs.geodetic_crs, always_xy=True)
    x0, y0 = 306_000.0, -597_000.0
    want = inverse.transform([x0, x0 + 3000, x0 + 3000, x0], [y0, y0, y0 + 3000, y0 + 3000])
    np.testing.assert_allclose(lon_b[1, 2], want[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(lat_b[1, 2], want[1], rtol=0, atol=1e-12)
    assert (_shoelace(lon_b, lat_b) > 0).all()  # counter-clockwise, every cell
    # neighbours share their corners exactly; every centre lies within its corners
    np.testing.assert_array_equal(lon_b[:, :-1, 1], lon_b[:, 1:, 0])
    np.testing.assert_array_equal(lat_b[:-1, :, 3], lat_b[1:, :, 0])
    assert ((lon_b.min(-1) < lon) & (lon < lon_b.max(-1))
            & (lat_b.min(-1) < lat) & (lat < lat_b.max(-1))).all()
    with xr.open_dataset(path) as ds:  # xarray decodes the bounds as times
        np.testing.assert_array_equal(ds["time_bnds"].values[:, 1] - ds["time"].values,
                                      np.timedelta64(1, "h"))
    assert_cf_clean(path)


def test_cf_day_file_on_a_lon_lat_grid_has_its_corners_in_degrees(tmp_path):
    from tests.cf_checker import assert_cf_clean

    grid = Grid(pyproj.CRS("EPSG:4326"), 121.0, 31.0, 0.25, 0.125, 3, 2, name="LL")
    t = pd.date_range(DAY, periods=24, freq="h")
    day = xr.Dataset({"SO2": (("time", "y", "x"), np.full((24, 2, 3), 1e-9),
                              {"units": "kg m-2 s-1", "long_name": "SO2 flux",
                               "cell_methods": "time: mean"})},
                     coords={"time": t, "y": grid.y, "x": grid.x})
    path = tmp_path / "ll.nc"
    FORMATS["cf"].writer.write(day, path, WriteMeta(grid=grid, attrs={"title": "t",
                                                                      "history": "test"}))
    with netCDF4.Dataset(path) as nc:
        np.testing.assert_array_equal(nc["lon_bnds"][0, 0], [121.0, 121.25, 121.25, 121.0])
        np.testing.assert_array_equal(nc["lat_bnds"][1, 2], [31.125, 31.125, 31.25, 31.25])
        np.testing.assert_array_equal(nc["x_bnds"][2], [121.5, 121.75])
        assert nc["x"].units == "degrees_east" and nc["x"].bounds == "x_bnds"
    assert_cf_clean(path)


def test_annual_file_labels_year_and_hourly_factors_the_cf_way(tmp_path):
    """annual.nc: the annual totals carry the scalar coordinate ``year`` and ``year: mean``,
    the temporal factors ``time: sum`` over [t, t + 1 h]; labels are character arrays that
    xarray reads back as strings; no finding of the CF-1.8 checker."""
    from pipeline.steps import write_annual
    from tests.cf_checker import assert_cf_clean

    annual = xr.DataArray(np.arange(24.0).reshape(2, 1, 3, 4), dims=("sector", "species", "y", "x"),
                          coords={"sector": ["power", "road"], "species": ["SO2"]})
    hours = pd.date_range("2024-01-01", "2024-12-31T23", freq="h")
    factors = xr.DataArray(np.full((2, hours.size), 1 / hours.size), dims=("sector", "time"),
                           coords={"sector": ["power", "road"], "time": hours},
                           attrs={"units": "1", "long_name": "fraction of the annual total "
                                  "emitted in the hour"})
    write_annual(tmp_path, annual, factors, static_coords(GRID),
                 {"title": "t", "history": "test", "tongyuan_build_id": "b1"})
    path = tmp_path / "annual.nc"
    with netCDF4.Dataset(path) as nc:
        assert nc["annual_emissions"].cell_methods == "year: mean"
        assert nc["annual_emissions"].coordinates == "lat lon year"
        assert nc["year"].standard_name == "time" and nc["year"][...] == 0
        assert nc["year"].units.startswith("hours since 2024-01-01")
        assert nc["temporal_factor"].cell_methods == "time: sum"
        np.testing.assert_array_equal(nc["time_bnds"][-1], [8783, 8784])  # 2024 has 8 784 h
        assert nc["sector"].dtype == "S1" and nc["sector"].dimensions == ("sector", "string5")
        assert "_FillValue" not in nc["x"].ncattrs() and "_FillValue" not in nc["time"].ncattrs()
    assert "cell_methods" not in factors.attrs  # the caller's array is left as it was
    with xr.open_dataset(path) as ds:
        assert list(ds["sector"].values) == ["power", "road"]
        np.testing.assert_array_equal(ds["annual_emissions"].sel(sector="road", species="SO2"),
                                      np.arange(12.0, 24.0).reshape(3, 4))
        assert ds["year"].values == np.datetime64("2024-01-01T00")
    assert_cf_clean(path)


_STREAM = """
import dask.array as da, netCDF4, numpy as np, psutil, xarray as xr
from pipeline.writers.netcdf_cf import _stream

ny, nx, hours = 400, 400, 24
rng = np.random.default_rng(0)
field = rng.random((hours, ny, nx)) * (rng.random((ny, nx)) < 0.5)  # 30.7 MB a species
names = [f"S{i}" for i in range(4)]
ds = xr.Dataset({n: (("time", "y", "x"), da.from_array(field * (i + 1), chunks=(6, ny, nx)))
                 for i, n in enumerate(names)})
with netCDF4.Dataset("day.nc", "w") as nc:
    for d, n in ds.sizes.items():
        nc.createDimension(d, n)
enc = {n: {"dtype": "float64", "zlib": True, "complevel": 1, "shuffle": False,
           "chunksizes": (1, ny, nx)} for n in names}
rss, p = {}, psutil.Process()
_stream("day.nc", ds, names, enc, 6, lambda name, slab: rss.__setitem__(name, p.memory_info().rss))
print(rss["S3"] - rss["S0"])
"""


def test_a_streamed_day_holds_a_few_hours_not_the_dirty_chunks_of_every_species(tmp_path):
    """HDF5's chunk cache (netCDF's default: 64 MB per variable) kept each species' written
    chunks until the file closed, so a streamed 100 m day grew by 65 MB per species. The
    streaming writer deflates and writes each chunk as it comes: memory after the fourth
    species is what it was after the first (here 31 MB per species: it grew by 95 MB)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", _STREAM], cwd=tmp_path, capture_output=True,
                          text=True, check=True, env={"PYTHONPATH": str(repo), "PATH": ""})
    grew = int(done.stdout)
    assert grew < 10 * 2**20, f"{grew / 2**20:.0f} MB more after 3 more species"
    with netCDF4.Dataset(tmp_path / "day.nc") as nc:  # and every hour is in the file
        assert nc["S3"][23].sum() == pytest.approx(4 * nc["S0"][23].sum(), rel=1e-12)
