"""``tongyuan check``: every input and table of a configuration validated, and every problem
listed in one pass (not only the first), without building.

The tables are loaded by the build's own :func:`pipeline.steps.load_tables`, whose loaders
collect every bad row of every table (:class:`sources.errors.Problems`) instead of stopping at
the first; each input is read with :func:`sources.readers.source_errors`, which sets a bad row
aside and checks the rest, so a workbook with five bad rows gives five problems; even when a
table is broken the inputs are checked against the names of the tables that do load. An input
without row problems is then checked for its share of mass beyond the grid (the build's
:func:`pipeline.steps.check_outside`, on :func:`grids.allocate.outside_share`: no allocation
matrix, no build). The problems are printed and written as a CSV (``file, sheet, row, column,
value, expected, problem``) that inventory staff can open in Excel next to the file they fix.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyproj

from grids.allocate import outside_share
from grids.grid import Grid
from grids.proxy import Proxy
from pipeline.cems import cems_errors
from pipeline.config import BuildConfig, load_config
from pipeline.model_ready import check_formats
from pipeline.steps import Tables, check_outside, input_layout, load_tables, read_input
from sources.errors import ConfigErrors, Problems, TongyuanError
from sources.factors import load_factor_library
from sources.gridded import load_mapping
from sources.readers import Vocabulary, source_errors
from sources.speciation import load_speciation
from sources.species import load_species
from sources.validate import check_unique_across, load_activity_bounds

#: the columns of ``errors.csv``
COLUMNS = ["file", "sheet", "row", "column", "value", "expected", "problem"]


@dataclass(frozen=True)
class Problem:
    """One problem, as a row of ``errors.csv`` (empty text where not known)."""

    file: str
    sheet: str
    row: str
    column: str
    value: str
    expected: str
    problem: str

    @classmethod
    def of(cls, exc: TongyuanError, file: str | Path | None = None) -> Problem:
        """The problem an error describes; ``file`` when the error names no file."""
        if getattr(exc, "problem", None) is not None:  # InputError, or ConfigError.at
            value = getattr(exc, "value", None)
            row, column = getattr(exc, "row", None), getattr(exc, "column", None)
            return cls(file=getattr(exc, "path", None) or str(file or ""),
                       sheet=getattr(exc, "sheet", None) or "",
                       row="" if row is None else str(row),
                       column="" if column is None else str(column),
                       value="" if value is None else str(value)[:200],
                       expected=getattr(exc, "expected", None) or "", problem=exc.problem)
        return cls.from_text(str(exc), file)

    @classmethod
    def all_of(cls, exc: TongyuanError, file: str | Path | None = None) -> list[Problem]:
        """One problem per error ``exc`` holds (:class:`ConfigErrors` holds several)."""
        if isinstance(exc, ConfigErrors):
            return [p for e in exc.errors for p in cls.all_of(e, file)]
        return [cls.of(exc, file)]

    @classmethod
    def from_text(cls, text: str, file: str | Path | None = None) -> Problem:
        """A problem from a message ``"<file>[, row n][, column 'c']: <problem>"``."""
        head, sep, rest = text.partition(": ")
        found = file is not None and head.startswith(str(file))
        if not sep or not (found or "/" in head or "\\" in head):
            return cls(str(file or ""), "", "", "", "", "", text)
        row = re.search(r", row (\d+)", head)
        col = re.search(r", column '([^']*)'", head)
        path = head.split(", ")[0]
        problem, _, expected = rest.partition("; expected ")
        return cls(path, "", row.group(1) if row else "", col.group(1) if col else "", "",
                   expected, problem)

    def __str__(self) -> str:
        column = self.column if re.match(r"[A-Z]{1,3} '", self.column) else repr(self.column)
        where = [self.file] + [f"{k} {v}" for k, v in (("sheet", repr(self.sheet)),
                                                     ("row", self.row), ("column", column))
                               if v and v != "''"]
        text = ", ".join(where) + f": {self.problem}"
        if self.value:
            text += f"; got {self.value!r}"
        return text + (f"; expected {self.expected}" if self.expected else "")


def _config_problems(path: Path, exc: TongyuanError) -> list[Problem]:
    """One problem per line of a configuration's validation error (pydantic lists them all)."""
    lines = str(exc).splitlines()
    if len(lines) == 1:
        return [Problem.from_text(lines[0], path)]
    out = []
    for line in lines[1:]:
        key, _, msg = line.strip().partition(": ")
        out.append(Problem(str(path), "", "", key, "", "", msg or key))
    return out


def _attempt(problems: list[Problem], file: str | Path | None, fn: Callable[..., Any],
             *args: Any) -> Any:
    """``fn(*args)``, or None with its errors (every one it holds) added to ``problems``."""
    try:
        return fn(*args)
    except TongyuanError as exc:
        problems += Problem.all_of(exc, file)
        return None


def check_tables(cfg: BuildConfig) -> tuple[list[Problem], Tables | None]:
    """Every problem of every configuration table of ``cfg`` (what :func:`load_tables` finds,
    all of it), the proxy rasters, the regional mapping tables, the speciation table and what
    the model formats of ``output.formats`` need; the loaded tables when the build's tables
    load."""
    problems: list[Problem] = []
    tables = _attempt(problems, cfg.config_path, load_tables, cfg)
    for name, path in cfg.proxies.items():
        _attempt(problems, path, Proxy(name=name, path=str(path)).read)
    if cfg.regional is not None:
        _attempt(problems, cfg.regional.sector_mapping, load_mapping,
                 cfg.regional.sector_mapping, cfg.regional.species_mapping)
    if tables is not None and cfg.tables.speciation is not None:
        _attempt(problems, cfg.tables.speciation, load_speciation, cfg.tables.speciation,
                 cfg.output.mechanism, tables.registry.emitted, list(tables.sectors["sector"]))
    if tables is not None and not problems:  # what the model formats of output.formats need
        _attempt(problems, cfg.config_path, check_formats, cfg, tables)
    return problems, tables


