"""Open a published build directory: :func:`open_build` → :class:`BuildData`.

This is the project's one way to read a published build (``OUT/<build-id>`` or ``OUT/latest``)
back: its manifest (:class:`~pipeline.publish.Manifest`), ``annual.nc`` (annual grid, temporal
factors, grid) and ``ledger.csv``, with the sha256 of every file read checked against the
manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyproj
import xarray as xr

import pipeline.cube as cube
from grids.grid import Grid
from pipeline.publish import Manifest, has_manifest, local_record, read_manifest
from sources.errors import ConfigError
from sources.files import sha256_file


@dataclass
class BuildData:
    """What the report reads from one build directory.

    Attributes
    ----------
    path : resolved build directory
    manifest : the build's manifest
    attrs : global attributes of ``annual.nc`` (build id, config hash, code version, inputs)
    annual : kg/yr per cell, dims (sector, species, y, x), loaded in memory (read lazily,
        dask, above :data:`pipeline.cube.DENSE_ANNUAL_BYTES`)
    factors : fraction of each sector's annual total per UTC hour [1], dims (sector, time)
    grid : the grid, rebuilt from the coordinates and ``crs_wkt`` of ``annual.nc``
    lon, lat : cell-centre longitude and latitude [degrees], each (ny, nx)
    ledger : ``ledger.csv`` (kg), index (sector, species)
    sha_mismatch, sha_checked : files read whose sha256 differs from / was compared with the
        manifest
    """

    path: Path
    manifest: Manifest
    attrs: dict[str, Any]
    annual: xr.DataArray
    factors: xr.DataArray
    grid: Grid
    lon: np.ndarray
    lat: np.ndarray
    ledger: pd.DataFrame
    sha_mismatch: list[str] = field(default_factory=list)
    sha_checked: list[str] = field(default_factory=list)
    _totals: np.ndarray | None = field(default=None, init=False, repr=False)
    _by_sector: xr.DataArray | None = field(default=None, init=False, repr=False)

    @property
    def build_id(self) -> str:
        return self.manifest.build_id

    @property
    def year(self) -> int:
        return self.manifest.year

    @property
    def period(self) -> list[str] | None:
        """``[start, end]`` of a period build, None for a whole year."""
        return list(self.manifest.period) if self.manifest.period else None

    @property
    def config_hash(self) -> str | None:
        return self.manifest.config_hash

    @property
    def config(self) -> str | None:
        """Path of the build's configuration file."""
        return self.manifest.config

    @property
    def inputs(self) -> dict[str, str | None]:
        """sha256 per input name."""
        return self.manifest.inputs

    @property
    def boundaries(self) -> str | None:
        """The district boundaries file of the build's configuration: the manifest records it
        relative to the configuration, whose folder the server keeps in its local record
        (:func:`pipeline.publish.local_record`)."""
        recorded = self.manifest.boundaries
        if not recorded or Path(recorded).is_absolute():
            return recorded
        folder = local_record(self.path).get("config_dir")
        return str(Path(folder) / recorded) if folder else recorded

    @property
    def timezone(self) -> str:
        """Time zone of the build's temporal profiles (``profile_timezone`` of the factors in
        ``annual.nc``); ``"UTC"`` when the build does not record it."""
        return str(self.factors.attrs.get("profile_timezone") or "UTC")

    @property
    def timezone_recorded(self) -> bool:
        return bool(self.factors.attrs.get("profile_timezone"))

    @property
    def species(self) -> list[str]:
        return [str(s) for s in self.annual["species"].values]

    @property
    def sectors(self) -> list[str]:
        return [str(s) for s in self.annual["sector"].values]

    def totals_t(self) -> np.ndarray:
        """Annual t/yr per cell summed over sectors, (species, ny, nx), read-only."""
        if self._totals is None:
            self._sum_annual()
        return self._totals

    def sector_species_kg(self) -> xr.DataArray:
        """Annual kg/yr per (sector, species), summed over the grid."""
        if self._by_sector is None:
            self._sum_annual()
        return self._by_sector

    def _sum_annual(self) -> None:
        """Both sums of the annual grid, computed once. A lazy grid (a 100 m city:
        17 × 15 chunks of 14 MB in ``annual.nc``) is read once, a chunk at a time, for both:
        not decompressed once per sum, nor a dask reduction's several chunks at once."""
        a = self.annual
        if isinstance(a.data, np.ndarray):
            by, tot = a.sum(dim=("y", "x")), a.sum("sector").to_numpy()
        else:
            tot = np.zeros((a.sizes["species"], a.sizes["y"], a.sizes["x"]))
            sums = np.zeros((a.sizes["sector"], a.sizes["species"]))
            for k in range(a.sizes["species"]):
                for i in range(a.sizes["sector"]):
                    block = a[i, k].to_numpy()
                    sums[i, k] = block.sum()
                    tot[k] += block
            by = xr.DataArray(sums, dims=("sector", "species"),
                              coords={"sector": a["sector"], "species": a["species"]},
                              name=a.name, attrs=a.attrs)
        self._by_sector = by
        self._totals = tot / 1e3
        self._totals.flags.writeable = False

    def verify(self, relpath: str) -> None:
        """Compare the sha256 of ``relpath`` with the manifest (records mismatches)."""
        entry = self.manifest.files.get(relpath)
        if entry is None:
            return
        self.sha_checked.append(relpath)
        if sha256_file(self.path / relpath) != entry.sha256:
            self.sha_mismatch.append(relpath)

    def read_csv(self, name: str, **kw: Any) -> pd.DataFrame | None:
        """``pandas.read_csv`` of the build's file ``name`` (checked by :meth:`verify`), or None
        when the build has no such file."""
        path = self.path / name
        if not path.exists():
            return None
        self.verify(name)
        return pd.read_csv(path, **kw)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ConfigError(f"{path.parent}: not a complete Tongyuan build directory; {what} "
                          f"{path.name} is missing")
    return path


