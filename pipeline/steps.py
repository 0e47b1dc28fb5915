"""The steps of a build, each a plain function of plain data: the tables, reading and
combining inputs, the same-source emissions and their checks, allocation, the annual grid, the
temporal factors and the ledger. :mod:`pipeline.build` holds their order (the recipe).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from grids.allocate import Allocation, CacheStats, allocate
from grids.grid import Grid
from grids.proxy import Proxy
from pipeline.cems import Cems, written_adjustment
from pipeline.checks import ChecksConfig, Finding, load_checks, run_checks
from pipeline.config import BuildConfig, InputConfig
from pipeline.cube import annual_grid
from pipeline.ledger import RTOL, Ledger
from pipeline.temporal import load_profiles, load_sectors, temporal_factors
from pipeline.writers.netcdf_cf import write_grid_dataset
from sources.emissions import PROVENANCE_LABELS, EmissionsResult, compute_emissions
from sources.errors import ConfigError, InputError, MassBalanceError, Problems
from sources.factors import FactorLibrary, load_factor_library
from sources.readers import FileLayout, InputMeta, Vocabulary, combine_activity, read_sources
from sources.species import SpeciesRegistry, load_species
from sources.uncertainty import load_activity_types
from sources.validate import load_activity_bounds


@dataclass(frozen=True)
class Tables:
    """Everything read from ``config/``: species, factors, sectors, profiles, grid, proxies."""

    registry: SpeciesRegistry
    library: FactorLibrary
    sectors: pd.DataFrame
    profiles: dict[str, dict[str, np.ndarray]]
    grid: Grid
    proxies: dict[str, Proxy] = field(default_factory=dict)
    checks: ChecksConfig | None = None
    #: plausibility bounds of activity per sector and unit (None: not checked)
    bounds: pd.DataFrame | None = None
    #: largest share of an input's mass allowed outside the grid
    max_outside_share: float = 0.5
    #: 95 % activity uncertainty per data type (``tables.activity_uncertainty``), or None
    activity_types: pd.DataFrame | None = None


def load_tables(cfg: BuildConfig) -> Tables:
    """Load and cross-check the configuration tables.

    Each table is checked on its own and every problem of every table is raised together
    (:class:`~sources.errors.ConfigErrors`: the first few listed, with their count)."""
    t, found = cfg.tables, Problems()
    registry = found.attempt(load_species, t.species)
    library = (found.attempt(load_factor_library, t.emission_factors, t.control_efficiencies,
                             t.fuels, registry.emitted) if registry is not None else None)
    profiles = found.attempt(load_profiles, t.temporal_profiles)
    sectors = found.attempt(load_sectors, t.sectors, profiles)  # profiles None: names unchecked
    grid = found.attempt(Grid.from_config, cfg.grid.model_dump())
    checks = found.attempt(load_checks, t.checks) if t.checks else None
    bounds_path = cfg.validation.bounds_path
    bounds = found.attempt(load_activity_bounds, bounds_path) if bounds_path is not None else None
    types = (found.attempt(load_activity_types, t.activity_uncertainty)
             if t.activity_uncertainty is not None else None)
    if sectors is not None:
        known = set(sectors["sector"])
        missing = sorted(set(library.keys["sector"]) - known) if library is not None else []
        if missing:
            found.add(ConfigError(f"{t.sectors}: sectors {missing} have emission factors but no "
                                  "row here (profiles and code mappings)"))
        unknown = sorted(set(cfg.sectors or []) - known)
        if unknown:
            found.add(ConfigError(f"{cfg.config_path}: 'sectors' lists unknown sectors "
                                  f"{unknown}; known: {sorted(known)}"))
        unknown = sorted(set(cfg.sector_proxies) - known)
        if unknown:
            found.add(ConfigError(f"{cfg.config_path}: 'sector_proxies' names unknown sectors "
                                  f"{unknown}; known: {sorted(known)}"))
    found.raise_any()
    proxies = {name: Proxy(name=name, path=str(path)) for name, path in cfg.proxies.items()}
    return Tables(registry=registry, library=library, sectors=sectors, profiles=profiles,
                  grid=grid, proxies=proxies, checks=checks, bounds=bounds,
                  max_outside_share=cfg.validation.max_outside_share, activity_types=types)


def read_input(cfg: BuildConfig, tables: Tables, spec: InputConfig
               ) -> tuple[gpd.GeoDataFrame, InputMeta]:
    """Read and validate one input of the config (every row, whatever its sector)."""
    layout, vocabulary = input_layout(cfg, tables, spec)
    return read_sources(spec.path, spec.kind, target_crs=tables.grid.crs, layout=layout,
                        vocabulary=vocabulary, name=spec.name)


def input_layout(cfg: BuildConfig, tables: Tables | None, spec: InputConfig
                 ) -> tuple[FileLayout, Vocabulary]:
    """How one input of the config is laid out, and the names its rows are checked against
    (none without ``tables``)."""
    layout = FileLayout(crs=spec.crs, columns=spec.columns, layer=spec.layer,
                        x_column=spec.x_column, y_column=spec.y_column,
                        wkt_column=spec.wkt_column, sheet=spec.sheet)
    if tables is None:
        return layout, Vocabulary(sector_proxies=cfg.sector_proxies)
    vocabulary = Vocabulary(keys=tables.library.keys, devices=tables.library.devices,
                            proxies=set(tables.proxies), species=tables.registry.emitted,
                            sector_proxies=cfg.sector_proxies, bounds=tables.bounds)
    return layout, vocabulary


def combine_inputs(cfg: BuildConfig, tables: Tables,
                   parts: list[tuple[gpd.GeoDataFrame, InputMeta]]
                   ) -> tuple[gpd.GeoDataFrame, list[InputMeta], gpd.GeoDataFrame]:
    """One activity table from the inputs read by :func:`read_input`, in config order; returns
    (activity, metadata, rejected activity).

    Sources of sectors not enabled in the config's ``sectors`` list are *rejected* (their mass
    goes to the ledger's ``rejected_kg`` with that reason), not silently dropped.
    """
    metas = [meta for _, meta in parts]
    # measured stack hours shape the time series, proxies the gridding: record them too
    metas += [InputMeta.of_file(path, "cems", f"cems_{Path(path).stem}") for path in cfg.cems]
    metas += [InputMeta.of_file(proxy.path, "proxy", f"proxy_{name}", format="geotiff")
              for name, proxy in tables.proxies.items()]
    activity = combine_activity([table for table, _ in parts])
    enabled = activity["sector"].isin(cfg.sectors) if cfg.sectors is not None else \
        pd.Series(True, index=activity.index)
    rejected = activity.loc[~enabled.to_numpy()].assign(
        reject_reason="sector not enabled in config")
    return activity.loc[enabled.to_numpy()].reset_index(drop=True), metas, rejected


def read_inputs(cfg: BuildConfig, tables: Tables
                ) -> tuple[gpd.GeoDataFrame, list[InputMeta], gpd.GeoDataFrame]:
    """Read and validate every input; returns (activity, metadata, rejected activity)
    (:func:`read_input` for each, then :func:`combine_inputs`)."""
    return combine_inputs(cfg, tables, [read_input(cfg, tables, spec) for spec in cfg.inputs])


def concat_categorical(frames: list[pd.DataFrame], labels: tuple[str, ...]) -> pd.DataFrame:
    """``pd.concat(frames, ignore_index=True)`` with the ``labels`` columns as categories of
    the sorted values present in any frame, as ``astype("category")`` of the concatenation
    gives. Each frame's labels are recoded to those categories first: a concatenation of
    unequal categories is a column of Python objects (614 000 rows of strings for the demo's
    roads, 190 MB for a moment)."""
    def present(col: pd.Series) -> pd.Index:
        if isinstance(col.dtype, pd.CategoricalDtype):
            return col.cat.remove_unused_categories().cat.categories
        return pd.Index(col.dropna().unique())

    dtypes = {c: pd.CategoricalDtype(pd.Index(sorted(set().union(
        *(present(f[c]) for f in frames))))) for c in labels}
    return pd.concat([f.astype(dtypes) for f in frames], ignore_index=True)


def combine_emissions(parts: list[EmissionsResult], activity: gpd.GeoDataFrame,
                      rejected: gpd.GeoDataFrame) -> tuple[EmissionsResult, pd.DataFrame | None]:
    """Emissions of the kept sources (in ``activity``'s order) and kg/yr per sector × species of
    the rejected ones, from the emissions of each input computed alone (every row of it: each
    source's emissions depend on its own record only)."""
    table = pd.concat([p.table for p in parts])
    provenance = concat_categorical([p.provenance for p in parts], PROVENANCE_LABELS)
    kept = EmissionsResult(
        table=table.loc[activity["source_id"].to_numpy()],
        provenance=provenance[provenance["source_id"].isin(activity["source_id"])
                              ].reset_index(drop=True))
    if len(rejected) == 0:
        return kept, None
    em = table.loc[rejected["source_id"].to_numpy()]
    return kept, em.assign(sector=rejected["sector"].to_numpy()).groupby("sector").sum()


def compute_input_emissions(activity: gpd.GeoDataFrame, tables: Tables) -> EmissionsResult:
    """Same-source emissions of one input's sources [kg/yr per source × species]."""
    return compute_emissions(activity, tables.library, tables.registry)


def check_emissions(emissions: EmissionsResult, activity: gpd.GeoDataFrame, tables: Tables,
                    cfg: BuildConfig) -> list[Finding]:
    """Same-source consistency checks (ratios, PM subsets, city CO2); [] when none configured.

    The city CO2 check only makes sense for a build of every sector.
    """
    if tables.checks is None:
        return []
    return run_checks(emissions.table, activity, tables.library, tables.checks,
                      city_total=cfg.sectors is None)


def allocate_sources(activity: gpd.GeoDataFrame, tables: Tables, cache_dir: Path | None = None,
                     stats: CacheStats | None = None, scheduler: str | None = None,
                     inputs: dict[str, str] | None = None) -> Allocation:
    """Allocation matrices, reused from ``cache_dir/allocation`` where geometries are unchanged,
    computed in chunks on the dask ``scheduler`` where not. With ``inputs`` (input file → input
    name), each input's sources have their own matrix (and cache entry and ``stats`` line)."""
    groups = activity["input_file"].map(inputs).to_numpy() if inputs else None
    alloc = allocate(activity, tables.grid, tables.proxies,
                     cache_dir=Path(cache_dir) / "allocation" if cache_dir else None,
                     stats=stats, scheduler=scheduler, groups=groups)
    check_outside(activity, alloc.outside_fraction, tables, inputs)
    return alloc


def check_outside(activity: gpd.GeoDataFrame, outside_fraction: np.ndarray, tables: Tables,
                  inputs: dict[str, str] | None = None) -> None:
    """Stop the build when more than ``tables.max_outside_share`` of one input's mass lies
    beyond the grid: that is a wrong CRS or UTM zone, swapped lon/lat or a grid that misses
    the data, not sources outside the city.

    ``outside_fraction`` is each source's share beyond the grid (the allocation's, or
    :func:`grids.allocate.outside_share` for ``tongyuan check``). Mass is the input's emissions
    summed over the emitted species; they are computed only for an input with some source
    beyond the limit (the share cannot exceed its largest source's).
    """
    limit = tables.max_outside_share
    outside = np.asarray(outside_fraction, dtype=float)
    files = activity["input_file"].to_numpy()
    for path in dict.fromkeys(files):
        rows = np.flatnonzero(files == path)
        if not rows.size or outside[rows].max() <= limit:
            continue
        part = activity.iloc[rows]
        mass = compute_emissions(part, tables.library, tables.registry).table[
            tables.registry.emitted].sum(axis=1).to_numpy()
        weight = mass if mass.sum() > 0 else np.ones(rows.size)
        share = float((weight * outside[rows]).sum() / weight.sum())
        if share > limit:
            raise _outside_error(path, share, limit, part, tables.grid,
                                 (inputs or {}).get(path))


def _outside_error(path: str, share: float, limit: float, part: gpd.GeoDataFrame, grid: Grid,
                   name: str | None) -> InputError:
    x0, y0, x1, y1 = part.total_bounds
    g = grid.bounds
    return InputError(path, f"{share:.0%} of the mass of input {name or path!r} lies outside "
                      f"the grid (limit {limit:.0%}, validation.max_outside_share): its sources "
                      f"span x {x0:.6g}..{x1:.6g}, y {y0:.6g}..{y1:.6g} and the grid x "
                      f"{g[0]:.6g}..{g[2]:.6g}, y {g[1]:.6g}..{g[3]:.6g} in "
                      f"{grid.crs.to_string()}", expected="sources on the grid: check the "
                      "input's CRS (a wrong UTM zone, e.g. EPSG:32650 for data in zone 51N, "
                      "moves every source ~600 km), swapped lon/lat (x_column/y_column), or "
                      "the grid's extent")


def compute_annual(alloc: Allocation, emissions: EmissionsResult, activity: gpd.GeoDataFrame,
                   tables: Tables) -> xr.DataArray:
    """The annual grid ``(sector, species, y, x)`` [kg/yr per cell]: allocation × emissions."""
    return annual_grid(alloc.matrix, emissions.table, activity["sector"].to_numpy(),
                                tables.grid, list(emissions.table.columns),
                                list(tables.sectors["sector"]))


def compute_factors(cfg: BuildConfig, tables: Tables) -> xr.DataArray:
    """Temporal factors ``(sector, time)``: the share of each sector's year in each UTC hour."""
    return temporal_factors(tables.sectors, tables.profiles, cfg.year, cfg.temporal.timezone,
                            cfg.temporal.holidays)


def compute_ledger(emissions: EmissionsResult, activity: gpd.GeoDataFrame, alloc: Allocation,
                   annual: xr.DataArray, rejected_kg: pd.DataFrame | None) -> Ledger:
    """The mass ledger per sector × species: read, gridded, outside the domain, rejected [kg]."""
    by_sector = annual.sum(dim=("y", "x")).to_pandas()
    return Ledger.from_build(emissions.table, activity["sector"].to_numpy(),
                             alloc.outside_fraction, by_sector, rejected_kg)


def record_written(ledger: Ledger, annual: xr.DataArray, factors: xr.DataArray,
                   per_day: dict[str, dict[str, float]], rtol: float = RTOL,
                   cems: Cems | None = None) -> None:
    """Fill ``written_kg`` and check it against the mass measured in the written arrays.

    Per sector × species, written = gridded × Σ factors over the written hours (the whole year,
    or the days of a ``period`` build). Per species the sum over sectors must equal what the
    files' arrays carry, within ``rtol``.
    """
    hours = pd.to_datetime(sorted(per_day), format="%Y%m%d").to_numpy()
    written_hours = np.isin(factors["time"].values.astype("datetime64[D]"), hours.astype(
        "datetime64[D]"))
    fsum = factors.sel(sector=annual["sector"]).isel(time=written_hours).sum("time")
    written = (annual.sum(dim=("y", "x")) * fsum).to_pandas().stack().rename("written_kg")
    written.index.names = ["sector", "species"]
    if cems is not None:  # measured stacks: their series instead of the profile
        adj = written_adjustment(cems, written_hours)
        written = written.add(adj["correction_kg"], fill_value=0.0).rename("written_kg")
        ledger.table["cems_measured_kg"] = adj["cems_measured_kg"].reindex(
            ledger.table.index).fillna(0.0)
    ledger.record_written(written.to_frame())
    measured = pd.DataFrame(per_day).T.sum()
    expected = ledger.totals()["written_kg"]
    problems = []
    for sp in measured.index:
        a, b = float(measured[sp]), float(expected[sp])
        scale = max(abs(a), abs(b))
        if scale > 0 and abs(a - b) / scale > rtol:
            problems.append(f"{sp}: files carry {a:.9g} kg, ledger expects {b:.9g} kg")
    if problems:
        raise MassBalanceError("written files disagree with the ledger:\n  "
                               + "\n  ".join(problems))


def utc_days(year: int, period: tuple[str, str] | None = None) -> list[pd.Timestamp]:
    """UTC days of ``year``, or of the inclusive ``period`` (``("2024-01-15", "2024-01-21")``)."""
    days = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D")
    if period is None:
        return list(days)
    try:
        start, end = pd.Timestamp(period[0]), pd.Timestamp(period[1])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"period {period!r}: expected two dates YYYY-MM-DD") from exc
    if start > end or start.year != year or end.year != year:
        raise ConfigError(f"period {period[0]}..{period[1]} must be ordered and lie in the "
                          f"output year {year}")
    return [d for d in days if start <= d <= end]


class Stopwatch:
    """Wall-clock timings of named steps, for the build summary."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.steps: dict[str, float] = {}
        self._last = self.t0

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.steps[name] = now - self._last
        self._last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self.t0


def write_annual(build_dir: Path, annual: xr.DataArray, factors: xr.DataArray,
                 static: dict[str, Any], attrs: dict[str, Any]) -> None:
    """``annual.nc``: the annual grid per sector and species (kg/yr per cell) and the temporal
    factors (sector × UTC hour) that spread it, for reports, comparisons and scenarios."""
    ds = xr.Dataset({"annual_emissions": annual.astype("float64"),
                     "temporal_factor": factors})
    ds["annual_emissions"].attrs = {"long_name": "annual emissions per grid cell",
                                    "units": "kg year-1", "grid_mapping": "crs",
                                    "coordinates": "lat lon"}
    # the share of the year's total emitted during the hour [t, t + 1 h]
    ds["temporal_factor"].attrs = {**factors.attrs, "cell_methods": "time: sum"}
    first = pd.Timestamp(factors.time.values[0])
    enc = {"annual_emissions": {"zlib": True, "complevel": 1,
                                "chunksizes": (1, 1) + annual.shape[2:]},
           "time": {"dtype": "int32", "units": f"hours since {first:%Y-%m-%d}"}}
    write_grid_dataset(ds, build_dir / "annual.nc", static, attrs, enc, year=first.year,
                       annual=["annual_emissions"])


def totals_markdown(build_id: str, totals: pd.DataFrame) -> str:
    """Ledger totals per species as a markdown table (t/yr)."""
    lines = [f"# Tongyuan build `{build_id}`", "",
             "| species | read t/yr | gridded t/yr | outside domain t/yr | rejected t/yr | "
             "written t/yr |", "|---|---:|---:|---:|---:|---:|"]
    for sp, r in totals.iterrows():
        lines.append(f"| {sp} | {r.read_kg / 1e3:,.1f} | {r.gridded_kg / 1e3:,.1f} | "
                     f"{r.outside_domain_kg / 1e3:,.1f} | {r.rejected_kg / 1e3:,.1f} | "
                     f"{r.written_kg / 1e3:,.1f} |")
    return "\n".join(lines)
