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

from sources.errors import ConfigError, UnitError, UnknownKeyError
from sources.tables import check_unique, numbers, read_table
from sources.units import parse_unit

KEY = ["sector", "fuel", "technology"]
NO_CONTROL = "none"


def _numeric(df: pd.DataFrame, col: str, path: Path, lo: float, hi: float) -> np.ndarray:
    return numbers(df, col, path, lo, hi)


def _units(df: pd.DataFrame, col: str, path: Path) -> None:
    for i, text in enumerate(df[col]):
        try:
            parse_unit(text)
        except UnitError as exc:
            ambiguous = exc.problem.startswith("ambiguous")
            raise UnitError(path, exc.problem if ambiguous else "unparseable unit", row=i + 1,
                            column=col, value=text, expected=exc.expected if ambiguous else
                            "a pint unit string such as 'kg/t', 'g/GJ', 'g/km'") from exc


@dataclass(frozen=True)
class FactorLibrary:
    """The emission-factor, control and fuel tables of one build."""

    factors: pd.DataFrame  # sector fuel technology species value unit reference
    controls: pd.DataFrame  # control species efficiency reference
    fuels: pd.DataFrame  # fuel ncv ncv_unit reference
    paths: dict[str, str]

    @property
    def keys(self) -> pd.DataFrame:
        return self.factors[KEY].drop_duplicates().reset_index(drop=True)

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

    def unknown_devices(self, control: str) -> list[str]:
        if control in ("", NO_CONTROL):
            return []
        return [d for d in control.split("+") if d not in self.devices]


def load_factor_library(factors_path: str | Path, controls_path: str | Path,
                        fuels_path: str | Path, species: list[str]) -> FactorLibrary:
    """Load and check the three tables.

    Checks: columns, references, parseable units, non-negative values, known species, no
    duplicate (key, species) rows, efficiencies in [0, 1], and that every fuel with a per-energy
    factor has a calorific value.
    """
    fp, cp, up = Path(factors_path), Path(controls_path), Path(fuels_path)
    ef = read_table(fp, KEY + ["species", "value", "unit", "reference"], "emission-factor")
    ef["value_num"] = _numeric(ef, "value", fp, 0.0, np.inf)
    _units(ef, "unit", fp)
    unknown = np.flatnonzero(~ef["species"].isin(species).to_numpy())
    if unknown.size:
        i = unknown[0]
        raise UnknownKeyError(fp, "unknown species", row=int(i) + 1, column="species",
                              value=ef["species"].iloc[i], expected=f"one of {species}")
    if ef.empty:
        raise ConfigError(f"{fp}: emission-factor table has no rows; expected one row per "
                          "sector, fuel, technology and species")
    check_unique(ef, KEY + ["species"], fp, "emission-factor")

    ctl = read_table(cp, ["control", "species", "efficiency", "reference"], "control-efficiency",
                     unique=["control", "species"])
    bad = np.flatnonzero(~ctl["control"].str.fullmatch(r"[A-Za-z0-9_\-]+").to_numpy()
                         | ctl["control"].isin(["none", ""]).to_numpy())
    if bad.size:
        i = int(bad[0])
        raise ConfigError.at(cp, "not a device name", row=i + 1, column="control",
                             value=ctl["control"].iloc[i], expected="a name of letters, digits, "
                             "'_' or '-' (not 'none'; devices are joined with '+' in inputs)")
    ctl["efficiency_value"] = _numeric(ctl, "efficiency", cp, 0.0, 1.0)
    bad = np.flatnonzero(~ctl["species"].isin(species).to_numpy())
    if bad.size:
        i = bad[0]
        raise UnknownKeyError(cp, "unknown species", row=int(i) + 1, column="species",
                              value=ctl["species"].iloc[i], expected=f"one of {species}")

    fuels = read_table(up, ["fuel", "ncv", "ncv_unit", "reference"], "fuel", unique=["fuel"])
    fuels["ncv_value"] = _numeric(fuels, "ncv", up, 0.0, np.inf)
    _units(fuels, "ncv_unit", up)
    return FactorLibrary(factors=ef, controls=ctl, fuels=fuels,
                         paths={"emission_factors": str(fp), "control_efficiencies": str(cp),
                                "fuels": str(up)})
