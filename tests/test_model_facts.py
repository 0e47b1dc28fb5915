"""Issue 15, Done when: on the shipped Lambert YRD domain (config/GRIDDESC_YRD, YRD9KM), for
every supported WRF-Chem emiss_opt and for CMAQ 5.4 cb6r5_ae7, every variable the package or
the namelist reads is in the files with the right dims and units, and the model-read fraction
is 1.0 for every inventory species the package has variables for.

The expectations come from the model facts copied into the repo with their source lines —
``config/wrfchem_packages.csv`` (WRF v4.7.1 Registry/registry.chem) and
``config/cmaq_desid_rules.csv`` (CMAQ 5.3.3/5.4/5.5 default DESID rules) — and masses from the
CF day file, never from the speciation table the files were made with.

One inventory is prepared (the fixture world's stacks, roads and stoves, moved onto YRD9KM,
with NMVOC, NH3, CO, BC and OC factors); each model configuration then goes through the
pipeline's own model steps (:func:`pipeline.model_ready.prepare`, ``write_days``,
``check_days``, ``finish``) on it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
DAY = pd.Timestamp("2024-03-01")
MW = {"SO2": 64.0638, "NOx": 46.0055, "CO": 28.0101, "NH3": 17.0305, "CO2": 44.0095,
      "CH4": 16.0425}
#: WRF-Chem aerosol variables of coarse PM (the Registry's PM10-PM2.5 and *C modes)
COARSE = {"E_PM_10", "E_PM10", "E_SO4C", "E_NO3C", "E_ORGC", "E_ECC"}
EMISS_OPTS = [3, 4, 8, 10, 14, 15, 16, 17]


def registry(emiss_opt: int) -> pd.DataFrame:
    """The Registry facts of one package (config/wrfchem_packages.csv)."""
    facts = pd.read_csv(REPO / "config" / "wrfchem_packages.csv", comment="#")
    return facts[facts["emiss_opt"] == emiss_opt].set_index("variable")


def desid(version: str, mechanism: str) -> pd.DataFrame:
    """The default DESID rules of one CMAQ version and mechanism (config/cmaq_desid_rules.csv)."""
    rules = pd.read_csv(REPO / "config" / "cmaq_desid_rules.csv", comment="#", dtype=str)
    return rules[(rules["cmaq_version"] == version) & (rules["mechanism"] == mechanism)]


def emitted(rules: pd.DataFrame) -> dict[str, set[tuple[str, str]]]:
    """Surrogate → (phase, basis) of the rules that emit it (add, every stream, scale > 0)."""
    r = rules[(rules["operation"] == "a") & (rules["stream_label"] == "ALL")
              & (rules["scale"].astype(float) > 0)]
    out: dict[str, set[tuple[str, str]]] = {}
    for s, ph, b in zip(r["emission_species"], r["phase_or_aerosol_mode"], r["basis"]):
        out.setdefault(s, set()).add((ph, b))
    return out


def unit_for(how: set[tuple[str, str]]) -> str | None:
    """The file unit a surrogate's rules need: a UNIT rule takes the rate as it is, moles/s into
    a gas, g/s into an aerosol mode; MASS rules convert any recognised unit (None)."""
    units = {"moles/s" if ph == "GAS" else "g/s" for ph, b in how if b == "UNIT"}
    assert len(units) <= 1, how
    return units.pop() if units else None


def test_desid_summary_is_the_full_rules():
    """config/cmaq_desid_surrogates.csv (what model_read uses) lists exactly the surrogates the
    full rule set (config/cmaq_desid_rules.csv) emits, for every version and mechanism."""
    from pipeline.model_read import desid_surrogates

    rules = pd.read_csv(REPO / "config" / "cmaq_desid_rules.csv", comment="#", dtype=str)
    assert len(rules) == 664 and rules["source"].str.match(r"USEPA/CMAQ@[0-9a-f]{12}:").all()
    summary = desid_surrogates()
    for (version, mech), g in rules.groupby(["cmaq_version", "mechanism"]):
        assert summary[(version, mech)] == frozenset(emitted(g)), (version, mech)


# ----------------------------------------------------------------- one inventory on YRD9KM

def yrd_world(root: Path) -> Path:
    """The fixture world (tests/world.py) on YRD9KM with NMVOC, NH3, CO, BC and OC factors
    and the shipped speciation table's default profiles; returns its config path."""
    from tests.world import write_world

    cfg_path = write_world(root)
    text = cfg_path.read_text()
    start = text.index("grid:")
    text = (text[:start] + "grid: {griddesc: " + str(REPO / "config" / "GRIDDESC_YRD")
            + ", name: YRD9KM}" + text[text.index("\n", start):])
    text = text.replace("  temporal_profiles: temporal_profiles.csv\n",
                        "  temporal_profiles: temporal_profiles.csv\n"
                        "  speciation: speciation.csv\n")
    cfg_path.write_text(text + "vertical: {layers_m: [0, 50, 150, 1000]}\n")
    f = cfg_path.parent / "emission_factors.csv"
    f.write_text(f.read_text() + "".join(
        f"power,coal,boiler,{sp},{v},kg/t,test\n" for sp, v in
        (("NMVOC", 0.3), ("NH3", 0.05), ("CO", 1.5), ("BC", 0.1), ("OC", 0.2))) +
        "road,gasoline,car,NMVOC,0.2,g/km,test\nroad,gasoline,car,CO,2,g/km,test\n"
        "road,gasoline,car,NH3,0.02,g/km,test\n")
    c = cfg_path.parent / "control_efficiencies.csv"
    c.write_text(c.read_text() + "esp,BC,0.98,test\nesp,OC,0.98,test\n")
    # the shipped table's default ('*') profiles (the fixture has its own sector names) and an
    # NH3_FERT tracer for road NH3 (standing in for a fertiliser sector)
    table = pd.read_csv(REPO / "config" / "speciation.csv", dtype=str, keep_default_na=False)
    table = table[table["sector"] == "*"]
    extra = pd.DataFrame([["cb6r5_ae7", "road", "NH3", "NH3_FERT", "1", "17.0305",
                           "test: road NH3 as the fertiliser NH3 tracer", "yes"]],
                         columns=table.columns)
    pd.concat([table, extra]).to_csv(cfg_path.parent / "speciation.csv", index=False)
    return cfg_path


