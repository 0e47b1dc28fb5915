"""End-to-end builds through the Prefect flows (pipeline.flows): layout, manifest, CF files,
the CLI, caching, nightly regeneration, retries, kills and resume."""

import json
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sources.errors import BuildLockedError, InputError
from sources.files import sha256_file
from tests.world import write_world

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

# CO2 kg/yr per flat cell index, by hand (see tests/world.py)
EXPECTED_CO2 = {0: 2_000_000 + 100_000 + 100_000 + 1500, 1: 200_000 + 500, 6: 2000,
                7: 50_000, 11: 1_000_000 + 1000}


@pytest.fixture(scope="module")
def built(tmp_path_factory, prefect_harness):
    from pipeline.flows import build_inventory

    root = tmp_path_factory.mktemp("e2e")
    cfg = write_world(root)
    summary = build_inventory(str(cfg), out_dir=str(root / "out"))
    return root, summary


def test_layout_and_latest(built):
    root, summary = built
    out = root / "out"
    latest = out / "latest"
    assert latest.is_symlink() and latest.resolve() == Path(summary.build_dir).resolve()
    files = sorted((latest / "hourly").glob("*.nc"))
    assert len(files) == 366 and files[0].name == "20240101.nc" and files[-1].name == "20241231.nc"
    assert not list(out.glob(".staging-*"))
    for name in ("ledger.csv", "manifest.json", "emissions_by_source.csv", "notices.csv",
                 "sources.csv", "inputs.csv", "annual.nc"):
        assert (latest / name).exists()


def test_manifest_checksums(built):
    root, _ = built
    latest = root / "out" / "latest"
    manifest = json.loads((latest / "manifest.json").read_text())
    hourly = [f for f in manifest["files"] if f.startswith("hourly/")]
    assert len(hourly) == 366
    top = {f for f in manifest["files"] if "/" not in f}
    assert top == {"annual.nc", "checks.csv", "emissions_by_source.csv", "inputs.csv",
                   "ledger.csv", "notices.csv", "sources.csv", "totals_ipcc.csv",
                   "totals_mee.csv"}
    assert "report/index.html" in manifest["files"]
    entry = manifest["files"]["hourly/20240212.nc"]
    assert entry["sha256"] == sha256_file(latest / "hourly" / "20240212.nc")


def test_cf_structure(built):
    root, summary = built
    path = root / "out" / "latest" / "hourly" / "20240101.nc"
    ds = xr.open_dataset(path)
    assert dict(ds.sizes) == {"time": 24, "y": 3, "x": 4, "bnds": 2, "nv": 4}
    assert ds["lon_bnds"].dims == ("y", "x", "nv") and ds["time_bnds"].dims == ("time", "bnds")
    assert ds["CO2"].attrs["cell_methods"] == "time: mean"
    assert set(ds.data_vars) >= {"SO2", "NOx", "CO", "NMVOC", "NH3", "PM10", "PM2_5", "BC", "OC",
                                 "CO2", "CH4", "N2O", "CO2e", "crs", "cell_area"}
    co2 = ds["CO2"]
    assert co2.dims == ("time", "y", "x") and co2.attrs["units"] == "kg m-2 s-1"
    assert co2.attrs["grid_mapping"] == "crs"
    assert ds["SO2"].attrs["standard_name"].startswith("tendency_of_atmosphere_mass_content")
    assert ds["crs"].attrs["grid_mapping_name"] == "transverse_mercator"
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate"
    assert ds["lat"].attrs["units"] == "degrees_north" and ds["lat"].shape == (3, 4)
    assert str(ds.time.values[0]).startswith("2024-01-01T00")
    assert ds.attrs["Conventions"] == "CF-1.8"
    assert ds.attrs["tongyuan_build_id"] == summary.build_id
    assert len(ds.attrs["tongyuan_config_hash"]) == 64
    assert len(ds.attrs["input_sha256_points"]) == 64
    ds.close()
    with netCDF4.Dataset(path) as nc:
        v = nc["CO2"]
        assert v.filters()["zlib"] and v.filters()["complevel"] == 1
        assert not v.filters()["shuffle"]
        assert v.chunking() == [1, 3, 4]
        assert nc["time"].units.startswith("hours since 2024-01-01")
        assert nc["time"].dtype == np.int32


