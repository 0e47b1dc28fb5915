"""Reading configuration tables: CSV tables with references, and YAML documents.

Both raise :class:`~sources.errors.ConfigError` naming the file (and row) when they cannot be read.
YAML documents are validated by pydantic models derived from :class:`FrozenModel`; a
``ValidationError`` becomes a message by :func:`format_validation_error`, one line per problem.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sources.errors import ConfigError, InputError, Problems, UnitError
from sources.units import parse_unit


class FrozenModel(BaseModel):
    """Base of every configuration schema: immutable, unknown keys refused (a typo in a YAML
    key is an error, not a silently ignored setting), and no ``inf`` or ``nan`` numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


#: most problems listed in one validation error
MAX_LINES = 30


def _short(value: Any, n: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n - 3] + "..."


def format_validation_error(path: str | Path, what: str, exc: ValidationError, *,
                            where: Callable[[Sequence[Any]], str] | None = None) -> str:
    """``"<path>: invalid <what>"`` and one indented line per error: the dotted key, pydantic's
    message and the value given.

    ``where(loc)`` names the location of an error (default: the dotted key); pydantic's
    validator steps (``function-after[...]``) are left out of ``loc`` first.
    """
    lines = []
    errors = exc.errors()
    for e in errors[:MAX_LINES]:
        loc = [p for p in e["loc"] if not str(p).startswith("function-")]
        key = where(loc) if where is not None else ".".join(str(p) for p in loc)
        lines.append(f"  {key}: {e['msg']} (got {_short(e.get('input'))})")
    if len(errors) > MAX_LINES:
        lines.append(f"  ... and {len(errors) - MAX_LINES} more problems")
    return f"{path}: invalid {what}\n" + "\n".join(lines)


#: most YAML nodes a document may expand to (aliases counted each time they are used): a
#: configuration has hundreds; a 9-line "billion laughs" alias bomb has 10^9
MAX_YAML_NODES = 100_000


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (YAML 1.2 forbids it; PyYAML
    silently keeps the last, so ``inputs:`` given twice would drop the first list)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                line = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML says so itself
                continue
            if line is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {_short(key, 60)} given twice (lines {line} and "
                    f"{key_node.start_mark.line + 1}); give each key once", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes of ``root`` with every alias expanded, counted up to just over ``limit``."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes and not done:
            continue
        children = ([c for kv in node.value for c in kv] if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if done:
            sizes[id(node)] = min(limit + 1, 1 + sum(sizes.get(id(c), 1) for c in children))
            continue
        sizes[id(node)] = 1  # a recursive alias counts once
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def _load_yaml(text: str, path: Path) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, MAX_YAML_NODES)
        if size > MAX_YAML_NODES:
            raise ConfigError(f"{path}: YAML expands to more than {MAX_YAML_NODES:,} nodes "
                              "through its aliases (&anchor / *alias); expected a plain "
                              "configuration (write the values out, or use fewer aliases)")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; keys given twice and alias bombs refused."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = _load_yaml(text, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({_os_problem(path, exc)})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read {what} (not UTF-8 text: {exc.reason} at byte "
                          f"{exc.start})") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what_ = "; ".join(str(t) for t in (exc.context, exc.problem) if t)
        raise ConfigError(f"{path}: not valid YAML ({what_}{where})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level of the {what}"
                          + (" (the file is empty)" if doc is None else ""))
    return doc


def _os_problem(path: Path, exc: OSError) -> str:
    if path.is_dir():
        return "it is a directory, expected a file"
    if not path.exists():
        return "file not found"
    return exc.strerror or str(exc)


