"""Benchmark: the full-year demo build against two baselines measured in the same run.

1. **build**: ``tongyuan build`` of the embedded Shanghai demo (a fresh output directory each
   run, so every day is written), in a subprocess; its own summary gives the parent's and each
   writing worker's peak RSS.
2. **bare write**: the same number of day files written one after another in this process by
   plain xarray + netCDF4 (zlib 1, one hour per chunk), from real day fields of the build.
3. **compression floor**: zlib level 1 of the same arrays, hour by hour, split over every core
   (a process pool whose workers hold the arrays before the clock starts), with no NetCDF/HDF5
   work and no arrays sent between processes: what compression alone costs.

4. **nothing to do**: ``tongyuan build`` again into the first build's output directory with
   nothing changed: it compares the input fingerprint with the published build, says which
   build is current and publishes nothing (target ≤ 5 s).
5. **one changed input**: one stack's activity ×1.1 (then ×1.2, …) and ``tongyuan build``
   again: the stacks are re-read, every other input step comes from the cache, and every day
   whose content changed is rewritten (target ≤ 1.3 × the compression floor).

The builds run on a copy of the demo's configuration and data (the repository is never
touched). Medians over ``--repeat`` runs of each. Ends with one line::

    RESULT build_s=… floor_s=… bare_write_s=… ratio_floor=… ratio_bare=… peak_rss_mb=…
           tree_peak_mb=… nochange_s=… one_input_s=… ratio_one_input_floor=…

where ``peak_rss_mb`` is the build's parent plus the sum of its workers' peaks (each at its own
moment: an upper bound) and ``tree_peak_mb`` the most the build's processes held at one moment
(:mod:`tree_memory`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import xarray as xr
from incremental import scale_first_activity  # bench/ is sys.path[0]
from tree_memory import TreeRss

REPO = Path(__file__).resolve().parent.parent


#: ``--period START:END`` of every build (a shorter check of the benchmark itself); None: the year
PERIOD: str | None = None


def tongyuan_build(config: Path, out: Path) -> tuple[float, str, float]:
    """Wall seconds, standard output and the process tree's peak [MB]
    (:class:`tree_memory.TreeRss`) of one ``tongyuan build`` subprocess."""
    exe = Path(sys.executable).with_name("tongyuan")
    period = ["--period", PERIOD] if PERIOD else []
    t0 = time.perf_counter()
    with subprocess.Popen([str(exe), "build", "--config", str(config), "--out", str(out),
                           *period], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc, TreeRss(proc.pid) as tree:
        stdout, stderr = proc.communicate()
    if proc.returncode:  # say why (a full disk, a failed check), not only the exit status
        raise SystemExit(f"tongyuan build --out {out} failed (exit {proc.returncode}), "
                         f"{shutil.disk_usage(out.parent).free / 1e9:.1f} GB free there:\n"
                         f"{stdout[-3000:]}{stderr[-3000:]}")
    return time.perf_counter() - t0, stdout, tree.peak_mb


def run_build(config: Path, out: Path) -> tuple[float, float, list[float], str, str, float]:
    """Wall seconds, the parent's and each worker's peak RSS [MB], the scheduler, the steps'
    seconds (read from its summary) and the process tree's peak [MB] of one ``tongyuan build``
    subprocess."""
    seconds, stdout, tree_peak = tongyuan_build(config, out)
    steps = re.search(r"^  time:    (.*)$", stdout, re.M)
    busy = re.search(r"^  workers: (.*)$", stdout, re.M)
    m = re.search(r"memory:  peak (\d+) MB in this process; day files written on (\S+?)"
                  r"(?:, peak per worker ([\d, ]+) MB)?$", stdout, re.M)
    if m is None:
        raise SystemExit(f"no memory line in the build's summary:\n{stdout[-2000:]}")
    workers = [float(v) for v in m.group(3).split(",")] if m.group(3) else []
    steps_ = (steps.group(1) if steps else "?") + (f"; workers {busy.group(1)}" if busy else "")
    return seconds, float(m.group(1)), workers, m.group(2), steps_, tree_peak


def bare_write(days: list[xr.Dataset], n_days: int, target: Path) -> float:
    """Seconds to write ``n_days`` files of the given day fields with plain xarray."""
    target.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(n_days):
        ds = days[i % len(days)]
        enc = {v: {"zlib": True, "complevel": 1, "shuffle": False,
                   "chunksizes": (1, ds.sizes["y"], ds.sizes["x"])} for v in ds.data_vars}
        ds.to_netcdf(target / f"{i:03d}.nc", engine="netcdf4", encoding=enc)
    return time.perf_counter() - t0


#: a floor worker's sample days, each a list of hour × species byte strings (set once per
#: process by :func:`_hold`, so that the timed part sends an index, not 50 MB, per day)
_DAYS: list[list[bytes]] = []


def _hold(days: list[list[bytes]]) -> None:
    _DAYS[:] = days


def _compress_day(hours: list[bytes]) -> int:
    return sum(len(zlib.compress(h, 1)) for h in hours)


def _compress_held(i: int) -> int:
    return _compress_day(_DAYS[i % len(_DAYS)])


def compression_floor(days: list[xr.Dataset], n_days: int, workers: int) -> float:
    """Seconds for zlib level 1 of ``n_days`` days of the fields (each hour of each species
    one chunk, as in the files), spread over ``workers`` processes that hold the sample days
    already: compression alone, no pickling of arrays between processes."""
    payload = [[np.ascontiguousarray(ds[v].values[h]).tobytes() for v in ds.data_vars
                for h in range(ds.sizes["time"])] for ds in days]
    with ProcessPoolExecutor(workers, initializer=_hold, initargs=(payload,)) as pool:
        list(pool.map(_compress_held, range(workers)))  # start the workers before timing
        t0 = time.perf_counter()
        list(pool.map(_compress_held, range(n_days), chunksize=4))
        return time.perf_counter() - t0


def demo_copy(config: Path, work: Path) -> Path:
    """The demo's configuration directory and data copied into ``work`` (so that a changed
    input never touches the repository); the copied ``config``."""
    shutil.copytree(config.parent, work / "config")
    shutil.copytree(REPO / "data" / "shanghai-demo", work / "data" / "shanghai-demo")
    return work / "config" / config.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "config" / "shanghai.yaml")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (median)")
    ap.add_argument("--period", metavar="START:END", help="build only these UTC days (a quick "
                    "check of the benchmark; the figures are for the whole year)")
    args = ap.parse_args()
    global PERIOD
    PERIOD = args.period
    cores = len(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="tongyuan-bench-"))
    try:
        config = demo_copy(args.config, work)
        builds, parents, worker_peaks, trees, scheduler = [], [], [], [], ""
        for i in range(args.repeat):
            s, parent, workers, scheduler, steps, tree = run_build(config, work / f"build{i}")
            builds.append(s)
            parents.append(parent)
            worker_peaks.append(workers)
            trees.append(tree)
            print(f"build run {i + 1}: {s:.1f} s on {scheduler}; peak RSS parent {parent:.0f} "
                  f"MB, workers {', '.join(f'{w:.0f}' for w in workers) or '-'} MB, all "
                  f"processes at once {tree:.0f} MB\n  its steps: {steps}", flush=True)
            if i:
                shutil.rmtree(work / f"build{i}")
        latest = "latest-period" if PERIOD else "latest"
        hourly = sorted((work / "build0" / latest / "hourly").glob("*.nc"))
        n_days = len(hourly)
        on_disk = sum(f.stat().st_size for f in hourly) / 1e6
        with xr.open_dataset(hourly[0]) as ds0:
            species = [v for v in ds0.data_vars if ds0[v].dims == ("time", "y", "x")]
        days = []
        for p in [hourly[i] for i in np.linspace(0, n_days - 1, 7).astype(int)]:
            with xr.open_dataset(p) as ds:
                days.append(ds[species].load().drop_vars(["lat", "lon"], errors="ignore"))
        # the bare write and the floor before the changed-input builds: each of those writes a
        # new year of day files (6.9 GB) beside the old ones, and the disk is finite
        bare, floor = [], []
        for i in range(args.repeat):
            bare.append(bare_write(days, n_days, work / f"bare{i}"))
            shutil.rmtree(work / f"bare{i}")
            floor.append(compression_floor(days, n_days, cores))
            print(f"bare write, run {i + 1}: {bare[-1]:.1f} s; compression floor: "
                  f"{floor[-1]:.1f} s", flush=True)
        nochange, one_input = [], []
        for i in range(args.repeat):
            s, stdout, _ = tongyuan_build(config, work / "build0")
            if "nothing to do" not in stdout:
                raise SystemExit(f"an unchanged build did not say so:\n{stdout[-2000:]}")
            nochange.append(s)
            print(f"nothing to do, run {i + 1}: {s:.2f} s", flush=True)
        stacks = config.parent.parent / "data" / "shanghai-demo" / "points" / "stacks.csv"
        original = stacks.read_text(encoding="utf-8")
        for i in range(args.repeat):
            scale_first_activity(stacks, original, 1.1 + 0.1 * i)
            s, stdout, _ = tongyuan_build(config, work / "build0")
            one_input.append(s)
            print(f"one changed input, run {i + 1}: {s:.1f} s", flush=True)
        build_s, bare_s, floor_s, nochange_s, one_s = (
            statistics.median(x) for x in (builds, bare, floor, nochange, one_input))
        peak = max(p + sum(w) for p, w in zip(parents, worker_peaks, strict=True))
        print(f"\nfull-year demo build: {build_s:.1f} s (median of {args.repeat}, day files on "
              f"{scheduler}, {cores} cores), {n_days} files, {on_disk:,.0f} MB on disk")
        print(f"bare xarray+netCDF4 write, one process: {bare_s:.1f} s")
        print(f"compression floor, zlib 1 of the same arrays on {cores} cores: {floor_s:.1f} s")
        print(f"ratio build/floor: {build_s / floor_s:.2f}; build/bare: {build_s / bare_s:.2f}")
        print(f"nothing to do: {nochange_s:.2f} s; one changed input: {one_s:.1f} s "
              f"({one_s / floor_s:.2f} × the floor)")
        print(f"peak RSS: parent {max(parents):.0f} MB, workers "
              f"{', '.join(f'{w:.0f}' for w in worker_peaks[0]) or '-'} MB; "
              f"parent + workers {peak:.0f} MB (the sum of their own peaks); all processes at "
              f"once {max(trees):.0f} MB (sampled every 0.2 s)")
        print(f"RESULT build_s={build_s:.1f} floor_s={floor_s:.1f} bare_write_s={bare_s:.1f} "
              f"ratio_floor={build_s / floor_s:.2f} ratio_bare={build_s / bare_s:.2f} "
              f"peak_rss_mb={peak:.0f} tree_peak_mb={max(trees):.0f} "
              f"nochange_s={nochange_s:.2f} one_input_s={one_s:.1f} "
              f"ratio_one_input_floor={one_s / floor_s:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
