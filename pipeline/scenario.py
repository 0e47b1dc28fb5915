"""Scenario inventories and the synergy assessment (协同增效评估), as plain functions.

:func:`run_scenario` applies a scenario's measures (:mod:`sources.measures`) to the base activity,
computes emissions with the same factor library after every measure, grids them by *reusing the
base allocation* (a derived source has its parent's column; only sources a measure creates are
allocated anew) and returns:

- the final activity (the scenario inventory, which the flow writes like any build);
- per measure, the change it makes in sequence (these sum exactly to the combined change) and
  alone (applied by itself to the base); the difference between the combined change and the sum
  of single-measure changes is the *interaction* of overlapping measures;
- gridded differences per measure and combined (kg/yr per cell and species).

``synergy.csv`` has one row per measure and basis plus ``combined``, ``sum_of_alone`` and
``interaction``: Δ of every species in t/yr (scenario − base: negative = avoided), the grid
electricity changes in MWh, and the co-benefit ratios ``t pollutant avoided per kt CO2
avoided`` (ΔP [t] / ΔCO2 [kt]; positive when both fall, negative for a trade-off, empty when
CO2 does not change). The CO2 of the ratios is fossil CO2 (``delta_CO2_fossil_t`` where the
registry splits CO2, as CO2e counts it): a measure that moves coal to biomass avoids fossil CO2
although the total CO2 changes little.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from grids.allocate import Allocation, allocate
from grids.regions import read_regions, region_of_points
from pipeline.cube import annual_grid
from pipeline.writers.netcdf_cf import write_grid_dataset
from sources.emissions import EmissionsResult, compute_emissions
from sources.errors import ConfigError
from sources.measures import Applier, MeasureEffect, Scenario, emission_scale, prepare_base

KG_PER_T = 1e3


@dataclass
class ScenarioRun:
    """Everything a scenario produced in memory."""

    scenario: Scenario
    base: gpd.GeoDataFrame
    final: gpd.GeoDataFrame
    emissions: EmissionsResult  # of the final activity
    allocation: Allocation  # of the final activity
    base_grid: xr.DataArray  # (species, y, x) kg/yr, all sectors
    difference: xr.DataArray  # (measure, species, y, x) kg/yr; 'combined' last
    synergy: pd.DataFrame
    changes: pd.DataFrame  # activity changes per measure and source
    #: per synergy row (measure, basis): the activity before and after the measure (for the
    #: uncertainty of each Δ drawn with common random numbers, pipeline.uncertainty)
    states: list[tuple[str, str, gpd.GeoDataFrame, gpd.GeoDataFrame]] = field(
        default_factory=list)


class _AllocationCache:
    """The base allocation plus columns for sources that measures create (each allocated once)."""

    def __init__(self, base: Allocation, grid: Any, proxies: dict) -> None:
        self.base = base
        self.grid = grid
        self.proxies = proxies
        self.extra: dict[str, tuple[sp.csr_matrix, float]] = {}
        self.allocated_new = 0

    def for_activity(self, act: gpd.GeoDataFrame) -> Allocation:
        pos = act["parent_pos"].to_numpy()
        new = act.loc[pos < 0]
        todo = new.loc[~new["source_id"].isin(self.extra)]
        if len(todo):
            alloc = allocate(todo.drop(columns=["parent_pos", "origin"]), self.grid, self.proxies)
            for j, sid in enumerate(todo["source_id"]):
                self.extra[sid] = (alloc.matrix[:, j], float(alloc.outside_fraction[j]))
            self.allocated_new += len(todo)
        ext_ids = list(self.extra)
        where = {sid: self.base.matrix.shape[1] + k for k, sid in enumerate(ext_ids)}
        ext = sp.hstack([self.base.matrix, *[self.extra[s][0] for s in ext_ids]], format="csc")
        ext_out = np.concatenate([self.base.outside_fraction,
                                  [self.extra[s][1] for s in ext_ids]])
        idx = pos.copy()
        for j in np.flatnonzero(pos < 0):
            idx[j] = where[act["source_id"].iloc[j]]
        matrix, outside = ext[:, idx].tocsr(), ext_out[idx]
        fallback = tuple(s for s in self.base.fallback if s in set(act["source_id"]))
        return Allocation(matrix=matrix, source_ids=act["source_id"].to_numpy(),
                          outside_fraction=outside, fallback=fallback)


def _totals(em: EmissionsResult) -> pd.Series:
    return em.table.sum()


def _grid_total(alloc: Allocation, em: EmissionsResult, act: gpd.GeoDataFrame, grid: Any
                ) -> np.ndarray:
    """(species, y, x) kg/yr over all sectors."""
    species = list(em.table.columns)
    g = annual_grid(alloc.matrix, em.table, np.full(len(act), "all"), grid, species, ["all"])
    return g.isel(sector=0).to_numpy()


def run_scenario(scenario: Scenario, activity: gpd.GeoDataFrame, base_alloc: Allocation,
                 tables: Any, boundaries: Path | None) -> ScenarioRun:
    """Apply the measures in order and alone; emissions, grids and the synergy table."""
    registry, library, grid = tables.registry, tables.library, tables.grid
    base = prepare_base(activity)
    districts = read_regions(boundaries, invent_codes=False)  # a selection needs real codes
    applier = Applier(scenario=scenario, base=base, library=library, species=registry.emitted,
                      districts=None if districts is None else region_of_points(base, districts))
    cache = _AllocationCache(base_alloc, grid, tables.proxies)

    def emissions(act: gpd.GeoDataFrame) -> EmissionsResult:
        return compute_emissions(act, library, registry, scale=emission_scale(act))

    base_em = emissions(base)
    base_tot = _totals(base_em)
    base_grid = _grid_total(base_alloc, base_em, base, grid)
    species = list(base_em.table.columns)

    rows: list[dict[str, Any]] = []
    diffs: list[np.ndarray] = []
    changes: list[pd.DataFrame] = []
    state, state_tot, state_grid = base, base_tot, base_grid
    seq_effects: list[MeasureEffect] = []
    states: list[tuple[str, str, gpd.GeoDataFrame, gpd.GeoDataFrame]] = []
    for m in scenario.measures:
        before = state
        state, effect = applier.apply(state, m)
        states.append((m.id, "sequential", before, state))
        em = emissions(state)
        alloc = cache.for_activity(state)
        tot = _totals(em)
        g = _grid_total(alloc, em, state, grid)
        rows.append(_row(m, "sequential", tot - state_tot, effect))
        diffs.append(g - state_grid)
        changes.append(effect.changes)
        seq_effects.append(effect)
        state_tot, state_grid = tot, g
        alone, a_effect = applier.apply(base, m)
        states.append((m.id, "alone", base, alone))
        rows.append(_row(m, "alone", _totals(emissions(alone)) - base_tot, a_effect))

    final_em = emissions(state)
    final_alloc = cache.for_activity(state)
    combined = final_em.table.sum() - base_tot
    rows.append(_summary_row("combined", combined, seq_effects))
    alone_rows = [r for r in rows if r["basis"] == "alone"]
    sum_alone = pd.Series({sp: sum(r[f"delta_{sp}_t"] for r in alone_rows) for sp in species})
    rows.append(_summary_row("sum_of_alone", sum_alone * KG_PER_T, [], alone_rows))
    inter = {sp: combined[sp] / KG_PER_T - sum_alone[sp] for sp in species}
    rows.append(_summary_row("interaction", pd.Series(inter) * KG_PER_T, []))
    synergy = _ratios(pd.DataFrame(rows), species, registry)

    measure_ids = [m.id for m in scenario.measures] + ["combined"]
    total_diff = state_grid - base_grid
    stack = np.stack([*diffs, total_diff]) if diffs else total_diff[None]
    difference = xr.DataArray(stack, dims=("measure", "species", "y", "x"),
                              coords={"measure": measure_ids, "species": species, "y": grid.y,
                                      "x": grid.x}, name="emission_difference")
    base_da = xr.DataArray(base_grid, dims=("species", "y", "x"),
                           coords={"species": species, "y": grid.y, "x": grid.x})
    change_table = (pd.concat(changes, ignore_index=True) if changes
                    else pd.DataFrame(columns=["source_id", "measure", "activity_before",
                                               "activity_after", "activity_unit", "note"]))
    return ScenarioRun(scenario=scenario, base=base, final=state, emissions=final_em,
                       allocation=final_alloc, base_grid=base_da, difference=difference,
                       synergy=synergy, changes=change_table,
                       states=[*states, ("combined", "combined", base, state)])


def _row(m: Any, basis: str, delta_kg: pd.Series, effect: MeasureEffect) -> dict[str, Any]:
    row: dict[str, Any] = {"measure": m.id, "basis": basis, "type": m.type, "title": m.title,
                           "clause": m.clause}
    row.update({f"delta_{sp}_t": float(v) / KG_PER_T for sp, v in delta_kg.items()})
    row.update({"grid_demand_mwh": effect.demand_mwh, "local_generation_mwh": effect.local_mwh,
                "imported_mwh": effect.imported_mwh,
                "added_generation_mwh": effect.added_generation_mwh})
    return row


def _summary_row(name: str, delta_kg: pd.Series, effects: list[MeasureEffect],
                 rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"measure": name, "basis": name, "type": "", "title": "", "clause": ""}
    row.update({f"delta_{sp}_t": float(v) / KG_PER_T for sp, v in delta_kg.items()})
    keys = ("grid_demand_mwh", "local_generation_mwh", "imported_mwh", "added_generation_mwh")
    attrs = ("demand_mwh", "local_mwh", "imported_mwh", "added_generation_mwh")
    for k, a in zip(keys, attrs, strict=True):
        if rows is not None:
            row[k] = sum(r[k] for r in rows)
        elif effects:
            row[k] = sum(getattr(e, a) for e in effects)
        else:
            row[k] = np.nan
    return row


def _ratios(df: pd.DataFrame, species: list[str], registry: Any) -> pd.DataFrame:
    """Co-benefit ratios: t of each pollutant per kt fossil CO2 (``CO2_fossil`` of the registry's
    ``co2_split``, the CO2 of CO2e; total CO2 for a registry without a split), both as changes
    (same sign = synergy)."""
    co2 = registry.co2_split[1] if registry.co2_split else "CO2"
    kt_co2 = df[f"delta_{co2}_t"] / 1e3
    for name in species:
        if registry.species[name].kind == "pollutant":
            r = df[f"delta_{name}_t"] / kt_co2.where(kt_co2 != 0)
            df[f"{name}_t_per_kt_CO2"] = r
    return df


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------

def write_scenario_files(run: ScenarioRun, build_dir: Path, static: dict[str, Any],
                         attrs: dict[str, Any]) -> None:
    """``synergy.csv``, ``difference.nc``, ``activity_changes.csv`` and ``scenario.yaml``."""
    run.synergy.to_csv(build_dir / "synergy.csv", index=False, float_format="%.9g")
    run.changes.to_csv(build_dir / "activity_changes.csv", index=False, float_format="%.9g")
    if run.scenario.path is not None:
        (build_dir / "scenario.yaml").write_bytes(Path(run.scenario.path).read_bytes())
    ds = xr.Dataset({
        "emission_difference": run.difference.astype("float64"),
        "base_emissions": run.base_grid.astype("float64")})
    ds["emission_difference"].attrs = {
        "long_name": "scenario minus base annual emissions per grid cell, per measure in the "
                     "order applied ('combined' = all measures)",
        "units": "kg year-1", "grid_mapping": "crs", "coordinates": "lat lon"}
    ds["base_emissions"].attrs = {"long_name": "base inventory annual emissions per grid cell",
                                  "units": "kg year-1", "grid_mapping": "crs",
                                  "coordinates": "lat lon"}
    sc = run.scenario
    shape = run.difference.shape
    enc = {"emission_difference": {"zlib": True, "complevel": 1,
                                   "chunksizes": (1, 1, *shape[2:])},
           "base_emissions": {"zlib": True, "complevel": 1, "chunksizes": (1, *shape[2:])}}
    write_grid_dataset(ds, build_dir / "difference.nc", static, {
        **attrs, "tongyuan_scenario": sc.name, "tongyuan_scenario_title": sc.title,
        "tongyuan_base_year": sc.base_year, "tongyuan_target_year": sc.target_year,
        "references": sc.reference}, enc, year=sc.base_year,
        annual=["emission_difference", "base_emissions"])


def check_base_year(scenario: Scenario, year: int) -> None:
    if scenario.base_year != year:
        raise ConfigError(f"{scenario.path}: base_year {scenario.base_year} differs from the "
                          f"year {year} of the base configuration {scenario.base_config}")