def open_build(build_dir: str | Path) -> BuildData:
    """Open a published build: its manifest, ``annual.nc`` and ``ledger.csv``.

    Parameters
    ----------
    build_dir : build directory (``OUT/<build-id>`` or the ``OUT/latest`` link)

    Returns
    -------
    BuildData
        Annual grid in kg/yr per cell, temporal factors, grid, ledger in kg; the sha256 of
        ``annual.nc`` and ``ledger.csv`` compared with the manifest.

    Raises
    ------
    ConfigError
        When the directory or one of the three files is missing.

    Examples
    --------
    >>> data = open_build("out/latest")  # doctest: +SKIP
    >>> data.annual.sel(species="CO2").sum().item() / 1e3  # t/yr  # doctest: +SKIP
    """
    path = Path(build_dir).resolve()
    if not path.is_dir():
        raise ConfigError(f"{build_dir}: build directory not found")
    if not has_manifest(path):
        raise ConfigError(f"{path}: not a complete Tongyuan build directory; its manifest is "
                          "missing")
    manifest = read_manifest(path)
    with xr.open_dataset(_require(path / "annual.nc", "annual grid")) as ds:
        # a large grid (a 100 m city) is read lazily, a sector and species at a time (the
        # file's chunks), as the build held it
        lazy = ds["annual_emissions"].nbytes > cube.DENSE_ANNUAL_BYTES
        annual = None if lazy else ds["annual_emissions"].load()
        factors = ds["temporal_factor"].load()
        attrs = dict(ds.attrs)
        wkt = ds["crs"].attrs.get("crs_wkt") or ds["crs"].attrs.get("spatial_ref")
        lon = ds["lon"].to_numpy()
        lat = ds["lat"].to_numpy()
        x = ds["x"].to_numpy()
        y = ds["y"].to_numpy()
    if annual is None:
        annual = xr.open_dataset(path / "annual.nc", chunks={})["annual_emissions"]
    # lon/lat (2-D, in .lon/.lat) and the scalar ``year`` of the annual totals
    annual = annual.drop_vars([c for c in ("lon", "lat", "year") if c in annual.coords])
    factors = factors.drop_vars([c for c in ("year",) if c in factors.coords])
    dx = float(x[1] - x[0]) if x.size > 1 else float(y[1] - y[0]) if y.size > 1 else 1000.0
    dy = float(y[1] - y[0]) if y.size > 1 else dx
    grid = Grid(crs=pyproj.CRS.from_wkt(wkt), x0=float(x[0]) - dx / 2, y0=float(y[0]) - dy / 2,
                dx=dx, dy=dy, nx=x.size, ny=y.size, name=str(attrs.get("tongyuan_grid", "grid")))
    ledger = pd.read_csv(_require(path / "ledger.csv", "ledger")).set_index(["sector", "species"])
    data = BuildData(path=path, manifest=manifest, attrs=attrs, annual=annual, factors=factors,
                     grid=grid, lon=lon, lat=lat, ledger=ledger)
    for rel in ("annual.nc", "ledger.csv"):
        data.verify(rel)
    return data
