"""netCDF classic (64-bit offset) files as the I/O API and WRF read them, written atomically."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import netCDF4


@contextmanager
def classic_file(path: str | Path, dims: dict[str, int | None]) -> Iterator[netCDF4.Dataset]:
    """Open ``path``'s temporary sibling for writing with ``dims`` (None: unlimited), fill off
    (every value is written), and rename it into place only if the block completes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with netCDF4.Dataset(tmp, "w", format="NETCDF3_64BIT_OFFSET") as nc:
            nc.set_fill_off()
            for name, size in dims.items():
                nc.createDimension(name, size)
            yield nc
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
