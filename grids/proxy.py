"""Proxy rasters (population, cropland, ...) that distribute area sources inside their polygons.

A raster is read once with rasterio. Its pixels with a positive value become polygons in the grid
CRS (reprojected corner by corner, with edges densified when the CRSs differ); each carries its
value, which is spread uniformly over the pixel. Nodata and NaN count as zero; negative values are
an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyproj
import rasterio
import rasterio.errors
import rasterio.io
import shapely

from sources.errors import InputError


@dataclass(frozen=True)
class Proxy:
    """A named proxy raster on disk."""

    name: str
    path: str
    band: int = 1
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __reduce__(self):  # pickled (to dask workers) without the cached arrays
        return (Proxy, (self.name, self.path, self.band))

    def read(self) -> tuple[np.ndarray, object, pyproj.CRS]:
        """(values, affine transform, CRS); nodata/NaN → 0; negative values rejected. Read once
        per object (chunks of one allocation share it)."""
        if "read" not in self._cache:
            self._cache["read"] = self._read()
        return self._cache["read"]

    def _open(self) -> rasterio.io.DatasetReader:
        """The raster opened; missing, empty, directory or unreadable paths are one-line
        :class:`InputError` naming the path."""
        path = Path(self.path)
        if not path.exists():
            raise InputError(path, f"proxy raster {self.name!r} not found",
                             expected="an existing GeoTIFF (paths are relative to the config)")
        if path.is_dir():
            raise InputError(path, f"proxy raster {self.name!r} is a directory",
                             expected="a GeoTIFF file")
        if path.stat().st_size == 0:
            raise InputError(path, f"proxy raster {self.name!r} is an empty file",
                             expected="a GeoTIFF file")
        try:
            return rasterio.open(path)
        except rasterio.errors.RasterioError as exc:
            raise InputError(path, f"proxy raster {self.name!r} cannot be read "
                             f"({str(exc).splitlines()[0][:200]})",
                             expected="a GeoTIFF (or another raster GDAL reads)") from exc

    def _read(self) -> tuple[np.ndarray, object, pyproj.CRS]:
        path = Path(self.path)
        with self._open() as src:
            if src.crs is None:
                raise InputError(path, f"proxy raster {self.name!r} has no CRS", column="crs",
                                 expected="a GeoTIFF with a CRS")
            if not 1 <= self.band <= src.count:
                raise InputError(path, f"proxy raster {self.name!r} has no band {self.band}",
                                 column="band", value=self.band,
                                 expected=f"a band 1..{src.count}")
            try:
                data = src.read(self.band, masked=True).astype(np.float64)
            except rasterio.errors.RasterioError as exc:
                raise InputError(path, f"proxy raster {self.name!r} is corrupt "
                                 f"({str(exc).splitlines()[0][:200]})",
                                 expected="a readable GeoTIFF") from exc
            values = np.where(np.ma.getmaskarray(data), 0.0, np.ma.getdata(data))
            transform, crs = src.transform, pyproj.CRS.from_wkt(src.crs.to_wkt())
        values = np.where(np.isnan(values), 0.0, values)
        if not np.isfinite(values).all():
            r, c = np.argwhere(~np.isfinite(values))[0]
            raise InputError(path, f"infinite value in proxy raster {self.name!r}",
                             row=int(r) + 1, column=f"pixel column {int(c) + 1}",
                             value=float(values[r, c]), expected="finite values >= 0 (or "
                             "nodata)")
        if (values < 0).any():
            r, c = np.argwhere(values < 0)[0]
            raise InputError(path, f"negative value in proxy raster {self.name!r}",
                             row=int(r) + 1, column=f"pixel column {int(c) + 1}",
                             value=float(values[r, c]), expected="values >= 0")
        return values, transform, crs

    def crs(self) -> pyproj.CRS:
        """The raster's CRS (header only)."""
        with self._open() as src:
            if src.crs is None:
                raise InputError(self.path, f"proxy raster {self.name!r} has no CRS",
                                 column="crs", expected="a GeoTIFF with a CRS")
            return pyproj.CRS.from_wkt(src.crs.to_wkt())

    def extent(self, target_crs: pyproj.CRS) -> shapely.Geometry:
        """The raster's footprint in ``target_crs`` (edges densified when reprojected)."""
        with self._open() as src:
            transform, width, height = src.transform, src.width, src.height
            crs = pyproj.CRS.from_wkt(src.crs.to_wkt()) if src.crs else None
        if crs is None:
            raise InputError(self.path, f"proxy raster {self.name!r} has no CRS", column="crs",
                             expected="a GeoTIFF with a CRS")
        x0, y0 = transform * (0, 0)
        x1, y1 = transform * (width, height)
        box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        if crs.equals(target_crs):
            return box
        tr = pyproj.Transformer.from_crs(crs, target_crs, always_xy=True)
        box = shapely.segmentize(box, min(abs(transform.a), abs(transform.e)))
        return shapely.transform(box, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))

    def pixels(self, target_crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray]:
        """Polygons (in ``target_crs``) and values of the positive pixels (their areas are
        measured by the allocation, on the ellipsoid for lon/lat grids)."""
        key = target_crs.to_wkt()
        if key not in self._cache:
            self._cache[key] = _pixels(self.path, self.band, key, *self.read())
        return self._cache[key]


def _pixels(path: str, band: int, target_wkt: str, values: np.ndarray, transform,
            crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(values > 0)
    x0, y0 = transform * (cols, rows)
    x1, y1 = transform * (cols + 1, rows + 1)
    boxes = shapely.box(np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1),
                        np.maximum(y0, y1))
    target = pyproj.CRS.from_wkt(target_wkt)
    if not crs.equals(target):
        step = min(abs(transform.a), abs(transform.e)) / 8.0
        boxes = shapely.segmentize(boxes, step)
        tr = pyproj.Transformer.from_crs(crs, target, always_xy=True)
        boxes = shapely.transform(
            boxes, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return boxes, values[rows, cols]
