"""The same-source step: one activity record × the factor library → every species.

``E[source, species] = A × EF × U × Π_d (1 − η_d)`` where ``U`` is the pint conversion of
``activity_unit × factor_unit`` (× the fuel's NCV for per-energy factors) to kg. PM10 is
size-resolved: its fine part (PM2.5) takes the PM2.5 removal and its coarse part the PM10 removal.
A ``reported_<species>_kg`` value replaces the computed one for that source and species; an
optional ``scale`` table (source × species, e.g. a scenario's fuel standard) multiplies the result.
With a ``co2_split`` in the registry, the total CO2 of a source is split last into its fossil and
biogenic parts by the biogenic carbon fraction of the source's fuel (``fuels.csv``):
``CO2_bio = CO2 × f``, ``CO2_fossil = CO2 × (1 − f)``, so ``CO2 = CO2_fossil + CO2_bio`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pint

from sources.errors import ActivityError, ConfigError, UnitError
from sources.factors import KEY, FactorLibrary
from sources.species import SpeciesRegistry
from sources.units import Q_, parse_unit, ureg

KG = ureg.kg


#: provenance columns of labels repeated over many rows (kept as pandas categories)
PROVENANCE_LABELS = ("source_id", "species", "activity_unit", "factor_unit", "reference")


@dataclass(frozen=True)
class EmissionsResult:
    """Emissions table (index source_id, one column per species, kg/yr) and its provenance."""

    table: pd.DataFrame
    provenance: pd.DataFrame  # source_id species activity factor_value factor_unit ncv ...


def _conversion(activity_unit: str, factor_unit: str, ncv: float | None, ncv_unit: str | None,
                where: str) -> tuple[float, bool]:
    """kg per (1 activity unit × 1 factor unit); second item tells whether the NCV was used."""
    q = Q_(1.0, parse_unit(activity_unit)) * Q_(1.0, parse_unit(factor_unit))
    if q.check(KG):
        return float(q.to(KG).magnitude), False
    if ncv is not None and ncv_unit is not None:
        q2 = q * Q_(ncv, parse_unit(ncv_unit))
        if q2.check(KG):
            return float(q2.to(KG).magnitude), True
    raise UnitError(where, "activity unit and factor unit do not give a mass",
                    value=f"{activity_unit} × {factor_unit}"
                    + (f" × NCV {ncv} {ncv_unit}" if ncv is not None else ""),
                    expected="a factor per activity unit (e.g. kg/t for t) or per energy "
                    "(g/GJ) with a calorific value for the fuel in fuels.csv")


def _groups(df: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Group number of each row by ``columns`` and the first row of each group (vectorised)."""
    key = np.zeros(len(df), dtype=np.int64)
    for col in columns:
        codes, uniques = pd.factorize(df[col])
        key = key * (len(uniques) + 1) + codes
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return inverse.ravel(), first


def _size_resolved_pm10(values: np.ndarray, long: pd.DataFrame, cells: tuple, act: pd.DataFrame,
                        remaining: dict[str, dict[str, float]], sp_index: dict[str, int]) -> None:
    """Controlled PM10 = fine part + coarse part, each with its own removal (in place).

    Devices remove fine particles less well than coarse ones, so applying each species' own
    efficiency to the *total* PM10 and PM2.5 can leave more PM2.5 than PM10. As size-resolved
    abatement models do (GAINS), the PM10 efficiency of the control table is applied to the
    coarse fraction only: ``PM10_c = PM2.5·(1 − η_2.5) + (PM10 − PM2.5)·(1 − η_10)``, which keeps
    PM2.5 ≤ PM10 whenever the uncontrolled factors do.
    """
    unc = np.zeros_like(values)
    np.add.at(unc, cells, (long["activity"] * long["value_num"] * long["kg_per_unit"]).to_numpy())
    i10, i25 = sp_index["PM10"], sp_index["PM2_5"]
    codes, controls = pd.factorize(act["control"])
    rem10 = np.array([remaining[c]["PM10"] for c in controls])[codes]
    rem25 = np.array([remaining[c]["PM2_5"] for c in controls])[codes]
    coarse = np.clip(unc[:, i10] - unc[:, i25], 0.0, None)
    has_both = (unc[:, i10] > 0) & (unc[:, i25] > 0)
    values[has_both, i10] = (unc[has_both, i25] * rem25[has_both]
                             + coarse[has_both] * rem10[has_both])


