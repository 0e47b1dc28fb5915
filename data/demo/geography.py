"""Geography: the real district polygons (geoBoundaries/OSM, ODbL 1.0), the synthetic
hand-digitised waterways and the proxies (synthetic density scaled to the real census)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely
from rasterio.transform import from_origin

from demo.common import (
    BOUNDARY_NOTE,
    DISTRICTS,
    GRID_X0,
    GRID_Y1,
    PEOPLES_SQUARE,
    PROXY_NX,
    PROXY_NY,
    PROXY_RES,
    SUPERSAMPLE,
    TARGET_POPULATION,
    WGS84,
    parts,
    rng_for,
    to_lonlat,
    to_utm,
    utm_xy,
)
from demo.real import district_polygons

# --------------------------------------------------------------------------------------------
# Hand-digitised, approximate waterways (lon, lat in WGS84; drawn from general knowledge, about
# 1-2 km accuracy at best; SYNTHETIC): ship lanes and the stack-siting exclusion. The land and the
# districts are the real geoBoundaries/OpenStreetMap polygons (demo.real.district_polygons).
# --------------------------------------------------------------------------------------------
# Huangpu River centre line, from the Yangtze (Wusongkou) upstream to the western border
# (continued by the Taipu)
HUANGPU = [
    (121.510, 31.420), (121.505, 31.390), (121.520, 31.370), (121.540, 31.345),
    (121.555, 31.320), (121.565, 31.295), (121.555, 31.275), (121.535, 31.258),
    (121.515, 31.252), (121.500, 31.245), (121.492, 31.235), (121.493, 31.220),
    (121.488, 31.205), (121.475, 31.195), (121.462, 31.180), (121.460, 31.160),
    (121.468, 31.140), (121.485, 31.120), (121.495, 31.100), (121.490, 31.075),
    (121.470, 31.055), (121.440, 31.035), (121.400, 31.020), (121.360, 31.010),
    (121.320, 31.005), (121.280, 31.000), (121.240, 30.985), (121.200, 30.970),
    (121.150, 30.975), (121.100, 30.985), (121.050, 30.990), (121.000, 31.000),
    (120.950, 31.010), (120.850, 31.030),
]
SUZHOU_CREEK = [
    (121.490, 31.246), (121.475, 31.246), (121.455, 31.249), (121.440, 31.245),
    (121.430, 31.236), (121.415, 31.226), (121.400, 31.230), (121.380, 31.240),
    (121.360, 31.236), (121.330, 31.245), (121.300, 31.250), (121.270, 31.255),
    (121.240, 31.260), (121.200, 31.268),
]
DIANPU = [
    (120.950, 31.120), (121.000, 31.080), (121.050, 31.040), (121.100, 31.005),
    (121.150, 30.978),
]
DAZHI = [
    (121.470, 30.965), (121.550, 30.960), (121.620, 30.958), (121.700, 30.950),
    (121.780, 30.940), (121.860, 30.925),
]


# --------------------------------------------------------------------------------------------
# 1. Districts: the REAL geoBoundaries gbOpen CHN ADM3 polygons (OpenStreetMap-derived, ODbL 1.0;
# not official boundaries). They tile exactly, so each proxy pixel's land is shared exactly.
# --------------------------------------------------------------------------------------------
#: tolerance of the coverage simplification (m): keeps the shared edges and the exact tiling,
#: moves no boundary by more than about 180 m, and makes area_sources.gpkg (every district's
#: polygon once per activity) 2.2 x smaller; the unchanged polygons are in real/
SIMPLIFY_M = 50.0


def build_districts() -> gpd.GeoDataFrame:
    real = district_polygons().set_index("district_code")
    utm = shapely.coverage_simplify(np.array([to_utm(g) for g in real.geometry]), SIMPLIFY_M)
    if not bool(shapely.coverage_is_valid(utm)):
        raise RuntimeError("the simplified districts no longer tile")
    simplified = dict(zip(real.index, (to_lonlat(g, None) for g in utm), strict=True))
    rows = []
    for code, zh, en, _pop in DISTRICTS:
        g = simplified[code]
        if real.loc[code, "name_zh"] != zh:
            raise RuntimeError(f"district {code}: {real.loc[code, 'name_zh']} is not {zh}")
        polys = [p for p in parts(g) if p.geom_type == "Polygon" and p.area > 0]
        rows.append({"district_code": code, "name_zh": zh, "name_en": en,
                     "boundary_note": BOUNDARY_NOTE, "geometry": shapely.MultiPolygon(polys)})
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=WGS84)


# --------------------------------------------------------------------------------------------
# 2. Proxies (population, cropland) on the 500 m UTM grid
# --------------------------------------------------------------------------------------------
def district_fractions(dist_utm: list) -> np.ndarray:
    """(n_districts, ny, nx): fraction of each proxy pixel inside each district."""
    k = SUPERSAMPLE
    fine = rasterio.features.rasterize(
        [(g, i + 1) for i, g in enumerate(dist_utm)],
        out_shape=(PROXY_NY * k, PROXY_NX * k),
        transform=from_origin(GRID_X0, GRID_Y1, PROXY_RES / k, PROXY_RES / k),
        fill=0, dtype="int16")
    out = np.zeros((len(dist_utm), PROXY_NY, PROXY_NX))
    for i in range(len(dist_utm)):
        m = (fine == i + 1).reshape(PROXY_NY, k, PROXY_NX, k)
        out[i] = m.mean(axis=(1, 3))
    return out


def smooth_noise(rng: np.random.Generator, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-variance smooth random field on the proxy grid (separable Gaussian)."""
    pad = int(3 * sigma_px) + 1
    z = rng.standard_normal((PROXY_NY + 2 * pad, PROXY_NX + 2 * pad))
    t = np.arange(-pad, pad + 1)
    kern = np.exp(-0.5 * (t / sigma_px) ** 2)
    kern /= kern.sum()
    z = np.apply_along_axis(lambda r: np.convolve(r, kern, mode="same"), 1, z)
    z = np.apply_along_axis(lambda c: np.convolve(c, kern, mode="same"), 0, z)
    z = z[pad:-pad, pad:-pad]
    return (z - z.mean()) / z.std()


TOWNS = [  # (lon, lat, amplitude relative to the core peak, sigma km): secondary peaks
    (121.385, 31.110, 0.30, 3.0),   # Minhang Xinzhuang
    (121.450, 31.350, 0.25, 3.0),   # Baoshan Songnan / Gucun
    (121.250, 31.380, 0.16, 2.5),   # Jiading new town
    (121.220, 31.030, 0.18, 3.0),   # Songjiang new town
    (121.110, 31.150, 0.12, 2.5),   # Qingpu new town
    (121.460, 30.920, 0.12, 2.5),   # Fengxian Nanqiao
    (121.920, 30.900, 0.08, 2.5),   # Lingang (Nanhui new town)
    (121.330, 30.740, 0.08, 2.0),   # Jinshan
    (121.700, 31.190, 0.12, 2.5),   # Chuansha
    (121.580, 31.110, 0.12, 2.5),   # Zhoupu / Kangqiao
    (121.400, 31.630, 0.06, 2.0),   # Chongming Chengqiao
    (121.170, 31.295, 0.08, 2.0),   # Anting
    (121.160, 30.900, 0.06, 2.0),   # Zhujing
    (121.760, 31.050, 0.07, 2.0),   # Huinan
    (121.300, 31.180, 0.08, 2.0),   # Hongqiao hub / Xujing
]
CROP_LEVEL = {  # base cropland fraction of non-urban land, by district (synthetic)
    "310112": 0.12, "310113": 0.10, "310114": 0.25, "310115": 0.30, "310116": 0.38,
    "310117": 0.38, "310118": 0.32, "310120": 0.36, "310151": 0.50,
}


def build_proxies(frac: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Population (people per pixel) and cropland fraction, and people per district."""
    rng = rng_for(seed, 2)
    xs = GRID_X0 + PROXY_RES * (np.arange(PROXY_NX) + 0.5)
    ys = GRID_Y1 - PROXY_RES * (np.arange(PROXY_NY) + 0.5)
    X, Y = np.meshgrid(xs, ys)
    cx, cy = utm_xy([PEOPLES_SQUARE])[0]
    r = np.hypot(X - cx, Y - cy) / 1000.0
    dens = np.exp(-r / 4.5) + 0.25 * np.exp(-r / 12.0) + 0.012
    for lon, lat, amp, sig in TOWNS:
        tx, ty = utm_xy([(lon, lat)])[0]
        dens += amp * np.exp(-0.5 * (np.hypot(X - tx, Y - ty) / 1000.0 / sig) ** 2)
    dens *= np.exp(0.35 * smooth_noise(rng, 2.0))
    pop = np.zeros_like(dens)
    scale = TARGET_POPULATION / sum(d[3] for d in DISTRICTS)
    by_district = {}
    for i, (code, _zh, _en, people) in enumerate(DISTRICTS):
        w = frac[i] * dens
        pop += w * (people * scale / w.sum())
        by_district[code] = people * scale

    land = frac.sum(axis=0)
    level = np.zeros_like(land)
    for i, (code, *_rest) in enumerate(DISTRICTS):
        level += frac[i] * CROP_LEVEL.get(code, 0.0)
    density_km2 = np.divide(pop, np.maximum(land, 1e-9) * 0.25)
    urban = np.clip((density_km2 - 1500.0) / 8000.0, 0.0, 1.0)
    crop_noise = np.exp(0.30 * smooth_noise(rng, 1.5))
    crop = np.clip(np.divide(level, np.maximum(land, 1e-9)) * (1.0 - urban) * crop_noise,
                   0.0, 0.92) * land
    crop = np.where(land > 0, crop, 0.0)
    return (np.round(pop, 2).astype(np.float32), np.round(crop, 4).astype(np.float32),
            by_district)
