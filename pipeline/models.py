"""Model-ready emissions: inventory species → mechanism species, in model layers, per hour.

The speciation table (``tables.speciation``, CSV) has one row per (mechanism, sector, pollutant,
model species) with the **mass fraction** of the inventory pollutant carried by that model species
and, for gases, the molar mass the profile uses to turn that mass into moles::

    mechanism,sector,pollutant,model_species,mass_fraction,molar_mass_g_mol,reference
    cb6r3_ae6,*,NOx,NO,0.9,46.0055,...           # NOx is NO2-equivalent mass
    cb6r3_ae6,road,NMVOC,TOL,0.083,92.14,...
    cb6r3_ae6,*,PM2_5,PEC,0.21,,...               # aerosol: no molar mass, grams

``sector = *`` is the default for sectors without rows of their own. Per (sector, pollutant) the
fractions must sum to 1 (to 1e-3; they are then scaled to exactly 1), so speciated PM equals
PM2.5 and VOC moles × the profile's molar masses equal the NMVOC mass. ``PMC`` is the coarse
fraction PM10 − PM2.5. Gases are written in mol, aerosols in g.

``annual[sector][model species, layer, cell]`` (mol or g per year) is built once from the
allocation matrix, the per-source emissions and the per-source layer fractions; an hour is
``Σ_sector factor[sector, hour] · annual[sector] / 3600`` (per second).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from grids.grid import Grid
from grids.vertical import Layers, briggs_rise, plume_bounds, sigma_to_heights
from sources.errors import ConfigError, InputError
from sources.validate import STACK_COLUMNS

#: derived pollutants of the speciation table: the first minus the others
DERIVED = {"PMC": ("PM10", "PM2_5"), "PM2_5_other": ("PM2_5", "BC", "OC")}


@dataclass(frozen=True)
class ModelSpecies:
    name: str
    pollutant: str          # the inventory (or derived) pollutant it comes from
    gas: bool               # mol (gas) or g (aerosol)

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


def _pollutant_value(row, p: str) -> float:
    if p in DERIVED:
        first, *rest = DERIVED[p]
        return float(row.get(first, 0.0)) - sum(float(row.get(r, 0.0)) for r in rest)
    return float(row.get(p, 0.0))


def load_speciation(path: str | Path, mechanism: str, emitted: list[str],
                    sectors: list[str]) -> Speciation:
    """Read and check the speciation table for ``mechanism``."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"sector": str}, comment="#")
    except (OSError, pd.errors.ParserError) as exc:
        raise InputError(path, f"cannot read the speciation table ({exc})") from exc
    need = ["mechanism", "sector", "pollutant", "model_species", "mass_fraction",
            "molar_mass_g_mol", "reference"]
    for col in need:
        if col not in df.columns:
            raise InputError(path, f"required column {col!r} is missing", column=col,
                             expected=f"columns {need}")
    df["input_row"] = np.arange(len(df)) + 1
    known = sorted(df["mechanism"].unique())
    df = df[df["mechanism"] == mechanism]
    if df.empty:
        raise ConfigError(f"{path}: no rows for mechanism {mechanism!r}; the table has {known}")
    allowed = set(emitted) | {d for d, parts in DERIVED.items() if set(parts) <= set(emitted)}
    for r in df.itertuples():
        if r.pollutant not in allowed:
            raise InputError(path, "unknown pollutant", row=int(r.input_row), column="pollutant",
                             value=r.pollutant, expected=f"one of {sorted(allowed)}")
        if r.sector != "*" and r.sector not in sectors:
            raise InputError(path, "unknown sector", row=int(r.input_row), column="sector",
                             value=r.sector, expected=f"'*' or one of {sorted(sectors)}")
        if not (np.isfinite(r.mass_fraction) and 0 <= r.mass_fraction <= 1):
            raise InputError(path, "mass fraction outside [0, 1]", row=int(r.input_row),
                             column="mass_fraction", value=r.mass_fraction)
        if pd.notna(r.molar_mass_g_mol) and not r.molar_mass_g_mol > 0:
            raise InputError(path, "molar mass must be positive", row=int(r.input_row),
                             column="molar_mass_g_mol", value=r.molar_mass_g_mol)
        if not isinstance(r.reference, str) or not r.reference.strip():
            raise InputError(path, "every row cites its source", row=int(r.input_row),
                             column="reference", expected="a citation")
    # one pollutant per model species, always a gas (with a molar mass) or always an aerosol;
    # lumped VOC species (PAR, OLE, ...) have profile-specific molar masses
    species: dict[str, ModelSpecies] = {}
    for r in df.itertuples():
        m = ModelSpecies(r.model_species, r.pollutant, bool(pd.notna(r.molar_mass_g_mol)))
        old = species.setdefault(r.model_species, m)
        if old != m:
            raise InputError(path, f"model species {r.model_species!r} is given two ways "
                             f"({old.pollutant}, {'gas' if old.gas else 'aerosol'} vs "
                             f"{m.pollutant}, {'gas' if m.gas else 'aerosol'})",
                             row=int(r.input_row), column="model_species",
                             expected="one inventory pollutant per species, and a molar mass "
                             "on all its rows (gas) or on none (aerosol)")
    names = list(species)
    pollutants = list(dict.fromkeys(df["pollutant"]))
    factors: dict[str, np.ndarray] = {}
    for sector, g in df.groupby("sector", sort=False):
        mat = np.zeros((len(pollutants), len(names)))
        for p, gp in g.groupby("pollutant", sort=False):
            total = gp["mass_fraction"].sum()
            if abs(total - 1.0) > 1e-3:
                raise InputError(path, f"mass fractions of {p} for sector {sector!r} sum to "
                                 f"{total:.6f}", row=int(gp["input_row"].iloc[0]),
                                 column="mass_fraction", expected="a sum of 1 (within 0.001)")
            for r in gp.itertuples():
                m = species[r.model_species]
                kg_to = 1000.0 / r.molar_mass_g_mol if m.gas else 1000.0
                mat[pollutants.index(p), names.index(r.model_species)] += \
                    r.mass_fraction / total * kg_to
        factors[str(sector)] = mat
    # a sector with own rows for some pollutants takes the default for the others
    if "*" in factors:
        for s, mat in factors.items():
            missing = ~mat.any(axis=1)
            mat[missing] = factors["*"][missing]
    else:
        uncovered = sorted(set(sectors) - set(factors))
        if uncovered:
            raise InputError(path, f"sectors {uncovered} have no speciation and there is no "
                             "default row", column="sector", expected="rows with sector '*'")
        for s, mat in factors.items():
            missing = [p for i, p in enumerate(pollutants) if not mat[i].any()]
            if missing:
                raise InputError(path, f"sector {s!r} has no rows for {missing} and there is "
                                 "no default row", column="sector",
                                 expected="rows for every pollutant, or rows with sector '*'")
    return Speciation(mechanism, [species[n] for n in names], pollutants, factors, str(path))