@pytest.fixture(scope="module")
def yrd(tmp_path_factory):
    """The prepared fixture inventory on YRD9KM (every model step can run on it)."""
    from pipeline.build import prepare
    from pipeline.config import load_config

    cfg = load_config(yrd_world(tmp_path_factory.mktemp("yrd")),
                      {"output.mechanism": "cb6r5_ae7",
                       "output.period": ["2024-03-01", "2024-03-01"]})
    return cfg, prepare(cfg)


def model_build(yrd, out: Path, formats: list[str], **output) -> tuple[Path, object, list]:
    """The pipeline's model steps for ``formats`` with ``output`` settings; returns the build
    directory, the ledger (with the model-read columns) and the lines for the summary."""
    from pipeline import model_ready
    from pipeline.build import FLOAT32_RTOL

    cfg, state = yrd
    doc = cfg.output.model_dump()
    doc.update(formats=["cf", *formats], **output)
    cfg = cfg.model_copy(update={"output": type(cfg.output).model_validate(doc)})
    model_ready.check_formats(cfg, state.tables)
    mo = model_ready.prepare(cfg, state.tables, state.activity, state.emissions,
                             state.alloc.matrix, state.cems)
    measured = model_ready.write_days(mo, [DAY], state.factors, out, {"tongyuan_build_id": "t"})
    model_ready.check_days(mo, state.annual, state.factors, measured, rtol=FLOAT32_RTOL)
    ledger = copy.deepcopy(state.ledger)
    lines = model_ready.finish(mo, ledger, out, [DAY])
    return out, ledger, lines


