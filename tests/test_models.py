"""Model-ready outputs: layers and Briggs plume rise, speciation, CMAQ and WRF-Chem files."""

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from grids.grid import Grid
from grids.vertical import Layers, briggs_rise, plume_bounds, sigma_to_heights
from pipeline.writers.wrfchem import wrf_cell_area_m2
from sources.errors import ConfigError, InputError
from tests.world import SPECIATION, SPECIATION_W3, lcc_world

G = 9.80665
REPO = Path(__file__).resolve().parent.parent



# ----------------------------------------------------------------- layers and plume rise

def test_layer_fractions_are_exact_and_conserve_mass():
    lay = Layers(np.array([0.0, 50, 150, 1000]))
    f = lay.fractions(np.array([100.0, 0, 40, 900, 2000, 75]),
                      np.array([300.0, 20, 40, 1400, 2500, 75]))
    # 100–300 m: 50 m in layer 2 (50–150), 150 m in layer 3
    np.testing.assert_allclose(f[0], [0, 0.25, 0.75], rtol=0, atol=1e-15)
    np.testing.assert_allclose(f[1], [1, 0, 0])
    np.testing.assert_allclose(f[2], [1, 0, 0])           # zero depth at 40 m: layer 1
    np.testing.assert_allclose(f[3], [0, 0, 1])           # beyond the top: top layer
    np.testing.assert_allclose(f[4], [0, 0, 1])
    np.testing.assert_allclose(f[5], [0, 1, 0])
    np.testing.assert_allclose(f.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    with pytest.raises(ConfigError, match="start at 0 m and increase"):
        Layers(np.array([0.0, 50, 50]))


def test_sector_profiles_apply_to_the_regional_sectors_of_that_sector():
    """``vertical.sector_profiles`` of ``power`` lifts MEIC's July power (``power@meic-07``)
    too; other sectors stay in layer 1."""
    from pipeline.config import VerticalConfig
    from pipeline.model_ready import source_layer_fractions

    lay = Layers(np.array([0.0, 50, 150, 1000]))
    vcfg = VerticalConfig(layers_m=[0, 50, 150, 1000], sector_profiles={"power": [0.2, 0.3, 0.5]})
    activity = pd.DataFrame({"sector": ["power", "power@meic-07", "road@meic", "road"],
                             "kind": ["area"] * 4})
    f = source_layer_fractions(activity, lay, vcfg)
    np.testing.assert_array_equal(f, [[0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [1, 0, 0], [1, 0, 0]])


def test_sigma_levels_in_the_standard_atmosphere():
    # ICAO: 50 000 Pa at 5 574 m, 22 632 Pa at 11 000 m, 10 000 Pa at 16 180 m
    z = sigma_to_heights([1.0, (50_000 - 5000) / (101_325 - 5000), 0.0], 5000.0)
    assert z[0] == pytest.approx(0.0, abs=1e-9)
    assert z[1] == pytest.approx(5574, abs=1.0)
    assert z[2] == pytest.approx(20_576, abs=3.0)  # 5 000 Pa
    assert sigma_to_heights([(22_632.06 - 5000) / (101_325 - 5000)], 5000.0)[0] == \
        pytest.approx(11_000, abs=1.0)


def _hand_rise(hs, ds, vs, ts, ta, u10, cls):
    """The ISC3 formulas written out independently, one stack at a time."""
    p = {"A": .07, "B": .07, "C": .10, "D": .15, "E": .35, "F": .55}[cls]
    us = max(u10 * (hs / 10) ** p, 1.0)
    fb = G * vs * ds ** 2 * (ts - ta) / (4 * ts)
    fm = vs ** 2 * ds ** 2 * ta / (4 * ts)
    if cls in "EF":
        s = G * {"E": 0.020, "F": 0.035}[cls] / ta
        buoy = 2.6 * (fb / (us * s)) ** (1 / 3)
        mom = min(1.5 * (fm / (us * s ** 0.5)) ** (1 / 3), 3 * ds * vs / us)
    else:
        buoy = (21.425 * fb ** 0.75 if fb < 55 else 38.71 * fb ** 0.6) / us
        mom = 3 * ds * vs / us
    return max(buoy, mom), fb


@pytest.mark.parametrize("stack, cls, rise, fb", [
    # (hs, ds, vs, Ts, Ta, u10): rises worked out by hand from ISC3 Vol. II §1.1.4 (g = 9.80616
    # there; the answers move by < 1e-4 with 9.80665), see grids/vertical.py
    ((100, 5, 20, 400, 290, 5), "D", 180.09, 337.09),   # buoyant, Fb >= 55
    ((30, 1, 10, 450, 283, 2), "E", 42.83, 9.098),      # stable, buoyant
    ((50, 2, 15, 300, 295, 4), "D", 17.67, 2.4515),     # momentum dominated
    ((50, 1.5, 12, 420, 290, 3), "C", 58.55, 20.488),   # buoyant, Fb < 55
])
def test_briggs_rise_matches_worked_examples(stack, cls, rise, fb):
    hs, ds, vs, ts, ta, u10 = stack
    r = briggs_rise(np.array([hs]), np.array([ds]), np.array([vs]), np.array([ts]), ta, u10,
                    np.array([cls]))
    assert r["rise"][0] == pytest.approx(rise, rel=5e-4)  # the examples give 4 digits
    assert r["fb"][0] == pytest.approx(fb, rel=2e-4)
    want, _ = _hand_rise(hs, ds, vs, ts, ta, u10, cls)
    assert r["rise"][0] == pytest.approx(want, rel=1e-12)
    bottom, top = plume_bounds(np.array([hs]), r["rise"])
    assert (bottom[0], top[0]) == pytest.approx((hs + 0.5 * want, hs + 1.5 * want))


def test_briggs_rejects_unknown_stability():
    with pytest.raises(ConfigError, match="stability class 'G'"):
        briggs_rise(np.array([50.0]), np.array([1.0]), np.array([10.0]), np.array([400.0]),
                    290.0, 3.0, np.array(["G"]))


# ----------------------------------------------------------------- model files from a build

def _model_world(world, lambert: bool = True):
    """The fixture world (on the Lambert grid) with layers, a speciation table, BC and OC."""
    if lambert:
        lcc_world(world)
    (world.parent / "speciation.csv").write_text(SPECIATION + SPECIATION_W3)
    f = world.parent / "emission_factors.csv"
    f.write_text(f.read_text() + "power,coal,boiler,BC,0.1,kg/t,test\n"
                 "power,coal,boiler,OC,0.2,kg/t,test\n")
    c = world.parent / "control_efficiencies.csv"
    c.write_text(c.read_text() + "esp,BC,0.98,test\nesp,OC,0.98,test\n")
    text = world.read_text().replace("  temporal_profiles: temporal_profiles.csv\n",
                                     "  temporal_profiles: temporal_profiles.csv\n"
                                     "  speciation: speciation.csv\n")
    text = text.replace("output: {dir: ../out}", "output: {dir: ../out, wrfchem: "
                        "{emiss_opt: 3, mechanism: w3, kemit: 4}}")
    world.write_text(text + "vertical: {layers_m: [0, 50, 150, 1000]}\n")


@pytest.fixture(scope="module")
def model_build(tmp_path_factory, prefect_harness):
    from pipeline.flows import build_inventory
    from tests.world import write_world

    root = tmp_path_factory.mktemp("models")
    cfg = write_world(root)
    _model_world(cfg)
    s = build_inventory(str(cfg), out_dir=str(root / "out"), period=("2024-03-01", "2024-03-01"),
                        formats=["cf", "cmaq", "wrfchem"], mechanism="t1")
    return Path(s.build_dir), s


def test_build_writes_each_format_in_its_folder(model_build):
    build, s = model_build
    assert [p.name for p in (build / "hourly").glob("*.nc")] == ["20240301.nc"]
    assert [p.name for p in (build / "cmaq").glob("*.nc")] == ["emis_t1_T3KM_20240301.nc"]
    assert sorted(p.name for p in (build / "wrfchem").iterdir()) == [
        "namelist.snippet", "wrfchemi_d01_2024-03-01_00:00:00"]
    import json
    files = json.loads((build / "manifest.json").read_text())["files"]
    assert "cmaq/emis_t1_T3KM_20240301.nc" in files
    assert "wrfchem/wrfchemi_d01_2024-03-01_00:00:00" in files
    assert "wrfchem/namelist.snippet" in files


def test_build_writes_the_namelist_lines_and_the_model_read_ledger(model_build):
    build, _ = model_build
    text = (build / "wrfchem" / "namelist.snippet").read_text()
    for line in (" emiss_opt             = 3,", " kemit                 = 4,",
                 " io_style_emissions    = 2,", " frames_per_auxinput5  = 24,",
                 " auxinput5_interval_m  = 60,", "wrfchemi_d01_2024-03-01_00:00:00"):
        assert line in text
    ledger = pd.read_csv(build / "ledger.csv").set_index(["sector", "species"])
    for fmt in ("cmaq", "wrfchem"):
        read = ledger[f"{fmt}_read_kg"].groupby(level="species").sum()
        grid = ledger["gridded_kg"].groupby(level="species").sum()
        for sp in ("NOx", "SO2", "CO", "PM2_5", "PM10", "BC", "OC"):
            assert read[sp] == pytest.approx(grid[sp], rel=1e-9), (fmt, sp)
        assert (ledger[f"{fmt}_read_fraction"] <= 1 + 1e-12).all()


# PseudoNetCDF's reader object raises in its finaliser at garbage collection (its own bug)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_cmaq_file_reads_with_pseudonetcdf_and_carries_the_mass(model_build):
    import PseudoNetCDF as pnc

    build, _ = model_build
    path = build / "cmaq" / "emis_t1_T3KM_20240301.nc"
    f = pnc.pncopen(str(path), format="ioapi")
    tflag = np.asarray(f.variables["TFLAG"][:])
    assert tflag.shape[0] == 25 and tflag.shape[2] == 2
    assert tflag[0, 0].tolist() == [2024061, 0] and tflag[23, 0].tolist() == [2024061, 230000]
    assert tflag[24, 0].tolist() == [2024062, 0]
    assert f.SDATE == 2024061 and f.STIME == 0 and f.TSTEP == 10000 and f.GDTYP == 2
    # layers up to the highest holding emissions: 1000 m is empty, so not written
    assert f.NLAYS == 2 and list(np.round(f.VGLVLS, 3)) == [0, 50, 150]
    assert f.VGTYP == 6  # VGHVAL3: heights above ground (5 would be above sea level)
    assert getattr(f, "VAR-LIST").split() == [n.strip() for n in f.variables
                                              if n != "TFLAG"]
    assert f.variables["NO"].units.strip() == "moles/s"
    assert f.variables["PSO4"].units.strip() == "g/s"
    with xr.open_dataset(build / "hourly" / "20240301.nc") as cf:
        def cf_kg(sp):
            return float((cf[sp] * cf["cell_area"]).sum() * 3600)

        def day(name):  # the day's 24 hours, per cell and layer, back to amounts
            return float(np.asarray(f.variables[name][:24], dtype=np.float64).sum() * 3600)

        pm = sum(day(n) for n in ("PSO4", "PMOTHR", "PEC", "POC")) / 1000
        assert pm == pytest.approx(cf_kg("PM2_5"), rel=1e-6)
        assert day("PMC") / 1000 == pytest.approx(cf_kg("PM10") - cf_kg("PM2_5"), rel=1e-6)
        assert (day("NO") + day("NO2")) * 46.0055 / 1000 == pytest.approx(cf_kg("NOx"),
                                                                          rel=1e-6)
        assert day("SO2") * 64.066 / 1000 == pytest.approx(cf_kg("SO2"), rel=1e-6)
    # stacks are lifted: P1 (100 m) and P2 (60 m) emit SO2 in layer 2 (50–150 m) only
    so2 = np.asarray(f.variables["SO2"][:24])
    assert so2[:, 1].sum() > 0 and so2[:, 0].sum() == 0


def _package_facts(emiss_opt):
    """The Registry facts copied into the repo (config/wrfchem_packages.csv)."""
    facts = pd.read_csv(REPO / "config" / "wrfchem_packages.csv", comment="#")
    return facts[facts["emiss_opt"] == emiss_opt].set_index("variable")


def test_wrfchem_file_units_times_and_mass(model_build):
    build, _ = model_build
    path = build / "wrfchem" / "wrfchemi_d01_2024-03-01_00:00:00"
    facts = _package_facts(3)
    with netCDF4.Dataset(path) as nc, xr.open_dataset(build / "hourly" / "20240301.nc") as cf:
        times = netCDF4.chartostring(nc["Times"][:])
        assert times[0] == "2024-03-01_00:00:00" and times[-1] == "2024-03-01_23:00:00"
        # kemit = 4 levels although emissions reach level 2 only: zero above
        assert nc.dimensions["emissions_zdim"].size == 4
        assert "V4." in nc.TITLE and nc.MAP_PROJ == 1
        assert nc.getncattr("WEST-EAST_GRID_DIMENSION") == cf.sizes["x"] + 1
        # exactly the package's variables, with the Registry's units
        e_vars = {v for v in nc.variables if v.startswith("E_")}
        assert e_vars == set(facts.index)
        for v in e_vars:
            assert nc[v].units == facts.loc[v, "units"], v
            assert nc[v].dimensions == ("Time", "emissions_zdim", "south_north", "west_east")
        assert nc["E_NO"].units == "mol km^-2 hr^-1" and nc["E_SO4J"].units == "ug/m3 m/s"
        assert float(np.abs(nc["E_NO"][:, 2:]).max()) == 0.0
        assert float(np.abs(nc["E_HC5"][:]).max()) == 0.0  # no NMVOC in the fixture mechanism
        # per physical cell area, DX·DY/m² (WRF's convention; m from the Lambert projection)
        grid = Grid.from_config({"griddesc": str(build.parent.parent / "config" / "GRIDDESC"),
                                 "name": "T3KM"})
        area = wrf_cell_area_m2(grid)
        assert float((area / cf["cell_area"].values).mean()) == pytest.approx(1.01626, abs=1e-5)
        nox_mol = sum((nc[v][:].astype(np.float64) * area / 1e6).sum() for v in ("E_NO",
                                                                                   "E_NO2"))
        pm_g = sum((nc[v][:].astype(np.float64) * area).sum() * 3600 / 1e6
                   for v in ("E_SO4J", "E_PM25J", "E_ECJ", "E_ORGJ"))
        nox_kg = float((cf["NOx"] * cf["cell_area"]).sum() * 3600)
        pm_kg = float((cf["PM2_5"] * cf["cell_area"]).sum() * 3600)
    assert nox_mol * 46.0055 / 1000 == pytest.approx(nox_kg, rel=1e-6)
    assert pm_g / 1000 == pytest.approx(pm_kg, rel=1e-6)


def test_wrfchem_refuses_a_mechanism_the_package_does_not_read(world, prefect_harness,
                                                               tmp_path):
    from pipeline.flows import build_inventory

    _model_world(world)
    world.write_text(world.read_text().replace("mechanism: w3", "mechanism: t1"))
    with pytest.raises(ConfigError, match=r"mechanism 't1' cannot be written for WRF-Chem "
                       r"emiss_opt 3 \(eradmsorg\): E_PSO4 \(not in package eradmsorg\)"):
        build_inventory(str(world), out_dir=str(tmp_path / "o"),
                        period=("2024-03-01", "2024-03-01"), formats=["wrfchem"])
    assert not (tmp_path / "o" / "latest-period").exists()


def test_wrfchem_refuses_a_utm_grid(world, prefect_harness, tmp_path):
    from pipeline.flows import build_inventory

    (world.parent / "speciation.csv").write_text(SPECIATION)
    world.write_text(world.read_text().replace(
        "  temporal_profiles: temporal_profiles.csv\n",
        "  temporal_profiles: temporal_profiles.csv\n  speciation: speciation.csv\n"))
    with pytest.raises(ConfigError, match="WRF-Chem files need a Lambert conformal or lat/lon"):
        build_inventory(str(world), out_dir=str(tmp_path / "o"), period=("2024-03-01",
                                                                          "2024-03-01"),
                        formats=["wrfchem"], mechanism="t1")
    assert not (tmp_path / "o" / "latest-period").exists()


def test_cli_formats(world, prefect_harness, tmp_path, capsys):
    from pipeline.cli import main

    _model_world(world)
    assert main(["build", "--config", str(world), "--out", str(tmp_path / "o"), "--format",
                 "cf,grib"]) == 2
    assert "--format 'cf,grib': unknown format 'grib'; use a comma-separated list of cf, cmaq, " \
        "wrfchem" in capsys.readouterr().err
    assert main(["build", "--config", str(world), "--out", str(tmp_path / "o"), "--period",
                 "2024-03-01:2024-03-01", "--format", "cmaq", "--mechanism", "t1"]) == 0
    out = capsys.readouterr().out
    assert "cmaq:" in out and "mechanism t1" in out and "wrfchem" not in out
    latest = tmp_path / "o" / "latest-period"
    assert (latest / "hourly" / "20240301.nc").exists()  # CF is always written
    assert len(list((latest / "cmaq").glob("*.nc"))) == 1 and not (latest / "wrfchem").exists()
    assert main(["build", "--config", str(world), "--out", str(tmp_path / "o"), "--period",
                 "2024-03-01:2024-03-01", "--format", "cmaq", "--mechanism", "cb05"]) == 1
    assert "no rows for mechanism 'cb05'" in capsys.readouterr().err


# ----------------------------------------------------------------- the format registry

def test_formats_registry_names_folders_and_files(world):
    from pipeline.config import load_config
    from pipeline.writers import FORMATS, MODEL_FORMATS

    assert {n: f.folder for n, f in FORMATS.items()} == {"cf": "hourly", "cmaq": "cmaq",
                                                         "wrfchem": "wrfchem"}
    assert MODEL_FORMATS == ("cmaq", "wrfchem")
    day = pd.Timestamp("2024-03-01")
    assert FORMATS["cf"].file_name(day) == "20240301.nc"
    assert FORMATS["cmaq"].file_name(day, mechanism="t1", grid="T3KM") == \
        "emis_t1_T3KM_20240301.nc"
    assert FORMATS["wrfchem"].file_name(day) == "wrfchemi_d01_2024-03-01_00:00:00"
    for f in FORMATS.values():
        assert callable(f.writer.write) and callable(f.writer.check_grid)
    with pytest.raises(ConfigError, match=r"output.formats.1: Value error, unknown format "
                       r"'camx'; formats are \['cf', 'cmaq', 'wrfchem'\]"):
        load_config(world, {"output.formats": ["cf", "camx"]})


# ----------------------------------------------------------------- CEMS hourly data

def _cems_csv(path, rows):
    path.write_text("source_id,time_utc,species,value,unit\n"
                    + "".join(f"{r}\n" for r in rows))


def test_cems_hours_replace_the_profile_and_gaps_share_the_rest(world, prefect_harness,
                                                                  tmp_path):
    """P1 (SO2 1000 kg/yr, flat profile) measured 5 kg in each of 2024-03-01 00–11 UTC: those
    hours carry 5 kg, every other hour of the year (940 − … ) / 8772 kg; the CF file, the
    ledger, cems.csv and the CMAQ file agree."""
    from pipeline.flows import build_inventory

    _model_world(world)  # the 3 km Lambert grid: P1 alone in cell (1, 1)
    _cems_csv(world.parent.parent / "data" / "cems_p1.csv",
              [f"P1,2024-03-01T{h:02d}:00,SO2,5,kg" for h in range(12)]
              + ["P1,2024-03-01T00:00:00+08:00,NOx,0.002,t"])  # = 2024-02-29 16 UTC
    world.write_text(world.read_text() + "cems: [../data/cems_p1.csv]\n")
    s = build_inventory(str(world), out_dir=str(tmp_path / "o"),
                        period=("2024-03-01", "2024-03-01"), formats=["cf", "cmaq"],
                        mechanism="t1")
    build = Path(s.build_dir)
    gap = 940.0 / 8772
    with xr.open_dataset(build / "hourly" / "20240301.nc") as cf:
        kg = (cf["SO2"] * cf["cell_area"] * 3600).values  # (24, y, x)
        # cell (1, 1) holds only P1's SO2
        np.testing.assert_allclose(kg[:12, 1, 1], 5.0, rtol=1e-12)
        np.testing.assert_allclose(kg[12:, 1, 1], gap, rtol=1e-12)
    table = pd.read_csv(build / "cems.csv").set_index(["source_id", "species"])
    row = table.loc[("P1", "SO2")]
    assert (row.annual_kg, row.measured_kg, row.measured_hours, row.gap_hours) == \
        pytest.approx((1000.0, 60.0, 12, 8772))
    assert row.measured_scale == 1.0 and row.gap_filled_kg == pytest.approx(940.0)
    assert table.loc[("P1", "NOx"), "measured_kg"] == pytest.approx(2.0)
    ledger = pd.read_csv(build / "ledger.csv").set_index(["sector", "species"])
    assert ledger.loc[("power", "SO2"), "cems_measured_kg"] == pytest.approx(60.0)
    p2 = 5000.0 * 24 / 8784
    assert ledger.loc[("power", "SO2"), "written_kg"] == pytest.approx(60 + 12 * gap + p2,
                                                                         rel=1e-12)
    import PseudoNetCDF as pnc
    f = pnc.pncopen(str(next((build / "cmaq").glob("*.nc"))), format="ioapi")
    so2 = np.asarray(f.variables["SO2"][:24], dtype=np.float64)   # moles/s
    p1_cell = so2[:, :, :, :].sum(axis=1)
    assert so2.sum() * 3600 * 64.066 / 1000 == pytest.approx(
        ledger.loc[("power", "SO2"), "written_kg"], rel=1e-6)
    assert p1_cell.max() * 3600 * 64.066 / 1000 == pytest.approx(5.0, rel=1e-6)


def test_cems_measurements_above_the_annual_total_are_scaled(world, prefect_harness, tmp_path):
    from pipeline.flows import build_inventory

    _cems_csv(world.parent.parent / "data" / "c.csv",
              [f"P1,2024-03-01T{h:02d}:00,SO2,100,kg" for h in range(20)])  # 2000 > 1000 kg
    world.write_text(world.read_text() + "cems: [../data/c.csv]\n")
    s = build_inventory(str(world), out_dir=str(tmp_path / "o"),
                        period=("2024-03-01", "2024-03-01"))
    build = Path(s.build_dir)
    row = pd.read_csv(build / "cems.csv").iloc[0]
    assert row.measured_scale == pytest.approx(0.5) and row.gap_filled_kg == 0
    with xr.open_dataset(build / "hourly" / "20240301.nc") as cf:
        kg = (cf["SO2"] * cf["cell_area"] * 3600).values[:, 0, 0]
    np.testing.assert_allclose(kg[:20], 50.0, rtol=1e-12)
    np.testing.assert_allclose(kg[20:], 0.0, atol=1e-12)


@pytest.mark.parametrize("row, message", [
    ("P9,2024-03-01T00:00,SO2,1,kg", r"column 'source_id': unknown stack"),
    ("L1,2024-03-01T00:00,SO2,1,kg", r"column 'source_id': CEMS data for a line source"),
    ("P1,2025-03-01T00:00,SO2,1,kg", r"column 'time_utc': outside the build year 2024"),
    ("P1,2024-03-01T00:30,SO2,1,kg", r"column 'time_utc': not the start of an hour"),
    ("P1,2024-03-01T00:00,SO3,1,kg", r"column 'species': unknown species"),
    ("P1,2024-03-01T00:00,SO2,1,m", r"column 'unit': not a mass unit"),
    # pint reads 'ton' as the US short ton (907 kg): refused like in every other table
    ("P1,2024-03-01T00:00,SO2,1,ton", r"column 'unit': ambiguous unit 'ton': .*write 't' for "
                                      r"tonnes; got 'ton'"),
    ("P1,2024-03-01T00:00,SO2,x,kg", r"column 'value': not a number"),
    ("P1,2024-03-01T00:00,SO2,-1,kg", r"column 'value': negative or missing measurement"),
])
def test_cems_errors_name_file_row_and_column(world, tables, row, message):
    from pipeline.cems import read_cems
    from pipeline.config import load_config
    from pipeline.steps import (
        allocate_sources,
        compute_factors,
        compute_input_emissions,
        read_inputs,
    )

    path = world.parent.parent / "data" / "bad.csv"
    _cems_csv(path, [row])
    cfg = load_config(world)
    activity, _, _ = read_inputs(cfg, tables)
    em = compute_input_emissions(activity, tables)
    with pytest.raises(InputError, match=r"bad.csv, row 1, source_id '\w+', " + message):
        read_cems([path], activity, em.table, compute_factors(cfg, tables),
                  allocate_sources(activity, tables).matrix, 2024)


def test_demo_on_its_cmaq_domain_writes_all_three_formats(prefect_harness, tmp_path):
    """The shipped demo on the shipped 3 km Lambert domain (config/GRIDDESC, SH3KM): one day in
    CF, CMAQ (cb6r5_ae7, with a fertiliser stream) and WRF-Chem, every model file checked
    against the ledger by the build itself; NH3_FERT is the fertiliser sector's NH3."""
    import json

    import PseudoNetCDF as pnc
    import yaml

    from pipeline.config import resolve_paths
    from pipeline.flows import build_inventory

    repo = Path(__file__).resolve().parent.parent
    config = repo / "config" / "shanghai.yaml"
    doc = resolve_paths(yaml.safe_load(config.read_text()), config.parent)
    doc["grid"] = {"griddesc": str(repo / "config" / "GRIDDESC"), "name": "SH3KM"}
    doc["output"].update(mechanism="cb6r5_ae7", cmaq={"streams": {"FERT": ["fertiliser"]}})
    path = tmp_path / "sh3km.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    s = build_inventory(str(path), out_dir=str(tmp_path / "out"),
                        period=("2024-07-10", "2024-07-10"), formats=["cf", "cmaq", "wrfchem"])
    build = Path(s.build_dir)
    files = json.loads((build / "manifest.json").read_text())["files"]
    assert {"hourly/20240710.nc", "cmaq/emis_cb6r5_ae7_SH3KM_20240710.nc",
            "cmaq/streams/emis_cb6r5_ae7_SH3KM_FERT_20240710.nc",
            "cmaq/streams/emis_cb6r5_ae7_SH3KM_OTHER_20240710.nc", "cmaq/README.txt",
            "wrfchem/wrfchemi_d01_2024-07-10_00:00:00", "cems.csv"} <= set(files)
    f = pnc.pncopen(str(build / "cmaq" / "emis_cb6r5_ae7_SH3KM_20240710.nc"), format="ioapi")
    assert (f.GDTYP, f.NCOLS, f.NROWS, f.P_ALP, f.P_GAM) == (2, 54, 57, 25.0, 110.0)
    assert f.NLAYS > 1  # stacks lifted above layer 1
    assert float(np.asarray(f.variables["SOAALK"][:]).sum()) > 0
    streams = build / "cmaq" / "streams"
    with netCDF4.Dataset(streams / "emis_cb6r5_ae7_SH3KM_FERT_20240710.nc") as fert, \
            netCDF4.Dataset(streams / "emis_cb6r5_ae7_SH3KM_OTHER_20240710.nc") as other:
        np.testing.assert_array_equal(fert["NH3_FERT"][:], fert["NH3"][:])
        assert float(fert["NH3"][:].sum()) > 0 and float(other["NH3_FERT"][:].max()) == 0.0
        assert float(other["NH3"][:].sum()) > 0
    with netCDF4.Dataset(build / "wrfchem" / "wrfchemi_d01_2024-07-10_00:00:00") as nc:
        assert (nc.MAP_PROJ, nc.TRUELAT1, nc.TRUELAT2, nc.STAND_LON) == (1, 25.0, 40.0, 110.0)
        assert nc.getncattr("WEST-EAST_GRID_DIMENSION") == 55


def test_briggs_against_published_examples():
    """Published numbers (cited second-hand, see each):

    * De Visscher, *Air Dispersion Modeling – Foundations and Applications* (Wiley 2014), p. 31,
      as asserted in tcarion/GaussianDispersion test/concentration.jl ("Plume rise"): stack gas
      flow 20 m³/s through a stack of radius 1 m, densities 0.935 (gas) and 1.17 (air) kg/m³,
      wind 3 m/s, final (neutral) rise: F = 12.539 m⁴/s³, Δh = 47.589 m. Densities give
      (Ts − Ta)/Ts = 1 − ρs/ρa; here Ta = 290 K and Ts = 290·1.17/0.935 K.
    * A. E. Farrell, "Air Dispersion Example – Stack Emissions" (2020-12-05, ISC3 equations of
      EPA-454/B-95-003b, g = 9.80616): d = 2 m, 46.6439 m³/s, Ts = 450 K, Ta = 298.15 K,
      u = 1.5 m/s, class F: Fb = 49.1299376 m⁴/s³, s = 0.00115115 s⁻²; stable rise
      2.6·(Fb/(u·s))^⅓ (not printed there).
    Both stacks are 10 m high, so the 10 m wind is the stack-top wind.
    """
    vs = 20.0 / np.pi
    r = briggs_rise(np.array([10.0]), np.array([2.0]), np.array([vs]),
                    np.array([290 * 1.17 / 0.935]), 290.0, 3.0, np.array(["D"]))
    assert r["fb"][0] == pytest.approx(12.539, abs=1e-3)
    assert r["rise"][0] == pytest.approx(47.589, abs=1e-3)
    assert r["buoyant"][0]
    vs = 46.6438970432218 / np.pi
    r = briggs_rise(np.array([10.0]), np.array([2.0]), np.array([vs]), np.array([450.0]),
                    298.15, 1.5, np.array(["F"]))
    assert r["fb"][0] == pytest.approx(49.1299376393856, rel=1e-4)  # g 9.80665 vs 9.80616
    s = G * 0.035 / 298.15
    assert s == pytest.approx(0.0011511507630387393, rel=1e-4)
    assert r["rise"][0] == pytest.approx(2.6 * (r["fb"][0] / (1.5 * s)) ** (1 / 3), rel=1e-12)


def test_cems_covering_every_hour_carries_the_annual_total(world, prefect_harness, tmp_path):
    """Measured in every hour of the year: no gaps to take the remainder, so the measured
    series is scaled to the annual total (reported), and the ledger still balances."""
    from pipeline.flows import build_inventory

    hours = pd.date_range("2024-01-01", "2024-12-31 23:00", freq="h")
    _cems_csv(world.parent.parent / "data" / "full.csv",
              [f"P1,{t:%Y-%m-%dT%H:%M},SO2,0.1,kg" for t in hours])   # 878.4 kg < 1000 kg
    world.write_text(world.read_text() + "cems: [../data/full.csv]\n")
    s = build_inventory(str(world), out_dir=str(tmp_path / "o"),
                        period=("2024-03-01", "2024-03-01"))
    build = Path(s.build_dir)
    row = pd.read_csv(build / "cems.csv").iloc[0]
    assert row.measured_scale == pytest.approx(1000 / 878.4) and row.gap_hours == 0
    with xr.open_dataset(build / "hourly" / "20240301.nc") as cf:
        kg = (cf["SO2"] * cf["cell_area"] * 3600).values[:, 0, 0]
    np.testing.assert_allclose(kg, 0.1 * 1000 / 878.4, rtol=1e-12)


# ----------------------------------------------------------------- WRF-Chem packages

@pytest.mark.parametrize("emiss_opt", [3, 4, 8, 10, 14, 15, 16, 17])
def test_shipped_wrfchem_mechanisms_use_only_what_their_package_reads(emiss_opt):
    """Each shipped WRF-Chem mechanism (config/speciation.csv, generated) writes only names its
    package reads and uses, gas or aerosol as the Registry has them (config/wrfchem_packages.csv,
    not the project's tables), and every row cites a source."""
    from pipeline.wrfchem_packages import MECHANISM_OF

    facts = _package_facts(emiss_opt)
    table = pd.read_csv(REPO / "config" / "speciation.csv", keep_default_na=False)
    rows = table[table["mechanism"] == MECHANISM_OF[emiss_opt]]
    assert len(rows) > 0 and (rows["reference"].str.len() > 10).all()
    for r in rows.itertuples():
        v = facts.loc[f"E_{r.model_species}"]
        assert v["used"] == "yes", r.model_species
        assert (v["kind"] == "gas") == (r.molar_mass_g_mol != ""), r.model_species
    emitted = ["SO2", "NOx", "CO", "NMVOC", "NH3", "PM10", "PM2_5", "BC", "OC", "CO2", "CH4"]
    from sources.speciation import load_speciation
    sectors = pd.read_csv(REPO / "config" / "sectors.csv")["sector"].tolist()
    sp = load_speciation(REPO / "config" / "speciation.csv", MECHANISM_OF[emiss_opt], emitted,
                         sectors)
    want = {"SO2", "NOx", "CO", "NMVOC", "NH3", "PM2_5_other", "BC", "OC"}
    if emiss_opt in (16, 17):
        want = {"CO2", "CO"} | ({"CH4"} if emiss_opt == 17 else set())
    elif emiss_opt != 4:  # CBMZ/MOSAIC (emiss_inpt_opt 1) has no coarse PM variable
        want.add("PMC")
    assert want <= set(sp.pollutants)


def _fake_outputs(mechanism, fmt, emiss_opt=3, cmaq_desid="5.3.3:cb6r3_ae6_aq"):
    from types import SimpleNamespace

    from pipeline.config import WrfChemConfig
    from pipeline.model_ready import ModelOutputs, ModelPart
    from sources.speciation import load_speciation

    sectors = pd.read_csv(REPO / "config" / "sectors.csv")["sector"].tolist()
    emitted = ["SO2", "NOx", "CO", "NMVOC", "NH3", "PM10", "PM2_5", "BC", "OC", "CO2", "CH4",
               "N2O"]
    spec = load_speciation(REPO / "config" / "speciation.csv", mechanism, emitted, sectors)
    layers = SimpleNamespace(n=3)
    part = ModelPart([fmt], mechanism, spec, SimpleNamespace(layers=layers, n_layers=2))
    mo = ModelOutputs([part], None, WrfChemConfig(emiss_opt=emiss_opt, kemit=5),
                      "fail", cmaq_desid)
    kg = {"SO2": 10, "NOx": 20, "CO": 30, "NMVOC": 40, "NH3": 5, "PM10": 12, "PM2_5": 8,
          "BC": 1, "OC": 2, "CO2": 1e4, "CH4": 50, "N2O": 1}
    idx = pd.MultiIndex.from_product([["road", "solvents", "power"], list(kg)],
                                     names=["sector", "species"])
    ledger = pd.DataFrame({"gridded_kg": [kg[s] for _, s in idx]}, index=idx)
    return mo, ledger


@pytest.mark.parametrize("emiss_opt", [3, 4, 8, 10, 14, 15, 16, 17])
def test_model_read_fraction_of_every_wrfchem_package(emiss_opt):
    """What the package reads (Registry facts) of each inventory species, through the shipped
    mechanism: all of it for every species the package has variables for; PM10's coarse part
    is not read with emiss_opt 4 (no coarse variable), and that is reported."""
    from pipeline.model_read import model_read
    from pipeline.wrfchem_packages import MECHANISM_OF

    mo, ledger = _fake_outputs(MECHANISM_OF[emiss_opt], "wrfchem", emiss_opt)
    cols, problems, notes = model_read(mo, ledger)
    frac = cols["wrfchem_read_kg"].groupby(level="species").sum() / \
        ledger["gridded_kg"].groupby(level="species").sum()
    carried = (["CO2", "CO"] + (["CH4"] if emiss_opt == 17 else [])) if emiss_opt >= 16 else \
        ["SO2", "NOx", "CO", "NMVOC", "NH3", "PM2_5", "BC", "OC"] + \
        (["PM10"] if emiss_opt != 4 else [])
    for sp in carried:
        assert frac[sp] == pytest.approx(1.0, abs=1e-9), sp
    if emiss_opt == 4:
        assert frac["PM10"] == pytest.approx(8 / 12)
        assert problems == ["wrfchem (WRF-Chem emiss_opt 4 (ecbmz_mosaic), mechanism "
                            "cbmz_mosaic): reads 66.6667% of PM10"]
    else:
        assert problems == []
    from pipeline.wrfchem_packages import package

    t = {"SO2": "0.03", "NOx": "0.06", "NMVOC": "0.12", "NH3": "0.015", "PM10": "0.036",
         "PM2_5": "0.024", "BC": "0.003", "OC": "0.006", "CO2": "30", "CH4": "0.15",
         "N2O": "0.003"}
    has = {16: {"CO2", "CO"}, 17: {"CO2", "CO", "CH4"}}.get(emiss_opt, set(t) - {"N2O"} - (
        set() if emiss_opt == 3 else {"CO2", "CH4"}))  # RADM2/SORGAM carries E_CO2, E_CH4
    absent = [f"{sp} ({v} t)" for sp, v in t.items() if sp not in has]
    assert notes == [f"wrfchem (WRF-Chem emiss_opt {emiss_opt} ({package(emiss_opt).name}), "
                     f"mechanism {MECHANISM_OF[emiss_opt]}) carries no variable for: "
                     + ", ".join(absent) + " (in the CF files and the ledger only)"]


@pytest.mark.parametrize("mechanism, desid", [("cb6r3_ae6", "5.3.3:cb6r3_ae6_aq"),
                                              ("cb6r5_ae7", "5.4:cb6r5_ae7_aq")])
def test_model_read_of_cmaq_follows_the_default_desid_rules(mechanism, desid):
    """CB6 through CMAQ's default rules: IVOC, UNR and NVOL have no rule
    (config/cmaq_desid_surrogates.csv), so part of NMVOC is not read, and the build names
    them; the SOAALK tracer is not counted; CH4 is read (CH4 → ECH4), CO2 has no rule."""
    from pipeline.model_read import model_read

    mo, ledger = _fake_outputs(mechanism, "cmaq", cmaq_desid=desid)
    cols, problems, _ = model_read(mo, ledger)
    frac = cols["cmaq_read_kg"].groupby(level="species").sum() / \
        ledger["gridded_kg"].groupby(level="species").sum()
    for sp in ["SO2", "NOx", "CO", "NH3", "PM2_5", "PM10", "BC", "OC", "CH4"]:
        assert frac[sp] == pytest.approx(1.0, abs=1e-9), sp
    assert frac["CO2"] == 0.0
    # solvents (SPECIATE 8744): IVOC 26.1 % + UNR 4.4 % + NVOL 0.25 % of TOG, no CH4
    solv = cols.loc[("solvents", "NMVOC"), "cmaq_read_fraction"]
    assert solv == pytest.approx(1 - 0.261070 - 0.043968 - 0.002474876, abs=1e-5)
    assert len(problems) == 2 and "of NMVOC; not read: IVOC " in problems[0]
    assert "UNR " in problems[0] and "NVOL " in problems[0] and "SOAALK" not in problems[0]
    assert "reads 0.0000% of CO2; not read: CO2 100.00% (no default rule" in problems[1]
    # the user's own CO2 rule (output.cmaq.extra_rules) makes CO2 read
    from pipeline.config import CmaqConfig
    mo.cmaq = CmaqConfig(extra_rules=["CO2"])
    cols, problems, _ = model_read(mo, ledger)
    assert cols["cmaq_read_kg"].groupby(level="species").sum()["CO2"] == pytest.approx(3e4)
    assert len(problems) == 1
