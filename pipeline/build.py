"""The steps of an annual build as plain functions (the Prefect flow wraps each one).

Each step takes and returns plain data, so a notebook can run a build, or any part of it,
without Prefect::

    cfg = load_config("config/shanghai.yaml")
    tables = load_tables(cfg)
    activity, metas, rejected = read_inputs(cfg, tables)
    ...
"""

from __future__ import annotations

import json
import os
import shutil
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
from pipeline import cube as cube_mod
from pipeline.checks import ChecksConfig, Finding, load_checks, run_checks
from pipeline.config import BuildConfig, InputConfig, config_hash
from pipeline.ledger import RTOL, Ledger
from pipeline.provenance import code_version, global_attributes, new_build_id
from pipeline.temporal import load_profiles, load_sectors, temporal_factors
from pipeline.writers import netcdf_cf
from sources.emissions import EmissionsResult, compute_emissions
from sources.errors import ConfigError, MassBalanceError
from sources.factors import FactorLibrary, load_factor_library
from sources.files import digest, frame_digest, sha256_file, sha256_or_missing
from sources.readers import combine_activity, read_sources
from sources.species import SpeciesRegistry, load_species


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


def load_tables(cfg: BuildConfig) -> Tables:
    """Load and cross-check the configuration tables."""
    registry = load_species(cfg.tables.species)
    library = load_factor_library(cfg.tables.emission_factors, cfg.tables.control_efficiencies,
                                  cfg.tables.fuels, registry.emitted)
    profiles = load_profiles(cfg.tables.temporal_profiles)
    sectors = load_sectors(cfg.tables.sectors, profiles)
    missing = sorted(set(library.keys["sector"]) - set(sectors["sector"]))
    if missing:
        raise ConfigError(f"{cfg.tables.sectors}: sectors {missing} have emission factors but no "
                          "row here (profiles and code mappings)")
    if cfg.sectors is not None:
        unknown = sorted(set(cfg.sectors) - set(sectors["sector"]))
        if unknown:
            raise ConfigError(f"{cfg.config_path}: 'sectors' lists unknown sectors {unknown}; "
                              f"known: {sorted(sectors['sector'])}")
    unknown = sorted(set(cfg.sector_proxies) - set(sectors["sector"]))
    if unknown:
        raise ConfigError(f"{cfg.config_path}: 'sector_proxies' names unknown sectors {unknown}; "
                          f"known: {sorted(sectors['sector'])}")
    grid = Grid.from_config(cfg.grid.model_dump())
    proxies = {name: Proxy(name=name, path=str(path)) for name, path in cfg.proxies.items()}
    checks = load_checks(cfg.tables.checks) if cfg.tables.checks else None
    return Tables(registry=registry, library=library, sectors=sectors, profiles=profiles,
                  grid=grid, proxies=proxies, checks=checks)


def read_input(cfg: BuildConfig, tables: Tables, spec: InputConfig
               ) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """Read and validate one input of the config (every row, whatever its sector)."""
    table, meta = read_sources(
        spec.path, spec.kind, target_crs=tables.grid.crs, crs=spec.crs, columns=spec.columns,
        layer=spec.layer, x_column=spec.x_column, y_column=spec.y_column,
        wkt_column=spec.wkt_column, keys=tables.library.keys,
        devices=tables.library.devices, proxies=set(tables.proxies),
        species=tables.registry.emitted, sector_proxies=cfg.sector_proxies)
    meta["name"] = spec.name
    return table, meta


