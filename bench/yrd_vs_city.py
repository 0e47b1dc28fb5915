"""Benchmark: the YRD build (Shanghai's inventory + the regional MEIC-format background on a
Lambert domain) against the Shanghai 1 km build, the same days in the same run.

Issue 16's target: a full-year hourly build of the YRD 3 km domain (local + regional) within
1.5 × the Shanghai 1 km build on the same machine. A full year of each is ~2 × 4 min of two
cores here; the bench builds ``--days`` UTC days of each (default 14, from ``--start``), which
exercises every step a year does (reading, emissions, allocation, the regional read, regrid and
merge, the day files) with the per-day part scaled down alike.

* **city**: ``config/shanghai.yaml`` (UTM 51N, 1 km, 130 × 138 cells);
* **yrd**: ``config/yrd.yaml`` with its grid replaced by a 3 km Lambert domain over the same
  area as the shipped 9 km one (``LAM_CN``, 180 × 180 cells of 3 km from (702 km, −558 km));
  ``--yrd-km 9`` keeps the shipped 60 × 60 × 9 km grid.

Both are ``tongyuan build`` subprocesses into fresh output directories (cold caches), CF hourly
files only (``--format cf``). Ends with::

    RESULT city_s=… yrd_s=… ratio=… days=… city_cells=… yrd_cells=… floor_ratio=…

``ratio`` = yrd_s / city_s (the target is ≤ 1.5). ``floor_ratio`` is what the same ratio is for
deflate alone: zlib level 1 of three of each build's written day arrays (hour by hour, each
species, byte-shuffled where the build shuffles), in this process, medians. The day files are
most of a year's build, so a build ratio near ``floor_ratio`` is the cost of the bytes, not of
the code: dense regional fields deflate slower per byte than the city's, mostly zero ones.

Usage (repository root; CPU heavy, run it on a quiet machine)::

    .venv/bin/python bench/yrd_vs_city.py [--days 14] [--start 2024-07-01] [--yrd-km 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from full_year import _compress_day  # noqa: E402  (bench/ is sys.path[0])

from pipeline.config import resolve_paths  # noqa: E402

#: the 3 km YRD domain: the shipped 9 km one's area (540 km square) in 3 km cells
YRD3KM = ("' '\n'LAM_CN'\n  2  25.000  40.000  110.000  110.000  34.000\n' '\n'YRD3KM'\n"
          "'LAM_CN'  702000.000  -558000.000  3000.000  3000.000  180  180  1\n' '\n")


def yrd_config(work: Path, km: int) -> tuple[Path, int]:
    """The YRD demo configuration with every path absolute and, for ``km`` = 3, the 3 km grid;
    returns its path and its number of cells."""
    doc = yaml.safe_load((REPO / "config" / "yrd.yaml").read_text(encoding="utf-8"))
    doc = resolve_paths(doc, REPO / "config")
    cells = 60 * 60
    if km == 3:
        (work / "GRIDDESC_YRD3").write_text(YRD3KM, encoding="utf-8")
        doc["grid"] = {"griddesc": str(work / "GRIDDESC_YRD3"), "name": "YRD3KM"}
        cells = 180 * 180
    path = work / "yrd_bench.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path, cells


def build(config: Path, out: Path, period: str) -> float:
    """Wall seconds of one ``tongyuan build`` subprocess (CF files of ``period``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's code, not an installed one
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "build", "--config",
                           str(config), "--out", str(out), "--period", period, "--format", "cf",
                           "--force"], capture_output=True, text=True, cwd=REPO, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"build of {config} failed:\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    return seconds


def deflate_seconds(hourly: Path, shuffle: bool) -> float:
    """Median seconds of zlib level 1 over one written day (3 days: first, middle, last), each
    (species, hour) slab compressed alone as the files' chunks are
    (:func:`full_year._compress_day`), byte-shuffled first if the build shuffles."""
    files = sorted(hourly.glob("*.nc"))
    times = []
    for p in [files[0], files[len(files) // 2], files[-1]]:
        with xr.open_dataset(p) as ds:
            slabs = [np.ascontiguousarray(h) for v in ds.data_vars
                     if ds[v].dims == ("time", "y", "x") for h in ds[v].to_numpy()]
        payload = [(s.view(np.uint8).reshape(-1, s.itemsize).T if shuffle else s).tobytes()
                   for s in slabs]
        t0 = time.perf_counter()
        _compress_day(payload)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=14, help="UTC days of each build (default 14)")
    ap.add_argument("--start", default="2024-07-01", help="first day (default 2024-07-01)")
    ap.add_argument("--yrd-km", type=int, choices=(3, 9), default=3,
                    help="YRD cell size: 3 (the issue's domain) or 9 (the shipped grid)")
    args = ap.parse_args()
    first = pd.Timestamp(args.start)
    period = f"{first:%Y-%m-%d}:{first + pd.Timedelta(days=args.days - 1):%Y-%m-%d}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg, yrd_cells = yrd_config(work, args.yrd_km)
        city = build(REPO / "config" / "shanghai.yaml", work / "out-city", period)
        print(f"city (Shanghai 1 km, 17940 cells): {city:.1f} s for {period}")
        yrd = build(cfg, work / "out-yrd", period)
        print(f"yrd ({args.yrd_km} km Lambert + MEIC-format background, {yrd_cells} cells): "
              f"{yrd:.1f} s")
        shuffle = {k: bool(yaml.safe_load(c.read_text(encoding="utf-8"))["output"].get(
            "shuffle", False)) for k, c in (("city", REPO / "config" / "shanghai.yaml"),
                                            ("yrd", cfg))}
        z_city = deflate_seconds(work / "out-city" / "latest-period" / "hourly", shuffle["city"])
        z_yrd = deflate_seconds(work / "out-yrd" / "latest-period" / "hourly", shuffle["yrd"])
        print(f"deflate of one written day, one process: city {z_city:.2f} s, yrd {z_yrd:.2f} s "
              f"(shuffle: city {shuffle['city']}, yrd {shuffle['yrd']})")
    print(f"RESULT city_s={city:.1f} yrd_s={yrd:.1f} ratio={yrd / city:.2f} days={args.days} "
          f"city_cells=17940 yrd_cells={yrd_cells} floor_ratio={z_yrd / z_city:.2f}")


if __name__ == "__main__":
    main()
