"""Model-ready emissions for CMAQ and WRF-Chem: mechanism species, in model layers, per hour.

This module holds the model layers of each source (:func:`source_layer_fractions`), the annual
model-species grid (:func:`model_annual`), the hourly fields (:func:`species_hours`), the per-day
CMAQ and WRF-Chem files (:func:`write_days`) and the check that they carry the inventory's mass
(:func:`check_days`).

Inventory pollutants become mechanism species through the speciation table
(:mod:`sources.speciation`).

``annual[sector][model species, layer, cell]`` (mol or g per year) is built once from the
allocation matrix, the per-source emissions and the per-source layer fractions; an hour is
``Σ_sector factor[sector, hour] · annual[sector] / 3600`` (per second).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from grids.grid import Grid, WrfDomain, read_wrf_domain
from grids.vertical import (
    Layers,
    ModelLayers,
    briggs_rise,
    plume_bounds,
    read_metcro3d,
    read_wrfinput_layers,
    sigma_to_heights,
)
from pipeline.model_read import finish  # noqa: F401  (the build calls model_ready.finish)
from pipeline.parallel import RunStats, map_days
from pipeline.wrfchem_packages import MECHANISM_OF, package, unread
from pipeline.writers import FORMATS, MODEL_FORMATS, WriteMeta
from sources.errors import ConfigError, MassBalanceError
from sources.gridded import base_sector
from sources.speciation import DERIVED, Speciation, load_speciation
from sources.validate import STACK_COLUMNS


@lru_cache(maxsize=4)
def _read_once(kind: str, path: Path, stamp: tuple[int, int]):
    """A domain, METCRO3D or wrfinput-layers file read once per content (``stamp``: mtime
    and size)."""
    read = {"wrf": read_wrf_domain, "metcro3d": read_metcro3d,
            "wrfinput": read_wrfinput_layers}[kind]
    return read(path)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = Path(path).stat()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror})") from exc
    return (st.st_mtime_ns, st.st_size)


def wrf_domain_of(cfg) -> WrfDomain | None:
    """The WRF domain the wrfchemi files are for: ``output.wrfchem.domain_file``, else
    ``grid.wrf``; None when neither is given."""
    path = cfg.output.wrfchem.domain_file or cfg.grid.wrf
    return None if path is None else _read_once("wrf", Path(path), _stamp(path))


def model_layers_of(vcfg) -> ModelLayers | None:
    """The model's own layers: MCIP's (``vertical.metcro3d``) or WRF's (``vertical.wrfinput``);
    None when the layers are a list of heights or sigma levels."""
    for kind in ("metcro3d", "wrfinput"):
        path = getattr(vcfg, kind)
        if path is not None:
            return _read_once(kind, Path(path), _stamp(path))
    return None


def vertical_levels(vcfg) -> tuple[int, float, tuple[float, ...]] | None:
    """The CMAQ vertical header (VGTYP, VGTOP, VGLVLS) of the configured layers: MCIP's, or
    VGWRFEM (7) with the sigma/eta levels and the top pressure; None for heights (VGHVAL3)."""
    own = model_layers_of(vcfg)
    if own is not None:
        return (own.vgtyp, own.vgtop, own.vglvls)
    if vcfg.sigma is not None:
        return (7, float(vcfg.ptop_pa), tuple(float(v) for v in vcfg.sigma))
    return None


def _wrfchem_config(cfg, domain: WrfDomain | None):
    """``output.wrfchem`` with the domain number of the domain file when none is configured;
    a configured one that differs from the file's GRID_ID is refused."""
    w = cfg.output.wrfchem
    if domain is None:
        return w
    if "domain" in w.model_fields_set and w.domain != domain.grid_id:
        raise ConfigError(f"{cfg.config_path}: output.wrfchem.domain is {w.domain} but "
                          f"{domain.path} is domain {domain.grid_id} (GRID_ID); WRF opens "
                          f"wrfchemi_d{domain.grid_id:02d}_* for it")
    return w.model_copy(update={"domain": domain.grid_id})