def combine_inputs(cfg: BuildConfig, tables: Tables,
                   parts: list[tuple[gpd.GeoDataFrame, dict[str, Any]]]
                   ) -> tuple[gpd.GeoDataFrame, list[dict[str, Any]], gpd.GeoDataFrame]:
    """One activity table from the inputs read by :func:`read_input`, in config order; returns
    (activity, metadata, rejected activity).

    Sources of sectors not enabled in the config's ``sectors`` list are *rejected* (their mass
    goes to the ledger's ``rejected_kg`` with that reason), not silently dropped.
    """
    metas = [meta for _, meta in parts]
    for path in cfg.cems:  # measured stack hours shape the time series: record them too
        metas.append({"path": str(path), "format": Path(path).suffix.lstrip("."), "kind": "cems",
                      "sha256": sha256_or_missing(path, None),
                      "source_crs": None, "rows": None, "layer": None,
                      "name": f"cems_{Path(path).stem}"})
    for name, proxy in tables.proxies.items():  # proxies shape the gridding: record them too
        metas.append({"path": proxy.path, "format": "geotiff", "kind": "proxy",
                      "sha256": sha256_or_missing(proxy.path, None),
                      "source_crs": None, "rows": None, "layer": None, "name": f"proxy_{name}"})
    activity = combine_activity([table for table, _ in parts])
    enabled = activity["sector"].isin(cfg.sectors) if cfg.sectors is not None else \
        pd.Series(True, index=activity.index)
    rejected = activity.loc[~enabled.to_numpy()].assign(reject_reason="sector not enabled in config")
    return activity.loc[enabled.to_numpy()].reset_index(drop=True), metas, rejected


def read_inputs(cfg: BuildConfig, tables: Tables
                ) -> tuple[gpd.GeoDataFrame, list[dict[str, Any]], gpd.GeoDataFrame]:
    """Read and validate every input; returns (activity, metadata, rejected activity)
    (:func:`read_input` for each, then :func:`combine_inputs`)."""
    return combine_inputs(cfg, tables, [read_input(cfg, tables, spec) for spec in cfg.inputs])


def read_key(cfg: BuildConfig, tables: Tables, spec: InputConfig, code: str) -> str:
    """Content key of :func:`read_input`: the file's bytes (every part of a Shapefile), its
    config entry, what validation checks it against (factor keys, control devices, proxy
    names, species, sector proxies), the grid's CRS and the code version. A change anywhere
    else (another input, a factor value, a profile) leaves it unchanged."""
    return "read-" + digest({
        "code": code, "input": spec.model_dump(mode="json"), "sha256": sha256_or_missing(spec.path),
        "crs": tables.grid.crs.to_wkt(), "keys": frame_digest(tables.library.keys),
        "devices": sorted(tables.library.devices), "proxies": sorted(tables.proxies),
        "species": tables.registry.emitted, "sector_proxies": cfg.sector_proxies})


def emissions_key(cfg: BuildConfig, source_key: str) -> str:
    """Content key of one input's emissions: its read key and the bytes of the tables the
    same-source step uses (species, factors, controls, fuels)."""
    t = cfg.tables
    return "emissions-" + digest({
        "read": source_key, **{name: sha256_file(path) for name, path in (
            ("species", t.species), ("factors", t.emission_factors),
            ("controls", t.control_efficiencies), ("fuels", t.fuels))}})


def combine_emissions(parts: list[EmissionsResult], activity: gpd.GeoDataFrame,
                      rejected: gpd.GeoDataFrame) -> tuple[EmissionsResult, pd.DataFrame | None]:
    """Emissions of the kept sources (in ``activity``'s order) and kg/yr per sector × species of
    the rejected ones, from the emissions of each input computed alone (every row of it: each
    source's emissions depend on its own record only)."""
    table = pd.concat([p.table for p in parts])
    provenance = pd.concat([p.provenance for p in parts], ignore_index=True)
    kept = EmissionsResult(
        table=table.loc[activity["source_id"].to_numpy()],
        provenance=provenance[provenance["source_id"].isin(activity["source_id"])
                              ].reset_index(drop=True))
    if len(rejected) == 0:
        return kept, None
    em = table.loc[rejected["source_id"].to_numpy()]
    return kept, em.assign(sector=rejected["sector"].to_numpy()).groupby("sector").sum()


def compute_all_emissions(activity: gpd.GeoDataFrame, tables: Tables) -> EmissionsResult:
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
    return allocate(activity, tables.grid, tables.proxies,
                    cache_dir=Path(cache_dir) / "allocation" if cache_dir else None, stats=stats,
                    scheduler=scheduler, groups=groups)


