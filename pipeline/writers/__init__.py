"""The output formats of a build: one writer module per format, listed once in :data:`FORMATS`.

Every writer module exposes the same two functions:

``write(day: xarray.Dataset, path, meta: WriteMeta) -> None``
    Write one UTC day to the file ``path`` (atomically: a temporary name, renamed when complete).
    ``day`` holds one data variable per species, each with a ``units`` attribute that pint
    (:data:`sources.units.ureg`) reads; the writer converts them to its format's units itself:

    * ``cf`` (:mod:`~pipeline.writers.netcdf_cf`): the 24 computed hours of the hourly cube,
      dims ``(time, y, x)``, fluxes per area (written in kg m-2 s-1);
    * ``cmaq`` (:mod:`~pipeline.writers.cmaq`) and ``wrfchem`` (:mod:`~pipeline.writers.wrfchem`):
      model species, dims ``(time, z, y, x)``, amounts per second per grid cell (``mol/s`` for
      gases, ``g/s`` for aerosols), 25 hourly steps from 00 UTC (the 25th, 00 UTC of the next day,
      is CMAQ's; WRF-Chem writes the first 24). The variables are lazy (dask): a writer
      materialises one species at a time, so a day's species are never all in memory. Attributes
      ``long_name``, ``var_desc`` (I/O API) and ``description`` (WRF) describe them.

    ``meta`` (:class:`WriteMeta`) carries what is not per day: grid, global attributes, encoding,
    mechanism, layer heights.

``check_grid(grid)``
    Raise :class:`~sources.errors.ConfigError` at the start of a build if the format cannot
    describe the grid.

The configuration, the CLI, the download service and the model-ready step read the list of
formats, their folders and file names from here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the configuration reads this registry: no pyproj, shapely or netCDF here
    from grids.grid import Grid


@dataclass(frozen=True)
class WriteMeta:
    """What a writer needs besides the day's fields; the same for every day of a build.

    Each writer reads the fields it needs and ignores the others.
    """

    #: the horizontal grid (CMAQ and WRF-Chem: projection header, cell areas [m2] for the
    #: per-area WRF-Chem units, XLONG/XLAT); None for a CF day whose :attr:`static` is given
    grid: Grid | None = None
    #: global attributes of the build (provenance: ``tongyuan_build_id``, ``history`` ...);
    #: CF writes them all, CMAQ takes EXEC_ID/HISTORY and WRF-Chem ``tongyuan_build_id`` from them
    attrs: Mapping[str, Any] = field(default_factory=dict)
    #: CF: the year whose 1 January 00 UTC the time axis counts hours from (None: the day's year)
    year: int | None = None
    #: CF: numpy dtype of the species variables (``float64`` or ``float32``); the model formats
    #: are always float32 (REAL)
    dtype: str = "float64"
    #: CF: zlib (deflate) level of the species variables, 0 (none) to 9
    complevel: int = 1
    #: CF: byte-shuffle filter before deflate
    shuffle: bool = False
    #: CF: hours of a lazy (dask) species computed and written at a time: a writer holds
    #: this many hours of one species, whatever the grid size
    slab_hours: int = 2
    #: CF: called with each slab of a lazy species as it is written (species name, its hours at
    #: the file's dtype, in order), e.g. to hash and measure the day in the same pass; None:
    #: not called
    on_slab: Callable[[str, Any], None] | None = None
    #: CF: coordinates and ancillary variables of every file, name → (dims, values, attrs), as
    #: :func:`pipeline.writers.netcdf_cf.static_coords` computes them once per build (None:
    #: computed from :attr:`grid`)
    static: Mapping[str, Any] | None = None
    #: CF: a NetCDF file holding only those static variables
    #: (:func:`pipeline.writers.netcdf_cf.write_static`): each day file starts as a copy of it
    #: and the day is appended, so the writer needs neither :attr:`static` nor :attr:`grid`
    #: (0.16 GB a worker on a 100 m city grid) and does not deflate the cell corners again
    #: each day; None: the static variables are written with the day
    template: str | None = None
    #: chemical mechanism of the model species (CMAQ FILEDESC, WRF-Chem TITLE)
    mechanism: str = ""
    #: model layer interfaces [m above ground], ascending from 0; a day with ``n`` layers (its
    #: ``z`` size) is written with the first ``n + 1`` (CMAQ VGLVLS, VGTOP)
    layers_m: tuple[float, ...] = ()
    #: CMAQ GDNAM, the grid's name in GRIDDESC (None: the grid's name) [≤ 16 characters]
    gdnam: str | None = None
    #: CMAQ and WRF-Chem: called once per species, as it is written, with the species name and
    #: the amount its float32 array carries over the day's 24 hours [mol or g] (how the
    #: model-ready step checks the files against the inventory); None: not reported
    on_written: Callable[[str, float], None] | None = None
    #: CMAQ: as :attr:`on_written`, with the amount before the cast to float32 (how the sum of
    #: the CMAQ streams is checked against the merged file to 1e-9); None: not reported
    on_written_exact: Callable[[str, float], None] | None = None
    #: WRF-Chem: the ``emiss_opt`` whose Registry package the file carries, every variable of
    #: it (zero where the day has no species) and nothing else; None: the day's species only
    emiss_opt: int | None = None
    #: WRF-Chem: ``kemit``, the file's ``emissions_zdim`` (levels above the day's are zero);
    #: None: the day's ``z`` size
    kemit: int | None = None
    #: WRF-Chem: the WRF domain the file is for (:class:`grids.grid.WrfDomain`, from the run's
    #: wrfinput/geo_em): XLAT/XLONG, map factors (fluxes per physical cell area) and the global
    #: attributes copied from it; None: derived from :attr:`grid`
    wrf_domain: Any = None
    #: CMAQ: the vertical grid header ``(VGTYP, VGTOP, VGLVLS)`` of the model's layers (MCIP's
    #: METCRO3D, or 7/ptop/sigma for sigma levels); a day with ``n`` layers carries the first
    #: ``n + 1`` VGLVLS. None: heights above ground (VGTYP 6, VGLVLS = :attr:`layers_m`)
    vertical_levels: tuple[int, float, tuple[float, ...]] | None = None


@dataclass(frozen=True)
class OutputFormat:
    """One output format: its folder in a build, its writer module and its file names."""

    name: str
    #: folder of the build the format's day files are in
    folder: str
    #: the writer module (imported when first used: the configuration reads this registry
    #: without loading netCDF libraries)
    module: str
    #: file name of one UTC day: ``str.format`` fields ``day``, ``mechanism``, ``grid``, ``domain``
    pattern: str
    #: what the files hold, for the build summary
    description: str = ""

    @property
    def writer(self) -> ModuleType:
        """The writer module (``write``, ``check_grid``)."""
        return importlib.import_module(self.module)

    def file_name(self, day: Any, *, mechanism: str = "", grid: str = "", domain: int = 1) -> str:
        """The file of UTC ``day`` (a ``pandas.Timestamp``), inside :attr:`folder`."""
        return self.pattern.format(day=day, mechanism=mechanism, grid=grid, domain=domain)


#: name → format; ``cf`` is always written, the others on request (``output.formats``)
FORMATS: dict[str, OutputFormat] = {f.name: f for f in (
    OutputFormat("cf", "hourly", "pipeline.writers.netcdf_cf", "{day:%Y%m%d}.nc"),
    OutputFormat("cmaq", "cmaq", "pipeline.writers.cmaq",
                 "emis_{mechanism}_{grid}_{day:%Y%m%d}.nc", "I/O API, moles/s and g/s per cell"),
    OutputFormat("wrfchem", "wrfchem", "pipeline.writers.wrfchem",
                 "wrfchemi_d{domain:02d}_{day:%Y-%m-%d}_00:00:00",
                 "wrfchemi_d<NN>_*, mol km-2 hr-1 and ug m-2 s-1"),
)}

#: the formats model-ready files are written in (speciated, in model layers)
MODEL_FORMATS = tuple(name for name in FORMATS if name != "cf")
