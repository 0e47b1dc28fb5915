"""QA report and build comparison on the fixture world (answers by hand, see tests/world.py).

Two builds for the whole module: the base world with two districts (West: x 300–302 km, the
whole grid height; East: x 302–304 km, y up to 3402.5 km, so cells (2,2) and (2,3) are half
outside every district), and a variant with the power NOx factor doubled (5 → 10 kg/t).
"""

import io
import json
import re
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr

from pipeline.report import compare_builds, open_build, qa, summary_markdown, write_report
from pipeline.report.qa import local_time_label, monthly_totals, week_series
from sources.errors import ConfigError
from tests.world import write_world

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

# CO2 kg/yr per flat cell index (tests/test_build.py)
EXPECTED_CO2 = {0: 2_201_500, 1: 200_500, 6: 2000, 7: 50_000, 11: 1_001_000}


def write_districts(path) -> None:
    gdf = gpd.GeoDataFrame(
        {"district_code": ["310001", "310002"], "name_zh": ["西区", "东区"],
         "name_en": ["West", "East"]},
        geometry=[shapely.box(300_000, 3_400_000, 302_000, 3_403_000),
                  shapely.box(302_000, 3_400_000, 304_000, 3_402_500)], crs="EPSG:32651")
    gdf.to_file(path, layer="districts", driver="GPKG")


def _build(root, nox_factor=None):
    from pipeline.flows import build_inventory

    cfg = write_world(root)
    write_districts(root / "data" / "districts.gpkg")
    cfg.write_text(cfg.read_text() + "boundaries: ../data/districts.gpkg\n")
    if nox_factor is not None:
        f = root / "config" / "emission_factors.csv"
        f.write_text(f.read_text().replace("power,coal,boiler,NOx,5,kg/t",
                                           f"power,coal,boiler,NOx,{nox_factor},kg/t"))
    return build_inventory(str(cfg), out_dir=str(root / "out")).build_dir


@pytest.fixture(scope="module")
def base(tmp_path_factory, prefect_harness):
    return Path(_build(tmp_path_factory.mktemp("base")))


@pytest.fixture(scope="module")
def variant(tmp_path_factory, prefect_harness):
    return Path(_build(tmp_path_factory.mktemp("variant"), nox_factor=10))


@pytest.fixture(scope="module")
def report(base):
    index = write_report(base)
    return index, index.read_text(encoding="utf-8")


def read_table(page: str, table_id: str) -> pd.DataFrame:
    return pd.read_html(io.StringIO(page), attrs={"id": table_id}, flavor="lxml")[0]


def test_report_written_beside_build_with_embedded_figures(base, report):
    index, page = report
    assert index == base / "report" / "index.html"
    pngs = sorted(p.name for p in index.parent.glob("*.png"))
    assert {"map_CO2.png", "map_NOx.png", "monthly.png", "week_20240108.png",
            "week_20240708.png"} <= set(pngs)
    assert "map_CO.png" not in pngs  # no CO in the fixture: no empty map
    # every figure is embedded, none is linked
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'src="(?!data:)', page)
    assert json.loads((base / "manifest.json").read_text())["config_hash"] in page
    with xr.open_dataset(base / "annual.nc") as ds:
        assert ds.attrs["tongyuan_code_version"] in page
        assert ds.attrs["tongyuan_config_hash"] in page
    assert base.name in page
    assert "FAIL" not in page


def test_sector_species_totals_equal_ledger(base, report):
    _, page = report
    t = read_table(page, "sector-species").set_index("sector")
    ledger = pd.read_csv(base / "ledger.csv").set_index(["sector", "species"])
    assert t.loc["power", "CO2"] == pytest.approx(ledger.loc[("power", "CO2"), "gridded_kg"] / 1e3)
    assert t.loc["power", "CO2"] == 3000  # P1 2000 t + P2 1000 t; P3 lies beyond the grid
    assert t.loc["road", "CO2"] == 450
    assert t.loc["total", "CO2"] == 3455
    assert t.loc["power", "SO2"] == 6.0
    assert "CO2e" in t.columns and "PM2.5" in t.columns
    per = read_table(page, "ledger-species").set_index("species")
    assert per.loc["CO2", "read t/yr"] == 3806 and per.loc["CO2", "outside domain t/yr"] == 351
    full = read_table(page, "ledger-full").set_index(["sector", "species"])
    assert full.loc[("power", "CO2"), "read t/yr"] == 3200  # P1 + P2 + P3 read


def test_top_stacks_and_top_cells(report):
    _, page = report
    stacks = read_table(page, "top-stacks")
    assert list(stacks["id"]) == ["P1", "P2", "P3"]
    p1 = stacks.iloc[0]
    assert p1["CO2 kt/yr"] == 2.0 and p1["NOx t/yr"] == 5.0 and p1["SO2 t/yr"] == 1.0
    assert p1["control"] == "fgd+esp"
    assert stacks.iloc[2]["note"] == "outside grid"
    cells = read_table(page, "top-cells")
    assert list(zip(cells["iy"], cells["ix"], strict=True))[:3] == [(0, 0), (2, 3), (0, 1)]
    assert cells.iloc[0]["CO2 t/yr"] == 2202  # 2 201.5 t
    assert cells.iloc[0]["district"] == "West 西区"
    assert cells.iloc[1]["district"] == "East 东区 (50%)"
    assert cells.iloc[0]["dominant sector (CO2)"] == "power (91%)"


