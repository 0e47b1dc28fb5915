"""The speciation table: inventory pollutants → mechanism species (sources.speciation)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_config
from sources.errors import ConfigError
from sources.speciation import load_speciation
from tests.world import SPECIATION

SPECIES = ["SO2", "NOx", "CO", "NMVOC", "NH3", "PM10", "PM2_5", "BC", "OC", "CO2", "CO2_fossil",
           "CO2_bio"]


def test_speciation_factors_and_errors(tmp_path):
    path = tmp_path / "spec.csv"
    path.write_text(SPECIATION)
    sp = load_speciation(path, "t1", SPECIES, ["power", "road", "residential"])
    names = [m.name for m in sp.species]
    nox = sp.pollutants.index("NOx")
    # 1 kg NOx (as NO2) → 0.9 kg / 46.0055 g/mol of NO
    assert sp.for_sector("power")[nox, names.index("NO")] == pytest.approx(900 / 46.0055)
    assert sp.for_sector("road")[nox, names.index("NO")] == pytest.approx(500 / 46.0055)
    # road takes the default for the pollutants it has no rows for
    so2 = sp.pollutants.index("SO2")
    assert sp.for_sector("road")[so2, names.index("SO2")] == pytest.approx(1000 / 64.066)
    # a regional sector (MEIC July road) takes its base sector's split, not the default
    assert sp.for_sector("road@meic-07")[nox, names.index("NO")] == pytest.approx(500 / 46.0055)
    assert sp.for_sector("shipping@meic")[nox, names.index("NO")] == \
        pytest.approx(900 / 46.0055)
    kg = pd.DataFrame({"PM2_5": [10.0], "BC": [2.0], "OC": [3.0], "PM10": [12.0]},
                      index=["power"])
    want = sp.expected(kg)
    assert want["PEC"] == pytest.approx(2000) and want["POC"] == pytest.approx(3000)
    assert want["PSO4"] == pytest.approx(1250) and want["PMOTHR"] == pytest.approx(3750)
    assert want["PMC"] == pytest.approx(2000)
    # errors name file, row and column
    path.write_text(SPECIATION.replace("t1,*,NOx,NO2,0.1,", "t1,*,NOx,NO2,0.2,"))
    with pytest.raises(ConfigError, match=r"spec.csv, row 1, column 'mass_fraction': mass "
                       r"fractions of NOx for sector '\*' sum to 1.100000"):
        load_speciation(path, "t1", SPECIES, ["power", "road"])
    path.write_text(SPECIATION + "t1,*,SO2,PSO4,0,96.06,test\n")
    with pytest.raises(ConfigError, match=r"row 12, column 'model_species': model species 'PSO4' "
                       r"is given two ways \(PM2_5_other, aerosol vs SO2, gas\)"):
        load_speciation(path, "t1", SPECIES, ["power", "road"])
    path.write_text(SPECIATION + "t1,*,VOC,PAR,1,14,test\n")
    with pytest.raises(ConfigError, match=r"row 12, column 'pollutant': unknown pollutant"):
        load_speciation(path, "t1", SPECIES, ["power", "road"])
    path.write_text(SPECIATION)
    with pytest.raises(ConfigError, match=r"no rows for mechanism 'cb05'; the table has \['t1'\]"):
        load_speciation(path, "cb05", SPECIES, ["power", "road"])


def test_shipped_speciation_table_closes_mass():
    """Every shipped profile sums to 1 per sector and pollutant, and cites its source."""
    repo = Path(__file__).resolve().parent.parent
    cfg = load_config(repo / "config" / "shanghai.yaml")
    sectors = list(pd.read_csv(cfg.tables.sectors)["sector"])
    sp = load_speciation(cfg.tables.speciation, "cb6r3_ae6",
                         ["SO2", "NOx", "CO", "NMVOC", "NH3", "PM10", "PM2_5", "BC", "OC",
                          "CO2_fossil", "CO2_bio"], sectors)
    aerosol = np.array([not m.gas for m in sp.species])
    for sector in sectors:
        s = sp.for_sector(sector)
        for p in ("PM2_5_other", "BC", "OC", "PMC"):
            # 1 kg of the pollutant is 1000 g of aerosol species
            assert s[sp.pollutants.index(p), aerosol].sum() == pytest.approx(1000, rel=1e-12)
        assert s[sp.pollutants.index("NMVOC"), ~aerosol].sum() > 0


def test_speciation_without_default_needs_every_pollutant(tmp_path):
    path = tmp_path / "spec.csv"
    rows = [r for r in SPECIATION.splitlines() if ",*," not in r]
    path.write_text("\n".join(rows + ["t1,power,NOx,NO,1,46.0055,test",
                                        "t1,power,SO2,SO2,1,64.066,test"]) + "\n")
    with pytest.raises(ConfigError, match=r"sector 'road' has no rows for \['SO2'\] and there "
                       r"is no default row"):
        load_speciation(path, "t1", SPECIES, ["power", "road"])


def test_speciation_rows_cite_a_reference_and_numbers_are_checked(tmp_path):
    path = tmp_path / "spec.csv"
    path.write_text(SPECIATION.replace("t1,*,CO,CO,1,28.0101,test", "t1,*,CO,CO,1,28.0101,"))
    with pytest.raises(ConfigError, match=r"spec.csv, row 6: empty 'reference'"):
        load_speciation(path, "t1", SPECIES, ["power", "road"])
    path.write_text(SPECIATION.replace("t1,*,CO,CO,1,28.0101,", "t1,*,CO,CO,1,heavy,"))
    with pytest.raises(ConfigError, match=r"row 6, column 'molar_mass_g_mol': molar mass must be "
                       r"positive; got 'heavy'"):
        load_speciation(path, "t1", SPECIES, ["power", "road"])
