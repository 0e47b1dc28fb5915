"""Days written in parallel: each UTC day's files are an independent task on Dask.

Writing is compression-bound (zlib) and each day is independent, so days spread over every
core, or over a ``dask.distributed`` cluster, with no change to a file's bytes. The data every
day needs (annual grid, temporal factors, measured stacks) is sent to each worker once
(``Client.scatter(..., broadcast=True)``), not pickled into every task; a worker returns each
day's measured mass, content hash and path.

Schedulers (``output.scheduler``, ``tongyuan build --scheduler``):

- ``auto`` (default): local worker processes, one per core, for builds of at least
  :data:`PARALLEL_FROM_DAYS` days; in this process for shorter builds (a cluster takes seconds
  to start, more than a day takes to write);
- ``processes``: local worker processes, one per core (a ``dask.distributed.LocalCluster``);
- ``synchronous``: one day after another in this process (``threads`` means the same here:
  HDF5 is not thread-safe);
- ``tcp://host:8786``: the workers of that ``dask.distributed`` scheduler (they must see the
  output directory and import this package).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

import pandas as pd

R = TypeVar("R")

#: ``auto`` writes in worker processes from this many days on
PARALLEL_FROM_DAYS = 8


def local_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve(scheduler: str | None, n_days: int) -> str:
    """The scheduler a build of ``n_days`` days writes on (``auto`` made concrete)."""
    name = scheduler or "auto"
    if name == "auto":
        return "processes" if n_days >= PARALLEL_FROM_DAYS and local_workers() > 1 \
            else "synchronous"
    return "synchronous" if name == "threads" else name


#: ``processes`` → the local cluster :func:`keep_workers` holds open (a future of it: it is
#: started in the background)
_KEPT: dict[str, Future[Any]] = {}

#: what a local worker imports as it starts (before its first day, while the build reads; the
#: model formats' writers only when a build asks for them: 36 MB more per worker)
WORKER_PRELOAD = ["pipeline.day_store"]


def _local_cluster() -> Any:
    from distributed import LocalCluster  # 0.4 s to import: only when used

    return LocalCluster(n_workers=local_workers(), threads_per_worker=1, processes=True,
                        dashboard_address=":0", silence_logs=40, preload=WORKER_PRELOAD)


@contextmanager
def keep_workers(scheduler: str | None, n_days: int) -> Iterator[None]:
    """Within the block, every :func:`map_days` of ``processes`` runs on one local cluster
    instead of one per call (a build's CF days, then its model days). The cluster starts in
    the background as the block is entered: its processes start and import the writers while
    the build reads its inputs, and the first :func:`map_days` waits for it if it must.
    Nothing to keep for the other schedulers, or when an enclosing block keeps one."""
    if resolve(scheduler, n_days) != "processes" or "processes" in _KEPT:
        yield
        return
    with ThreadPoolExecutor(1, thread_name_prefix="tongyuan-workers") as pool:
        starting = _KEPT["processes"] = pool.submit(_local_cluster)
        try:
            yield
        finally:
            _KEPT.pop("processes", None)
            with contextlib.suppress(Exception):  # a failed start failed the build already
                starting.result().close()


@contextmanager
def dask_client(scheduler: str) -> Iterator[Any]:
    """A ``dask.distributed`` client for ``processes`` (a local cluster of one single-threaded
    worker process per core, closed afterwards, or the one :func:`keep_workers` holds) or a
    scheduler address."""
    from distributed import Client  # 0.4 s to import: only when used

    kept = _KEPT.get(scheduler)
    address = scheduler if "://" in scheduler else (
        kept.result().scheduler_address if kept is not None else None)
    if address is not None:
        with Client(address) as client:
            yield client
        return
    with _local_cluster() as cluster, Client(cluster) as client:
        yield client


def peak_rss_mb() -> float:
    """Peak resident memory of this process's own address space so far [MB].

    On Linux the high-water mark of the process's memory (``VmHWM`` of ``/proc/self/status``).
    Not ``getrusage``'s ``ru_maxrss``: that survives ``fork`` + ``exec``, so a worker process
    started from a large parent reports the parent's size at the fork, not its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


@dataclass
class RunStats:
    """How a :func:`map_days` run went: the scheduler it ran on, and for each process that
    ran days (``this process`` when run here) its peak resident memory [MB] and the seconds
    it spent in them (``busy_s``: against the run's wall time, how well the workers were
    kept busy)."""

    scheduler: str = ""
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    busy_s: dict[str, float] = field(default_factory=dict)

    def add(self, worker: str, rss_mb: float, seconds: float) -> None:
        """Days run by ``worker`` (one, or a run's total): its peak so far and their seconds."""
        self.peak_rss_mb[worker] = max(rss_mb, self.peak_rss_mb.get(worker, 0.0))
        self.busy_s[worker] = self.busy_s.get(worker, 0.0) + seconds

    def merge(self, other: RunStats) -> None:
        """Add another run (the model formats' days after the CF days)."""
        for worker, mb in other.peak_rss_mb.items():
            self.add(worker, mb, other.busy_s.get(worker, 0.0))


#: glibc ``malloc`` settings of a process that writes days (``mallopt`` parameter → bytes):
#: allocations up to 32 MB come from the heap (glibc's own ceiling when it adjusts this
#: itself), and freed memory is given back once 64 MB of it sit at the top of the heap
WORKER_MALLOC = {-3: 32 * 2**20, -1: 64 * 2**20}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


@lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """glibc, with the ``malloc`` controls :func:`tune_malloc` and :func:`release_memory`
    call; None off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@lru_cache(maxsize=1)
def tune_malloc() -> bool:
    """Set :data:`WORKER_MALLOC` in this process, once; whether glibc took it.

    ``dask.distributed`` starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``, and setting
    that also fixes glibc's mmap threshold at its 128 kB start (setting either one stops glibc
    adjusting both): every array above 128 kB is then a fresh mmap, its pages faulted in and
    zeroed, and unmapped when freed. A demo day took 0.89 s on such a worker, 0.66 s tuned and
    0.65 s in a plain process (``bench/day_task.py``). Called by each worker before its first
    day, so a ``tcp://`` cluster's workers get it too; a no-op off glibc.
    """
    libc = _glibc()
    return libc is not None and all(libc.mallopt(k, v) == 1 for k, v in WORKER_MALLOC.items())


def release_memory(collect: bool = True) -> bool:
    """Give the memory this process has freed back to the system (a garbage collection, then
    glibc's ``malloc_trim``, which also returns the free pages inside the heap, not only at
    its top); whether glibc did. Called between the build's phases in the parent: on the 100 m
    week the report started at 1.54 GB of which 0.45 GB was free memory held by ``malloc``,
    and peaked 0.3 GB lower with it given back. A no-op off glibc. ``collect=False``: no
    garbage collection first (0.1 s in a build's parent), for what reference counting frees."""
    if collect:
        gc.collect()
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


def _on_worker(fn: Callable[..., R], shared: Any, day: pd.Timestamp
               ) -> tuple[R, str, float, float]:
    tune_malloc()
    t0 = time.perf_counter()
    value = fn(shared, day)
    return (value, f"{socket.gethostname()}:{os.getpid()}", peak_rss_mb(),
            time.perf_counter() - t0)


def map_days(fn: Callable[[Any, pd.Timestamp], R], shared: Any, days: list[pd.Timestamp],
             scheduler: str | None = "auto", on_day: Callable[[int, int], None] | None = None,
             stats: RunStats | None = None) -> list[R]:
    """``[fn(shared, day) for day in days]``, each day a task on ``scheduler`` (see the module
    docstring), results in day order; ``on_day(done, total)`` as days finish; ``stats`` gets
    the scheduler and each worker's peak memory."""
    total = len(days)
    stats = stats if stats is not None else RunStats()
    stats.scheduler = resolve(scheduler, total)
    if stats.scheduler == "synchronous":
        out, t0 = [], time.perf_counter()
        for i, day in enumerate(days):
            out.append(fn(shared, day))
            if on_day is not None:
                on_day(i + 1, total)
        stats.add("this process", peak_rss_mb(), time.perf_counter() - t0)
        return out
    from distributed import as_completed

    with dask_client(stats.scheduler) as client:
        handle = client.scatter(shared, broadcast=True, hash=False)
        # what pickling ``shared`` took, freed as the scatter returns: 0.18 GB of a 100 m
        # build's parent
        release_memory(collect=False)
        futures = {client.submit(_on_worker, fn, handle, day, pure=False): i
                   for i, day in enumerate(days)}
        results: list[Any] = [None] * total
        for done, future in enumerate(as_completed(futures), start=1):
            value, worker, rss, seconds = future.result()
            results[futures[future]] = value
            stats.add(worker, rss, seconds)
            if on_day is not None:
                on_day(done, total)
    return results
