"""Build configuration: YAML → frozen, validated :class:`BuildConfig` with resolved paths.

Paths in the YAML are relative to the YAML file. ``config_hash`` covers the configuration *and*
the content of every table it names, so two builds with the same hash used the same science.
"""

from __future__ import annotations

import hashlib
import json
import os
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.wrfchem_packages import MECHANISM_OF, package
from pipeline.writers import FORMATS
from sources.errors import ConfigError
from sources.files import sha256_file
from sources.tables import FrozenModel, format_validation_error, read_yaml


class GridConfig(FrozenModel):
    crs: str = "EPSG:32651"
    x0: float = 295_000.0
    y0: float = 3_392_000.0
    dx: float = Field(1000.0, gt=0)
    dy: float = Field(1000.0, gt=0)
    nx: int = Field(130, gt=0)
    ny: int = Field(138, gt=0)
    name: str = "SH1KM"
    #: an I/O API GRIDDESC file: the grid ``name`` in it defines crs, origin, cells (CMAQ/WRF)
    griddesc: Path | None = None
    #: a WRF ``wrfinput_d0N`` or ``geo_em.d0N.nc``: its mass grid is the grid (the name is
    #: ``WRF_D0N`` unless given); the wrfchemi files then carry its attributes
    wrf: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _wrf_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("wrf") and "name" not in data:
            return {**data, "name": ""}  # Grid.from_config names it after the file's GRID_ID
        return data

    @model_validator(mode="after")
    def _one_definition(self) -> GridConfig:
        explicit = self.model_fields_set & {"crs", "x0", "y0", "dx", "dy", "nx", "ny"}
        if self.wrf is not None and (explicit or self.griddesc is not None):
            raise ValueError("give either wrf (a wrfinput/geo_em file) or "
                             f"{sorted(explicit) or 'griddesc'}, not both")
        if self.griddesc is not None:
            if explicit:
                raise ValueError(f"give either griddesc (with name) or {sorted(explicit)}, "
                                 "not both")
            if "name" not in self.model_fields_set:
                raise ValueError("griddesc needs the name of the grid in the file (name: ...)")
        return self


class TablesConfig(FrozenModel):
    species: Path
    sectors: Path
    fuels: Path
    emission_factors: Path
    control_efficiencies: Path
    temporal_profiles: Path
    #: same-source consistency checks (pipeline/checks.py); optional
    checks: Path | None = None
    #: inventory species → model (mechanism) species per sector; needed by cmaq/wrfchem formats
    speciation: Path | None = None
    #: 95 % uncertainty of activity data per data type (``uncertainty:`` assigns the types);
    #: with the uncertainty columns of the factor tables it makes ``uncertainty.csv``
    activity_uncertainty: Path | None = None


class InputConfig(FrozenModel):
    name: str
    kind: Literal["point", "line", "area"]
    path: Path
    crs: str | None = None
    layer: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    x_column: str = "lon"
    y_column: str = "lat"
    wkt_column: str = "geometry"
    #: the worksheet of an ``.xlsx`` input (default: the first)
    sheet: str | None = None

    @model_validator(mode="after")
    def _sheet_of_a_workbook(self) -> InputConfig:
        if self.sheet is not None and self.path.suffix.lower() != ".xlsx":
            raise ValueError(f"'sheet' is for .xlsx workbooks; {self.path.name} is not one")
        return self


#: the shipped plausibility bounds of activity (cited per row)
DEFAULT_ACTIVITY_BOUNDS = Path(__file__).resolve().parents[1] / "config" / "activity_bounds.csv"


class ValidationConfig(FrozenModel):
    """Limits beyond which an input is refused as implausible (they never change the result
    of a build that passes them, so they are not part of the config hash)."""

    #: largest credible activity of one source per sector and unit (sector,unit,max_value,
    #: reference); default: ``config/activity_bounds.csv`` of Tongyuan
    activity_bounds: Path | None = None
    #: largest share of an input's mass that may fall outside the grid before the build stops
    #: (a wrong CRS or UTM zone, or swapped lon/lat, puts most of it outside)
    max_outside_share: float = Field(0.5, ge=0, le=1)

    @property
    def bounds_path(self) -> Path | None:
        if self.activity_bounds is not None:
            return self.activity_bounds
        return DEFAULT_ACTIVITY_BOUNDS if DEFAULT_ACTIVITY_BOUNDS.exists() else None


