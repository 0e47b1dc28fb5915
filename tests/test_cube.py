"""The annual grid of a large domain (:mod:`pipeline.cube`): above ``DENSE_ANNUAL_BYTES`` it is
a dask array computed from the allocation matrix a sector and species at a time, and a build
made with it publishes the same inventory as one holding the grid whole."""

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import xarray as xr

from pipeline import cube
from pipeline.build import run_build
from pipeline.publish import read_manifest, verify_build
from pipeline.report.build_dir import open_build

PERIOD = ("2024-03-09", "2024-03-10")


def _grids(tables, monkeypatch):
    g = tables.grid
    sectors = list(tables.sectors["sector"])
    matrix = sp.random(g.size, 9, density=0.3, random_state=3, format="csr")
    em = pd.DataFrame(np.random.default_rng(3).uniform(1e3, 1e6, (9, 3)),
                      columns=["CO2", "NOx", "SO2"])
    assert len(sectors) >= 3
    src = np.array(sectors[:2] * 4 + sectors[:1])  # the other sectors have no source: zeros
    dense = cube.annual_grid(matrix, em, src, g, list(em.columns), sectors)
    monkeypatch.setattr(cube, "DENSE_ANNUAL_BYTES", 0)
    lazy = cube.annual_grid(matrix, em, src, g, list(em.columns), sectors)
    return dense, lazy


def test_a_large_annual_grid_is_lazy_and_the_dense_grid_bit_for_bit(tables, monkeypatch):
    dense, lazy = _grids(tables, monkeypatch)
    assert not cube.is_lazy(dense) and cube.is_lazy(lazy)
    assert lazy.data.chunks == tuple((1,) * n for n in lazy.shape[:2]) + (
        (tables.grid.ny,), (tables.grid.nx,))
    np.testing.assert_array_equal(lazy.to_numpy(), dense.to_numpy())
    # the ledger's reduction: the same sums, to the bit
    np.testing.assert_array_equal(lazy.sum(("y", "x")).to_numpy(),
                                  dense.sum(("y", "x")).to_numpy())
    np.testing.assert_array_equal(lazy.isel(sector=1, species=2, y=slice(1, 3)).to_numpy(),
                                  dense.isel(sector=1, species=2, y=slice(1, 3)).to_numpy())
    assert float(dense.isel(sector=0, species=0).sum()) > 0
    assert float(lazy.isel(sector=2).sum()) == 0.0


def test_lazy_days_on_worker_processes_are_the_bytes_of_the_dense_grid(tables, tmp_path,
                                                                       monkeypatch):
    """Day files from the lazy grid, written by 2 worker processes (the matrix sent to them,
    not the grid), are byte-identical to those of the dense grid written in this process."""
    from pipeline.day_store import DayInputs, write_days
    from pipeline.temporal import temporal_factors
    from sources.files import sha256_file
    from tests.test_day_store import _ctx

    dense, lazy = _grids(tables, monkeypatch)
    factors = temporal_factors(tables.sectors, tables.profiles, 2024, "Asia/Shanghai", True)
    days = list(pd.date_range(PERIOD[0], PERIOD[1], freq="D"))
    sums = {}
    for name, annual, scheduler in (("dense", dense, "synchronous"),
                                    ("lazy", lazy, "processes")):
        inputs = DayInputs(annual=annual, factors=factors, grid=tables.grid,
                           registry=tables.registry, cems=None, ctx=_ctx(tables, tmp_path / name))
        got = write_days(inputs, days, scheduler)
        assert got.stats.scheduler == scheduler
        sums[name] = ([Path(f).name for f in got.files], [sha256_file(f) for f in got.files],
                      got.written, got.content)
    assert sums["lazy"] == sums["dense"]
    assert sums["dense"][0] == ["20240309.nc", "20240310.nc"]