def check_finite(table: pd.DataFrame, act: pd.DataFrame) -> None:
    """Every emission a finite number: activity × factor beyond the float range (1.8e308 kg)
    is an :class:`ActivityError` naming the source, never an ``inf`` in the ledger."""
    bad = ~np.isfinite(table.to_numpy())
    if bad.any():
        i, j = (int(k[0]) for k in np.nonzero(bad))
        r = act.iloc[i]
        raise ActivityError(r["input_file"], f"{table.columns[j]} emission is not a finite "
                            "number (activity × emission factor overflows)",
                            row=int(r["input_row"]), column="activity", value=r["activity"],
                            source_id=str(r["source_id"]), expected="an activity and factor "
                            "whose product is below 1.8e308 kg; check the value and its unit")


def split_co2(values: np.ndarray, act: pd.DataFrame, library: FactorLibrary,
              registry: SpeciesRegistry, sp_index: dict[str, int]) -> None:
    """Fossil and biogenic CO2 of every source from its total CO2 and its fuel's biogenic
    carbon fraction (in place; nothing without a ``co2_split``)."""
    if registry.co2_split is None:
        return
    total, fossil, bio = registry.co2_split
    given = library.factors[library.factors["species"].isin(registry.split_parts)]
    if not given.empty:
        raise ConfigError(f"{library.paths.get('emission_factors')}: a factor row for "
                          f"{given['species'].iloc[0]} ({', '.join(given[KEY].iloc[0])}); "
                          f"{fossil} and {bio} are the parts of {total} split by the fuel's "
                          "biogenic_fraction in fuels.csv: give the total as a CO2 row")
    share = library.biogenic_fraction(act["fuel"])
    values[:, sp_index[bio]] = values[:, sp_index[total]] * share
    values[:, sp_index[fossil]] = values[:, sp_index[total]] * (1.0 - share)


