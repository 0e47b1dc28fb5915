"""Build identity and provenance: build id, code version, input hashes, global attributes."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

from pipeline import __version__


def code_version() -> str:
    """Package version, plus the git commit when run from a checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5, check=True).stdout.strip()
        return f"{__version__}+g{out.stdout.strip()}" + (".dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return __version__


def new_build_id(cfg_hash: str, now: dt.datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSmmmZ-<config hash 8>``: sortable, unique per millisecond and config."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{cfg_hash[:8]}"


def global_attributes(*, build_id: str, cfg_hash: str, inputs: dict[str, str], version: str,
                      name: str, year: int, grid_name: str) -> dict[str, Any]:
    """Global attributes shared by every output file of a build."""
    attrs: dict[str, Any] = {
        "title": f"Tongyuan same-source carbon-pollution emission inventory: {name} {year}",
        "institution": "Tongyuan",
        "source": "Tongyuan same-source inventory pipeline (activity x emission factors)",
        "history": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} built by tongyuan "
                   f"{version}",
        "references": "see config/REFERENCES.md and the reference columns of config/*.csv",
        "tongyuan_build_id": build_id,
        "tongyuan_config_hash": cfg_hash,
        "tongyuan_code_version": version,
        "tongyuan_grid": grid_name,
        "tongyuan_time_basis": "UTC; profiles defined in local time and shifted",
    }
    for name_, digest in sorted(inputs.items()):
        attrs[f"input_sha256_{name_}"] = digest
    return attrs
