"""Reading configuration tables: CSV tables with references, and YAML documents.

Both raise :class:`~sources.errors.ConfigError` naming the file (and row) when they cannot be read.
YAML documents are validated by pydantic models derived from :class:`FrozenModel`; a
``ValidationError`` becomes a message by :func:`format_validation_error`, one line per problem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sources.errors import ConfigError


class FrozenModel(BaseModel):
    """Base of every configuration schema: immutable, and unknown keys are refused (a typo in a
    YAML key is an error, not a silently ignored setting)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


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
    for e in exc.errors():
        loc = [p for p in e["loc"] if not str(p).startswith("function-")]
        key = where(loc) if where is not None else ".".join(str(p) for p in loc)
        lines.append(f"  {key}: {e['msg']} (got {_short(e.get('input'))})")
    return f"{path}: invalid {what}\n" + "\n".join(lines)


def read_yaml(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level of the {what}")
    return doc


def read_table(path: str | Path, required: list[str], what: str, *,
               comment: str | None = None) -> pd.DataFrame:
    """Read a table (CSV, or Parquet by its suffix) as stripped text; check that the
    ``required`` columns exist and, if ``reference`` is one of them, that every row cites one.

    Empty cells are ``""``; ``comment`` starts a comment to the end of a CSV line. Raises
    :class:`ConfigError` naming the file (and row).
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            raw = pd.read_parquet(path)
            df = raw.astype(str).where(raw.notna(), "")
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, comment=comment)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read {what} table ({exc})") from exc
    df.columns = [c.strip() for c in df.columns]
    for col in required:
        if col not in df.columns:
            raise ConfigError(f"{path}: {what} table has no column {col!r}; columns are "
                              f"{list(df.columns)}, expected at least {required}")
    for col in df.columns:
        df[col] = df[col].str.strip()
    if "reference" in required:
        empty = np.flatnonzero(df["reference"].to_numpy() == "")
        if empty.size:
            raise ConfigError(f"{path}, row {empty[0] + 1}: empty 'reference'; every {what} row "
                              "must cite its source")
    return df