def test_district_totals_by_exact_area(report):
    _, page = report
    d = read_table(page, "districts").set_index("name (en)")
    # West: cells (0,0), (0,1) = 2 402 t; East: (0,2), (0,3), (1,2), (1,3) and half of
    # (2,2), (2,3) = 52 + 1001/2 t; the other half of (2,3) lies outside every district
    assert d.loc["West", "CO2"] == 2402
    assert d.loc["East", "CO2"] == 552.5
    assert d.loc["outside districts", "CO2"] == 500.5
    assert d.loc["total", "CO2"] == 3455


def test_explicit_boundaries_and_missing_hourly(base, tmp_path):
    copy = tmp_path / "build"
    shutil.copytree(base, copy, ignore=shutil.ignore_patterns("hourly", "report"))
    other = tmp_path / "one.gpkg"
    gpd.GeoDataFrame({"district_code": ["1"], "name_zh": ["全"], "name_en": ["All"],
                      "boundary_note": ["OSM & co, ODbL 1.0; NOT an official boundary"]},
                     geometry=[shapely.box(299_000, 3_399_000, 305_000, 3_404_000)],
                     crs="EPSG:32651").to_crs("EPSG:4326").to_file(other, layer="districts")
    page = write_report(copy, tmp_path / "r", boundaries=other).read_text(encoding="utf-8")
    d = read_table(page, "districts").set_index("name (en)")
    assert d.loc["All", "CO2"] == pytest.approx(3455, abs=0.5)
    # the boundaries' source and licence note (the demo's ODbL attribution) is shown with them
    assert "Boundaries: OSM &amp; co, ODbL 1.0; NOT an official boundary" in page
    assert "No hourly files to plot" in page


def test_week_in_local_time_and_monthly_series(base):
    data = open_build(base)
    measured, expected, worst = week_series(data, pd.Timestamp("2024-01-08"), ["CO2", "NOx"])
    assert len(measured) == 168 and measured.index[0] == pd.Timestamp("2024-01-08 00:00")
    assert worst < 1e-9
    np.testing.assert_allclose(measured.to_numpy(), expected.to_numpy(), rtol=1e-9)
    # road is all in local hour 8, and Monday weighs 2 of 10.5: the peak is Monday 08:00 local
    assert measured["CO2"].idxmax() == pd.Timestamp("2024-01-08 08:00")
    monthly = monthly_totals(data)
    ledger = pd.read_csv(base / "ledger.csv").groupby("species")["gridded_kg"].sum() / 1e3
    assert monthly["CO2"].sum() == pytest.approx(ledger["CO2"], rel=1e-12)
    # power is flat: January holds 744 of 8784 hours
    assert monthly.loc[1, "SO2"] == pytest.approx(6.0 * 744 / 8784, rel=1e-12)


def with_profile_timezone(base, copy, zone):
    """A copy of the build whose annual.nc records ``zone`` (None: no zone) as profile zone."""
    shutil.copytree(base, copy, ignore=shutil.ignore_patterns("report"))
    with xr.open_dataset(base / "annual.nc") as ds:
        ds = ds.load()
    if zone is None:
        del ds["temporal_factor"].attrs["profile_timezone"]
    else:
        ds["temporal_factor"].attrs["profile_timezone"] = zone
    ds.to_netcdf(copy / "annual.nc")
    return copy


def test_weeks_in_the_time_zone_the_build_records(base, tmp_path, monkeypatch):
    assert open_build(base).timezone == "Asia/Shanghai"  # the fixture's default profiles
    berlin = with_profile_timezone(base, tmp_path / "berlin", "Europe/Berlin")
    data = open_build(berlin)
    assert data.timezone == "Europe/Berlin"
    measured, _, worst = week_series(data, pd.Timestamp("2024-01-08"), ["CO2"])
    assert len(measured) == 168 and measured.index[0] == pd.Timestamp("2024-01-08 00:00")
    assert worst < 1e-9
    # the hours are the same UTC hours: road's 08:00 in Shanghai (00:00 UTC) is 01:00 in Berlin
    assert measured["CO2"].idxmax() == pd.Timestamp("2024-01-08 01:00")
    assert local_time_label("Europe/Berlin", pd.Timestamp("2024-01-08")) == \
        "local time (Europe/Berlin, UTC+1)"
    assert local_time_label("Europe/Berlin", pd.Timestamp("2024-03-25")) == \
        "local time (Europe/Berlin, UTC+1/+2)"  # summer time from Sunday 31 March
    assert local_time_label("Asia/Kolkata", pd.Timestamp("2024-01-08")) == \
        "local time (Asia/Kolkata, UTC+5:30)"
    labels = []
    save_png = qa.save_png

    def record(fig, out_dir, name, dpi=100):
        if name.startswith("week_"):
            labels.append(fig.axes[-1].get_xlabel())
        return save_png(fig, out_dir, name, dpi)

    monkeypatch.setattr(qa, "save_png", record)
    page = write_report(berlin).read_text(encoding="utf-8")
    assert labels == ["local time (Europe/Berlin, UTC+1)", "local time (Europe/Berlin, UTC+2)"]
    assert "time zone of the build's temporal profiles: Europe/Berlin" in page

    labels.clear()
    bare = open_build(with_profile_timezone(base, tmp_path / "bare", None))
    assert bare.timezone == "UTC" and not bare.timezone_recorded
    measured, _, _ = week_series(bare, pd.Timestamp("2024-01-08"), ["CO2"])
    assert measured["CO2"].idxmax() == pd.Timestamp("2024-01-08 00:00")  # UTC
    page = write_report(bare.path).read_text(encoding="utf-8")
    assert labels == ["UTC", "UTC"] and "records no profile time zone" in page


