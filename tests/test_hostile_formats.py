"""The hostile campaign (issue 19), staff formats and properties: ``.xlsx`` and ``.geojson``
inputs build as CSV does, workbook errors name sheet, Excel row and column letter,
``tongyuan check`` lists every problem at once (and writes ``errors.csv``), and whatever builds
balances (hypothesis).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import geopandas as gpd
import netCDF4
import numpy as np
import pandas as pd
import pytest
import shapely
import shapely.affinity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.build import run_build
from pipeline.check import check_config
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.report import write_report
from pipeline.steps import (
    allocate_sources,
    compute_annual,
    compute_input_emissions,
    compute_ledger,
    load_tables,
    read_inputs,
)
from sources import errors as E
from sources.emissions import compute_emissions
from sources.gridded import load_mapping
from sources.readers import FileLayout, Vocabulary, source_errors
from sources.tables import read_table
from tests.test_hostile import HEAD, LHEAD, _corrupt, cfg_dir, data_dir, edit_config, read_points
from tests.world import X0, Y0, write_world

# ---------------------------------------------------------------------------------------------
# 7. staff formats and every error at once

def _points_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "source_id": ["P1", "P2", "P3"], "sector": ["power"] * 3, "fuel": ["coal"] * 3,
        "technology": ["boiler"] * 3, "control": ["fgd+esp", "none", "none"],
        "activity": [1000, 500, 100], "activity_unit": ["t"] * 3,
        "x": [300500, 303500, 310000], "y": [3400500, 3402500, 3400500],
        "stack_height_m": [100, 60, 30]})


def _use_workbook(world: Path, df: pd.DataFrame, sheet: str = "点源") -> Path:
    path = data_dir(world) / "points.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as xw:
        pd.DataFrame({"note": ["cover sheet"]}).to_excel(xw, sheet_name="cover", index=False)
        df.to_excel(xw, sheet_name=sheet, index=False)
    if "points.csv" in world.read_text():
        edit_config(world, "path: ../data/points.csv,",
                    f"path: ../data/points.xlsx, sheet: {sheet},")
    return path


def _emissions(world, tables):
    activity, _, _ = read_inputs(load_config(world), tables)
    return compute_emissions(activity, tables.library, tables.registry).table


def test_xlsx_input_gives_the_csv_emissions(world, tables):
    expected = _emissions(world, tables)
    _use_workbook(world, _points_frame())
    got = _emissions(world, tables)
    pd.testing.assert_frame_equal(got, expected)


def test_geojson_input_gives_the_csv_emissions(world, tables):
    expected = _emissions(world, tables)
    df = pd.read_csv(data_dir(world) / "lines.csv")
    gdf = gpd.GeoDataFrame(df.drop(columns="geometry"), geometry=shapely.from_wkt(df.geometry),
                           crs="EPSG:32651").to_crs("EPSG:4326")
    gdf.to_file(data_dir(world) / "lines.geojson", driver="GeoJSON")
    edit_config(world, 'path: ../data/lines.csv, crs: "EPSG:32651"',
                "path: ../data/lines.geojson")
    got = _emissions(world, tables)
    pd.testing.assert_frame_equal(got.sort_index(), expected.sort_index(), rtol=1e-9)


BAD_SHEET_ROWS = {  # data row index → (column, value, expected words)
    0: ("fuel", "peat", "unknown fuel"),
    2: ("activity", -5, "negative activity"),
    4: ("activity_unit", "mt", "ambiguous unit 'mt'"),
    6: ("control", "fgd+fgd", "listed twice"),
    8: ("x", "east", "coordinate is missing or not a number"),
}


def _sheet_with_bad_rows(n: int = 12) -> pd.DataFrame:
    df = pd.concat([_points_frame().iloc[[1]]] * n, ignore_index=True).astype(object)
    df["source_id"] = [f"S{i:02d}" for i in range(n)]
    for i, (col, value, _) in BAD_SHEET_ROWS.items():
        df.loc[i, col] = value
    return df


def test_workbook_row_errors_name_sheet_excel_row_and_column_letter(world, tables):
    _use_workbook(world, _sheet_with_bad_rows())
    with pytest.raises(E.GeometryError, match=r"points.xlsx, sheet '点源', row 10, column H "
                       r"'x': coordinate is missing or not a number; got 'east'"):
        read_inputs(load_config(world), tables)
    df = _sheet_with_bad_rows()
    df.loc[8, "x"] = 303500
    _use_workbook(world, df)
    with pytest.raises(E.ActivityError, match=r"points.xlsx, sheet '点源', row 4, source_id "
                       r"'S02', column F 'activity': negative activity; got '-5'"):
        read_inputs(load_config(world), tables)


def test_unknown_sheet(world, tables):
    _use_workbook(world, _points_frame())
    edit_config(world, "sheet: 点源", "sheet: Points")
    with pytest.raises(E.InputError, match=r"points.xlsx, column 'sheet': no such sheet; got "
                       r"'Points'; expected one of the sheets \['cover', '点源'\]"):
        read_inputs(load_config(world), tables)


def test_workbook_column_given_twice(world, tables):
    df = _points_frame()
    df.insert(1, "activity ", df["activity"])  # stripped: 'activity' twice
    df.columns = [c.strip() if c == "activity " else c for c in df.columns]
    _use_workbook(world, df)
    with pytest.raises(E.InputError, match=r"column 'activity' given twice in sheet '点源'"):
        read_inputs(load_config(world), tables)


def test_csv_column_given_twice(world, tables):
    with pytest.raises(E.InputError, match=r"points.csv, column 'activity': column 'activity' "
                       r"given twice"):
        read_points(world, tables, HEAD.replace("x,y", "x,activity") +
                    "P1,power,coal,boiler,none,10,t,300500,3400500\n")


def test_every_bad_row_of_a_file_at_once(world, tables):
    _use_workbook(world, _sheet_with_bad_rows())
    cfg = load_config(world)
    spec = cfg.inputs[0]
    errors = source_errors(spec.path, "point", target_crs=tables.grid.crs,
                           layout=FileLayout(crs=spec.crs, x_column="x", y_column="y",
                                             sheet=spec.sheet),
                           vocabulary=Vocabulary(keys=tables.library.keys,
                                                 devices=tables.library.devices))
    assert sorted(e.row for e in errors) == [i + 2 for i in BAD_SHEET_ROWS]
    for e in errors:
        col, _, words = BAD_SHEET_ROWS[e.row - 2]
        assert e.sheet == "点源" and words in str(e) and col in e.column


def test_check_lists_all_problems_and_writes_errors_csv(world, tmp_path, capsys):
    _use_workbook(world, _sheet_with_bad_rows())
    (data_dir(world) / "lines.csv").write_text(
        LHEAD + 'X,road,gasoline,car,1,ton,"LINESTRING (300000 3400500, 302000 3400500)"\n')
    out = tmp_path / "errors.csv"
    assert main(["check", "--config", str(world), "--errors", str(out)]) == 1
    err = capsys.readouterr().err
    assert "6 problems in 2 files" in err
    with out.open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["file", "sheet", "row", "column", "value", "expected", "problem"]
    sheet_rows = [r for r in rows if r["file"].endswith("points.xlsx")]
    assert [r["row"] for r in sheet_rows] == ["2", "4", "6", "8", "10"]
    assert {r["sheet"] for r in sheet_rows} == {"点源"}
    assert sheet_rows[0]["column"] == "C 'fuel'" and sheet_rows[0]["value"] == "peat"
    line = [r for r in rows if r["file"].endswith("lines.csv")]
    assert line[0]["row"] == "1" and "ambiguous unit 'ton'" in line[0]["problem"]


def _break_rows(path: Path, edits: dict[str, str]) -> None:
    text = path.read_text()
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)


def test_check_prints_every_bad_row_of_a_workbook_and_of_broken_tables(world, tmp_path,
                                                                       capsys):
    """Done when of issue 19: a workbook with 5 bad rows gives 5 problems, and so does every
    bad row of the configuration tables beside it (not only the first of each)."""
    _use_workbook(world, _sheet_with_bad_rows())
    _break_rows(cfg_dir(world) / "temporal_profiles.csv", {
        "flat,month,4,1,": "flat,month,4,inf,", "flat,hour,3,1,": "flat,hour,3,-1,",
        "flat,hour,5,1,": "flat,hour,5,x,"})
    _break_rows(cfg_dir(world) / "sectors.csv", {
        "power,power,flat,flat,flat,none,": "power,power,flat,flat,flat,maybe,",
        "residential,residential,flat,flat,flat,none,test\n":
        "residential,residential,flat,flat,flat,none,test\nroad,again,flat,flat,flat,none,t\n"})
    out = tmp_path / "errors.csv"
    assert main(["check", "--config", str(world), "--errors", str(out)]) == 1
    err = capsys.readouterr().err
    assert "10 problems in 3 files" in err
    for words in [
        "temporal_profiles.csv, row 4, column 'value': not a weight; got 'inf'",
        "temporal_profiles.csv, row 23, column 'value': not a weight; got '-1'",
        "temporal_profiles.csv, row 25, column 'value': not a weight; got 'x'",
        "sectors.csv, row 1, column 'holiday_as': unknown holiday rule; got 'maybe'",
        "sectors.csv, row 4, column 'sector': duplicate sector 'road' (rows 2 and 4)",
        "points.xlsx, sheet '点源', row 2, column C 'fuel': unknown fuel; got 'peat'",
        "points.xlsx, sheet '点源', row 10, column H 'x': coordinate is missing",
    ]:
        assert words in err, err
    with out.open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    by_file: dict[str, list[str]] = {}
    for r in rows:
        by_file.setdefault(Path(r["file"]).name, []).append(r["row"])
    assert by_file == {"temporal_profiles.csv": ["4", "23", "25"], "sectors.csv": ["1", "4"],
                       "points.xlsx": ["2", "4", "6", "8", "10"]}
    sector_row = next(r for r in rows if r["file"].endswith("sectors.csv"))
    assert (sector_row["column"], sector_row["value"], sector_row["expected"]) == (
        "holiday_as", "maybe", "'sunday' or 'none'")


def test_a_table_with_many_bad_rows_is_one_bounded_error(world):
    """The build raises one error for every bad row of a table: the first ten listed, the
    rest counted; ``tongyuan check`` lists each."""
    path = cfg_dir(world) / "emission_factors.csv"
    lines = path.read_text().splitlines()
    bad = [lines[0]] + [f"power,coal,boiler,SO2,{v},kg/t,test"
                        for v in ("ten", "-1", "inf")] * 4  # 12 bad values
    path.write_text("\n".join(bad + lines[1:]) + "\n")
    with pytest.raises(E.ConfigErrors) as info:
        load_tables(load_config(world))
    exc = info.value
    # the 12 values, and the key given 13 times (with the table's own SO2 row): 12 repeats
    assert len(exc.errors) == 12 + 12
    text = str(exc)
    assert text.startswith(f"24 problems in {path}:\n  {path}, row 1, column 'value': not a "
                           "number; got 'ten'")
    assert len(text.splitlines()) == 12 and text.endswith(
        "... and 14 more ('tongyuan check --config <file>' lists every one, also as errors.csv)")
    values = [p for p in check_config(world) if p.column == "value"]
    assert [p.row for p in values] == [str(i) for i in range(1, 13)]
    assert [p.value for p in values[:3]] == ["ten", "-1", "inf"]


def test_every_bad_species_and_every_bad_table_at_once(world):
    """Two broken species, a bad fuel row and a bad control row: the build's one error holds
    all four, each naming its file and place."""
    path = cfg_dir(world) / "species.yaml"
    path.write_text(path.read_text().replace("kind: pollutant, molar_mass_g_mol: 64.066",
                                             "kind: gas, molar_mass_g_mol: 64.066")
                    .replace("CO: {long_name: carbon monoxide, kind: pollutant}",
                             "CO: {long_name: 7, kind: pollutant}"))
    with pytest.raises(E.ConfigErrors) as info:
        load_tables(load_config(world))
    assert [str(e).split(": ", 1)[1] for e in info.value.errors] == [
        "species 'SO2': kind 'gas'; expected pollutant, greenhouse_gas or derived",
        "species 'CO': long_name is 7; expected text"]
    path.write_text(path.read_text().replace("kind: gas,", "kind: pollutant,")
                    .replace("long_name: 7", "long_name: carbon monoxide"))
    _break_rows(cfg_dir(world) / "fuels.csv", {"coal,20,GJ/t,": "coal,20,GJ/tt,"})
    _break_rows(cfg_dir(world) / "control_efficiencies.csv", {"esp,PM10,0.99,": "esp,PM10,9,"})
    with pytest.raises(E.ConfigErrors) as info:
        load_tables(load_config(world))
    assert [(Path(e.path).name, e.row, e.column) for e in info.value.errors] == [
        ("control_efficiencies.csv", 2, "efficiency"), ("fuels.csv", 1, "ncv_unit")]


def test_regional_mapping_tables_report_every_bad_row(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    sec, spc = tmp_path / "sectors.csv", tmp_path / "species.csv"
    sec.write_text((repo / "config" / "regional_sectors.csv").read_text(encoding="utf-8")
                   .replace("meic,power,power,*,1,", "meic,power,power,*,one,")
                   .replace("meic,industry,industry_process,*,0.4,",
                            "meic,industry,industry_process,*,-0.4,"), encoding="utf-8")
    spc.write_text((repo / "config" / "regional_species.csv").read_text(encoding="utf-8")
                   .replace("meic,CO,CO,1,", "meic,CO,CO,inf,"), encoding="utf-8")
    with pytest.raises(E.ConfigErrors) as info:
        load_mapping(sec, spc)
    assert [(Path(e.path).name, e.row, e.column, e.value) for e in info.value.errors] == [
        ("sectors.csv", 1, "fraction", "one"), ("sectors.csv", 3, "fraction", "-0.4"),
        ("species.csv", 3, "factor", "inf")]


def test_check_finds_an_input_beyond_the_grid_without_building(world):
    """Data in UTM 51N declared as 50N: every stack ~600 km away, found by the check (the
    build's own test, on each source's share beyond the grid) and nothing written."""
    edit_config(world, 'path: ../data/points.csv, crs: "EPSG:32651"',
                'path: ../data/points.csv, crs: "EPSG:32650"')
    problems = check_config(world)
    assert [(Path(p.file).name, p.problem[:56]) for p in problems] == [
        ("points.csv", "100% of the mass of input 'points' lies outside the grid")]
    assert "wrong UTM zone" in problems[0].expected
    assert not (world.parent.parent / "out").exists()


def test_check_finds_areas_beyond_the_grid(world):
    """A polygon input shifted by a whole grid width: its area lies beyond the grid."""
    path = data_dir(world) / "areas.csv"
    df = pd.read_csv(path)
    df["geometry"] = [shapely.affinity.translate(g, xoff=10_000).wkt
                      for g in shapely.from_wkt(df["geometry"])]
    df.to_csv(path, index=False)
    problems = check_config(world)
    assert [(Path(p.file).name, p.problem[:55]) for p in problems] == [
        ("areas.csv", "100% of the mass of input 'areas' lies outside the grid")]


def test_check_of_a_valid_config_passes(world, tmp_path, capsys):
    out = tmp_path / "errors.csv"
    assert main(["check", "--config", str(world), "--errors", str(out)]) == 0
    assert "every table and input is valid" in capsys.readouterr().out
    assert out.read_text(encoding="utf-8-sig").strip() == ",".join(
        ["file", "sheet", "row", "column", "value", "expected", "problem"])


def test_check_reports_every_broken_table(world):
    (cfg_dir(world) / "fuels.csv").write_text("")
    (cfg_dir(world) / "temporal_profiles.csv").write_text("profile_id,kind\n")
    _corrupt(data_dir(world) / "population.tif")
    problems = check_config(world)
    files = sorted(Path(p.file).name for p in problems)
    assert files == ["population.tif", "temporal_profiles.csv", "fuels.csv"] or \
        set(files) == {"population.tif", "temporal_profiles.csv", "fuels.csv"}


def test_check_reports_each_config_problem(world):
    edit_config(world, "nx: 4,", "nx: 0,")
    edit_config(world, "year: 2024", "year: 1800")
    problems = check_config(world)
    assert sorted(p.column for p in problems) == ["grid.nx", "year"]


def test_check_with_missing_config_exits_2(tmp_path, capsys):
    assert main(["check", "--config", str(tmp_path / "nope.yaml"),
                 "--errors", str(tmp_path / "e.csv")]) == 2


def test_read_table_of_a_missing_file(tmp_path):
    with pytest.raises(E.ConfigError, match=r"x.csv: fuel table not found"):
        read_table(tmp_path / "x.csv", ["fuel"], "fuel")


# ---------------------------------------------------------------------------------------------
# 8. whatever builds balances: a hypothesis property test over small random inventories

POINT = st.tuples(
    st.floats(0, 1e6, allow_nan=False),                              # activity [t]
    st.sampled_from(["none", "fgd", "esp", "fgd+esp"]),              # control
    st.floats(X0 - 500, X0 + 4500, allow_nan=False),                 # x: partly outside
    st.floats(Y0 + 1, Y0 + 2999, allow_nan=False),                   # y
)


def _random_world(root: Path, points: list[tuple[float, str, float, float]]) -> Path:
    if root.exists():
        shutil.rmtree(root)
    world = write_world(root)
    rows = [f"R{i},power,coal,boiler,{c},{a!r},t,{x!r},{y!r}" for i, (a, c, x, y)
            in enumerate(points)]
    (data_dir(world) / "points.csv").write_text(HEAD + "\n".join(rows) + "\n")
    return world


@settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(points=st.lists(POINT, min_size=1, max_size=4))
def test_any_inventory_that_builds_balances(tmp_path, points):
    """Read, emissions, allocation, annual grid and ledger of a random inventory (the steps
    :func:`pipeline.build.prepare` runs before the temporal ones): a clean refusal, or a
    balanced ledger of finite values."""
    world = _random_world(tmp_path / "w", points)
    cfg = load_config(world)
    tables = load_tables(cfg)
    activity, _, rejected = read_inputs(cfg, tables)
    emissions = compute_input_emissions(activity, tables)
    try:
        alloc = allocate_sources(activity, tables, scheduler="synchronous")
    except E.InputError as exc:  # most of the mass beyond the grid: a clean refusal
        assert "lies outside the grid" in str(exc)
        return
    annual = compute_annual(alloc, emissions, activity, tables)
    ledger = compute_ledger(emissions, activity, alloc, annual, None)
    t = ledger.totals()
    assert np.isfinite(t.to_numpy()).all() and np.isfinite(annual.values).all()
    rest = t["gridded_kg"] + t["outside_domain_kg"] + t["rejected_kg"]
    np.testing.assert_allclose(rest.to_numpy(), t["read_kg"].to_numpy(), rtol=1e-9, atol=1e-6)
    assert (annual.values >= 0).all()


@pytest.mark.parametrize("points", [
    [(1000.0, "fgd+esp", 300500.0, 3400500.0), (0.0, "none", 303900.0, 3402900.0),
     (123456.789, "esp", 300000.0, 3400001.0)],
])
def test_tiny_builds_write_files_equal_to_their_ledger(tmp_path, points):
    world = _random_world(tmp_path / "w", points)
    r = run_build(world, out=tmp_path / "out", period=("2024-03-01", "2024-03-01"))
    with netCDF4.Dataset(r.files[0]) as nc:
        for sp in ("CO2", "SO2", "NOx"):
            mass = float((nc[sp][:].astype(np.float64) * nc["cell_area"][:]).sum() * 3600.0)
            assert math.isfinite(mass)
            assert mass == pytest.approx(r.totals.loc[sp, "written_kg"], rel=1e-9, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# 6. published metadata: paths relative to the configuration, never the server's

def test_a_published_build_carries_no_absolute_server_path(tmp_path):
    """Manifest, report, tables and the CF, CMAQ and WRF-Chem files of a build name the
    files it read relative to its configuration: the server's folders appear in no byte."""
    from tests.test_models import _model_world

    world = write_world(tmp_path / "srv")
    _model_world(world)
    gpd.GeoDataFrame({"district_code": ["310001"], "name_zh": ["全域"], "name_en": ["All"]},
                     geometry=[shapely.box(0, 0, 3e6, 5e6)], crs="EPSG:32651").to_file(
        data_dir(world) / "districts.gpkg", layer="districts", driver="GPKG")
    world.write_text(world.read_text() + "boundaries: ../data/districts.gpkg\n")
    r = run_build(world, period=("2024-03-01", "2024-03-01"), formats=["cf", "cmaq", "wrfchem"],
                  mechanism="t1")
    build = Path(r.build_dir)
    files = sorted(f for f in build.rglob("*") if f.is_file())
    assert {f.relative_to(build).parts[0] for f in files} >= {
        "manifest.json", "inputs.csv", "sources.csv", "report", "hourly", "cmaq", "wrfchem",
        "annual.nc"}
    for f in files:
        assert str(tmp_path).encode() not in f.read_bytes(), f
    manifest = json.loads((build / "manifest.json").read_text())
    assert (manifest["config"], manifest["boundaries"]) == ("build.yaml",
                                                            "../data/districts.gpkg")
    inputs = pd.read_csv(build / "inputs.csv")
    assert set(inputs["path"]) >= {"../data/points.csv", "../data/lines.csv",
                                   "../data/population.tif"}
    page = (build / "report" / "index.html").read_text(encoding="utf-8")
    assert "<td>district boundaries</td><td>../data/districts.gpkg</td>" in page
    assert f"<td>build directory</td><td>{build.name}</td>" in page
    assert "全域" in page  # the districts were still drawn and totalled
    # a later report of the published build finds the districts through the server's local
    # record of the configuration's folder (never published)
    assert json.loads((build.parent / ".local" / f"{build.name}.json").read_text()) == {
        "config_dir": str(world.parent)}
    again = write_report(build, tmp_path / "again").read_text(encoding="utf-8")
    assert "全域" in again and "<td>../data/districts.gpkg</td>" in again
