"""``tongyuan`` command line: one config file plus overrides (as HERMES and SMOKE users work).

    tongyuan build --config config/shanghai.yaml [--out DIR] [--year 2024]
    tongyuan scenario config/scenarios/plan-2030.yaml [--out DIR] [--period START:END]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.writers import FORMATS  # the registry only: no writer is imported

if TYPE_CHECKING:
    from pipeline.build import BuildResult


def _at_least(low: int):
    """An argparse type: an integer >= ``low`` (argparse prints the message and exits 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value
    return parse

def prefect_environment(verbose: bool) -> None:
    """Offline-safe Prefect defaults, set before Prefect is imported; the user's values win:
    a home of its own under ``~/.tongyuan``, no analytics or telemetry (no network at run
    time), a generous start-up time for its temporary server, and quiet logs."""
    os.environ.setdefault("PREFECT_HOME", str(Path.home() / ".tongyuan" / "prefect"))
    # Prefect creates only the last level of its home: on a fresh machine its database could not
    # be opened and the temporary server timed out after two minutes
    with contextlib.suppress(OSError):  # an unwritable home is reported by prefect_problem
        Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # Tongyuan prints its own one-line errors; Prefect's tracebacks only with --verbose
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")


def prefect_problem() -> str | None:
    """What would make Prefect fail slowly (a 2-minute time-out, thousands of lines of
    tracebacks), said in one line at once: a Prefect home that cannot be written, a database in
    it that is not a readable SQLite file, an API address that does not answer. None if none."""
    home = Path(os.environ["PREFECT_HOME"]).expanduser()
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".tongyuan-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return (f"Prefect's home {home} (PREFECT_HOME) cannot be written ({exc.strerror}); set "
                "PREFECT_HOME to a writable directory")
    db = home / "prefect.db"
    if db.exists() and "PREFECT_API_URL" not in os.environ:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                status = con.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.Error as exc:
            status = str(exc)
        if status != "ok":
            return (f"Prefect's database {db} is damaged ({status}); move it away (Prefect "
                    "makes a new one) or set PREFECT_HOME to another directory")
    api = os.environ.get("PREFECT_API_URL")
    if api:
        try:
            with urllib.request.urlopen(api.rstrip("/") + "/health", timeout=5):
                pass
        except (OSError, ValueError) as exc:
            return (f"the Prefect API at {api} (PREFECT_API_URL) does not answer ({exc}); start "
                    "it (prefect server start) or unset PREFECT_API_URL for a temporary one")
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tongyuan", description="Same-source gridded hourly "
                                "carbon-pollution emission inventory.")
    sub = p.add_subparsers(dest="command", required=True)
    bp = sub.add_parser("build", help="run the annual build and publish it")
    bp.add_argument("--config", required=True, type=Path, help="build configuration (YAML)")
    bp.add_argument("--out", type=Path, help="output directory (default: output.dir of config)")
    bp.add_argument("--year", type=int, help="output year (default: year of the config)")
    bp.add_argument("--period", metavar="START:END", help="write only these UTC days, e.g. "
                    "2024-01-15:2024-01-21 (default: the whole year)")
    bp.add_argument("--scheduler", metavar="S", help="where allocation matrices and day files "
                    "are computed: processes (every core), synchronous (this process), or a "
                    "dask.distributed scheduler address such as tcp://10.0.0.5:8786 (default: "
                    "allocation.scheduler and output.scheduler of the config: threads for "
                    "allocation, worker processes for the day files of builds of 8 days or "
                    "more)")
    bp.add_argument("--format", metavar="F[,F]", help="file formats, comma-separated: cf "
                    "(hourly/, always written), cmaq (cmaq/, I/O API), wrfchem (wrfchem/, "
                    "wrfchemi); default: output.formats of the config")
    bp.add_argument("--mechanism", help="chemical mechanism of the cmaq files, a mechanism of "
                    "the speciation table: cb6r3_ae6 (CMAQ 5.3.3) or cb6r5_ae7 (CMAQ 5.4/5.5 "
                    "default) (default: output.mechanism, cb6r3_ae6)")
    bp.add_argument("--emiss-opt", type=int, metavar="N", help="WRF-Chem emiss_opt whose "
                    "Registry package the wrfchemi files carry: 3, 4, 8, 10, 14, 15, 16, 17 "
                    "(default: output.wrfchem.emiss_opt, 3)")
    bp.add_argument("--kemit", type=int, metavar="N", help="WRF-Chem kemit, the levels of the "
                    "wrfchemi files (default: output.wrfchem.kemit, else the model layers)")
    bp.add_argument("--cmaq-streams", metavar="L=S,S;L=S", help="CMAQ streams, each a set of "
                    "day files (cmaq/streams/) beside the merged one: label=sectors, e.g. "
                    "'ENERGY=power,industry_combustion;MOBILE=road,offroad,shipping;"
                    "FERT=fertiliser'; other sectors go to OTHER (default: output.cmaq.streams)")
    bp.add_argument("--force", action="store_true", help="build and publish even when nothing "
                    "changed since the published build (default: say which build is current "
                    "and exit)")
    bp.add_argument("-v", "--verbose", action="store_true", help="show Prefect's logs")
    sp = sub.add_parser("scenario", help="build a policy scenario next to its base and assess "
                        "the synergy of its measures (synergy.csv, difference maps)")
    sp.add_argument("scenario", type=Path,
                    help="scenario file, e.g. config/scenarios/plan-2030.yaml")
    sp.add_argument("--out", type=Path, help="output directory (default: output.dir of the base "
                    "configuration)")
    sp.add_argument("--period", metavar="START:END", help="write only these UTC days of the "
                    "scenario inventory (synergy and maps are annual either way)")
    sp.add_argument("-v", "--verbose", action="store_true", help="show Prefect's logs")
    rp = sub.add_parser("report", help="write the QA report of a build (HTML + PNG)")
    rp.add_argument("build", type=Path, help="a build directory, e.g. out/latest")
    rp.add_argument("--out", type=Path, help="report directory (default: BUILD/report)")
    rp.add_argument("--boundaries", type=Path, help="district GeoPackage (default: the build's)")
    up = sub.add_parser("uncertainty", help="Monte Carlo uncertainty (IPCC Approach 2) of a "
                        "published build: per-cell 2.5/97.5 %% grids, sector ranges, ratios")
    up.add_argument("build", type=Path, help="a build directory, e.g. out/latest")
    up.add_argument("--members", type=_at_least(2), default=1000,
                    help="members drawn, at least 2 (default 1000)")
    up.add_argument("--seed", type=int, help="random seed (default: the config's "
                    "uncertainty.seed); the same seed gives the same numbers")
    up.add_argument("--member-grids", type=_at_least(0),
                    help="member grids kept in uncertainty.nc")
    up.add_argument("--config", type=Path, help="the build's configuration (default: the "
                    "manifest's, when that path exists from here)")
    up.add_argument("--independent", action="store_true", help="draw with no correlations "
                    "(every source's activity, factor rows and devices apart: IPCC Approach 1's "
                    "assumptions), to compare with Approach 1")
    vp = sub.add_parser("verify", help="check every file of a published build against its "
                        "manifest (sha256); exit 1 on any difference")
    vp.add_argument("build", type=Path, help="a build directory, e.g. out/latest")
    cp = sub.add_parser("compare", help="compare two builds: totals, difference maps, top cells")
    cp.add_argument("build_a", type=Path)
    cp.add_argument("build_b", type=Path)
    cp.add_argument("--out", type=Path, required=True, help="directory for the comparison")
    cp.add_argument("--boundaries", type=Path, help="district GeoPackage (default: A's)")
    np_ = sub.add_parser("serve", help="serve the nightly regeneration on its cron schedule "
                         "through Prefect (needs a Prefect server, see README)")
    np_.add_argument("--config", required=True, type=Path, help="build configuration (YAML)")
    np_.add_argument("--out", type=Path, help="output directory (default: output.dir of config)")
    np_.add_argument("--cron", help="cron schedule (default: schedule.cron of the config, "
                     "0 2 * * *)")
    np_.add_argument("--timezone", help="time zone of the cron (default: schedule.timezone, "
                     "Asia/Shanghai)")
    kp = sub.add_parser("check", help="validate every input and table of a configuration and "
                        "list every problem (also as errors.csv), without building")
    kp.add_argument("--config", required=True, type=Path, help="build configuration (YAML)")
    kp.add_argument("--errors", type=Path, default=Path("errors.csv"), help="CSV of the "
                    "problems (file, sheet, row, column, value, expected, problem; default "
                    "errors.csv)")
    fp = sub.add_parser("serve-files", help="serve the published builds of an output directory "
                        "over HTTP: catalogue, JSON API, downloads with Range, NetCDF subsets")
    fp.add_argument("--out", type=Path, required=True, help="output directory of the builds")
    fp.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                    "127.0.0.1; 0.0.0.0 for every interface)")
    fp.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    fp.add_argument("--token-file", type=Path, metavar="PATH", help="read-only bearer tokens, "
                    "one a line: every request then needs 'Authorization: Bearer <token>' "
                    "(401 otherwise; the file is read again when it changes)")
    fp.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                    help="let pages of ORIGIN (e.g. https://maps.example.org, or *) read the "
                    "answers from a browser; repeatable (default: none)")
    fp.add_argument("--subset-workers", type=int, default=2, metavar="N", help="worker "
                    "processes making NetCDF subsets (default 2)")
    fp.add_argument("--max-subsets", type=int, default=8, metavar="N", help="subsets running "
                    "or waiting; beyond, 503 with Retry-After (default 8)")
    return p