def layers_from_config(vcfg) -> Layers:
    """The model layers of the vertical config (one layer of 0–20 m when none is given)."""
    if vcfg.layers_m is not None:
        return Layers(np.asarray(vcfg.layers_m, dtype=float))
    if vcfg.sigma is not None:
        return Layers(sigma_to_heights(vcfg.sigma, vcfg.ptop_pa))
    return Layers(np.array([0.0, 20.0]))


def source_layer_fractions(activity: pd.DataFrame, layers: Layers, vcfg) -> np.ndarray:
    """(n_sources, n_layers): each source's share per layer, rows summing to 1.

    Stacks with all four stack parameters rise by Briggs (``vertical.plume_rise: briggs``);
    a stack with a height only is emitted at that height; every other source follows its
    sector's fixed profile (``vertical.sector_profiles``), by default all in layer 1.
    """
    n = len(activity)
    frac = np.zeros((n, layers.n))
    frac[:, 0] = 1.0
    sectors = activity["sector"].to_numpy()
    for sector, prof in vcfg.sector_profiles.items():
        rows = np.flatnonzero(sectors == sector)
        p = np.zeros(layers.n)
        p[:min(len(prof), layers.n)] = prof[:layers.n]
        p[-1] += sum(prof[layers.n:])  # profile deeper than the model: top layer
        frac[rows] = p
    if "stack_height_m" not in activity.columns:
        return frac
    is_point = (activity["kind"] == "point").to_numpy()
    h = pd.to_numeric(activity["stack_height_m"], errors="coerce").to_numpy(dtype=float)
    has_h = is_point & np.isfinite(h) & (h > 0)
    full = has_h.copy()
    for c in STACK_COLUMNS:
        if c in activity.columns:
            full &= np.isfinite(pd.to_numeric(activity[c], errors="coerce").to_numpy(float))
        else:
            full[:] = False
    if full.any():  # a stack exit temperature of 0 K is "not given", not a buoyancy flux
        full &= pd.to_numeric(activity["exit_temp_k"], errors="coerce").to_numpy(float) > 0
    rise = np.zeros(n)
    if vcfg.plume_rise == "briggs" and full.any():
        idx = np.flatnonzero(full)
        stab = np.array([vcfg.stability_by_sector.get(s, vcfg.stability) for s in sectors[idx]])
        num = {c: pd.to_numeric(activity[c]).to_numpy(float)[idx] for c in STACK_COLUMNS}
        r = briggs_rise(num["stack_height_m"], num["stack_diameter_m"],
                        num["exit_velocity_m_s"], num["exit_temp_k"],
                        vcfg.ambient_temperature_k, vcfg.wind_speed_10m, stab)
        rise[idx] = r["rise"]
    stacks = np.flatnonzero(has_h)
    bottom, top = plume_bounds(h[stacks], rise[stacks])
    frac[stacks] = layers.fractions(bottom, top)
    return frac