def day_kg(yrd) -> pd.Series:
    """The inventory's gridded mass of UTC day ``DAY`` per species [kg]: the annual grid times
    the day's share of each sector's year (what the CF day file holds)."""
    _, state = yrd
    totals = state.annual.sum(dim=("y", "x")).to_pandas()  # sector × species
    times = state.factors["time"].values.astype("datetime64[D]")
    share = state.factors.isel(time=times == np.datetime64(DAY.date(), "D")).sum("time")
    return totals.mul(share.to_pandas().reindex(totals.index), axis=0).sum()


def read_fraction(ledger, fmt: str) -> pd.Series:
    t = ledger.table
    g = t["gridded_kg"].groupby(level="species").sum()
    return (t[f"{fmt}_read_kg"].groupby(level="species").sum() / g)[g > 0]


def file_kg(nc: netCDF4.Dataset, names: list[str], area: np.ndarray, gas: bool) -> float:
    """The day's amount of ``names`` in a wrfchemi file: mol (gases, mol km-2 hr-1 per hour) or
    g (aerosols, ug m-2 s-1) over the cells' true areas [m2]."""
    total = 0.0
    for n in names:
        v = nc[n][:].astype(np.float64)  # (24, z, y, x)
        total += float((v * area).sum()) * (1e-6 if gas else 3600 * 1e-6)
    return total


@pytest.mark.parametrize("emiss_opt", EMISS_OPTS)
def test_every_wrfchem_package_reads_the_whole_inventory(yrd, tmp_path, emiss_opt):
    """Every variable of the emiss_opt package (Registry facts) is in the wrfchemi file with
    the Registry's units and WRF's dims (kemit levels); the species the package has variables
    for are read whole (ledger) and the Registry variables carry the inventory's day mass; the
    build names what the package does not carry."""
    from pipeline.wrfchem_packages import package

    out, ledger, lines = model_build(yrd, tmp_path, ["wrfchem"],
                                     wrfchem={"emiss_opt": emiss_opt, "kemit": 4})
    facts = registry(emiss_opt)
    grid = yrd[1].tables.grid
    with netCDF4.Dataset(out / "wrfchem" / "wrfchemi_d01_2024-03-01_00:00:00") as nc:
        e_vars = {v for v in nc.variables if v.startswith("E_")}
        assert e_vars == set(facts.index)
        for v in e_vars:
            assert nc[v].dimensions == ("Time", "emissions_zdim", "south_north", "west_east")
            assert nc[v].shape == (24, 4, grid.ny, grid.nx)
            assert nc[v].units == facts.loc[v, "units"] and nc[v].FieldType == 104, v
        # mass of the Registry's own variables against the inventory (true cell areas)
        area = grid.cell_area_m2
        kg = day_kg(yrd)
        used = facts[facts["used"] == "yes"]
        gas = list(used.index[used["kind"] == "gas"])
        aer = list(used.index[used["kind"] == "aerosol"])
        checks = {"CO": ["E_CO"]}
        if emiss_opt >= 16:
            checks["CO2"] = ["E_CO2"]
            if emiss_opt == 17:
                checks["CH4"] = ["E_CH4"]
        else:
            checks.update({"SO2": ["E_SO2"], "NH3": ["E_NH3"],
                           "NOx": [v for v in ("E_NO", "E_NO2", "E_HONO") if v in gas]})
        for sp, names in checks.items():
            got = file_kg(nc, names, area, gas=True) * MW[sp] / 1000
            assert got == pytest.approx(kg[sp], rel=2e-6), sp
        if emiss_opt < 16:
            fine = [v for v in aer if v not in COARSE]
            assert file_kg(nc, fine, area, gas=False) / 1000 == \
                pytest.approx(kg["PM2_5"], rel=2e-6)
            bc = [v for v in aer if v in ("E_ECI", "E_ECJ", "E_BC")]
            assert file_kg(nc, bc, area, gas=False) / 1000 == pytest.approx(kg["BC"], rel=2e-6)
            if emiss_opt != 4:  # CBMZ/MOSAIC (emiss_inpt_opt 1) has no coarse variable
                assert file_kg(nc, aer, area, gas=False) / 1000 == \
                    pytest.approx(kg["PM10"], rel=2e-6)
    frac = read_fraction(ledger, "wrfchem")
    carried = (["CO2", "CO"] + (["CH4"] if emiss_opt == 17 else []) if emiss_opt >= 16 else
               ["SO2", "NOx", "CO", "NMVOC", "NH3", "PM2_5", "BC", "OC"]
               + ([] if emiss_opt == 4 else ["PM10"]))
    for sp in carried:
        assert frac[sp] == pytest.approx(1.0, abs=1e-9), sp
    name = package(emiss_opt).name
    absent = [sp for sp in frac.index if sp not in carried and sp != "CO2e"  # derived
              and not (emiss_opt == 3 and sp in ("CO2", "CH4"))]
    if emiss_opt == 4:
        absent.remove("PM10")
        assert [x for x in lines if "reads 66." in x or "% of PM10" in x]
    note = [x for x in lines if "carries no variable for" in x]
    if not absent:  # RADM2/SORGAM: everything the fixture emits has a variable
        assert emiss_opt == 3 and note == []
        return
    assert len(note) == 1 and f"emiss_opt {emiss_opt} ({name})" in note[0]
    assert sorted(a.split(" (")[0] for a in note[0].split("carries no variable for: ")[1]
                  .split(" (in the CF")[0].split(", ")) == sorted(absent)


