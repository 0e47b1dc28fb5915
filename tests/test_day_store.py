"""The day files and their content-addressed store, without a build."""

import time
from contextlib import contextmanager
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.day_store import (
    DaysWritten,
    WriteContext,
    measure_day,
    previous_days,
    stored_days,
    write_day_dataset,
)
from pipeline.writers.netcdf_cf import static_coords


def _cube(tables, value=1e-9, days=2):
    g = tables.grid
    time = pd.date_range("2024-03-01", periods=24 * days, freq="h").to_numpy()
    flux = np.full((len(time), g.ny, g.nx), value)
    flux[:, 0, 0] = np.arange(len(time)) * value  # hours differ
    attrs = {"units": "kg m-2 s-1", "grid_mapping": "crs"}
    return xr.Dataset({"CO2": (("time", "y", "x"), flux, attrs)},
                      coords={"time": time, "y": g.y, "x": g.x})


def _ctx(tables, folder, build_id="20240101T000000000Z-aaaaaaaa", store=None, previous=None):
    return WriteContext(hourly_dir=folder, static=static_coords(tables.grid),
                        attrs={"tongyuan_build_id": build_id, "tongyuan_code_version": "t"},
                        year=2024, dtype="float64", complevel=1, shuffle=False,
                        previous=previous or {}, store=store)


def _write(cube, days, ctx, area) -> DaysWritten:
    out = DaysWritten()
    for day in days:
        start = np.datetime64(day.to_datetime64(), "h")
        day_ds = cube.sel(time=slice(start, start + np.timedelta64(23, "h")))
        out.update(write_day_dataset(day_ds, f"{day:%Y%m%d}", ctx, area,
                                     stored_days(ctx.store)))
    return out


def test_write_days_measures_the_mass_each_file_carries(tables, tmp_path):
    cube, area = _cube(tables), tables.grid.cell_area_m2
    got = _write(cube, [pd.Timestamp("2024-03-01")], _ctx(tables, tmp_path / "h"), area)
    assert got.files == [str(tmp_path / "h" / "20240301.nc")] and got.reused == {}
    expected = float((cube["CO2"].isel(time=slice(0, 24)) * area).sum()) * 3600.0
    assert got.written["20240301"]["CO2"] == pytest.approx(expected, rel=1e-12)
    with netCDF4.Dataset(got.files[0]) as nc:
        assert nc["CO2"].shape == (24, tables.grid.ny, tables.grid.nx)
        assert nc.tongyuan_build_id == "20240101T000000000Z-aaaaaaaa"


def test_content_hash_ignores_global_attributes_but_not_values(tables):
    day, area = _cube(tables).isel(time=slice(0, 24)), tables.grid.cell_area_m2

    def digest(ds, ctx, slab=6):
        return measure_day(ds, ctx, area, slab)[0]

    a = digest(day, _ctx(tables, None, build_id="20240101T000000000Z-aaaaaaaa"))
    b = digest(day, _ctx(tables, None, build_id="20240202T000000000Z-bbbbbbbb"))
    changed = day.copy(deep=True)
    changed["CO2"][3, 1, 1] *= 1 + 1e-15
    assert a == b != digest(changed, _ctx(tables, None))
    assert digest(day, _ctx(tables, None), slab=24) == a  # the slab size is not content
    other_code = _ctx(tables, None)
    other_code.attrs["tongyuan_code_version"] = "u"
    assert digest(day, other_code) != a


def test_a_stored_day_is_linked_not_rewritten_by_the_next_build(tables, tmp_path):
    store, cube, area = tmp_path / "store", _cube(tables), tables.grid.cell_area_m2
    days = [pd.Timestamp("2024-03-01"), pd.Timestamp("2024-03-02")]
    first = _write(cube, days, _ctx(tables, tmp_path / "b1", store=store), area)
    assert len(stored_days(store)) == 2
    second = _write(cube, days, _ctx(tables, tmp_path / "b2", store=store,
                                     build_id="20240202T000000000Z-bbbbbbbb"), area)
    assert second.reused == {"20240301": "20240101T000000000Z-aaaaaaaa",
                             "20240302": "20240101T000000000Z-aaaaaaaa"}
    assert second.content == first.content and second.written == first.written
    for a, b in zip(first.files, second.files, strict=True):
        assert (tmp_path / a).stat().st_ino == (tmp_path / b).stat().st_ino  # the same file