@dataclass
class ModelAnnual:
    """Per sector: (model species, layers, ny, nx) amounts per year [mol or g]."""

    speciation: Speciation
    layers: Layers
    by_sector: dict[str, np.ndarray]
    grid: Grid

    @property
    def n_layers(self) -> int:
        """Layers up to the highest one holding emissions (files need not carry empty ones
        above: CMAQ and WRF-Chem read emission files with fewer layers than the model)."""
        return max((a.shape[1] for a in self.by_sector.values()), default=1)


def model_annual(matrix: sp.csr_matrix, emissions: pd.DataFrame, activity: pd.DataFrame,
                 layer_frac: np.ndarray, speciation: Speciation, layers: Layers,
                 grid: Grid) -> ModelAnnual:
    """Grid, lift and speciate every source once: ``Σ_src A[cell, src] · E[src, p] ·
    V[src, layer] · S[sector][p, m]``."""
    sectors = activity["sector"].to_numpy()
    e = pd.DataFrame(index=emissions.index)
    for p in speciation.pollutants:
        if p in DERIVED:
            first, *rest = DERIVED[p]
            v = emissions[first].to_numpy() - emissions[rest].to_numpy().sum(axis=1)
            scale = np.abs(emissions[first].to_numpy())
            bad = v < -1e-9 * scale
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ConfigError(
                    f"source {activity['source_id'].iloc[i]!r}: {p} = {' − '.join(DERIVED[p])} "
                    f"is negative ({v[i]:.6g} kg): its emission factors make "
                    f"{' + '.join(rest)} exceed {first}, so it cannot be speciated")
            e[p] = np.maximum(v, 0.0)
        else:
            e[p] = emissions[p].to_numpy()
    e_arr = e.to_numpy()
    n_m = len(speciation.species)
    out = {}
    for sector in dict.fromkeys(sectors):
        cols = np.flatnonzero(sectors == sector)
        used = np.flatnonzero(layer_frac[cols].any(axis=0))
        n_lay = int(used.max()) + 1 if used.size else 1
        s_mat = speciation.for_sector(str(sector))
        arr = np.zeros((n_m, n_lay, grid.ny, grid.nx))
        a_s = matrix[:, cols]
        for k in range(n_lay):
            v = layer_frac[cols, k]
            if not v.any():
                continue
            g = np.asarray(a_s @ (e_arr[cols] * v[:, None]))  # cells × pollutants [kg]
            arr[:, k] = (g @ s_mat).T.reshape(n_m, grid.ny, grid.nx)
        out[str(sector)] = arr
    return ModelAnnual(speciation, layers, out, grid)


def species_hours(ma: ModelAnnual, k: int, factors: np.ndarray, sectors: list[str],
                  cems: CemsModel | None = None, hours: np.ndarray | None = None) -> np.ndarray:
    """(n_hours, layers, ny, nx) of model species ``k`` per second per cell [mol/s or g/s] for
    the hours whose sector factors are the columns of ``factors`` (sectors × hours; ``hours``
    their indices in the year, for the CEMS corrections)."""
    out = np.zeros((factors.shape[1], ma.n_layers, ma.grid.ny, ma.grid.nx))
    for i, s in enumerate(sectors):
        arr = ma.by_sector.get(s)
        if arr is None or not arr[k].any():
            continue
        out[:, :arr.shape[1]] += np.tensordot(factors[i], arr[k], axes=0)
    if cems is not None:
        flat = out.reshape(out.shape[0], out.shape[1], -1)
        for q in np.flatnonzero(cems.weights[:, k] != 0):
            c = cems.correction[q, hours] * cems.weights[q, k]          # (hours,)
            flat[:, :, cems.cells[q]] += c[:, None] * cems.layers[q][None, :ma.n_layers]
    return out / 3600.0


