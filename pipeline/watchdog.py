"""No process outlives a killed build.

A build starts processes of its own: Prefect's temporary API server, Dask's worker processes.
When the build ends normally they end with it; when it is SIGKILLed nothing in it can run, and
they were left behind (about 200 MB each, still running minutes later). :func:`guard` starts a
small watchdog process beside the build: it notes the build's descendants twice a second and,
once the build has gone, kills those still running (each checked by its start time, so that a
reused process id is never killed). It runs in its own session, so a kill of the build's
process group does not take it down first.

Run as ``python -m pipeline.watchdog PID``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

#: seconds between two looks at the build's descendants
POLL_S = 0.5


def guard() -> subprocess.Popen | None:
    """Start the watchdog of this process (once per process; None if it could not start)."""
    if os.environ.get("TONGYUAN_WATCHDOG") == str(os.getpid()):
        return None
    os.environ["TONGYUAN_WATCHDOG"] = str(os.getpid())
    try:
        return subprocess.Popen([sys.executable, "-m", "pipeline.watchdog", str(os.getpid())],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return None


def watch(pid: int) -> int:
    """Follow process ``pid``; when it is gone, kill the descendants it left. Returns the number
    of processes killed."""
    try:
        build = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return 0
    seen: dict[int, float] = {}
    while True:
        try:
            if not build.is_running() or build.status() == psutil.STATUS_ZOMBIE:
                break
            for child in build.children(recursive=True):
                try:
                    seen.setdefault(child.pid, child.create_time())
                except psutil.Error:
                    pass
        except psutil.NoSuchProcess:
            break
        time.sleep(POLL_S)
    killed = 0
    for child_pid, started in seen.items():
        try:
            child = psutil.Process(child_pid)
            if child.create_time() == started and child.pid != os.getpid():
                child.send_signal(signal.SIGKILL)
                killed += 1
        except psutil.Error:
            continue
    return killed


if __name__ == "__main__":  # pragma: no cover - run as a process by guard()
    watch(int(sys.argv[1]))
