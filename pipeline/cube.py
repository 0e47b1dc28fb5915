"""The annual grid and the lazy hourly cube.

``annual[sector, species, y, x]`` (kg/yr) is the sparse product ``A @ E`` per sector. The hourly
cube is ``flux[species](time, y, x) = Σ_sector factor[sector, time] · annual[sector, species] /
(cell_area · seconds per hour)`` in kg m-2 s-1, built as a dask-backed Dataset chunked one day at a
time and never computed whole.
"""

from __future__ import annotations

import uuid

import dask.array as da
import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr
from dask.base import is_dask_collection

from grids.grid import Grid
from sources.species import SpeciesRegistry
from sources.units import ureg

SECONDS_PER_HOUR = float(ureg("1 hour").to("s").magnitude)


#: an annual grid whose dense float64 array would take more than this many bytes is not held
#: whole (:func:`annual_grid` returns it lazy, one dask chunk per sector and species); a module
#: attribute so that a test can send a small grid down the same path
DENSE_ANNUAL_BYTES = 512 * 2**20


class SparseAnnual:
    """The annual grid ``(sector, species, y, x)`` [kg/yr per cell] as an array-like that
    computes the blocks asked for from the allocation matrix: block ``[i, k]`` is
    ``A[:, cols of sector i] @ E[cols, k]``, the arithmetic of the dense path, so the values
    are the same bits. Holds the matrix's columns per sector (CSC, as much memory as the
    matrix) and the emissions, never the grid; for :func:`dask.array.from_array` (basic
    indexing)."""

    def __init__(self, matrix: sp.spmatrix, e: np.ndarray, sectors: np.ndarray,
                 sector_ids: list[str], ny: int, nx: int) -> None:
        matrix = sp.csc_matrix(matrix)  # column slices per sector: cheap on CSC
        cols = [np.flatnonzero(sectors == s) for s in sector_ids]
        self.blocks = [matrix[:, c] if c.size else None for c in cols]
        self.e = [e[c] for c in cols]
        self.shape = (len(sector_ids), e.shape[1], ny, nx)
        self.dtype, self.ndim = np.dtype("float64"), 4

    def block(self, i: int, k: int) -> np.ndarray:
        """Sector ``i``, species ``k``: (ny, nx) kg/yr."""
        if self.blocks[i] is None:
            return np.zeros(self.shape[2:])
        return np.asarray(self.blocks[i] @ self.e[i][:, k]).reshape(self.shape[2:])

    def __getitem__(self, key: tuple) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (4 - len(key))
        picked = [np.arange(n)[k] for n, k in zip(self.shape[:2], key[:2])]
        rows, species = (np.atleast_1d(p) for p in picked)
        out = np.empty((rows.size, species.size, *self.shape[2:]))
        for a, i in enumerate(rows):  # each block copied once, into its place
            for b, k in enumerate(species):
                out[a, b] = self.block(i, k)
        out = out[(slice(None), slice(None), *key[2:])]
        drop = tuple(a for a, p in enumerate(picked) if np.ndim(p) == 0)
        return out.squeeze(axis=drop) if drop else out


def annual_grid(matrix: sp.csr_matrix, emissions: pd.DataFrame, sectors: np.ndarray,
                grid: Grid, species: list[str], sector_ids: list[str]) -> xr.DataArray:
    """(sector, species, y, x) kg/yr from the allocation matrix and the emissions table.

    ``sectors`` gives the sector of each source (column of ``matrix``, row of ``emissions``).
    Up to :data:`DENSE_ANNUAL_BYTES` the grid is a numpy array; above (a 100 m city grid), a
    dask array with one chunk per sector and species computed from the matrix when asked for
    (:class:`SparseAnnual`, the same values): reductions, selections and ``annual.nc`` go chunk
    by chunk, and a day writer receives the matrix, not the grid.
    """
    e = emissions[species].to_numpy()
    coords = {"sector": sector_ids, "species": species, "y": grid.y, "x": grid.x}
    attrs = {"units": "kg year-1"}
    if len(sector_ids) * len(species) * grid.size * 8 > DENSE_ANNUAL_BYTES:
        lazy = SparseAnnual(matrix, e, sectors, sector_ids, grid.ny, grid.nx)
        data = da.from_array(lazy, chunks=(1, 1, grid.ny, grid.nx), asarray=False,
                             name=f"annual-{uuid.uuid4().hex}", meta=np.empty((0, 0, 0, 0)))
        return xr.DataArray(data, dims=("sector", "species", "y", "x"), coords=coords,
                            name="annual_emissions", attrs=attrs)
    values = np.zeros((len(sector_ids), len(species), grid.ny, grid.nx))
    matrix = sp.csc_matrix(matrix)  # column slices per sector: cheap on CSC, a scan on CSR
    for i, s in enumerate(sector_ids):
        cols = np.flatnonzero(sectors == s)
        if cols.size:
            values[i] = np.asarray(matrix[:, cols] @ e[cols]).T.reshape(len(species), grid.ny,
                                                                          grid.nx)
    return xr.DataArray(values, dims=("sector", "species", "y", "x"), coords=coords,
                        name="annual_emissions", attrs=attrs)