@dataclass
class CemsModel:
    """The CEMS corrections of gridded stacks, in model-species space."""

    cells: np.ndarray        # (pairs,)
    correction: np.ndarray   # (pairs, hours of the year) kg of the inventory species
    weights: np.ndarray      # (pairs, model species): mol or g per kg of that species
    layers: np.ndarray       # (pairs, layers): the stack's layer fractions


def _cems_model(cems, spec: Speciation, frac: np.ndarray) -> CemsModel | None:
    if cems is None:
        return None
    keep = np.flatnonzero(cems.cells >= 0)
    weights = np.zeros((keep.size, len(spec.species)))
    for row, q in enumerate(keep):
        x, s_mat = cems.species[q], spec.for_sector(cems.sectors[q])
        for i, p in enumerate(spec.pollutants):  # d(pollutant)/d(species x)
            parts = DERIVED.get(p, (p,))
            coef = 1.0 if parts[0] == x else (-1.0 if x in parts[1:] else 0.0)
            weights[row] += coef * s_mat[i]
    return CemsModel(cems.cells[keep], cems.correction[keep], weights, frac[cems.src[keep]])


@dataclass
class ModelOutputs:
    """Everything the cmaq/wrfchem writers need, computed once per build."""

    formats: list[str]
    mechanism: str
    speciation: Speciation
    annual: ModelAnnual
    cems: CemsModel | None = None
    cems_pairs: object = None  # pipeline.cems.Cems, for the per-day check


def _model_formats(cfg) -> list[str]:
    return [f for f in cfg.output.formats if f != "cf"]


def _speciation_for(cfg, tables) -> Speciation:
    """The speciation table of the config's mechanism; an error when model formats lack one."""
    if cfg.tables.speciation is None:
        raise ConfigError(f"{cfg.config_path}: formats {_model_formats(cfg)} need a speciation "
                          "table (tables.speciation, e.g. config/speciation.csv)")
    return load_speciation(cfg.tables.speciation, cfg.output.mechanism, tables.registry.emitted,
                           list(tables.sectors["sector"]))


def prepare(cfg, tables, activity, emissions, matrix, cems=None) -> ModelOutputs | None:
    """Speciation, layers and the model-species annual grid for the configured formats."""
    formats = _model_formats(cfg)
    if not formats:
        return None
    spec = _speciation_for(cfg, tables)
    layers = layers_from_config(cfg.vertical)
    frac = source_layer_fractions(activity, layers, cfg.vertical)
    ma = model_annual(matrix, emissions.table, activity, frac, spec, layers, tables.grid)
    return ModelOutputs(formats, cfg.output.mechanism, spec, ma, _cems_model(cems, spec, frac),
                        cems)


def check_formats(cfg, tables) -> None:
    """Refuse at the start of a build what the model formats cannot write: a grid WRF or the
    I/O API cannot describe, a missing speciation table or mechanism."""
    from pipeline.writers import cmaq, wrfchem

    formats = _model_formats(cfg)
    if not formats:
        return
    _speciation_for(cfg, tables)
    layers_from_config(cfg.vertical)
    if "cmaq" in formats:
        cmaq.ioapi_horizontal(tables.grid)
    if "wrfchem" in formats:
        wrfchem.wrf_projection(tables.grid)


def _day_hours(times: np.ndarray, day: pd.Timestamp, n: int) -> np.ndarray:
    start = int(np.searchsorted(times, np.datetime64(day.to_datetime64(), "h")))
    idx = start + np.arange(n)
    # the 25th CMAQ step of the year's last day: repeat that day's 00 UTC hour
    return np.where(idx < times.size, idx, idx - 24)


