"""Benchmark: how the day writes scale with workers, on one month of the Shanghai demo.

The same build (``pipeline.run_build``, no Prefect, January 2024, a fresh output directory each
time) with its day files written on: one process (``synchronous``), the local worker processes
of ``processes`` (one per core), and ``dask.distributed`` LocalClusters of 2 and 4
single-threaded workers reached by address (started as the README's ``dask worker
--nthreads 1 --preload pipeline.day_store``). Prints the write step's seconds (median of
``--repeat``), the speed-up against one process and each run's peak RSS, and ends with::

    RESULT one_s=… local_s=… cluster2_s=… cluster4_s=… speedup_2=… ratio_4_vs_2=…
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from distributed import LocalCluster

from pipeline import run_build
from pipeline.parallel import WORKER_PRELOAD

REPO = Path(__file__).resolve().parent.parent
MONTH = ("2024-01-01", "2024-01-31")


def write_seconds(config: Path, out: Path, scheduler: str, repeat: int) -> tuple[float, float]:
    """Median seconds of the write step and the largest worker peak RSS [MB]."""
    times, peak = [], 0.0
    for i in range(repeat):
        r = run_build(config, out=out / f"r{i}", period=MONTH, scheduler=scheduler)
        times.append(r.timings["write"])
        peak = max(peak, *r.writes.peak_rss_mb.values())
        shutil.rmtree(out / f"r{i}")
    return statistics.median(times), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "config" / "shanghai.yaml")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tongyuan-scaling-"))
    try:
        runs = {"one process": write_seconds(args.config, work / "one", "synchronous",
                                             args.repeat),
                "local processes": write_seconds(args.config, work / "local", "processes",
                                                 args.repeat)}
        for n in (2, 4):
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                              dashboard_address=":0", preload=WORKER_PRELOAD) as cluster:
                runs[f"LocalCluster {n}"] = write_seconds(args.config, work / f"c{n}",
                                                          cluster.scheduler_address,
                                                          args.repeat)
        one = runs["one process"][0]
        print(f"\nwrite step of a January build, {len(os.sched_getaffinity(0))} cores, "
              f"median of {args.repeat}:")
        for name, (s, rss) in runs.items():
            print(f"  {name:<16} {s:6.1f} s  speed-up {one / s:4.2f}  peak RSS per worker "
                  f"{rss:.0f} MB")
        c2, c4 = runs["LocalCluster 2"][0], runs["LocalCluster 4"][0]
        print(f"RESULT one_s={one:.1f} local_s={runs['local processes'][0]:.1f} "
              f"cluster2_s={c2:.1f} cluster4_s={c4:.1f} speedup_2={one / c2:.2f} "
              f"ratio_4_vs_2={c4 / c2:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