def is_lazy(annual: xr.DataArray) -> bool:
    """Whether ``annual`` is the chunked grid of a large domain (not held whole)."""
    return is_dask_collection(annual.data)


def stack_corrections(cems, species: str, divisor: np.ndarray
                      ) -> tuple[np.ndarray, sp.csr_array] | tuple[None, None]:
    """The measured stacks' corrections of ``species`` [kg per hour] (pairs × hours of
    ``cems.correction``) and the sparse map of each pair to its cell, divided by ``divisor``
    (cell area × seconds per hour): ``correction[:, hours].T @ to_cells`` is the flux to add.
    None, None when no stack of the grid measures ``species`` (or no ``cems``).

    One value per stack, not a grid per stack: a dense map was 14 MB a stack at 100 m, GBs for
    a city's hundreds of measured stacks. Several stacks in one cell add up there."""
    if cems is None:
        return None, None
    pairs = np.array([i for i, x in enumerate(cems.species) if x == species and cems.cells[i] >= 0],
                     dtype=np.int64)
    if not pairs.size:
        return None, None
    cells = np.asarray(cems.cells)[pairs]
    to_cells = sp.csr_array((1.0 / divisor[cells], (np.arange(pairs.size), cells)),
                            shape=(pairs.size, divisor.size))
    return cems.correction[pairs], to_cells


def hourly_cube(annual: xr.DataArray, factors: xr.DataArray, grid: Grid,
                registry: SpeciesRegistry, cems=None, hours_per_chunk: int = 24) -> xr.Dataset:
    """Lazy (dask) hourly fluxes for the hours of ``factors``, in chunks of
    ``hours_per_chunk`` hours (24: one UTC day).

    ``cems`` (:class:`pipeline.cems.Cems`) adds, in each measured stack's cell, the difference
    between its measured/gap-filled series and its profiled one (zero over the year); its
    ``correction`` has one column per hour of ``factors``.
    """
    sectors = list(annual["sector"].values)
    f = factors.sel(sector=sectors).transpose("sector", "time")
    n = hours_per_chunk
    f_dask = da.from_array(f.to_numpy(), chunks=(len(sectors), n))
    a = annual.to_numpy()
    area = grid.cell_area_m2
    data_vars = {}
    for k, s in enumerate(annual["species"].values):
        a_s = da.from_array(a[:, k].reshape(len(sectors), -1) / (area.ravel() * SECONDS_PER_HOUR),
                            chunks=-1)
        flux = da.tensordot(f_dask, a_s, axes=([0], [0]))
        corr, to_cells = stack_corrections(cems, str(s), area.ravel() * SECONDS_PER_HOUR)
        if corr is not None:
            corr = da.from_array(corr.T, chunks=(n, -1))
            flux = flux + corr.map_blocks(lambda c, m=to_cells: c @ m, dtype=np.float64,
                                          chunks=(corr.chunks[0], (grid.size,)),
                                          meta=np.empty((0, 0)))
        flux = flux.reshape(f.sizes["time"], grid.ny, grid.nx)
        flux = flux.rechunk((n, grid.ny, grid.nx))
        data_vars[str(s)] = (("time", "y", "x"), flux, _flux_attrs(registry, str(s)))
    return xr.Dataset(data_vars, coords={"time": factors["time"].values, "y": grid.y, "x": grid.x})


def sparse_source(annual: xr.DataArray) -> SparseAnnual | None:
    """The :class:`SparseAnnual` a lazy annual grid (:func:`annual_grid`) computes its chunks
    from, to call directly: through dask each chunk costs about 10 ms of graph handling, more
    than its sparse product (2.4 s of a 100 m day's 30 s in one worker, 255 chunks). None for
    another dask array (a selection of the grid, a grid read from a file)."""
    found = [v for v in annual.data.dask.values() if isinstance(v, SparseAnnual)]
    return found[0] if len(found) == 1 and found[0].shape == annual.shape else None


class _SpeciesRows:
    """Species ``k`` of a lazy annual grid ``a`` (its :class:`SparseAnnual`, or a dask array
    sector × species × y × x) as rows ``(sector, cell)`` for the sectors ``sectors`` (indices
    into ``a``) divided by ``area`` [kg m-2 s-1 per unit factor], computed in this process when
    first asked for and kept in ``slot``, which holds one species at a time (the writers go
    species by species)."""

    def __init__(self, a: SparseAnnual | da.Array, sectors: np.ndarray, k: int,
                 area: np.ndarray, slot: dict[int, np.ndarray]) -> None:
        self.a, self.sectors, self.k, self.area, self.slot = a, sectors, k, area, slot

    def _block(self, i: int) -> np.ndarray:
        if isinstance(self.a, SparseAnnual):
            return self.a.block(i, self.k).ravel()
        return self.a[i, self.k].compute(scheduler="synchronous").ravel()

    def rows(self) -> np.ndarray:
        if self.k not in self.slot:
            # the previous species' array is overwritten (never two held at once; its pages
            # are in memory already: a new 0.24 GB array at 100 m is 60 000 page faults)
            shape = (self.sectors.size, self.area.size)
            got = next(iter(self.slot.values()), None)
            self.slot.clear()
            if got is None or got.shape != shape:
                got = None
                got = np.empty(shape)
            # sector by sector into one array (not a concatenation of them all: one copy)
            for j, i in enumerate(self.sectors):
                got[j] = self._block(int(i))
            got /= self.area  # in place: the same quotient, one copy fewer
            self.slot[self.k] = got
        return self.slot[self.k]