def check_file(path: str | Path, what: str, error: type[Exception] = ConfigError) -> Path:
    """``path`` as a Path if it is an existing, non-empty file; otherwise ``error`` (one line
    naming the path): missing, a directory, or empty."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: {what} not found (paths in a config are relative to the config "
                    "file)")
    if path.is_dir():
        raise error(f"{path}: {what} is a directory, expected a file")
    if path.stat().st_size == 0:
        raise error(f"{path}: {what} is an empty file")
    return path


def _csv_records(path: Path, what: str, comment: str | None) -> list[list[str]]:
    """Records of a CSV (blank lines, and lines starting with ``comment``, skipped), each with
    as many fields as the header: a ragged row is an error naming its row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read {what} table (not UTF-8 text: {exc.reason} at "
                          f"byte {exc.start})") from exc
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline="")) if r
                   and not (comment and r[0].lstrip().startswith(comment))]
    except csv.Error as exc:
        raise ConfigError(f"{path}: cannot read {what} table ({exc})") from exc
    if not records:
        raise ConfigError(f"{path}: {what} table is empty; expected a header row")
    header = [c.strip() for c in records[0]]
    ragged = Problems()
    for i, rec in enumerate(records[1:], start=1):
        if len(rec) != len(header):
            ragged.add(ConfigError.at(path, f"{len(rec)} fields where the header has "
                                      f"{len(header)}", row=i, value=",".join(rec)[:120],
                                      expected=f"one value per column {header} (quote values "
                                      "that contain commas)"))
    ragged.raise_any()
    return records


