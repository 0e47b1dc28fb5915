"""Benchmark: a short parallel build and what one worker's day task spends its time on.

1. **build**: ``tongyuan build`` of the Shanghai demo for ``--days`` UTC days (default 14, from
   1 March 2024) on 2 local worker processes (``--scheduler processes``), a fresh output
   directory each run, in a subprocess; ``--repeat`` runs, median. With ``--baseline DIR`` (a
   checkout of another commit, e.g. ``main``) the same build of that code runs alternately with
   this one, in the same session, and the ratio is printed.
2. **day task**: cProfile of :func:`pipeline.day_store.write_day` (what a worker runs for one
   day) in this process, on a demo day: seconds per day and the functions that take them, and
   the bytes of the inputs sent to the workers once (:class:`pipeline.day_store.DayInputs`);
   then the same days on a one-worker ``LocalCluster``, with the worker's ``malloc`` tuned as
   in every build (:func:`pipeline.parallel.tune_malloc`) and with distributed's settings alone.

Ends with one line::

    RESULT build_s=… write_s=… publish_s=… day_task_s=… worker_day_s=… untuned_day_s=…
           inputs_mb=… [baseline_s=… ratio=…]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pickle
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def build_once(tree: Path, config: Path, out: Path, period: str) -> dict[str, float]:
    """Wall seconds and the write and publish steps of one build of the code in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PREFECT_LOGGING_LEVEL": "WARNING"}
    code = ("import sys; from pipeline.cli import main; sys.exit(main(['build', '--config', "
            f"{str(config)!r}, '--out', {str(out)!r}, '--period', {period!r}, "
            "'--scheduler', 'processes']))")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the build of {tree} failed:\n{done.stdout[-2000:]}"
                         f"{done.stderr[-3000:]}")
    seconds = time.perf_counter() - t0
    steps = dict(re.findall(r"([a-z+-]+) ([\d.]+) s", done.stdout.split("time:")[-1]
                            .splitlines()[0]))
    shutil.rmtree(out, ignore_errors=True)
    return {"build": seconds, "write": float(steps.get("write", "nan")),
            "publish": float(steps.get("publish", "nan"))}


def _timed_day(inputs, day: pd.Timestamp, tune: bool) -> float:
    """Seconds of one :func:`~pipeline.day_store.write_day` on a worker (after
    :func:`pipeline.parallel.tune_malloc` when ``tune``, as every build's worker does)."""
    from pipeline.day_store import write_day
    from pipeline.parallel import tune_malloc

    if tune:
        tune_malloc()
    t0 = time.perf_counter()
    write_day(inputs, day)
    return time.perf_counter() - t0


def worker_day_seconds(inputs, days: list[pd.Timestamp], tune: bool) -> float:
    """Median seconds per day of the day task on a fresh one-worker ``LocalCluster`` (the
    worker environment ``distributed`` gives every worker), after a first day."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=40) as cluster, \
            Client(cluster) as client:
        shared = client.scatter(inputs, broadcast=True, hash=False)
        got = [client.submit(_timed_day, shared, day, tune, pure=False).result()
               for day in days]
    return statistics.median(got[1:])


def profile_day_task(config: Path, work: Path) -> dict[str, object]:
    """Seconds per day of :func:`~pipeline.day_store.write_day` (median of 3 demo days after a
    first one) in this process and on a worker, tuned and not
    (:func:`pipeline.parallel.tune_malloc`), the pickled size of the day inputs [MB] and the
    profile's top lines."""
    from pipeline.build import prepare
    from pipeline.day_store import DayInputs, WriteContext, static_template, write_day
    from pipeline.provenance import provenance_attrs
    from pipeline.writers.netcdf_cf import static_coords

    state = prepare(config)
    grid = state.tables.grid
    ctx = WriteContext(hourly_dir=work / "hourly", static=static_coords(grid),
                       attrs=provenance_attrs(state.cfg, state.metas,
                                              "20240301T000000000Z-00000000", "bench", grid),
                       year=state.cfg.year, dtype=state.cfg.output.dtype,
                       complevel=state.cfg.output.complevel, shuffle=state.cfg.output.shuffle,
                       store=work / "store", stored={})
    ctx = static_template(ctx)  # as write_days gives it to the workers
    inputs = DayInputs(annual=state.annual, factors=state.factors, grid=grid,
                       registry=state.tables.registry, cems=state.cems, ctx=ctx)
    inputs_mb = len(pickle.dumps(inputs)) / 1e6
    days = list(pd.date_range("2024-03-01", periods=4, freq="D"))
    write_day(inputs, days[0])  # imports, first-call caches
    seconds, prof = [], cProfile.Profile()
    for day in days[1:]:
        t0 = time.perf_counter()
        prof.enable()
        write_day(inputs, day)
        prof.disable()
        seconds.append(time.perf_counter() - t0)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(12)
    return {"here": statistics.median(seconds),
            "worker": worker_day_seconds(inputs, days, tune=True),
            "untuned": worker_day_seconds(inputs, days, tune=False),
            "inputs_mb": inputs_mb, "profile": text.getvalue()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "config" / "shanghai.yaml")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--repeat", type=int, default=3, help="builds of each tree (median)")
    ap.add_argument("--baseline", type=Path, help="a checkout of the code to compare with")
    args = ap.parse_args()
    end = pd.Timestamp("2024-03-01") + pd.Timedelta(days=args.days - 1)
    period = f"2024-03-01:{end:%Y-%m-%d}"
    work = Path(tempfile.mkdtemp(prefix="tongyuan-daytask-"))
    trees = {"this": REPO, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    try:
        for i in range(args.repeat):
            for name, tree in trees.items():  # alternately: the machine's load hits both
                config = tree / args.config.relative_to(REPO) if args.config.is_relative_to(
                    REPO) else args.config
                got = build_once(tree, config, work / f"{name}{i}", period)
                runs[name].append(got)
                print(f"{name} run {i + 1}: {got['build']:.1f} s (write {got['write']:.1f} s, "
                      f"publish {got['publish']:.1f} s)", flush=True)
        med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
               for name, rs in runs.items()}
        task = profile_day_task(args.config, work / "profile")
        day_s, inputs_mb = task["here"], task["inputs_mb"]
        print(f"\none day task in this process: {day_s:.2f} s; on a worker: "
              f"{task['worker']:.2f} s tuned, {task['untuned']:.2f} s with distributed's "
              f"malloc settings alone; inputs sent once to each worker: {inputs_mb:.1f} MB\n"
              f"{task['profile']}")
        this = med["this"]
        print(f"{args.days}-day build on 2 processes, median of {args.repeat}: "
              f"{this['build']:.1f} s (write {this['write']:.1f} s, publish "
              f"{this['publish']:.1f} s)")
        line = (f"RESULT build_s={this['build']:.1f} write_s={this['write']:.1f} "
                f"publish_s={this['publish']:.1f} day_task_s={day_s:.2f} "
                f"worker_day_s={task['worker']:.2f} untuned_day_s={task['untuned']:.2f} "
                f"inputs_mb={inputs_mb:.1f}")
        if "baseline" in med:
            base = med["baseline"]
            print(f"baseline {args.baseline}: {base['build']:.1f} s (write {base['write']:.1f} "
                  f"s, publish {base['publish']:.1f} s); ratio {this['build'] / base['build']:.2f}")
            line += (f" baseline_s={base['build']:.1f} baseline_write_s={base['write']:.1f} "
                     f"ratio={this['build'] / base['build']:.2f}")
        print(line)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
