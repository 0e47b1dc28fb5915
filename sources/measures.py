"""Policy scenarios: their schema, and measures that change the activity (or factors) of sources.

A scenario (``config/scenarios/*.yaml``) names a base configuration, a base and a target year and
a list of *measures*. Measures act on the activity table of the base build, in the order listed,
each on the table the previous one left (the order is the documented way overlapping measures
interact: a coal cap after new wind capacity only binds if the wind did not already cut enough).
Emissions are then computed from the changed activity with the *same* factor library, so every
measure moves carbon and pollutants together.

Measure types (``type:``):

``scale``
    activity × ``factor``, or × ``(1 + annual_rate) ** (target_year − base_year)``.
``cap``
    scale the selection down uniformly so that its activity is at most ``limit`` × its activity
    in the base inventory (no change if it already is).
``shift``
    move a ``share`` (or an ``amount`` in activity units) of each selected source's activity to
    another fuel / technology / control; the new activity is ``activity_ratio`` × the moved
    activity, in ``activity_unit``; it stays where the source is, or moves onto the geometry of
    ``geometry_of`` (e.g. blast-furnace steel onto an electric-arc furnace). ``electricity``
    (per unit of new activity) is drawn from the grid.
``add_capacity``
    non-fossil (or other) generating capacity: ``(capacity_mw − base_capacity_mw) ×
    full_load_hours`` MWh displace grid electricity; with ``new_source`` the plant itself is added
    as a point source burning ``heat_rate`` × MWh of its fuel (biomass).
``control``
    ``set`` the control string of the selection, or ``add`` devices to it.
``emission_factor``
    multiply the selection's emissions of some species (a fuel standard): ``scale: {SO2: 0.5}``.

Grid electricity: a change in electricity demand (shifts with ``electricity``, capacity added)
changes the output of the scenario's ``grid_electricity.supplied_by`` plants. Only
``local_share`` of it is met in the domain (the rest is imported and outside a territorial
inventory); the local part scales the suppliers' fuel uniformly, converted with the fuel's NCV
(``fuels.csv``) and ``heat_rate`` (fuel energy per MWh sent out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pint
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from shapely.geometry import Point

from sources.errors import ConfigError, UnitError
from sources.factors import KEY, FactorLibrary
from sources.tables import FrozenModel, format_validation_error, read_yaml
from sources.units import Q_, parse_quantity, parse_unit

SELECT_COLUMNS = ("kind", "sector", "subsector", "fuel", "technology", "control")
ID = r"^[A-Za-z0-9_\-]+$"
#: activity columns in which ``emission_factor`` measures keep their factor per source (they
#: follow the rows through later measures; :func:`emission_scale` hands them on)
SCALE_PREFIX = "ef_scale_"


class ScenarioError(ConfigError):
    """A scenario that cannot be applied (names the scenario file and the measure)."""


def _as_list(value: Any) -> Any:
    if value is None or isinstance(value, list):
        return value
    return [value]


class Selection(FrozenModel):
    """Which sources a measure acts on: every given field must match (lists mean any of)."""

    source_id: list[str] | None = None
    kind: list[str] | None = None
    sector: list[str] | None = None
    subsector: list[str] | None = None
    fuel: list[str] | None = None
    technology: list[str] | None = None
    control: list[str] | None = None
    #: district codes (``district_code`` of the build's boundaries), by representative point
    district: list[str] | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        value = _as_list(value)
        return [str(v) for v in value] if value is not None else None

    def describe(self) -> str:
        parts = [f"{k}={'|'.join(v)}" for k, v in self.model_dump().items() if v]
        return ", ".join(parts) or "all sources"

    def mask(self, act: pd.DataFrame, districts: np.ndarray | None) -> np.ndarray:
        keep = np.ones(len(act), dtype=bool)
        for col in ("source_id", *SELECT_COLUMNS):
            wanted = getattr(self, col)
            if wanted is not None:
                keep &= act[col].astype(str).isin(wanted).to_numpy()
        if self.district is not None:
            if districts is None:
                raise ConfigError("a measure selects by district but the base configuration has "
                                  "no 'boundaries' file with district_code")
            keep &= np.isin(districts, self.district)
        return keep


class _Measure(FrozenModel):
    id: str = Field(pattern=ID)
    title: str
    #: the plan's clause this measure encodes (document, section, target as written)
    clause: str = Field(min_length=1)
    note: str | None = None
    select: Selection = Selection()


class ScaleMeasure(_Measure):
    type: Literal["scale"]
    factor: float | None = Field(None, ge=0)
    annual_rate: float | None = Field(None, gt=-1)

    @model_validator(mode="after")
    def _one(self) -> ScaleMeasure:
        if (self.factor is None) == (self.annual_rate is None):
            raise ValueError("give exactly one of 'factor' and 'annual_rate'")
        return self


class CapMeasure(_Measure):
    type: Literal["cap"]
    #: at most this fraction of the selection's base-inventory activity
    limit: float = Field(ge=0)


class ShiftTarget(FrozenModel):
    sector: str | None = None
    subsector: str | None = None
    fuel: str | None = None
    technology: str | None = None
    control: str | None = None
    activity_unit: str | None = None
    #: new activity per unit of moved activity (1 t steel → 1 t steel; 1 t fuel → 4.5 MWh)
    activity_ratio: float = Field(1.0, gt=0)
    #: put the moved activity on this base source's geometry (kind and location)
    geometry_of: str | None = None
    #: electricity drawn from the grid per unit of *new* activity, e.g. "0.15 kWh/km"
    electricity: str | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> ShiftTarget:
        if not any((self.sector, self.fuel, self.technology, self.control, self.subsector)):
            raise ValueError("'to' must change at least one of sector, subsector, fuel, "
                             "technology, control")
        return self


class ShiftMeasure(_Measure):
    type: Literal["shift"]
    share: float | None = Field(None, gt=0, le=1)
    #: absolute activity moved (in the selection's activity unit), spread pro rata
    amount: float | None = Field(None, gt=0)
    to: ShiftTarget

    @model_validator(mode="after")
    def _one(self) -> ShiftMeasure:
        if (self.share is None) == (self.amount is None):
            raise ValueError("give exactly one of 'share' and 'amount'")
        return self


class NewSource(FrozenModel):
    source_id: str = Field(pattern=ID)
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    sector: str
    subsector: str = ""
    fuel: str
    technology: str
    control: str = "none"
    #: fuel energy per MWh sent out, e.g. "12 GJ/MWh"
    heat_rate: str
    stack_height_m: float | None = Field(None, gt=0)
    stack_diameter_m: float | None = Field(None, gt=0)
    exit_temp_k: float | None = Field(None, gt=0)
    exit_velocity_m_s: float | None = Field(None, gt=0)


class AddCapacityMeasure(_Measure):
    type: Literal["add_capacity"]
    capacity_mw: float = Field(gt=0)
    #: capacity already in the base year (its output is in the base inventory's electricity)
    base_capacity_mw: float = Field(0.0, ge=0)
    full_load_hours: float = Field(gt=0, le=8784)
    new_source: NewSource | None = None

    @model_validator(mode="after")
    def _adds(self) -> AddCapacityMeasure:
        if self.base_capacity_mw > self.capacity_mw:
            raise ValueError(f"base_capacity_mw {self.base_capacity_mw} exceeds capacity_mw "
                             f"{self.capacity_mw}: use a smaller target or a scale measure")
        return self

    @property
    def added_mwh(self) -> float:
        return (self.capacity_mw - self.base_capacity_mw) * self.full_load_hours


class ControlMeasure(_Measure):
    type: Literal["control"]
    set: str | None = None
    add: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ControlMeasure:
        if (self.set is None) == (self.add is None):
            raise ValueError("give exactly one of 'set' and 'add'")
        return self


class FactorMeasure(_Measure):
    type: Literal["emission_factor"]
    scale: dict[str, float]

    @field_validator("scale")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(v < 0 for v in value.values()):
            raise ValueError("'scale' maps species to factors >= 0, e.g. {SO2: 0.5}")
        return value


Measure = Annotated[ScaleMeasure | CapMeasure | ShiftMeasure | AddCapacityMeasure
                    | ControlMeasure | FactorMeasure, Field(discriminator="type")]


class GridElectricity(FrozenModel):
    supplied_by: Selection
    local_share: float = Field(1.0, ge=0, le=1)
    #: fuel → fuel energy per MWh sent out ("303 gce/kWh", "6.5 GJ/MWh")
    heat_rate: dict[str, str]
    reference: str = ""


class NotModelled(FrozenModel):
    clause: str
    reason: str


class Scenario(FrozenModel):
    name: str = Field(pattern=ID)
    title: str
    #: the plan (document, number, date) the measures cite
    reference: str
    base_config: Path
    base_year: int
    target_year: int
    grid_electricity: GridElectricity | None = None
    measures: list[Measure] = Field(default_factory=list)
    not_modelled: list[NotModelled] = Field(default_factory=list)
    path: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        ids = [m.id for m in self.measures]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"measure ids must be unique; repeated: {dup}")
        if self.target_year < self.base_year:
            raise ValueError(f"target_year {self.target_year} is before base_year "
                             f"{self.base_year}")
        return self


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML; ``base_config`` is relative to the file."""
    path = Path(path)
    doc = read_yaml(path, "scenario")
    if isinstance(doc.get("base_config"), str) and not Path(doc["base_config"]).is_absolute():
        doc["base_config"] = str((path.parent / doc["base_config"]).resolve())
    doc["path"] = str(path.resolve())
    try:
        sc = Scenario.model_validate(doc)
    except ValidationError as exc:
        def where(loc: Sequence[Any]) -> str:
            """A measure by its index and id (and without pydantic's tag of its type)."""
            if len(loc) < 2 or loc[0] != "measures" or not isinstance(loc[1], int):
                return ".".join(str(p) for p in loc)
            raw = (doc.get("measures") or [])[loc[1]]
            mid = raw.get("id") if isinstance(raw, dict) else None
            rest = list(loc[2:])
            if rest and isinstance(raw, dict) and rest[0] == raw.get("type"):
                rest = rest[1:]
            return f"measures[{loc[1]}]" + (f" (id {mid})" if mid else "") + (
                "." + ".".join(str(p) for p in rest) if rest else "")

        raise ScenarioError(format_validation_error(path, "scenario", exc, where=where)) from exc
    if not sc.base_config.exists():
        raise ScenarioError(f"{path}: base_config {sc.base_config} does not exist")
    return sc


