"""Speciation of inventory pollutants into the species of a chemical mechanism.

The speciation table (``tables.speciation``, CSV) has one row per (mechanism, sector, pollutant,
model species) with the **mass fraction** of the inventory pollutant carried by that model species
and, for gases, the molar mass the profile uses to turn that mass into moles::

    mechanism,sector,pollutant,model_species,mass_fraction,molar_mass_g_mol,reference
    cb6r3_ae6,*,NOx,NO,0.9,46.0055,...           # NOx is NO2-equivalent mass
    cb6r3_ae6,road,NMVOC,TOL,0.083,92.14,...
    cb6r3_ae6,*,PM2_5,PEC,0.21,,...               # aerosol: no molar mass, grams

``sector = *`` is the default for sectors without rows of their own. An optional column
``tracer`` marks rows (``yes``) of a **tracer**: a model species that repeats mass another species
of the row's pollutant already carries (the Speciation Tool's SOAALK, the alkanes also in PAR;
CMAQ's NH3_FERT, the fertiliser part of NH3). Tracer rows are outside the sum to 1 and are not
inventory mass (the model-read ledger skips them); a sector takes the tracer rows of the profile
it takes for that pollutant (its own rows, or the default's). Per (sector, pollutant) the other
fractions must sum to 1 (to 1e-3; they are then scaled to exactly 1), so speciated PM equals
PM2.5 and VOC moles × the profile's molar masses equal the NMVOC mass. ``PMC`` is the coarse
fraction PM10 − PM2.5. Gases are in mol, aerosols in g. Like every configuration table it is read
by :func:`sources.tables.read_table` (every row cites a reference) and problems raise
:class:`~sources.errors.ConfigError` naming file, row and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sources.errors import ConfigError, Problems
from sources.tables import read_table

#: derived pollutants of the speciation table: the first minus the others
DERIVED = {"PMC": ("PM10", "PM2_5"), "PM2_5_other": ("PM2_5", "BC", "OC")}


@dataclass(frozen=True)
class ModelSpecies:
    name: str
    pollutant: str          # the inventory (or derived) pollutant it comes from
    gas: bool               # mol (gas) or g (aerosol)
    #: repeats mass other species of its pollutant carry (SOAALK, NH3_FERT): not inventory mass
    tracer: bool = False

    @property
    def unit(self) -> str:
        return "mol" if self.gas else "g"


@dataclass(frozen=True)
class Speciation:
    """One mechanism's split: per sector a (pollutants × model species) matrix of mol/kg or g/kg."""

    mechanism: str
    species: list[ModelSpecies]
    pollutants: list[str]
    factors: dict[str, np.ndarray]  # sector → (pollutants × species); "*" the default
    path: str = field(default="", compare=False)
    #: sector → (pollutants × species): the mass fraction of each pollutant a species carries
    #: (zero for tracers: their mass is counted in the other species)
    shares: dict[str, np.ndarray] = field(default_factory=dict, compare=False)
    #: sector → (pollutants × species): the mass fraction of each pollutant a tracer repeats
    tracer_shares: dict[str, np.ndarray] = field(default_factory=dict, compare=False)

    def tracer_shares_for(self, sector: str) -> np.ndarray:
        return self.tracer_shares.get(sector, self.tracer_shares.get("*"))

    def shares_for(self, sector: str) -> np.ndarray:
        return self.shares.get(sector, self.shares.get("*"))

    def for_sector(self, sector: str) -> np.ndarray:
        return self.factors.get(sector, self.factors.get("*"))

    def expected(self, kg: pd.DataFrame) -> pd.Series:
        """Model-species amounts [mol or g] from kg per (sector × inventory species) — what the
        files must carry; derived pollutants are formed here too."""
        total = np.zeros(len(self.species))
        for sector, row in kg.iterrows():
            e = np.array([_pollutant_value(row, p) for p in self.pollutants])
            total += e @ self.for_sector(str(sector))
        return pd.Series(total, index=[m.name for m in self.species])


def _how(m: ModelSpecies) -> str:
    return (f"{m.pollutant}, {'gas' if m.gas else 'aerosol'}"
            + (", tracer" if m.tracer else ""))


