"""Benchmark: the full-year demo build against a bare xarray + netCDF4 write of the same cube.

Runs ``tongyuan build`` on the embedded Shanghai demo in a subprocess (peak RSS from
``getrusage``), then, in this process, writes a cube of the same size, variables, dtype,
chunking and compression with plain xarray/netCDF4, using real day fields of the build so the
data compress alike. Also measures zlib-1 with and without shuffle on those days. Prints medians
over ``--repeat`` runs and ends with one line::

    RESULT build_s=… bare_write_s=… ratio=… peak_rss_mb=…
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

REPO = Path(__file__).resolve().parent.parent


def run_build(config: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``tongyuan build`` subprocess."""
    exe = Path(sys.executable).with_name("tongyuan")
    t0 = time.perf_counter()
    subprocess.run([str(exe), "build", "--config", str(config), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, peak_kb / 1024


def bare_write(days: list[xr.Dataset], n_days: int, target: Path, shuffle: bool) -> float:
    """Seconds to write ``n_days`` files of the given day fields with plain xarray."""
    target.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(n_days):
        ds = days[i % len(days)]
        enc = {v: {"zlib": True, "complevel": 1, "shuffle": shuffle,
                   "chunksizes": (1, ds.sizes["y"], ds.sizes["x"])} for v in ds.data_vars}
        ds.to_netcdf(target / f"{i:03d}.nc", engine="netcdf4", encoding=enc)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "config" / "shanghai.yaml")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each measurement (median)")
    ap.add_argument("--keep", type=Path, help="keep the build output here")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tongyuan-bench-"))
    try:
        builds, rss = [], []
        for i in range(args.repeat):
            out = work / f"build{i}"
            s, peak = run_build(args.config, out)
            builds.append(s)
            rss.append(peak)
            print(f"build run {i + 1}: {s:.1f} s, peak RSS so far {peak:.0f} MB", flush=True)
        hourly = sorted((work / "build0" / "latest" / "hourly").glob("*.nc"))
        n_days = len(hourly)
        species = [v for v in xr.open_dataset(hourly[0]).data_vars if v not in ("crs", "cell_area")]
        picks = [hourly[i] for i in np.linspace(0, n_days - 1, 7).astype(int)]
        days = []
        for p in picks:
            with xr.open_dataset(p) as ds:
                days.append(ds[species].load().drop_vars(["lat", "lon"], errors="ignore"))
        raw_mb = sum(d.nbytes for d in days) / len(days) * n_days / 1e6
        bare, bare_shuffle = [], []
        for i in range(args.repeat):
            bare.append(bare_write(days, n_days, work / f"bare{i}", shuffle=False))
            shutil.rmtree(work / f"bare{i}")
        sizes = {}
        for shuffle in (False, True):
            tdir = work / f"sample-shuffle-{shuffle}"
            t = bare_write(days, len(days), tdir, shuffle=shuffle)
            sizes[shuffle] = (sum(f.stat().st_size for f in tdir.glob("*.nc")) / len(days) / 1e6, t)
            if shuffle:
                bare_shuffle.append(t)
        build_s = statistics.median(builds)
        bare_s = statistics.median(bare)
        on_disk = sum(f.stat().st_size for f in hourly) / 1e6
        print(f"\nfull-year demo build: {build_s:.1f} s (median of {args.repeat}), "
              f"{n_days} files, {on_disk:,.0f} MB on disk, {raw_mb:,.0f} MB raw")
        print(f"bare xarray+netCDF4 write of the same cube (zlib 1, no shuffle): {bare_s:.1f} s")
        print(f"ratio build/bare: {build_s / bare_s:.2f}")
        print(f"peak RSS of the build: {max(rss):.0f} MB")
        print(f"zlib 1 per file: no shuffle {sizes[False][0]:.2f} MB ({sizes[False][1] / 7:.2f} s), "
              f"shuffle {sizes[True][0]:.2f} MB ({sizes[True][1] / 7:.2f} s)")
        if args.keep:
            shutil.copytree(work / "build0", args.keep, symlinks=True, dirs_exist_ok=True)
        print(f"RESULT build_s={build_s:.1f} bare_write_s={bare_s:.1f} ratio={build_s / bare_s:.2f} "
              f"peak_rss_mb={max(rss):.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
