"""Prefect flows. The only module that imports ``prefect``; its tasks are one-line wrappers of
the plain functions in :mod:`pipeline.build` and hold no science.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline import build as b
from pipeline.checks import findings_frame, raise_on_errors
from pipeline.config import BuildConfig, load_config
from pipeline.cube import hourly_cube
from pipeline.ledger import FLOAT32_RTOL, RTOL, check_balance
from pipeline.publish import (
    add_to_manifest,
    build_lock,
    discard,
    prune,
    prune_cache,
    prune_day_store,
    publish,
    record_changes,
    staging_dir,
    sweep_stale,
    write_manifest,
)
from pipeline.writers.netcdf_cf import static_coords

T = {"cache_policy": NO_CACHE, "persist_result": False}


def _transient(task, task_run, state) -> bool:
    """Retry I/O trouble that may pass (a busy or full disk, a network file system hiccup, a
    dropped connection), never bad input, a missing file or a failed check."""
    exc = state.result(raise_on_failure=False)
    permanent = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
    return isinstance(exc, (OSError, TimeoutError)) and not isinstance(exc, permanent)


#: tasks that read or write files: retried twice on transient I/O errors (their writes are
#: atomic, so a retry starts clean)
T_IO = {**T, "retries": 2, "retry_delay_seconds": 2, "retry_condition_fn": _transient}


@task(**T)
def load_config_task(path: str, overrides: dict[str, Any]) -> BuildConfig:
    return load_config(path, overrides)


@task(**T)
def load_tables_task(cfg: BuildConfig) -> b.Tables:
    return b.load_tables(cfg)


def _by_key(context, parameters) -> str:
    return parameters["key"]


#: tasks cached on disk by the content key passed as their ``key`` parameter
#: (:func:`pipeline.build.read_key`): the record holds the result, so a later build, in another
#: process, skips the work when nothing that work depends on changed. A record cut short by a
#: killed build reads as a miss and is written again.
T_CACHED = {"cache_key_fn": _by_key, "persist_result": True, "cache_expiration": None}


@task(**T_CACHED, retries=2, retry_delay_seconds=2, retry_condition_fn=_transient,
      task_run_name="read-{spec.name}")
def read_input_task(cfg: BuildConfig, tables: b.Tables, spec, key: str):
    return b.read_input(cfg, tables, spec)


@task(**T_CACHED, task_run_name="emissions-{name}")
def input_emissions_task(table, tables: b.Tables, name: str, key: str):
    return b.compute_all_emissions(table, tables)


def _state(state) -> str:
    return "hit" if state.name == "Cached" else "computed"


def read_and_compute(cfg: BuildConfig, tables: b.Tables):
    """Every input read and its emissions computed, each input on its own, each step a task
    cached under ``<cache dir>/tasks`` by the content key of what it depends on: a change to one
    input's data re-reads and recomputes that input only.

    Returns (activity, metadata, rejected activity, emissions of the kept sources, rejected
    kg/yr per sector × species, per input and step ``"hit"`` or ``"computed"``, the task
    records used, relative to the cache directory).
    """
    from pipeline.provenance import code_version

    if cfg.cache_dir is not None:
        opts: dict[str, Any] = {"result_storage": Path(cfg.cache_dir) / "tasks"}
    else:
        opts = {"cache_policy": NO_CACHE, "persist_result": False}
    read, emit = read_input_task.with_options(**opts), input_emissions_task.with_options(**opts)
    code = code_version()
    parts, results, cache, records = [], [], {}, []
    for spec in cfg.inputs:
        key = b.read_key(cfg, tables, spec, code)
        em_key = b.emissions_key(cfg, key)
        got = read(cfg, tables, spec, key, return_state=True)
        table, meta = got.result()
        em = emit(table, tables, spec.name, em_key, return_state=True)
        parts.append((table, meta))
        results.append(em.result())
        cache[spec.name] = {"read": _state(got), "emissions": _state(em)}
        records += [f"tasks/{key}", f"tasks/{em_key}"]
    activity, metas, rejected = b.combine_inputs(cfg, tables, parts)
    emissions, rejected_kg = b.combine_emissions(results, activity, rejected)
    return activity, metas, rejected, emissions, rejected_kg, cache, records


@task(**T)
def checks_task(emissions, activity, tables: b.Tables, cfg: BuildConfig):
    return b.check_emissions(emissions, activity, tables, cfg)


def _input_names(metas: list[dict[str, Any]]) -> dict[str, str]:
    return {m["path"]: m["name"] for m in metas if m["kind"] in ("point", "line", "area")}


def _merge_cache(cache: dict[str, dict[str, str]], allocated: dict[str, str]) -> None:
    for name, state in allocated.items():
        cache.setdefault(name, {})["allocation"] = state


@task(**T)
def allocate_task(activity, tables: b.Tables, cache_dir=None, scheduler: str | None = None,
                  inputs: dict[str, str] | None = None):
    """Allocation, per input (``inputs``: input file → name) whether its cached matrix was
    reused, and the cache files used (relative to the cache directory). The matrices are
    computed in chunks of sources with dask on ``scheduler`` (threads, or a dask.distributed
    cluster): one Prefect task, since the chunks are pure functions of their sources."""
    from grids.allocate import CacheStats

    stats = CacheStats()
    alloc = b.allocate_sources(activity, tables, cache_dir, stats, scheduler, inputs)
    return alloc, dict(stats.kinds), [f"allocation/{f}" for f in stats.files]


@task(**T)
def annual_task(alloc, emissions, activity, tables: b.Tables):
    return b.make_annual(alloc, emissions, activity, tables)


@task(**T)
def factors_task(cfg: BuildConfig, tables: b.Tables):
    return b.make_factors(cfg, tables)


@task(**T)
def ledger_task(emissions, activity, alloc, annual, rejected_kg):
    return b.make_ledger(emissions, activity, alloc, annual, rejected_kg)


@task(**T_IO, task_run_name="write-{label}")
def write_days_task(cube, days, ctx: b.WriteContext, cell_area, label: str):
    return b.write_days(cube, days, ctx, cell_area)


@task(**T)
def model_outputs_task(cfg: BuildConfig, tables: b.Tables, activity, emissions, alloc,
                       cems=None):
    """Speciation, layers (plume rise) and the model-species annual grid, or None (CF only)."""
    from pipeline import models

    return models.prepare(cfg, tables, activity, emissions, alloc.matrix, cems)


@task(**T_IO)
def cems_task(cfg: BuildConfig, activity, emissions, factors, alloc):
    """Measured stack hours (CEMS) with their gaps filled, or None."""
    from pipeline.cems import read_cems

    return read_cems(cfg.cems, activity, emissions.table, factors, alloc.matrix, cfg.year)


@task(**T_IO, task_run_name="write-models-{label}")
def write_model_days_task(mo, days, factors, build_dir: Path, meta, label: str):
    from pipeline import models

    return models.write_days(mo, days, factors, build_dir, meta)


@task(**T)
def report_task(build_dir: Path) -> bool:
    """The QA report; a failure here is reported, not fatal: the inventory itself is checked."""
    from pipeline.report import write_report

    try:
        write_report(build_dir)
    except Exception as exc:  # noqa: BLE001 - report bugs must not block a checked inventory
        print(f"WARNING: the build report could not be written: {exc!r}")
        return False
    add_to_manifest(build_dir, "report")
    return True


def _write_and_publish(cfg: BuildConfig, tables: b.Tables, out: Path, build_id: str,
                       cfg_hash: str, metas, activity, rejected, emissions, alloc, annual,
                       factors, ledger, findings, clock: b.Stopwatch, pointer: str,
                       extra: Callable[[Path, dict[str, Any], dict[str, Any]], None] | None = None,
                       manifest_extra: dict[str, Any] | None = None,
                       pages: Callable[[Path], str] | None = None, cems=None
                       ) -> tuple[Path, dict[str, dict[str, float]], bool]:
    """Write hourly files, ledger, details and report into staging, check, publish atomically.

    Called inside a flow and under the output lock. ``extra(staging, static, attrs)`` writes
    additional files (a scenario's synergy table) before the manifest is made; ``pages(staging)``
    writes HTML pages that read the finished build (returns the sub-directory it wrote, which is
    then added to the manifest).
    """
    staging = staging_dir(out, build_id)
    try:
        grid = tables.grid
        ctx = b.WriteContext(hourly_dir=staging / "hourly", static=static_coords(grid),
                             attrs=b.provenance_attrs(cfg, metas, build_id, cfg_hash, grid),
                             year=cfg.year, dtype=cfg.output.dtype,
                             complevel=cfg.output.complevel, shuffle=cfg.output.shuffle,
                             previous=b.previous_days(out / pointer),
                             store=Path(cfg.cache_dir) / "days" if cfg.cache_dir else None)
        cube = hourly_cube(annual, factors, grid, tables.registry, cems=cems)
        by_month = defaultdict(list)
        for day in b.utc_days(cfg.year, cfg.output.period):
            by_month[f"{day:%Y-%m}"].append(day)
        per_day: dict[str, dict[str, float]] = {}
        day_content: dict[str, str] = {}
        reused: dict[str, str] = {}
        for label, days in by_month.items():
            res = write_days_task(cube, days, ctx, grid.cell_area_m2, label)
            per_day.update(res["written"])
            day_content.update(res["content"])
            reused.update(res["reused"])
        clock.lap("write")
        # float32 files carry the mass at float32 precision (~1e-7), float64 files to 1e-9
        b.record_written(ledger, annual, factors, per_day,
                         rtol=RTOL if cfg.output.dtype == "float64" else FLOAT32_RTOL,
                         cems=cems)
        check_balance(ledger, written=cfg.output.period is None)
        if cems is not None:
            cems.table.to_csv(staging / "cems.csv", index=False, float_format="%.9g")
        mo = model_outputs_task(cfg, tables, activity, emissions, alloc, cems)
        if mo is not None:  # CMAQ / WRF-Chem: float32 files, checked per day and species
            from pipeline import models

            measured: dict[str, dict[str, dict[str, float]]] = {f: {} for f in mo.formats}
            for label, days in by_month.items():
                got = write_model_days_task(mo, days, factors, staging, ctx.attrs, label)
                for f in mo.formats:
                    measured[f].update(got[f])
            models.check_days(mo, annual, factors, measured, rtol=FLOAT32_RTOL)
            clock.lap("models")
        ledger.to_csv(staging / "ledger.csv")
        emissions.table.to_csv(staging / "emissions_by_source.csv", float_format="%.9g")
        b.write_details(staging, activity, alloc, rejected, metas)
        b.write_annual(staging, annual, factors, ctx.static, ctx.attrs)
        findings_frame(findings).to_csv(staging / "checks.csv", index=False)
        if extra is not None:
            extra(staging, ctx.static, ctx.attrs)
        write_manifest(staging, {"build_id": build_id, "config_hash": cfg_hash,
                                 "config": str(cfg.config_path), "year": cfg.year,
                                 "boundaries": str(cfg.boundaries) if cfg.boundaries
                                 else None, "period": cfg.output.period,
                                 "inputs": {m["name"]: m["sha256"] for m in metas},
                                 "day_content": day_content, "reused_days": reused,
                                 **(manifest_extra or {})})
        reported = report_task(staging)
        if pages is not None:
            add_to_manifest(staging, pages(staging))
        previous = (out / pointer).resolve() if (out / pointer).is_symlink() else None
        final = publish(out, staging, build_id, pointer=pointer)
    except BaseException:
        discard(staging)
        raise
    record_changes(out, previous, final, pointer)
    prune(out, cfg.output.keep_builds)
    prune_day_store(ctx.store)
    prune_cache(out, cfg.cache_dir)
    return final, per_day, reported


@flow(name="build-inventory", log_prints=True)
def build_inventory(config_path: str, out_dir: str | None = None, year: int | None = None,
                    period: tuple[str, str] | None = None,
                    scheduler: str | None = None, formats: list[str] | None = None,
                    mechanism: str | None = None) -> dict[str, Any]:
    """Annual build: sources → same-source emissions → grid → hours → CF NetCDF → publish.

    ``period`` (two UTC dates, inclusive) writes only those days: an episode for a model run,
    or a quick look. The ledger's ``written_kg`` is then the period's share. ``scheduler``
    overrides ``allocation.scheduler`` (e.g. a dask.distributed address); ``formats`` (``cf``,
    ``cmaq``, ``wrfchem``) and ``mechanism`` override ``output.formats`` and
    ``output.mechanism``: each model format is written into its own folder beside ``hourly/``.

    Returns a summary: build id and directory, ledger totals per species, timings.
    """
    clock = b.Stopwatch()
    cfg = load_config_task(config_path, {"year": year, "output.dir": out_dir,
                                         "output.period": list(period) if period else None,
                                         "allocation.scheduler": scheduler,
                                         "output.formats": formats,
                                         "output.mechanism": mechanism})
    out = Path(cfg.output.dir)
    with build_lock(out):  # taken first: a second build is told at once, not after reading
        sweep_stale(out)
        tables = load_tables_task(cfg)
        from pipeline.models import check_formats
        check_formats(cfg, tables)  # a grid a model format cannot take fails before any work
        activity, metas, rejected, emissions, rejected_kg, cache, records = read_and_compute(
            cfg, tables)
        findings = checks_task(emissions, activity, tables, cfg)
        raise_on_errors(findings)  # configured as errors: fail fast, before anything is written
        clock.lap("read+emissions")
        alloc, allocated, matrices = allocate_task(activity, tables, cfg.cache_dir,
                                                   cfg.allocation.scheduler, _input_names(metas))
        _merge_cache(cache, allocated)
        clock.lap("allocate")
        annual = annual_task(alloc, emissions, activity, tables)
        factors = factors_task(cfg, tables)
        ledger = ledger_task(emissions, activity, alloc, annual, rejected_kg)
        check_balance(ledger, written=False)
        cems = cems_task(cfg, activity, emissions, factors, alloc)
        clock.lap("grid+time")

        build_id, cfg_hash = b.start_build(cfg)
        pointer = "latest" if cfg.output.period is None else "latest-period"
        final, per_day, reported = _write_and_publish(
            cfg, tables, out, build_id, cfg_hash, metas, activity, rejected, emissions, alloc,
            annual, factors, ledger, findings, clock, pointer, cems=cems,
            manifest_extra={"fingerprint": b.input_fingerprint(cfg),
                            "cache_files": sorted({*records, *matrices})})
    clock.lap("publish")
    totals = ledger.totals()
    if reported:
        from pipeline.report import summary_markdown
        markdown = summary_markdown(final)
    else:
        markdown = b.summary_markdown(build_id, totals)
    create_markdown_artifact(key="build-summary", markdown=markdown,
                             description=f"Tongyuan build {build_id}")
    return {"build_id": build_id, "build_dir": str(final), "latest": str(out / pointer),
            "files": len(per_day), "totals": totals, "fallback": list(alloc.fallback),
            "findings": findings, "cache": cache,
            "report": str(final / "report" / "index.html") if reported else None,
            "timings": dict(clock.steps), "seconds": clock.total, "period": cfg.output.period,
            "formats": list(cfg.output.formats), "mechanism": cfg.output.mechanism}


@task(**T)
def scenario_task(scenario, activity, alloc, tables: b.Tables, boundaries):
    from pipeline.scenario import run_scenario

    return run_scenario(scenario, activity, alloc, tables, boundaries)


@flow(name="scenario-inventory", log_prints=True)
def scenario_inventory(scenario_path: str, out_dir: str | None = None,
                       period: tuple[str, str] | None = None) -> dict[str, Any]:
    """Scenario inventory and synergy assessment, published beside the base builds.

    Reads the base configuration the scenario names, applies its measures (in order and one by
    one), grids the result with the base allocation (only new sources are allocated), writes the
    scenario inventory like a build (hourly files, ledger, annual grid, report) plus
    ``synergy.csv``, ``difference.nc``, ``activity_changes.csv`` and ``synergy/index.html``, and
    moves ``latest-scenario-<name>`` to it.
    """
    import hashlib

    from pipeline.report import write_synergy_page
    from pipeline.scenario import check_base_year, write_scenario_files
    from sources.scenario import load_scenario

    clock = b.Stopwatch()
    sc = load_scenario(scenario_path)
    cfg = load_config_task(str(sc.base_config), {
        "output.dir": out_dir, "output.period": list(period) if period else None})
    check_base_year(sc, cfg.year)
    out = Path(cfg.output.dir)
    with build_lock(out):
        sweep_stale(out)
        tables = load_tables_task(cfg)
        activity, metas, rejected, _, rejected_kg, cache, records = read_and_compute(cfg, tables)
        clock.lap("read")
        base_alloc, allocated, matrices = allocate_task(
            activity, tables, cfg.cache_dir, cfg.allocation.scheduler, _input_names(metas))
        _merge_cache(cache, allocated)
        clock.lap("allocate")
        run = scenario_task(sc, activity, base_alloc, tables, cfg.boundaries)
        clock.lap("measures")
        act = run.final
        emissions, alloc = run.emissions, run.allocation
        findings = checks_task(emissions, act, tables, cfg)
        raise_on_errors(findings)
        annual = annual_task(alloc, emissions, act, tables)
        factors = factors_task(cfg, tables)
        ledger = ledger_task(emissions, act, alloc, annual, rejected_kg)
        check_balance(ledger, written=False)
        clock.lap("grid+time")

        sc_bytes = Path(sc.path).read_bytes()
        _, cfg_hash = b.start_build(cfg)
        sc_hash = hashlib.sha256(cfg_hash.encode() + sc_bytes).hexdigest()
        build_id = b.new_build_id(sc_hash)
        metas = [*metas, {"path": str(sc.path), "format": "yaml", "kind": "scenario",
                          "sha256": hashlib.sha256(sc_bytes).hexdigest(), "source_crs": None,
                          "rows": len(sc.measures), "layer": None, "name": "scenario"}]
        pointer = f"latest-scenario-{sc.name}" + ("" if cfg.output.period is None else "-period")
        final, per_day, reported = _write_and_publish(
            cfg, tables, out, build_id, sc_hash, metas, act, rejected, emissions, alloc, annual,
            factors, ledger, findings, clock, pointer,
            extra=lambda staging, static, attrs: write_scenario_files(run, staging, static,
                                                                     attrs),
            manifest_extra={"scenario": sc.name, "scenario_file": str(sc.path),
                            "base_year": sc.base_year, "target_year": sc.target_year,
                            "base_config_hash": cfg_hash,
                            "cache_files": sorted({*records, *matrices})},
            pages=lambda staging: write_synergy_page(staging, cfg.boundaries).parent.name)
    clock.lap("publish")
    create_markdown_artifact(key="scenario-synergy", markdown=_synergy_markdown(run),
                             description=f"Tongyuan scenario {sc.name} ({build_id})")
    return {"build_id": build_id, "build_dir": str(final), "latest": str(out / pointer),
            "files": len(per_day), "totals": ledger.totals(), "fallback": list(alloc.fallback),
            "findings": findings, "synergy": run.synergy, "scenario": sc.name,
            "cache": cache,
            "report": str(final / "report" / "index.html") if reported else None,
            "synergy_page": str(final / "synergy" / "index.html"),
            "timings": dict(clock.steps), "seconds": clock.total, "period": cfg.output.period}


def _synergy_markdown(run) -> str:
    lines = [f"# Scenario `{run.scenario.name}`: {run.scenario.title}", "",
             "| measure | basis | ΔCO2 kt | ΔNOx t | ΔSO2 t | ΔPM2.5 t |", "|---|---|---:|---:|---:|---:|"]
    for _, r in run.synergy.iterrows():
        lines.append(f"| {r.measure} | {r.basis} | {r.delta_CO2_t / 1e3:,.1f} | "
                     f"{r.get('delta_NOx_t', float('nan')):,.1f} | "
                     f"{r.get('delta_SO2_t', float('nan')):,.1f} | "
                     f"{r.get('delta_PM2_5_t', float('nan')):,.1f} |")
    return "\n".join(lines)


@flow(name="nightly-inventory", log_prints=True)
def nightly_inventory(config_path: str, out_dir: str | None = None) -> dict[str, Any]:
    """The scheduled regeneration: rebuild and publish only when something the inventory
    depends on changed (:func:`pipeline.build.input_fingerprint` against the fingerprint in the
    manifest of the build ``latest`` points to); otherwise finish at once, publishing nothing."""
    cfg = load_config_task(config_path, {"output.dir": out_dir})
    fingerprint = b.input_fingerprint(cfg)
    pointer = Path(cfg.output.dir) / ("latest" if cfg.output.period is None else "latest-period")
    if pointer.is_symlink() and (pointer / "manifest.json").is_file():
        manifest = json.loads((pointer / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("fingerprint") == fingerprint:
            print(f"nothing changed since build {manifest.get('build_id')}: nothing published")
            return {"published": False, "build_id": manifest.get("build_id"),
                    "fingerprint": fingerprint}
    summary = build_inventory(config_path, out_dir=out_dir)
    return {**summary, "published": True, "fingerprint": fingerprint}


def nightly_deployment(config_path: str, out_dir: str | None, cron: str, timezone: str):
    """The nightly deployment: :func:`nightly_inventory` on a cron schedule in ``timezone``
    (a cron without one is UTC in Prefect), for ``flow.serve``-style serving."""
    from prefect.schedules import Cron

    cfg = load_config(config_path)
    return nightly_inventory.to_deployment(
        name=f"nightly-{cfg.name}", schedules=[Cron(cron, timezone=timezone)],
        parameters={"config_path": str(Path(config_path).resolve()),
                    "out_dir": str(Path(out_dir).resolve()) if out_dir else None},
        description=f"Regenerate {cfg.name} when its inputs change ({cron}, {timezone})")
