"""Uncertainty: table columns, Approach 1, Monte Carlo through the allocation (fixture world)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.build import prepare, run_build
from pipeline.cli import main
from pipeline.uncertainty import (
    approach1_table,
    model_of_state,
    run_monte_carlo,
    sector_groups,
)
from sources.errors import ConfigError
from sources.factors import load_factor_library
from sources.uncertainty import Z95, member_emissions, standard_normals

SPECIES = ["SO2", "NOx", "CO", "NMVOC", "NH3", "PM10", "PM2_5", "BC", "OC", "CO2", "CH4", "N2O"]

# 95 % relative half-widths [%] of the fixture's factor rows (all normal, < 30 %)
FACTOR_U = {("power", "CO2"): 6, ("power", "SO2"): 20, ("power", "NOx"): 20,
            ("power", "PM10"): 25, ("power", "PM2_5"): 25, ("power", "CH4"): 25,
            ("road", "CO2"): 4, ("road", "NOx"): 28, ("residential", "CO2"): 4,
            ("residential", "NOx"): 16}
ACTIVITY_U = {"points": 10, "lines": 14, "areas": 8}  # data types named after the inputs


def make_uncertain(world: Path, *, factor_u: dict | None = None, control_u: float = 12.0,
                   activity_u: dict | None = None, members: int = 0,
                   member_grids: int = 0) -> Path:
    """Add uncertainty columns, an activity-uncertainty table and an ``uncertainty:`` block."""
    factor_u = FACTOR_U if factor_u is None else factor_u
    activity_u = ACTIVITY_U if activity_u is None else activity_u
    cfg_dir = world.parent
    ef = pd.read_csv(cfg_dir / "emission_factors.csv", dtype=str)
    ef["uncertainty_pct"] = [str(factor_u.get((s, sp), 0)) for s, sp in
                             zip(ef["sector"], ef["species"], strict=True)]
    ef["distribution"] = "normal"
    ef.to_csv(cfg_dir / "emission_factors.csv", index=False)
    ctl = pd.read_csv(cfg_dir / "control_efficiencies.csv", dtype=str)
    ctl["uncertainty_pct"], ctl["distribution"] = str(control_u), "normal"
    ctl.to_csv(cfg_dir / "control_efficiencies.csv", index=False)
    rows = ["data_type,uncertainty_pct,distribution,reference"]
    rows += [f"{k},{v},normal,test" for k, v in activity_u.items()]
    rows += ["measured,2.5,normal,test", "estimated,30,lognormal,test"]
    (cfg_dir / "activity_uncertainty.csv").write_text("\n".join(rows) + "\n")
    text = world.read_text().replace(
        "  temporal_profiles: temporal_profiles.csv\n",
        "  temporal_profiles: temporal_profiles.csv\n"
        "  activity_uncertainty: activity_uncertainty.csv\n")
    text += ("uncertainty:\n  activity:\n"
             + "".join(f"    - {{input: {k}, data_type: {k}}}\n" for k in ACTIVITY_U)
             + f"  members: {members}\n  member_grids: {member_grids}\n  seed: 7\n")
    world.write_text(text)
    return world


def test_uncertainty_columns_are_validated(world, tmp_path):
    make_uncertain(world)
    d = world.parent
    args = (d / "emission_factors.csv", d / "control_efficiencies.csv", d / "fuels.csv", SPECIES)
    lib = load_factor_library(*args)
    assert lib.has_uncertainty
    row = lib.factors[(lib.factors["sector"] == "road") & (lib.factors["species"] == "NOx")]
    assert float(row["u_rel"].iloc[0]) == pytest.approx(0.28)
    assert float(lib.controls["u_rel"].iloc[0]) == pytest.approx(0.12)
    ef = pd.read_csv(d / "emission_factors.csv", dtype=str)
    for col, value, expected in (("uncertainty_pct", "-5", "finite number ≥ 0"),
                                 ("uncertainty_pct", "nan", "finite number ≥ 0"),
                                 ("distribution", "uniform", "normal or lognormal")):
        bad = ef.copy()
        bad.loc[3, col] = value
        bad.to_csv(d / "emission_factors.csv", index=False)
        with pytest.raises(ConfigError) as exc:
            load_factor_library(*args)
        msg = str(exc.value)
        assert "emission_factors.csv" in msg and "row 4" in msg and col in msg
        assert value in msg and expected in msg
    ef.drop(columns=["distribution"]).to_csv(d / "emission_factors.csv", index=False)
    with pytest.raises(ConfigError, match="no column 'distribution'"):
        load_factor_library(*args)


def test_monte_carlo_variance_of_a_sum_is_the_analytic_one(world):
    """City NOx = Σ sources E_s·a_s·f_row(s): activities independent per source, one factor
    draw per row shared by its sources; exact variance
    Σ_rows [(1 + σ_f²)(X_r² + Σ_s (σ_a E_s)²) − X_r²] with X_r = Σ_{s ∈ row} E_s."""
    make_uncertain(world, control_u=0.0)
    state = prepare(world)
    model = model_of_state(state)
    # the central emissions by hand: P1 1000 t × 5 kg/t, P2 500 t, P3 100 t; lines 1e6 km ×
    # 0.5 g/km; areas 1000 m3 × 40 MJ/m3 × 50 g/GJ
    e = {"P1": 5000.0, "P2": 2500.0, "P3": 500.0, "L1": 500.0, "L2": 500.0, "L3": 500.0,
         "A1": 2.0, "A2": 2.0, "A3": 2.0}
    got = state.emissions.table["NOx"]
    for sid, kg in e.items():
        assert got[sid] == pytest.approx(kg, rel=1e-12)
    groups = {"power": (["P1", "P2", "P3"], 0.10, 0.20), "road": (["L1", "L2", "L3"], 0.14, 0.28),
              "residential": (["A1", "A2", "A3"], 0.08, 0.16)}
    var = 0.0
    for ids, ua, uf in groups.values():
        x = sum(e[i] for i in ids)
        sa, sf = ua / Z95, uf / Z95
        var += (1 + sf ** 2) * (x ** 2 + sum((sa * e[i]) ** 2 for i in ids)) - x ** 2
    members = 4000
    _, onehot = sector_groups(state.activity["sector"].to_numpy())
    z = standard_normals(7, range(members), model.n_z)
    tot = np.asarray(onehot.T @ member_emissions(model, "NOx", model.multipliers(z)))[-1]
    assert tot.mean() == pytest.approx(sum(e.values()), rel=0.01)
    # sampling error of a variance from 4000 normal draws: sqrt(2/4000) = 2.2 %
    assert tot.var(ddof=1) == pytest.approx(var, rel=0.08)
    # Approach 1 (first order) is the same variance without the σ_a²σ_f² terms
    a1 = approach1_table(model, state.activity["sector"].to_numpy()).set_index(
        ["sector", "species"])
    first = sum((ua / Z95 * e[i]) ** 2 for ids, ua, uf in groups.values() for i in ids) + sum(
        (uf / Z95 * sum(e[i] for i in ids)) ** 2 for ids, ua, uf in groups.values())
    assert a1.loc[("city", "NOx"), "u95_kg"] == pytest.approx(Z95 * np.sqrt(first), rel=1e-12)


def test_monte_carlo_without_correlations_matches_its_analytic_variance(world):
    """``correlated=False`` (``--independent``): every source's factor drawn apart, so city NOx
    has the variance Σ_s E_s² [(1 + σ_a²)(1 + σ_f²) − 1], which Approach 1 of the same model
    matches to first order (within 10 % on every sector), and is clearly below the correlated
    variance where a factor row is shared by several sources."""
    make_uncertain(world, control_u=0.0)
    state = prepare(world)
    model = model_of_state(state)
    sectors = state.activity["sector"].to_numpy()
    e = {"P1": 5000.0, "P2": 2500.0, "P3": 500.0, "L1": 500.0, "L2": 500.0, "L3": 500.0,
         "A1": 2.0, "A2": 2.0, "A3": 2.0}
    groups = {"power": (["P1", "P2", "P3"], 0.10, 0.20), "road": (["L1", "L2", "L3"], 0.14, 0.28),
              "residential": (["A1", "A2", "A3"], 0.08, 0.16)}
    apart = {g: sum(e[i] ** 2 * ((1 + (ua / Z95) ** 2) * (1 + (uf / Z95) ** 2) - 1) for i in ids)
             for g, (ids, ua, uf) in groups.items()}
    x = {g: sum(e[i] for i in ids) for g, (ids, _, _) in groups.items()}
    shared = {g: (1 + (uf / Z95) ** 2) * (x[g] ** 2 + sum((ua / Z95 * e[i]) ** 2 for i in ids))
              - x[g] ** 2 for g, (ids, ua, uf) in groups.items()}
    result = run_monte_carlo(model, state.alloc.matrix, sectors, 4000, seed=3, chunk=500,
                             correlated=False)
    assert not result.correlated
    names, _ = sector_groups(sectors)  # the rows of result.totals
    tot = result.totals["NOx"]
    assert tot[-1].var(ddof=1) == pytest.approx(sum(apart.values()), rel=0.08)
    for g in groups:
        assert tot[names.index(g)].var(ddof=1) == pytest.approx(apart[g], rel=0.08)
    # power's one factor row shared by its three stacks: drawn apart, 0.55 of the variance
    assert tot[names.index("power")].var(ddof=1) < 0.65 * shared["power"]
    stats = result.stats.set_index(["sector", "species"])
    checked = stats[stats["approach1_u95_pct"] > 0]
    assert len(checked) >= 10
    np.testing.assert_allclose(checked["mc_over_approach1"], 1.0, atol=0.10)
    # this model's Approach 1 is the independent one: power NOx ±u95 of Σ E_s² (σ_a² + σ_f²)
    first = sum(e[i] ** 2 for i in groups["power"][0]) * (0.10 ** 2 + 0.20 ** 2)
    assert stats.loc[("power", "NOx"), "approach1_u95_pct"] == pytest.approx(
        100 * np.sqrt(first) / 8000.0, rel=1e-9)
    assert set(result.ratios["activity"]) == {"correlated"}


def test_ratio_of_one_stack_has_no_spread_when_only_its_activity_is_uncertain(world):
    make_uncertain(world, factor_u={}, control_u=0.0)
    state = prepare(world)
    model = model_of_state(state)
    z = standard_normals(3, range(200), model.n_z)
    mult = model.multipliers(z)
    i = int(np.flatnonzero(state.activity["source_id"].to_numpy() == "P1")[0])
    nox = member_emissions(model, "NOx", mult)[i]
    co2 = member_emissions(model, "CO2", mult)[i]
    assert np.std(co2) / np.mean(co2) == pytest.approx(0.10 / Z95, rel=0.15)  # CO2 does vary
    ratio = nox / co2
    assert np.ptp(ratio) <= 1e-15 * ratio[0]
    # the controlled NOx/CO2 of P1 by hand: 5 kg/t / 2000 kg/t (fgd/esp leave NOx alone)
    assert ratio[0] == pytest.approx(5 / 2000, rel=1e-12)
    # drawn apart (each species its own activity), the same ratio spreads
    z2 = z.copy()
    z2[:model.n_sources] = standard_normals(3, range(200), model.n_sources, stream=1)
    apart = member_emissions(model, "NOx", model.multipliers(z2))[i] / co2
    assert np.std(apart) / np.mean(apart) > 0.05


def test_monte_carlo_agrees_with_approach1_on_sector_totals(world):
    make_uncertain(world)
    state = prepare(world)
    model = model_of_state(state)
    result = run_monte_carlo(model, state.alloc.matrix, state.activity["sector"].to_numpy(),
                             2000, seed=11, chunk=300)
    stats = result.stats
    assert set(stats["sector"]) == {"power", "road", "residential", "city"}
    checked = stats[stats["approach1_u95_pct"] > 0]
    assert len(checked) >= 10
    np.testing.assert_allclose(checked["mc_over_approach1"], 1.0, atol=0.10)
    # per-cell percentiles bracket the central grid where there are emissions
    k = result.species.index("CO2")
    has = result.central[k] > 0
    assert (result.lower[k][has] < result.central[k][has]).all()
    assert (result.upper[k][has] > result.central[k][has]).all()


def test_same_seed_same_numbers_whatever_the_chunks(world):
    make_uncertain(world)
    state = prepare(world)
    model = model_of_state(state)
    z = standard_normals(5, range(10), model.n_z)
    z_parts = np.hstack([standard_normals(5, range(0, 4), model.n_z),
                         standard_normals(5, np.array([4, 5, 6, 7, 8, 9]), model.n_z)])
    np.testing.assert_array_equal(z, z_parts)
    args = (model, state.alloc.matrix, state.activity["sector"].to_numpy(), 30, 5)
    a = run_monte_carlo(*args, chunk=7, scheduler="threads")
    b = run_monte_carlo(*args, chunk=30, scheduler="synchronous")
    pd.testing.assert_frame_equal(a.stats, b.stats)
    pd.testing.assert_frame_equal(a.ratios, b.ratios)
    np.testing.assert_array_equal(a.lower, b.lower)
    np.testing.assert_array_equal(a.upper, b.upper)
    c = run_monte_carlo(model, state.alloc.matrix, state.activity["sector"].to_numpy(), 30, 6)
    assert not np.array_equal(a.lower, c.lower)


def test_build_writes_uncertainty_files_that_pass_the_cf_checker(world, capsys):
    make_uncertain(world, members=40, member_grids=2)
    result = run_build(world, period=("2024-07-01", "2024-07-01"), scheduler="synchronous")
    build = result.build_dir
    a1 = pd.read_csv(build / "uncertainty.csv").set_index(["sector", "species"])
    assert a1.loc[("city", "NOx"), "central_kg"] == pytest.approx(9506.0, rel=1e-12)
    mc = pd.read_csv(build / "uncertainty" / "uncertainty_mc.csv")
    assert {"mean_kg", "median_kg", "p2_5_kg", "p97_5_kg", "approach1_u95_pct"} <= set(mc)
    ratios = pd.read_csv(build / "uncertainty" / "uncertainty_ratios.csv")
    assert set(ratios["activity"]) == {"correlated", "independent_activity"}
    path = build / "uncertainty" / "uncertainty.nc"
    with xr.open_dataset(path) as ds:
        assert ds["annual_emissions_p2_5"].dims == ("species", "y", "x")
        assert ds["annual_emissions_member"].sizes["member"] == 2
        assert ds["annual_emissions_p97_5"].attrs["units"] == "kg year-1"
    manifest = (build / "manifest.json").read_text()
    assert "uncertainty/uncertainty.nc" in manifest and "uncertainty.csv" in manifest
    page = (build / "report" / "index.html").read_text(encoding="utf-8")
    assert "id='uncertainty'" in page and "unc_map_NOx.png" in page
    assert (build / "report" / "unc_ratio_NOx_CO2.png").exists()
    exe = Path(sys.executable).with_name("compliance-checker")
    res = subprocess.run([str(exe), "--test", "cf:1.8", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert "All tests passed!" in res.stdout, res.stdout[-3000:]
    # the CLI redraws on the published build
    assert main(["uncertainty", str(build.parent / "latest-period"), "--members", "20",
                 "--seed", "3", "--config", str(world)]) == 0
    assert "95 % range" in capsys.readouterr().out
    mc2 = pd.read_csv(build / "uncertainty" / "uncertainty_mc.csv")
    assert not mc2["p2_5_kg"].equals(mc["p2_5_kg"])
    # --independent: no correlations, said in the file and on screen; no ratio rows drawn apart
    assert main(["uncertainty", str(build.parent / "latest-period"), "--members", "20",
                 "--seed", "3", "--config", str(world), "--independent"]) == 0
    assert "20 members, seed 3, no correlations)" in capsys.readouterr().out
    with xr.open_dataset(path) as ds:
        assert "no correlations" in ds.attrs["tongyuan_uncertainty"]
    ratios = pd.read_csv(build / "uncertainty" / "uncertainty_ratios.csv")
    assert set(ratios["activity"]) == {"correlated"}


def test_synergy_table_gets_ranges_with_common_random_numbers(world):
    from pipeline.config import load_config
    from pipeline.steps import load_tables
    from pipeline.uncertainty import synergy_ranges
    from tests.test_scenario import _run

    make_uncertain(world, factor_u={("power", "CO2"): 6})
    run = _run(world, """
        - {id: half_p1, type: scale, title: halve P1, clause: "§1", select: {source_id: P1},
           factor: 0.5}
        """)
    cfg = load_config(world)
    syn = synergy_ranges(run, load_tables(cfg), cfg, 2000, seed=1).set_index(["measure", "basis"])
    r = syn.loc[("half_p1", "sequential")]
    # ΔCO2 = −0.5 × P1's CO2: P1's activity (±10 %) and the coal CO2 factor (±6 %) only,
    # not the uncertainty of the other sources (common random numbers)
    half = 1000 * np.hypot(0.10, 0.06)
    assert r["delta_CO2_t_p2_5"] == pytest.approx(-1000 - half, rel=0.03)
    assert r["delta_CO2_t_p97_5"] == pytest.approx(-1000 + half, rel=0.03)
    # NOx and CO2 of P1 share its activity and the NOx factor is certain here: the co-benefit
    # ratio ΔNOx/ΔCO2 moves with the CO2 factor alone (±6 %), not with the activity (±10 %)
    lo, hi = r["NOx_t_per_kt_CO2_p2_5"], r["NOx_t_per_kt_CO2_p97_5"]
    assert lo < 2.5 < hi
    assert (hi - lo) / 2 / 2.5 == pytest.approx(0.06, rel=0.1)
    assert syn.loc[("combined", "combined"), "delta_CO2_t_p2_5"] == r["delta_CO2_t_p2_5"]
    assert np.isnan(syn.loc[("interaction", "interaction"), "delta_CO2_t_p2_5"])


@pytest.mark.slow
def test_demo_short_build_has_uncertainty_files(tmp_path):
    """The shipped demo, one day, 20 members: uncertainty.csv and uncertainty.nc (CF-clean)."""
    import yaml

    from pipeline.config import resolve_paths

    repo = Path(__file__).resolve().parent.parent
    cfg = repo / "config" / "shanghai.yaml"
    doc = resolve_paths(yaml.safe_load(cfg.read_text(encoding="utf-8")), cfg.parent)
    doc["output"] = {**doc["output"], "dir": str(tmp_path / "out")}
    doc["uncertainty"] = {**doc["uncertainty"], "members": 20}
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    build = run_build(path, period=("2024-07-01", "2024-07-01")).build_dir
    a1 = pd.read_csv(build / "uncertainty.csv").set_index(["sector", "species"])
    assert 1 < a1.loc[("city", "CO2"), "u95_pct"] < 10
    nc = build / "uncertainty" / "uncertainty.nc"
    exe = Path(sys.executable).with_name("compliance-checker")
    res = subprocess.run([str(exe), "--test", "cf:1.8", str(nc)], capture_output=True,
                         text=True, timeout=300)
    assert "All tests passed!" in res.stdout, res.stdout[-3000:]
    assert "unc_map_CO2.png" in (build / "report" / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("n", [2, 3, 40, 999])
def test_per_cell_percentiles_are_numpys_to_the_bit(n):
    from pipeline.uncertainty import _percentiles

    g = np.random.default_rng(n).lognormal(size=(30, n)).astype(np.float32)
    np.testing.assert_array_equal(_percentiles(g, (2.5, 97.5)),
                                  np.percentile(g, [2.5, 97.5], axis=1))
