"""A hostile test campaign (issue 19): every malformed table, configuration, input, raster and
CEMS file is a one-line TongyuanError naming the file (row, column, value, expected), never a
traceback or a silently wrong inventory; valid staff formats build the same as CSV.

Readers and steps are called directly on the fixture world (fast); a few tiny builds and a
hypothesis property test check that whatever builds balances.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from grids.grid import Grid
from grids.proxy import Proxy
from pipeline.cems import cems_errors
from pipeline.config import load_config
from pipeline.steps import (
    allocate_sources,
    load_tables,
    read_inputs,
)
from sources import errors as E
from sources.emissions import compute_emissions
from sources.readers import FileLayout, Vocabulary, read_sources
from sources.tables import read_yaml
from sources.units import parse_unit
from tests.world import X0, Y0

HEAD = "source_id,sector,fuel,technology,control,activity,activity_unit,x,y\n"
OK = "P1,power,coal,boiler,none,10,t,300500,3400500\n"
LHEAD = "source_id,sector,fuel,technology,activity,activity_unit,geometry\n"


def cfg_dir(world: Path) -> Path:
    return world.parent


def data_dir(world: Path) -> Path:
    return world.parent.parent / "data"


def edit_config(world: Path, old: str, new: str) -> None:
    text = world.read_text()
    assert old in text, old
    world.write_text(text.replace(old, new))


def tables_of(world: Path):
    return load_tables(load_config(world))


# ---------------------------------------------------------------------------------------------
# 1. configuration tables: empty, directory, duplicates, ragged rows, bad numbers and units

TABLES = ["emission_factors.csv", "control_efficiencies.csv", "fuels.csv",
          "temporal_profiles.csv", "sectors.csv"]


@pytest.mark.parametrize("name", TABLES)
def test_empty_table_is_an_error_naming_it(world, name):
    (cfg_dir(world) / name).write_text("")
    with pytest.raises(E.ConfigError, match=rf"{name}: .* table is an empty file"):
        tables_of(world)


@pytest.mark.parametrize("name", TABLES + ["species.yaml"])
def test_table_that_is_a_directory(world, name):
    path = cfg_dir(world) / name
    path.unlink()
    path.mkdir()
    with pytest.raises(E.ConfigError, match=rf"tables\.\w+ = .*{name} is a directory"):
        tables_of(world)


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


TABLE_CASES = [
    # (file, old text, new text, error class, message)
    ("fuels.csv", "coal,20,GJ/t,test\n", "coal,20,GJ/t,test\ncoal,25,GJ/t,again\n",
     E.ConfigError, r"fuels.csv, row 2, column 'fuel': fuel given twice \(rows 1 and 2\); "
     r"got 'coal'"),
    ("control_efficiencies.csv", "fgd,SO2,0.9,test\n", "fgd,SO2,0.9,test\nfgd,SO2,0.5,t2\n",
     E.ConfigError, r"control/species given twice \(rows 1 and 2\).*\('fgd', 'SO2'\)"),
    ("emission_factors.csv", "power,coal,boiler,SO2,10,kg/t,test\n",
     "power,coal,boiler,SO2,10,kg/t,test\npower,coal,boiler,SO2,12,kg/t,test\n",
     E.ConfigError, r"sector/fuel/technology/species given twice"),
    ("sectors.csv", "power,power,flat,flat,flat,none,test\n",
     "power,power,flat,flat,flat,none,test\npower,p2,flat,flat,flat,none,test\n",
     E.ConfigError, r"duplicate sector 'power'"),
    ("emission_factors.csv", "sector,fuel,technology,species,value,unit,reference",
     "sector,fuel,technology,species,value,value,reference", E.ConfigError,
     r"emission_factors.csv, column 'value': column 'value' given twice"),
    ("emission_factors.csv", "power,coal,boiler,SO2,10,kg/t,test\n",
     "power,coal,boiler,SO2,10,kg/t,test,extra\n", E.ConfigError,
     r"emission_factors.csv, row 2: 8 fields where the header has 7"),
    ("emission_factors.csv", "power,coal,boiler,SO2,10,kg/t", "power,coal,boiler,SO2,-10,kg/t",
     E.InputError, r"row 2, column 'value': value out of range; got '-10'"),
    ("emission_factors.csv", "power,coal,boiler,SO2,10,kg/t", "power,coal,boiler,SO2,inf,kg/t",
     E.InputError, r"row 2, column 'value': value out of range; got 'inf'"),
    ("emission_factors.csv", "power,coal,boiler,SO2,10,kg/t", "power,coal,boiler,SO2,ten,kg/t",
     E.InputError, r"row 2, column 'value': not a number; got 'ten'"),
    ("emission_factors.csv", "power,coal,boiler,SO2,10,kg/t", "power,coal,boiler,SO2,10,kg/mt",
     E.UnitError, r"column 'unit': ambiguous unit 'kg/mt': pint's 'mt' is a millitonne"),
    ("emission_factors.csv", "power,coal,boiler,SO2,10,kg/t", "power,coal,boiler,SO2,10,kg/ton",
     E.UnitError, r"ambiguous unit 'kg/ton': pint's 'ton' is the US short ton"),
    ("emission_factors.csv", "power,coal,boiler,SO2,10,kg/t", "power,coal,boiler,SO2,10,kg/kt",
     E.UnitError, r"ambiguous unit 'kg/kt': pint's 'kt' is a knot"),
    ("emission_factors.csv", "power,coal,boiler,SO2,10,kg/t", "power,coal,boiler,SO2,10,kg/MT",
     E.UnitError, r"ambiguous unit 'kg/MT': pint's 'MT' is a megatesla"),
    ("emission_factors.csv", "power,coal,boiler,SO2,10,kg/t", "power,coal,boiler,SO2,10,kg/zz",
     E.UnitError, r"column 'unit': unparseable unit; got 'kg/zz'"),
    ("emission_factors.csv", "power,coal,boiler,SO2,10,kg/t", "power,coal,boiler,SF6,10,kg/t",
     E.UnknownKeyError, r"column 'species': unknown species; got 'SF6'"),
    ("emission_factors.csv", ",test\n", ",\n", E.ConfigError, r"empty 'reference'"),
    ("fuels.csv", "natural_gas,40,MJ/m**3", "natural_gas,40,MJ/Nm3", E.UnitError,
     r"fuels.csv, row 2, column 'ncv_unit': ambiguous unit 'MJ/Nm3'"),
    ("fuels.csv", "coal,20,GJ/t", "coal,-20,GJ/t", E.InputError,
     r"fuels.csv, row 1, column 'ncv': value out of range"),
    ("control_efficiencies.csv", "fgd,SO2,0.9", "fgd,SO2,1.5", E.InputError,
     r"control_efficiencies.csv, row 1, column 'efficiency': value out of range; got '1.5'"),
    ("control_efficiencies.csv", "fgd,SO2,0.9", "fgd,SO2,nan", E.InputError,
     r"column 'efficiency': not a number; got 'nan'"),
    ("control_efficiencies.csv", "fgd,SO2,0.9", "fgd+esp,SO2,0.9", E.ConfigError,
     r"row 1, column 'control': not a device name; got 'fgd\+esp'"),
    ("control_efficiencies.csv", "fgd,SO2,0.9", "none,SO2,0.9", E.ConfigError,
     r"not a device name; got 'none'"),
    ("temporal_profiles.csv", "flat,month,1,1,test", "flat,month,1,-1,test", E.ConfigError,
     r"temporal_profiles.csv, row 1, column 'value': not a weight; got '-1'; expected a "
     r"number >= 0"),
    ("temporal_profiles.csv", "flat,month,1,1,test", "flat,moon,1,1,test", E.ConfigError,
     r"column 'kind': unknown kind; got 'moon'"),
    ("temporal_profiles.csv", "flat,month,2,1,test", "flat,month,1,1,test", E.ConfigError,
     r"profile 'flat' \(month\) has indices"),
    ("sectors.csv", "power,power,flat,flat,flat,none,test",
     "power,power,flat,nope,flat,none,test", E.ConfigError, r"no weekday profile 'nope'"),
    ("emission_factors.csv", "sector,fuel", "sektor,fuel", E.ConfigError,
     r"emission-factor table has no column 'sector'"),
]


@pytest.mark.parametrize("name, old, new, err, pattern", TABLE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TABLE_CASES)])
def test_bad_table(world, name, old, new, err, pattern):
    path = cfg_dir(world) / name
    path.write_text(_replace(path.read_text(), old, new))
    with pytest.raises(err, match=pattern):
        tables_of(world)


@pytest.mark.parametrize("name, header", [
    ("emission_factors.csv", "sector,fuel,technology,species,value,unit,reference\n"),
    ("sectors.csv", "sector,long_name,month_profile,weekday_profile,hour_profile,holiday_as,"
     "reference\n"),
])
def test_header_only_table(world, name, header):
    (cfg_dir(world) / name).write_text(header)
    with pytest.raises(E.ConfigError, match=r"has no rows|have emission factors but no row"):
        tables_of(world)


def test_table_not_utf8(world):
    (cfg_dir(world) / "fuels.csv").write_bytes("fuel,ncv\n中文,20\n".encode("gbk"))
    with pytest.raises(E.ConfigError, match=r"fuels.csv: cannot read fuel table \(not UTF-8"):
        tables_of(world)


# ---------------------------------------------------------------------------------------------
# species registry

SPECIES_CASES = [
    ("co2e: {gwp_set: ar6, components: [CO2, CH4, N2O]}",
     "co2e: {gwp_set: ar6, components: [CO2, SF6]}",
     r"co2e.components names \['SF6'\], not emitted species"),
    ("co2e: {gwp_set: ar6, components: [CO2, CH4, N2O]}",
     "co2e: {gwp_set: ar6, components: CO2}", r"co2e.components is 'CO2'; expected a non-empty"),
    ("co2e: {gwp_set: ar6, components: [CO2, CH4, N2O]}",
     "co2e: {gwp_set: ar6, components: []}", r"co2e.components is \[\]"),
    ("co2e: {gwp_set: ar6, components: [CO2, CH4, N2O]}",
     "co2e: {gwp_set: ar6, components: [CO2, CO2e]}", r"names \['CO2e'\]"),
    ("co2e: {gwp_set: ar6, components: [CO2, CH4, N2O]}",
     "co2e: {gwp_set: ar6, components: [CO2, CO2]}", r"lists a species twice"),
    ("co2e: {gwp_set: ar6, components: [CO2, CH4, N2O]}", "co2e: 5", r"co2e is 5"),
    ("gwp100_ar5: 28, gwp100_ar6: 27", "gwp100_ar5: 28, gwp100_ar6: abc",
     r"species 'CH4': gwp100_ar6 is 'abc'; expected a finite number >= 0"),
    ("gwp100_ar5: 28, gwp100_ar6: 27", "gwp100_ar5: 28, gwp100_ar6: -27",
     r"species 'CH4': gwp100_ar6 is -27"),
    ("gwp100_ar5: 28, gwp100_ar6: 27", "gwp100_ar5: 28, gwp100_ar6: .inf",
     r"species 'CH4': gwp100_ar6 is inf"),
    ("gwp100_ar5: 28, gwp100_ar6: 27", "gwp100_ar5: 28, gwp100_ar6: true",
     r"gwp100_ar6 is True"),
    ("molar_mass_g_mol: 64.066", "molar_mass_g_mol: heavy", r"molar_mass_g_mol is 'heavy'"),
    ("NH3: {long_name: ammonia, kind: pollutant}", "NH3: {kind: pollutant}",
     r"species 'NH3' has no long_name"),
    ("NH3: {long_name: ammonia, kind: pollutant}",
     "NH3: {long_name: ammonia, kind: pollutant}\n  NH3: {long_name: again, kind: pollutant}",
     r"not valid YAML .*key 'NH3' given twice"),
]


@pytest.mark.parametrize("old, new, pattern", SPECIES_CASES)
def test_bad_species_registry(world, old, new, pattern):
    path = cfg_dir(world) / "species.yaml"
    path.write_text(_replace(path.read_text(), old, new))
    with pytest.raises(E.ConfigError, match=pattern):
        tables_of(world)


# ---------------------------------------------------------------------------------------------
# the build configuration and YAML itself

BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

CONFIG_CASES = [
    ("output: {dir: ../out}", "output: {dir: ../out}\ninputs: []",
     r"key 'inputs' given twice \(lines 11 and 18\)"),
    ("output: {dir: ../out}", "output: {dir: ../out}\nsectors: []",
     r"sectors: List should have at least 1 item"),
    ("output: {dir: ../out}", "output: {dir: ../out}\nsectors: [power, power]",
     r"a sector is listed twice"),
    ("output: {dir: ../out}", "output: {dir: ../out}\nsectors: [power, steel]",
     r"'sectors' lists unknown sectors \['steel'\]"),
    ("dx: 1000,", "dx: .inf,", r"grid.dx: Input should be a finite number"),
    ("dx: 1000,", "dx: .nan,", r"grid.dx: Input should be a finite number"),
    ("x0: 300000,", "x0: .inf,", r"grid.x0: Input should be a finite number"),
    ("nx: 4,", "nx: 0,", r"grid.nx: Input should be greater than 0"),
    ("nx: 4,", "nx: four,", r"grid.nx: Input should be a valid integer"),
    ("nx: 4, ny: 3,", "nx: 100000, ny: 100000,", r"100000 × 100000 = 1e\+10 cells need at "
     r"least .* GiB .* more than this machine's"),
    ("year: 2024", "year: 1e9", r"year: Input should be a valid integer"),
    ("output: {dir: ../out}", "output: {dir: ../out}\nvalidation: {max_outside_share: 2}",
     r"validation.max_outside_share: Input should be less than or equal to 1"),
    ("output: {dir: ../out}", "output: {dir: ../out}\ncolour: blue",
     r"colour: Extra inputs are not permitted"),
    ("output: {dir: ../out}", "output: {dir: ../out}\nproxies: {population: ../data/a.tif}",
     r"key 'proxies' given twice"),
    ("name: fixture", BOMB + "name: fixture", r"YAML expands to more than 100,000 nodes"),
    ("path: ../data/lines.csv,", "path: ../data/lines.csv, sheet: roads,",
     r"'sheet' is for .xlsx workbooks; lines.csv is not one"),
]


@pytest.mark.parametrize("old, new, pattern", CONFIG_CASES)
def test_bad_config(world, old, new, pattern):
    edit_config(world, old, new)
    with pytest.raises(E.TongyuanError, match=pattern) as info:
        tables_of(world)
    assert len(str(info.value)) < 2000


def test_alias_bomb_gives_a_short_error(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    with pytest.raises(E.ConfigError, match=r"bomb.yaml: YAML expands") as info:
        read_yaml(path, "config")
    assert len(str(info.value)) < 500


def test_aliases_and_merge_keys_within_the_bound_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nlist: [*b, *b]\n")
    doc = read_yaml(path, "config")
    assert doc["other"] == {"x": 1, "y": 3} and doc["list"] == [{"x": 1, "y": 2}] * 2


@pytest.mark.parametrize("text, pattern", [
    ("", r"expected a mapping at the top level of the config \(the file is empty\)"),
    ("- a\n- b\n", r"expected a mapping at the top level"),
    ("a: [1, 2\n", r"not valid YAML"),
    ("[" * 5000 + "]" * 5000, r"not valid YAML|nested too deeply"),
    ("a: 1\na: 2\n", r"key 'a' given twice \(lines 1 and 2\)"),
    ("x:\n  a: 1\n  b: 2\n  a: 3\n", r"key 'a' given twice \(lines 2 and 4\)"),
])
def test_bad_yaml(tmp_path, text, pattern):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(E.ConfigError, match=pattern):
        read_yaml(path, "config")


def test_cache_dir_that_is_a_file(world):
    cache = world.parent / "cachefile"
    cache.write_text("x")
    edit_config(world, "output: {dir: ../out}", "output: {dir: ../out}\ncache: {dir: cachefile}")
    with pytest.raises(E.ConfigError, match=r"cache.dir = .*cachefile is a file, expected a "
                       r"directory"):
        load_config(world)


def test_output_dir_that_is_a_file(world):
    (world.parent.parent / "out").write_text("x")
    with pytest.raises(E.ConfigError, match=r"output.dir = .*out is a file"):
        load_config(world)


def test_validation_messages_are_capped(world):
    edit_config(world, "output: {dir: ../out}",
                "output: {dir: ../out}\n" + "".join(f"k{i}: {i}\n" for i in range(500)))
    with pytest.raises(E.ConfigError, match=r"\.\.\. and 470 more problems") as info:
        load_config(world)
    assert len(str(info.value)) <= E.MAX_MESSAGE


# ---------------------------------------------------------------------------------------------
# 2. units and plausibility in the activity reader

def read_points(world, tables, text):
    (data_dir(world) / "points.csv").write_text(text)
    return read_inputs(load_config(world), tables)


ROW_CASES = [
    ("P9,power,coal,boiler,none,5,mt,300500,3400500", E.UnitError,
     r"row 2, source_id 'P9', column 'activity_unit': ambiguous unit 'mt': pint's 'mt' is a "
     r"millitonne"),
    ("P9,power,coal,boiler,none,5,ton,300500,3400500", E.UnitError, r"ambiguous unit 'ton'"),
    ("P9,power,coal,boiler,none,5,tons,300500,3400500", E.UnitError, r"ambiguous unit 'tons'"),
    ("P9,power,coal,boiler,none,5,kt,300500,3400500", E.UnitError, r"ambiguous unit 'kt'"),
    ("P9,power,coal,boiler,none,5,MT,300500,3400500", E.UnitError, r"ambiguous unit 'MT'"),
    ("P9,power,coal,boiler,none,5,Nm3,300500,3400500", E.UnitError, r"ambiguous unit 'Nm3'"),
    ("P9,power,coal,boiler,none,1e300,t,300500,3400500", E.ActivityError,
     r"row 2, source_id 'P9', column 'activity': implausible activity for one power source "
     r"\(1e\+300 t, more than the bound 1e\+11 t\).*UNEP 2019"),
    ("P9,power,coal,boiler,none,2e11,t,300500,3400500", E.ActivityError,
     r"implausible activity"),
    ("P9,power,coal,boiler,none,2e5,megatonne,300500,3400500", E.ActivityError,
     r"implausible activity for one power source \(2e\+11 t"),
    ("P9,power,coal,boiler,none,inf,t,300500,3400500", E.ActivityError,
     r"activity is missing or not a number; got 'inf'"),
    ("P9,power,coal,boiler,none,nan,t,300500,3400500", E.ActivityError,
     r"activity is missing or not a number"),
    ("P9,power,coal,boiler,none,1e400,t,300500,3400500", E.ActivityError,
     r"activity is missing or not a number; got '1e400'"),
    ("P9,power,coal,boiler,none,-0.1,t,300500,3400500", E.ActivityError, r"negative activity"),
    ("P9,power,coal,boiler,fgd+fgd,5,t,300500,3400500", E.UnknownKeyError,
     r"column 'control': control device 'fgd' listed twice; got 'fgd\+fgd'"),
    ("P9,power,coal,boiler,fgd+esp+fgd,5,t,300500,3400500", E.UnknownKeyError,
     r"control device 'fgd' listed twice"),
    ("P9,power,coal,boiler,fgd+,5,t,300500,3400500", E.UnknownKeyError,
     r"unknown control device ''"),
    ("P9,power,coal,boiler,none,5,t,1e300,3400500", E.GeometryError,
     r"row 2, source_id 'P9', column 'geometry': coordinate far beyond the Earth"),
    ("P9,power,coal,boiler,none,5,t,inf,3400500", E.GeometryError,
     r"column 'x': coordinate is missing or not a number; got 'inf'"),
    ("P9,power,coal,boiler,none,5,t,300500", E.GeometryError,
     r"points.csv, row 2, column 'y': coordinate is missing or not a number; got nan"),
    ("P9,power,coal,boiler,none,5,t,300500,3400500,7", E.InputError,
     r"points.csv, row 2: 10 fields where the header has 9"),
    ("P9,power,coal,boiler,none,5,t/h,300500,3400500", E.UnitError,
     r"activity unit and factor unit do not give a mass|t/h"),
]


@pytest.mark.parametrize("row, err, pattern", ROW_CASES)
def test_bad_activity_row(world, tables, row, err, pattern):
    with pytest.raises(err, match=pattern):
        activity, _, _ = read_points(world, tables, HEAD + OK + row + "\n")
        compute_emissions(activity, tables.library, tables.registry)


def test_line_vertex_at_1e300_is_refused(world, tables):
    geom = '"LINESTRING (300000 3400500, 1e300 3400500)"'
    (data_dir(world) / "lines.csv").write_text(LHEAD + f"X,road,gasoline,car,1,km,{geom}\n")
    with pytest.raises(E.GeometryError, match=r"lines.csv, row 1, source_id 'X', column "
                       r"'geometry': coordinate far beyond the Earth"):
        read_inputs(load_config(world), tables)


def test_overflow_to_inf_is_an_error_not_a_ledger_entry(world, tables):
    """Without bounds, 1e306 t × 2000 kg/t overflows: the same-source step says so."""
    (data_dir(world) / "points.csv").write_text(
        HEAD + "P9,power,coal,boiler,none,1e306,t,300500,3400500\n")
    cfg = load_config(world)
    table, _ = read_sources(cfg.inputs[0].path, "point", target_crs=tables.grid.crs,
                            layout=FileLayout(crs="EPSG:32651", x_column="x", y_column="y"),
                            vocabulary=Vocabulary(keys=tables.library.keys,
                                                  devices=tables.library.devices))
    with pytest.raises(E.ActivityError, match=r"points.csv, row 1, source_id 'P9', column "
                       r"'activity': CO2 emission is not a finite number \(activity × emission "
                       r"factor overflows\)"):
        compute_emissions(table, tables.library, tables.registry)


def test_bounds_are_configurable(world):
    (world.parent / "bounds.csv").write_text("sector,unit,max_value,reference\n"
                                             "power,t,50,test\n*,t,1e11,test\n")
    edit_config(world, "output: {dir: ../out}",
                "output: {dir: ../out}\nvalidation: {activity_bounds: bounds.csv}")
    tables = tables_of(world)
    with pytest.raises(E.ActivityError, match=r"row 1, source_id 'P1'.*more than the bound 50 t"
                       r".*expected at most 50 t per source and year \(test\)"):
        read_inputs(load_config(world), tables)


@pytest.mark.parametrize("text, pattern", [
    ("sector,unit,max_value,reference\n*,ton,1e11,x\n", r"row 1, column 'unit': ambiguous"),
    ("sector,unit,max_value,reference\n*,t,-1,x\n", r"column 'max_value': value out of range"),
    ("sector,unit,max_value,reference\n*,t,1,x\n*,t,2,y\n", r"sector/unit given twice"),
])
def test_bad_bounds_table(world, text, pattern):
    (world.parent / "bounds.csv").write_text(text)
    edit_config(world, "output: {dir: ../out}",
                "output: {dir: ../out}\nvalidation: {activity_bounds: bounds.csv}")
    with pytest.raises(E.TongyuanError, match=pattern):
        tables_of(world)


@pytest.mark.parametrize("unit, kg", [("t", 1e3), ("tonne", 1e3), ("kilotonne", 1e6),
                                      ("Mt", 1e9), ("megatonne", 1e9), ("Gg", 1e6),
                                      ("kg", 1.0)])
def test_unambiguous_mass_units_still_parse(unit, kg):
    assert (1 * parse_unit(unit)).to("kg").magnitude == pytest.approx(kg)


# ---------------------------------------------------------------------------------------------
# 3. geography

def test_wrong_utm_zone_stops_the_build(world, tables):
    """Data in UTM 51N declared as 50N: every stack ~600 km away, outside the grid."""
    edit_config(world, 'path: ../data/points.csv, crs: "EPSG:32651"',
                'path: ../data/points.csv, crs: "EPSG:32650"')
    cfg = load_config(world)
    activity, metas, _ = read_inputs(cfg, tables)
    names = {m.path: m.name for m in metas if m.kind in ("point", "line", "area")}
    with pytest.raises(E.InputError, match=r"points.csv: 100% of the mass of input 'points' "
                       r"lies outside the grid \(limit 50%.*wrong UTM zone"):
        allocate_sources(activity, tables, inputs=names)


def test_outside_limit_is_configurable(world):
    edit_config(world, 'path: ../data/points.csv, crs: "EPSG:32651"',
                'path: ../data/points.csv, crs: "EPSG:32650"')
    edit_config(world, "output: {dir: ../out}",
                "output: {dir: ../out}\nvalidation: {max_outside_share: 1}")
    tables = tables_of(world)
    activity, _, _ = read_inputs(load_config(world), tables)
    alloc = allocate_sources(activity, tables)
    assert alloc.outside_fraction.max() == pytest.approx(1.0)


def test_sources_partly_outside_the_grid_still_build(world, tables):
    """The fixture has P3 and most of L2 outside: a few sources, not most of the mass."""
    activity, _, _ = read_inputs(load_config(world), tables)
    alloc = allocate_sources(activity, tables)
    assert 0 < alloc.outside_fraction.max() <= 1


def test_swapped_lon_lat_is_refused_at_read(world, tables):
    edit_config(world, 'crs: "EPSG:32651", x_column: x, y_column: y',
                'crs: "EPSG:4326", x_column: x, y_column: y')
    with pytest.raises(E.GeometryError, match=r"cannot be projected to the grid CRS \(swapped"):
        read_points(world, tables, HEAD + "P1,power,coal,boiler,none,10,t,30.7,120.9\n")


def test_swapped_axes_that_still_parse_stop_the_build(world, tables):
    """lon/lat swapped where both are below 90 (a city west of 90° E): the points parse, but
    land far from the grid."""
    edit_config(world, 'crs: "EPSG:32651", x_column: x, y_column: y',
                'crs: "EPSG:4326", x_column: y, y_column: x')
    activity, _, _ = read_points(world, tables, HEAD + "P1,power,coal,boiler,none,10,t,"
                                 "77.2,28.6\n")  # Delhi, columns swapped
    with pytest.raises(E.InputError, match=r"lies outside the grid.*swapped lon/lat"):
        allocate_sources(activity, tables)


@pytest.mark.parametrize("crs, pattern", [
    ("EPSG:4978", r"column 'crs': the CRS is a geocentric"),
    ("EPSG:5703", r"column 'crs': the CRS is not a horizontal map CRS"),
])
def test_non_planar_crs_refused(world, tables, crs, pattern):
    edit_config(world, 'path: ../data/points.csv, crs: "EPSG:32651"',
                f'path: ../data/points.csv, crs: "{crs}"')
    with pytest.raises(E.CRSMissingError, match=pattern):
        read_inputs(load_config(world), tables)


def test_grid_capped_by_memory():
    with pytest.raises(E.ConfigError, match=r"100000 × 100000 = 1e\+10 cells need at least"):
        Grid(crs="EPSG:32651", x0=0, y0=0, dx=10, dy=10, nx=100_000, ny=100_000)
    assert Grid(crs="EPSG:32651", x0=0, y0=0, dx=10, dy=10, nx=1000, ny=1000).size == 10**6


# ---------------------------------------------------------------------------------------------
# 4. files: missing, empty, directory, corrupt

def _corrupt(path: Path) -> None:
    path.write_bytes(b"\x00\x01not really this format" * 10)


FILE_CASES = [
    ("points.csv", "missing", r"points.csv: file not found"),
    ("points.csv", "directory", r"points.csv: is a directory"),
    ("points.csv", "empty", r"points.csv: the file is empty"),
    ("points.csv", "binary", r"points.csv: cannot parse CSV|points.csv: required column"),
    ("points.gpkg", "corrupt", r"points.gpkg: cannot open"),
    ("points.geojson", "corrupt", r"points.geojson: cannot open"),
    ("points.parquet", "corrupt", r"points.parquet: cannot read Parquet"),
    ("points.shp", "corrupt", r"points.shp: cannot open"),
    ("points.xlsx", "corrupt", r"points.xlsx: cannot read workbook"),
    ("points.xlsx", "empty", r"points.xlsx: the file is empty"),
    ("points.xls", "corrupt", r"unsupported file format; got '.xls'"),
]


@pytest.mark.parametrize("name, how, pattern", FILE_CASES)
def test_bad_input_file(world, tables, name, how, pattern):
    path = data_dir(world) / name
    (data_dir(world) / "points.csv").unlink()
    if how == "directory":
        path.mkdir()
    elif how == "empty":
        path.write_text("")
    elif how == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif how == "corrupt":
        _corrupt(path)
    edit_config(world, "path: ../data/points.csv", f"path: ../data/{name}")
    with pytest.raises(E.InputError, match=pattern) as info:
        read_inputs(load_config(world), tables)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("how, pattern", [
    ("missing", r"population.tif: proxy raster 'population' not found"),
    ("directory", r"population.tif: proxy raster 'population' is a directory"),
    ("empty", r"population.tif: proxy raster 'population' is an empty file"),
    ("corrupt", r"population.tif: proxy raster 'population' cannot be read"),
    ("inf", r"population.tif, row 1, column 'pixel column 1': infinite value in proxy raster"),
    ("nocrs", r"proxy raster 'population' has no CRS"),
])
def test_bad_proxy_raster(world, how, pattern):
    path = data_dir(world) / "population.tif"
    path.unlink()
    if how == "directory":
        path.mkdir()
    elif how == "empty":
        path.write_text("")
    elif how == "corrupt":
        _corrupt(path)
    elif how in ("inf", "nocrs"):
        v = np.ones((6, 12), dtype="float32")
        v[0, 0] = np.inf
        with rasterio.open(path, "w", driver="GTiff", width=12, height=6, count=1,
                           dtype="float32", crs=None if how == "nocrs" else "EPSG:32651",
                           transform=Affine(500, 0, X0, 0, -500, Y0 + 3000)) as dst:
            dst.write(v, 1)
    with pytest.raises(E.InputError, match=pattern) as info:
        Proxy(name="population", path=str(path)).read()
    assert "\n" not in str(info.value)


def test_bad_proxy_raster_stops_the_allocation(world, tables):
    _corrupt(data_dir(world) / "population.tif")
    activity, _, _ = read_inputs(load_config(world), tables)
    with pytest.raises(E.InputError, match=r"proxy raster 'population' cannot be read"):
        allocate_sources(activity, tables)


@pytest.mark.parametrize("content, pattern", [
    (None, r"cems.csv: CEMS table not found"),
    ("", r"cems.csv: CEMS table is an empty file"),
    ("dir", r"cems.csv: CEMS table is a directory"),
    ("source_id,time_utc,species,value,unit\nP1,2024-03-01T00:00,SO2,1,ton\n",
     r"row 1, source_id 'P1', column 'unit': ambiguous unit 'ton'"),
    ("source_id,time_utc,species,value,unit\nP1,2024-03-01T00:00,SO2,1,tons\n",
     r"column 'unit': ambiguous unit 'tons'"),
    ("source_id,time_utc,species,value,unit\nP1,2024-03-01T00:00,SO2,1,mt\n",
     r"column 'unit': ambiguous unit 'mt'"),
    ("source_id,time_utc,species,value,unit\nP1,2024-03-01T00:00,SO2,1,m\n",
     r"column 'unit': not a mass unit"),
    ("source_id,time_utc,species,value,unit\nP1,2024-03-01T00:00,SO2,abc,kg\n",
     r"column 'value': not a number; got 'abc'"),
    ("source_id,time_utc,species,value,unit\nP1,2024-03-01T00:00,SO2,abc,ton\n",
     r"column 'value': not a number"),
    ("source_id,time_utc,species,value,unit\nP1,2024-03-01T00:00,SO2,-1,kg\n",
     r"column 'value': negative or missing measurement"),
    ("source_id,time_utc,species,value,unit\nP1,2024-03-01T00:00,SO2,inf,kg\n",
     r"column 'value': negative or missing measurement"),
    ("source_id,time_utc,species,value,unit\nP1,2024-03-01T00:30,SO2,1,kg\n",
     r"column 'time_utc': not the start of an hour"),
    ("source_id,time_utc,species,value,unit\nP1,soon,SO2,1,kg\n", r"column 'time_utc': not a"),
    ("source_id,time_utc,species,value,unit\nP1,,SO2,1,kg\n", r"column 'time_utc': not a"),
    ("source_id,time_utc,species,value,unit\nPX,2024-03-01T00:00,SO2,1,kg\n",
     r"column 'source_id': unknown stack"),
    ("source_id,time_utc,species,value,unit\nL1,2024-03-01T00:00,SO2,1,kg\n",
     r"CEMS data for a line source"),
    ("source_id,time_utc,species,value,unit\nP1,2024-03-01T00:00,SF6,1,kg\n",
     r"column 'species': unknown species"),
    ("source_id,time_utc,species,value,unit\nP1,2024-03-01T00:00,SO2,1,kg,9\n",
     r"row 1: 6 fields where the header has 5"),
])
def test_bad_cems_file(world, tables, content, pattern):
    path = data_dir(world) / "cems.csv"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    activity, _, _ = read_inputs(load_config(world), tables)
    errors = cems_errors([path], activity, tables.registry.all, 2024)
    assert len(errors) == 1 and isinstance(errors[0], E.TongyuanError)
    assert re.search(pattern, str(errors[0])), str(errors[0])


def test_huge_cell_gives_a_capped_message(world, tables):
    with pytest.raises(E.UnknownKeyError) as info:
        read_points(world, tables, HEAD + OK + "P9,power," + "x" * 100_000
                    + ",boiler,none,5,t,300500,3400500\n")
    assert len(str(info.value)) <= E.MAX_MESSAGE