def _pollutant_value(row: pd.Series, p: str) -> float:
    if p in DERIVED:
        first, *rest = DERIVED[p]
        return float(row.get(first, 0.0)) - sum(float(row.get(r, 0.0)) for r in rest)
    return float(row.get(p, 0.0))


def _number(text: str) -> float:
    try:
        return float(text) if text != "" else np.nan
    except ValueError:
        return np.nan


def load_speciation(path: str | Path, mechanism: str, emitted: list[str],
                    sectors: list[str]) -> Speciation:
    """Read and check the speciation table for ``mechanism``.

    Parameters
    ----------
    path : the speciation CSV (``#`` starts a comment)
    mechanism : the ``mechanism`` whose rows are used (e.g. ``cb6r3_ae6``)
    emitted : the inventory species (the pollutants the rows may speciate, plus :data:`DERIVED`)
    sectors : the configured sectors (a row's sector is one of them or ``*``)

    Raises
    ------
    ConfigError
        naming the file, row and column of the first problem.
    """
    path = Path(path)
    need = ["mechanism", "sector", "pollutant", "model_species", "mass_fraction",
            "molar_mass_g_mol", "reference"]
    df = read_table(path, need, "speciation", comment="#")
    df["input_row"] = np.arange(len(df)) + 1
    if "tracer" not in df.columns:
        df["tracer"] = ""
    known = sorted(df["mechanism"].unique())
    df = df[df["mechanism"] == mechanism].copy()
    if df.empty:
        raise ConfigError(f"{path}: no rows for mechanism {mechanism!r}; the table has {known}")
    df["mass_fraction_text"] = df["mass_fraction"]
    df["molar_mass_text"] = df["molar_mass_g_mol"]
    df["mass_fraction"] = df["mass_fraction"].map(_number)
    df["molar_mass_g_mol"] = df["molar_mass_g_mol"].map(_number)
    allowed = set(emitted) | {d for d, parts in DERIVED.items() if set(parts) <= set(emitted)}
    # rows for greenhouse gases this build does not emit (a registry without CO2_fossil or CH4)
    # are not its rows; a misspelt pollutant still fails below, as the one it meant is then
    # not covered
    df = df[df["pollutant"].isin(allowed) | ~df["pollutant"].str.fullmatch(
        r"CO2|CH4|CO2_fossil|CO2_bio")]
    found = Problems()  # every bad row, reported together
    for r in df.itertuples():
        row = int(r.input_row)
        if r.pollutant not in allowed:
            found.add(ConfigError.at(path, "unknown pollutant", row=row, column="pollutant",
                                     value=r.pollutant, expected=f"one of {sorted(allowed)}"))
        if r.sector != "*" and r.sector not in sectors:
            found.add(ConfigError.at(path, "unknown sector", row=row, column="sector",
                                     value=r.sector,
                                     expected=f"'*' or one of {sorted(sectors)}"))
        if not (np.isfinite(r.mass_fraction) and 0 <= r.mass_fraction <= 1):
            found.add(ConfigError.at(path, "mass fraction outside [0, 1]", row=row,
                                     column="mass_fraction", value=r.mass_fraction_text))
        if r.tracer not in ("", "yes", "no"):
            found.add(ConfigError.at(path, "tracer must be 'yes', 'no' or empty", row=row,
                                     column="tracer", value=r.tracer,
                                     expected="yes (a tracer repeating mass of its pollutant) "
                                     "or empty"))
        if r.molar_mass_text != "" and not r.molar_mass_g_mol > 0:
            found.add(ConfigError.at(path, "molar mass must be positive", row=row,
                                     column="molar_mass_g_mol", value=r.molar_mass_text,
                                     expected="a number > 0 (gas) or empty (aerosol)"))
    found.raise_any()
    # one pollutant per model species, always a gas (with a molar mass) or always an aerosol;
    # lumped VOC species (PAR, OLE, ...) have profile-specific molar masses
    species: dict[str, ModelSpecies] = {}
    for r in df.itertuples():
        m = ModelSpecies(r.model_species, r.pollutant, bool(pd.notna(r.molar_mass_g_mol)),
                         r.tracer == "yes")
        old = species.setdefault(r.model_species, m)
        if old != m:
            raise ConfigError.at(path, f"model species {r.model_species!r} is given two ways "
                                 f"({_how(old)} vs {_how(m)})",
                                 row=int(r.input_row), column="model_species",
                                 value=r.model_species,
                                 expected="one inventory pollutant per species, a molar "
                                 "mass on all its rows (gas) or on none (aerosol), and tracer "
                                 "on all its rows or on none")
    names = list(species)
    pollutants = list(dict.fromkeys(df["pollutant"]))
    factors: dict[str, np.ndarray] = {}
    shares: dict[str, np.ndarray] = {}
    tracers: dict[str, np.ndarray] = {}  # sector → (pollutants × species) of the tracer rows
    trac_shares: dict[str, np.ndarray] = {}
    own: dict[str, set[str]] = {}  # sector → pollutants it has rows (of any kind) for
    is_tracer = df["tracer"] == "yes"
    for sector, g in df.groupby("sector", sort=False):
        mat = np.zeros((len(pollutants), len(names)))
        share = np.zeros((len(pollutants), len(names)))
        trac = np.zeros((len(pollutants), len(names)))
        trac_share = np.zeros((len(pollutants), len(names)))
        own[str(sector)] = set(g["pollutant"])
        for p, gp in g[~is_tracer.loc[g.index]].groupby("pollutant", sort=False):
            total = gp["mass_fraction"].sum()
            if abs(total - 1.0) > 1e-3:
                raise ConfigError.at(path, f"mass fractions of {p} for sector {sector!r} sum to "
                                     f"{total:.6f}", row=int(gp["input_row"].iloc[0]),
                                     column="mass_fraction", value=float(total),
                                     expected="a sum of 1 (within 0.001)")
            for r in gp.itertuples():
                m = species[r.model_species]
                kg_to = 1000.0 / r.molar_mass_g_mol if m.gas else 1000.0
                mat[pollutants.index(p), names.index(r.model_species)] += \
                    r.mass_fraction / total * kg_to
                share[pollutants.index(p), names.index(r.model_species)] += \
                    r.mass_fraction / total
        for r in g[is_tracer.loc[g.index]].itertuples():  # as given: not renormalised
            kg_to = 1000.0 / r.molar_mass_g_mol if species[r.model_species].gas else 1000.0
            trac[pollutants.index(r.pollutant), names.index(r.model_species)] += \
                r.mass_fraction * kg_to
            trac_share[pollutants.index(r.pollutant), names.index(r.model_species)] += \
                r.mass_fraction
        factors[str(sector)] = mat
        shares[str(sector)] = share
        tracers[str(sector)] = trac
        trac_shares[str(sector)] = trac_share
    # a sector with own rows for some pollutants takes the default for the others, with the
    # default's tracers; for a pollutant it has rows of its own for, only its own tracers
    if "*" in factors:
        for s, mat in factors.items():
            missing = ~mat.any(axis=1)
            mat[missing] = factors["*"][missing]
            shares[s][missing] = shares["*"][missing]
            for i, p in enumerate(pollutants):
                if p not in own[s]:
                    tracers[s][i] = tracers["*"][i]
                    trac_shares[s][i] = trac_shares["*"][i]
    else:
        uncovered = sorted(set(sectors) - set(factors))
        if uncovered:
            raise ConfigError.at(path, f"sectors {uncovered} have no speciation and there is "
                                 "no default row", column="sector",
                                 expected="rows with sector '*'")
        for s, mat in factors.items():
            missing = [p for i, p in enumerate(pollutants) if not mat[i].any()]
            if missing:
                raise ConfigError.at(path, f"sector {s!r} has no rows for {missing} and there "
                                     "is no default row", column="sector",
                                     expected="rows for every pollutant, or rows with sector "
                                     "'*'")
    for s in factors:
        factors[s] = factors[s] + tracers[s]
    return Speciation(mechanism, [species[n] for n in names], pollutants, factors, str(path),
                      shares, trac_shares)
