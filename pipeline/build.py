"""The build recipe, in plain Python: its steps, their order, and publishing.

:func:`run_build` is the whole build (what ``tongyuan build`` runs), :func:`prepare` everything
before the files (read → emissions → checks → allocation → time → CEMS, in a
:class:`BuildState`), and :func:`write_and_publish` the rest (hourly files, model formats,
ledger, report, manifest, atomic switch). None of it imports Prefect: :mod:`pipeline.flows`
runs the same recipe with a :class:`Runner` that makes each step a Prefect task::

    from pipeline import run_build
    result = run_build("config/shanghai.yaml", out="o", period=("2024-07-01", "2024-07-01"))
    result.totals, result.build_dir, result.files

    state = prepare("config/shanghai.yaml")     # every step up to the files, CEMS included
    state.annual.sel(species="CO2").sum()       # kg/yr
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import pandas as pd
import xarray as xr

from grids.allocate import Allocation, CacheStats
from pipeline import model_ready
from pipeline.cems import Cems, read_cems
from pipeline.checks import Finding, findings_frame, raise_on_errors
from pipeline.config import BuildConfig, load_config
from pipeline.config import build_overrides as _overrides
from pipeline.day_store import (
    DayInputs,
    DaysWritten,
    WriteContext,
    previous_days,
    templated,
    write_days,
)
from pipeline.ledger import FLOAT32_RTOL, RTOL, Ledger, check_balance
from pipeline.parallel import RunStats, keep_workers, release_memory
from pipeline.provenance import (
    code_version,
    emissions_key,
    input_fingerprint,
    new_build_id,
    provenance_attrs,
    read_key,
    start_build,
    up_to_date,  # noqa: F401 - part of this module's interface
)
from pipeline.provenance import pointer_name as _pointer
from pipeline.publish import (
    Manifest,
    ScenarioInfo,
    add_to_manifest,
    build_lock,
    discard,
    disk_full,
    prune,
    prune_cache,
    prune_day_store,
    publish,
    read_manifest,
    record_changes,
    staging_dir,
    sweep_stale,
    write_local_record,
    write_manifest,
)
from pipeline.regional import MergeMap, add_regional, write_merge_map
from pipeline.report import summary_markdown, write_report, write_synergy_page
from pipeline.scenario import (
    ScenarioRun,
    check_base_year,
    run_scenario,
    write_scenario_files,
)
from pipeline.steps import (
    Stopwatch,
    Tables,
    allocate_sources,
    check_emissions,
    combine_emissions,
    combine_inputs,
    compute_annual,
    compute_factors,
    compute_input_emissions,
    compute_ledger,
    load_tables,
    read_input,
    record_written,
    totals_markdown,
    utc_days,
    write_annual,
)
from pipeline.uncertainty import synergy_ranges, write_uncertainty
from pipeline.writers.netcdf_cf import static_coords
from pipeline.writers.tables import write_details, write_inventory_totals
from sources.emissions import EmissionsResult
from sources.errors import ConfigError
from sources.measures import load_scenario
from sources.readers import InputMeta

if TYPE_CHECKING:
    from pipeline.progress import ProgressDisplay

# ---------------------------------------------------------------------------------------------
# The recipe: prepare → write and publish. ``run_build`` and ``run_scenario_build`` are the
# whole build; pipeline.flows runs the same functions through a Prefect :class:`Runner`.
# ---------------------------------------------------------------------------------------------

class Runner:
    """How :func:`prepare` and :func:`write_and_publish` run each step.

    This plain runner calls each function in this process and caches nothing but what the
    functions cache themselves (allocation matrices, the day store).
    :class:`pipeline.flows.PrefectRunner` runs every step as a Prefect task instead: ``cached``
    steps persist their result under ``<cache dir>/tasks`` by content key, ``io`` steps are
    retried on transient I/O errors, and each step shows in the Prefect UI.

    ``display`` (a :class:`~pipeline.progress.ProgressDisplay`, or None) shows the progress the
    recipe reports through :meth:`progress`.
    """

    def __init__(self, display: ProgressDisplay | None = None) -> None:
        self.display = display

    def progress(self, stage: str, done: int, total: int) -> None:
        """``done`` of ``total`` units of ``stage`` (inputs read, days written …) finished."""
        if self.display is not None:
            self.display.update(stage, done, total)

    def run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a step of the build."""
        return fn(*args)

    def io(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a step that reads or writes files (its writes are atomic)."""
        return fn(*args)

    def cached(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], key: str,
               cache_dir: Path | None) -> tuple[Any, bool]:
        """Run a step whose result is fully determined by the content key ``key``; returns
        (result, whether it came from the cache)."""
        return fn(*args), False

    def artifact(self, key: str, markdown: str, description: str) -> None:
        """Publish a summary of the build where its runner shows one (nothing here)."""


@dataclass
class BuildState:
    """Everything a build has computed before it writes files: what :func:`prepare` returns
    and :func:`write_and_publish` consumes. Measured stack hours (``cems``) travel here, so that
    no later step can forget them.

    Attributes
    ----------
    cfg, tables : the configuration and its tables (grid included)
    activity : the sources kept for gridding (activity table in the grid CRS)
    metas : one record per file read (:class:`~sources.readers.InputMeta`)
    rejected : sources rejected by the config's ``sectors`` list, with ``reject_reason``
    emissions : same-source emissions of ``activity`` [kg/yr per source × species]
    rejected_kg : emissions of the rejected sources per sector × species [kg/yr], or None
    findings : same-source check findings (errors already raised)
    alloc : allocation matrices (cells × sources) and the shares outside the grid
    annual : annual grid ``(sector, species, y, x)`` [kg/yr per cell]
    factors : temporal factors ``(sector, time)`` [fraction of the year per UTC hour]
    ledger : the mass ledger; ``written_kg`` is filled when the files are written
    cems : measured stack hours with their gaps filled, or None
    cache : per input, per step (``read``, ``emissions``, ``allocation``): ``hit`` or
        ``computed``
    cache_files : cache files the build used, relative to the cache directory
    merge_map : with a regional background, where the local inventory replaced it
        (:class:`~pipeline.regional.MergeMap`, written as ``regional_merge.nc``), else None
    clock : timings of the steps so far
    model_lines : what the model-read ledger found (warnings, species not carried) and where
        the namelist lines are, for the summary
    """

    cfg: BuildConfig
    tables: Tables
    activity: gpd.GeoDataFrame
    metas: list[InputMeta]
    rejected: gpd.GeoDataFrame
    emissions: EmissionsResult
    rejected_kg: pd.DataFrame | None
    findings: list[Finding]
    alloc: Allocation
    annual: xr.DataArray
    factors: xr.DataArray
    ledger: Ledger
    cems: Cems | None = None
    cache: dict[str, dict[str, str]] = field(default_factory=dict)
    cache_files: list[str] = field(default_factory=list)
    merge_map: MergeMap | None = None
    clock: Stopwatch = field(default_factory=lambda: Stopwatch())
    model_lines: list[str] = field(default_factory=list)


@dataclass
class BuildResult:
    """What a published build is, as :func:`run_build` returns it (the CLI prints it).

    Attributes
    ----------
    build_id : the build's id (``<UTC time>Z-<config hash prefix>``)
    build_dir : the published build directory ``OUT/<build id>``
    latest : the pointer moved to it (``OUT/latest``, ``OUT/latest-period``, …)
    published : False when nothing had changed and nothing was published
        (:func:`up_to_date`); ``build_dir`` is then the current build
    files : the hourly CF day files, in day order
    totals : ledger totals per species [kg]: ``read_kg``, ``gridded_kg``,
        ``outside_domain_kg``, ``rejected_kg``, ``written_kg``
    ledger : the whole ledger, per sector × species [kg]
    findings : same-source check findings (warnings; errors stop the build)
    fallback : ids of area sources whose proxy was zero inside them (spread by area)
    cache : per input and step, ``hit`` or ``computed``
    report : the QA report's ``index.html``, or None if it could not be written
    timings : seconds per step [s]
    seconds : the build's wall time [s]
    period : the UTC days written (first, last), or None for the whole year
    formats, mechanism : the file formats written and the CMAQ mechanism
    wrfchem : the WRF-Chem settings (``emiss_opt``, its mechanism, ``kemit``), or None when no
        WRF-Chem files were written
    cmaq_desid : the CMAQ namelists the model-read ledger assumed (``<version>:<mechanism>``)
    model_lines : the model-read ledger's warnings and notes, and where the namelist lines are
    manifest : the build's manifest (:class:`~pipeline.publish.Manifest`)
    writes : the scheduler the day files were written on and the peak resident memory of each
        process that wrote them [MB]
    scenario : the scenario name for a scenario build, else None
    synergy : the scenario's synergy table (per measure Δ per species [t/yr]), or None
    synergy_page : the scenario's synergy page, or None
    """

    build_id: str
    build_dir: Path
    latest: Path
    published: bool
    files: list[Path]
    totals: pd.DataFrame
    ledger: Ledger | None
    findings: list[Finding]
    fallback: list[str]
    cache: dict[str, dict[str, str]]
    report: Path | None
    timings: dict[str, float]
    seconds: float
    period: tuple[str, str] | None
    formats: list[str]
    mechanism: str
    manifest: Manifest
    wrfchem: Any = None
    cmaq_desid: str = ""
    model_lines: list[str] = field(default_factory=list)
    writes: RunStats = field(default_factory=RunStats)
    scenario: str | None = None
    synergy: pd.DataFrame | None = None
    synergy_page: Path | None = None


@dataclass(frozen=True)
class Publication:
    """How a build is published.

    Attributes
    ----------
    build_id, config_hash : the build's identity
    pointer : the pointer the build moves (``latest``, ``latest-period``,
        ``latest-scenario-<name>`` …)
    fingerprint : the input fingerprint recorded in the manifest (nightly comparisons)
    scenario : the scenario a scenario build applied, or None
    extra : writes additional files into the staging directory before the manifest is made:
        ``extra(staging, static coordinates, global attributes)``
    pages : writes HTML pages that read the finished build: ``pages(staging)`` returns the
        sub-directory it wrote, which is then added to the manifest
    """

    build_id: str
    config_hash: str
    pointer: str
    fingerprint: str | None = None
    scenario: ScenarioInfo | None = None
    extra: Callable[[Path, dict[str, Any], dict[str, Any]], None] | None = None
    pages: Callable[[Path], str] | None = None


def read_all_inputs(cfg: BuildConfig, tables: Tables, runner: Runner,
                    clock: Stopwatch | None = None) -> tuple[BuildState, list[str]]:
    """Every input read and its emissions computed, each input on its own and each step
    ``cached`` by the content key of what it depends on (:func:`~pipeline.provenance.read_key`,
    :func:`~pipeline.provenance.emissions_key`): a change to one input's data re-reads and
    recomputes that input only. Returns a state without grid yet, and the task records."""
    code = code_version()
    parts, results, cache, records = [], [], {}, []
    runner.progress("read inputs", 0, len(cfg.inputs))
    for i, spec in enumerate(cfg.inputs):
        key = read_key(cfg, tables, spec, code)
        em_key = emissions_key(cfg, key)
        (table, meta), hit = runner.cached(f"read-{spec.name}", read_input, (cfg, tables, spec),
                                          key, cfg.cache_dir)
        em, em_hit = runner.cached(f"emissions-{spec.name}", compute_input_emissions,
                                  (table, tables), em_key, cfg.cache_dir)
        parts.append((table, meta))
        results.append(em)
        cache[spec.name] = {"read": "hit" if hit else "computed",
                            "emissions": "hit" if em_hit else "computed"}
        records += [f"tasks/{key}", f"tasks/{em_key}"]
        runner.progress("read inputs", i + 1, len(cfg.inputs))
    activity, metas, rejected = combine_inputs(cfg, tables, parts)
    emissions, rejected_kg = combine_emissions(results, activity, rejected)
    state = BuildState(cfg=cfg, tables=tables, activity=activity, metas=metas,
                       rejected=rejected, emissions=emissions, rejected_kg=rejected_kg,
                       findings=[], alloc=None, annual=None, factors=None,  # type: ignore[arg-type]
                       ledger=None, cache=cache,  # type: ignore[arg-type]
                       clock=clock or Stopwatch())
    return state, records


def allocate_state(state: BuildState, runner: Runner) -> tuple[Allocation, list[str]]:
    """The allocation of ``state.activity``, one matrix per input (cached on disk by the
    content of its geometries); records per input whether its matrix was reused."""
    stats = CacheStats()
    names = {m.path: m.name for m in state.metas if m.kind in ("point", "line", "area")}
    cfg = state.cfg
    alloc = runner.run("allocate", allocate_sources, state.activity, state.tables,
                      cfg.cache_dir, stats, cfg.allocation.scheduler, names)
    for name, hit in dict(stats.kinds).items():
        state.cache.setdefault(name, {})["allocation"] = hit
    return alloc, [f"allocation/{f}" for f in stats.files]


def grid_and_time(state: BuildState, runner: Runner, *, cems: bool = True) -> None:
    """Fill ``annual``, ``factors``, ``ledger`` (checked: read = gridded + outside + rejected)
    and, with ``cems``, the measured stack hours of the config."""
    s = state
    s.annual = runner.run("annual", compute_annual, s.alloc, s.emissions, s.activity, s.tables)
    s.factors = runner.run("factors", compute_factors, s.cfg, s.tables)
    s.ledger = runner.run("ledger", compute_ledger, s.emissions, s.activity, s.alloc, s.annual,
                         s.rejected_kg)
    check_balance(s.ledger, written=False)
    if cems:
        s.cems = runner.io("cems", read_cems, s.cfg.cems, s.activity, s.emissions.table,
                          s.factors, s.alloc.matrix, s.cfg.year)


def prepare(cfg: BuildConfig | str | Path, tables: Tables | None = None, *,
            runner: Runner | None = None, clock: Stopwatch | None = None) -> BuildState:
    """Read every input, compute its emissions, check them, allocate them and spread them in
    time: everything a build computes before writing files, CEMS included.

    Raises :class:`~sources.errors.ChecksFailedError` when a same-source check configured as an
    error fails, and :class:`~sources.errors.MassBalanceError` when the ledger does not balance.
    """
    cfg = cfg if isinstance(cfg, BuildConfig) else load_config(cfg)
    runner = runner or Runner()
    tables = tables or runner.run("tables", load_tables, cfg)
    state, records = read_all_inputs(cfg, tables, runner, clock)
    state.findings = runner.run("checks", check_emissions, state.emissions, state.activity,
                               tables, cfg)
    raise_on_errors(state.findings)  # configured as errors: fail before anything is written
    state.clock.lap("read+emissions")
    state.alloc, matrices = allocate_state(state, runner)
    state.clock.lap("allocate")
    grid_and_time(state, runner)
    state.clock.lap("grid+time")
    state.cache_files = sorted({*records, *matrices})
    add_regional(state, runner)  # regional background (config 'regional:'): merged, checked
    return state


def write_build_report(build_dir: Path, boundaries: Path | None = None) -> bool:
    """The QA report (district maps from ``boundaries``, the configuration's file: the manifest
    carries its path relative to the configuration); a failure here is reported, not fatal:
    the inventory itself is checked."""
    try:
        write_report(build_dir, boundaries=boundaries)
    except Exception as exc:  # noqa: BLE001 - report bugs must not block a checked inventory
        print(f"WARNING: the build report could not be written: {exc!r}")
        return False
    add_to_manifest(build_dir, "report")
    return True


def _write_files(state: BuildState, staging: Path, ctx: WriteContext, runner: Runner
                 ) -> DaysWritten:
    """Hourly CF days, then the model formats, each checked against the ledger. Each day's CF
    file, and each day's model files, is an independent task on ``output.scheduler``
    (:mod:`pipeline.parallel`; local worker processes are started once for both, as the
    build starts reading when :func:`run_build` is the caller)."""
    s, cfg = state, state.cfg
    days_ = utc_days(cfg.year, cfg.output.period)
    inputs = DayInputs(annual=s.annual, factors=s.factors, grid=s.tables.grid,
                       registry=s.tables.registry, cems=s.cems, ctx=ctx)
    with keep_workers(cfg.output.scheduler, len(days_)):
        runner.progress("write days", 0, len(days_))
        days = runner.io("write-days", write_days, inputs, days_, cfg.output.scheduler,
                         lambda done, total: runner.progress("write days", done, total))
        s.clock.lap("write")
        # float32 files carry the mass at float32 precision (~1e-7), float64 files to 1e-9
        record_written(s.ledger, s.annual, s.factors, days.written,
                       rtol=RTOL if cfg.output.dtype == "float64" else FLOAT32_RTOL,
                       cems=s.cems)
        check_balance(s.ledger, written=cfg.output.period is None)
        if s.cems is not None:
            s.cems.table.to_csv(staging / "cems.csv", index=False, float_format="%.9g")
        mo = runner.run("model-outputs", model_ready.prepare, cfg, s.tables, s.activity,
                        s.emissions, s.alloc.matrix, s.cems)
        if mo is None:
            return days
        # CMAQ / WRF-Chem: float32 files, checked per day and species
        runner.progress("write model days", 0, len(days_))
        model_stats = RunStats()
        measured = runner.io("write-model-days", model_ready.write_days, mo, days_, s.factors,
                             staging, ctx.attrs, cfg.output.scheduler,
                             lambda done, total: runner.progress("write model days", done,
                                                                 total), model_stats)
    days.stats.merge(model_stats)
    model_ready.check_days(mo, s.annual, s.factors, measured, rtol=FLOAT32_RTOL)
    # model-read ledger, namelist lines
    s.model_lines = model_ready.finish(mo, s.ledger, staging, days_)
    s.clock.lap("models")
    return days


def write_and_publish(state: BuildState, out: Path, publication: Publication,
                      runner: Runner | None = None) -> BuildResult:
    """Write the hourly files, model formats, ledger, tables, ``annual.nc``, manifest and report
    into a staging directory, check every file against the ledger, and publish it atomically
    (``publication.pointer`` switched in one rename); then prune old builds and the caches.

    Call under :func:`~pipeline.publish.build_lock` of ``out``. A failure anywhere discards the
    staging directory and leaves every pointer as it was.
    """
    runner = runner or Runner()
    s, pub, grid = state, publication, state.tables.grid
    staging = staging_dir(out, pub.build_id)
    store = Path(s.cfg.cache_dir) / "days" if s.cfg.cache_dir else None
    release_memory()  # what reading and allocating freed (pipeline.parallel.release_memory)
    try:
        ctx = WriteContext(hourly_dir=staging / "hourly", static=static_coords(grid),
                           attrs=provenance_attrs(s.cfg, s.metas, pub.build_id, pub.config_hash,
                                                  grid),
                           year=s.cfg.year, dtype=s.cfg.output.dtype,
                           complevel=s.cfg.output.complevel, shuffle=s.cfg.output.shuffle,
                           previous=previous_days(out / pub.pointer), store=store)
        # the static variables go to the file every day file starts from, and this process
        # holds none of them while the days are written (0.16 GB at 100 m); made again after
        # (1.2 s at 100 m) for annual.nc and the other files
        with templated(ctx) as ctx:
            days = _write_files(s, staging, ctx, runner)
        ctx = replace(ctx, static=static_coords(grid), template=None)
        release_memory()  # the day inputs pickled for the workers
        s.ledger.to_csv(staging / "ledger.csv")
        s.emissions.table.to_csv(staging / "emissions_by_source.csv", float_format="%.9g")
        write_details(staging, s.activity, s.alloc, s.rejected, s.metas,
                      Path(s.cfg.config_path).parent if s.cfg.config_path else None)
        write_inventory_totals(staging, s.emissions.table, s.activity, s.tables.sectors,
                               Path(s.cfg.tables.sectors).parent)
        write_annual(staging, s.annual, s.factors, ctx.static, ctx.attrs)
        runner.run("uncertainty", write_uncertainty, s, staging, ctx.static, ctx.attrs)
        if s.merge_map is not None:
            write_merge_map(staging, s.merge_map, grid, ctx.static, ctx.attrs,
                            pd.Timestamp(s.factors.time.values[0]).year)
        findings_frame(s.findings).to_csv(staging / "checks.csv", index=False)
        if pub.extra is not None:
            pub.extra(staging, ctx.static, ctx.attrs)
        write_manifest(staging, Manifest(
            build_id=pub.build_id, config_hash=pub.config_hash,
            config=s.cfg.relative(s.cfg.config_path) or "",
            year=s.cfg.year, boundaries=s.cfg.relative(s.cfg.boundaries),
            period=s.cfg.output.period, inputs={m.name: m.sha256 for m in s.metas},
            day_content=days.content, reused_days=days.reused, fingerprint=pub.fingerprint,
            cache_files=s.cache_files, scenario=pub.scenario), days.hashed)
        ctx = None  # its static coordinates (0.16 GB at 100 m) are written; not the report's
        release_memory()  # before the report, the parent's largest step on a large grid
        reported = runner.run("report", write_build_report, staging, s.cfg.boundaries)
        if pub.pages is not None:
            add_to_manifest(staging, pub.pages(staging))
        latest = out / pub.pointer
        previous = latest.resolve() if latest.is_symlink() else None
        final = publish(out, staging, pub.build_id, pointer=pub.pointer)
    except BaseException as exc:
        discard(staging)
        full = disk_full(exc, out)
        if full is not None:
            raise full from exc
        raise
    if s.cfg.config_path is not None:  # where the manifest's relative paths start, kept local
        write_local_record(out, pub.build_id, {"config_dir": str(Path(s.cfg.config_path).parent)})
    record_changes(out, previous, final, pub.pointer)
    prune(out, s.cfg.output.keep_builds)
    prune_day_store(store)
    prune_cache(out, s.cfg.cache_dir)
    s.clock.lap("publish")
    return BuildResult(
        build_id=pub.build_id, build_dir=final, latest=latest, published=True,
        files=[final / "hourly" / Path(f).name for f in days.files],
        totals=s.ledger.totals(), ledger=s.ledger, findings=s.findings,
        fallback=list(s.alloc.fallback), cache=s.cache,
        report=final / "report" / "index.html" if reported else None,
        timings=dict(s.clock.steps), seconds=s.clock.total, period=s.cfg.output.period,
        formats=list(s.cfg.output.formats), mechanism=s.cfg.output.mechanism,
        manifest=read_manifest(final), writes=days.stats,
        wrfchem=s.cfg.output.wrfchem if "wrfchem" in s.cfg.output.formats else None,
        cmaq_desid=s.cfg.output.cmaq_namelists, model_lines=list(s.model_lines))


def run_build(config: str | Path, runner: Runner | None = None, **overrides: Any) -> BuildResult:
    """The whole build, published: read → emissions → checks → allocation → time → CEMS →
    hourly files and model formats → ledger, tables, ``annual.nc``, report → manifest → atomic
    switch of ``latest`` (``latest-period`` for a ``period`` build).

    Parameters
    ----------
    config : the build configuration (YAML)
    runner : how steps run (default: in this process, no Prefect; the CLI passes
        :class:`pipeline.flows.PrefectRunner`)
    **overrides : ``out`` (output directory), ``year``, ``period`` (two UTC dates, inclusive),
        ``scheduler`` (dask scheduler of the allocation and of the day writes: ``processes``,
        ``synchronous`` or a ``dask.distributed`` address), ``formats`` (``cf``, ``cmaq``,
        ``wrfchem``), ``mechanism`` (CMAQ), ``emiss_opt`` and ``kemit`` (WRF-Chem),
        ``cmaq_streams`` (stream label → sectors)

    Examples
    --------
    >>> r = run_build("config/shanghai.yaml", out="o", period=("2024-07-01", "2024-07-01"))
    >>> r.totals.loc["CO2", "written_kg"], r.build_dir  # doctest: +SKIP
    """
    runner = runner or Runner()
    clock = Stopwatch()
    cfg = runner.run("config", load_config, config, _overrides(overrides))
    out = Path(cfg.output.dir)
    # taken first: a second build is told at once, not after reading; the local workers
    # start beside the reading (pipeline.parallel.keep_workers)
    with build_lock(out), keep_workers(cfg.output.scheduler,
                                       len(utc_days(cfg.year, cfg.output.period))):
        sweep_stale(out)
        tables = runner.run("tables", load_tables, cfg)
        model_ready.check_formats(cfg, tables)  # a grid a model format cannot take: fail now
        state = prepare(cfg, tables, runner=runner, clock=clock)
        build_id, cfg_hash = start_build(cfg)
        result = write_and_publish(state, out, Publication(
            build_id=build_id, config_hash=cfg_hash, pointer=_pointer(cfg),
            fingerprint=input_fingerprint(cfg)), runner)
    markdown = (summary_markdown(result.build_dir) if result.report is not None
                else totals_markdown(build_id, result.totals))
    runner.artifact("build-summary", markdown, f"Tongyuan build {build_id}")
    return result


def run_scenario_build(scenario_path: str | Path, runner: Runner | None = None,
                       **overrides: Any) -> BuildResult:
    """A policy scenario, built and published beside its base: the base inputs are read, the
    scenario's measures applied in order and one by one, the result gridded with the base
    allocation (only new sources are allocated) and written like a build (hourly files,
    ledger, annual grid, report) plus ``synergy.csv``, ``difference.nc``,
    ``activity_changes.csv`` and ``synergy/index.html``; ``latest-scenario-<name>`` moves to it.

    ``overrides``: ``out`` and ``period`` as for :func:`run_build`.
    """
    runner = runner or Runner()
    clock = Stopwatch()
    sc = load_scenario(scenario_path)
    unknown = sorted(set(overrides) - {"out", "period"})
    if unknown:
        raise ConfigError(f"unknown scenario override(s) {unknown}; known: ['out', 'period']")
    cfg = runner.run("config", load_config, sc.base_config, _overrides(overrides))
    check_base_year(sc, cfg.year)
    out = Path(cfg.output.dir)
    with build_lock(out), keep_workers(cfg.output.scheduler,
                                       len(utc_days(cfg.year, cfg.output.period))):
        sweep_stale(out)
        tables = runner.run("tables", load_tables, cfg)
        state, records = read_all_inputs(cfg, tables, runner, clock)
        clock.lap("read")
        base_alloc, matrices = allocate_state(state, runner)
        clock.lap("allocate")
        run = runner.run("scenario", run_scenario, sc, state.activity, base_alloc, tables,
                        cfg.boundaries)
        run.synergy = runner.run("synergy-ranges", synergy_ranges, run, tables, cfg,
                                 cfg.uncertainty.synergy_members, cfg.uncertainty.seed)
        clock.lap("measures")
        state.activity, state.emissions, state.alloc = run.final, run.emissions, run.allocation
        state.findings = runner.run("checks", check_emissions, state.emissions, state.activity,
                                   tables, cfg)
        raise_on_errors(state.findings)
        grid_and_time(state, runner, cems=False)  # measured hours are the base year's
        clock.lap("grid+time")
        state.cache_files = sorted({*records, *matrices})
        _, cfg_hash = start_build(cfg)
        sc_hash = hashlib.sha256(cfg_hash.encode() + Path(sc.path).read_bytes()).hexdigest()
        build_id = new_build_id(sc_hash)
        state.metas = [*state.metas, InputMeta.of_file(sc.path, "scenario", "scenario",
                                                       format="yaml", rows=len(sc.measures))]
        result = write_and_publish(state, out, Publication(
            build_id=build_id, config_hash=sc_hash, pointer=_pointer(cfg, f"latest-scenario-"
                                                                     f"{sc.name}"),
            scenario=ScenarioInfo(name=sc.name, file=cfg.relative(sc.path),
                                  base_year=sc.base_year,
                                  target_year=sc.target_year, base_config_hash=cfg_hash),
            extra=lambda staging, static, attrs: write_scenario_files(run, staging, static,
                                                                     attrs),
            pages=lambda staging: write_synergy_page(staging, cfg.boundaries).parent.name),
            runner)
    result.scenario, result.synergy = sc.name, run.synergy
    result.synergy_page = result.build_dir / "synergy" / "index.html"
    runner.artifact("scenario-synergy", synergy_markdown(run),
                   f"Tongyuan scenario {sc.name} ({build_id})")
    return result


def synergy_markdown(run: ScenarioRun) -> str:
    """The synergy table of a scenario run as markdown (per measure ΔCO2 [kt], Δ pollutants
    [t])."""
    lines = [f"# Scenario `{run.scenario.name}`: {run.scenario.title}", "",
             "| measure | basis | ΔCO2 kt | ΔNOx t | ΔSO2 t | ΔPM2.5 t |",
             "|---|---|---:|---:|---:|---:|"]
    for _, r in run.synergy.iterrows():
        lines.append(f"| {r.measure} | {r.basis} | {r.delta_CO2_t / 1e3:,.1f} | "
                     f"{r.get('delta_NOx_t', float('nan')):,.1f} | "
                     f"{r.get('delta_SO2_t', float('nan')):,.1f} | "
                     f"{r.get('delta_PM2_5_t', float('nan')):,.1f} |")
    return "\n".join(lines)
