"""The hourly day files: written one UTC day at a time, identified by their content, and kept
in a content-addressed store so that unchanged days are hard-linked, not rewritten.

A day file's *content hash* covers every array (bytes, dtype, shape, attributes), the time axis,
the static coordinates, the encoding and the code version, but not the build's global
attributes: two builds that compute the same day share one file. Each written day is
hard-linked into ``<cache dir>/days/<content hash>.<build id>.nc``; a build killed after some
days resumes from there, and builds under other pointers share their days.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.cube import SECONDS_PER_HOUR
from pipeline.publish import has_manifest, read_manifest
from pipeline.writers import WriteMeta, netcdf_cf
from sources.errors import ConfigError


@dataclass
class WriteContext:
    """What every daily write needs besides the data."""

    hourly_dir: Path
    static: dict[str, Any]
    attrs: dict[str, Any]
    year: int
    dtype: str
    complevel: int
    shuffle: bool
    #: day (YYYYMMDD) → (content hash, file, build that wrote it) of the build the pointer
    #: refers to: a day whose content is unchanged is hard-linked from there, not rewritten
    previous: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    #: content-addressed day files (``<content hash>.<build id>.nc``, hard links to the files
    #: builds wrote): a build killed after some days resumes from them, and builds under other
    #: pointers share their days. None: no cache.
    store: Path | None = None


def stored_days(store: Path | None) -> dict[str, Path]:
    """content hash → a stored day file with that content (one listing of the store, not a
    search per day: the store holds the days of every kept build)."""
    if store is None or not store.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(store.glob("*.*.nc")):
        found.setdefault(path.name.split(".")[0], path)
    return found


def store_day(store: Path | None, content: str, path: Path, build_id: str) -> None:
    """Hard-link a written day file into the store (atomically; nothing on another file system:
    a copy would double the disk it takes)."""
    if store is None:
        return
    store.mkdir(parents=True, exist_ok=True)
    tmp = store / f".{content}.{build_id}.{os.getpid()}.tmp"
    try:
        os.link(path, tmp)
        os.replace(tmp, store / f"{content}.{build_id}.nc")
    except OSError:
        tmp.unlink(missing_ok=True)


def day_content_hash(day_ds: xr.Dataset, ctx: WriteContext) -> str:
    """sha256 of what a day file carries apart from the build's global attributes: every array
    (bytes, dtype, shape, attributes), the time axis, the static coordinates and the encoding."""
    h = hashlib.sha256(json.dumps({"dtype": ctx.dtype, "complevel": ctx.complevel,
                                   "shuffle": ctx.shuffle, "year": ctx.year,
                                   "code": ctx.attrs.get("tongyuan_code_version")},
                                  sort_keys=True).encode())
    for name, (dims, values, attrs) in sorted(ctx.static.items()):
        h.update(f"{name}{dims}{json.dumps(attrs, sort_keys=True, default=str)}".encode())
        h.update(np.ascontiguousarray(values).tobytes())
    h.update(np.ascontiguousarray(day_ds["time"].values).tobytes())
    for v in sorted(day_ds.data_vars):
        a = np.ascontiguousarray(day_ds[v].values)
        h.update(f"{v}{a.dtype}{a.shape}{json.dumps(day_ds[v].attrs, sort_keys=True)}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class DaysWritten:
    """What :func:`write_days` wrote.

    Attributes
    ----------
    written : day (YYYYMMDD) → species → mass the day's file carries [kg], measured in the
        written arrays (at the file's precision)
    files : the day files, in day order
    content : day → content hash (:func:`day_content_hash`)
    reused : day → id of the build that wrote the file hard-linked for it (unchanged days)
    """

    written: dict[str, dict[str, float]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    content: dict[str, str] = field(default_factory=dict)
    reused: dict[str, str] = field(default_factory=dict)

    def update(self, other: DaysWritten) -> None:
        self.written.update(other.written)
        self.files += other.files
        self.content.update(other.content)
        self.reused.update(other.reused)


def write_days(cube: xr.Dataset, days: list[pd.Timestamp], ctx: WriteContext,
               cell_area: np.ndarray) -> DaysWritten:
    """Compute and write the given UTC days into ``ctx.hourly_dir`` (created if missing):
    per day the mass each file carries, its content hash, and whether an unchanged file of an
    earlier build was hard-linked instead of written."""
    ctx.hourly_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    files = []
    content: dict[str, str] = {}
    reused: dict[str, str] = {}
    seconds = SECONDS_PER_HOUR
    stored = stored_days(ctx.store)  # days differ in content: this call adds none it could use
    meta = WriteMeta(attrs=ctx.attrs, year=ctx.year, dtype=ctx.dtype, complevel=ctx.complevel,
                     shuffle=ctx.shuffle, static=ctx.static)
    for day in days:
        start = np.datetime64(day.to_datetime64(), "h")
        sel = cube.sel(time=slice(start, start + np.timedelta64(23, "h")))
        if sel.sizes["time"] != 24:
            raise ConfigError(f"day {day:%Y-%m-%d} has {sel.sizes['time']} hours in the cube")
        day_ds = sel.compute()
        if ctx.dtype != "float64":
            day_ds = day_ds.astype(ctx.dtype)
        mass = {v: float((day_ds[v].to_numpy().astype(np.float64) * cell_area).sum() * seconds)
                for v in day_ds.data_vars}
        key = f"{day:%Y%m%d}"
        path = ctx.hourly_dir / f"{key}.nc"
        h = day_content_hash(day_ds, ctx)
        content[key] = h
        prev = ctx.previous.get(key)
        source = origin = None
        if prev is not None and prev[0] == h and Path(prev[1]).is_file():
            source, origin = Path(prev[1]), prev[2]
        elif (found := stored.get(h)) is not None:
            source, origin = found, found.name.split(".")[1]
        if source is not None:
            try:  # same content: the same file, not a new one (same bytes, same checksum)
                os.link(source, path)
            except OSError:
                shutil.copy2(source, path)
            reused[key] = origin  # the build that wrote the file
        else:
            netcdf_cf.write(day_ds, path, meta)
            store_day(ctx.store, h, path, ctx.attrs["tongyuan_build_id"])
        written[key] = mass
        files.append(str(path))
    return DaysWritten(written=written, files=files, content=content, reused=reused)


def previous_days(pointer: Path) -> dict[str, tuple[str, str, str]]:
    """Content hash, file and writing build of each day of the build ``pointer`` refers to."""
    if not (pointer.is_symlink() and has_manifest(pointer)):
        return {}
    build = pointer.resolve()
    m = read_manifest(build)
    return {day: (h, str(build / "hourly" / f"{day}.nc"), m.reused_days.get(day, build.name))
            for day, h in m.day_content.items()}