def layers_from_config(vcfg) -> Layers:
    """The model layers of the vertical config (one layer of 0–20 m when none is given; the
    domain-mean layers of ``metcro3d`` or ``wrfinput``)."""
    own = model_layers_of(vcfg)
    if own is not None:
        return own.layers
    if vcfg.layers_m is not None:
        return Layers(np.asarray(vcfg.layers_m, dtype=float))
    if vcfg.sigma is not None:
        return Layers(sigma_to_heights(vcfg.sigma, vcfg.ptop_pa))
    return Layers(np.array([0.0, 20.0]))


def source_layer_fractions(activity: pd.DataFrame, layers: Layers, vcfg,
                           own: ModelLayers | None = None, grid: Grid | None = None
                           ) -> np.ndarray:
    """(n_sources, n_layers): each source's share per layer, rows summing to 1.

    Stacks with all four stack parameters rise by Briggs (``vertical.plume_rise: briggs``);
    a stack with a height only is emitted at that height; every other source follows its
    sector's fixed profile (``vertical.sector_profiles``), by default all in layer 1. With
    the model's own layers (``own``: MCIP's or WRF's, on ``grid``) a plume is spread over the
    layers of the cell its stack stands in, outside the grid over the domain mean.
    """
    n = len(activity)
    frac = np.zeros((n, layers.n))
    frac[:, 0] = 1.0
    # a regional sector (``power@meic-07``) takes its base sector's profile
    sectors = np.array([base_sector(str(x)) for x in activity["sector"]], dtype=object)
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
    if own is None or grid is None or not stacks.size:
        frac[stacks] = layers.fractions(bottom, top)
        return frac
    pts = activity.geometry.iloc[stacks]
    cell = grid.cell_index(pts.x.to_numpy(), pts.y.to_numpy())
    rows = np.where(cell >= 0, cell // grid.nx, -1)
    cols = np.where(cell >= 0, cell % grid.nx, -1)
    frac[stacks] = own.fractions(rows, cols, bottom, top)
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
    sectors: np.ndarray | None = None  # (pairs,) the stacks' sectors

    def for_sectors(self, sectors: list[str]) -> CemsModel | None:
        """The corrections of the stacks in ``sectors`` (a CMAQ stream), None if none."""
        keep = np.isin(self.sectors, sectors)
        if not keep.any():
            return None
        return CemsModel(self.cells[keep], self.correction[keep], self.weights[keep],
                         self.layers[keep], self.sectors[keep])


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
    return CemsModel(cems.cells[keep], cems.correction[keep], weights, frac[cems.src[keep]],
                     np.asarray(cems.sectors, dtype=object)[keep])


@dataclass
class ModelPart:
    """The formats written in one mechanism: its speciation and model-species annual grid."""

    formats: list[str]
    mechanism: str
    speciation: Speciation
    annual: ModelAnnual
    cems: CemsModel | None = None


@dataclass
class ModelOutputs:
    """Everything the cmaq/wrfchem writers need, computed once per build: one
    :class:`ModelPart` per mechanism (CMAQ ``output.mechanism``, WRF-Chem the one of
    ``output.wrfchem``)."""

    parts: list[ModelPart]
    cems_pairs: object = None  # pipeline.cems.Cems, for the per-day check
    wrfchem: object = None     # pipeline.config.WrfChemConfig
    model_read: str = "warn"   # output.model_read
    cmaq_desid: str = "5.3.3:cb6r3_ae6_aq"  # output.cmaq_desid (or the mechanism's default)
    wrf_domain: WrfDomain | None = None  # the run's wrfinput/geo_em (wrfchem)
    vertical_levels: tuple | None = None  # CMAQ VGTYP, VGTOP, VGLVLS (see vertical_levels)
    cmaq: object = None        # pipeline.config.CmaqConfig
    #: CMAQ stream label → the build's sectors in it (:func:`cmaq_streams`); empty: merged only
    streams: dict[str, list[str]] = field(default_factory=dict)
    #: the inventory's emitted species (derived ones such as CO2e have no model variable)
    emitted: tuple[str, ...] = ()

    @property
    def formats(self) -> list[str]:
        return [f for part in self.parts for f in part.formats]

    def part(self, fmt: str) -> ModelPart:
        return next(p for p in self.parts if fmt in p.formats)


def cmaq_streams(cmaq_cfg, sectors: list[str], configured: list[str]) -> dict[str, list[str]]:
    """Stream label → the build's ``sectors`` in it (a regional ``<sector>@<inventory>`` goes
    with its sector); sectors no stream lists go to ``OTHER``. ``configured``: the sectors of
    the sector table (a stream naming another is refused)."""
    if cmaq_cfg is None or not cmaq_cfg.streams:
        return {}
    unknown = sorted({x for secs in cmaq_cfg.streams.values() for x in secs} - set(configured))
    if unknown:
        raise ConfigError(f"output.cmaq.streams: unknown sector(s) {unknown}; sectors are "
                          f"{sorted(configured)}")
    of = {x: label for label, secs in cmaq_cfg.streams.items() for x in secs}
    out: dict[str, list[str]] = {label: [] for label in cmaq_cfg.streams}
    for sector in sectors:
        label = of.get(sector.split("@")[0], "OTHER")
        if label == "OTHER" and "OTHER" not in out:
            out["OTHER"] = []
        out[label].append(sector)
    return {label: secs for label, secs in out.items() if secs}


def stream_file(mechanism: str, grid: str, label: str, day: pd.Timestamp) -> str:
    """The day file of CMAQ stream ``label``, inside ``cmaq/streams/``."""
    return f"emis_{mechanism}_{grid}_{label}_{day:%Y%m%d}.nc"


def _model_formats(cfg) -> list[str]:
    return [f for f in cfg.output.formats if f in MODEL_FORMATS]


def mechanism_of(cfg, fmt: str) -> str:
    """The speciation mechanism of model format ``fmt``."""
    return cfg.output.wrfchem.speciation_mechanism if fmt == "wrfchem" else cfg.output.mechanism


def _speciation_for(cfg, tables, mechanism: str) -> Speciation:
    """The speciation table's ``mechanism``; an error when model formats lack a table."""
    if cfg.tables.speciation is None:
        raise ConfigError(f"{cfg.config_path}: formats {_model_formats(cfg)} need a speciation "
                          "table (tables.speciation, e.g. config/speciation.csv)")
    path = Path(cfg.tables.speciation)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return _load_once(path, digest, mechanism, tuple(tables.registry.emitted),
                      tuple(tables.sectors["sector"]))


@lru_cache(maxsize=8)
def _load_once(path: Path, digest: str, mechanism: str, emitted: tuple[str, ...],
               sectors: tuple[str, ...]) -> Speciation:
    """:func:`check_formats` and :func:`prepare` of a build both need the table: it is parsed
    and checked once per content (``digest``, the sha256 of the file), not once per call."""
    return load_speciation(path, mechanism, list(emitted), list(sectors))


def _mechanisms(cfg) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for f in _model_formats(cfg):
        groups.setdefault(mechanism_of(cfg, f), []).append(f)
    return groups


def prepare(cfg, tables, activity, emissions, matrix, cems=None) -> ModelOutputs | None:
    """Speciation, layers and the model-species annual grid for the configured formats."""
    groups = _mechanisms(cfg)
    if not groups:
        return None
    layers = layers_from_config(cfg.vertical)
    frac = source_layer_fractions(activity, layers, cfg.vertical, model_layers_of(cfg.vertical),
                                  tables.grid)
    parts = []
    for mechanism, formats in groups.items():
        spec = _speciation_for(cfg, tables, mechanism)
        ma = model_annual(matrix, emissions.table, activity, frac, spec, layers, tables.grid)
        parts.append(ModelPart(formats, mechanism, spec, ma, _cems_model(cems, spec, frac)))
    domain = wrf_domain_of(cfg) if "wrfchem" in _model_formats(cfg) else None
    mo = ModelOutputs(parts, cems, _wrfchem_config(cfg, domain), cfg.output.model_read,
                      cfg.output.cmaq_namelists, domain, vertical_levels(cfg.vertical),
                      cfg.output.cmaq, emitted=tuple(tables.registry.emitted))
    if "cmaq" in mo.formats:
        sectors = list(dict.fromkeys([str(x) for x in activity["sector"]]
                                     + [str(x) for x in tables.sectors["sector"]]))
        mo.streams = cmaq_streams(cfg.output.cmaq, sectors,
                                  [str(x) for x in tables.sectors["sector"]])
    if "wrfchem" in mo.formats:
        kemit = cfg.output.wrfchem.kemit_for(layers.n)
        top = mo.part("wrfchem").annual.n_layers
        if top > kemit:
            raise ConfigError(f"{cfg.config_path}: emissions reach model layer {top} but "
                              f"output.wrfchem.kemit is {kemit}: WRF-Chem reads only kemit "
                              "levels and would drop the rest; raise kemit (and WRF's)")
    return mo


def check_formats(cfg, tables) -> None:
    """Refuse at the start of a build what the model formats cannot write: a grid WRF or the
    I/O API cannot describe, a missing speciation table or mechanism, a WRF-Chem mechanism
    whose species the configured ``emiss_opt`` package does not read."""
    formats = _model_formats(cfg)
    if not formats:
        return
    layers_from_config(cfg.vertical)
    domain = wrf_domain_of(cfg) if "wrfchem" in formats else None
    for name in formats:
        if name == "wrfchem" and domain is not None:
            domain.check_grid(tables.grid)  # dims, projection, DX/DY, cell centres
            _wrfchem_config(cfg, domain)
        else:
            FORMATS[name].writer.check_grid(tables.grid)
    own = model_layers_of(cfg.vertical)  # its cells must be the grid's (per-cell layers)
    if own is not None and own.horizontal is not None:
        own.check_grid(FORMATS["cmaq"].writer.ioapi_horizontal(tables.grid), tables.grid.name)
    elif own is not None:
        _read_once("wrf", own.path, _stamp(own.path)).check_grid(
            tables.grid, what="the layers of vertical.wrfinput")
    for name in formats:
        spec = _speciation_for(cfg, tables, mechanism_of(cfg, name))
        if name == "wrfchem":
            eo = cfg.output.wrfchem.emiss_opt
            problems = unread(eo, [(m.name, m.gas) for m in spec.species])
            if problems:
                raise ConfigError(
                    f"{cfg.config_path}: mechanism {spec.mechanism!r} cannot be written for "
                    f"WRF-Chem emiss_opt {eo} ({package(eo).name}): "
                    + "; ".join(problems) + f". Use mechanism {MECHANISM_OF[eo]!r} (the "
                    "default for this emiss_opt) or another emiss_opt")


def _day_hours(times: np.ndarray, day: pd.Timestamp, n: int) -> np.ndarray:
    start = int(np.searchsorted(times, np.datetime64(day.to_datetime64(), "h")))
    idx = start + np.arange(n)
    # the 25th CMAQ step of the year's last day: repeat that day's 00 UTC hour
    return np.where(idx < times.size, idx, idx - 24)


def day_fields(mo: ModelPart, day: pd.Timestamp, factors) -> xr.Dataset:
    """The model species of UTC ``day``, per second per grid cell (``mol/s`` for gases, ``g/s``
    for aerosols), ``(time = 25, z, y, x)`` from 00 UTC: the 25th step is 00 UTC of the next day
    (on the year's last day the day's own 00 UTC hour again). Lazy: each species is one dask
    task (:func:`species_hours`), computed when a writer reads it."""
    ma = mo.annual
    sectors = [str(s) for s in factors["sector"].values]
    times = factors["time"].values.astype("datetime64[h]")
    h25 = _day_hours(times, day, 25)
    f25 = factors.to_numpy()[:, h25]
    shape = (25, ma.n_layers, ma.grid.ny, ma.grid.nx)
    data_vars = {}
    for k, m in enumerate(mo.speciation.species):
        kind = "gas" if m.gas else "aerosol"
        task = dask.delayed(species_hours, pure=False)(ma, k, f25, sectors, mo.cems, h25)
        data_vars[m.name] = (("time", "z", "y", "x"), da.from_delayed(task, shape, float), {
            "units": "mol/s" if m.gas else "g/s", "long_name": m.name,
            "var_desc": f"{m.name} emission rate ({kind})",
            "description": f"{m.name} emissions ({kind})"})
    steps = pd.date_range(day, periods=25, freq="h")
    return xr.Dataset(data_vars, coords={"time": steps, "z": np.arange(1, ma.n_layers + 1)})


@dataclass(frozen=True)
class ModelDayInputs:
    """What every model day file is made from (sent to each worker once): the model outputs
    of the build, its temporal factors, the build directory and the global attributes."""

    mo: ModelOutputs
    factors: xr.DataArray
    build_dir: Path
    meta: dict


def write_model_day(inputs: ModelDayInputs, day: pd.Timestamp
                    ) -> dict[str, dict[str, float]]:
    """Write the model files of UTC ``day`` (every format of every mechanism, and the CMAQ
    streams, ``cmaq/streams/``): the task a worker runs. Returns per key (format; CMAQ stream
    ``cmaq:<label>``) and model species the amount the day's file carries over its 24 hours
    [mol or g] from the float32 arrays, and under ``<key>#exact`` the same before the cast to
    float32 (CMAQ with streams: Σ streams = merged file is checked on these)."""
    mo, measured = inputs.mo, {}
    factors, build_dir, meta = inputs.factors, inputs.build_dir, inputs.meta
    wrf = mo.wrfchem
    for part in mo.parts:
        ma = part.annual
        layers_m = tuple(float(z) for z in ma.layers.interfaces)
        fields = day_fields(part, day, factors)
        for name in part.formats:
            got: dict[str, float] = {}
            exact: dict[str, float] = {}
            fmt = FORMATS[name]
            path = build_dir / fmt.folder / fmt.file_name(
                day, mechanism=part.mechanism, grid=ma.grid.name,
                domain=wrf.domain if wrf is not None else 1)
            with dask.config.set(scheduler="synchronous"):  # one species at a time, here
                fmt.writer.write(fields, path, WriteMeta(
                    grid=ma.grid, attrs=meta, mechanism=part.mechanism, layers_m=layers_m,
                    on_written=got.__setitem__, on_written_exact=exact.__setitem__,
                    emiss_opt=wrf.emiss_opt if wrf is not None else None,
                    kemit=wrf.kemit_for(ma.layers.n) if wrf is not None else None,
                    wrf_domain=mo.wrf_domain, vertical_levels=mo.vertical_levels))
            measured[name] = got
            if name == "cmaq" and mo.streams:
                measured["cmaq#exact"] = exact
        if "cmaq" in part.formats and mo.streams:
            for label, secs in mo.streams.items():
                got, exact = {}, {}
                sub = factors.sel(sector=[x for x in secs if x in factors["sector"].values])
                cems = part.cems.for_sectors(secs) if part.cems is not None else None
                # a stream's files carry the layers its own sectors reach (CMAQ reads
                # files with fewer layers than the model: layers above are empty)
                sub_ma = ModelAnnual(ma.speciation, ma.layers, {
                    x: ma.by_sector[x] for x in secs if x in ma.by_sector}, ma.grid)
                stream = ModelPart(part.formats, part.mechanism, part.speciation, sub_ma,
                                   cems)
                path = build_dir / "cmaq" / "streams" / stream_file(
                    part.mechanism, ma.grid.name, label, day)
                path.parent.mkdir(parents=True, exist_ok=True)
                with dask.config.set(scheduler="synchronous"):
                    _write_cmaq(stream, day_fields(stream, day, sub), path, meta, layers_m,
                                got, exact, label, mo.vertical_levels)
                measured[f"cmaq:{label}"] = got
                measured[f"cmaq:{label}#exact"] = exact
    return measured


def write_days(mo: ModelOutputs, days: list[pd.Timestamp], factors, build_dir: Path,
               meta: dict, scheduler: str | None = "synchronous",
               on_day: Callable[[int, int], None] | None = None,
               stats: RunStats | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Write the model files of ``days`` (:func:`write_model_day`), each day an independent
    task on ``scheduler`` (:func:`pipeline.parallel.map_days`: the same bytes on every
    scheduler); return per key (format, ``cmaq:<label>``, ``…#exact``), day and model species
    the amount the files carry over the day's 24 hours [mol or g]. ``on_day(done, total)`` as
    days finish; ``stats`` gets the scheduler and each worker's peak memory."""
    measured: dict[str, dict[str, dict[str, float]]] = {f: {} for f in mo.formats}
    got = map_days(write_model_day, ModelDayInputs(mo, factors, build_dir, meta), days,
                   scheduler, on_day, stats)
    for day, per_key in zip(days, got, strict=True):
        for key, amounts in per_key.items():
            measured.setdefault(key, {})[f"{day:%Y%m%d}"] = amounts
    return measured


def _write_cmaq(part: ModelPart, fields: xr.Dataset, path: Path, meta: dict,
                layers_m: tuple[float, ...], got: dict | None, exact: dict,
                stream: str | None = None, vertical_levels: tuple | None = None) -> None:
    """One CMAQ day file of ``fields``; ``got``/``exact`` receive the amounts (float32, float64)."""
    FORMATS["cmaq"].writer.write(fields, path, WriteMeta(
        grid=part.annual.grid, attrs={**meta, **({"tongyuan_stream": stream} if stream else {})},
        mechanism=part.mechanism if stream is None else f"{part.mechanism}, stream {stream}",
        layers_m=layers_m, on_written=got.__setitem__ if got is not None else None,
        on_written_exact=exact.__setitem__, vertical_levels=vertical_levels))


def check_days(mo: ModelOutputs, annual, factors, measured: dict, rtol: float = 1e-6) -> None:
    """Every model file carries, per day and model species, what the inventory's gridded mass
    gives through the speciation table: ``Σ_sector kg[sector, pollutant, day] · S`` (a CMAQ
    stream, key ``cmaq:<label>``, over its sectors); the CMAQ streams of a day add up to the
    merged file to 1e-9 (amounts before the float32 cast). Raises :class:`MassBalanceError`
    naming format, day and species otherwise."""
    totals = annual.sum(dim=("y", "x")).to_pandas()  # sector × species, kg/yr
    times = factors["time"].values.astype("datetime64[D]")
    problems = []
    for key, days in measured.items():
        if key.endswith("#exact"):
            continue
        fmt, _, label = key.partition(":")
        for day, got in days.items():
            d = np.datetime64(pd.Timestamp(day).date(), "D")
            fsum = factors.isel(time=times == d).sum("time").to_pandas()
            kg = totals.mul(fsum.reindex(totals.index), axis=0)
            if mo.cems_pairs is not None:  # measured stacks follow their own series
                c = mo.cems_pairs
                for q in np.flatnonzero(c.cells >= 0):
                    kg.loc[c.sectors[q], c.species[q]] += float(c.correction[q, times == d].sum())
            if label:
                kg = kg.loc[[x for x in kg.index if x in mo.streams[label]]]
            want = mo.part(fmt).speciation.expected(kg)
            for name, value in got.items():
                w = float(want[name])
                scale = max(abs(w), abs(value))
                if not np.isfinite(value) or (scale > 0 and abs(value - w) / scale > rtol):
                    problems.append(f"{key} {day} {name}: file {value:.9g} vs inventory {w:.9g}")
    for day, merged in measured.get("cmaq#exact", {}).items():
        for name, value in merged.items():
            total = sum(measured[f"cmaq:{label}#exact"][day][name] for label in mo.streams)
            scale = max(abs(value), abs(total))
            if scale > 0 and abs(total - value) / scale > 1e-9:
                problems.append(f"cmaq streams {day} {name}: sum of streams {total:.12g} vs "
                                f"merged file {value:.12g}")
    if problems:
        raise MassBalanceError("model files do not carry the inventory's mass:\n  "
                               + "\n  ".join(problems[:20]))
