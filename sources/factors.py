"""Emission-factor, control-efficiency and fuel tables: loading, checking and key resolution.

Factors are uncontrolled (before abatement). A source's controlled factor is
``EF × Π_d (1 − η_d)`` over the devices ``d`` of its ``control`` string (``"scr+wfgd+esp"``).
Per-energy factors (g/GJ, kg/TJ) are multiplied by the fuel's net calorific value from
``fuels.csv``; pint checks that the product is a mass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sources.errors import ConfigError, Problems, UnknownKeyError
from sources.tables import check_unique, numbers, read_table, uncertainty_columns, units

KEY = ["sector", "fuel", "technology"]
NO_CONTROL = "none"
#: values of the optional ``verified`` column: was the row checked against its primary table?
VERIFIED = ("yes", "no")


@dataclass(frozen=True)
class FactorLibrary:
    """The emission-factor, control and fuel tables of one build."""

    factors: pd.DataFrame  # sector fuel technology species value unit [verified] reference
    controls: pd.DataFrame  # control species efficiency reference
    fuels: pd.DataFrame  # fuel ncv ncv_unit [biogenic_fraction] reference
    paths: dict[str, str]

    @property
    def keys(self) -> pd.DataFrame:
        return self.factors[KEY].drop_duplicates().reset_index(drop=True)

    @property
    def unverified(self) -> pd.DataFrame:
        """Factor rows marked ``verified=no`` (not checked against their primary table); a
        table without the column counts every row as unverified."""
        if "verified" not in self.factors.columns:
            return self.factors
        return self.factors[(self.factors["verified"] == "no").to_numpy()]

    @property
    def has_uncertainty(self) -> bool:
        """Whether the factor table carries uncertainty columns (``uncertainty_pct``,
        ``distribution``; loaded as ``u_rel`` [1] and ``lognormal``)."""
        return "u_rel" in self.factors.columns

    @property
    def devices(self) -> set[str]:
        return set(self.controls["control"])

    def remaining_fraction(self, control: str, species: list[str]) -> dict[str, float]:
        """Π (1 − η) over the devices in ``control`` for each species."""
        out = dict.fromkeys(species, 1.0)
        if control in ("", NO_CONTROL):
            return out
        eff = self.controls
        for device in control.split("+"):
            rows = eff[eff["control"] == device]
            for sp, e in zip(rows["species"], rows["efficiency_value"], strict=True):
                if sp in out:
                    out[sp] *= 1.0 - e
        return out

    def biogenic_fraction(self, fuel: pd.Series) -> np.ndarray:
        """Biogenic share of the carbon of each ``fuel`` (``fuels.csv`` ``biogenic_fraction``,
        [1]); 0 (fossil or process carbon) for fuels the table does not list or a table
        without the column."""
        if "biogenic_value" not in self.fuels.columns:
            return np.zeros(len(fuel))
        share = self.fuels.set_index("fuel")["biogenic_value"].astype(float)
        return fuel.map(share).fillna(0.0).to_numpy(dtype=float)

    def unknown_devices(self, control: str) -> list[str]:
        if control in ("", NO_CONTROL):
            return []
        return [d for d in control.split("+") if d not in self.devices]


def load_factor_library(factors_path: str | Path, controls_path: str | Path,
                        fuels_path: str | Path, species: list[str]) -> FactorLibrary:
    """Load and check the three tables.

    Checks: columns, references, parseable units, non-negative values, known species, no
    duplicate (key, species) rows, ``verified`` (optional column) ``yes`` or ``no``, the
    optional uncertainty columns ``uncertainty_pct`` (95 % relative half-width, finite, ≥ 0;
    for a control device that of its penetration 1 − η) and ``distribution``,
    efficiencies in [0, 1], a fuel's ``biogenic_fraction`` (optional column) in [0, 1], and
    that every fuel with a per-energy factor has a calorific value.
    """
    fp, cp, up = Path(factors_path), Path(controls_path), Path(fuels_path)
    found = Problems()  # every problem of the three tables, raised together at the end
    ef = found.attempt(read_table, fp, KEY + ["species", "value", "unit", "reference"],
                       "emission-factor", problems=found)
    if ef is not None:
        ef["value_num"] = numbers(ef, "value", fp, 0.0, np.inf, found)
        units(ef, "unit", fp, found)
        if "verified" in ef.columns:
            for i in np.flatnonzero(~ef["verified"].isin(VERIFIED).to_numpy()):
                found.add(ConfigError.at(fp, "bad 'verified' value", row=int(i) + 1,
                                         column="verified", value=ef["verified"].iloc[i],
                                         expected="yes or no"))
        for i in np.flatnonzero(~ef["species"].isin(species).to_numpy()):
            found.add(UnknownKeyError(fp, "unknown species", row=int(i) + 1, column="species",
                                      value=ef["species"].iloc[i], expected=f"one of {species}"))
        if ef.empty:
            found.add(ConfigError(f"{fp}: emission-factor table has no rows; expected one row "
                                  "per sector, fuel, technology and species"))
        check_unique(ef, KEY + ["species"], fp, "emission-factor", found)
        if {"uncertainty_pct", "distribution"} & set(ef.columns):
            ef["u_rel"], ef["lognormal"] = uncertainty_columns(ef, fp, found)

    ctl = found.attempt(read_table, cp, ["control", "species", "efficiency", "reference"],
                        "control-efficiency", unique=["control", "species"], problems=found)
    if ctl is not None:
        bad = (~ctl["control"].str.fullmatch(r"[A-Za-z0-9_\-]+").to_numpy()
               | ctl["control"].isin(["none", ""]).to_numpy())
        for i in np.flatnonzero(bad):
            found.add(ConfigError.at(cp, "not a device name", row=int(i) + 1, column="control",
                                     value=ctl["control"].iloc[i], expected="a name of letters, "
                                     "digits, '_' or '-' (not 'none'; devices are joined with "
                                     "'+' in inputs)"))
        ctl["efficiency_value"] = numbers(ctl, "efficiency", cp, 0.0, 1.0, found)
        if {"uncertainty_pct", "distribution"} & set(ctl.columns):
            # the uncertainty of a device is that of its penetration 1 − η (what passes it)
            ctl["u_rel"], ctl["lognormal"] = uncertainty_columns(ctl, cp, found)
        for i in np.flatnonzero(~ctl["species"].isin(species).to_numpy()):
            found.add(UnknownKeyError(cp, "unknown species", row=int(i) + 1, column="species",
                                      value=ctl["species"].iloc[i], expected=f"one of {species}"))

    fuels = found.attempt(read_table, up, ["fuel", "ncv", "ncv_unit", "reference"], "fuel",
                          unique=["fuel"], problems=found)
    if fuels is not None:
        fuels["ncv_value"] = numbers(fuels, "ncv", up, 0.0, np.inf, found)
        units(fuels, "ncv_unit", up, found)
        fuels["biogenic_value"] = (numbers(fuels, "biogenic_fraction", up, 0.0, 1.0, found)
                                   if "biogenic_fraction" in fuels.columns else 0.0)
    found.raise_any()
    return FactorLibrary(factors=ef, controls=ctl, fuels=fuels,
                         paths={"emission_factors": str(fp), "control_efficiencies": str(cp),
                                "fuels": str(up)})


def with_condensables(library: FactorLibrary, path: str | Path) -> FactorLibrary:
    """The library with condensable PM added to its (filterable) PM10 and PM2_5 factors.

    Tongyuan's PM definition is *filterable* primary PM (EMEP/EEA Tier 1/2, the coal ash
    method). ``path`` (``config/pm_condensable.csv``, same columns as the factor table) lists
    the condensable part per key; each value is added to the factor row of the same key, species
    and unit. A row without a matching factor row is an error.
    """
    path = Path(path)
    add = read_table(path, KEY + ["species", "value", "unit", "reference"], "condensable-PM")
    add["value_num"] = numbers(add, "value", path, 0.0, np.inf)
    ef = library.factors.copy()
    for i, row in add.iterrows():
        mask = ((ef[KEY + ["species", "unit"]] == row[KEY + ["species", "unit"]]).all(axis=1)
                ).to_numpy()
        if mask.sum() != 1:
            raise ConfigError(f"{path}, row {int(i) + 1}: no factor row with the same key, "
                              f"species and unit ({', '.join(row[KEY + ['species', 'unit']])})")
        ef.loc[mask, "value_num"] += row["value_num"]
        ef.loc[mask, "reference"] += f" + condensable PM ({path.name} row {int(i) + 1})"
    return FactorLibrary(factors=ef, controls=library.controls, fuels=library.fuels,
                         paths={**library.paths, "pm_condensable": str(path)})