def _model_format_line(result: BuildResult, f: str) -> str:
    """What the model files of format ``f`` are for: CMAQ its mechanism and namelists, WRF-Chem
    its emiss_opt package, mechanism and kemit."""
    if f == "wrfchem" and result.wrfchem is not None:
        from pipeline.wrfchem_packages import package

        w = result.wrfchem
        kemit = w.kemit if w.kemit is not None else "= model layers"
        return (f"emiss_opt {w.emiss_opt} ({package(w.emiss_opt).name}, mechanism "
                f"{w.speciation_mechanism}), kemit {kemit}")
    return f"mechanism {result.mechanism} (CMAQ namelists {result.cmaq_desid})"


def _print_summary(result: BuildResult) -> None:
    from pipeline.parallel import peak_rss_mb

    totals = result.totals
    print(f"\nBuild {result.build_id} published")
    print(f"  files:   {result.build_dir}/hourly/  ({len(result.files)} daily NetCDF files)")
    print(f"  latest:  {result.latest} -> {result.build_id}")
    for f in result.formats:
        fmt = FORMATS[f]
        if fmt.description:
            print(f"  {f + ':':<9}{result.build_dir}/{fmt.folder}/ ({fmt.description}), "
                  f"{_model_format_line(result, f)}; mass checked against the ledger")
    for line in result.model_lines:
        print(f"  models:  {line}")
    print(f"  ledger:  {result.build_dir}/ledger.csv\n")
    print(f"  {'species':<8}{'read t/yr':>16}{'gridded':>16}{'outside':>12}{'rejected':>12}"
          f"{'written':>16}")
    for sp, r in totals.iterrows():
        print(f"  {sp:<8}{r.read_kg / 1e3:>16,.1f}{r.gridded_kg / 1e3:>16,.1f}"
              f"{r.outside_domain_kg / 1e3:>12,.1f}{r.rejected_kg / 1e3:>12,.1f}"
              f"{r.written_kg / 1e3:>16,.1f}")
    if result.period:
        print(f"  period:  {result.period[0]} .. {result.period[1]} (UTC days): 'written' "
              "is the period's share; the files were checked against it")
        print("  balance: read = gridded + outside + rejected, to 1e-9 relative: OK")
    else:
        print("  balance: read = gridded + outside + rejected and gridded = written, to 1e-9 "
              "relative: OK")
    warnings = [f for f in result.findings if f.severity == "warning"]
    if warnings:
        print(f"  checks:  {len(warnings)} same-source warnings (checks.csv), e.g.:")
        for f in warnings[:3]:
            print(f"           - {f.message[:160]}")
    if result.fallback:
        print(f"  notice:  {len(result.fallback)} area sources had an all-zero proxy and were "
              "spread by area (notices.csv)")
    if result.report:
        print(f"  report:  {result.report}")
    if result.cache:  # per input: read, emissions, allocation
        steps = [(name, step, state) for name, done in result.cache.items()
                 for step, state in done.items()]
        redone = [f"{name} {step}" for name, step, state in steps if state != "hit"]
        print(f"  cache:   {len(steps) - len(redone)} of {len(steps)} input steps reused"
              + (f"; computed: {', '.join(redone)}" if redone else ""))
    steps_ = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(f"\n  time:    {result.seconds:.1f} s ({steps_})")
    workers, busy = result.writes.peak_rss_mb, result.writes.busy_s
    print(f"  memory:  peak {peak_rss_mb():.0f} MB in this process; day files written on "
          f"{result.writes.scheduler}" + (", peak per worker " + ", ".join(
              f"{v:.0f}" for v in workers.values()) + " MB" if workers and
              "this process" not in workers else ""))
    if "this process" in busy:
        print(f"  days:    {busy['this process']:.1f} s writing them in this process")
    elif busy:
        print("  workers: " + ", ".join(f"{v:.1f}" for v in busy.values())
              + f" s in their days ({len(busy)} workers)")