def test_a_corrupted_stored_day_is_written_again_not_linked(tables, tmp_path):
    """A day file changed in place after it was written (here: one cell_area value doubled,
    same size) is never reused by a later build: its sha256 no longer matches."""
    store, cube, area = tmp_path / "store", _cube(tables), tables.grid.cell_area_m2
    days = [pd.Timestamp("2024-03-01")]
    first = _write(cube, days, _ctx(tables, tmp_path / "b1", store=store), area)
    with netCDF4.Dataset(first.files[0], "a") as nc:
        nc["cell_area"][0, 0] = nc["cell_area"][0, 0] * 2
    second = _write(cube, days, _ctx(tables, tmp_path / "b2", store=store,
                                     build_id="20240202T000000000Z-bbbbbbbb"), area)
    assert second.reused == {}
    assert Path(second.files[0]).stat().st_ino != Path(first.files[0]).stat().st_ino
    with netCDF4.Dataset(second.files[0]) as nc:
        assert float(nc["cell_area"][0, 0]) == pytest.approx(float(area[0, 0]))


def test_previous_days_reads_the_pointed_build(tmp_path):
    from pipeline.publish import Manifest, publish, staging_dir, write_manifest
    from sources.files import sha256_file

    out, bid = tmp_path / "out", "20240101T000000000Z-aaaaaaaa"
    staging = staging_dir(out, bid)
    (staging / "hourly" / "20240301.nc").write_text("x")
    write_manifest(staging, Manifest(build_id=bid, config_hash="f", config="c", year=2024,
                                     day_content={"20240301": "h1", "20240302": "h2"},
                                     reused_days={"20240302": "older"}))
    assert previous_days(out / "latest") == {}
    publish(out, staging, bid)
    build = out / bid
    sha = sha256_file(build / "hourly" / "20240301.nc")
    assert previous_days(out / "latest") == {
        "20240301": ("h1", str(build / "hourly" / "20240301.nc"), bid, sha),
        "20240302": ("h2", str(build / "hourly" / "20240302.nc"), "older", None)}


def _inputs(tables, folder, store=None):
    from pipeline.cube import annual_grid
    from pipeline.day_store import DayInputs
    from pipeline.temporal import temporal_factors

    g = tables.grid
    rng = np.random.default_rng(7)
    sectors = list(tables.sectors["sector"])
    matrix = __import__("scipy.sparse").sparse.random(g.size, 6, density=0.3, random_state=7,
                                                      format="csr")
    em = pd.DataFrame(rng.uniform(1e3, 1e6, (6, 2)), columns=["CO2", "NOx"])
    annual = annual_grid(matrix, em, np.array(sectors[:2] * 3), g, ["CO2", "NOx"], sectors)
    factors = temporal_factors(tables.sectors, tables.profiles, 2024, "Asia/Shanghai", True)
    return DayInputs(annual=annual, factors=factors, grid=g, registry=tables.registry, cems=None,
                     ctx=_ctx(tables, folder, store=store))


