"""``tongyuan check``: every input and table of a configuration validated, and every problem
listed in one pass (not only the first), without building.

Tables are checked one by one (a problem in one does not hide the others); each input is read
with :func:`sources.readers.source_errors`, which sets a bad row aside and checks the rest, so a
workbook with five bad rows gives five problems. The problems are printed and written as a CSV
(``file, sheet, row, column, value, expected, problem``) that inventory staff can open in Excel
next to the file they fix.
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

from grids.grid import Grid
from grids.proxy import Proxy
from pipeline.cems import cems_errors
from pipeline.checks import load_checks
from pipeline.config import BuildConfig, load_config
from pipeline.model_ready import check_formats
from pipeline.steps import Tables, input_layout, load_tables, read_input
from pipeline.temporal import load_profiles, load_sectors
from sources.errors import InputError, TongyuanError
from sources.factors import load_factor_library
from sources.readers import source_errors
from sources.speciation import load_speciation
from sources.species import load_species
from sources.validate import load_activity_bounds

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
        if isinstance(exc, InputError):
            return cls(file=exc.path or str(file or ""), sheet=exc.sheet or "",
                       row="" if exc.row is None else str(exc.row),
                       column="" if exc.column is None else str(exc.column),
                       value="" if exc.value is None else str(exc.value)[:200],
                       expected=exc.expected or "", problem=exc.problem)
        return cls.from_text(str(exc), file)

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
    """``fn(*args)``, or None with its error added to ``problems``."""
    try:
        return fn(*args)
    except TongyuanError as exc:
        problems.append(Problem.of(exc, file))
        return None


def check_tables(cfg: BuildConfig) -> tuple[list[Problem], Tables | None]:
    """Every configuration table of ``cfg`` on its own, then their cross-checks; the loaded
    tables when there is no problem."""
    t = cfg.tables
    problems: list[Problem] = []
    registry = _attempt(problems, t.species, load_species, t.species)
    if registry is not None:
        _attempt(problems, t.emission_factors, load_factor_library, t.emission_factors,
                 t.control_efficiencies, t.fuels, registry.emitted)
    profiles = _attempt(problems, t.temporal_profiles, load_profiles, t.temporal_profiles)
    if profiles is not None:
        _attempt(problems, t.sectors, load_sectors, t.sectors, profiles)
    if t.checks is not None:
        _attempt(problems, t.checks, load_checks, t.checks)
    if cfg.validation.bounds_path is not None:
        _attempt(problems, cfg.validation.bounds_path, load_activity_bounds,
                 cfg.validation.bounds_path)
    grid = _attempt(problems, cfg.config_path, Grid.from_config, cfg.grid.model_dump())
    if grid is not None:
        for name, path in cfg.proxies.items():
            _attempt(problems, path, Proxy(name=name, path=str(path)).read)
    if problems:
        return problems, None
    tables = _attempt(problems, cfg.config_path, load_tables, cfg)
    if tables is not None and t.speciation is not None:
        _attempt(problems, t.speciation, load_speciation, t.speciation, cfg.output.mechanism,
                 tables.registry.emitted, list(tables.sectors["sector"]))
    if tables is not None and not problems:  # what the model formats of output.formats need
        _attempt(problems, cfg.config_path, check_formats, cfg, tables)
    return problems, tables


def check_inputs(cfg: BuildConfig, tables: Tables) -> tuple[list[Problem], pd.DataFrame | None]:
    """Every row problem of every input; the combined ids and kinds when there is none (for the
    CEMS check)."""
    problems: list[Problem] = []
    frames = []
    for spec in cfg.inputs:
        layout, vocabulary = input_layout(cfg, tables, spec)
        errors = source_errors(spec.path, spec.kind, target_crs=tables.grid.crs, layout=layout,
                               vocabulary=vocabulary)
        problems += [Problem.of(e, spec.path) for e in errors]
        if not errors:
            table, _ = read_input(cfg, tables, spec)
            frames.append(table[["source_id", "kind"]])
    if problems:
        return problems, None
    return problems, pd.concat(frames, ignore_index=True) if frames else None


def check_config(path: str | Path) -> list[Problem]:
    """Every problem of the configuration at ``path``, its tables, inputs and CEMS files."""
    path = Path(path)
    try:
        cfg = load_config(path)
    except TongyuanError as exc:
        return _config_problems(path, exc)
    problems, tables = check_tables(cfg)
    if tables is None:
        return problems
    found, activity = check_inputs(cfg, tables)
    problems += sorted(found, key=lambda p: (p.file, int(p.row) if p.row.isdigit() else 0))
    if cfg.cems:
        problems += [Problem.of(e) for e in cems_errors(list(cfg.cems), activity,
                                                        tables.registry.all, cfg.year)]
    return problems


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