def test_year_of_files_carries_annual_totals_exactly(built):
    root, summary = built
    ds = xr.open_mfdataset(sorted((root / "out" / "latest" / "hourly").glob("*.nc")),
                           combine="by_coords", data_vars="minimal", coords="minimal",
                           compat="override")
    area = ds["cell_area"].isel(time=0) if "time" in ds["cell_area"].dims else ds["cell_area"]
    co2 = (ds["CO2"] * area * 3600).sum("time").compute().to_numpy().ravel()
    for cell, kg in EXPECTED_CO2.items():
        assert co2[cell] == pytest.approx(kg, rel=1e-12)
    assert co2.sum() == pytest.approx(sum(EXPECTED_CO2.values()), rel=1e-12)
    ledger = pd.read_csv(root / "out" / "latest" / "ledger.csv").set_index(["sector", "species"])
    total = ledger.groupby(level="species").sum()
    assert total.loc["CO2", "read_kg"] == pytest.approx(3_806_000, rel=1e-12)
    assert total.loc["CO2", "gridded_kg"] == pytest.approx(3_455_000, rel=1e-12)
    assert total.loc["CO2", "outside_domain_kg"] == pytest.approx(351_000, rel=1e-12)
    assert total.loc["CO2", "written_kg"] == pytest.approx(3_455_000, rel=1e-12)
    nox = (ds["NOx"] * area * 3600).sum().compute()
    assert float(nox) == pytest.approx(total.loc["NOx", "gridded_kg"], rel=1e-12)
    ds.close()


def test_road_hour_lands_at_utc_midnight(built):
    root, _ = built
    ds = xr.open_dataset(root / "out" / "latest" / "hourly" / "20240219.nc")
    # cell (0,1) holds road and residential only; road is all in 00 UTC (08 local)
    cell = ds["CO2"].isel(y=0, x=1).to_numpy() * 1e6 * 3600
    res_per_hour = 500 / 8784
    assert cell[0] > 100 * res_per_hour
    np.testing.assert_allclose(cell[1:], res_per_hour, rtol=1e-9)
    ds.close()


def test_rejected_sector_goes_to_ledger(tmp_path):
    from pipeline.flows import build_inventory

    cfg = write_world(tmp_path, sectors=["power", "road"])
    summary = build_inventory(str(cfg), out_dir=str(tmp_path / "out"))
    t = summary.totals
    assert t.loc["CO2", "rejected_kg"] == pytest.approx(6000, rel=1e-12)
    assert t.loc["CO2", "read_kg"] == pytest.approx(3_806_000, rel=1e-12)
    assert t.loc["CO2", "gridded_kg"] == pytest.approx(3_450_000, rel=1e-12)


def test_failed_build_leaves_latest_untouched(built, tmp_path):
    from pipeline.flows import build_inventory

    root, summary = built
    out = root / "out"
    before = (out / "latest").resolve()
    (root / "data" / "points.csv").write_text(
        "source_id,sector,fuel,technology,control,activity,activity_unit,x,y\n"
        "P1,power,coal,boiler,none,-1,t,300500,3400500\n")
    with pytest.raises(InputError, match="negative activity"):
        build_inventory(str(root / "config" / "build.yaml"), out_dir=str(out))
    assert (out / "latest").resolve() == before
    assert not list(out.glob(".staging-*"))


def test_second_concurrent_build_is_refused(tmp_path):
    from pipeline.publish import build_lock

    with build_lock(tmp_path):
        with pytest.raises(BuildLockedError, match="another build is running"):
            with build_lock(tmp_path):
                pass