def make_annual(alloc: Allocation, emissions: EmissionsResult, activity: gpd.GeoDataFrame,
                tables: Tables) -> xr.DataArray:
    return cube_mod.annual_grid(alloc.matrix, emissions.table, activity["sector"].to_numpy(),
                                tables.grid, list(emissions.table.columns),
                                list(tables.sectors["sector"]))


def make_factors(cfg: BuildConfig, tables: Tables) -> xr.DataArray:
    return temporal_factors(tables.sectors, tables.profiles, cfg.year, cfg.temporal.timezone,
                            cfg.temporal.holidays)


def make_ledger(emissions: EmissionsResult, activity: gpd.GeoDataFrame, alloc: Allocation,
                annual: xr.DataArray, rejected_kg: pd.DataFrame | None) -> Ledger:
    by_sector = annual.sum(dim=("y", "x")).to_pandas()
    return Ledger.from_build(emissions.table, activity["sector"].to_numpy(),
                             alloc.outside_fraction, by_sector, rejected_kg)


@dataclass
class WriteContext:
    """What every daily write needs besides the data."""

    hourly_dir: Path
    static: dict[str, Any]
    attrs: dict[str, Any]
    year: int
    dtype: str
    complevel: int
    shuffle: bool
    #: day (YYYYMMDD) → (content hash, file, build that wrote it) of the build the pointer
    #: refers to: a day whose content is unchanged is hard-linked from there, not rewritten
    previous: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    #: content-addressed day files (``<content hash>.<build id>.nc``, hard links to the files
    #: builds wrote): a build killed after some days resumes from them, and builds under other
    #: pointers share their days. None: no cache.
    store: Path | None = None


def stored_days(store: Path | None) -> dict[str, Path]:
    """content hash → a stored day file with that content (one listing of the store, not a
    search per day: the store holds the days of every kept build)."""
    if store is None or not store.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(store.glob("*.*.nc")):
        found.setdefault(path.name.split(".")[0], path)
    return found


def store_day(store: Path | None, content: str, path: Path, build_id: str) -> None:
    """Hard-link a written day file into the store (atomically; nothing on another file system:
    a copy would double the disk it takes)."""
    if store is None:
        return
    store.mkdir(parents=True, exist_ok=True)
    tmp = store / f".{content}.{build_id}.{os.getpid()}.tmp"
    try:
        os.link(path, tmp)
        os.replace(tmp, store / f"{content}.{build_id}.nc")
    except OSError:
        tmp.unlink(missing_ok=True)


