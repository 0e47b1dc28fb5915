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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import is_dask_collection

from grids.grid import Grid
from pipeline.cems import Cems
from pipeline.cube import SECONDS_PER_HOUR
from pipeline.cube import day_cube as cube_of_day
from pipeline.parallel import RunStats, map_days
from pipeline.publish import HashedFile, has_manifest, hash_file, read_manifest
from pipeline.writers import WriteMeta, netcdf_cf
from sources.errors import ConfigError
from sources.files import sha256_file
from sources.species import SpeciesRegistry

#: a day whose arrays take at most this many bytes is computed once and held whole while it is
#: hashed and written; a larger one is computed, hashed and written a few hours at a time
IN_MEMORY_BYTES = 256 * 2**20


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
    #: day (YYYYMMDD) → (content hash, file, build that wrote it, the file's sha256 in that
    #: build's manifest) of the build the pointer refers to: a day whose content is unchanged
    #: is hard-linked from there, not rewritten, if the file still has its published sha256
    previous: dict[str, tuple[str, str, str, str | None]] = field(default_factory=dict)
    #: content-addressed day files (``<content hash>.<build id>.<sha256>.nc``, hard links to
    #: the files builds wrote): a build killed after some days resumes from them, and builds
    #: under other pointers share their days, if a file's bytes still have the sha256 in its
    #: name. None: no cache.
    store: Path | None = None
    #: hours computed, hashed and written at a time: a worker holds a few hours of one
    #: species, whatever the grid size. Two: a 100 m worker day peaked at 962 MB (1119 MB with
    #: six hours, each slab's flux, float32 copy and mass product 0.3 GB), no slower
    slab_hours: int = 2
    #: the file each day file starts from (:func:`pipeline.writers.netcdf_cf.write_static`,
    #: :func:`write_days` writes it): then :attr:`static` need not travel to the workers
    template: Path | None = None
    #: :func:`static_digest` of the static variables (with :attr:`template`, in place of them)
    static_digest: str | None = None
    #: :func:`stored_days` of :attr:`store`, listed once by the process that hands out the
    #: days (:func:`write_days`) and sent to the workers with the rest; None: listed per day
    stored: dict[str, Path] | None = None


def stored_days(store: Path | None) -> dict[str, Path]:
    """content hash → a stored day file with that content (one listing of the store, not a
    search per day: the store holds the days of every kept build)."""
    if store is None or not store.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(store.glob("*.*.*.nc")):
        found.setdefault(path.name.split(".")[0], path)
    return found


def intact(path: Path, sha256: str | None) -> bool:
    """Whether ``path`` is a file whose bytes still have ``sha256`` (a corrupted or truncated
    day is never reused: it is written again)."""
    return sha256 is not None and path.is_file() and sha256_file(path) == sha256


def store_day(store: Path | None, content: str, path: Path, build_id: str,
              sha256: str | None = None) -> None:
    """Hard-link a written day file into the store, named by its content hash, the writing
    build and its sha256 (``sha256``: already measured; atomically; nothing on another file
    system: a copy would double the disk it takes)."""
    if store is None:
        return
    store.mkdir(parents=True, exist_ok=True)
    tmp = store / f".{content}.{build_id}.{os.getpid()}.tmp"
    try:
        os.link(path, tmp)
        os.replace(tmp, store / f"{content}.{build_id}.{sha256 or sha256_file(path)}.nc")
    except OSError:
        tmp.unlink(missing_ok=True)


def static_digest(static: dict[str, Any]) -> str:
    """sha256 of the static variables (names, dimensions, attributes, values) every day file
    carries: part of each day's content hash, computed once per build."""
    h = hashlib.sha256()
    for name, (dims, values, attrs) in sorted(static.items()):
        h.update(f"{name}{dims}{json.dumps(attrs, sort_keys=True, default=str)}".encode())
        h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


