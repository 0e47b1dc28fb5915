"""Synthetic geography: the hand-digitised outline, waterways, district polygons and proxies."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely
from rasterio.transform import from_origin
from shapely.geometry import LineString, MultiPoint, Point, Polygon
from shapely.ops import split, unary_union

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
    utm_xy,
)

# --------------------------------------------------------------------------------------------
# Hand-digitised, approximate geography (lon, lat in WGS84; drawn from general knowledge of the
# coast, about 1-2 km accuracy at best)
# --------------------------------------------------------------------------------------------
MAINLAND = [  # clockwise from the Jiading / Kunshan border
    (121.100, 31.300), (121.130, 31.370), (121.170, 31.420), (121.220, 31.460),
    (121.270, 31.490), (121.320, 31.505), (121.370, 31.490), (121.410, 31.465),
    (121.450, 31.430), (121.480, 31.410), (121.505, 31.392), (121.530, 31.380),
    (121.580, 31.365), (121.620, 31.350), (121.660, 31.320), (121.710, 31.280),
    (121.760, 31.240), (121.800, 31.200), (121.840, 31.160), (121.870, 31.100),
    (121.890, 31.050), (121.920, 31.000), (121.950, 30.950), (121.975, 30.900),
    (121.970, 30.860), (121.930, 30.845), (121.850, 30.845), (121.780, 30.845),
    (121.700, 30.835), (121.620, 30.830), (121.550, 30.820), (121.500, 30.800),
    (121.450, 30.780), (121.410, 30.755), (121.360, 30.730), (121.320, 30.710),
    (121.290, 30.690), (121.240, 30.710), (121.180, 30.760), (121.120, 30.800),
    (121.050, 30.830), (121.000, 30.860), (120.970, 30.900), (120.990, 30.950),
    (120.930, 30.990), (120.880, 31.020), (120.870, 31.070), (120.900, 31.120),
    (120.970, 31.170), (121.020, 31.210), (121.070, 31.250),
]
CHONGMING_ISLAND = [
    (121.180, 31.820), (121.250, 31.865), (121.330, 31.860), (121.420, 31.800),
    (121.520, 31.740), (121.620, 31.690), (121.720, 31.630), (121.820, 31.580),
    (121.920, 31.550), (121.980, 31.510), (121.930, 31.470), (121.830, 31.490),
    (121.720, 31.520), (121.600, 31.560), (121.500, 31.590), (121.400, 31.620),
    (121.320, 31.670), (121.250, 31.730), (121.200, 31.770),
]
CHANGXING_ISLAND = [
    (121.560, 31.420), (121.630, 31.425), (121.720, 31.405), (121.800, 31.375),
    (121.820, 31.355), (121.760, 31.355), (121.680, 31.375), (121.600, 31.395),
    (121.555, 31.408),
]
HENGSHA_ISLAND = [
    (121.820, 31.330), (121.870, 31.345), (121.905, 31.320), (121.880, 31.285),
    (121.830, 31.295),
]
# Huangpu River centre line, from the Yangtze (Wusongkou) upstream to the western border
# (continued by the Taipu); it also splits the mainland before the Voronoi step
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

# Voronoi seeds per district (several for large districts; cells are dissolved per district)
SEEDS = {
    "310101": [(121.478, 31.236), (121.492, 31.222), (121.475, 31.205)],
    "310104": [(121.437, 31.195), (121.445, 31.165), (121.452, 31.140)],
    "310105": [(121.425, 31.218), (121.395, 31.212)],
    "310106": [(121.452, 31.233), (121.456, 31.258), (121.452, 31.285)],
    "310107": [(121.420, 31.245), (121.393, 31.252), (121.365, 31.265)],
    "310109": [(121.495, 31.258), (121.485, 31.283)],
    "310110": [(121.525, 31.270), (121.545, 31.290), (121.515, 31.305), (121.540, 31.322)],
    "310112": [(121.385, 31.110), (121.350, 31.160), (121.305, 31.190), (121.360, 31.060),
               (121.430, 31.070), (121.420, 31.120), (121.300, 31.150), (121.330, 31.100),
               (121.400, 31.025), (121.520, 31.075), (121.500, 31.045), (121.330, 31.065)],
    "310113": [(121.410, 31.315), (121.380, 31.350), (121.430, 31.390), (121.360, 31.465),
               (121.490, 31.365), (121.460, 31.330), (121.360, 31.425), (121.400, 31.430)],
    "310114": [(121.250, 31.380), (121.170, 31.300), (121.320, 31.300), (121.280, 31.335),
               (121.170, 31.370), (121.240, 31.450), (121.300, 31.260), (121.210, 31.330),
               (121.295, 31.400), (121.300, 31.440)],
    "310115": [(121.520, 31.235), (121.590, 31.260), (121.590, 31.330), (121.600, 31.200),
               (121.700, 31.190), (121.790, 31.150), (121.570, 31.120), (121.750, 31.050),
               (121.730, 31.000), (121.900, 30.900), (121.830, 30.910), (121.660, 31.050),
               (121.530, 31.150), (121.550, 31.190), (121.670, 31.280), (121.800, 31.050),
               (121.870, 31.000), (121.540, 31.240)],
    "310116": [(121.160, 30.880), (121.330, 30.730), (121.300, 30.850), (121.040, 30.860),
               (121.170, 30.800), (121.400, 30.770), (121.250, 30.770), (121.090, 30.820),
               (121.430, 30.805)],
    "310117": [(121.220, 31.030), (121.260, 31.110), (121.320, 31.130), (121.190, 31.100),
               (121.300, 31.050), (121.120, 30.950), (121.100, 31.050), (121.250, 30.950),
               (121.170, 31.020), (121.200, 30.920)],
    "310118": [(121.120, 31.150), (121.050, 31.110), (120.920, 31.040), (121.200, 31.160),
               (121.280, 31.180), (121.200, 31.240), (121.130, 31.250), (121.000, 31.160),
               (120.960, 31.080), (121.030, 30.970)],
    "310120": [(121.460, 30.920), (121.630, 30.920), (121.500, 30.850), (121.600, 30.860),
               (121.400, 30.880), (121.500, 30.980), (121.550, 30.980), (121.700, 30.930),
               (121.430, 30.990), (121.680, 30.870)],
}


# --------------------------------------------------------------------------------------------
# 1. Districts
# --------------------------------------------------------------------------------------------
def build_districts() -> gpd.GeoDataFrame:
    mainland = Polygon(utm_xy(MAINLAND))
    river = LineString(utm_xy(HUANGPU))
    halves = list(split(mainland, river).geoms)
    probe = Point(utm_xy([(121.60, 31.20)])[0])  # Zhangjiang: east of the Huangpu
    east = unary_union([h for h in halves if h.contains(probe)])
    west = unary_union([h for h in halves if not h.contains(probe)])
    envelope = mainland.envelope.buffer(50_000)
    # All linework (coast, river, Voronoi edges of each side) is noded once and polygonised into
    # faces; each district is the coverage union of its faces, so neighbouring districts share
    # bit-identical boundaries (an exact tiling).
    lines = [west.boundary, east.boundary]
    sides = []
    for side in (west, east):
        inner = side.buffer(-50.0)
        codes, pts = [], []
        for code, seeds in SEEDS.items():
            for xy in utm_xy(seeds):
                if inner.contains(Point(xy)):
                    codes.append(code)
                    pts.append(xy)
        vor = shapely.voronoi_polygons(MultiPoint(pts), extend_to=envelope)
        labelled = []
        for cell in vor.geoms:
            hit = [i for i, p in enumerate(pts) if cell.contains(Point(p))]
            labelled.append((cell, codes[hit[0]]))
            lines.append(cell.boundary)  # unclipped, so that the overlay nodes every crossing
        sides.append((side, labelled))
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(unary_union(lines))))
    by_code: dict[str, list] = {code: [] for code in SEEDS}
    for face in faces:
        rp = face.representative_point()
        hits = [s for s in sides if s[0].contains(rp)]
        if not hits:  # a face outside the mainland (between Voronoi edges at sea)
            continue
        code = next(c for cell, c in hits[0][1] if cell.contains(rp))
        by_code[code].append(face)
    geoms = {code: shapely.coverage_union_all(f) for code, f in by_code.items()}
    geoms["310151"] = shapely.MultiPolygon([Polygon(utm_xy(c)) for c in
                                            (CHONGMING_ISLAND, CHANGXING_ISLAND, HENGSHA_ISLAND)])
    rows = []
    for code, zh, en, _pop in DISTRICTS:
        g = to_lonlat(shapely.normalize(geoms[code]), None)
        if not g.is_valid:
            raise RuntimeError(f"district {code}: {shapely.is_valid_reason(g)}")
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