class _DayFlux:
    """One species' hourly flux over some hours [kg m-2 s-1], computed with numpy for the
    hours asked for: ``flux[h] = factors[:, h] · annual / (cell area · 3600)`` plus the measured
    stacks' correction. An array-like for :func:`dask.array.from_array` (basic indexing)."""

    def __init__(self, f: np.ndarray, a_s: np.ndarray | _SpeciesRows, corr: np.ndarray | None,
                 to_cells: sp.csr_array | None, shape: tuple[int, int, int]) -> None:
        self.f, self.a_s, self.corr, self.to_cells = f, a_s, corr, to_cells
        self.shape, self.dtype, self.ndim = shape, np.dtype("float64"), 3

    def __getitem__(self, key: tuple) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        hours = np.arange(self.shape[0])[key[0]] if key else np.arange(self.shape[0])
        a_s = self.a_s.rows() if isinstance(self.a_s, _SpeciesRows) else self.a_s
        flux = np.atleast_2d(self.f[:, hours].T @ a_s)
        if self.corr is not None:
            flux = flux + np.atleast_2d(self.corr[:, hours].T @ self.to_cells)
        out = flux.reshape(-1, *self.shape[1:])
        if np.ndim(hours) == 0:
            out = out[0]
        rest = key[1:]
        return out[(slice(None),) * (out.ndim - 2) + rest] if rest else out


def day_cube(annual: xr.DataArray, factors: xr.DataArray, grid: Grid,
             registry: SpeciesRegistry, cems=None, hours_per_chunk: int = 6) -> xr.Dataset:
    """The fluxes of the hours of ``factors`` (one UTC day), lazy, in chunks of
    ``hours_per_chunk`` hours: the same values as :func:`hourly_cube`, computed with numpy for
    the hours asked for (a writer holds a few hours of one species, whatever the grid size)."""
    sectors = list(annual["sector"].values)
    f = factors.sel(sector=sectors).transpose("sector", "time").to_numpy()
    # a large grid (dask, :func:`annual_grid`) is computed per species when its hours are
    # asked for, one species held at a time
    large = is_lazy(annual)
    a = annual.to_numpy() if not large else sparse_source(annual)
    a = annual.data if a is None else a
    # sectors without emissions in these hours add exactly 0 (a monthly regional sector outside
    # its month): left out of the product
    active = np.flatnonzero(f.any(axis=1))
    if active.size < len(sectors):
        f, sectors = f[active], [sectors[i] for i in active]
        if not large:
            a = a[active]
    area = grid.cell_area_m2.ravel() * SECONDS_PER_HOUR
    slot: dict[int, np.ndarray] = {}  # the one species a lazy grid holds
    shape = (f.shape[1], grid.ny, grid.nx)
    data_vars = {}
    for k, s in enumerate(annual["species"].values):
        corr, to_cells = stack_corrections(cems, str(s), area)
        a_s = (_SpeciesRows(a, active, k, area, slot) if large
               else a[:, k].reshape(len(sectors), -1) / area)
        flux = _DayFlux(f, a_s, corr, to_cells, shape)
        lazy = da.from_array(flux, chunks=(hours_per_chunk, grid.ny, grid.nx), asarray=False,
                             name=f"flux-{s}-{id(flux):x}", meta=np.empty((0, 0, 0)))
        data_vars[str(s)] = (("time", "y", "x"), lazy, _flux_attrs(registry, str(s)))
    return xr.Dataset(data_vars, coords={"time": factors["time"].values, "y": grid.y, "x": grid.x})


def _flux_attrs(registry: SpeciesRegistry, species: str) -> dict[str, str]:
    meta = registry.species[species]
    attrs = {"long_name": f"emission flux of {meta.long_name}", "units": "kg m-2 s-1",
             "grid_mapping": "crs", "coordinates": "lat lon", "cell_measures": "area: cell_area",
             # the mean rate over the hour the time coordinate starts (its bounds, time_bnds)
             "cell_methods": "time: mean"}
    if meta.cf_standard_name:
        attrs["standard_name"] = meta.cf_standard_name
    if meta.note:
        attrs["comment"] = meta.note
    return attrs