def test_cmaq_54_cb6r5_ae7_reads_the_inventory(yrd, tmp_path):
    """CMAQ 5.4 cb6r5_ae7_aq (its default DESID rules): every file variable with a rule has
    I/O API dims and the units its rule's phase needs (moles/s gas, g/s aerosol); SO2, NOx, CO,
    NH3, PM2.5, PM10, BC, OC and CH4 are read whole and their rule-mapped variables carry the
    day's inventory mass; of NMVOC exactly the variables without a rule are not read (UNR of
    the default profile), SOAALK (a rule) is there as a tracer, CO2 has no rule."""
    out, ledger, lines = model_build(yrd, tmp_path, ["cmaq"], mechanism="cb6r5_ae7")
    rules = emitted(desid("5.4", "cb6r5_ae7_aq"))
    kg = day_kg(yrd)
    with netCDF4.Dataset(out / "cmaq" / "emis_cb6r5_ae7_YRD9KM_20240301.nc") as nc:
        names = getattr(nc, "VAR-LIST").split()
        assert (nc.GDTYP, nc.NCOLS, nc.NROWS, nc.XCELL) == (2, 60, 60, 9000.0)
        for n in names:
            assert nc[n].dimensions == ("TSTEP", "LAY", "ROW", "COL") and nc[n].shape[0] == 25
            if n in rules and unit_for(rules[n]) is not None:
                assert nc[n].units.strip() == unit_for(rules[n]), n

        def day(*vs):
            return sum(float(nc[v][:24].astype(np.float64).sum()) * 3600 for v in vs)

        fine = [n for n in names if ("FINE", "UNIT") in rules.get(n, ())
                or n in ("POC", "PNCOM")]  # POA: FINE and GAS (volatility) rules, MASS basis
        assert set(fine) >= {"PSO4", "PEC", "POC", "PNCOM", "PMOTHR"}
        assert day(*fine) / 1000 == pytest.approx(kg["PM2_5"], rel=2e-6)
        assert day("PMC") / 1000 == pytest.approx(kg["PM10"] - kg["PM2_5"], rel=2e-6)
        assert {ph for ph, _ in rules["PMC"]} == {"COARSE"}
        assert day("PEC") / 1000 == pytest.approx(kg["BC"], rel=2e-6)
        assert day("POC") / 1000 == pytest.approx(kg["OC"], rel=2e-6)
        assert day("NO", "NO2", "HONO") * MW["NOx"] / 1000 == pytest.approx(kg["NOx"], rel=2e-6)
        for sp in ("SO2", "CO", "NH3", "CH4", "CO2"):
            assert day(sp) * MW[sp] / 1000 == pytest.approx(kg[sp], rel=2e-6), sp
        assert {"SO2", "CO", "NH3", "CH4", "NO", "NO2", "HONO", "SOAALK"} <= set(rules)
        assert "CO2" not in rules and "CO2" in names
        # NH3_FERT repeats road NH3 (tracer): NH3 keeps the whole
        assert day("NH3_FERT") > 0 and day("NH3_FERT") < day("NH3")
        assert day("SOAALK") > 0
        no_rule = {n for n in names if n not in rules}
        assert no_rule == {"UNR", "CO2", "CO2_FOSSIL", "CO2_BIO", "NH3_FERT"} - (
            set() if "CO2_FOSSIL" in names else {"CO2_FOSSIL", "CO2_BIO"})
    frac = read_fraction(ledger, "cmaq")
    for sp in ("SO2", "NOx", "CO", "NH3", "PM2_5", "PM10", "BC", "OC", "CH4"):
        assert frac[sp] == pytest.approx(1.0, abs=1e-9), sp
    assert 0.99 < frac["NMVOC"] < 1.0 and frac["CO2"] == 0.0
    warn = [x for x in lines if "of NMVOC" in x]
    assert len(warn) == 1 and "not read: UNR " in warn[0]
    assert "CMAQ 5.4 default DESID rules of cb6r5_ae7_aq" in warn[0]
    text = (out / "cmaq" / "README.txt").read_text()
    assert "DESID_CHEM_CTRL_NML = CMAQ_Control_DESID_cb6r5_ae7_aq.nml" in text
    assert "UNR: unreactive carbon" in text and "'CO2'  ,44.01" in text
    assert "NH3_FERT repeats its fertiliser part (sectors road)" in text
    assert not [x for x in lines if "carries no variable" in x]  # CO2e is derived, not emitted


