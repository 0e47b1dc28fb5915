"""The output formats of a build: one writer module per format, listed once in :data:`FORMATS`.

Every writer module exposes ``write(...)`` (one UTC day to one file) and ``check_grid(grid)``
(raise :class:`~sources.errors.ConfigError` at the start of a build if the format cannot describe
the grid). The configuration, the CLI, the download service and the model-ready step read the
list of formats, their folders and file names from here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any


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
                 "wrfchemi_d01_*, mol km-2 hr-1 and ug m-2 s-1"),
)}

#: the formats model-ready files are written in (speciated, in model layers)
MODEL_FORMATS = tuple(name for name in FORMATS if name != "cf")
