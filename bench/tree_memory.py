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


def tree_rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and of all its descendants now [MB] (0 once it has
    ended)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # a worker that ended between the two calls
            pass
    return total / 2**20


class TreeRss:
    """``with TreeRss(pid) as t: ...`` then ``t.peak_mb`` (largest sum of the resident sets of
    ``pid`` and its descendants) and ``t.peak_at`` (seconds after the start)."""

    def __init__(self, pid: int | None = None, interval: float = 0.2) -> None:
        self.pid, self.interval = pid or os.getpid(), interval
        self.peak_mb, self.peak_at, self.samples = 0.0, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            mb = tree_rss_mb(self.pid)
            self.samples += 1
            if mb > self.peak_mb:
                self.peak_mb, self.peak_at = mb, time.perf_counter() - t0
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