# --------------------------------------------------------------------------------------------
# applying measures
# --------------------------------------------------------------------------------------------

@dataclass
class MeasureEffect:
    """What one measure did, besides the activity table."""

    measure_id: str
    changes: pd.DataFrame  # source_id measure activity_before activity_after activity_unit note
    demand_mwh: float = 0.0  # electricity demand change at consumers (+ more)
    local_mwh: float = 0.0  # change met by the supplying plants in the domain
    imported_mwh: float = 0.0
    added_generation_mwh: float = 0.0  # new (non-fossil) capacity output


@dataclass
class Applier:
    """Applies measures to activity tables of one base inventory.

    ``base`` is the base activity table (grid CRS) and must carry ``parent_pos`` (its own row
    positions; the allocation of a derived row is that of its parent) and ``origin``.
    """

    scenario: Scenario
    base: gpd.GeoDataFrame
    library: FactorLibrary
    species: list[str]
    districts: np.ndarray | None = None  # district code per base row (by representative point)
    _ids: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = {s: i for i, s in enumerate(self.base["source_id"])}
        keys = self.library.keys
        self._keys = set(map(tuple, keys[KEY].to_numpy()))

    # ---- helpers ----------------------------------------------------------------------------
    def _where(self, m: Any) -> str:
        return f"{self.scenario.path}: measure {m.id!r}"

    def _districts_of(self, act: pd.DataFrame) -> np.ndarray | None:
        if self.districts is None:
            return None
        pos = act["parent_pos"].to_numpy()
        out = np.full(len(act), "", dtype=object)
        ok = pos >= 0
        out[ok] = self.districts[pos[ok]]
        return out

    def _mask(self, m: Any, act: pd.DataFrame) -> np.ndarray:
        try:
            mask = m.select.mask(act, self._districts_of(act))
        except ConfigError as exc:
            raise ScenarioError(f"{self._where(m)}: {exc}") from exc
        if not mask.any():
            raise ScenarioError(f"{self._where(m)} selects no source ({m.select.describe()}); "
                                "check the spelling against sources.csv of the base build")
        return mask

    def _single_unit(self, m: Any, act: pd.DataFrame, mask: np.ndarray) -> str:
        units = sorted(set(act.loc[mask, "activity_unit"]))
        if len(units) != 1:
            raise ScenarioError(f"{self._where(m)}: the selection mixes activity units {units}; "
                                "an amount or a cap needs one unit; narrow the selection")
        return units[0]

    def _check_key(self, m: Any, key: tuple[str, str, str], control: str) -> None:
        if key not in self._keys:
            raise ScenarioError(
                f"{self._where(m)}: (sector, fuel, technology) = {key} has no emission factors "
                f"in {self.library.paths.get('emission_factors', 'emission_factors.csv')}; add its rows "
                "(a zero factor where the technology emits nothing)")
        unknown = self.library.unknown_devices(control)
        if unknown:
            raise ScenarioError(f"{self._where(m)}: control devices {unknown} are not in the "
                                "control-efficiency table")

    @staticmethod
    def _scale_rows(act: pd.DataFrame, mask: np.ndarray, factor: np.ndarray | float) -> None:
        """Scale activity (and reported emissions, which follow their activity) in place."""
        f = np.broadcast_to(np.asarray(factor, dtype=float), (int(mask.sum()),))
        act.loc[mask, "activity"] = act.loc[mask, "activity"].to_numpy() * f
        for col in [c for c in act.columns if c.startswith("reported_") and c.endswith("_kg")]:
            act.loc[mask, col] = act.loc[mask, col].to_numpy(dtype=float) * f

    def _energy_gj(self, unit: str, fuel: str, where: str) -> float:
        """GJ per unit of activity of ``fuel`` (via its NCV when the unit is not energy)."""
        q = Q_(1.0, parse_unit(unit))
        if q.check("[energy]"):
            return float(q.to("GJ").magnitude)
        fuels = self.library.fuels.set_index("fuel")
        if fuel not in fuels.index:
            raise ScenarioError(f"{where}: fuel {fuel!r} has no calorific value in fuels.csv")
        e = q * Q_(float(fuels.loc[fuel, "ncv_value"]), parse_unit(fuels.loc[fuel, "ncv_unit"]))
        if not e.check("[energy]"):
            raise ScenarioError(f"{where}: {unit} × NCV of {fuel} is not an energy")
        return float(e.to("GJ").magnitude)

    def _heat_rate_gj_per_mwh(self, text: str, where: str) -> float:
        try:
            return float(parse_quantity(text).to("GJ/MWh").magnitude)
        except (UnitError, pint.errors.DimensionalityError) as exc:
            raise ScenarioError(f"{where}: heat rate {text!r} is not an energy per energy "
                                f"(e.g. '303 gce/kWh' or '8.9 GJ/MWh'): {exc}") from exc

    def _electricity(self, act: pd.DataFrame, demand_mwh: float, m: Any,
                     effect: MeasureEffect) -> None:
        """Let the supplying plants meet ``local_share`` of a demand change (in place)."""
        effect.demand_mwh += demand_mwh
        if demand_mwh == 0:
            return
        ge = self.scenario.grid_electricity
        if ge is None:
            raise ScenarioError(f"{self._where(m)} changes grid electricity by {demand_mwh:.6g} "
                                "MWh but the scenario has no 'grid_electricity' section")
        local = demand_mwh * ge.local_share
        effect.local_mwh += local
        effect.imported_mwh += demand_mwh - local
        if local == 0:
            return
        where = f"{self.scenario.path}: grid_electricity"
        # sources this measure created (a new biomass plant) do not displace themselves
        mask = ge.supplied_by.mask(act, self._districts_of(act)) & (
            act["origin"].to_numpy() != m.id)
        if not mask.any():
            raise ScenarioError(f"{where}: supplied_by selects no source "
                                f"({ge.supplied_by.describe()})")
        sub = act.loc[mask]
        gen = np.zeros(len(sub))
        for (unit, fuel), idx in sub.groupby(["activity_unit", "fuel"]).indices.items():
            if fuel not in ge.heat_rate:
                raise ScenarioError(f"{where}: no heat_rate for fuel {fuel!r} of the supplying "
                                    f"plants; give one for each of {sorted(set(sub['fuel']))}")
            hr = self._heat_rate_gj_per_mwh(ge.heat_rate[fuel], where)
            gen[idx] = sub["activity"].to_numpy()[idx] * self._energy_gj(unit, fuel, where) / hr
        total = float(gen.sum())
        factor = 1.0 + local / total if total > 0 else -1.0
        if factor < 0:
            raise ScenarioError(f"{self._where(m)}: takes {-local:.6g} MWh from the local "
                                f"supplying plants, which generate only {total:.6g} MWh "
                                "(after the measures before it)")
        before = act.loc[mask, "activity"].to_numpy().copy()
        self._scale_rows(act, mask, factor)
        self._log(effect, act.loc[mask, "source_id"], before, act.loc[mask, "activity"],
                  act.loc[mask, "activity_unit"], f"grid electricity {local:+.6g} MWh")

    @staticmethod
    def _log(effect: MeasureEffect, ids: Any, before: Any, after: Any, units: Any,
             note: str) -> None:
        effect.changes = pd.concat([effect.changes, pd.DataFrame({
            "source_id": np.asarray(ids), "measure": effect.measure_id,
            "activity_before": np.asarray(before, dtype=float),
            "activity_after": np.asarray(after, dtype=float),
            "activity_unit": np.asarray(units), "note": note})], ignore_index=True)

    # ---- measures ---------------------------------------------------------------------------
    def apply(self, act: gpd.GeoDataFrame, m: Any) -> tuple[gpd.GeoDataFrame, MeasureEffect]:
        """Apply measure ``m`` to (a copy of) ``act``."""
        act = act.copy()
        effect = MeasureEffect(m.id, pd.DataFrame(columns=["source_id", "measure",
                                                            "activity_before", "activity_after",
                                                            "activity_unit", "note"]))
        handler = getattr(self, f"_apply_{m.type}")
        act = handler(act, m, effect)
        return act, effect

    def _apply_scale(self, act, m: ScaleMeasure, effect):
        mask = self._mask(m, act)
        years = self.scenario.target_year - self.scenario.base_year
        factor = m.factor if m.factor is not None else (1.0 + m.annual_rate) ** years
        before = act.loc[mask, "activity"].to_numpy().copy()
        self._scale_rows(act, mask, factor)
        self._log(effect, act.loc[mask, "source_id"], before, act.loc[mask, "activity"],
                  act.loc[mask, "activity_unit"], f"× {factor:.6g}")
        return act

    def _apply_cap(self, act, m: CapMeasure, effect):
        mask = self._mask(m, act)
        unit = self._single_unit(m, act, mask)
        base_mask = m.select.mask(self.base, self.districts)
        base_units = set(self.base.loc[base_mask, "activity_unit"])
        if base_units - {unit}:
            raise ScenarioError(f"{self._where(m)}: base activity is in {sorted(base_units)}, "
                                f"now in {unit}")
        allowed = m.limit * float(self.base.loc[base_mask, "activity"].sum())
        now = float(act.loc[mask, "activity"].sum())
        if now <= allowed or now == 0:
            return act  # not binding
        before = act.loc[mask, "activity"].to_numpy().copy()
        self._scale_rows(act, mask, allowed / now)
        self._log(effect, act.loc[mask, "source_id"], before, act.loc[mask, "activity"],
                  act.loc[mask, "activity_unit"], f"cap {m.limit:g} × base: × {allowed / now:.6g}")
        return act

    def _apply_control(self, act, m: ControlMeasure, effect):
        mask = self._mask(m, act)
        rep = [c for c in act.columns if c.startswith("reported_") and c.endswith("_kg")]
        if rep and np.isfinite(act.loc[mask, rep].to_numpy(dtype=float)).any():
            ids = act.loc[mask].loc[np.isfinite(act.loc[mask, rep].to_numpy(dtype=float)).any(
                axis=1), "source_id"].tolist()
            raise ScenarioError(f"{self._where(m)}: sources {ids[:5]} carry reported emissions, "
                                "which a control change cannot recompute; exclude them from the "
                                "selection")
        old = act.loc[mask, "control"].astype(str)
        if m.set is not None:
            new = pd.Series(m.set, index=old.index)
        else:
            adds = m.add.split("+")
            new = old.map(lambda c: "+".join(
                [d for d in c.split("+") if d != "none"] + [d for d in adds
                                                           if d not in c.split("+")]) or "none")
        for c in set(new):
            unknown = self.library.unknown_devices(c)
            if unknown:
                raise ScenarioError(f"{self._where(m)}: control devices {unknown} are not in the "
                                    "control-efficiency table")
        act.loc[mask, "control"] = new.to_numpy()
        a = act.loc[mask, "activity"]
        self._log(effect, act.loc[mask, "source_id"], a, a, act.loc[mask, "activity_unit"],
                  "control " + (f"set {m.set}" if m.set else f"add {m.add}"))
        return act

    def _apply_emission_factor(self, act, m: FactorMeasure, effect):
        mask = self._mask(m, act)
        unknown = sorted(set(m.scale) - set(self.species))
        if unknown:
            raise ScenarioError(f"{self._where(m)}: unknown species {unknown}; known: "
                                f"{self.species}")
        for sp, f in m.scale.items():
            col = f"{SCALE_PREFIX}{sp}"
            if col not in act.columns:
                act[col] = 1.0
            act.loc[mask, col] = act.loc[mask, col].to_numpy(dtype=float) * f
        a = act.loc[mask, "activity"]
        self._log(effect, act.loc[mask, "source_id"], a, a, act.loc[mask, "activity_unit"],
                  "emission factor × " + ", ".join(f"{k} {v:g}" for k, v in m.scale.items()))
        return act

    def _apply_shift(self, act, m: ShiftMeasure, effect):
        mask = self._mask(m, act)
        to = m.to
        sel = act.loc[mask]
        if m.share is not None:
            share = np.full(len(sel), m.share)
        else:
            self._single_unit(m, act, mask)
            total = float(sel["activity"].sum())
            if m.amount > total * (1 + 1e-12):
                raise ScenarioError(f"{self._where(m)}: amount {m.amount:.6g} exceeds the "
                                    f"selection's activity {total:.6g}")
            share = np.full(len(sel), min(m.amount / total, 1.0))
        moved = sel["activity"].to_numpy() * share
        new = sel.copy()
        for col in ("sector", "subsector", "fuel", "technology", "control"):
            if getattr(to, col) is not None:
                new[col] = getattr(to, col)
        if to.activity_unit is not None:
            try:
                parse_unit(to.activity_unit)
            except UnitError as exc:
                raise ScenarioError(f"{self._where(m)}: to.activity_unit: {exc}") from exc
            new["activity_unit"] = to.activity_unit
        new["activity"] = moved * to.activity_ratio
        new["source_id"] = sel["source_id"].astype(str) + "~" + m.id
        new["origin"] = m.id
        for col in [c for c in new.columns if c.startswith("reported_") and c.endswith("_kg")]:
            new[col] = np.nan  # computed from factors from now on
        if to.geometry_of is not None:
            if to.geometry_of not in self._ids:
                raise ScenarioError(f"{self._where(m)}: geometry_of {to.geometry_of!r} is not a "
                                    "source of the base inventory")
            host = self.base.iloc[self._ids[to.geometry_of]]
            new["geometry"] = host.geometry
            new["kind"] = host["kind"]
            new["parent_pos"] = self._ids[to.geometry_of]
            for col in ("stack_height_m", "stack_diameter_m", "exit_temp_k",
                        "exit_velocity_m_s", "proxy"):
                if col in new.columns:
                    new[col] = host.get(col)
        for key in set(map(tuple, new[KEY].to_numpy())):
            ctl = set(new.loc[(new[KEY].to_numpy() == key).all(axis=1), "control"])
            for c in ctl:
                self._check_key(m, key, c)
        clash = set(new["source_id"]) & set(act["source_id"])
        if clash:
            raise ScenarioError(f"{self._where(m)}: creates source ids that exist already "
                                f"({sorted(clash)[:3]}); measure ids must differ")
        before = sel["activity"].to_numpy()
        self._scale_rows(act, mask, 1.0 - share)
        self._log(effect, sel["source_id"], before, act.loc[mask, "activity"],
                  sel["activity_unit"], f"shift {m.share if m.share else 'amount'} out")
        self._log(effect, new["source_id"], np.zeros(len(new)), new["activity"],
                  new["activity_unit"], "shifted in")
        act = gpd.GeoDataFrame(pd.concat([act, new], ignore_index=True), geometry="geometry",
                               crs=act.crs)
        if to.electricity is not None:
            per_unit = self._per_unit_mwh(to.electricity, new["activity_unit"].iloc[0], m)
            self._electricity(act, float(new["activity"].sum()) * per_unit, m, effect)
        return act

    def _per_unit_mwh(self, text: str, unit: str, m: Any) -> float:
        try:
            q = parse_quantity(text) * Q_(1.0, parse_unit(unit))
            return float(q.to("MWh").magnitude)
        except (UnitError, pint.errors.DimensionalityError) as exc:
            raise ScenarioError(f"{self._where(m)}: electricity {text!r} per {unit} is not an "
                                "energy per unit of the new activity (e.g. '0.15 kWh/km'): "
                                f"{exc}") from exc

    def _apply_add_capacity(self, act, m: AddCapacityMeasure, effect):
        mwh = m.added_mwh
        effect.added_generation_mwh += mwh
        if m.new_source is not None:
            ns = m.new_source
            if ns.source_id in set(act["source_id"]):
                raise ScenarioError(f"{self._where(m)}: new_source id {ns.source_id!r} exists")
            fuel_unit = "t"
            where = self._where(m)
            gj = mwh * self._heat_rate_gj_per_mwh(ns.heat_rate, where)
            per_t = self._energy_gj(fuel_unit, ns.fuel, where)
            self._check_key(m, (ns.sector, ns.fuel, ns.technology), ns.control)
            geom = gpd.GeoSeries([Point(ns.lon, ns.lat)], crs="EPSG:4326").to_crs(act.crs)
            row = {c: None for c in act.columns}
            row.update({"source_id": ns.source_id, "kind": "point", "sector": ns.sector,
                        "subsector": ns.subsector, "fuel": ns.fuel, "technology": ns.technology,
                        "control": ns.control, "activity": gj / per_t, "activity_unit": fuel_unit,
                        "input_file": str(self.scenario.path), "input_row": 0,
                        "geometry": geom.iloc[0], "parent_pos": -1, "origin": m.id})
            for col in ("stack_height_m", "stack_diameter_m", "exit_temp_k", "exit_velocity_m_s"):
                row[col] = getattr(ns, col)
            for col in [c for c in act.columns if c.startswith("reported_")]:
                row[col] = np.nan
            for col in [c for c in act.columns if c.startswith(SCALE_PREFIX)]:
                row[col] = 1.0
            new = gpd.GeoDataFrame([row], geometry="geometry", crs=act.crs)
            act = gpd.GeoDataFrame(pd.concat([act, new.astype(act.dtypes.to_dict(),
                                                              errors="ignore")],
                                             ignore_index=True), geometry="geometry", crs=act.crs)
            self._log(effect, [ns.source_id], [0.0], [gj / per_t], [fuel_unit],
                      f"new plant {m.capacity_mw - m.base_capacity_mw:g} MW × "
                      f"{m.full_load_hours:g} h")
        self._electricity(act, -mwh, m, effect)
        return act


def emission_scale(act: pd.DataFrame) -> pd.DataFrame | None:
    """The factor multipliers ``emission_factor`` measures set on ``act`` (index source_id, one
    column per species scaled), for :func:`sources.emissions.compute_emissions`'s ``scale``;
    None when no measure scaled a factor."""
    cols = [c for c in act.columns if c.startswith(SCALE_PREFIX)]
    if not cols:
        return None
    out = pd.DataFrame({c[len(SCALE_PREFIX):]: act[c].to_numpy(dtype=float) for c in cols})
    return out.set_axis(pd.Index(act["source_id"].to_numpy(), name="source_id"))


def prepare_base(activity: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The base activity with the bookkeeping columns measures use."""
    base = activity.copy()
    base["parent_pos"] = np.arange(len(base), dtype=np.int64)
    base["origin"] = "base"
    return base