def _header(ctx: WriteContext, times: np.ndarray) -> hashlib._Hash:
    h = hashlib.sha256(json.dumps({"dtype": ctx.dtype, "complevel": ctx.complevel,
                                   "shuffle": ctx.shuffle, "year": ctx.year,
                                   "code": ctx.attrs.get("tongyuan_code_version")},
                                  sort_keys=True).encode())
    h.update((ctx.static_digest or static_digest(ctx.static)).encode())
    h.update(np.ascontiguousarray(times).tobytes())
    return h


class DayMeasure:
    """A day's content hash and the mass of each species [kg], accumulated from its arrays a
    few hours at a time (:meth:`add`, hours in order within a species, species in any order):
    :func:`measure_day` feeds it before a file is written, :func:`write_day_dataset` while the
    file is written (a large day computed once, not twice). The same numbers either way.

    The hash covers what a day file carries apart from the build's global attributes: every
    array at the file's dtype (bytes, shape, attributes), the time axis, the static coordinates,
    the encoding and the code version.
    """

    def __init__(self, day_ds: xr.Dataset, ctx: WriteContext, cell_area: np.ndarray) -> None:
        self.day_ds, self.ctx, self.cell_area = day_ds, ctx, cell_area
        self.hashes: dict[str, Any] = {}
        self.totals: dict[str, float] = {}

    def add(self, name: str, slab: np.ndarray) -> None:
        """Hours of species ``name`` at the file's dtype (the next ones of that species)."""
        a = np.ascontiguousarray(slab, dtype=self.ctx.dtype)
        self.hashes.setdefault(name, hashlib.sha256()).update(a)  # the bytes, without a copy
        # the product made at float64 in one step (not a float64 copy, then the product): the
        # same bits, one slab-sized temporary fewer (86 MB of a 100 m 6-hour slab), 25 % faster
        self.totals[name] = self.totals.get(name, 0.0) + float(
            np.multiply(a, self.cell_area, dtype=np.float64).sum())

    def result(self) -> tuple[str, dict[str, float]]:
        """(content hash, species → kg) once every hour of every species was added."""
        ds = self.day_ds
        h = _header(self.ctx, ds["time"].values)
        mass: dict[str, float] = {}
        for v in sorted(ds.data_vars):
            shape = (ds.sizes["time"], *ds[v].shape[1:])
            h.update(f"{v}{np.dtype(self.ctx.dtype)}{shape}"
                     f"{json.dumps(ds[v].attrs, sort_keys=True)}".encode()
                     + self.hashes.get(v, hashlib.sha256()).digest())
            mass[v] = self.totals.get(v, 0.0) * SECONDS_PER_HOUR
        return h.hexdigest(), mass


