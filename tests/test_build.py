"""The build recipe (:mod:`pipeline.build`) without Prefect: run_build publishes a complete
build, and publishes the same arrays as the CLI (which runs the recipe under Prefect)."""

import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest

from pipeline.build import BuildState, Runner, prepare, run_build
from pipeline.publish import read_manifest, verify_build
from sources.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
DAY = ("2024-03-01", "2024-03-01")


def test_run_build_publishes_a_complete_build_without_importing_prefect(world, tmp_path):
    code = (f"import sys; from pipeline import run_build; "
            f"r = run_build({str(world)!r}, out={str(tmp_path / 'out')!r}, period={DAY!r}); "
            "print(r.build_dir); "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'prefect'], 'prefect'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    build = Path(done.stdout.strip().splitlines()[-1])
    assert (tmp_path / "out" / "latest-period").resolve() == build.resolve()
    files = read_manifest(build).files
    assert {"hourly/20240301.nc", "ledger.csv", "annual.nc", "sources.csv", "inputs.csv",
            "checks.csv", "emissions_by_source.csv", "report/index.html"} <= set(files)
    assert verify_build(build) == []


def test_build_result_fields(world, tmp_path, monkeypatch):
    import pipeline.build as build

    seen = []
    write_files = build._write_files

    def spy(state, staging, ctx, runner):  # what the parent holds while the days are written
        seen.append((ctx.static, ctx.template, ctx.template.exists()))
        return write_files(state, staging, ctx, runner)

    monkeypatch.setattr(build, "_write_files", spy)
    r = run_build(world, out=tmp_path / "out", period=DAY)
    [(static, template, existed)] = seen
    assert static is None and existed and template.parent.name == f".staging-{r.build_id}"
    assert not [p for p in r.build_dir.rglob(".static-*")]  # removed before publishing
    with netCDF4.Dataset(r.files[0]) as day, netCDF4.Dataset(r.build_dir / "annual.nc") as ann:
        shared = {"lon", "lat", "lon_bnds", "lat_bnds", "x_bnds", "y_bnds"} & set(ann.variables)
        assert {"lon_bnds", "lat_bnds"} <= shared
        for v in shared:  # made again after the days: the same
            np.testing.assert_array_equal(ann[v][:], day[v][:])
            assert ann[v].ncattrs() == day[v].ncattrs()
    assert r.published and r.latest == tmp_path / "out" / "latest-period"
    assert r.files == [r.build_dir / "hourly" / "20240301.nc"]
    assert r.period == DAY and r.formats == ["cf"] and r.manifest.build_id == r.build_id
    assert set(r.totals.columns) >= {"read_kg", "gridded_kg", "outside_domain_kg",
                                     "rejected_kg", "written_kg"}
    with netCDF4.Dataset(r.files[0]) as nc:
        co2 = float((nc["CO2"][:].astype(np.float64) * nc["cell_area"][:]).sum() * 3600.0)
    assert co2 == pytest.approx(r.totals.loc["CO2", "written_kg"], rel=1e-9)
    assert set(r.timings) >= {"read+emissions", "allocate", "grid+time", "write", "publish"}


def test_unknown_overrides_are_refused(world):
    with pytest.raises(ConfigError, match=r"unknown build override\(s\) \['outdir'\]"):
        run_build(world, outdir="x")


def test_prepare_carries_cems_so_no_later_step_can_forget_it(world):
    data = world.parent.parent / "data"
    rows = ["source_id,time_utc,species,value,unit"] + [
        f"P1,2024-03-01T{h:02d}:00,SO2,{5 + h},kg" for h in range(24)]
    (data / "cems.csv").write_text("\n".join(rows) + "\n")
    world.write_text(world.read_text() + "cems: [../data/cems.csv]\n")
    calls = []

    class Recording(Runner):
        def run(self, name, fn, *args):
            calls.append(name)
            return fn(*args)

        def io(self, name, fn, *args):
            calls.append(name)
            return fn(*args)

    state = prepare(world, runner=Recording())
    assert isinstance(state, BuildState) and state.cems is not None
    assert calls == ["tables", "checks", "allocate", "annual", "factors", "ledger", "cems"]
    row = state.cems.table.set_index(["source_id", "species"]).loc[("P1", "SO2")]
    assert row.measured_hours == 24 and row.measured_kg == pytest.approx(sum(range(5, 29)))


