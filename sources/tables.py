"""Reading configuration tables: CSV tables with references, and YAML documents.

Both raise :class:`~sources.errors.ConfigError` naming the file (and row) when they cannot be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from sources.errors import ConfigError


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


def read_table(path: str | Path, required: list[str], what: str) -> pd.DataFrame:
    """Read a config CSV, check columns and that every row cites a reference."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, comment=None)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
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
