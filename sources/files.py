"""Content identity: the one sha256 of a file and the content digests behind every cache key.

A build records what it read by these digests (manifest, provenance attributes, input
fingerprint), and the caches (task records, allocation matrices, day store) are keyed on them,
so there is exactly one way to hash each kind of thing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

#: the files that make up one Shapefile: a change to any of them changes the data
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")

_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes; for a Shapefile (``.shp``), of all its parts in order.

    Parts that do not exist are skipped (a Shapefile without ``.cpg``).
    """
    path = Path(path)
    parts = [path.with_suffix(s) for s in SHAPEFILE_PARTS] if path.suffix == ".shp" else [path]
    h = hashlib.sha256()
    for part in parts:
        if part is path or part.exists():
            with part.open("rb") as fh:
                for block in iter(lambda: fh.read(_BLOCK), b""):
                    h.update(block)
    return h.hexdigest()


def sha256_or_missing(path: str | Path, missing: str | None = "missing") -> str | None:
    """:func:`sha256_file`, or ``missing`` when the file does not exist (a key must still be
    computable for a configuration whose files are checked later)."""
    return sha256_file(path) if Path(path).exists() else missing


def digest(doc: Any) -> str:
    """sha256 of a JSON-able document, independent of key order (``str`` for other values)."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def frame_digest(df: pd.DataFrame) -> str:
    """sha256 of a table's values, row by row, ignoring its index."""
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()
                          ).hexdigest()