def day_content_hash(day_ds: xr.Dataset, ctx: WriteContext) -> str:
    """sha256 of what a day file carries apart from the build's global attributes: every array
    (bytes, dtype, shape, attributes), the time axis, the static coordinates and the encoding."""
    import hashlib

    h = hashlib.sha256(json.dumps({"dtype": ctx.dtype, "complevel": ctx.complevel,
                                   "shuffle": ctx.shuffle, "year": ctx.year,
                                   "code": ctx.attrs.get("tongyuan_code_version")},
                                  sort_keys=True).encode())
    for name, (dims, values, attrs) in sorted(ctx.static.items()):
        h.update(f"{name}{dims}{json.dumps(attrs, sort_keys=True, default=str)}".encode())
        h.update(np.ascontiguousarray(values).tobytes())
    h.update(np.ascontiguousarray(day_ds["time"].values).tobytes())
    for v in sorted(day_ds.data_vars):
        a = np.ascontiguousarray(day_ds[v].values)
        h.update(f"{v}{a.dtype}{a.shape}{json.dumps(day_ds[v].attrs, sort_keys=True)}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_days(cube: xr.Dataset, days: list[pd.Timestamp], ctx: WriteContext,
               cell_area: np.ndarray) -> dict[str, Any]:
    """Compute and write the given UTC days; return per-day written kg per species, files,
    each day's content hash and the days reused from the previous build (hard links)."""
    written = {}
    files = []
    content: dict[str, str] = {}
    reused: dict[str, str] = {}
    seconds = cube_mod.SECONDS_PER_HOUR
    stored = stored_days(ctx.store)  # days differ in content: this call adds none it could use
    for day in days:
        start = np.datetime64(day.to_datetime64(), "h")
        sel = cube.sel(time=slice(start, start + np.timedelta64(23, "h")))
        if sel.sizes["time"] != 24:
            raise ConfigError(f"day {day:%Y-%m-%d} has {sel.sizes['time']} hours in the cube")
        day_ds = sel.compute()
        if ctx.dtype != "float64":
            day_ds = day_ds.astype(ctx.dtype)
        mass = {v: float((day_ds[v].to_numpy().astype(np.float64) * cell_area).sum() * seconds)
                for v in day_ds.data_vars}
        key = f"{day:%Y%m%d}"
        path = ctx.hourly_dir / f"{key}.nc"
        h = day_content_hash(day_ds, ctx)
        content[key] = h
        prev = ctx.previous.get(key)
        source = origin = None
        if prev is not None and prev[0] == h and Path(prev[1]).is_file():
            source, origin = Path(prev[1]), prev[2]
        elif (found := stored.get(h)) is not None:
            source, origin = found, found.name.split(".")[1]
        if source is not None:
            try:  # same content: the same file, not a new one (same bytes, same checksum)
                os.link(source, path)
            except OSError:
                shutil.copy2(source, path)
            reused[key] = origin  # the build that wrote the file
        else:
            netcdf_cf.write(day_ds, path, ctx.attrs, static=ctx.static, year=ctx.year,
                            dtype=ctx.dtype, complevel=ctx.complevel, shuffle=ctx.shuffle)
            store_day(ctx.store, h, path, ctx.attrs["tongyuan_build_id"])
        written[key] = mass
        files.append(str(path))
    return {"written": written, "files": files, "content": content, "reused": reused}


def previous_days(pointer: Path) -> dict[str, tuple[str, str, str]]:
    """Content hash, file and writing build of each day of the build ``pointer`` refers to."""
    manifest = pointer / "manifest.json"
    if not (pointer.is_symlink() and manifest.is_file()):
        return {}
    build = pointer.resolve()
    m = json.loads(manifest.read_text(encoding="utf-8"))
    origin = m.get("reused_days", {})
    return {day: (h, str(build / "hourly" / f"{day}.nc"), origin.get(day, build.name))
            for day, h in m.get("day_content", {}).items()}


def record_written(ledger: Ledger, annual: xr.DataArray, factors: xr.DataArray,
                   per_day: dict[str, dict[str, float]], rtol: float = RTOL,
                   cems=None) -> None:
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
        from pipeline.cems import written_adjustment

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
        raise MassBalanceError("written files disagree with the ledger:\n  " + "\n  ".join(problems))


def provenance_attrs(cfg: BuildConfig, metas: list[dict[str, Any]], build_id: str,
                     cfg_hash: str, grid: Grid) -> dict[str, Any]:
    inputs = {m["name"]: m["sha256"] for m in metas}
    return global_attributes(build_id=build_id, cfg_hash=cfg_hash, inputs=inputs,
                             version=code_version(), name=cfg.name, year=cfg.year,
                             grid_name=grid.name)


def input_fingerprint(cfg: BuildConfig) -> str:
    """sha256 over everything a build's files depend on: the configuration and tables (the
    config hash), the bytes of every input, proxy, CEMS, boundary and GRIDDESC file, the output
    settings and the code version. Equal fingerprints mean the same inventory."""
    import hashlib

    from pipeline.provenance import code_version

    h = hashlib.sha256(config_hash(cfg).encode())
    files = ([("input", i.name, i.path) for i in cfg.inputs]
             + [("proxy", n, p) for n, p in sorted(cfg.proxies.items())]
             + [("cems", str(p), p) for p in cfg.cems]
             + ([("boundaries", "", cfg.boundaries)] if cfg.boundaries else [])
             + ([("griddesc", "", cfg.grid.griddesc)] if getattr(cfg.grid, "griddesc", None)
                else []))
    for kind, name, path in files:
        h.update(f"|{kind}:{name}:{sha256_or_missing(path)}".encode())
    o = cfg.output
    h.update(json.dumps({"period": o.period, "formats": o.formats, "mechanism": o.mechanism,
                         "dtype": o.dtype, "complevel": o.complevel, "shuffle": o.shuffle,
                         "code": code_version()}, sort_keys=True, default=str).encode())
    return h.hexdigest()


