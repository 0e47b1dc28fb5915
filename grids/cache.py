"""Allocation cache: content keys and the npz files of allocation matrices.

An allocation matrix depends only on the geometries (and each area source's proxy name), the grid,
the proxy rasters' bytes and the method version; :func:`allocation_key` hashes exactly these, so a
new activity value reuses every matrix. A matrix is stored as one ``.npz`` (CSC arrays, the
outside fraction and the positions of fallback sources), written atomically so that a killed
build leaves a whole file or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import shapely

from grids.grid import Grid
from sources.files import sha256_file

#: bump when an allocation method changes its results: cached matrices of older versions are
#: then ignored
ALLOCATION_VERSION = "5"


def allocation_key(gdf, kind: str, grid: Grid, proxies: dict | None) -> str:
    """Content hash of what an allocation depends on: the geometries in order (and the proxy
    name of each area source), the grid, the proxy rasters' bytes and the method version.

    Activity, fuels, factors and ids do not enter: changing a source's attributes keeps the key.
    """
    h = hashlib.sha256()
    h.update(f"tongyuan-allocation-{ALLOCATION_VERSION}|{kind}|".encode())
    h.update(json.dumps(grid.describe(), sort_keys=True).encode())
    h.update(grid.crs.to_wkt().encode())
    wkb = shapely.to_wkb(gdf.geometry.to_numpy(), hex=False)
    h.update(np.array([len(w) for w in wkb], dtype=np.int64).tobytes())
    h.update(b"".join(wkb))
    if kind == "area":
        names = [str(n) for n in gdf["proxy"].to_numpy()]
        h.update("\x1f".join(names).encode())
        for name in sorted(set(names)):
            proxy = (proxies or {}).get(name)
            if proxy is not None and Path(proxy.path).exists():
                h.update(f"{name}={sha256_file(proxy.path)}".encode())
    return h.hexdigest()


def read_cached(path: Path, n: int, grid: Grid) -> tuple[sp.csr_matrix, np.ndarray,
                                                         np.ndarray] | None:
    """The matrix, outside fractions and fallback positions stored in ``path``.

    Parameters
    ----------
    path : an ``.npz`` written by :func:`write_cached`
    n : number of sources (columns) the caller expects
    grid : the grid the rows must match

    Returns
    -------
    ``(matrix, outside_fraction, fallback)`` (CSR grid.size × n, fractions [1], positions of the
    fallback sources among the columns), or None if the file is unreadable (a killed write) or
    of another shape: the caller recomputes.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            matrix = sp.csc_matrix((z["data"], z["indices"], z["indptr"]),
                                   shape=tuple(z["shape"])).tocsr()
            outside, fallback = z["outside"], z["fallback"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # unreadable (a killed write): recompute
    if matrix.shape != (grid.size, n) or outside.shape != (n,):
        return None
    return matrix, outside, fallback


def write_cached(path: Path, matrix: sp.spmatrix, outside: np.ndarray,
                 fallback: np.ndarray) -> None:
    """Store what :func:`read_cached` reads, atomically (temporary file + ``os.replace``).

    Parameters
    ----------
    path : the ``.npz`` to write; its folder is created
    matrix : allocation matrix (cells × sources), fractions [1]
    outside : outside-domain fraction per source [1]
    fallback : positions (int64) of the sources whose proxy was zero everywhere
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    csc = matrix.tocsc()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, data=csc.data, indices=csc.indices, indptr=csc.indptr,
                 shape=np.array(csc.shape), outside=outside, fallback=fallback)
        os.replace(tmp, path)  # readers see a whole file or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class CacheStats:
    """What :func:`grids.allocate.allocate` did per source kind: ``hit`` or ``computed``, and the
    names of the cache files it read or wrote (what a build holds on to in the cache)."""

    kinds: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
