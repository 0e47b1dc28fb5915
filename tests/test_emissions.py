import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.steps import concat_categorical, read_inputs
from sources.emissions import compute_emissions
from sources.errors import UnitError
from sources.units import factor_to, parse_quantity


def test_pint_conversions():
    assert factor_to("g", "kg") == pytest.approx(1e-3)
    assert factor_to("t", "kg") == pytest.approx(1e3)
    assert factor_to("Mt", "kg") == pytest.approx(1e9)
    assert factor_to("g/km", "kg/m") == pytest.approx(1e-6)
    with pytest.raises(UnitError, match="cannot parse unit 'tonnes of coal'"):
        factor_to("tonnes of coal", "kg")


def test_parse_quantity_follows_the_unit_rules():
    assert parse_quantity("12.5 t").to("kg").magnitude == pytest.approx(12500.0)
    assert parse_quantity("3 kWh/km").to("MJ/m").magnitude == pytest.approx(3 * 3.6e-3)
    assert parse_quantity("303 gce/kWh").to("GJ/MWh").magnitude == pytest.approx(8.880203)
    with pytest.raises(UnitError, match="ambiguous unit 'ton'"):
        parse_quantity("5 ton")
    with pytest.raises(UnitError, match="not a number followed by a unit"):
        parse_quantity("kg")


@pytest.fixture()
def emissions(world, tables):
    cfg = load_config(world)
    activity, _, _ = read_inputs(cfg, tables)
    return activity, compute_emissions(activity, tables.library, tables.registry)


def test_scale_multiplies_the_listed_sources_and_species(emissions, tables):
    activity, result = emissions
    scale = pd.DataFrame({"SO2": [0.5, np.nan]}, index=pd.Index(["P1", "P2"], name="source_id"))
    t = compute_emissions(activity, tables.library, tables.registry, scale=scale).table
    assert t.loc["P1", "SO2"] == pytest.approx(0.5 * result.table.loc["P1", "SO2"])
    assert t.loc["P2", "SO2"] == result.table.loc["P2", "SO2"]  # NaN: unchanged
    assert (t.drop(columns=["SO2", "CO2e"]) == result.table.drop(columns=["SO2", "CO2e"])).all(
        axis=None)
    with pytest.raises(ValueError, match=r"\['SO3'\] that are not emitted species"):
        compute_emissions(activity, tables.library, tables.registry,
                          scale=pd.DataFrame({"SO3": [1.0]}, index=["P1"]))


def test_same_source_values_by_hand(emissions):
    activity, result = emissions
    t = result.table
    # P1: 1000 t coal, fgd (SO2 −90 %) + esp (PM10 −99 %, PM2.5 −98 %)
    assert t.loc["P1", "CO2"] == pytest.approx(2_000_000, rel=1e-15)
    assert t.loc["P1", "SO2"] == pytest.approx(1000, rel=1e-12)
    assert t.loc["P1", "NOx"] == pytest.approx(5000, rel=1e-15)
    assert t.loc["P1", "PM10"] == pytest.approx(30, rel=1e-12)  # size-resolved, see below
    assert t.loc["P1", "PM2_5"] == pytest.approx(20, rel=1e-12)
    # per-energy factor × NCV: 1 kg/TJ × 1000 t × 20 GJ/t = 20 kg
    assert t.loc["P1", "CH4"] == pytest.approx(20, rel=1e-12)
    # CO2e with AR6 GWPs of the fixture (CH4 27)
    assert t.loc["P1", "CO2e"] == pytest.approx(2_000_000 + 20 * 27, rel=1e-15)
    # no factor row → exactly zero
    assert t.loc["P1", "NH3"] == 0.0
    # road: 1e6 vehicle-km × 200 g/km
    assert t.loc["L1", "CO2"] == pytest.approx(200_000, rel=1e-15)
    # residential gas: 1000 m3 × 40 MJ/m3 × 50 000 kg/TJ = 2000 kg; NOx 40 GJ × 50 g/GJ = 2 kg
    assert t.loc["A1", "CO2"] == pytest.approx(2000, rel=1e-12)
    assert t.loc["A1", "NOx"] == pytest.approx(2, rel=1e-12)
    assert list(t.columns) == ["SO2", "NOx", "CO", "NMVOC", "NH3", "PM10", "PM2_5", "BC", "OC",
                               "CO2", "CH4", "N2O", "CO2e"]
    prov = result.provenance
    row = prov[(prov.source_id == "P1") & (prov.species == "SO2")].iloc[0]
    assert row.control_remaining_fraction == pytest.approx(0.1)
    assert row.reference == "test"