@contextmanager
def three_schedulers():
    """(name, scheduler) of the three a build can write on: serial, 2 local worker processes
    and a LocalCluster of 2 single-threaded workers reached by its address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        yield (("serial", "synchronous"), ("processes", "processes"),
               ("cluster", cluster.scheduler_address))


def test_days_are_the_same_bytes_on_every_scheduler(tables, tmp_path):
    """Serial, 2 local worker processes and a LocalCluster of 2 single-threaded workers
    reached by address write byte-identical files and report the same masses."""
    from pipeline.day_store import write_days
    from sources.files import sha256_file

    days = list(pd.date_range("2024-03-09", periods=4, freq="D"))
    runs = {}
    with three_schedulers() as schedulers:
        for name, scheduler in schedulers:
            seen = []
            t0 = time.perf_counter()
            got = write_days(_inputs(tables, tmp_path / name), days, scheduler,
                             lambda done, total: seen.append((done, total)))
            wall = time.perf_counter() - t0
            assert seen[-1] == (4, 4) and got.stats.peak_rss_mb
            # each process that wrote days was busy in them for part of the run's wall time
            busy = got.stats.busy_s
            assert busy.keys() == got.stats.peak_rss_mb.keys(), name
            assert all(0 < s < wall for s in busy.values()), (name, busy, wall)
            runs[name] = (got, {Path(f).name: sha256_file(f) for f in got.files})
    serial = runs["serial"]
    assert serial[0].stats.scheduler == "synchronous"
    assert runs["processes"][0].stats.scheduler == "processes"
    for name in ("processes", "cluster"):
        got, sums = runs[name]
        assert sums == serial[1], name
        assert got.written == serial[0].written and got.content == serial[0].content
    assert len(runs["cluster"][0].stats.peak_rss_mb) == 2  # both workers wrote days


_MALLOC = """
import ctypes, resource
import numpy as np
from pipeline.parallel import tune_malloc

class Info(ctypes.Structure):  # glibc's struct mallinfo2 (glibc >= 2.33)
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info

def days():
    # 40 arrays of 4 MB, each freed before the next: the arrays of a day, one after another
    mapped, before = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        a = np.ones(2**19)
        mapped.append(libc.mallinfo2().hblkhd >= a.nbytes)  # the live array is its own mmap
        del a
    return all(mapped), any(mapped), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

untuned = days()
took = tune_malloc()
days()  # the heap grows to hold one array, once
tuned = days()
print(*untuned, *tuned, took)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="glibc on Linux")
def test_a_tuned_worker_reuses_freed_arrays_instead_of_mapping_new_ones():
    """Under distributed's worker environment (MALLOC_TRIM_THRESHOLD_=65536, which pins
    glibc's mmap threshold at 128 kB) each 4 MB array is a fresh mmap, its pages faulted in
    and zeroed again, and unmapped when freed. Tuned, the freed array's memory is reused from
    the heap, its pages already faulted in. Read from glibc's own counters (mallinfo2), not
    from the untuned page faults: with transparent huge pages set to ``always`` a fresh 4 MB
    mapping may fault in two 2 MB pages, not 1024 small ones (seen on CI: 120 faults)."""
    import ctypes
    import os
    import subprocess
    import sys

    if not hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2"):
        pytest.skip("glibc before 2.33 has no mallinfo2")
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    done = subprocess.run([sys.executable, "-c", _MALLOC], env=env, capture_output=True,
                          text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    all_u, _, _, _, any_t, faults_t, took = done.stdout.split()
    assert took == "True"
    assert all_u == "True"  # untuned: every array was a mapping of its own
    assert any_t == "False", done.stdout  # tuned: none was; each came from the heap
    assert int(faults_t) < 40, done.stdout  # and no array's pages were faulted in again


_RELEASE = """
import numpy as np, psutil
from pipeline.parallel import release_memory

p = psutil.Process()
rss = lambda: p.memory_info().rss
base = rss()
held = [np.ones(2**14) for _ in range(3000)]  # 3000 arrays of 128 kB (below the mmap threshold)
pin = [np.ones(2**14) for _ in range(3)]  # allocated last: the heap's top stays in use
del held
freed = rss()  # freed, but still this process's: glibc trims only a free top of the heap
took = release_memory(COLLECT)
print(base, freed, rss(), took)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="glibc on Linux")
@pytest.mark.parametrize("collect", [True, False])
def test_release_memory_gives_back_what_a_phase_freed_inside_the_heap(collect):
    """393 MB of small arrays freed below a live one stay in the process until
    :func:`pipeline.parallel.release_memory` (malloc_trim) returns their pages, with or
    without a garbage collection first (what reference counting freed needs none: the
    pickled inputs after a scatter)."""
    import os
    import subprocess
    import sys

    code = _RELEASE.replace("COLLECT", str(collect))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parent.parent,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC")})
    base, freed, after, took = done.stdout.split()
    assert took == "True"
    assert int(freed) - int(base) > 300e6, done.stdout  # held although freed
    assert int(after) - int(base) < 50e6, done.stdout  # given back


def test_a_day_too_large_to_hold_streams_with_the_same_content_and_stable_bytes(tables, tmp_path,
                                                                              monkeypatch):
    """Above IN_MEMORY_BYTES a day is computed, hashed and written a few hours at a time: the
    same content hash and masses as a day held whole, and the same bytes every time, whether
    it is hashed while written (nothing to reuse: computed once) or before (a store with days
    in it: computed twice, to look for its content first)."""
    from pipeline import day_store
    from sources.files import sha256_file

    day = [pd.Timestamp("2024-03-09")]
    whole = day_store.write_days(_inputs(tables, tmp_path / "whole"), day, "synchronous")
    monkeypatch.setattr(day_store, "IN_MEMORY_BYTES", 0)
    passes = []
    measure = day_store.measure_day
    monkeypatch.setattr(day_store, "measure_day", lambda *a, **k: passes.append(1) or measure(
        *a, **k))
    a = day_store.write_days(_inputs(tables, tmp_path / "a"), day, "synchronous")
    b = day_store.write_days(_inputs(tables, tmp_path / "b"), day, "synchronous")
    assert passes == []  # hashed and measured while written
    other = tmp_path / "other"  # a store holding another day: looked in before writing
    day_store.write_days(_inputs(tables, tmp_path / "o", store=other),
                         [pd.Timestamp("2024-03-10")], "synchronous")
    c = day_store.write_days(_inputs(tables, tmp_path / "c", store=other), day, "synchronous")
    assert passes == [1] and not c.reused
    for got in (a, b, c):
        assert got.content == whole.content and got.written == whole.written
        assert sha256_file(got.files[0]) == sha256_file(a.files[0])
    with netCDF4.Dataset(a.files[0]) as x, netCDF4.Dataset(whole.files[0]) as y:
        for v in ("CO2", "NOx"):
            np.testing.assert_array_equal(x[v][:], y[v][:])


def test_model_days_are_the_same_bytes_on_every_scheduler(world, tmp_path):
    """CMAQ and WRF-Chem day files written one after another, on 2 local worker processes and
    on a LocalCluster reached by address are byte-identical and carry the same amounts; the
    I/O API creation date and time are the build's start (its id), not the clock."""
    from pipeline import model_ready
    from pipeline.build import prepare
    from pipeline.config import load_config
    from sources.files import sha256_file
    from tests.test_models import _model_world

    _model_world(world)
    cfg = load_config(world, {"output.formats": ["cf", "cmaq", "wrfchem"],
                              "output.mechanism": "t1"})
    s = prepare(cfg)
    mo = model_ready.prepare(cfg, s.tables, s.activity, s.emissions, s.alloc.matrix, s.cems)
    attrs = {"tongyuan_build_id": "20240301T123456789Z-aaaaaaaa", "history": "test"}
    days = list(pd.date_range("2024-03-09", periods=3, freq="D"))
    runs = {}
    with three_schedulers() as schedulers:
        for name, scheduler in schedulers:
            seen = []
            measured = model_ready.write_days(mo, days, s.factors, tmp_path / name, attrs,
                                              scheduler,
                                              lambda done, total: seen.append((done, total)))
            assert seen[-1] == (3, 3)
            files = sorted(p for p in (tmp_path / name).rglob("*") if p.is_file())
            runs[name] = (measured, {str(p.relative_to(tmp_path / name)): sha256_file(p)
                                     for p in files})
    measured, sums = runs["serial"]
    assert len(sums) == 6 and {k.split("/")[0] for k in sums} == {"cmaq", "wrfchem"}
    assert sorted(measured) == ["cmaq", "wrfchem"]
    assert sorted(measured["cmaq"]) == ["20240309", "20240310", "20240311"]
    for name in ("processes", "cluster"):
        assert runs[name][1] == sums, name
        assert runs[name][0] == measured, name
    cmaq = next(tmp_path.glob("serial/cmaq/*20240309.nc"))
    with netCDF4.Dataset(cmaq) as nc:
        assert (int(nc.CDATE), int(nc.CTIME)) == (2024061, 123456)
        assert (int(nc.WDATE), int(nc.WTIME)) == (2024061, 123456)


def test_the_manifest_takes_the_sha256_measured_when_a_day_was_written(tmp_path):
    """write_manifest uses the sha256 a worker measured for a file that still has the size,
    time and inode it had then, and reads any file that changed since."""
    import os

    from pipeline.publish import HashedFile, Manifest, hash_file, read_manifest, write_manifest
    from sources.files import sha256_file

    build = tmp_path / "b"
    (build / "hourly").mkdir(parents=True)
    day, other = build / "hourly" / "20240301.nc", build / "ledger.csv"
    day.write_bytes(b"day file")
    other.write_text("a,b\n")
    measured = hash_file(day)
    assert measured.sha256 == sha256_file(day) and measured.bytes == 8
    marked = HashedFile("0" * 64, measured.bytes, measured.mtime_ns, measured.inode)
    m = Manifest(build_id="20240101T000000000Z-aaaaaaaa", config_hash="f", config="c", year=2024)
    write_manifest(build, m, {str(day): marked})
    files = read_manifest(build).files
    assert files["hourly/20240301.nc"].sha256 == "0" * 64  # taken, not read again
    assert files["ledger.csv"].sha256 == sha256_file(other)
    day.write_bytes(b"changed!")  # same size, new time
    os.utime(day, ns=(measured.mtime_ns + 10**9, measured.mtime_ns + 10**9))
    write_manifest(build, m, {str(day): marked})
    assert read_manifest(build).files["hourly/20240301.nc"].sha256 == sha256_file(day)


def test_days_start_from_one_file_of_the_static_variables(tables, tmp_path, monkeypatch):
    """write_days writes the static variables once and each day as a copy of that file with
    the day appended: the workers get its name and digest, not the arrays. The day reads back
    as the day written whole with its coordinates (same variables, values, attributes and
    content hash), and the file is gone afterwards."""
    from pipeline import day_store
    from pipeline.day_store import write_day, write_days

    day = pd.Timestamp("2024-03-09")
    whole = write_day(_inputs(tables, tmp_path / "whole"), day)  # static written with the day
    sent = []
    real = day_store.map_days
    monkeypatch.setattr(day_store, "map_days", lambda fn, shared, *a: sent.append(shared.ctx)
                        or real(fn, shared, *a))
    appended = write_days(_inputs(tables, tmp_path / "out" / "hourly"), [day], "synchronous")
    ctx = sent[0]
    assert ctx.static is None and ctx.template.name.startswith(".static-")
    assert ctx.static_digest == day_store.static_digest(static_coords(tables.grid))
    assert not ctx.template.exists() and sorted(p.name for p in (tmp_path / "out").iterdir()) \
        == ["hourly"]
    assert appended.content == whole.content  # the same content hash
    a, b = Path(whole.files[0]), Path(appended.files[0])
    with xr.open_dataset(a, decode_coords="all") as x, \
            xr.open_dataset(b, decode_coords="all") as y:
        assert set(x.variables) == set(y.variables) and "lon_bnds" in y and "CO2" in y
        xr.testing.assert_identical(x.drop_attrs(deep=False), y.drop_attrs(deep=False))
        assert x.attrs == y.attrs
    with netCDF4.Dataset(a) as x, netCDF4.Dataset(b) as y:
        for v in x.variables:  # the file's own encoding too: chunks, deflate, attributes
            assert x[v].chunking() == y[v].chunking() and x[v].filters() == y[v].filters(), v
            assert {k: str(x[v].getncattr(k)) for k in x[v].ncattrs()} == \
                {k: str(y[v].getncattr(k)) for k in y[v].ncattrs()}, v
