"""The nightly regeneration under a real, long-running Prefect server (not the test harness):
``prefect server start`` on loopback, ``tongyuan serve`` beside it, runs triggered through the
server's API and executed by the served runner, as an operator's installation does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, timeout: float, proc: subprocess.Popen | None = None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended with {proc.returncode}")
        try:
            got = check()
        except httpx.HTTPError:
            got = None
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture()
def prefect_server(tmp_path):
    """A Prefect server on a free loopback port with its own home and database; its API URL."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
           "PREFECT_SERVER_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=log,
                            start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        _wait("prefect server health", lambda: httpx.get(f"{api}/health", timeout=5).json(),
              180, proc)
        yield api, env
    finally:
        _stop(proc)
        log.close()


def _runs(api: str, deployment_id: str, states: list[str]) -> list[dict]:
    body = {"deployments": {"id": {"any_": [deployment_id]}},
            "flow_runs": {"state": {"type": {"any_": states}}}}
    return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()


def _run_and_wait(api: str, deployment_id: str, timeout: float = 300) -> dict:
    run = httpx.post(f"{api}/deployments/{deployment_id}/create_flow_run", json={},
                     timeout=10).json()

    def finished():
        r = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=10).json()
        return r if r["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") \
            else None

    return _wait(f"flow run {run['name']}", finished, timeout)


@pytest.mark.slow
def test_nightly_served_beside_a_prefect_server(world, prefect_server, tmp_path):
    """``tongyuan serve`` registers the nightly deployment with its cron in Asia/Shanghai (the
    server schedules its runs at 18:00 UTC); a run triggered on the server is executed by the
    served runner and publishes; the next run finds nothing changed and publishes nothing."""
    api, env = prefect_server
    world.write_text(world.read_text().replace(
        "output: {dir: ../out}", "output: {dir: ../out, period: [2024-03-01, 2024-03-01]}"))
    out = tmp_path / "out"
    env = {**env, "PREFECT_API_URL": api, "PYTHONPATH": str(REPO),
           "PREFECT_LOGGING_LEVEL": "INFO"}
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen([str(BIN / "tongyuan"), "serve", "--config", str(world), "--out",
                              str(out)], env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        deployment = _wait("the nightly deployment", lambda: httpx.post(
            f"{api}/deployments/filter", json={}, timeout=10).json(), 120, serve)[0]
        assert deployment["name"] == "nightly-fixture"
        (schedule,) = deployment["schedules"]
        assert schedule["schedule"]["cron"] == "0 2 * * *"
        assert schedule["schedule"]["timezone"] == "Asia/Shanghai"
        scheduled = _wait("scheduled runs", lambda: _runs(api, deployment["id"], ["SCHEDULED"]),
                          60, serve)
        assert {r["expected_start_time"][11:16] for r in scheduled} == {"18:00"}

        first = _run_and_wait(api, deployment["id"])
        assert first["state"]["type"] == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
        builds = sorted(p.name for p in out.iterdir() if p.name[:1].isdigit())
        assert len(builds) == 1
        assert (out / "latest-period").resolve().name == builds[0]

        second = _run_and_wait(api, deployment["id"])
        assert second["state"]["type"] == "COMPLETED"
        assert sorted(p.name for p in out.iterdir() if p.name[:1].isdigit()) == builds
        said = f"nothing changed since build {builds[0]}: nothing published"

        def logged():  # the run's logs reach the server in batches
            logs = httpx.post(f"{api}/logs/filter", json={"logs": {"flow_run_id": {
                "any_": [second["id"]]}}}, timeout=10).json()
            return said in [r["message"] for r in logs]

        _wait("the run's log", logged, 30)
    finally:
        _stop(serve)
        log.close()