def test_reported_value_overrides_factor(world, tables):
    cfg = load_config(world)
    activity, _, _ = read_inputs(cfg, tables)
    activity["reported_SO2_kg"] = np.nan
    activity.loc[activity.source_id == "P2", "reported_SO2_kg"] = 1234.5
    t = compute_emissions(activity, tables.library, tables.registry).table
    assert t.loc["P2", "SO2"] == 1234.5
    assert t.loc["P1", "SO2"] == pytest.approx(1000)


def test_unit_without_mass_is_refused(world, tables):
    cfg = load_config(world)
    activity, _, _ = read_inputs(cfg, tables)
    activity.loc[activity.source_id == "L1", "activity_unit"] = "t"
    with pytest.raises(UnitError, match=r"lines.csv row 1 \(L1\).*t × g/km"):
        compute_emissions(activity, tables.library, tables.registry)


def test_pm10_is_size_resolved_so_pm25_never_exceeds_pm10(emissions):
    """P1: uncontrolled PM10 2 kg/t, PM2.5 1 kg/t; esp removes 98 % of PM2.5 and 99 % of the
    coarse part: PM10 = 1000·1·0.02 + 1000·(2 − 1)·0.01 = 30 kg (not 2000·0.01 = 20 kg < PM2.5)."""
    _, result = emissions
    t = result.table
    assert t.loc["P1", "PM2_5"] == pytest.approx(20, rel=1e-12)
    assert t.loc["P1", "PM10"] == pytest.approx(30, rel=1e-12)
    assert (t["PM2_5"] <= t["PM10"] * (1 + 1e-12)).all()
    # uncontrolled sources are unchanged: P2 500 t × 2 kg/t
    assert t.loc["P2", "PM10"] == pytest.approx(1000, rel=1e-12)


@pytest.mark.parametrize("unit, hint", [("tons", "short tons"), ("kt", "knot"),
                                        ("g/Nm**3", "newton-metre"), ("ton/yr", "short ton")])
def test_ambiguous_units_are_refused(unit, hint):
    from sources.units import parse_unit

    with pytest.raises(UnitError, match=hint):
        parse_unit(unit)


def test_provenance_of_several_inputs_concatenates_as_categories_without_objects():
    """Unequal categories (one with an unused label) and a plain column concatenate to the
    categories astype('category') of the concatenation gives: same values, same sorted
    categories, and every label column stays categorical."""
    a = pd.DataFrame({"source_id": pd.Categorical(["S2", "S1", "S2"],
                                                  categories=["S1", "S2", "unused"]),
                      "species": pd.Categorical(["NOx", "CO2", "NOx"]), "kg": [1.0, 2.0, 3.0]})
    b = pd.DataFrame({"source_id": ["R1", None], "species": pd.Categorical(["SO2", "CO2"]),
                      "kg": [4.0, 5.0]})
    got = concat_categorical([a, b], ("source_id", "species"))
    want = pd.concat([a.astype({"source_id": object}), b], ignore_index=True).astype(
        {"source_id": "category", "species": "category"})
    pd.testing.assert_frame_equal(got, want)
    assert list(got["source_id"].cat.categories) == ["R1", "S1", "S2"]
    assert list(got["species"].cat.categories) == ["CO2", "NOx", "SO2"]