def test_a_build_with_the_lazy_grid_publishes_the_same_inventory(world, tmp_path, monkeypatch):
    """The fixture world (measured stacks included) built with the grid held whole and with
    the lazy grid: the same day arrays (their content hashes), ``annual.nc`` and ledger to the
    bit, and a complete, verified build with its report."""
    rows = ["source_id,time_utc,species,value,unit"] + [
        f"P1,2024-03-09T{h:02d}:00,SO2,{5 + h},kg" for h in range(24)]
    (world.parent.parent / "data" / "cems.csv").write_text("\n".join(rows) + "\n")
    world.write_text(world.read_text() + "cems: [../data/cems.csv]\n")
    builds = {"dense": run_build(world, out=tmp_path / "dense", period=PERIOD)}
    monkeypatch.setattr(cube, "DENSE_ANNUAL_BYTES", 0)
    builds["lazy"] = run_build(world, out=tmp_path / "lazy", period=PERIOD)
    d, lz = builds["dense"], builds["lazy"]
    for r in (d, lz):
        assert verify_build(r.build_dir) == [] and r.report is not None
    assert read_manifest(lz.build_dir).day_content == read_manifest(d.build_dir).day_content
    for a, b in zip(d.files, lz.files, strict=True):
        with netCDF4.Dataset(a) as x, netCDF4.Dataset(b) as y:
            species = [v for v in x.variables if x[v].dimensions == ("time", "y", "x")]
            assert len(species) > 1
            for v in species:
                np.testing.assert_array_equal(x[v][:], y[v][:])
    with xr.open_dataset(d.build_dir / "annual.nc") as x, \
            xr.open_dataset(lz.build_dir / "annual.nc") as y:
        xr.testing.assert_identical(x["annual_emissions"], y["annual_emissions"])
        xr.testing.assert_identical(x["temporal_factor"], y["temporal_factor"])
    ledger_d = pd.read_csv(d.build_dir / "ledger.csv")
    ledger_l = pd.read_csv(lz.build_dir / "ledger.csv")
    pd.testing.assert_frame_equal(ledger_l, ledger_d, check_exact=True)
    assert ledger_d["gridded_kg"].sum() > 0
    assert ledger_d["cems_measured_kg"].sum() == pytest.approx(sum(range(5, 29)))
    # the report's sums of the lazy grid, read from annual.nc a chunk at a time, are those
    # of the grid read whole
    lazy = open_build(lz.build_dir)
    monkeypatch.undo()
    dense = open_build(d.build_dir)
    assert isinstance(dense.annual.data, np.ndarray) and lazy.annual.chunks is not None
    xr.testing.assert_identical(lazy.sector_species_kg(), dense.sector_species_kg())
    np.testing.assert_array_equal(lazy.totals_t(), dense.totals_t())
    assert dense.totals_t().sum() * 1e3 == pytest.approx(ledger_d["gridded_kg"].sum(), rel=1e-12)


@pytest.mark.parametrize("key", [(0, 1), (slice(1, 3), 0, slice(None), slice(2, 4)),
                                 (slice(None), slice(None)),
                                 # one block, as dask asks for its chunks (the fast path)
                                 (slice(1, 2), 1, slice(0, 3), slice(0, 4)),
                                 (1, slice(0, 1), slice(None), slice(None)), (-1, 0),
                                 (slice(2, 3), slice(1, 2))])
def test_sparse_annual_indexes_like_the_dense_array(key):
    rng = np.random.default_rng(5)
    matrix = sp.random(12, 7, density=0.4, random_state=5, format="csr")
    e = rng.uniform(1.0, 10.0, (7, 2))
    sectors = np.array(list("aabbcca"))
    lazy = cube.SparseAnnual(matrix, e, sectors, ["a", "b", "c", "d"], 3, 4)
    dense = np.stack([lazy.block(i, k) for i in range(4) for k in range(2)]).reshape(4, 2, 3, 4)
    np.testing.assert_array_equal(lazy[key], dense[key])
    cols = np.flatnonzero(sectors == "b")
    np.testing.assert_allclose(dense[1, 1].ravel(), matrix.toarray()[:, cols] @ e[cols, 1],
                               rtol=1e-15)
    assert not dense[3].any()