def _known_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}; e.g. 'Asia/Shanghai'") from exc
    return value


#: an IANA time zone name
TimeZone = Annotated[str, AfterValidator(_known_zone)]


class TemporalConfig(FrozenModel):
    timezone: TimeZone = "Asia/Shanghai"
    holidays: bool = True


def _known_format(name: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; formats are {list(FORMATS)}")
    return name


FormatName = Annotated[str, AfterValidator(_known_format)]


class WrfChemConfig(FrozenModel):
    """How the ``wrfchem`` format is read by WRF-Chem (``output.wrfchem``)."""

    #: the WRF-Chem ``emiss_opt`` whose Registry package the files carry exactly (3 RADM2/
    #: MADE-SORGAM, 4 CBMZ/MOSAIC, 8 MOZCART, 10 MOZART/MOSAIC, 14/15 CB05, 16/17 WRF-GHG)
    emiss_opt: int = 3
    #: mechanism of the speciation table (default: the one made for ``emiss_opt``,
    #: :data:`pipeline.wrfchem_packages.MECHANISM_OF`); refused when the package does not read
    #: all its species
    mechanism: str | None = None
    #: WRF's ``kemit``: the files' ``emissions_zdim`` (levels above the highest emitting layer
    #: are zero); default: the number of configured model layers
    kemit: int | None = Field(None, ge=1)
    #: the WRF domain the files are for (``wrfchemi_d<NN>_...``; default: the GRID_ID of the
    #: domain file, else 1)
    domain: int = Field(1, ge=1, le=99)
    #: the run's ``wrfinput_d<NN>`` or ``geo_em.d<NN>.nc`` (default: ``grid.wrf``): the files
    #: are refused unless the grid is its mass grid; they carry its projection, MMINLU/IS*
    #: and nest attributes and fluxes per physical cell area (MAPFAC_M)
    domain_file: Path | None = None

    @field_validator("emiss_opt")
    @classmethod
    def _supported(cls, value: int) -> int:
        package(value)  # ValueError naming the supported ones
        return value

    @property
    def speciation_mechanism(self) -> str:
        return self.mechanism or MECHANISM_OF[self.emiss_opt]

    def kemit_for(self, n_layers: int) -> int:
        """``kemit`` for a build with ``n_layers`` model layers."""
        return self.kemit if self.kemit is not None else max(n_layers, 1)


#: the CMAQ namelists (``<version>:<mechanism>`` of config/cmaq_desid_surrogates.csv) the model-read
#: ledger assumes for a shipped CMAQ mechanism when ``output.cmaq_desid`` is not given
CMAQ_DESID_OF = {"cb6r3_ae6": "5.3.3:cb6r3_ae6_aq", "cb6r5_ae7": "5.4:cb6r5_ae7_aq"}
#: CMAQ stream labels whose PCVOC the default DESID namelists overwrite with 0 (fire streams,
#: config/cmaq_desid_rules.csv): a stream of ours must not take one of these names
CMAQ_FIRE_LABELS = ("PT_FIRES", "PT_RXFIRES", "PT_WILDFIRES", "PT_AGFIRES", "PT_OTHFIRES",
                    "PT_FIRES_MXCA", "GR_RES_FIRES")


class CmaqConfig(FrozenModel):
    """How the ``cmaq`` format is split and read by CMAQ (``output.cmaq``)."""

    #: per-sector-group streams, stream label → sectors: each stream is a set of I/O API day
    #: files of its own (``cmaq/streams/``) for GR_EMIS_### / GR_EMIS_LAB_###, beside the
    #: merged file; sectors no stream lists go to a stream ``OTHER``. Regional sectors
    #: (``<sector>@<inventory>``) follow their sector. Empty: the merged file only
    streams: dict[str, list[str]] = Field(default_factory=dict)
    #: emission surrogates the user's own DESID rules emit beyond the default namelists (e.g.
    #: ``[CO2]`` with the CO2 tracer of cmaq/README.txt): the model-read ledger counts them read
    extra_rules: list[str] = Field(default_factory=list)
    #: CMAQ runs with bidirectional NH3 (``CTM_ABFLUX Y``): CMAQ subtracts NH3_FERT from NH3 and
    #: computes fertiliser NH3 itself, so the ledger counts fertiliser NH3 as not read
    abflux: bool = False

    @field_validator("streams")
    @classmethod
    def _labels(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: dict[str, str] = {}
        for label, sectors in value.items():
            if not label or len(label) > 16 or not label.replace("_", "").isalnum():
                raise ValueError(f"stream label {label!r}: at most 16 letters, digits or '_' "
                                 "(CMAQ GR_EMIS_LAB_###)")
            if label.upper() in CMAQ_FIRE_LABELS:
                raise ValueError(f"stream label {label!r} is a fire stream label of CMAQ's "
                                 "default DESID namelists, which set PCVOC to 0 for it; choose "
                                 "another name")
            if not sectors:
                raise ValueError(f"stream {label!r} lists no sectors")
            for sector in sectors:
                if sector in seen:
                    raise ValueError(f"sector {sector!r} is in streams {seen[sector]!r} and "
                                     f"{label!r}: each sector in one stream")
                seen[sector] = label
        return value


class OutputConfig(FrozenModel):
    dir: Path = Path("out")
    dtype: Literal["float64", "float32"] = "float64"
    complevel: int = Field(1, ge=0, le=9)
    shuffle: bool = False
    #: write only these UTC days (inclusive), e.g. ["2024-01-15", "2024-01-21"]; default: the year
    period: tuple[str, str] | None = None
    #: file formats (``pipeline.writers.FORMATS``), each in its own folder of the build: cf
    #: (hourly/, always), cmaq (cmaq/), wrfchem (wrfchem/)
    formats: list[FormatName] = Field(default_factory=lambda: ["cf"])
    #: chemical mechanism of the CMAQ files (a ``mechanism`` of the speciation table); the
    #: WRF-Chem files take theirs from ``wrfchem``
    mechanism: str = "cb6r3_ae6"
    #: WRF-Chem settings (emiss_opt, kemit, domain)
    wrfchem: WrfChemConfig = Field(default_factory=WrfChemConfig)
    #: what the build does when a model would not read mass its file carries (the
    #: ``<format>_read_fraction`` columns of ledger.csv below 1 − 1e-6): ``warn`` (print it) or
    #: ``fail`` (stop the build)
    model_read: Literal["fail", "warn"] = "warn"
    #: the CMAQ namelists the model-read ledger assumes, ``<version>:<mechanism>`` of
    #: config/cmaq_desid_surrogates.csv (5.3.3, 5.4 or 5.5; cb6r3_ae6_aq, cb6r3_ae7_aq,
    #: cb6r5_ae7_aq); default: the one of ``mechanism`` (:data:`CMAQ_DESID_OF`), else 5.3.3's
    #: cb6r3_ae6_aq
    cmaq_desid: str | None = None
    #: CMAQ streams, extra DESID rules, bidirectional NH3
    cmaq: CmaqConfig = Field(default_factory=CmaqConfig)
    #: where the day files are written, each day a task: ``auto`` (worker processes on every
    #: core from 8 days on, else in this process), ``processes``, ``synchronous``, or the
    #: address of a dask.distributed scheduler (``tcp://host:8786``). The files are the same.
    scheduler: str = "auto"
    #: published builds kept in the output directory (older ones are pruned after each
    #: publish; builds a ``latest*`` pointer refers to are always kept); null keeps all
    keep_builds: int | None = Field(10, ge=1)

    @property
    def cmaq_namelists(self) -> str:
        """``output.cmaq_desid``, or the namelists of the shipped ``mechanism``."""
        if self.cmaq_desid is not None:
            return self.cmaq_desid
        return CMAQ_DESID_OF.get(self.mechanism, "5.3.3:cb6r3_ae6_aq")

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: str) -> str:
        if value not in ("auto", "threads", "processes", "synchronous") and "://" not in value:
            raise ValueError(f"unknown scheduler {value!r}; use auto, processes, synchronous "
                             "or a dask.distributed address such as tcp://127.0.0.1:8786")
        return value

    @field_validator("period", mode="before")
    @classmethod
    def _dates_as_text(cls, value: Any) -> Any:
        # YAML reads an unquoted 2024-03-01 as a date
        if isinstance(value, (list, tuple)):
            return [v.isoformat() if hasattr(v, "isoformat") else v for v in value]
        return value

    @field_validator("formats")
    @classmethod
    def _cf_first(cls, value: list[str]) -> list[str]:
        return ["cf"] + [f for f in dict.fromkeys(value) if f != "cf"]


class VerticalConfig(FrozenModel):
    """Model layers and how sources are lifted into them (used by the cmaq/wrfchem formats)."""

    #: layer interfaces in metres above ground, from 0 (e.g. [0, 20, 50, 100, 200, 400, 800])
    layers_m: list[float] | None = None
    #: or sigma/eta interfaces from 1 (surface) down, with the model-top pressure
    sigma: list[float] | None = None
    ptop_pa: float = Field(5000.0, gt=0)
    #: or MCIP's METCRO3D of the CMAQ run: its layers (ZF per cell; VGTYP, VGTOP, VGLVLS
    #: written to the CMAQ files)
    metcro3d: Path | None = None
    #: or the WRF run's wrfinput_d<NN>: its η layers ((PH + PHB)/g − HGT per cell), the
    #: levels WRF-Chem adds wrfchemi level k to (the grid must be that domain's)
    wrfinput: Path | None = None
    #: Briggs plume rise for stacks with height, diameter, exit velocity and temperature
    plume_rise: Literal["briggs", "none"] = "briggs"
    #: Pasquill class for plume rise (A–F), and per sector where it differs
    stability: str = "D"
    stability_by_sector: dict[str, str] = Field(default_factory=dict)
    wind_speed_10m: float = Field(3.0, gt=0)
    ambient_temperature_k: float = Field(288.15, gt=150, lt=350)
    #: fixed layer fractions per sector for sources without plume rise (default: all in layer 1)
    sector_profiles: dict[str, list[float]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_definition(self) -> VerticalConfig:
        given = [k for k in ("layers_m", "sigma", "metcro3d", "wrfinput")
                 if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of layers_m, sigma, metcro3d or wrfinput, not {given}")
        for cls_ in [self.stability, *self.stability_by_sector.values()]:
            if cls_.upper() not in ("A", "B", "C", "D", "E", "F"):
                raise ValueError(f"unknown Pasquill stability class {cls_!r}; use A–F")
        for sector, prof in self.sector_profiles.items():
            if any(v < 0 for v in prof) or abs(sum(prof) - 1.0) > 1e-9:
                raise ValueError(f"sector_profiles.{sector}: fractions must be >= 0 and sum to "
                                 f"1 (got {prof}, sum {sum(prof)})")
        return self


class CacheConfig(FrozenModel):
    #: reuse allocation matrices whose geometries, grid and proxies did not change
    enabled: bool = True
    #: default: ``<output.dir>/.cache``
    dir: Path | None = None


class AllocationConfig(FrozenModel):
    #: where allocation matrices are computed, in chunks of sources with dask: ``threads``
    #: (default, every core of this machine), ``processes``, ``synchronous`` (one core), or the
    #: address of a dask.distributed scheduler (``tcp://host:8786``). The result is identical.
    scheduler: str = "threads"

    @field_validator("scheduler")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ("threads", "processes", "synchronous") and "://" not in value:
            raise ValueError(f"unknown scheduler {value!r}; use threads, processes, synchronous "
                             "or a dask.distributed address such as tcp://127.0.0.1:8786")
        return value


class ScheduleConfig(FrozenModel):
    """When ``tongyuan serve`` regenerates the inventory (a cron without a time zone would be
    UTC in Prefect; 02:00 Asia/Shanghai is 18:00 UTC)."""

    cron: str = "0 2 * * *"
    timezone: TimeZone = "Asia/Shanghai"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"cron {value!r} needs five fields: minute hour day month weekday")
        return value


class RegionalInventoryConfig(FrozenModel):
    """One gridded inventory (:class:`sources.gridded.GriddedSource` fields)."""

    name: str
    format: Literal["meic_asc", "meic_nc", "edgar", "cf", "geotiff"]
    path: Path
    pattern: str | None = None
    units: str | None = None
    crs: str | None = None
    year: int | None = None
    sector: str | None = None
    species: str | None = None
    variable: str | None = None


class RegionalConfig(FrozenModel):
    """A regional background (MEIC, EDGAR, any raster) regridded onto the grid and merged with
    the city's own sources (pipeline/regional.py)."""

    inventories: list[RegionalInventoryConfig] = Field(min_length=1)
    #: their sectors → ours (with split fractions) and their species → ours
    sector_mapping: Path
    species_mapping: Path
    #: polygons inside which the local inventory replaces the regional one (any vector file;
    #: default: the config's ``boundaries``); null with no boundaries: nothing is replaced
    mask: Path | None = None
    #: our sectors replaced inside the mask: ``auto`` = every sector the local inventory has
    replace: Literal["auto"] | list[str] = "auto"
    #: points per target cell side when regridding between different CRSs
    densify: int = Field(4, ge=1, le=64)


class ActivityDataType(FrozenModel):
    """The data type of an input's activity (or of one sector of it)."""

    input: str
    sector: str | None = None
    data_type: str


class UncertaintyConfig(FrozenModel):
    """Uncertainty assessment: activity data types, and Monte Carlo inside the build."""

    #: data types per input (and sector); unmatched sources take ``default_data_type``
    activity: list[ActivityDataType] = Field(default_factory=list)
    default_data_type: str = "estimated"
    #: Monte Carlo members drawn in the build (0: Approach 1 only; ``tongyuan uncertainty``
    #: runs them on a published build)
    members: int = Field(0, ge=0)
    seed: int = Field(20240101, ge=0)
    #: member grids written to ``uncertainty.nc`` (like TNO GHGco's equally plausible grids)
    member_grids: int = Field(0, ge=0)
    #: members behind the 95 % ranges of a scenario's synergy table (0: no ranges)
    synergy_members: int = Field(200, ge=0)
    #: Dask scheduler of the members: ``threads`` (shared memory) or ``synchronous``
    scheduler: Literal["threads", "synchronous"] = "threads"


class BuildConfig(FrozenModel):
    name: str
    year: int = Field(2024, ge=2004, le=2100)
    grid: GridConfig = GridConfig()
    tables: TablesConfig
    inputs: list[InputConfig]
    proxies: dict[str, Path] = Field(default_factory=dict)
    #: proxy per sector for area sources that name none (their ``proxy`` column empty or absent)
    sector_proxies: dict[str, str] = Field(default_factory=dict)
    sectors: list[str] | None = Field(None, min_length=1)
    temporal: TemporalConfig = TemporalConfig()
    output: OutputConfig = OutputConfig()
    cache: CacheConfig = CacheConfig()
    allocation: AllocationConfig = AllocationConfig()
    vertical: VerticalConfig = VerticalConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    validation: ValidationConfig = ValidationConfig()
    #: hourly measured stack emissions (CSV/Parquet: source_id, time_utc, species, value, unit)
    cems: list[Path] = Field(default_factory=list)
    boundaries: Path | None = None
    #: a regional background inventory merged with the local one (None: local only)
    regional: RegionalConfig | None = None
    uncertainty: UncertaintyConfig = UncertaintyConfig()
    config_path: Path | None = None

    @field_validator("inputs")
    @classmethod
    def _unique_names(cls, value: list[InputConfig]) -> list[InputConfig]:
        names = [i.name for i in value]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        if not value:
            raise ValueError("at least one input is needed")
        return value

    @field_validator("sectors")
    @classmethod
    def _sectors_once(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"a sector is listed twice in {value}; list each once")
        return value

    @model_validator(mode="after")
    def _uncertainty_inputs_known(self) -> BuildConfig:
        names = {i.name for i in self.inputs}
        unknown = sorted({a.input for a in self.uncertainty.activity} - names)
        if unknown:
            raise ValueError(f"uncertainty.activity names inputs {unknown} that 'inputs' does "
                             f"not define ({sorted(names)})")
        return self

    @model_validator(mode="after")
    def _sector_proxies_known(self) -> BuildConfig:
        unknown = sorted(set(self.sector_proxies.values()) - set(self.proxies))
        if unknown:
            raise ValueError(f"sector_proxies names proxies {unknown} that 'proxies' does not "
                             f"define ({sorted(self.proxies)})")
        return self

    @property
    def cache_dir(self) -> Path | None:
        """Where allocation matrices are cached (None when caching is off)."""
        if not self.cache.enabled:
            return None
        return self.cache.dir or Path(self.output.dir) / ".cache"

    def table_paths(self) -> dict[str, Path]:
        return {k: getattr(self.tables, k) for k in TablesConfig.model_fields
                if getattr(self.tables, k) is not None}

    def relative(self, path: str | Path | None) -> str | None:
        """``path`` relative to the folder of the configuration file, as published metadata
        (manifest, report) writes it: never the server's absolute path."""
        if path is None:
            return None
        if self.config_path is None or not Path(path).is_absolute():
            return str(path)
        return os.path.relpath(path, Path(self.config_path).parent)


def resolve_paths(doc: dict[str, Any], base: Path) -> dict[str, Any]:
    """A copy of a configuration document (the YAML as read) with every relative path made
    absolute against ``base``, the folder of its file: what :func:`load_config` does first, and
    what a configuration derived from another one and written elsewhere needs."""

    def res(p: Any) -> Any:
        return str((base / p).resolve()) if p is not None and not Path(p).is_absolute() else p

    out = dict(doc)
    if isinstance(out.get("tables"), dict):
        out["tables"] = {k: res(v) for k, v in out["tables"].items()}
    if isinstance(out.get("inputs"), list):
        out["inputs"] = [{**i, "path": res(i.get("path"))} if isinstance(i, dict) else i
                         for i in out["inputs"]]
    if isinstance(out.get("proxies"), dict):
        out["proxies"] = {k: res(v) for k, v in out["proxies"].items()}
    if out.get("boundaries"):
        out["boundaries"] = res(out["boundaries"])
    if isinstance(out.get("cems"), list):
        out["cems"] = [res(c) for c in out["cems"]]
    for section, key in (("grid", "griddesc"), ("grid", "wrf"), ("vertical", "metcro3d"),
                         ("vertical", "wrfinput")):
        if isinstance(out.get(section), dict) and out[section].get(key):
            out[section] = {**out[section], key: res(out[section][key])}
    wrf = out.get("output", {}).get("wrfchem") if isinstance(out.get("output"), dict) else None
    if isinstance(wrf, dict) and wrf.get("domain_file"):
        out["output"] = {**out["output"], "wrfchem": {**wrf,
                                                      "domain_file": res(wrf["domain_file"])}}
    if isinstance(out.get("cache"), dict) and out["cache"].get("dir"):
        out["cache"] = {**out["cache"], "dir": res(out["cache"]["dir"])}
    if isinstance(out.get("validation"), dict) and out["validation"].get("activity_bounds"):
        out["validation"] = {**out["validation"],
                             "activity_bounds": res(out["validation"]["activity_bounds"])}
    if isinstance(out.get("regional"), dict):
        reg = dict(out["regional"])
        for key in ("sector_mapping", "species_mapping", "mask"):
            if reg.get(key):
                reg[key] = res(reg[key])
        if isinstance(reg.get("inventories"), list):
            reg["inventories"] = [{**i, "path": res(i.get("path"))} if isinstance(i, dict)
                                  else i for i in reg["inventories"]]
        out["regional"] = reg
    if isinstance(out.get("output"), dict) and out["output"].get("dir"):
        out["output"] = {**out["output"], "dir": res(out["output"]["dir"])}
    return out


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Read and validate a build configuration.

    ``overrides`` are dotted keys (``{"year": 2023, "output.dir": "/tmp/x"}``) applied after
    reading, as the CLI does for ``--year`` and ``--out``.
    """
    path = Path(path)
    doc = read_yaml(path, "config")
    doc = resolve_paths(doc, path.parent)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = doc
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = str(Path(value).resolve()) if key == "output.dir" else value
    doc["config_path"] = str(path.resolve())
    try:
        cfg = BuildConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, "configuration", exc)) from exc
    for name, p in cfg.table_paths().items():
        if not p.exists():
            raise ConfigError(f"{path}: tables.{name} = {p} does not exist")
        if p.is_dir():
            raise ConfigError(f"{path}: tables.{name} = {p} is a directory, expected a file")
    for key, d in (("output.dir", cfg.output.dir), ("cache.dir", cfg.cache_dir)):
        if d is not None and Path(d).exists() and not Path(d).is_dir():
            raise ConfigError(f"{path}: {key} = {d} is a file, expected a directory (or a path "
                              "that does not exist yet)")
    return cfg


def config_hash(cfg: BuildConfig) -> str:
    """sha256 over the canonical config (paths made relative to the config file) and the tables."""
    base = cfg.config_path.parent if cfg.config_path else Path.cwd()
    doc = json.loads(cfg.model_dump_json(exclude={"config_path", "output", "cache",
                                                "allocation", "schedule", "validation"}))
    for spec in doc["inputs"]:  # the hash of a config without workbooks is what it was
        if spec.get("sheet") is None:
            spec.pop("sheet", None)
    if doc.get("regional") is None:  # the hash of a config without a regional background
        doc.pop("regional", None)

    def rel(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: rel(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rel(x) for x in v]
        if isinstance(v, str) and v.startswith("/"):
            return os.path.relpath(v, base)
        return v

    h = hashlib.sha256(json.dumps(rel(doc), sort_keys=True).encode())
    for _name, p in sorted(cfg.table_paths().items()):
        h.update(p.read_bytes())
    if cfg.grid.griddesc is not None and cfg.grid.griddesc.exists():  # defines the grid
        h.update(cfg.grid.griddesc.read_bytes())
    for p in (cfg.grid.wrf, cfg.vertical.metcro3d, cfg.vertical.wrfinput):  # grid, layers
        if p is not None and p.exists():
            h.update(sha256_file(p).encode())
    if cfg.regional is not None:  # the mapping tables are science like the other tables
        h.update(cfg.regional.sector_mapping.read_bytes())
        h.update(cfg.regional.species_mapping.read_bytes())
    for _name, p in sorted(cfg.proxies.items()):  # proxies shape the gridding
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()


#: keyword overrides of :func:`pipeline.build.run_build` → the config keys they set
OVERRIDES = {"out": "output.dir", "year": "year", "period": "output.period",
             "scheduler": ("allocation.scheduler", "output.scheduler"),
             "formats": "output.formats", "mechanism": "output.mechanism",
             "emiss_opt": "output.wrfchem.emiss_opt", "kemit": "output.wrfchem.kemit",
             "cmaq_streams": "output.cmaq.streams"}


def build_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The config keys (:data:`OVERRIDES`) the keyword overrides of a build set."""
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ConfigError(f"unknown build override(s) {unknown}; known: {sorted(OVERRIDES)}")
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        for target in (OVERRIDES[key] if isinstance(OVERRIDES[key], tuple)
                       else (OVERRIDES[key],)):
            out[target] = value
    if out.get("output.period") is not None:
        out["output.period"] = list(out["output.period"])
    if out.get("output.dir") is not None:
        out["output.dir"] = str(out["output.dir"])
    return out
