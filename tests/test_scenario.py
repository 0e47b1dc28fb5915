"""Scenarios and the synergy assessment: hand-computed deltas on the fixture world.

Fixture (tests/world.py): coal 20 GJ/t, CO2 2000 kg/t, SO2 10 kg/t, NOx 5 kg/t; P1 1000 t with
fgd (SO2 −90 %) in cell (0,0), P2 500 t in cell (2,3), P3 100 t outside the grid; cars CO2
200 g/km, NOx 0.5 g/km on L1..L3 (1e6 km each).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.config import load_config
from pipeline.scenario import check_base_year, run_scenario
from pipeline.steps import allocate_sources, load_tables, read_inputs
from sources.errors import ConfigError
from sources.measures import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parent.parent

HEAD = """\
name: {name}
title: test scenario
reference: test plan, 2023
base_config: build.yaml
base_year: 2024
target_year: 2030
grid_electricity:
  supplied_by: {{sector: power}}
  local_share: 0.5
  heat_rate: {{coal: "10 GJ/MWh"}}
"""


def _scenario(world: Path, measures: str, name: str = "t1", head: str = HEAD) -> Path:
    path = world.parent / f"{name}.yaml"
    text = head.format(name=name) + ("measures:\n" + textwrap.indent(textwrap.dedent(measures),
                                                                      "  ")
                                     if measures.strip() else "measures: []\n")
    path.write_text(text)
    return path


def _run(world: Path, measures: str, **kw):
    sc = load_scenario(_scenario(world, measures, **kw))
    cfg = load_config(sc.base_config)
    tables = load_tables(cfg)
    act, _, _ = read_inputs(cfg, tables)
    return run_scenario(sc, act, allocate_sources(act, tables), tables, cfg.boundaries)


def _row(run, measure: str, basis: str) -> pd.Series:
    s = run.synergy
    return s[(s["measure"] == measure) & (s["basis"] == basis)].iloc[0]


def test_single_scale_measure_gives_hand_computed_deltas(world):
    run = _run(world, """
        - {id: half_p1, type: scale, title: halve P1, clause: "§1", select: {source_id: P1},
           factor: 0.5}
        """)
    r = _row(run, "half_p1", "sequential")
    assert r["delta_CO2_t"] == pytest.approx(-1000.0, rel=1e-12)  # 500 t coal × 2 t/t
    assert r["delta_SO2_t"] == pytest.approx(-0.5, rel=1e-12)  # 500 × 10 kg × (1 − 0.9)
    assert r["delta_NOx_t"] == pytest.approx(-2.5, rel=1e-12)
    assert r["NOx_t_per_kt_CO2"] == pytest.approx(2.5, rel=1e-12)
    assert r["SO2_t_per_kt_CO2"] == pytest.approx(0.5, rel=1e-12)
    alone = _row(run, "half_p1", "alone")
    assert alone["delta_CO2_t"] == r["delta_CO2_t"]
    assert _row(run, "interaction", "interaction")["delta_CO2_t"] == 0.0
    # the whole change sits in P1's cell (0, 0)
    d = run.difference.sel(measure="half_p1", species="CO2").to_numpy()
    assert d[0, 0] == pytest.approx(-1e6, rel=1e-12)
    assert np.count_nonzero(d) == 1
    assert run.final.set_index("source_id").loc["P1", "activity"] == 500.0


def test_empty_scenario_changes_nothing_exactly(world):
    run = _run(world, "")
    assert list(run.synergy["measure"]) == ["combined", "sum_of_alone", "interaction"]
    deltas = run.synergy.filter(like="delta_").to_numpy()
    assert np.all(deltas == 0.0)
    assert np.all(run.difference.to_numpy() == 0.0)
    assert run.difference["measure"].values.tolist() == ["combined"]


def test_shift_with_electricity_and_capacity_by_hand(world):
    # 25 % of car km to a new key that emits no CO2 and draws 0.2 kWh/km from the grid:
    # 3 × 250 000 km × 0.2 kWh = 150 MWh, half of it local → coal plants (P1..P3, 1600 t,
    # 20 GJ/t ÷ 10 GJ/MWh = 3200 MWh) × (1 + 75/3200). Then wind 10 MW × 100 h = 1000 MWh:
    # 500 MWh local → × (1 − 500/3275).
    fp = world.parent / "emission_factors.csv"
    fp.write_text(fp.read_text() + "road,electricity,ev,CO2,0,g/km,test\n")
    run = _run(world, """
        - id: ev
          type: shift
          title: cars to electric
          clause: "§2"
          select: {sector: road}
          share: 0.25
          to: {fuel: electricity, technology: ev, electricity: "0.2 kWh/km"}
        - {id: wind, type: add_capacity, title: wind, clause: "§3", capacity_mw: 12,
           base_capacity_mw: 2, full_load_hours: 100}
        """)
    ev = _row(run, "ev", "sequential")
    assert ev["grid_demand_mwh"] == pytest.approx(150.0, rel=1e-12)
    assert ev["local_generation_mwh"] == pytest.approx(75.0, rel=1e-12)
    assert ev["imported_mwh"] == pytest.approx(75.0, rel=1e-12)
    # cars: −750 000 km × 200 g = −150 t; plants: +75 MWh × 10 GJ/MWh ÷ 20 GJ/t × 2 t/t = +75 t
    assert ev["delta_CO2_t"] == pytest.approx(-150.0 + 75.0, rel=1e-12)
    wind = _row(run, "wind", "sequential")
    assert wind["added_generation_mwh"] == pytest.approx(1000.0, rel=1e-12)
    assert wind["delta_CO2_t"] == pytest.approx(-500.0, rel=1e-12)  # 500 MWh × 0.5 t/MWh × 2
    final = run.final.set_index("source_id")
    assert final.loc["P1", "activity"] == pytest.approx(1000 * (1 + 75 / 3200) * (1 - 500 / 3275),
                                                        rel=1e-12)
    assert final.loc["L1~ev", "activity"] == pytest.approx(250_000.0, rel=1e-12)
    # the shifted rows keep their road's allocation: cell (0,1) holds half of L1 and half of
    # L3 (edge), each losing 250 000 km × 0.5 g NOx; the new key emits none
    d = run.difference.sel(measure="ev", species="NOx").to_numpy()
    assert d[0, 1] == pytest.approx(-125.0, rel=1e-12)
    s = run.synergy
    seq = s[s["basis"] == "sequential"].filter(like="delta_").sum()
    comb = s[s["basis"] == "combined"].filter(like="delta_").iloc[0]
    np.testing.assert_allclose(seq.to_numpy(), comb.to_numpy(), rtol=1e-12, atol=1e-9)


def test_overlapping_cap_shows_interaction(world):
    run = _run(world, """
        - {id: cut, type: scale, title: cut P2, clause: "§1", select: {source_id: P2}, factor: 0}
        - {id: cap, type: cap, title: coal cap, clause: "§4", select: {fuel: coal}, limit: 0.8}
        """)
    # coal 1600 t; the cut leaves 1100 t, below the cap of 1280 t: the cap does nothing here
    assert _row(run, "cap", "sequential")["delta_CO2_t"] == 0.0
    assert _row(run, "cap", "alone")["delta_CO2_t"] == pytest.approx(-640.0, rel=1e-12)
    assert _row(run, "interaction", "interaction")["delta_CO2_t"] == pytest.approx(640.0,
                                                                                  rel=1e-12)


def test_control_and_factor_measures(world):
    run = _run(world, """
        - {id: fgd, type: control, title: FGD on P2, clause: "§5", select: {source_id: P2},
           add: fgd}
        - {id: sulfur, type: emission_factor, title: low-S coal, clause: "§6",
           select: {fuel: coal}, scale: {SO2: 0.5}}
        """)
    assert _row(run, "fgd", "sequential")["delta_SO2_t"] == pytest.approx(-4.5, rel=1e-12)
    assert _row(run, "fgd", "sequential")["delta_CO2_t"] == 0.0
    assert np.isnan(_row(run, "fgd", "sequential")["SO2_t_per_kt_CO2"])
    # after fgd: P1 1.0 t, P2 0.5 t, P3 1.0 t SO2 → halved
    assert _row(run, "sulfur", "sequential")["delta_SO2_t"] == pytest.approx(-1.25, rel=1e-12)
    assert run.final.set_index("source_id").loc["P2", "control"] == "fgd"


def test_new_biomass_plant_is_allocated_where_it_stands(world):
    fp = world.parent / "emission_factors.csv"
    fp.write_text(fp.read_text() + "power,biomass,bio_boiler,NOx,100,g/GJ,test\n"
                  "power,biomass,bio_boiler,CO2,0,kg/t,test\n")
    fu = world.parent / "fuels.csv"
    fu.write_text(fu.read_text() + "biomass,15,GJ/t,test\n")
    # UTM 51N (301 500, 3 401 500) is cell (1, 1)
    from pyproj import Transformer
    lon, lat = Transformer.from_crs(32651, 4326, always_xy=True).transform(301_500, 3_401_500)
    run = _run(world, f"""
        - id: bio
          type: add_capacity
          title: biomass plant
          clause: "§7"
          capacity_mw: 1
          full_load_hours: 3000
          new_source: {{source_id: BIO1, lon: {lon}, lat: {lat}, sector: power,
                        fuel: biomass, technology: bio_boiler, heat_rate: "12 GJ/MWh"}}
        """)
    final = run.final.set_index("source_id")
    assert final.loc["BIO1", "activity"] == pytest.approx(3000 * 12 / 15, rel=1e-12)
    d = run.difference.sel(measure="bio", species="NOx").to_numpy()
    # +36 000 GJ × 100 g/GJ = 3.6 t NOx at the plant; −1500 MWh local × … at the coal plants
    assert d[1, 1] == pytest.approx(3600.0, rel=1e-9)
    assert _row(run, "bio", "sequential")["local_generation_mwh"] == pytest.approx(-1500.0)


@pytest.mark.parametrize("measures, message", [
    ("- {id: a, type: scale, title: t, clause: c, select: {sector: nosuch}, factor: 0.5}",
     "selects no source"),
    ("- {id: a, type: scale, title: t, clause: c, factor: 0.5, annual_rate: 0.1}",
     "exactly one of 'factor' and 'annual_rate'"),
    ("- {id: a, type: teleport, title: t, clause: c}", "measures[0] (id a)"),
    ("- {id: a, type: scale, title: t, factor: 0.5}", "clause"),
    ("- {id: a, type: shift, title: t, clause: c, select: {sector: road}, share: 0.5,\n"
     "   to: {fuel: hydrogen, technology: fcv}}", "has no emission factors"),
    ("- {id: a, type: emission_factor, title: t, clause: c, scale: {XYZ: 0.5}}",
     "unknown species"),
    ("- {id: a, type: add_capacity, title: t, clause: c, capacity_mw: 1000,\n"
     "   full_load_hours: 8000}", "generate only"),
    ("- {id: a, type: scale, title: t, clause: c, factor: 1}\n"
     "- {id: a, type: scale, title: t, clause: c, factor: 1}", "unique"),
])
def test_invalid_scenarios_name_the_file_and_measure(world, measures, message):
    with pytest.raises(ConfigError) as exc:
        _run(world, measures + "\n")
    text = str(exc.value)
    assert message in text
    assert "t1.yaml" in text


def test_base_year_must_match_and_base_config_must_exist(world):
    sc = load_scenario(_scenario(world, ""))
    with pytest.raises(ConfigError, match="base_year 2024 differs from the year 2023"):
        check_base_year(sc, 2023)
    bad = world.parent / "bad.yaml"
    bad.write_text(HEAD.format(name="bad").replace("build.yaml", "nope.yaml") + "measures: []\n")
    with pytest.raises(ScenarioError, match="nope.yaml does not exist"):
        load_scenario(bad)


def test_scenario_flow_publishes_a_checked_build(world, prefect_harness, tmp_path):
    from pipeline.flows import scenario_inventory

    path = _scenario(world, """
        - {id: half_p1, type: scale, title: halve P1, clause: "§1", select: {source_id: P1},
           factor: 0.5}
        """)
    out = tmp_path / "out"
    summary = scenario_inventory(str(path), out_dir=str(out), period=("2024-03-01", "2024-03-01"))
    build = Path(summary.build_dir)
    assert (out / "latest-scenario-t1-period").resolve() == build
    manifest = json.loads((build / "manifest.json").read_text())
    for name in ("synergy.csv", "difference.nc", "activity_changes.csv", "scenario.yaml",
                 "synergy/index.html", "hourly/20240301.nc", "annual.nc", "ledger.csv"):
        assert name in manifest["files"], name
    assert manifest["scenario"] == "t1" and manifest["target_year"] == 2030
    with xr.open_dataset(build / "difference.nc") as ds, \
            xr.open_dataset(build / "annual.nc") as an:
        scen = an["annual_emissions"].sum("sector")
        comb = ds["emission_difference"].sel(measure="combined")
        np.testing.assert_allclose((scen - ds["base_emissions"]).to_numpy(), comb.to_numpy(),
                                   rtol=0, atol=1e-6)
        assert float(comb.sel(species="CO2").sum()) == pytest.approx(-1e6, rel=1e-12)
    ledger = pd.read_csv(build / "ledger.csv").set_index(["sector", "species"])
    assert ledger.loc[("power", "CO2"), "read_kg"] == pytest.approx(2000.0 * 1100, rel=1e-12)
    html = (build / "synergy" / "index.html").read_text()
    assert "half_p1" in html and "diff_combined_CO2.png" in html


def test_cli_scenario_bad_arguments(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["scenario", str(tmp_path / "missing.yaml")]) == 2
    assert "scenario file" in capsys.readouterr().err
    f = tmp_path / "s.yaml"
    f.write_text("name: x\n")
    assert main(["scenario", str(f), "--period", "2024-01-01"]) == 2
    assert "expected START:END" in capsys.readouterr().err
    assert main(["scenario", str(f)]) == 1
    err = capsys.readouterr().err
    assert "invalid scenario" in err and "base_config" in err


@pytest.mark.parametrize("plan", ["plan-2025.yaml", "plan-2030.yaml"])
def test_shipped_plans_run_on_the_demo(plan, tmp_path):
    """Both shipped plans on the demo (its CEMS file among the inputs); the difference.nc of
    each passes ``compliance-checker --test cf:1.8 --criteria strict`` with no finding."""
    from pipeline.provenance import provenance_attrs
    from pipeline.scenario import write_scenario_files
    from pipeline.writers.netcdf_cf import static_coords
    from tests.cf_checker import assert_cf_clean

    sc = load_scenario(REPO / "config" / "scenarios" / plan)
    cfg = load_config(sc.base_config)
    tables = load_tables(cfg)
    act, metas, _ = read_inputs(cfg, tables)
    run = run_scenario(sc, act, allocate_sources(act, tables), tables, cfg.boundaries)
    attrs = provenance_attrs(cfg, metas, "20240101T000000000Z-test", "test", tables.grid)
    assert "input_sha256_cems_P0001_2024_07" in attrs
    write_scenario_files(run, tmp_path, static_coords(tables.grid), attrs)
    with xr.open_dataset(tmp_path / "difference.nc") as ds:
        np.testing.assert_array_equal(ds["emission_difference"].values, run.difference.values)
        assert ds["emission_difference"].attrs["cell_methods"] == "year: mean"
        assert ds["year"].values == np.datetime64(f"{cfg.year}-01-01T00")
        assert list(ds["measure"].values) == list(run.difference["measure"].values)
    assert_cf_clean(tmp_path / "difference.nc")
    s = run.synergy
    comb = s[s["basis"] == "combined"].iloc[0]
    assert comb["delta_CO2_t"] < 0 and comb["delta_NOx_t"] < 0
    seq = s[s["basis"] == "sequential"].filter(like="delta_").sum()
    np.testing.assert_allclose(seq.to_numpy(), s[s["basis"] == "combined"].filter(
        like="delta_").iloc[0].to_numpy(), rtol=1e-9, atol=1e-6)
    for m in sc.measures:  # every measure cites the plan and changes something
        assert m.clause.strip()
        r = s[(s["measure"] == m.id) & (s["basis"] == "alone")].iloc[0]
        assert r.filter(like="delta_").abs().sum() > 0, m.id


def test_co_benefit_ratios_divide_by_fossil_co2(world):
    """With CO2 split into fossil and biogenic (coal here 25 % biogenic, as if co-fired), the
    ratios are per kt of *fossil* CO2, the CO2 that CO2e counts: halving P1 avoids 1000 t CO2,
    of which 750 t fossil, and 2.5 t NOx → 3.333 t NOx per kt fossil CO2 (not 2.5)."""
    cfg = world.parent
    species = (cfg / "species.yaml").read_text().replace(
        "co2e: {gwp_set: ar6, components: [CO2, CH4, N2O]}",
        "  CO2_fossil: {long_name: fossil CO2, kind: greenhouse_gas, gwp100_ar5: 1, "
        "gwp100_ar6: 1}\n"
        "  CO2_bio: {long_name: biogenic CO2, kind: greenhouse_gas, gwp100_ar5: 1, "
        "gwp100_ar6: 1}\n"
        "co2e: {gwp_set: ar6, components: [CO2_fossil, CH4, N2O]}\n"
        "co2_split: {total: CO2, fossil: CO2_fossil, biogenic: CO2_bio}")
    assert "co2_split" in species
    (cfg / "species.yaml").write_text(species)
    (cfg / "fuels.csv").write_text("fuel,ncv,ncv_unit,biogenic_fraction,reference\n"
                                   "coal,20,GJ/t,0.25,test\nnatural_gas,40,MJ/m**3,0,test\n")
    run = _run(world, """
        - {id: half_p1, type: scale, title: halve P1, clause: "§1", select: {source_id: P1},
           factor: 0.5}
        """)
    r = _row(run, "half_p1", "sequential")
    assert r["delta_CO2_t"] == pytest.approx(-1000.0, rel=1e-12)
    assert r["delta_CO2_fossil_t"] == pytest.approx(-750.0, rel=1e-12)
    assert r["delta_CO2_bio_t"] == pytest.approx(-250.0, rel=1e-12)
    assert r["NOx_t_per_kt_CO2"] == pytest.approx(2.5 / 0.75, rel=1e-12)
    assert r["SO2_t_per_kt_CO2"] == pytest.approx(0.5 / 0.75, rel=1e-12)
    assert "CO2_fossil_t_per_kt_CO2" not in run.synergy.columns  # a GHG has no ratio