def test_cmaq_streams_add_up_to_the_merged_file_and_carry_nh3_fert(yrd, tmp_path):
    """Streams per sector group: one set of day files each, adding up to the merged file (the
    build checks it to 1e-9 before float32; here on the float32 files); NH3_FERT is in the
    stream of its sector only; CMAQ's bidirectional NH3 makes that NH3 unread, by design."""
    out, ledger, lines = model_build(
        yrd, tmp_path, ["cmaq"], mechanism="cb6r5_ae7",
        cmaq={"streams": {"POWER": ["power"], "MOBILE": ["road"]}, "abflux": True})
    streams = out / "cmaq" / "streams"
    files = sorted(p.name for p in streams.iterdir())
    assert files == ["emis_cb6r5_ae7_YRD9KM_MOBILE_20240301.nc",
                     "emis_cb6r5_ae7_YRD9KM_OTHER_20240301.nc",
                     "emis_cb6r5_ae7_YRD9KM_POWER_20240301.nc"]
    with netCDF4.Dataset(out / "cmaq" / "emis_cb6r5_ae7_YRD9KM_20240301.nc") as m:
        parts = [netCDF4.Dataset(streams / f) for f in files]
        try:
            assert [p.NLAYS for p in parts] == [1, 1, 2] and m.NLAYS == 2  # own layers
            for n in getattr(m, "VAR-LIST").split():
                whole = m[n][:].astype(np.float64)
                total = np.zeros_like(whole)
                for p in parts:  # a stream has the layers its sectors reach
                    total[:, :p.NLAYS] += p[n][:].astype(np.float64)
                scale = max(float(np.abs(whole).max()), 1e-30)
                assert float(np.abs(total - whole).max()) <= 2e-7 * scale, n
            mobile, power = parts[0], parts[2]
            assert float(mobile["NH3_FERT"][:].sum()) == pytest.approx(
                float(mobile["NH3"][:].sum()), rel=1e-6)
            assert float(power["NH3_FERT"][:].max()) == 0.0
            assert float(power["NH3"][:].sum()) > 0
            assert getattr(power, "VAR-LIST") == getattr(m, "VAR-LIST")
        finally:
            for p in parts:
                p.close()
    text = (out / "cmaq" / "README.txt").read_text()
    for line in ("setenv N_EMIS_GR 3", "setenv GR_EMIS_LAB_001 POWER    # power",
                 "setenv GR_EMIS_LAB_002 MOBILE    # road", "CTM_ABFLUX Y"):
        assert line in text
    t = ledger.table
    road_nh3 = float(t.loc[("road", "NH3"), "gridded_kg"])
    assert float(t.loc[("road", "NH3"), "cmaq_read_kg"]) == pytest.approx(0.0, abs=1e-9)
    assert float(t.loc[("power", "NH3"), "cmaq_read_fraction"]) == pytest.approx(1.0)
    assert any("CTM_ABFLUX" in x and "by design" in x for x in lines) and road_nh3 > 0
    assert not any("% of NH3" in x for x in lines if x.startswith("WARNING"))


