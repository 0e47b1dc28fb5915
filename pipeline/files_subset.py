"""The NetCDF work of the download service's subsets, run in worker processes.

HDF5 and netCDF-C are not thread-safe: subsets read in the server's threads crashed it
(SIGBUS after 8 of 40 requests 8 at a time; 1 answer in 20 a 500 from HDF5 dimension scales with
2 at a time). :mod:`pipeline.files_service` therefore runs :func:`make_subset` in a small
``ProcessPoolExecutor``: each worker does one subset at a time, single-threaded (dask's
synchronous scheduler), and a crash in netCDF-C ends that worker, never the server. The server
process itself opens no NetCDF file.

This module imports only what a worker needs (no Starlette), so that workers start fast.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("tongyuan.files_service")

#: most values (hours × cells × species) one subset request may carry (400 MB of float64)
MAX_SUBSET_VALUES = 50_000_000
#: a subset up to this size is read into memory at once; a larger one is written a day file's
#: chunk at a time, so that a worker holds at most this plus one chunk of one species
IN_MEMORY_BYTES = 64 * 2**20
#: the rule a subset's bbox follows, also written into the subset's global attributes
BBOX_RULE = ("the enclosing index rectangle of the cells whose centre (lon, lat) lies in the box "
             "(bounds inclusive); emission values of the rectangle's cells whose centre lies "
             "outside are _FillValue (NaN when read with xarray)")


class SubsetError(Exception):
    """A subset request the worker refuses: an HTTP status and a message for the client (never
    a server path)."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class SubsetRequest:
    """One subset, as the server validated it: the build's daily files (checked to be published
    files inside the build), species, the UTC window and the box."""

    build: str
    paths: tuple[str, ...]
    species: tuple[str, ...]
    start: str  # ISO hour, UTC, no time zone
    end: str
    bbox: tuple[float, float, float, float] | None
    tmpdir: str


def init_worker() -> None:
    """Worker start-up: import the NetCDF stack once, and make dask single-threaded."""
    import dask
    import dask.array  # noqa: F401
    import netCDF4  # noqa: F401
    import pandas  # noqa: F401
    import xarray

    dask.config.set(scheduler="synchronous")
    xarray.backends.list_engines()  # the backends' entry points, found once (about 1 s)


def ping() -> int:
    """A no-op task: starts a worker (the pool is warmed with it) and tells its pid."""
    return os.getpid()


def bbox_cells(lon: np.ndarray, lat: np.ndarray,
               bbox: tuple[float, float, float, float]) -> tuple[slice, slice, np.ndarray]:
    """The rows and columns of the rectangle enclosing the cells whose centre lies in ``bbox``
    (``lon_min, lat_min, lon_max, lat_max``, inclusive), and the mask of those cells within it.

    Raises :class:`SubsetError` (400) when no cell centre lies in the box.
    """
    x0, y0, x1, y1 = bbox
    inside = (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)
    if not inside.any():
        raise SubsetError(400, "bbox holds no cell centre of the grid")
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    ys, xs = slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
    return ys, xs, inside[ys, xs]


def make_subset(req: SubsetRequest) -> tuple[str, float]:
    """Write the subset into a new file under ``req.tmpdir``; return its path and the seconds
    it took (the server's estimate for ``Retry-After``).

    Raises :class:`SubsetError` for what the client asked wrongly (400, 413) and for files that
    cannot be read (500; the cause is logged, not told).
    """
    t0 = time.perf_counter()
    try:
        return _make_subset(req), time.perf_counter() - t0
    except SubsetError:
        raise
    except Exception as exc:  # noqa: BLE001 - the message could name server paths
        log.exception("subset of build %s failed", req.build)
        raise SubsetError(500, f"the hourly files of build {req.build} could not be read "
                          f"({type(exc).__name__})") from None


def _make_subset(req: SubsetRequest) -> str:
    import pandas as pd
    import xarray as xr

    start, end = pd.Timestamp(req.start), pd.Timestamp(req.end)
    with xr.open_mfdataset(list(req.paths), combine="by_coords", data_vars="minimal",
                           coords="minimal", compat="override") as ds:
        species = list(req.species)
        emitted = [v for v in ds.data_vars if ds[v].dims == ("time", "y", "x")]
        unknown = [s for s in species if s not in emitted]
        if unknown or not species:
            raise SubsetError(400, f"species must be a comma-separated list of {emitted}"
                              + (f"; unknown: {unknown}" if unknown else ""))
        # the cell bounds the coordinates name (time_bnds, x_bnds, lon_bnds …; none in files
        # of builds older than the bounds)
        bounds = [b for c in ("time", "x", "y", "lon", "lat")
                  if (b := ds[c].attrs.get("bounds")) is not None and b in ds.variables]
        sub = ds[species + ["cell_area", "crs", *bounds]].sel(time=slice(start, end))
        if req.bbox is not None:
            ys, xs, inside = bbox_cells(ds["lon"].values, ds["lat"].values, req.bbox)
            sub = sub.isel(y=ys, x=xs)
            mask = xr.DataArray(inside, dims=("y", "x"))
            for s in species:
                sub[s] = sub[s].where(mask)  # lazy: dask chunks stay one day each
        size = sub.sizes["time"] * sub.sizes["y"] * sub.sizes["x"] * len(species)
        if size > MAX_SUBSET_VALUES:
            raise SubsetError(413, f"the subset would hold {size:,} values (at most "
                              f"{MAX_SUBSET_VALUES:,}): ask for fewer species, hours or a "
                              "smaller bbox, or download the daily files")
        box = ",".join(repr(float(v)) for v in req.bbox) if req.bbox else "none"
        what = (f"build {req.build}; species {species}; {start:%Y-%m-%dT%H}..{end:%Y-%m-%dT%H} "
                f"UTC; bbox {box}")
        now = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        history = "\n".join(h for h in (ds.attrs.get("history"),
                                        f"{now} subset by tongyuan serve-files: {what}") if h)
        sub.attrs = {**ds.attrs, "history": history, "tongyuan_subset": what}
        if req.bbox is not None:
            sub.attrs["tongyuan_subset_bbox_rule"] = BBOX_RULE
        for name, var in sub.variables.items():  # netCDF's default fill of the type, declared
            src = ds.variables[name].encoding if name in ds.variables else {}
            var.encoding = {**src, "_FillValue": _default_fill(var.dtype) if name in species
                            else None}
            if name in bounds:  # xarray would give the corners a ``coordinates: lat lon``
                var.encoding["coordinates"] = None
        if size * 8 <= IN_MEMORY_BYTES:  # small: read at once (dask's per-task cost dominates)
            sub = sub.load()
        fd, tmp = tempfile.mkstemp(suffix=".nc", prefix="subset-", dir=req.tmpdir)
        os.close(fd)
        try:
            sub.to_netcdf(tmp, engine="netcdf4")
        except BaseException:
            os.unlink(tmp)
            raise
    return tmp


def _default_fill(dtype: np.dtype) -> float:
    import netCDF4

    return netCDF4.default_fillvals[np.dtype(dtype).str[1:]]