def measure_day(day_ds: xr.Dataset, ctx: WriteContext, cell_area: np.ndarray,
                slab_hours: int = 2) -> tuple[str, dict[str, float]]:
    """The day's content hash and the mass each species' array carries [kg]
    (:class:`DayMeasure`), computed a few hours at a time (``slab_hours``): a lazy ``day_ds``
    is never held whole."""
    m = DayMeasure(day_ds, ctx, cell_area)
    n = day_ds.sizes["time"]
    for v in sorted(day_ds.data_vars):
        for t0 in range(0, n, slab_hours):
            m.add(v, day_ds[v].isel(time=slice(t0, t0 + slab_hours)).values)
    return m.result()


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
    hashed : file → its sha256, size and time, measured by the process that wrote or linked
        it (:func:`pipeline.publish.write_manifest` does not read those files again)
    stats : the scheduler the days were written on and each worker's peak memory [MB]
    """

    written: dict[str, dict[str, float]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    content: dict[str, str] = field(default_factory=dict)
    reused: dict[str, str] = field(default_factory=dict)
    hashed: dict[str, HashedFile] = field(default_factory=dict)
    stats: RunStats = field(default_factory=RunStats)

    def update(self, other: DaysWritten) -> None:
        self.written.update(other.written)
        self.files += other.files
        self.content.update(other.content)
        self.reused.update(other.reused)
        self.hashed.update(other.hashed)


def write_day_dataset(day_ds: xr.Dataset, key: str, ctx: WriteContext, cell_area: np.ndarray,
                      stored: dict[str, Path]) -> DaysWritten:
    """One day's file from its (lazy or computed) 24 hours: hashed and measured a few hours at
    a time, then hard-linked from the previous build or the store when its content is there
    already, else written (a few hours at a time). ``stored``: :func:`stored_days`."""
    ctx.hourly_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.hourly_dir / f"{key}.nc"
    meta = WriteMeta(attrs=ctx.attrs, year=ctx.year, dtype=ctx.dtype, complevel=ctx.complevel,
                     shuffle=ctx.shuffle, static=ctx.static, slab_hours=ctx.slab_hours,
                     template=None if ctx.template is None else str(ctx.template))
    # a large day that nothing could replace (no previous build's day, an empty store) is
    # hashed and measured from its slabs as they are written: computed once, not twice
    once = (day_ds.nbytes > IN_MEMORY_BYTES and key not in ctx.previous and not stored
            and all(is_dask_collection(day_ds[v].data)
                    and day_ds[v].attrs.get("units") == netcdf_cf.UNITS
                    for v in day_ds.data_vars))
    with dask.config.set(scheduler="synchronous"):  # a few hours at a time, in this process
        if once:
            m = DayMeasure(day_ds, ctx, cell_area)
            netcdf_cf.write(day_ds, path, replace(meta, on_slab=m.add))
            h, mass = m.result()
        else:
            if day_ds.nbytes <= IN_MEMORY_BYTES:  # small enough: computed once, not twice
                day_ds = day_ds.compute()
            h, mass = measure_day(day_ds, ctx, cell_area, ctx.slab_hours)
    prev = None if once else ctx.previous.get(key)
    source = origin = sha = None
    if prev is not None and prev[0] == h and intact(Path(prev[1]), prev[3]):
        source, origin, sha = Path(prev[1]), prev[2], prev[3]
    elif (found := stored.get(h)) is not None and intact(found, found.name.split(".")[2]):
        source, origin, sha = found, found.name.split(".")[1], found.name.split(".")[2]
    reused = {}
    if source is not None:
        path.unlink(missing_ok=True)  # a retried write finds its own earlier link
        try:  # same content: the same file, not a new one (same bytes, same checksum)
            os.link(source, path)
            st = path.stat()  # the file intact() has just read: its sha256 is known
            hashed = HashedFile(str(sha), st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            shutil.copy2(source, path)
            hashed = hash_file(path)
        reused[key] = origin  # the build that wrote the file
    else:
        if not once:
            with dask.config.set(scheduler="synchronous"):
                netcdf_cf.write(day_ds, path, meta)
        hashed = hash_file(path)  # read back once, here, while its pages are in memory
        store_day(ctx.store, h, path, ctx.attrs["tongyuan_build_id"], hashed.sha256)
    return DaysWritten(written={key: mass}, files=[str(path)], content={key: h}, reused=reused,
                       hashed={str(path): hashed})


@dataclass(frozen=True)
class DayInputs:
    """What every hourly day file is made from: sent to each worker once.

    Attributes
    ----------
    annual : annual grid ``(sector, species, y, x)`` [kg/yr per cell]
    factors : temporal factors ``(sector, time)`` [share of the year per UTC hour]
    grid : the grid (cell areas)
    registry : species metadata (attributes of the variables)
    cems : measured stack hours, or None
    ctx : where and how the files are written
    """

    annual: xr.DataArray
    factors: xr.DataArray
    grid: Grid
    registry: SpeciesRegistry
    cems: Cems | None
    ctx: WriteContext


def day_cube(inputs: DayInputs, day: pd.Timestamp) -> xr.Dataset:
    """The 24 hours of UTC ``day``, lazy, in chunks of ``ctx.slab_hours`` hours."""
    times = inputs.factors["time"].values.astype("datetime64[h]")
    start = np.datetime64(day.to_datetime64(), "h")
    idx = np.flatnonzero((times >= start) & (times < start + np.timedelta64(24, "h")))
    if idx.size != 24:
        raise ConfigError(f"day {day:%Y-%m-%d} has {idx.size} hours in the cube")
    cems = inputs.cems
    if cems is not None:
        cems = replace(cems, correction=cems.correction[:, idx])
    # a day held whole is computed in one piece per species (a quarter of the numpy calls of
    # 6-hour slabs, the same values); a larger one a few hours at a time
    whole = inputs.annual.sizes["species"] * idx.size * inputs.grid.size * 8 <= IN_MEMORY_BYTES
    return cube_of_day(inputs.annual, inputs.factors.isel(time=idx), inputs.grid,
                       inputs.registry, cems=cems,
                       hours_per_chunk=idx.size if whole else inputs.ctx.slab_hours)


def write_day(inputs: DayInputs, day: pd.Timestamp) -> DaysWritten:
    """Write (or link) the hourly file of one UTC day: the task a worker runs."""
    ctx = inputs.ctx
    stored = ctx.stored if ctx.stored is not None else stored_days(ctx.store)
    return write_day_dataset(day_cube(inputs, day), f"{day:%Y%m%d}", ctx,
                             inputs.grid.cell_area_m2, stored)


def static_template(ctx: WriteContext) -> WriteContext:
    """``ctx`` as the workers get it: its static variables written once, to a file beside the
    hourly folder that every day file starts as a copy of, and that file's name and digest in
    place of the arrays. The caller removes ``ctx.template`` once the days are written."""
    template = ctx.hourly_dir.parent / f".static-{os.getpid()}.nc"
    template.parent.mkdir(parents=True, exist_ok=True)
    netcdf_cf.write_static(ctx.static, template)
    return replace(ctx, static=None, template=template, static_digest=static_digest(ctx.static))


@contextmanager
def templated(ctx: WriteContext) -> Iterator[WriteContext]:
    """``ctx`` with its static variables in a template (:func:`static_template`) for the
    block, the file removed after it; ``ctx`` as it is when it has a template already or no
    static variables. Rebind ``ctx`` to what this yields (``with templated(ctx) as ctx``) and
    the static arrays are held by nobody during the block."""
    if ctx.template is not None or ctx.static is None:
        yield ctx
        return
    ctx = static_template(ctx)
    template = ctx.template
    try:
        yield ctx
    finally:
        if template is not None:
            template.unlink(missing_ok=True)


def write_days(inputs: DayInputs, days: list[pd.Timestamp], scheduler: str | None = "auto",
               on_day: Callable[[int, int], None] | None = None) -> DaysWritten:
    """Write the hourly files of ``days``, each an independent task on ``scheduler``
    (:func:`pipeline.parallel.map_days`); ``on_day(done, total)`` after each day. The files are
    the same bytes on every scheduler."""
    out = DaysWritten()
    ctx = inputs.ctx
    if ctx.stored is None:  # the store listed once here, not once per day
        ctx = replace(ctx, stored=stored_days(ctx.store))
    with templated(ctx) as ctx:
        for got in map_days(write_day, replace(inputs, ctx=ctx), days, scheduler, on_day,
                            out.stats):
            out.update(got)
    return out


def previous_days(pointer: Path) -> dict[str, tuple[str, str, str, str | None]]:
    """Content hash, file, writing build and published sha256 of each day of the build
    ``pointer`` refers to."""
    if not (pointer.is_symlink() and has_manifest(pointer)):
        return {}
    build = pointer.resolve()
    m = read_manifest(build)
    out = {}
    for day, h in m.day_content.items():
        entry = m.files.get(f"hourly/{day}.nc")
        out[day] = (h, str(build / "hourly" / f"{day}.nc"), m.reused_days.get(day, build.name),
                    entry.sha256 if entry is not None else None)
    return out
