"""Prefect flows: the only module that imports ``prefect``.

The recipe lives in :mod:`pipeline.build`; this module runs it with :class:`PrefectRunner`,
which makes each step a Prefect task: the reads and emissions of each input are cached on disk
by content key (``<cache dir>/tasks``), file reads and writes are retried on transient I/O
errors, every step shows in the Prefect UI, and the build summary becomes an artifact. The
flows add scheduling: :func:`nightly_inventory` publishes only when something changed, and
:func:`serve_nightly` serves it on a cron schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, serve, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.schedules import Cron
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from pipeline import build
from pipeline.config import load_config
from pipeline.progress import ProgressDisplay, for_terminal

T = {"cache_policy": NO_CACHE, "persist_result": False}


def _transient(task, task_run, state) -> bool:
    """Retry I/O trouble that may pass (a busy or full disk, a network file system hiccup, a
    dropped connection), never bad input, a missing file or a failed check."""
    exc = state.result(raise_on_failure=False)
    permanent = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
    return isinstance(exc, (OSError, TimeoutError)) and not isinstance(exc, permanent)


#: retried twice on transient I/O errors (the writes are atomic, so a retry starts clean)
RETRY = {"retries": 2, "retry_delay_seconds": 2, "retry_condition_fn": _transient}


def _by_key(context, parameters) -> str:
    return parameters["key"]


@task(**T)
def step_task(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """A step of the build."""
    return fn(*args)


@task(**T, **RETRY)
def io_task(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """A step that reads or writes files."""
    return fn(*args)


#: cached on disk by the content key passed as ``key`` (:func:`pipeline.provenance.read_key`):
#: the record holds the result, so a later build, in another process, skips the work when
#: nothing it depends on changed. A record cut short by a killed build reads as a miss.
@task(cache_key_fn=_by_key, persist_result=True, cache_expiration=None, **RETRY)
def cached_task(fn: Callable[..., Any], args: tuple[Any, ...], key: str) -> Any:
    """A step whose result is determined by its content key."""
    return fn(*args)


class PrefectRunner(build.Runner):
    """Runs each step of :mod:`pipeline.build` as a Prefect task (see the module docstring);
    the progress of the day writes is also a Prefect progress artifact (``build-progress``)."""

    def __init__(self, display: ProgressDisplay | None = None) -> None:
        super().__init__(display)
        self._artifact: Any = None
        self._shown = -1

    def progress(self, stage: str, done: int, total: int) -> None:
        super().progress(stage, done, total)
        if stage != "write days" or total <= 0:
            return
        percent = int(100 * done / total)
        if self._artifact is None:
            self._artifact = create_progress_artifact(
                progress=0.0, key="build-progress", description="days of hourly files written")
        if percent >= self._shown + 5 or done == total:  # a few updates, not one per day
            update_progress_artifact(artifact_id=self._artifact, progress=float(percent))
            self._shown = percent

    def run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        return step_task.with_options(name=name)(fn, args)

    def io(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        return io_task.with_options(name=name)(fn, args)

    def cached(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], key: str,
               cache_dir: Path | None) -> tuple[Any, bool]:
        storage = ({"result_storage": Path(cache_dir) / "tasks"} if cache_dir is not None
                   else {"cache_policy": NO_CACHE, "persist_result": False})
        state = cached_task.with_options(name=name, **storage)(fn, args, key,
                                                                 return_state=True)
        return state.result(), state.name == "Cached"

    def artifact(self, key: str, markdown: str, description: str) -> None:
        create_markdown_artifact(key=key, markdown=markdown, description=description)


@flow(name="build-inventory", log_prints=True)
def build_inventory(config_path: str, out_dir: str | None = None, year: int | None = None,
                    period: tuple[str, str] | None = None,
                    scheduler: str | None = None, formats: list[str] | None = None,
                    mechanism: str | None = None, show_progress: bool = False,
                    emiss_opt: int | None = None, kemit: int | None = None,
                    cmaq_streams: dict[str, list[str]] | None = None) -> build.BuildResult:
    """Annual build (:func:`pipeline.build.run_build`) with every step a Prefect task;
    ``show_progress``: progress bars on standard error when it is a terminal."""
    display = for_terminal() if show_progress else None
    try:
        return build.run_build(config_path, PrefectRunner(display), out=out_dir, year=year,
                               period=period, scheduler=scheduler, formats=formats,
                               mechanism=mechanism, emiss_opt=emiss_opt, kemit=kemit,
                               cmaq_streams=cmaq_streams)
    finally:
        if display is not None:
            display.close()


@flow(name="scenario-inventory", log_prints=True)
def scenario_inventory(scenario_path: str, out_dir: str | None = None,
                       period: tuple[str, str] | None = None) -> build.BuildResult:
    """Scenario inventory and synergy assessment
    (:func:`pipeline.build.run_scenario_build`), every step a Prefect task."""
    return build.run_scenario_build(scenario_path, PrefectRunner(), out=out_dir,
                                    period=period)


@flow(name="nightly-inventory", log_prints=True)
def nightly_inventory(config_path: str, out_dir: str | None = None) -> dict[str, Any]:
    """The scheduled regeneration: rebuild and publish only when something the inventory
    depends on changed or a published file no longer matches its manifest
    (:func:`pipeline.build.up_to_date` with ``verify``); otherwise finish at once, publishing
    nothing."""
    current = build.up_to_date(config_path, verify=True, out=out_dir)
    if current is not None:
        print(f"nothing changed since build {current.build_id}: nothing published")
        return {"published": False, "build_id": current.build_id,
                "fingerprint": current.fingerprint}
    result = build_inventory(config_path, out_dir=out_dir)
    return {"published": True, "build_id": result.build_id,
            "build_dir": str(result.build_dir), "fingerprint": result.manifest.fingerprint}


def nightly_deployment(config_path: str, out_dir: str | None, cron: str, timezone: str):
    """The nightly deployment: :func:`nightly_inventory` on a cron schedule in ``timezone``
    (a cron without one is UTC in Prefect), for ``flow.serve``-style serving."""
    cfg = load_config(config_path)
    return nightly_inventory.to_deployment(
        name=f"nightly-{cfg.name}", schedules=[Cron(cron, timezone=timezone)],
        parameters={"config_path": str(Path(config_path).resolve()),
                    "out_dir": str(Path(out_dir).resolve()) if out_dir else None},
        description=f"Regenerate {cfg.name} when its inputs change ({cron}, {timezone})")


def serve_nightly(config_path: str, out_dir: str | None, cron: str, timezone: str) -> str:
    """Serve :func:`nightly_deployment` until interrupted (blocks); returns its name first
    through ``print``."""
    deployment = nightly_deployment(config_path, out_dir, cron, timezone)
    print(f"serving {deployment.name}: {cron} ({timezone}); Ctrl-C stops")
    serve(deployment)
    return deployment.name


@contextmanager
def command_settings() -> Iterator[None]:
    """Prefect settings for a one-shot command: no flow-run heartbeats (a command is watched by
    its caller, not by a worker)."""
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield

