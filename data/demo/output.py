"""Deterministic writers (GeoPackage, CSV, GeoParquet, Shapefile, GeoTIFF)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import rasterio.features
from rasterio.transform import from_origin

from demo.common import DBF_DATE, GRID_X0, GRID_Y1, PROXY_NX, PROXY_NY, PROXY_RES, UTM


# --------------------------------------------------------------------------------------------
# Writers (deterministic)
# --------------------------------------------------------------------------------------------
def _remove(path: Path) -> None:
    for suffix in ([".shp", ".shx", ".dbf", ".prj", ".cpg"] if path.suffix == ".shp"
                   else [path.suffix]):
        p = path.with_suffix(suffix)
        if p.exists():
            p.unlink()


def write_gpkg(gdf: gpd.GeoDataFrame, path: Path, layer: str) -> None:
    _remove(path)
    pyogrio.write_dataframe(gdf, path, layer=layer, driver="GPKG", promote_to_multi=True)


def write_csv(df: pd.DataFrame, path: Path, decimals: dict[str, int]) -> None:
    out = df.copy()
    for col, dec in decimals.items():
        out[col] = [f"{v:.{dec}f}" for v in out[col]]
    _remove(path)
    out.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")


def write_parquet(gdf: gpd.GeoDataFrame, path: Path) -> None:
    _remove(path)
    gdf.to_parquet(path, index=False, compression="zstd", geometry_encoding="WKB",
                   write_covering_bbox=False)


def write_shapefile(gdf: gpd.GeoDataFrame, path: Path) -> None:
    _remove(path)
    pyogrio.write_dataframe(gdf, path, driver="ESRI Shapefile",
                            layer_options={"ENCODING": "UTF-8",
                                           "DBF_DATE_LAST_UPDATE": DBF_DATE})


def write_tif(arr: np.ndarray, path: Path, description: str, units: str) -> None:
    _remove(path)
    profile = {"driver": "GTiff", "width": PROXY_NX, "height": PROXY_NY, "count": 1,
               "dtype": "float32", "crs": UTM,
               "transform": from_origin(GRID_X0, GRID_Y1, PROXY_RES, PROXY_RES),
               "compress": "deflate", "predictor": 3, "tiled": False}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr.astype(np.float32), 1)
        dst.set_band_description(1, description)
        dst.update_tags(1, units=units)
        dst.update_tags(SYNTHETIC="yes: Tongyuan demo data, not an observation")