def check_inputs(cfg: BuildConfig, tables: Tables | None
                 ) -> tuple[list[Problem], pd.DataFrame | None]:
    """Every row problem of every input, and of an input without one whether too much of its
    mass lies beyond the grid (:func:`pipeline.steps.check_outside`: a wrong CRS or zone,
    swapped axes); the combined ids and kinds when there is no problem (for the CEMS check).

    With ``tables`` None (a configuration table is broken) each file is still checked row by
    row: columns, ids, numbers, units, geometry and CRS, and the names of the tables that do
    load (:func:`_partial_vocabulary`: sector, fuel, technology and control devices when the
    factor tables load), but not the grid's extent."""
    problems: list[Problem] = []
    read: list[tuple[str, pd.DataFrame]] = []
    partial = _partial_vocabulary(cfg) if tables is None and cfg.inputs else None
    for spec in cfg.inputs:
        if tables is None:
            errors = source_errors(spec.path, spec.kind, target_crs=_crs_of(cfg),
                                   layout=input_layout(cfg, None, spec)[0], vocabulary=partial)
            problems += [Problem.of(e, spec.path) for e in errors]
            continue
        layout, vocabulary = input_layout(cfg, tables, spec)
        errors = source_errors(spec.path, spec.kind, target_crs=tables.grid.crs, layout=layout,
                               vocabulary=vocabulary)
        problems += [Problem.of(e, spec.path) for e in errors]
        got = None if errors else _attempt(problems, spec.path, read_input, cfg, tables, spec)
        if got is None:
            continue
        table = got[0]
        outside = _attempt(problems, spec.path, outside_share, table, tables.grid)
        if outside is not None:
            _attempt(problems, spec.path, check_outside, table, outside, tables,
                     {str(table["input_file"].iloc[0]) if len(table) else "": spec.name})
        read.append((str(spec.path), table))
    if problems:
        return problems, None
    _attempt(problems, None, check_unique_across, read)
    if problems or not read:
        return problems, None
    return problems, pd.concat([t[["source_id", "kind"]] for _, t in read], ignore_index=True)


def _partial_vocabulary(cfg: BuildConfig) -> Vocabulary:
    """The names that the tables which do load define, to check inputs against when another
    table is broken (its problems are reported by :func:`check_tables`)."""
    t, quiet = cfg.tables, Problems()
    registry = quiet.attempt(load_species, t.species)
    library = (quiet.attempt(load_factor_library, t.emission_factors, t.control_efficiencies,
                             t.fuels, registry.emitted) if registry is not None else None)
    bounds = cfg.validation.bounds_path
    return Vocabulary(keys=library.keys if library is not None else None,
                      devices=library.devices if library is not None else None,
                      proxies=set(cfg.proxies), sector_proxies=cfg.sector_proxies,
                      species=registry.emitted if registry is not None else None,
                      bounds=quiet.attempt(load_activity_bounds, bounds) if bounds else None)


def _crs_of(cfg: BuildConfig) -> pyproj.CRS:
    """The grid's CRS, or longitude/latitude when the grid itself is broken (its problem is
    reported with the tables)."""
    try:
        return Grid.from_config(cfg.grid.model_dump()).crs
    except TongyuanError:
        return pyproj.CRS.from_epsg(4326)


def check_config(path: str | Path) -> list[Problem]:
    """Every problem of the configuration at ``path``, its tables, inputs and CEMS files."""
    path = Path(path)
    try:
        cfg = load_config(path)
    except TongyuanError as exc:
        return _config_problems(path, exc)
    problems, tables = check_tables(cfg)
    found, activity = check_inputs(cfg, tables)
    problems += found
    if tables is not None and cfg.cems:
        problems += [Problem.of(e) for e in cems_errors(list(cfg.cems), activity,
                                                        tables.registry.all, cfg.year)]
    files = {f: i for i, f in enumerate(dict.fromkeys(p.file for p in problems))}
    return sorted(problems, key=lambda p: (files[p.file], int(p.row) if p.row.isdigit() else 0))


def write_errors(problems: list[Problem], path: str | Path) -> Path:
    """``errors.csv``: one row per problem (UTF-8 with BOM, so Excel shows Chinese text)."""
    path = Path(path)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(asdict(p) for p in problems)
    return path


def check_command(config: Path, errors_csv: Path) -> int:
    """``tongyuan check``: print every problem, write ``errors_csv``; exit status 0 when
    there is none, 1 when there are problems, 2 when the config file is missing."""
    if not config.is_file():
        print(f"tongyuan: error: config file {config} not found", file=sys.stderr)
        return 2
    problems = check_config(config)
    out = write_errors(problems, errors_csv)
    if not problems:
        print(f"{config}: every table and input is valid (errors.csv: {out}, empty)")
        return 0
    files = {p.file for p in problems}
    print(f"{config}: {len(problems)} problem{'s' * (len(problems) != 1)} in {len(files)} "
          f"file{'s' * (len(files) != 1)} (also in {out}):", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    return 1