def test_measured_stacks_add_their_correction_in_their_own_cells():
    """Three measured pairs, two NOx stacks in one cell and an SO2 stack beyond the grid: each
    correction [kg/h] lands in its stack's cell as a flux (÷ cell area · 3600), the two NOx
    stacks' together, nothing elsewhere; the dask cube gives the same."""
    from grids.grid import Grid
    from pipeline.cems import Cems
    from sources.species import load_species

    registry = load_species("config/species.yaml")
    grid = Grid(crs="EPSG:32651", x0=0, y0=0, dx=2_000, dy=1_000, nx=4, ny=3, name="g")
    rng = np.random.default_rng(11)
    annual = xr.DataArray(rng.random((2, 2, 3, 4)) * 1e6, dims=("sector", "species", "y", "x"),
                          coords={"sector": ["power", "road"], "species": ["NOx", "SO2"],
                                  "y": grid.y, "x": grid.x})
    factors = xr.DataArray(rng.random((2, 24)) / 1e3, dims=("sector", "time"), coords={
        "sector": ["power", "road"],
        "time": pd.date_range("2024-07-01", periods=24, freq="h").to_numpy()})
    correction = rng.normal(0.0, 5.0, (3, 24))
    cems = Cems(table=pd.DataFrame(), src=np.array([0, 1, 2]), species=["NOx", "NOx", "SO2"],
                sectors=["power"] * 3, cells=np.array([5, 5, -1]),
                series=np.zeros((3, 24)), measured=np.zeros((3, 24), bool), correction=correction)
    plain = cube.day_cube(annual, factors, grid, registry)
    got = cube.day_cube(annual, factors, grid, registry, cems=cems)
    added = (got["NOx"] - plain["NOx"]).to_numpy().reshape(24, -1)
    want = (correction[0] + correction[1]) / (grid.cell_area_m2.ravel()[5] * 3600.0)
    np.testing.assert_allclose(added[:, 5], want, rtol=1e-12)
    assert not np.delete(added, 5, axis=1).any()  # no other cell
    np.testing.assert_array_equal(got["SO2"].to_numpy(), plain["SO2"].to_numpy())  # beyond
    corr, to_cells = cube.stack_corrections(cems, "NOx", grid.cell_area_m2.ravel() * 3600.0)
    assert sp.issparse(to_cells) and to_cells.shape == (2, grid.size) and to_cells.nnz == 2
    dask_cube = cube.hourly_cube(annual, factors, grid, registry, cems=cems)
    np.testing.assert_allclose(got["NOx"].to_numpy(), dask_cube["NOx"].to_numpy(), rtol=1e-13)


def test_lazy_day_fluxes_come_from_the_matrix_and_are_the_dense_grids(tables, monkeypatch):
    """A day of the lazy grid is computed from its :class:`cube.SparseAnnual` directly (not
    through dask), in two-hour slabs, one species' rows reused for the next, a sector without
    emissions in these hours left out: the dense grid's values to the bit, each of the other
    sectors' blocks made once per species. A selection of the lazy grid has no matrix of its
    own: None."""
    from pipeline.temporal import temporal_factors

    dense, lazy = _grids(tables, monkeypatch)
    source = cube.sparse_source(lazy)
    assert isinstance(source, cube.SparseAnnual) and source.shape == lazy.shape
    assert cube.sparse_source(lazy.isel(sector=slice(0, 2))) is None
    factors = temporal_factors(tables.sectors, tables.profiles, 2024, "Asia/Shanghai", True)
    day = factors.isel(time=slice(24 * 70, 24 * 71)).copy()
    day.loc[{"sector": day["sector"].values[1]}] = 0.0  # a sector with sources, idle today
    want = cube.day_cube(dense, day, tables.grid, tables.registry, hours_per_chunk=2)
    got = cube.day_cube(lazy, day, tables.grid, tables.registry, hours_per_chunk=2)
    assert got[list(got.data_vars)[0]].data.chunks[0] == (2,) * 12
    calls = []
    monkeypatch.setattr(cube.SparseAnnual, "block",
                        lambda self, i, k, f=cube.SparseAnnual.block: calls.append(i) or f(
                            self, i, k))

    def through_dask(self, key):
        raise AssertionError(f"a chunk computed through dask: {key}")

    monkeypatch.setattr(cube.SparseAnnual, "__getitem__", through_dask)
    for name in want.data_vars:  # species after species, as the writers go
        np.testing.assert_array_equal(got[name].to_numpy(), want[name].to_numpy())
        assert float(want[name].sum()) > 0
    n = len(day["sector"])
    assert 1 not in calls and len(calls) == (n - 1) * len(want.data_vars)