def start_build(cfg: BuildConfig) -> tuple[str, str]:
    """(build id, config hash)."""
    h = config_hash(cfg)
    return new_build_id(h), h


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


def write_details(build_dir: Path, activity: gpd.GeoDataFrame, alloc: Allocation,
                  rejected: gpd.GeoDataFrame, metas: list[dict[str, Any]]) -> None:
    """Per-source details behind the ledger.

    ``sources.csv``: every source kept for gridding, its keys, input location, a representative
    point in the grid CRS and the share beyond the grid. ``notices.csv``: area sources spread by
    area (zero proxy) and rejected sources, with the reason. ``inputs.csv``: the input files.
    """
    point = activity.geometry.representative_point()
    table = pd.DataFrame({
        **{c: activity[c].to_numpy() for c in ("source_id", "kind", "sector", "subsector", "fuel",
                                               "technology", "control", "activity",
                                               "activity_unit", "input_file", "input_row")},
        "x": point.x.to_numpy(), "y": point.y.to_numpy(),
        "outside_domain_fraction": alloc.outside_fraction})
    table.to_csv(build_dir / "sources.csv", index=False, float_format="%.9g")
    rows = [{"source_id": s, "reason": "area proxy zero inside polygon: spread by area"}
            for s in alloc.fallback]
    rows += [{"source_id": s, "reason": r} for s, r in
             zip(rejected["source_id"], rejected.get("reject_reason", []), strict=False)]
    pd.DataFrame(rows, columns=["source_id", "reason"]).to_csv(build_dir / "notices.csv",
                                                               index=False)
    pd.DataFrame(metas).to_csv(build_dir / "inputs.csv", index=False)


def write_annual(build_dir: Path, annual: xr.DataArray, factors: xr.DataArray,
                 static: dict[str, Any], attrs: dict[str, Any]) -> None:
    """``annual.nc``: the annual grid per sector and species (kg/yr per cell) and the temporal
    factors (sector × UTC hour) that spread it, for reports, comparisons and scenarios."""
    ds = xr.Dataset({"annual_emissions": annual.astype("float64"),
                     "temporal_factor": factors})
    ds["annual_emissions"].attrs = {"long_name": "annual emissions per grid cell",
                                    "units": "kg year-1", "grid_mapping": "crs",
                                    "coordinates": "lat lon"}
    for name in ("x", "y", "lon", "lat"):
        dims, values, a = static[name]
        ds = ds.assign_coords({name: (dims, values, a)})
    dims, values, a = static["crs"]
    ds["crs"] = xr.Variable(dims, values, a)
    ds.attrs = {"Conventions": "CF-1.8", **attrs}
    enc = {"annual_emissions": {"zlib": True, "complevel": 1, "chunksizes": (1, 1) + annual.shape[2:]},
           "time": {"dtype": "int32", "units": f"hours since {str(factors.time.values[0])[:10]}"}}
    ds.to_netcdf(build_dir / "annual.nc", engine="netcdf4", encoding=enc)


def summary_markdown(build_id: str, totals: pd.DataFrame) -> str:
    """Ledger totals per species as a markdown table (t/yr)."""
    lines = [f"# Tongyuan build `{build_id}`", "",
             "| species | read t/yr | gridded t/yr | outside domain t/yr | rejected t/yr | "
             "written t/yr |", "|---|---:|---:|---:|---:|---:|"]
    for sp, r in totals.iterrows():
        lines.append(f"| {sp} | {r.read_kg / 1e3:,.1f} | {r.gridded_kg / 1e3:,.1f} | "
                     f"{r.outside_domain_kg / 1e3:,.1f} | {r.rejected_kg / 1e3:,.1f} | "
                     f"{r.written_kg / 1e3:,.1f} |")
    return "\n".join(lines)