def _period(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    parts = text.split(":")
    if len(parts) != 2:
        raise ValueError(f"--period {text!r}: expected START:END, e.g. 2024-01-15:2024-01-21")
    return (parts[0], parts[1])


def _formats(text: str | None) -> list[str] | None:
    if not text:
        return None
    out = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise ValueError(f"--format {text!r}: unknown format {bad[0] if bad else ''!r}; use a "
                         f"comma-separated list of {', '.join(FORMATS)}")
    return out


def _streams(text: str | None) -> dict[str, list[str]] | None:
    """``--cmaq-streams 'ENERGY=power,industry_combustion;MOBILE=road'`` → label → sectors."""
    if not text:
        return None
    out: dict[str, list[str]] = {}
    for item in (x.strip() for x in text.split(";") if x.strip()):
        label, eq, sectors = item.partition("=")
        names = [x.strip() for x in sectors.split(",") if x.strip()]
        if not eq or not label.strip() or not names:
            raise ValueError(f"--cmaq-streams {text!r}: {item!r} is not LABEL=sector[,sector]; "
                             "e.g. 'ENERGY=power,industry_combustion;FERT=fertiliser'")
        if label.strip() in out:
            raise ValueError(f"--cmaq-streams {text!r}: stream {label.strip()!r} given twice")
        out[label.strip()] = names
    return out


def _print_synergy(result: BuildResult) -> None:
    syn = result.synergy
    print(f"\nScenario {result.scenario}: build {result.build_id} published")
    print(f"  files:   {result.build_dir}/  (synergy.csv, difference.nc, hourly/ "
          f"{len(result.files)} days)")
    print(f"  latest:  {result.latest} -> {result.build_id}")
    print(f"  page:    {result.synergy_page}\n")
    print(f"  {'measure':<22}{'basis':<13}{'ΔCO2 kt':>12}{'ΔCO2e kt':>12}{'ΔNOx t':>11}"
          f"{'ΔSO2 t':>11}{'ΔPM2.5 t':>11}{'NOx t/kt':>10}")
    for _, r in syn.iterrows():
        ratio = r.get("NOx_t_per_kt_CO2")
        print(f"  {str(r.measure)[:21]:<22}{r.basis:<13}{r.delta_CO2_t / 1e3:>12,.1f}"
              f"{r.get('delta_CO2e_t', float('nan')) / 1e3:>12,.1f}"
              f"{r.get('delta_NOx_t', float('nan')):>11,.1f}"
              f"{r.get('delta_SO2_t', float('nan')):>11,.1f}"
              f"{r.get('delta_PM2_5_t', float('nan')):>11,.1f}"
              f"{'' if ratio != ratio else f'{ratio:.2f}':>10}")
    print("  (scenario − base per year; sequential rows add up to 'combined'; 'interaction' = "
          "combined − sum of the measures applied alone)")


def _build_command(args: argparse.Namespace, started: float) -> int:
    """``tongyuan build`` and ``tongyuan scenario``: the flow, its summary, exit status."""
    path = args.config if args.command == "build" else args.scenario
    problem = prefect_problem()
    if problem is not None:
        print(f"tongyuan: error: {problem}", file=sys.stderr)
        return 1
    # what says "nothing to do" imports neither Prefect nor the writers (4.1 → 1.7 s)
    from pipeline.provenance import up_to_date
    from sources.errors import TongyuanError

    if not path.exists():
        what = "config file" if args.command == "build" else "scenario file"
        print(f"tongyuan: error: {what} {path} not found", file=sys.stderr)
        return 2
    try:
        period = _period(args.period)
        formats = _formats(getattr(args, "format", None))
        streams = _streams(getattr(args, "cmaq_streams", None))
    except ValueError as exc:
        print(f"tongyuan: error: {exc}", file=sys.stderr)
        return 2
    out = str(args.out) if args.out else None
    try:
        if args.command == "build" and not args.force:
            current = up_to_date(path, out=out, year=args.year, period=period, formats=formats,
                                 mechanism=args.mechanism, emiss_opt=args.emiss_opt,
                                 kemit=args.kemit, cmaq_streams=streams)
            if current is not None:
                print(f"nothing to do: build {current.build_id} is current (its inputs, tables, "
                      "configuration, output settings and code are unchanged); nothing "
                      "published. --force rebuilds.")
                return 0
        from pipeline.flows import build_inventory, command_settings, scenario_inventory
        from pipeline.watchdog import guard

        guard()  # Prefect's temporary server and Dask's workers end with this process
        with command_settings():
            if args.command == "build":
                result = build_inventory(str(path), out_dir=out, year=args.year, period=period,
                                         scheduler=args.scheduler, formats=formats,
                                         mechanism=args.mechanism,
                                         show_progress=sys.stderr.isatty(),
                                         emiss_opt=args.emiss_opt, kemit=args.kemit,
                                         cmaq_streams=streams)
            else:
                result = scenario_inventory(str(path), out_dir=out, period=period)
    except TongyuanError as exc:
        print(f"tongyuan: error: {exc}", file=sys.stderr)
        return 1
    if args.command == "build":
        _print_summary(result)
        print(f"  wall:    {time.perf_counter() - started:.1f} s including Prefect start-up")
    else:
        _print_synergy(result)
        print(f"\n  time:    {result.seconds:.1f} s; wall "
              f"{time.perf_counter() - started:.1f} s including Prefect start-up")
    return 0


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = _parser().parse_args(argv)
    prefect_environment(getattr(args, "verbose", False))
    from sources.errors import TongyuanError  # after the environment is set

    if args.command in ("build", "scenario"):
        return _build_command(args, started)
    from pipeline.publish import has_manifest

    for path in [getattr(args, n) for n in ("build", "build_a", "build_b") if hasattr(args, n)]:
        if not has_manifest(path):
            print(f"tongyuan: error: {path} is not a Tongyuan build directory (no manifest)",
                  file=sys.stderr)
            return 2
    try:
        if args.command == "uncertainty":
            from pipeline.publish import build_lock
            from pipeline.uncertainty import MC_DIR, run_uncertainty

            if args.members < 2 or (args.member_grids or 0) < 0:
                print("tongyuan: error: --members must be at least 2 and --member-grids ≥ 0",
                      file=sys.stderr)
                return 2
            build = args.build.resolve()
            with build_lock(build.parent):
                result = run_uncertainty(build, args.members, args.seed,
                                         member_grids=args.member_grids, config=args.config,
                                         correlated=not args.independent)
            city = result.stats[result.stats["sector"] == "city"].set_index("species")
            for sp_ in [s_ for s_ in ("CO2", "NOx", "SO2", "PM2_5") if s_ in city.index]:
                r = city.loc[sp_]
                print(f"{sp_}: {r.central_kg / 1e3:,.1f} t/yr, 95 % range "
                      f"{r.mc_lower_pct:+.1f} / {r.mc_upper_pct:+.1f} % "
                      f"(Approach 1 ±{r.approach1_u95_pct:.1f} %)")
            print(f"wrote {build / MC_DIR} ({result.members} members, seed {result.seed}"
                  f"{'' if result.correlated else ', no correlations'})")
            return 0
        if args.command == "verify":
            from pipeline.publish import verify_build

            problems = verify_build(args.build.resolve())
            for problem in problems:
                print(f"tongyuan: {problem}", file=sys.stderr)
            if problems:
                return 1
            print(f"{args.build}: every file matches the manifest")
            return 0
        if args.command == "report":
            from pipeline.report import write_report

            if args.out is None:  # inside a published build: swapped in, manifest updated
                from pipeline.publish import build_lock, replace_subdir

                build = args.build.resolve()
                with build_lock(build.parent):
                    out = replace_subdir(build, "report", lambda folder: write_report(
                        build, folder, boundaries=args.boundaries))
                out = build / "report" / Path(out).name
            else:
                out = write_report(args.build, args.out, boundaries=args.boundaries)
            print(f"report: {out}")
        elif args.command == "compare":
            from pipeline.report import compare_builds

            out = compare_builds(args.build_a, args.build_b, args.out, boundaries=args.boundaries)
            print(f"comparison: {out}")
        elif args.command == "serve":
            if not args.config.exists():
                print(f"tongyuan: error: config file {args.config} not found", file=sys.stderr)
                return 2
            problem = prefect_problem()
            if problem is not None:
                print(f"tongyuan: error: {problem}", file=sys.stderr)
                return 1
            from pipeline.config import load_config
            from pipeline.flows import serve_nightly
            from pipeline.watchdog import guard

            guard()

            cfg = load_config(args.config)
            serve_nightly(str(args.config), str(args.out) if args.out else None,
                          args.cron or cfg.schedule.cron,
                          args.timezone or cfg.schedule.timezone)
        elif args.command == "check":
            from pipeline.check import check_command

            return check_command(args.config, args.errors)
        elif args.command == "serve-files":
            if not args.out.is_dir():
                print(f"tongyuan: error: output directory {args.out} not found", file=sys.stderr)
                return 2
            if not 0 < args.port < 65536:
                print(f"tongyuan: error: --port {args.port} is not a port number",
                      file=sys.stderr)
                return 2
            if args.token_file is not None and not args.token_file.is_file():
                print(f"tongyuan: error: token file {args.token_file} not found",
                      file=sys.stderr)
                return 2
            if args.subset_workers < 1 or args.max_subsets < 1:
                print("tongyuan: error: --subset-workers and --max-subsets must be at least 1",
                      file=sys.stderr)
                return 2
            from pipeline.files_service import ServiceSettings, load_tokens, serve

            if args.token_file is not None:
                load_tokens(args.token_file)  # no token in it: a one-line error now
            settings = ServiceSettings(subset_workers=args.subset_workers,
                                       max_subsets=args.max_subsets, token_file=args.token_file,
                                       cors_origins=tuple(args.cors_origin))
            print(f"serving the published builds of {args.out} on http://{args.host}:{args.port}/"
                  + (" (bearer tokens needed)" if args.token_file else ""))
            serve(args.out, args.host, args.port, settings)
    except TongyuanError as exc:
        print(f"tongyuan: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