def compute_emissions(activity: pd.DataFrame, library: FactorLibrary,
                      registry: SpeciesRegistry, *,
                      scale: pd.DataFrame | None = None) -> EmissionsResult:
    """Emissions of every species for every source, vectorised over sources.

    Parameters
    ----------
    activity : activity table (source_id, sector, fuel, technology, control, activity
        [activity_unit], optional reported_<species>_kg [kg])
    library : emission factors [per activity or per energy], control efficiencies [1], NCVs
    registry : the species registry (defines the columns and CO2e)
    scale : multipliers of the final emissions [1], index source_id, one column per species
        scaled; sources or species it does not list (and NaN cells) keep factor 1

    Returns
    -------
    EmissionsResult with ``table`` in kg/yr (float64, index ``source_id``, CO2e included).
    """
    species = registry.emitted
    act = activity[["source_id", *KEY, "control", "activity", "activity_unit", "input_file",
                    "input_row"]].reset_index(drop=True)
    act["_pos"] = np.arange(len(act))
    ef = library.factors[[*KEY, "species", "value_num", "unit", "reference"]]
    long = act.merge(ef, on=KEY, how="inner")

    # per (activity unit, factor unit, fuel) and per (control, species) group, not per row:
    # iterating strings row by row costs seconds on a city's half-million rows
    fuels = library.fuels.set_index("fuel")
    gid, first_rows = _groups(long, ["activity_unit", "unit", "fuel"])
    conv_kg, conv_ncv = [], []
    for i in first_rows:
        au, fu, fuel = (long[c].iloc[int(i)] for c in ("activity_unit", "unit", "fuel"))
        ncv = float(fuels.loc[fuel, "ncv_value"]) if fuel in fuels.index else None
        ncv_unit = fuels.loc[fuel, "ncv_unit"] if fuel in fuels.index else None
        first = long.iloc[int(i)]
        where = f"{first['input_file']} row {first['input_row']} ({first['source_id']})"
        try:
            kg, used = _conversion(au, fu, ncv, ncv_unit, where)
        except pint.errors.DimensionalityError as exc:  # pragma: no cover - _conversion checks
            raise UnitError(where, str(exc)) from exc
        conv_kg.append(kg)
        conv_ncv.append(used)
    long["kg_per_unit"] = np.asarray(conv_kg)[gid]
    long["ncv_used"] = np.asarray(conv_ncv, dtype=bool)[gid]

    remaining = {c: library.remaining_fraction(c, species) for c in act["control"].unique()}
    cid, first_rows = _groups(long, ["control", "species"])
    long["remaining"] = np.asarray([remaining[long["control"].iloc[int(i)]][
        long["species"].iloc[int(i)]] for i in first_rows])[cid]
    with np.errstate(over="ignore", invalid="ignore"):
        long["kg"] = (long["activity"] * long["value_num"] * long["kg_per_unit"]
                      * long["remaining"])

    sp_index = {s: i for i, s in enumerate(species)}
    values = np.zeros((len(act), len(species)))
    sp_codes = pd.Categorical(long["species"], categories=species).codes
    cells = (long["_pos"].to_numpy(), sp_codes.astype(np.int64))
    with np.errstate(over="ignore", invalid="ignore"):
        np.add.at(values, cells, long["kg"].to_numpy())
        if {"PM10", "PM2_5"} <= set(species):
            _size_resolved_pm10(values, long, cells, act, remaining, sp_index)
    long["reported"] = False
    for col in [c for c in activity.columns if c.startswith("reported_") and c.endswith("_kg")]:
        sp = col[len("reported_"):-len("_kg")]
        given = activity[col].to_numpy(dtype=float)
        mask = np.isfinite(given)
        values[mask, sp_index[sp]] = given[mask]
        rows = long["species"].eq(sp) & long["_pos"].isin(np.flatnonzero(mask))
        long.loc[rows, "reported"] = True
    if scale is not None:
        unknown = sorted(set(scale.columns) - set(species))
        if unknown:
            raise ValueError(f"scale has columns {unknown} that are not emitted species")
        for sp, col in scale.reindex(act["source_id"]).items():
            f = col.to_numpy(dtype=float)
            with np.errstate(over="ignore", invalid="ignore"):
                values[:, sp_index[sp]] *= np.where(np.isfinite(f), f, 1.0)
    parts = set(registry.split_parts)
    if parts & ({c[len("reported_"):-len("_kg")] for c in activity.columns
                 if c.startswith("reported_") and c.endswith("_kg")}
                | set(scale.columns if scale is not None else ())):
        raise ValueError(f"{sorted(parts)} follow from the total CO2 and cannot be reported or "
                         "scaled on their own; report or scale CO2")
    split_co2(values, act, library, registry, sp_index)
    table = pd.DataFrame(values, index=pd.Index(act["source_id"], name="source_id"),
                         columns=species)
    with np.errstate(over="ignore", invalid="ignore"):
        table = registry.add_co2e(table)
    check_finite(table, act)
    prov = long[["source_id", "species", "activity", "activity_unit", "value_num", "unit",
                 "ncv_used", "kg_per_unit", "remaining", "kg", "reported",
                 "reference"]].rename(
        columns={"value_num": "factor_value", "unit": "factor_unit",
                 "remaining": "control_remaining_fraction"})
    # one row per source × species: the repeated labels as categories (the roads' 614 000 rows
    # take 25 MB instead of 170 MB, and as little when a build caches or sends them)
    prov = prov.astype({c: "category" for c in PROVENANCE_LABELS})
    return EmissionsResult(table=table, provenance=prov)
