"""Time, the hourly cube, outputs, ledger, publishing and the Prefect flows.

The public API, importable from here without knowing the modules::

    from pipeline import load_config, run_build, open_build
    result = run_build("config/shanghai.yaml", out="o", period=("2024-07-01", "2024-07-01"))
    build = open_build(result.build_dir)

Names are imported on first use (PEP 562), so ``import pipeline`` stays cheap and never
imports Prefect.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("tongyuan")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

#: public name → the module that defines it
_EXPORTS = {
    "load_config": "pipeline.config",
    "BuildConfig": "pipeline.config",
    "run_build": "pipeline.build",
    "run_scenario_build": "pipeline.build",
    "prepare": "pipeline.build",
    "write_and_publish": "pipeline.build",
    "up_to_date": "pipeline.provenance",
    "BuildState": "pipeline.build",
    "BuildResult": "pipeline.build",
    "write_days": "pipeline.day_store",
    "open_build": "pipeline.report",
    "read_manifest": "pipeline.publish",
    "verify_build": "pipeline.publish",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