@pytest.fixture(scope="module")
def demo_day(tmp_path_factory):
    """The shipped demo config, its CEMS file included, built without Prefect for one July
    day (the CEMS month)."""
    return run_build(REPO / "config" / "shanghai.yaml",
                     out=tmp_path_factory.mktemp("demo") / "plain",
                     period=("2024-07-01", "2024-07-01"))


@pytest.mark.slow
def test_run_build_equals_the_cli_build_in_every_array_cems_included(prefect_harness,
                                                                     demo_day, tmp_path):
    """The shipped demo config (with its CEMS file) for one July day: the Prefect-free
    recipe and ``tongyuan build`` write the same arrays, ledger and tables."""
    from pipeline.cli import main

    config = REPO / "config" / "shanghai.yaml"
    day = "2024-07-01"
    plain = demo_day
    assert main(["build", "--config", str(config), "--out", str(tmp_path / "cli"),
                 "--period", f"{day}:{day}"]) == 0
    cli = (tmp_path / "cli" / "latest-period").resolve()
    assert plain.ledger.table["cems_measured_kg"].sum() > 0  # CEMS really was in the build
    for rel in ("hourly/20240701.nc", "annual.nc"):
        with netCDF4.Dataset(plain.build_dir / rel) as a, netCDF4.Dataset(cli / rel) as b:
            assert set(a.variables) == set(b.variables)
            for name in a.variables:
                np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=f"{rel}:{name}")
    for rel in ("ledger.csv", "cems.csv", "emissions_by_source.csv", "sources.csv",
                "checks.csv", "notices.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(plain.build_dir / rel), pd.read_csv(cli / rel))
    with netCDF4.Dataset(plain.files[0]) as a, netCDF4.Dataset(cli / "hourly" / "20240701.nc") as b:
        same_code = a.tongyuan_code_version == b.tongyuan_code_version
    if same_code:  # the content hash includes the code version (a commit between the builds)
        assert read_manifest(cli).day_content == plain.manifest.day_content


@pytest.mark.slow
def test_demo_files_pass_the_cf_checker_cems_included(demo_day, tmp_path):
    """The shipped demo with its CEMS file: a day file, ``annual.nc`` and a bbox subset of the
    download service pass ``compliance-checker --test cf:1.8 --criteria strict`` with no
    finding (``difference.nc`` of the demo's plan-2030: tests/test_scenario.py)."""
    from pipeline.files_subset import SubsetRequest, make_subset
    from tests.cf_checker import assert_cf_clean

    assert demo_day.ledger.table["cems_measured_kg"].sum() > 0  # CEMS really was in the build
    day = demo_day.build_dir / "hourly" / "20240701.nc"
    annual = demo_day.build_dir / "annual.nc"
    with netCDF4.Dataset(day) as nc:  # the CEMS file's name, made an attribute name
        assert len(nc.getncattr("input_sha256_cems_P0001_2024_07")) == 64
        assert nc["NOx"].cell_methods == "time: mean" and nc["time"].bounds == "time_bnds"
        x_bnds, lon_bnds = nc["x_bnds"][:], nc["lon_bnds"][:]
    sub, _ = make_subset(SubsetRequest(
        build=demo_day.build_id, paths=(str(day),), species=("NOx", "CO2"),
        start="2024-07-01T00", end="2024-07-01T05", bbox=(121.2, 31.0, 121.8, 31.5),
        tmpdir=str(tmp_path)))
    with netCDF4.Dataset(sub) as nc, netCDF4.Dataset(day) as full:
        # the subset's bounds are the day file's, cut to its rows, columns and hours
        i0 = int(np.flatnonzero(full["x"][:] == nc["x"][0])[0])
        j0 = int(np.flatnonzero(full["y"][:] == nc["y"][0])[0])
        ny, nx = nc.dimensions["y"].size, nc.dimensions["x"].size
        np.testing.assert_array_equal(nc["x_bnds"][:], x_bnds[i0:i0 + nx])
        np.testing.assert_array_equal(nc["lon_bnds"][:], lon_bnds[j0:j0 + ny, i0:i0 + nx])
        np.testing.assert_array_equal(nc["time_bnds"][:], full["time_bnds"][:6])
        # the values of the cells whose centre lies in the box, the others masked
        lon, lat = full["lon"][j0:j0 + ny, i0:i0 + nx], full["lat"][j0:j0 + ny, i0:i0 + nx]
        inside = (lon >= 121.2) & (lon <= 121.8) & (lat >= 31.0) & (lat <= 31.5)
        nox = nc["NOx"][:]
        assert 0 < inside.sum() < inside.size
        np.testing.assert_array_equal(np.ma.getmaskarray(nox), np.broadcast_to(~inside, nox.shape))
        np.testing.assert_array_equal(nox[:, inside], full["NOx"][:6, j0:j0 + ny, i0:i0 + nx][
            :, inside])
    for path in (day, annual, sub):
        assert_cf_clean(path)


def test_tongyuan_verify_finds_a_flipped_byte(world, tmp_path, capsys):
    from pipeline.cli import main

    r = run_build(world, out=tmp_path / "out", period=DAY)
    assert main(["verify", str(r.latest)]) == 0
    assert "every file matches the manifest" in capsys.readouterr().out
    day = r.files[0]
    data = bytearray(day.read_bytes())
    data[-100] ^= 0xFF
    day.write_bytes(bytes(data))
    assert main(["verify", str(r.latest)]) == 1
    assert f"{r.build_id}/hourly/20240301.nc: sha256 differs from the manifest" in \
        capsys.readouterr().err
    assert main(["verify", str(tmp_path)]) == 2


def test_rewriting_the_report_of_a_published_build_never_breaks_it(world, tmp_path):
    """The report of a published build is rebuilt aside and swapped in: a failure (a kill)
    while it is written leaves the old report and a valid manifest; a finished rewrite leaves a
    valid manifest listing exactly the new files."""
    from pipeline.publish import replace_subdir
    from pipeline.report import write_report

    r = run_build(world, out=tmp_path / "out", period=DAY)
    before = read_manifest(r.build_dir).files["report/index.html"]

    def dies(folder):
        (folder / "index.html").write_text("half a report")
        raise KeyboardInterrupt  # as a kill would stop it here

    with pytest.raises(KeyboardInterrupt):
        replace_subdir(r.build_dir, "report", dies)
    assert verify_build(r.build_dir) == []
    assert read_manifest(r.build_dir).files["report/index.html"] == before
    replace_subdir(r.build_dir, "report", lambda folder: write_report(r.build_dir, folder))
    assert verify_build(r.build_dir) == [] and not list(r.build_dir.glob(".report-*"))
    listed = {k for k in read_manifest(r.build_dir).files if k.startswith("report/")}
    assert listed == {f"report/{p.name}" for p in (r.build_dir / "report").iterdir()}


def test_a_full_disk_or_an_unwritable_out_is_one_clear_error(world, tmp_path, monkeypatch):
    import errno

    from pipeline.writers import netcdf_cf
    from sources.errors import OutputError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(netcdf_cf, "write", full)
    with pytest.raises(OutputError, match=r"the disk is full \([\d,]+ MB free\) while writing "
                       r"the build .*nothing was published"):
        run_build(world, out=tmp_path / "out", period=DAY)
    assert not (tmp_path / "out" / "latest-period").exists()
    assert not list((tmp_path / "out").glob(".staging-*"))
    with pytest.raises(OutputError, match="the output directory cannot be written"):
        run_build(world, out="/proc/tongyuan-out", period=DAY)