def read_table(path: str | Path, required: list[str], what: str, *,
               comment: str | None = None, unique: list[str] | None = None,
               problems: Problems | None = None) -> pd.DataFrame:
    """Read a table (CSV, or Parquet by its suffix) as stripped text; check that the
    ``required`` columns exist and, if ``reference`` is one of them, that every row cites one.

    Empty cells are ``""``; lines starting with ``comment`` are skipped. Refused, with a
    :class:`ConfigError` naming the file (and row, column, value): a missing, empty or
    directory path, ragged rows, a column given twice, and rows with the same ``unique``
    columns. Row problems (every row without a reference, every duplicate) are added to
    ``problems`` and the table returned; without ``problems`` they are raised together.
    """
    path = check_file(path, f"{what} table")
    try:
        if path.suffix.lower() == ".parquet":
            raw = pd.read_parquet(path)
            df = raw.astype(str).where(raw.notna(), "")
        else:
            records = _csv_records(path, what, comment)
            df = pd.DataFrame(records[1:], columns=records[0], dtype=str)
    except (OSError, ValueError, pyarrow.ArrowException) as exc:
        raise ConfigError(f"{path}: cannot read {what} table ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    dup = df.columns[df.columns.duplicated()]
    if len(dup):
        raise ConfigError.at(path, f"column {dup[0]!r} given twice", column=dup[0],
                             expected="each column once")
    for col in required:
        if col not in df.columns:
            raise ConfigError(f"{path}: {what} table has no column {col!r}; columns are "
                              f"{list(df.columns)}, expected at least {required}")
    for col in df.columns:
        df[col] = df[col].astype(str).str.strip()
    found = Problems() if problems is None else problems
    if "reference" in required:
        for i in np.flatnonzero(df["reference"].to_numpy() == ""):
            exc = ConfigError.at(path, f"empty 'reference'; every {what} row must cite its "
                                 "source", row=int(i) + 1)
            exc.column = "reference"
            found.add(exc)
    if unique:
        check_unique(df, unique, path, what, found)
    if problems is None:
        found.raise_any()
    return df


def check_unique(df: pd.DataFrame, key: list[str], path: str | Path, what: str,
                 problems: Problems | None = None) -> None:
    """No two rows of ``df`` share the ``key`` columns (a fuel listed twice, a device with two
    efficiencies for one species): a :class:`ConfigError` per repeated row naming both rows,
    added to ``problems`` (raised without)."""
    found = Problems() if problems is None else problems
    keys = df[key].apply(tuple, axis=1) if len(df) else pd.Series([], dtype=object)
    first: dict[tuple, int] = {}
    for i, k in enumerate(keys):
        if k in first:
            found.add(ConfigError.at(path, f"{'/'.join(key)} given twice (rows {first[k] + 1} "
                                     f"and {i + 1})", row=i + 1, column=key[-1],
                                     value=k if len(key) > 1 else k[0],
                                     expected=f"one {what} row per {'/'.join(key)}"))
        else:
            first[k] = i
    if problems is None:
        found.raise_any()


def numbers(df: pd.DataFrame, col: str, path: str | Path, lo: float = 0.0,
            hi: float = np.inf, problems: Problems | None = None) -> np.ndarray:
    """Column ``col`` as floats; each value that is not a finite number in ``[lo, hi]`` is an
    :class:`~sources.errors.InputError` naming its row (1-based data row), column and value,
    added to ``problems`` (raised, together, without)."""
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    found = Problems() if problems is None else problems
    for i in np.flatnonzero(~np.isfinite(values) | (values < lo) | (values > hi)):
        what = "not a number" if np.isnan(values[i]) else "value out of range"
        found.add(InputError(path, what, row=int(i) + 1, column=col, value=df[col].iloc[i],
                             expected=f"a finite number in [{lo}, {hi}]"))
    if problems is None:
        found.raise_any()
    return values


def units(df: pd.DataFrame, col: str, path: str | Path, problems: Problems, *,
          example: str = "'kg/t', 'g/GJ', 'g/km'") -> None:
    """Every value of column ``col`` a unit pint parses (not an ambiguous one such as ``mt``):
    a :class:`~sources.errors.UnitError` per other row, added to ``problems``."""
    for i, text in enumerate(df[col]):
        try:
            parse_unit(text)
        except UnitError as exc:
            ambiguous = exc.problem.startswith("ambiguous")
            problems.add(UnitError(path, exc.problem if ambiguous else "unparseable unit",
                                   row=i + 1, column=col, value=text,
                                   expected=exc.expected if ambiguous else
                                   f"a pint unit string such as {example}"))


#: probability distributions an uncertainty column may name
DISTRIBUTIONS = ("normal", "lognormal")


def uncertainty_columns(df: pd.DataFrame, path: str | Path, problems: Problems | None = None,
                        *, pct: str = "uncertainty_pct", distribution: str = "distribution"
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The 95 % relative half-width [1] and lognormal flag of every row of a table with the
    uncertainty columns ``pct`` (percent, finite, ≥ 0) and ``distribution`` (``normal`` or
    ``lognormal``); each bad cell is a :class:`ConfigError` naming its row, column and value,
    added to ``problems`` (raised, together, without)."""
    found = Problems() if problems is None else problems
    missing = [c for c in (pct, distribution) if c not in df.columns]
    for col in missing:
        found.add(ConfigError(f"{path}: table has no column {col!r}; give both {pct} (95 % "
                              f"relative half-width, %) and {distribution} "
                              f"({' or '.join(DISTRIBUTIONS)})"))
    if missing:
        if problems is None:
            found.raise_any()
        return np.zeros(len(df)), np.zeros(len(df), dtype=bool)
    values = pd.to_numeric(df[pct], errors="coerce").to_numpy(dtype=float)
    for i in np.flatnonzero(~np.isfinite(values) | (values < 0)):
        found.add(ConfigError.at(path, "bad uncertainty", row=int(i) + 1, column=pct,
                                 value=df[pct].iloc[i], expected="a finite number ≥ 0: the 95 % "
                                 "relative half-width in percent (e.g. 5 for ±5 %)"))
    dist = df[distribution].astype(str).str.strip().str.lower()
    for i in np.flatnonzero(~dist.isin(DISTRIBUTIONS).to_numpy()):
        found.add(ConfigError.at(path, "unknown distribution", row=int(i) + 1,
                                 column=distribution, value=df[distribution].iloc[i],
                                 expected=" or ".join(DISTRIBUTIONS)))
    if problems is None:
        found.raise_any()
    return values / 100.0, (dist == "lognormal").to_numpy()