def test_cli_build_and_bad_arguments(tmp_path, capsys):
    from pipeline.cli import main

    cfg = write_world(tmp_path)
    assert main(["build", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "published" in out and "CO2" in out and "balance" in out
    latest = tmp_path / "o" / "latest"
    assert (latest / "report" / "index.html").exists()  # written by every build
    manifest = json.loads((latest / "manifest.json").read_text())
    assert "report/index.html" in manifest["files"]
    assert main(["report", str(latest)]) == 0  # rewritten in place: manifest still valid
    manifest = json.loads((latest / "manifest.json").read_text())
    assert manifest["files"]["report/index.html"]["sha256"] == sha256_file(
        latest / "report" / "index.html")
    assert main(["report", str(latest), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "index.html").exists()
    assert main(["compare", str(latest), str(latest), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "differences.csv").exists()
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 2
    assert "not a Tongyuan build directory" in capsys.readouterr().err
    assert main(["build", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["build"])
    assert exc.value.code == 2


def test_cf_compliance_checker_passes(built):
    """IOOS compliance-checker, CF-1.8, offline (its packaged standard-name table): a day
    file and annual.nc."""
    from tests.cf_checker import assert_cf_clean

    root, _ = built
    for rel in ("hourly/20240701.nc", "annual.nc"):
        assert_cf_clean(root / "out" / "latest" / rel)


def test_annual_file_and_sources_table(built):
    root, _ = built
    latest = root / "out" / "latest"
    with xr.open_dataset(latest / "annual.nc") as ds:
        co2 = ds["annual_emissions"].sel(species="CO2").sum("sector").to_numpy().ravel()
        for cell, kg in EXPECTED_CO2.items():
            assert co2[cell] == pytest.approx(kg, rel=1e-12)
        np.testing.assert_allclose(ds["temporal_factor"].sum("time"), 1.0, atol=1e-12)
    src = pd.read_csv(latest / "sources.csv").set_index("source_id")
    assert src.loc["L2", "outside_domain_fraction"] == pytest.approx(0.75)
    assert src.loc["P1", "x"] == pytest.approx(300500) and src.loc["P1", "input_row"] == 1
    # published tables name files relative to the config, never by the server's paths
    assert src.loc["P1", "input_file"] == "../data/points.csv"
    inputs = pd.read_csv(latest / "inputs.csv").set_index("name")
    assert inputs.loc["points", "path"] == "../data/points.csv"


def test_period_build_writes_only_those_days(tmp_path):
    from pipeline.flows import build_inventory

    cfg = write_world(tmp_path)
    summary = build_inventory(str(cfg), out_dir=str(tmp_path / "out"),
                              period=("2024-02-10", "2024-02-12"))
    build = Path(summary.build_dir)
    hourly = sorted((build / "hourly").glob("*.nc"))
    assert [p.name for p in hourly] == ["20240210.nc", "20240211.nc", "20240212.nc"]
    # an episode never replaces the full-year 'latest'
    assert not (tmp_path / "out" / "latest").exists()
    assert (tmp_path / "out" / "latest-period").resolve() == build.resolve()
    t = summary.totals
    # power is flat: 72 of 8784 hours
    ledger = pd.read_csv(build / "ledger.csv").set_index(["sector", "species"])
    row = ledger.loc[("power", "CO2")]
    assert row.written_kg == pytest.approx(row.gridded_kg * 72 / 8784, rel=1e-12)
    ds = xr.open_mfdataset(hourly, combine="by_coords", data_vars="minimal", coords="minimal",
                           compat="override")
    co2 = float((ds["CO2"] * ds["cell_area"] * 3600).sum().compute())
    assert co2 == pytest.approx(t.loc["CO2", "written_kg"], rel=1e-12)
    ds.close()


def test_period_outside_the_year_is_refused(tmp_path):
    from pipeline.flows import build_inventory
    from sources.errors import ConfigError

    cfg = write_world(tmp_path)
    with pytest.raises(ConfigError, match="must be ordered and lie in the output year 2024"):
        build_inventory(str(cfg), out_dir=str(tmp_path / "out"), period=("2024-12-30", "2025-01-02"))


def test_float32_output(tmp_path):
    from pipeline.flows import build_inventory

    cfg = write_world(tmp_path)
    cfg.write_text(cfg.read_text().replace("output: {dir: ../out}",
                                           "output: {dir: ../out, dtype: float32}"))
    summary = build_inventory(str(cfg), period=("2024-03-01", "2024-03-01"))
    with netCDF4.Dataset(Path(summary.build_dir) / "hourly" / "20240301.nc") as nc:
        assert nc["CO2"].dtype == np.float32
        kg = (nc["CO2"][:].astype(np.float64) * nc["cell_area"][:] * 3600).sum()
    assert kg == pytest.approx(summary.totals.loc["CO2", "written_kg"], rel=1e-6)


def test_checks_configured_as_errors_stop_the_build(tmp_path):
    """A same-source check configured as an error fails the build before anything is written;
    as a warning it is recorded in checks.csv of the published build."""
    from pipeline.checks import ChecksFailedError
    from pipeline.flows import build_inventory

    cfg = write_world(tmp_path)
    # fixture power: NOx/CO2 = 5 kg/t / 2000 kg/t = 2.5 g/kg; a range that excludes it
    checks = tmp_path / "config" / "checks.yaml"
    checks.write_text("version: 1\nratio_severity: error\nsectors:\n  power:\n    ratios:\n"
                      "      NOx/CO2: {range: [0.01, 1.0], unit: g/kg, basis: test}\n")
    cfg.write_text(cfg.read_text().replace("temporal_profiles: temporal_profiles.csv",
                                           "temporal_profiles: temporal_profiles.csv\n"
                                           "  checks: checks.yaml"))
    out = tmp_path / "out"
    with pytest.raises(ChecksFailedError, match=r"power NOx/CO2"):
        build_inventory(str(cfg), out_dir=str(out), period=("2024-01-01", "2024-01-01"))
    assert not (out / "latest").exists()
    checks.write_text(checks.read_text().replace("ratio_severity: error",
                                                 "ratio_severity: warning"))
    summary = build_inventory(str(cfg), out_dir=str(out), period=("2024-01-01", "2024-01-01"))
    found = pd.read_csv(Path(summary.build_dir) / "checks.csv")
    assert (found["severity"] == "warning").any()
    assert found["message"].str.contains("2.5").any()


def test_build_attaches_report_summary_as_prefect_artifact(built):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    _, summary = built
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["build-summary"])))
    texts = [a.data for a in arts if summary.build_id in str(a.data)]
    assert texts, [a.description for a in arts]
    assert "| CO2 | 3,806 | 3,455 | 351.0 | 0 |" in texts[0]


def test_cli_creates_the_prefect_home_on_a_fresh_machine(tmp_path, monkeypatch):
    """Prefect makes only the last level of PREFECT_HOME; without its parent the temporary
    server cannot open its database and times out after two minutes."""
    from pipeline.cli import prefect_environment

    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    prefect_environment(False)
    assert (tmp_path / ".tongyuan" / "prefect").is_dir()


def test_second_build_reuses_cached_allocation_with_identical_output(world, prefect_harness,
                                                                     tmp_path):
    from pipeline.flows import build_inventory

    out = tmp_path / "out"
    day = ("2024-03-01", "2024-03-01")
    s1 = build_inventory(str(world), out_dir=str(out), period=day)
    assert {state for c in s1.cache.values() for state in c.values()} == {"computed"}
    assert (out / ".cache" / "allocation").is_dir() and (out / ".cache" / "tasks").is_dir()
    s2 = build_inventory(str(world), out_dir=str(out), period=day)
    assert s2.cache == {name: {"read": "hit", "emissions": "hit", "allocation": "hit"}
                           for name in ("points", "lines", "areas")}
    a = xr.open_dataset(Path(s1.build_dir) / "annual.nc")
    b = xr.open_dataset(Path(s2.build_dir) / "annual.nc")
    with a, b:
        np.testing.assert_array_equal(a["annual_emissions"].values, b["annual_emissions"].values)
    m = json.loads((Path(s2.build_dir) / "manifest.json").read_text())
    assert not any(".cache" in f for f in m["files"])


def test_one_input_changed_recomputes_only_what_depends_on_it(world, prefect_harness, tmp_path):
    """A change to the road data re-reads the roads, recomputes their emissions and (the
    geometry having moved) their allocation; the other inputs come from the cache, and the
    result equals a build from scratch. A factor change recomputes every input's emissions
    but re-reads nothing."""
    from pipeline.flows import build_inventory

    out = tmp_path / "out"
    day = ("2024-03-01", "2024-03-01")
    s1 = build_inventory(str(world), out_dir=str(out), period=day)
    lines = world.parent.parent / "data" / "lines.csv"
    lines.write_text(lines.read_text().replace("LINESTRING (303500 3401500, 305500 3401500)",
                                               "LINESTRING (303500 3401500, 303900 3401500)"))
    s2 = build_inventory(str(world), out_dir=str(out), period=day)
    assert s2.cache == {
        "points": {"read": "hit", "emissions": "hit", "allocation": "hit"},
        "lines": {"read": "computed", "emissions": "computed", "allocation": "computed"},
        "areas": {"read": "hit", "emissions": "hit", "allocation": "hit"}}
    fresh = build_inventory(str(world), out_dir=str(tmp_path / "fresh"), period=day)
    a = xr.open_dataset(Path(s2.build_dir) / "annual.nc")
    b = xr.open_dataset(Path(fresh.build_dir) / "annual.nc")
    with a, b:
        np.testing.assert_array_equal(a["annual_emissions"].values, b["annual_emissions"].values)
    pd.testing.assert_frame_equal(s2.totals, fresh.totals)
    # L2 now lies inside the grid: the 75 % of its 500 kg NOx that lay beyond it is gridded
    assert s1.totals.loc["NOx", "outside_domain_kg"] - \
        s2.totals.loc["NOx", "outside_domain_kg"] == pytest.approx(375.0)

    factors = world.parent / "emission_factors.csv"
    factors.write_text(factors.read_text().replace("road,gasoline,car,NOx,0.5,g/km",
                                                   "road,gasoline,car,NOx,0.6,g/km"))
    s3 = build_inventory(str(world), out_dir=str(out), period=day)
    assert s3.cache == {name: {"read": "hit", "emissions": "computed", "allocation": "hit"}
                           for name in ("points", "lines", "areas")}
    assert s3.totals.loc["NOx", "read_kg"] - s2.totals.loc["NOx", "read_kg"] == \
        pytest.approx(3 * 1e6 * 0.1e-3)


def test_changes_entry_and_retention(world, prefect_harness, tmp_path):
    """Every publish prepends a CHANGES.md entry (inputs changed, totals before/after); only
    the newest keep_builds builds stay, never one a pointer refers to, and the cache keeps only
    the task records and matrices the kept builds used."""
    from pipeline.flows import build_inventory

    out = tmp_path / "out"
    world.write_text(world.read_text().replace("output: {dir: ../out}",
                                               "output: {dir: ../out, keep_builds: 2}"))
    day = ("2024-03-01", "2024-03-01")
    s1 = build_inventory(str(world), out_dir=str(out), period=day)
    changes = (out / "CHANGES.md").read_text()
    assert f"## {Path(s1.build_dir).name} → latest-period" in changes
    assert "First build published under this pointer." in changes
    lines = world.parent.parent / "data" / "lines.csv"
    lines.write_text(lines.read_text().replace(",1000000,km,", ",2000000,km,"))  # road ×2
    s2 = build_inventory(str(world), out_dir=str(out), period=day)
    entry = (out / "CHANGES.md").read_text().split("## ")[1]
    assert entry.startswith(f"{Path(s2.build_dir).name} → latest-period")
    assert f"Previous: {Path(s1.build_dir).name}." in entry
    assert "- inputs changed: lines (changed)" in entry
    assert "- configuration and tables: unchanged" in entry
    before = s1.totals.loc["NOx", "written_kg"]
    after = s2.totals.loc["NOx", "written_kg"]
    assert f"| NOx | {before / 1e3:,.3f} | {after / 1e3:,.3f} | " \
           f"{(after - before) / before * 100:+.3f} % |" in entry
    def cached() -> set[str]:
        return {f"{p.parent.name}/{p.name}" for part in ("tasks", "allocation")
                for p in (out / ".cache" / part).iterdir()}

    def used(summary) -> set[str]:
        manifest = json.loads((Path(summary.build_dir) / "manifest.json").read_text())
        return set(manifest["cache_files"])

    # 3 inputs × (read, emissions) records + 3 matrices; the road data changed, not its place
    assert len(used(s1)) == 9 and len(used(s1) & used(s2)) == 7
    assert cached() == used(s1) | used(s2)  # both builds kept: all their records stay
    (out / ".cache" / "tasks" / "read-0000").write_text("left by a build that failed")
    (out / ".cache" / "allocation" / ".tmp-killed.npz").write_bytes(b"")
    (out / "notes").mkdir()  # not a build, though it holds a manifest: never pruned
    (out / "notes" / "manifest.json").write_text("{}")
    s3 = build_inventory(str(world), out_dir=str(out), period=day)
    kept = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.is_symlink()
                  and not p.name.startswith(".") and p.name != "notes")
    assert (out / "notes" / "manifest.json").exists()
    assert kept == sorted([Path(s2.build_dir).name, Path(s3.build_dir).name])
    # s1 pruned: the road records only it used go with it, and so do the strays
    assert used(s3) == used(s2) and cached() == used(s3)
    assert (out / "latest-period").resolve() == Path(s3.build_dir).resolve()
    assert (out / "CHANGES.md").read_text().count("\n## ") == 3


def test_nightly_publishes_only_when_inputs_change(world, prefect_harness, tmp_path):
    from pipeline.flows import nightly_deployment, nightly_inventory

    out = tmp_path / "out"
    world.write_text(world.read_text().replace(
        "output: {dir: ../out}", "output: {dir: ../out, period: [2024-03-01, 2024-03-01]}"))
    first = nightly_inventory(str(world), out_dir=str(out))
    assert first["published"]
    import time as _time
    t0 = _time.perf_counter()
    again = nightly_inventory(str(world), out_dir=str(out))
    assert not again["published"] and again["build_id"] == first["build_id"]
    assert _time.perf_counter() - t0 < 30
    assert len([p for p in out.iterdir() if p.name.startswith("2")]) == 1
    lines = world.parent.parent / "data" / "lines.csv"
    lines.write_text(lines.read_text().replace(",1000000,km,", ",1500000,km,"))
    changed = nightly_inventory(str(world), out_dir=str(out))
    assert changed["published"] and changed["build_id"] != first["build_id"]
    assert "lines (changed)" in (out / "CHANGES.md").read_text()
    d = nightly_deployment(str(world), str(out), "0 2 * * *", "Asia/Shanghai")
    (sched,) = d.schedules
    assert (sched.schedule.cron, sched.schedule.timezone) == ("0 2 * * *", "Asia/Shanghai")
    assert d.parameters["out_dir"] == str(out.resolve()) and d.name == "nightly-fixture"


def test_unchanged_days_are_the_same_files(world, prefect_harness, tmp_path):
    """A rebuild whose content for a day did not change hard-links that day's file from the
    previous build (same bytes, same checksum, no new file); a changed day is written anew."""
    import os

    from pipeline.flows import build_inventory

    data = world.parent.parent / "data"
    (data / "cems.csv").write_text("source_id,time_utc,species,value,unit\n"
                                   "P1,2024-03-01T00:00,SO2,4,kg\nP1,2024-03-01T01:00,SO2,6,kg\n")
    world.write_text(world.read_text() + "cems: [../data/cems.csv]\n")
    out = tmp_path / "out"
    days = ("2024-03-01", "2024-03-02")
    s1 = build_inventory(str(world), out_dir=str(out), period=days)
    s2 = build_inventory(str(world), out_dir=str(out), period=days)   # nothing changed
    b1, b2 = Path(s1.build_dir), Path(s2.build_dir)
    for day in ("20240301", "20240302"):
        assert os.path.samefile(b1 / "hourly" / f"{day}.nc", b2 / "hourly" / f"{day}.nc")
    m2 = json.loads((b2 / "manifest.json").read_text())
    assert m2["reused_days"] == {"20240301": b1.name, "20240302": b1.name}
    # swap the two measured hours: same total, so only 1 March changes
    (data / "cems.csv").write_text("source_id,time_utc,species,value,unit\n"
                                   "P1,2024-03-01T00:00,SO2,6,kg\nP1,2024-03-01T01:00,SO2,4,kg\n")
    s3 = build_inventory(str(world), out_dir=str(out), period=days)
    b3 = Path(s3.build_dir)
    assert not os.path.samefile(b2 / "hourly" / "20240301.nc", b3 / "hourly" / "20240301.nc")
    assert os.path.samefile(b1 / "hourly" / "20240302.nc", b3 / "hourly" / "20240302.nc")
    m3 = json.loads((b3 / "manifest.json").read_text())
    assert m3["reused_days"] == {"20240302": b1.name}
    assert m3["files"]["hourly/20240302.nc"]["sha256"] == m2["files"]["hourly/20240302.nc"][
        "sha256"]
    with xr.open_dataset(b3 / "hourly" / "20240301.nc") as ds:
        kg = (ds["SO2"] * ds["cell_area"] * 3600).values[:2, 0, 0]
    np.testing.assert_allclose(kg, [6.0, 4.0], rtol=1e-12)


def test_transient_write_errors_are_retried_and_others_are_not(world, prefect_harness, tmp_path,
                                                               monkeypatch):
    from pipeline.flows import build_inventory
    from pipeline.writers import netcdf_cf

    real = netcdf_cf.write
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(5, "Input/output error (disk busy)")
        return real(*args, **kwargs)

    monkeypatch.setattr(netcdf_cf, "write", flaky)
    day = ("2024-03-01", "2024-03-01")
    s = build_inventory(str(world), out_dir=str(tmp_path / "out"), period=day)
    assert calls["n"] == 2 and (Path(s.build_dir) / "hourly" / "20240301.nc").exists()

    def broken(*args, **kwargs):
        calls["n"] += 1
        raise ValueError("not transient")

    monkeypatch.setattr(netcdf_cf, "write", broken)
    calls["n"] = 0
    with pytest.raises(ValueError, match="not transient"):  # another day: nothing to reuse
        build_inventory(str(world), out_dir=str(tmp_path / "out"),
                        period=("2024-03-02", "2024-03-02"))
    assert calls["n"] == 1  # no retry
    assert (tmp_path / "out" / "latest-period").resolve() == Path(s.build_dir).resolve()


KILLED_BUILD = """
import os, signal, sys
from pipeline.writers import netcdf_cf

real, calls = netcdf_cf.write, []

def write(*args, **kwargs):  # SIGKILL ourselves as the third day file starts
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)

netcdf_cf.write = write
from pipeline.flows import build_inventory
build_inventory(sys.argv[1], out_dir=sys.argv[2], period=("2024-03-01", "2024-03-05"))
"""


def test_killed_build_leaves_latest_valid_and_the_next_run_resumes(world, prefect_harness,
                                                                   tmp_path):
    """A build SIGKILLed while writing days leaves the pointer on the previous complete,
    checksum-valid build; the next run takes what the killed one finished from the cache (its
    read, emissions and allocation, and its two written days, which keep that build's id) and
    publishes a valid build."""
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    from pipeline.flows import build_inventory
    from pipeline.publish import verify_build

    out = tmp_path / "out"
    days = ("2024-03-01", "2024-03-05")
    first = Path(build_inventory(str(world), out_dir=str(out), period=days).build_dir)
    lines = world.parent.parent / "data" / "lines.csv"
    lines.write_text(lines.read_text().replace(",1000000,km,", ",2000000,km,"))  # every day
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_LOGGING_LEVEL": "ERROR"}
    killed = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(world), str(out)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    (staging,) = out.glob(".staging-*")
    assert sorted(p.name for p in (staging / "hourly").iterdir()) == ["20240301.nc",
                                                                     "20240302.nc"]
    assert (out / "latest-period").resolve() == first and verify_build(first) == []

    resumed = build_inventory(str(world), out_dir=str(out), period=days)
    final = Path(resumed.build_dir)
    assert verify_build(final) == [] and (out / "latest-period").resolve() == final
    assert not list(out.glob(".staging-*"))
    assert {s for c in resumed.cache.values() for s in c.values()} == {"hit"}
    killed_id = staging.name.removeprefix(".staging-")
    manifest = json.loads((final / "manifest.json").read_text())
    assert manifest["reused_days"] == {"20240301": killed_id, "20240302": killed_id}
    with xr.open_dataset(final / "hourly" / "20240302.nc") as ds:
        assert ds.attrs["tongyuan_build_id"] == killed_id
    # what was resumed is what a build from scratch writes
    fresh = build_inventory(str(world), out_dir=str(tmp_path / "fresh"), period=days)
    pd.testing.assert_frame_equal(resumed.totals, fresh.totals)
    for day in ("20240302", "20240303"):
        with xr.open_dataset(final / "hourly" / f"{day}.nc") as a, \
                xr.open_dataset(Path(fresh.build_dir) / "hourly" / f"{day}.nc") as b:
            for v in a.data_vars:
                np.testing.assert_array_equal(a[v].values, b[v].values)


def test_cli_build_with_nothing_changed_publishes_nothing(world, tmp_path, capsys):
    """``tongyuan build`` compares the input fingerprint with the published build: equal, it
    says which build is current and exits 0 without publishing; ``--force`` rebuilds; a changed
    input builds again."""
    from pipeline.cli import main

    out = tmp_path / "out"
    args = ["build", "--config", str(world), "--out", str(out), "--period",
            "2024-03-01:2024-03-01"]
    assert main(args) == 0
    first = (out / "latest-period").resolve().name
    capsys.readouterr()
    assert main(args) == 0
    said = capsys.readouterr().out
    assert f"nothing to do: build {first} is current" in said and "--force rebuilds" in said
    assert (out / "latest-period").resolve().name == first
    # saying so imports neither Prefect nor Dask's cluster nor the report's matplotlib
    probe = (f"import sys; from pipeline.cli import main; code = main({args!r}); print(code, "
             "sorted(m for m in ('prefect', 'distributed', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert "nothing to do" in done.stdout and done.stdout.strip().endswith("0 []"), done
    assert main([*args, "--force"]) == 0
    forced = (out / "latest-period").resolve().name
    assert forced != first
    lines = world.parent.parent / "data" / "lines.csv"
    lines.write_text(lines.read_text().replace(",1000000,km,", ",2000000,km,"))
    assert main(args) == 0 and (out / "latest-period").resolve().name not in (first, forced)


def test_nightly_rebuilds_a_damaged_build_and_never_reuses_the_damaged_day(world, tmp_path):
    """A published day changed in place (one cell_area value doubled: same size, still a valid
    NetCDF) makes the nightly flow rebuild, and the new build writes that day again instead of
    linking the damaged file through the day store."""
    from pipeline.flows import nightly_inventory
    from pipeline.publish import verify_build

    world.write_text(world.read_text().replace("output: {dir: ../out}",
                                               "output: {dir: ../out, period: [2024-03-01, "
                                               "2024-03-01]}"))
    out = tmp_path / "out"
    first = nightly_inventory(str(world), out_dir=str(out))
    assert first["published"]
    build = out / first["build_id"]
    with netCDF4.Dataset(build / "hourly" / "20240301.nc", "a") as nc:
        nc["cell_area"][0, 0] = nc["cell_area"][0, 0] * 2
    assert verify_build(build)
    again = nightly_inventory(str(world), out_dir=str(out))
    assert again["published"] and again["build_id"] != first["build_id"]
    fresh = out / again["build_id"]
    assert verify_build(fresh) == []
    assert (fresh / "hourly" / "20240301.nc").stat().st_ino != \
        (build / "hourly" / "20240301.nc").stat().st_ino
