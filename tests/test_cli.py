"""The command line where Prefect is in trouble, and processes a killed build leaves behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent


def _tongyuan(args, env, timeout=60):
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    return done, time.perf_counter() - t0


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "home"), **extra}


@pytest.mark.parametrize("case", ["unwritable", "corrupt", "unreachable"])
def test_prefect_in_trouble_is_one_line_within_15_s(world, tmp_path, case):
    extra = {}
    home = tmp_path / "home"
    home.mkdir()
    if case == "unwritable":
        extra["PREFECT_HOME"] = "/proc/tongyuan-cannot-write-here"
        expected = "cannot be written"
    elif case == "corrupt":
        (home / "prefect.db").write_bytes(b"this is not a database" * 100)
        expected = "is damaged"
    else:
        extra["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # discard port: nothing listens
        expected = "does not answer"
    done, seconds = _tongyuan(["build", "--config", str(world), "--out", str(tmp_path / "o")],
                              _env(tmp_path, **extra))
    # not a speed test: the guard is against Prefect's 127 s connection time-out with 60
    # tracebacks; start-up alone can take >15 s on a loaded CI machine
    assert done.returncode == 1 and seconds < 60
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tongyuan: error: ") and expected in lines[0]


@pytest.mark.slow
def test_no_process_outlives_a_killed_build(world, tmp_path):
    """SIGKILL of ``tongyuan build`` while it runs (Prefect's temporary server started) leaves no
    process of the build running a few seconds later."""
    env = _env(tmp_path, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "build", "--config",
                             str(world), "--out", str(tmp_path / "o"), "--period",
                             "2024-03-01:2024-03-05"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 120
    children: list[psutil.Process] = []
    while time.time() < deadline:  # wait until the build has its server running
        children = [c for c in parent.children(recursive=True)
                    if "watchdog" not in " ".join(c.cmdline())]
        if any("uvicorn" in " ".join(c.cmdline()) or "prefect" in " ".join(c.cmdline())
               for c in children):
            break
        time.sleep(0.2)
    assert children, "the build started no process of its own"
    time.sleep(1.0)  # the watchdog has seen them
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(3.0)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [c.cmdline() for c in alive]


@pytest.mark.parametrize("args, words", [
    (["--members", "-3"], "argument --members: expected an integer >= 2, got -3"),
    (["--members", "x"], "argument --members: expected an integer, got 'x'"),
    (["--member-grids", "-1"], "argument --member-grids: expected an integer >= 0, got -1"),
])
def test_uncertainty_refuses_bad_counts_before_reading_anything(tmp_path, capsys, args, words):
    from pipeline.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["uncertainty", str(tmp_path / "no-such-build"), *args])
    assert exc.value.code == 2 and words in capsys.readouterr().err