def write_days(mo: ModelOutputs, days: list[pd.Timestamp], factors, build_dir: Path,
               meta: dict) -> dict[str, dict[str, dict[str, float]]]:
    """Write the model files of ``days``; return per format, day and model species the amount
    the files carry over the day's 24 hours [mol or g], measured from the float32 arrays."""
    from pipeline.writers import cmaq, wrfchem

    ma, spec = mo.annual, mo.speciation
    sectors = [str(s) for s in factors["sector"].values]
    fac = factors.to_numpy()
    times = factors["time"].values.astype("datetime64[h]")
    names = [m.name for m in spec.species]
    gas = {m.name: m.gas for m in spec.species}
    area = ma.grid.cell_area_m2
    measured: dict[str, dict[str, dict[str, float]]] = {f: {} for f in mo.formats}
    meta = {**meta, "mechanism": mo.mechanism}
    for day in days:
        key = f"{day:%Y%m%d}"
        h25 = _day_hours(times, day, 25)
        f25 = fac[:, h25]
        if "cmaq" in mo.formats:
            got: dict[str, float] = {}

            def cmaq_field(name: str) -> np.ndarray:
                v = species_hours(ma, names.index(name), f25, sectors, mo.cems,
                                  h25).astype(np.float32)
                got[name] = float(v[:24].astype(np.float64).sum() * 3600.0)
                return v

            cmaq.write(build_dir / "cmaq" / f"emis_{mo.mechanism}_{ma.grid.name}_{key}.nc", day,
                       names, cmaq_field, {n: "moles/s" if gas[n] else "g/s" for n in names},
                       {n: f"{n} emission rate ({'gas' if gas[n] else 'aerosol'})"
                        for n in names}, ma.grid, ma.layers.interfaces[:ma.n_layers + 1],
                       meta)
            measured["cmaq"][key] = got
        if "wrfchem" in mo.formats:
            got_w: dict[str, float] = {}
            # mol/s per cell → mol km-2 h-1; g/s per cell → µg m-2 s-1
            to_wrf = {n: (3600.0 * 1e6 / area if gas[n] else 1e6 / area) for n in names}
            back = {n: (area / 1e6 / 3600.0 if gas[n] else area / 1e6) for n in names}

            def wrf_field(ename: str) -> np.ndarray:
                n = ename[2:]
                v = (species_hours(ma, names.index(n), f25[:, :24], sectors, mo.cems,
                                   h25[:24]) * to_wrf[n]).astype(np.float32)
                got_w[n] = float((v.astype(np.float64) * back[n]).sum() * 3600.0)
                return v

            wrfchem.write(build_dir / "wrfchem" / wrfchem.file_name(day), day,
                          [f"E_{n}" for n in names], wrf_field,
                          {f"E_{n}": "mol km^-2 hr^-1" if gas[n] else "ug m^-2 s^-1"
                           for n in names},
                          {f"E_{n}": f"{n} emissions ({'gas' if gas[n] else 'aerosol'})"
                           for n in names}, ma.grid, ma.n_layers, meta)
            measured["wrfchem"][key] = got_w
    return measured


def check_days(mo: ModelOutputs, annual, factors, measured: dict, rtol: float = 1e-6) -> None:
    """Every model file carries, per day and model species, what the inventory's gridded mass
    gives through the speciation table: ``Σ_sector kg[sector, pollutant, day] · S``. Raises
    :class:`MassBalanceError` naming format, day and species otherwise."""
    from sources.errors import MassBalanceError

    totals = annual.sum(dim=("y", "x")).to_pandas()  # sector × species, kg/yr
    times = factors["time"].values.astype("datetime64[D]")
    problems = []
    for fmt, days in measured.items():
        for key, got in days.items():
            d = np.datetime64(pd.Timestamp(key).date(), "D")
            fsum = factors.isel(time=times == d).sum("time").to_pandas()
            kg = totals.mul(fsum.reindex(totals.index), axis=0)
            if mo.cems_pairs is not None:  # measured stacks follow their own series
                c = mo.cems_pairs
                for q in np.flatnonzero(c.cells >= 0):
                    kg.loc[c.sectors[q], c.species[q]] += float(c.correction[q, times == d].sum())
            want = mo.speciation.expected(kg)
            for name, value in got.items():
                w = float(want[name])
                scale = max(abs(w), abs(value))
                if not np.isfinite(value) or (scale > 0 and abs(value - w) / scale > rtol):
                    problems.append(f"{fmt} {key} {name}: file {value:.9g} vs inventory {w:.9g}")
    if problems:
        raise MassBalanceError("model files do not carry the inventory's mass:\n  "
                               + "\n  ".join(problems[:20]))