def test_summary_markdown_and_checks(base, tmp_path):
    copy = tmp_path / "build"
    shutil.copytree(base, copy, ignore=shutil.ignore_patterns("hourly", "report", "checks.csv"))
    md = summary_markdown(copy)
    assert "| CO2 | 3,806 | 3,455 | 351.0 | 0 |" in md
    assert "not run" in md
    assert "not run (no checks.csv)" in write_report(copy).read_text(encoding="utf-8")
    pd.DataFrame([
        {"check": "ratio", "severity": "warning", "sector": "power", "pair": "NOx/CO2",
         "value": 0.0025, "unit": "1", "expected": "0.001..0.002", "message": "NOx/CO2 high",
         "source_ids": "P1; P2", "factor_rows": "/x/emission_factors.csv row 3: power,coal,"
         "boiler,NOx,5 kg/t | /x/emission_factors.csv row 1: power,coal,boiler,CO2,2000 kg/t"},
        {"check": "co2_per_activity", "severity": "error", "sector": "road", "pair": "CO2/km",
         "value": 200.0, "unit": "g/km", "expected": "100..180", "message": "CO2 per km high",
         "source_ids": "L1; L2; L3", "factor_rows": "/x/emission_factors.csv row 7: road"},
    ]).to_csv(copy / "checks.csv", index=False)
    md = summary_markdown(copy)
    assert "**1 errors**" in md and "**1 warnings**" in md
    page = write_report(copy).read_text(encoding="utf-8")
    checks = read_table(page, "checks")
    assert list(checks["severity"]) == ["error", "warning"]  # errors first
    assert checks.iloc[1]["source_ids"] == "P1; P2"
    assert "emission_factors.csv row 3: power,coal,boiler,NOx,5 kg/t<br>" in page
    assert "/x/emission_factors.csv" not in page
    assert "1 error" in page and "FAIL" in page


def test_compare_doubled_factor(base, variant, tmp_path):
    index = compare_builds(base, variant, tmp_path / "cmp")
    page = index.read_text(encoding="utf-8")
    diff = pd.read_csv(tmp_path / "cmp" / "differences.csv").set_index(["sector", "species"])
    row = diff.loc[("power", "NOx")]
    assert row.a_t == pytest.approx(7.5) and row.b_t == pytest.approx(15.0)
    assert row.relative_change == pytest.approx(1.0)
    assert diff.loc[("all sectors", "NOx"), "b_minus_a_t"] == pytest.approx(7.5)
    changed = diff[diff["b_minus_a_t"].abs() > 1e-9].index.tolist()
    assert sorted(changed) == [("all sectors", "NOx"), ("power", "NOx")]
    assert [p.name for p in (tmp_path / "cmp").glob("*.png")] == ["diff_NOx.png"]
    assert page.count('src="data:image/png;base64,') == 1
    top = read_table(page, "top-changed-NOx")
    # P1 (cell 0,0) gains 5 t, P2 (cell 2,3) 2.5 t
    assert (top.iloc[0]["iy"], top.iloc[0]["ix"]) == (0, 0)
    assert top.iloc[0]["B − A t/yr"] == 5.0
    assert top.iloc[0]["lon"] == pytest.approx(open_build(base).lon[0, 0], abs=1e-4)
    assert (top.iloc[1]["iy"], top.iloc[1]["ix"]) == (2, 3)
    assert "CO2: no cell changed" in page


def test_compare_refuses_different_grids(base, tmp_path):
    shifted = tmp_path / "shifted"
    shutil.copytree(base, shifted, ignore=shutil.ignore_patterns("hourly", "report"))
    with xr.open_dataset(base / "annual.nc") as ds:
        moved = ds.load().assign_coords(x=ds["x"] + 1000.0)
    moved.to_netcdf(shifted / "annual.nc")
    with pytest.raises(ConfigError, match="grids differ") as exc:
        compare_builds(base, shifted, tmp_path / "cmp")
    assert str(base.resolve()) in str(exc.value) and str(shifted) in str(exc.value)
    assert "lower-left" in str(exc.value)
