"""The resident memory of a process and of all its descendants *at the same moment*.

A build's parent and its worker processes peak at different times (the workers while they
write days, the parent in its report), so the sum of their own peaks (what the builds print)
bounds the memory a build needs from above. :class:`TreeRss` samples the whole process tree
together every ``interval`` seconds and keeps the largest sum: what the machine had to hold.
Shared library pages count once per process (resident set sizes, not proportional ones), so it
is itself a slight overestimate.
"""

from __future__ import annotations

import os
import threading
import time

import psutil


def tree_parts_mb(pid: int) -> dict[str, float]:
    """Resident memory of process ``pid`` and of each of its descendants now [MB], by a short
    name: ``this`` for ``pid``, else the process's program and pid (``python:1234``), with
    ``worker`` for a process started by ``multiprocessing`` (a ``dask.distributed`` worker, the
    allocation's pool) and ``prefect`` for Prefect's server (empty once it has ended)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    parts = {}
    for p in procs:
        try:
            mb = p.memory_info().rss / 2**20
            cmd = " ".join(p.cmdline())
        except psutil.Error:  # a worker that ended between the two calls
            continue
        kind = ("this" if p.pid == pid else "worker" if "spawn_main" in cmd
                else "prefect" if "prefect" in cmd or "uvicorn" in cmd else p.name())
        parts[kind if kind == "this" else f"{kind}:{p.pid}"] = mb
    return parts


def tree_rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and of all its descendants now [MB] (0 once it has
    ended)."""
    return sum(tree_parts_mb(pid).values())


class TreeRss:
    """``with TreeRss(pid) as t: ...`` then ``t.peak_mb`` (largest sum of the resident sets of
    ``pid`` and its descendants), ``t.peak_at`` (seconds after the start) and ``t.peak_parts``
    (each process's share of it, :func:`tree_parts_mb`)."""

    def __init__(self, pid: int | None = None, interval: float = 0.2) -> None:
        self.pid, self.interval = pid or os.getpid(), interval
        self.peak_mb, self.peak_at, self.samples = 0.0, 0.0, 0
        self.peak_parts: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            parts = tree_parts_mb(self.pid)
            mb = sum(parts.values())
            self.samples += 1
            if mb > self.peak_mb:
                self.peak_mb, self.peak_at = mb, time.perf_counter() - t0
                self.peak_parts = parts
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def parts_text(parts: dict[str, float]) -> str:
    """``this 1200, worker:123 600, …`` [MB], largest first."""
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