def test_stream_config_is_checked(yrd, tmp_path):
    from pipeline.config import CmaqConfig
    from sources.errors import ConfigError

    with pytest.raises(ValueError, match="fire stream label"):
        CmaqConfig(streams={"PT_FIRES": ["power"]})
    with pytest.raises(ValueError, match="sector 'road' is in streams 'A' and 'B'"):
        CmaqConfig(streams={"A": ["road"], "B": ["road"]})
    with pytest.raises(ConfigError, match=r"output.cmaq.streams: unknown sector\(s\) \['rail'\]"):
        model_build(yrd, tmp_path, ["cmaq"], mechanism="cb6r5_ae7",
                    cmaq={"streams": {"RAIL": ["rail"]}})


def test_cli_emiss_opt_kemit_and_streams(prefect_harness, tmp_path, capsys):
    """--emiss-opt, --kemit and --cmaq-streams override the config; the summary gives CMAQ its
    mechanism and namelists and WRF-Chem its emiss_opt package, and says plainly which
    inventory species the package does not carry."""
    from pipeline.cli import main

    cfg = yrd_world(tmp_path / "w")
    args = ["build", "--config", str(cfg), "--out", str(tmp_path / "o"), "--period",
            "2024-03-01:2024-03-01", "--format", "cmaq,wrfchem", "--mechanism", "cb6r5_ae7"]
    assert main(args + ["--cmaq-streams", "POWER"]) == 2
    assert "'POWER' is not LABEL=sector[,sector]" in capsys.readouterr().err
    assert main(args + ["--emiss-opt", "5"]) == 1
    assert "emiss_opt 5 is not supported; supported: 3 (eradmsorg" in capsys.readouterr().err
    assert main(args + ["--emiss-opt", "16", "--kemit", "3", "--cmaq-streams",
                        "POWER=power;MOBILE=road"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln.split("/ (")[1] for ln in out.splitlines()  # after the folder
             if ln.startswith(("  cmaq:", "  wrfchem:"))}
    assert "mechanism cb6r5_ae7 (CMAQ namelists 5.4:cb6r5_ae7_aq)" in lines["cmaq:"]
    assert "emiss_opt 16 (eco2, mechanism wrfghg_co2), kemit 3" in lines["wrfchem:"]
    assert "cb6r5" not in lines["wrfchem:"] and "emiss_opt" not in lines["cmaq:"]
    note = [ln for ln in out.splitlines() if "emiss_opt 16 (eco2)" in ln
            and "carries no variable for: SO2 (" in ln]
    assert len(note) == 1 and "NOx (" in note[0] and "PM2_5 (" in note[0]
    assert "models:  cmaq: 3 streams in cmaq/streams/ (POWER: power; MOBILE: road; OTHER: " \
        "residential)" in out
    build = tmp_path / "o" / "latest-period"
    with netCDF4.Dataset(build / "wrfchem" / "wrfchemi_d01_2024-03-01_00:00:00") as nc:
        assert nc.dimensions["emissions_zdim"].size == 3
        assert {v for v in nc.variables if v.startswith("E_")} == set(registry(16).index)
    assert len(list((build / "cmaq" / "streams").glob("*.nc"))) == 3
    assert " emiss_opt             = 16," in (build / "wrfchem" / "namelist.snippet").read_text()
