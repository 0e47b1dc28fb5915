#!/usr/bin/env python
"""Generate the synthetic Shanghai demo dataset of Tongyuan (``data/shanghai-demo/``).

Every value written by this script is SYNTHETIC: plausible in size and place, but not an
inventory of real facilities, roads or people. District boundaries are APPROXIMATE polygons built
here from a hand-digitised outline of Shanghai split by a Voronoi tessellation; they are not
official boundaries.

The output is deterministic: the same seed gives the same bytes on every run (GeoPackage
timestamps, DBF dates and float formatting are pinned). Run::

    python data/generate_shanghai_demo.py --out data/shanghai-demo [--seed 20240101]

The calibration targets (annual totals over Shanghai, 2024) are the named constants below; the
generated activities are scaled so that their sums hit them exactly (after rounding).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import rasterio
import rasterio.features
import shapely
from rasterio.transform import from_origin
from shapely.geometry import LineString, MultiPoint, Point, Polygon
from shapely.ops import split, substring, unary_union

# GeoPackage writes the current time into gpkg_contents.last_change unless this is pinned
FIXED_TIMESTAMP = "2024-01-01T00:00:00Z"
DBF_DATE = "2024-01-01"

# --------------------------------------------------------------------------------------------
# Calibration targets: annual totals over Shanghai, year 2024 (edit here to recalibrate)
# --------------------------------------------------------------------------------------------
DEFAULT_SEED = 20240101
YEAR = 2024
DAYS_IN_YEAR = 366  # 2024 is a leap year

# Calibrated sector by sector to CEADs Shanghai 2019 (IPCC sectoral CO2; config/checks.yaml
# published.sector_co2), with aviation cruise and bunker fuel as memo items (config/memo_items.csv)
TARGET_POWER_COAL_T = 26.3e6            # t raw coal, PC units (CEADs power raw coal 49.1 Mt CO2)
TARGET_POWER_GAS_M3 = 6.3e9             # m**3 natural gas, combined-cycle units
TARGET_BOILER_COAL_T = 6.0e6            # t coal, industrial boilers
TARGET_BOILER_GAS_M3 = 4.0e9            # m**3 natural gas, industrial boilers
TARGET_BOILER_OIL_T = 0.8e6             # t fuel oil, industrial boilers
TARGET_MSW_T = 10.0e6                   # t municipal solid waste incinerated
TARGET_VKM = {                          # vehicle-km per year
    "passenger_car": 6.6e10,            # 3.66 Mt gasoline = CEADs household gasoline 10.9 Mt CO2
    "bus": 1.0e9,
    "light_truck": 3.0e9,
    "heavy_truck": 5.0e9,
}
TARGET_SHIP_OCEAN_T = 0.5e6             # t marine diesel, ocean-going vessels in port/coastal
TARGET_SHIP_INLAND_T = 0.32e6           # t marine diesel, inland vessels (port 2003: 0.95 Mt)
TARGET_RES_GAS_M3 = 3.0e9               # m**3, residential natural gas
TARGET_RES_LPG_T = 0.3e6                # t, residential LPG
TARGET_COMMERCIAL_DIESEL_T = 1.42e6     # t diesel, commercial boilers/generators (CEADs comm.)
TARGET_SOLVENT_T = 0.4e6                # t solvent-containing products
TARGET_OFFROAD_DIESEL_T = 0.63e6        # t diesel, construction machinery (CEADs construction 2.0)
TARGET_AGRI_DIESEL_T = 0.28e6           # t diesel, agricultural machinery (CEADs agriculture 0.9)
TARGET_PIG_HEAD = 1.0e6                 # head, annual average
TARGET_CATTLE_HEAD = 6.0e4
TARGET_POULTRY_HEAD = 1.0e7
TARGET_FERTILISER_T_N = 5.0e4           # t N applied, of which RICE_N_SHARE on flooded rice
RICE_N_SHARE = 0.6
TARGET_RICE_HA = 1.0e5                  # ha harvested rice (single crop)
TARGET_RESIDUE_BURNED_T = 5.0e4         # t crop residue burned in the open (despite the ban)
TARGET_ROAD_DUST_VKM = 7.5e10           # vehicle-km on paved roads (all classes)
TARGET_CONSTRUCTION_M2 = 1.5e8          # m**2 of active construction sites over the year
TARGET_GASOLINE_SOLD_T = 3.7e6          # t gasoline through depots and service stations
TARGET_CAR_STOCK = 4.4e6                # gasoline cars (evaporative emissions)
TARGET_LANDFILL_T = 2.0e6               # t MSW landfilled per year (Laogang)
TARGET_LTO_KEROSENE_T = 0.74e6          # t jet kerosene in LTO cycles (10 % of airport sales)
TARGET_POPULATION = 24.9e6              # residents, sum of proxies/population.tif

# --------------------------------------------------------------------------------------------
# Grids and coordinate systems
# --------------------------------------------------------------------------------------------
UTM = pyproj.CRS.from_epsg(32651)
WGS84 = pyproj.CRS.from_epsg(4326)
TO_UTM = pyproj.Transformer.from_crs(WGS84, UTM, always_xy=True)
TO_LL = pyproj.Transformer.from_crs(UTM, WGS84, always_xy=True)
GRID_X0, GRID_Y0, GRID_X1, GRID_Y1 = 295000.0, 3392000.0, 425000.0, 3530000.0  # default grid
PROXY_RES = 500.0
PROXY_NX, PROXY_NY = 260, 276
SUPERSAMPLE = 5  # land fraction of a proxy pixel from 5 x 5 sub-pixels (100 m)
PEOPLES_SQUARE = (121.475, 31.230)

BOUNDARY_NOTE = ("APPROXIMATE synthetic boundary (hand-digitised outline split by a Voronoi "
                 "tessellation); not an official boundary; demonstration only")

# District code, Chinese name, English name, approximate resident population (synthetic,
# census-like shares), whether it has agriculture
DISTRICTS = [
    ("310101", "黄浦区", "Huangpu", 0.662e6),
    ("310104", "徐汇区", "Xuhui", 1.113e6),
    ("310105", "长宁区", "Changning", 0.693e6),
    ("310106", "静安区", "Jing'an", 0.976e6),
    ("310107", "普陀区", "Putuo", 1.240e6),
    ("310109", "虹口区", "Hongkou", 0.757e6),
    ("310110", "杨浦区", "Yangpu", 1.242e6),
    ("310112", "闵行区", "Minhang", 2.654e6),
    ("310113", "宝山区", "Baoshan", 2.235e6),
    ("310114", "嘉定区", "Jiading", 1.834e6),
    ("310115", "浦东新区", "Pudong New Area", 5.681e6),
    ("310116", "金山区", "Jinshan", 0.823e6),
    ("310117", "松江区", "Songjiang", 1.910e6),
    ("310118", "青浦区", "Qingpu", 1.271e6),
    ("310120", "奉贤区", "Fengxian", 1.141e6),
    ("310151", "崇明区", "Chongming", 0.638e6),
]
CENTRAL = {"310101", "310104", "310105", "310106", "310107", "310109", "310110"}

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
# Small helpers
# --------------------------------------------------------------------------------------------
def rng_for(seed: int, stream: int) -> np.random.Generator:
    """An independent random stream per component, so editing one leaves the others alone."""
    return np.random.default_rng([seed, stream])


def utm_xy(lonlat) -> np.ndarray:
    a = np.asarray(lonlat, dtype=float).reshape(-1, 2)
    x, y = TO_UTM.transform(a[:, 0], a[:, 1])
    return np.column_stack([x, y])


def to_utm(geom):
    return shapely.transform(geom, lambda c: utm_xy(c))


def to_lonlat(geom, decimals: int | None = 6):
    def f(c):
        lon, lat = TO_LL.transform(c[:, 0], c[:, 1])
        ll = np.column_stack([lon, lat])
        return ll if decimals is None else np.round(ll, decimals)
    return shapely.transform(geom, f)


def round_to_total(weights, total: float, decimals: int) -> np.ndarray:
    """Split ``total`` in proportion to ``weights``, rounded to ``decimals`` places, so that the
    rounded parts add up to ``total`` exactly (largest-remainder method, ties by position)."""
    w = np.asarray(weights, dtype=float)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be >= 0 with a positive sum")
    scale = 10 ** decimals
    units = int(round(total * scale))
    raw = w / w.sum() * units
    base = np.floor(raw).astype(np.int64)
    rest = units - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    return base / scale


def ellipse(cx: float, cy: float, a: float, b: float, rot_deg: float = 0.0, n: int = 720,
            wobble: list[tuple[int, float, float]] | None = None) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    for k, amp, phase in wobble or []:
        r += amp * np.sin(k * t + phase)
    x, y = a * r * np.cos(t), b * r * np.sin(t)
    c, s = math.cos(math.radians(rot_deg)), math.sin(math.radians(rot_deg))
    pts = np.column_stack([cx + c * x - s * y, cy + s * x + c * y])
    return np.vstack([pts, pts[:1]])


def parts(geom) -> list:
    """The LineString / Polygon parts of any geometry."""
    if geom is None or geom.is_empty:
        return []
    if hasattr(geom, "geoms"):
        out = []
        for g in geom.geoms:
            out.extend(parts(g))
        return out
    return [geom]


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


# --------------------------------------------------------------------------------------------
# 3. Point sources
# --------------------------------------------------------------------------------------------
class Siting:
    """Checks a candidate stack position: on land (300 m from the coast), 100 m inside a
    district, 400 m from the Huangpu centre line and 150 m from smaller waterways."""

    def __init__(self, dist_gdf: gpd.GeoDataFrame):
        self.codes = list(dist_gdf["district_code"])
        utm_geoms = [to_utm(g) for g in dist_gdf.geometry]
        self.inner = [g.buffer(-100.0) for g in utm_geoms]
        land = unary_union(utm_geoms)
        self.land_in = land.buffer(-300.0)
        water = [LineString(utm_xy(HUANGPU)).buffer(400.0)]
        water += [LineString(utm_xy(w)).buffer(150.0) for w in (SUZHOU_CREEK, DIANPU, DAZHI)]
        self.water = unary_union(water)
        for g in self.inner + [self.land_in, self.water]:
            shapely.prepare(g)

    def district(self, x: float, y: float) -> str | None:
        if not shapely.contains_xy(self.land_in, x, y) or shapely.contains_xy(self.water, x, y):
            return None
        if not (GRID_X0 < x < GRID_X1 and GRID_Y0 < y < GRID_Y1):
            return None
        for code, g in zip(self.codes, self.inner, strict=True):
            if shapely.contains_xy(g, x, y):
                return code
        return None

    def place(self, rng: np.random.Generator, lon: float, lat: float, radius: float):
        """A valid position within ``radius`` m of the anchor (the radius grows if needed)."""
        ax, ay = utm_xy([(lon, lat)])[0]
        rad = radius
        for _ in range(12):
            for _ in range(60):
                ang = rng.uniform(0, 2 * np.pi)
                dist = rad * math.sqrt(rng.uniform())
                x, y = ax + dist * math.cos(ang), ay + dist * math.sin(ang)
                code = self.district(x, y)
                if code is not None:
                    return x, y, code, math.hypot(x - ax, y - ay)
            rad *= 1.6
        raise RuntimeError(f"no valid site near {lon}, {lat}")


# (name, lon, lat, [(unit capacity MW, count)]) synthetic units near real plant locations
COAL_PLANTS = [
    ("Waigaoqiao coal power", 121.600, 31.343, [(320, 4), (900, 2), (1000, 2)]),
    ("Shidongkou coal power", 121.398, 31.452, [(325, 4), (628, 2), (660, 2)]),
    ("Wujing coal power", 121.452, 31.062, [(600, 2), (300, 2)]),
    ("Caojing coal power", 121.400, 30.772, [(1000, 2)]),
    ("Baowu captive coal power", 121.440, 31.398, [(350, 3)]),
    ("Gaoqiao coal power", 121.583, 31.348, [(300, 2)]),
]
GAS_PLANTS = [
    ("Shidongkou gas power", 121.388, 31.448, [(390, 3)]),
    ("Zhabei gas power", 121.438, 31.335, [(400, 2)]),
    ("Minhang gas power", 121.400, 31.035, [(460, 2)]),
    ("Lingang gas power", 121.905, 30.880, [(350, 4)]),
    ("Caojing gas CHP", 121.425, 30.790, [(300, 2)]),
    ("Fengxian gas power", 121.540, 30.870, [(400, 2)]),
]
# Integrated steel works, one row per stack and PROCESS (issue 17): each process has its own
# technology key (its own factors in config/emission_factors.csv, per unit of its own throughput)
# and its own control; no plant-level factor is split over stacks.
# (process = technology, stacks, control, height range, diameter, temperature K, velocity)
STEEL_STACKS = [
    ("sinter_strand", 6, "scr+sdfgd+ff", (100, 120), (5.0, 7.0), (350, 380), (12, 18)),
    ("pellet_plant", 1, "sdfgd+ff", (80, 100), (4.0, 5.0), (350, 370), (12, 16)),
    ("coke_oven", 6, "sdfgd+ff", (100, 120), (3.5, 4.5), (420, 460), (8, 12)),
    ("blast_furnace", 4, "ff", (60, 90), (3.0, 4.0), (400, 440), (10, 15)),
    ("basic_oxygen_furnace", 4, "esp", (40, 70), (3.0, 4.5), (330, 360), (12, 18)),
    ("electric_arc_furnace", 1, "none", (30, 50), (3.0, 4.0), (330, 350), (12, 16)),
    ("reheating_furnace", 5, "lnb", (60, 80), (2.5, 3.5), (420, 480), (8, 12)),
    ("lime_kiln", 3, "ff", (30, 50), (1.5, 2.5), (380, 420), (10, 14)),
    ("steelworks_gas_boiler", 3, "scr+sdfgd+ff", (80, 120), (3.5, 5.0), (340, 360), (12, 18)),
    ("steel_fugitive", 1, "none", (10, 20), (10.0, 20.0), (295, 305), (0.5, 1.0)),  # no stack
]
# annual throughput per steel process (t of the process product, GJ for the gas boilers)
STEEL_ACTIVITY = {
    "sinter_strand": (13.2e6, "t"),          # 1.1 t sinter per t BOF steel (IPCC 2006 V3C4 Tier 1)
    "pellet_plant": (1.5e6, "t"),
    "coke_oven": (3.84e6, "t"),              # 0.32 t coke per t BOF steel (IPCC 2006 V3C4)
    "blast_furnace": (11.0e6, "t"),          # t hot metal
    "basic_oxygen_furnace": (12.0e6, "t"),   # t crude steel, BOF route
    "electric_arc_furnace": (1.0e6, "t"),    # t crude steel, EAF route
    "reheating_furnace": (10.0e6, "t"),      # t steel rolled
    "lime_kiln": (0.8e6, "t"),               # t lime
    "steelworks_gas_boiler": (4.8e7, "GJ"),  # GJ blast-furnace and coke-oven gas fired
    "steel_fugitive": (13.0e6, "t"),         # t crude steel: stockyards, cast house, roads
}
STEEL_SITE = ("Baowu Baoshan steel works", 121.455, 31.390, 1800.0)
REFINERIES = [("Jinshan petrochemical refinery", 121.330, 30.738, 14.0),
              ("Gaoqiao refinery", 121.588, 31.330, 11.0)]
REFINERY_UNITS = [  # process, technology, weight, height range, diameter, temperature K, velocity
    ("crude_unit_heater", "process_heater", 3.0, (80, 100), (3.0, 4.0), (420, 460), (8, 12)),
    ("vacuum_heater", "process_heater", 1.5, (70, 90), (2.5, 3.5), (420, 460), (8, 12)),
    ("fcc_regenerator", "fcc_regenerator", 1.0, (90, 120), (3.0, 4.0), (330, 345), (12, 18)),
    ("reformer_heater", "process_heater", 1.0, (60, 80), (2.5, 3.5), (430, 470), (8, 12)),
    ("hydrocracker_heater", "process_heater", 1.0, (60, 80), (2.0, 3.0), (430, 470), (8, 12)),
    ("coker_heater", "process_heater", 1.0, (70, 90), (2.0, 3.0), (430, 470), (8, 12)),
    ("sulphur_recovery", "sulphur_recovery", 1.0, (80, 100), (1.5, 2.5), (330, 350), (10, 14)),
    ("utility_boiler", "refinery_gas_boiler", 1.0, (120, 150), (4.0, 5.5), (325, 340), (15, 20)),
    ("fugitive_and_storage", "refinery_fugitive", 1.0, (10, 20), (1.0, 1.5), (290, 300), (1, 2)),
]
# per refinery process: fuel, control, activity unit, city total (25 Mt crude; 2.8 GJ refinery
# fuel per t crude; 0.32 t FCC feed per t crude)
REFINERY_PROCESS = {
    "process_heater": ("refinery_gas", "lnb", "GJ", 5.5e7),
    "fcc_regenerator": ("none", "scr+wfgd+esp", "t", 8.0e6),
    "sulphur_recovery": ("none", "wfgd", "t", 25.0e6),
    "refinery_gas_boiler": ("refinery_gas", "lnb+scr", "GJ", 3.0e7),
    "refinery_fugitive": ("none", "none", "t", 25.0e6),
}
INCINERATORS = [  # name, lon, lat, capacity t/d, stacks
    ("Laogang waste-to-energy phase I", 121.855, 31.052, 3000, 2),
    ("Laogang waste-to-energy phase II", 121.862, 31.040, 6000, 3),
    ("Jiangqiao waste-to-energy", 121.318, 31.266, 1500, 2),
    ("Yuqiao waste-to-energy", 121.655, 31.135, 1500, 2),
    ("Songjiang Tianmashan waste-to-energy", 121.170, 31.080, 2000, 2),
    ("Jinshan waste-to-energy", 121.300, 30.800, 800, 1),
    ("Fengxian waste-to-energy", 121.470, 30.875, 1000, 1),
    ("Qingpu waste-to-energy", 121.080, 31.175, 1000, 1),
    ("Chongming waste-to-energy", 121.550, 31.610, 500, 1),
    ("Baoshan waste-to-energy", 121.370, 31.430, 3000, 2),
    ("Jiading waste-to-energy", 121.230, 31.425, 1500, 2),
]
INDUSTRIAL_ZONES = [  # name, lon, lat, radius m, weight; boilers are spread over these
    ("Jiading industrial zone", 121.230, 31.360, 3000, 1.2),
    ("Anting auto park", 121.170, 31.290, 2500, 1.0),
    ("Nanxiang", 121.310, 31.300, 1500, 0.5),
    ("Malu", 121.270, 31.330, 1500, 0.5),
    ("Songjiang industrial zone", 121.240, 31.060, 3500, 1.3),
    ("Jiuting-Sijing", 121.300, 31.120, 2000, 0.6),
    ("Minhang economic zone", 121.410, 31.040, 2500, 1.0),
    ("Xinzhuang industrial park", 121.370, 31.100, 1800, 0.6),
    ("Jinqiao export zone", 121.600, 31.260, 2500, 1.0),
    ("Zhangjiang hi-tech park", 121.600, 31.200, 2500, 0.8),
    ("Waigaoqiao free-trade zone", 121.605, 31.330, 2000, 0.8),
    ("Kangqiao industrial zone", 121.580, 31.140, 2000, 0.7),
    ("Qingpu industrial zone", 121.100, 31.170, 3000, 1.0),
    ("Fengxian economic zone", 121.480, 30.930, 3000, 1.0),
    ("Xinghuo development zone", 121.560, 30.880, 2000, 0.5),
    ("Jinshan industrial zone", 121.220, 30.850, 3000, 0.9),
    ("Caojing chemical park", 121.420, 30.790, 2000, 0.8),
    ("Baoshan industrial park", 121.400, 31.390, 2500, 0.9),
    ("Lingang industrial zone", 121.860, 30.920, 3000, 0.8),
    ("Chongming industrial park", 121.450, 31.620, 2000, 0.2),
]
BOILER_COUNTS = {"coal": 30, "natural_gas": 100, "fuel_oil": 20}
AIRPORTS = [("Pudong international airport LTO", 121.805, 31.143, 0.62),  # share of LTO fuel
            ("Hongqiao airport LTO", 121.336, 31.198, 0.38)]


def _u(rng, lo_hi, decimals=1):
    return round(float(rng.uniform(*lo_hi)), decimals)


def build_points(siting: Siting, seed: int) -> pd.DataFrame:
    rng = rng_for(seed, 3)
    rows: list[dict] = []
    moved: list[tuple[str, float]] = []

    def add(name, sector, subsector, fuel, tech, control, weight, unit, anchor, radius,
            height, diam, temp, vel):
        x, y, code, d = siting.place(rng, anchor[0], anchor[1], radius)
        lon, lat = TO_LL.transform(x, y)
        moved.append((name, max(0.0, d - radius)))
        rows.append({"name": name, "sector": sector, "subsector": subsector, "fuel": fuel,
                     "technology": tech, "control": control, "weight": weight,
                     "activity_unit": unit, "lon": round(lon, 6), "lat": round(lat, 6),
                     "stack_height_m": height, "stack_diameter_m": diam, "exit_temp_k": temp,
                     "exit_velocity_m_s": vel, "district_code": code})

    for name, lon, lat, units in COAL_PLANTS:
        k = 0
        for mw, count in units:
            for _ in range(count):
                k += 1
                big = mw >= 900
                load = rng.uniform(0.60, 0.75) if big else rng.uniform(0.50, 0.68)
                heat = 0.95 if big else 1.05  # larger units burn less coal per MWh
                add(f"{name} unit {k} ({mw} MW)", "power", "coal_power", "coal",
                    "pulverised_coal", "lnb+scr+wfgd+esp+wesp", mw * load * heat, "t",
                    (lon, lat), 700.0,
                    _u(rng, (210, 240) if big else (150, 210), 0),
                    _u(rng, (7.5, 9.0) if big else (6.0, 7.5)), _u(rng, (320, 335), 0),
                    _u(rng, (15, 25)))
    for name, lon, lat, units in GAS_PLANTS:
        k = 0
        for mw, count in units:
            for _ in range(count):
                k += 1
                add(f"{name} unit {k} ({mw} MW)", "power", "gas_power", "natural_gas",
                    "gas_combined_cycle", "lnb+scr", mw * rng.uniform(0.30, 0.50), "m**3",
                    (lon, lat), 500.0, _u(rng, (60, 80), 0), _u(rng, (5.0, 7.0)),
                    _u(rng, (360, 385), 0), _u(rng, (15, 20)))
    sname, slon, slat, srad = STEEL_SITE
    for tech, n, control, hr, dr, tr, vr in STEEL_STACKS:
        unit = STEEL_ACTIVITY[tech][1]
        fuel = "steelworks_gas" if tech == "steelworks_gas_boiler" else "none"
        for k in range(1, n + 1):
            add(f"{sname} {tech.replace('_', ' ')} stack {k}", "industry_process", tech, fuel,
                tech, control, rng.uniform(0.8, 1.2), unit, (slon, slat),
                srad, _u(rng, hr, 0), _u(rng, dr), _u(rng, tr, 0), _u(rng, vr))
    for name, lon, lat, mt in REFINERIES:
        for sub, tech, w, hr, dr, tr, vr in REFINERY_UNITS:
            fuel, control, unit, _total = REFINERY_PROCESS[tech]
            add(f"{name} {sub.replace('_', ' ')}", "industry_process", sub, fuel, tech,
                control, mt * w * rng.uniform(0.85, 1.15), unit, (lon, lat), 1200.0,
                _u(rng, hr, 0), _u(rng, dr), _u(rng, tr, 0), _u(rng, vr))
    for name, lon, lat, tpd, n in INCINERATORS:
        for k in range(1, n + 1):
            add(f"{name} stack {k}", "waste", "msw_incineration", "msw", "incinerator",
                "sncr+sdfgd+ff", tpd / n * rng.uniform(0.85, 1.0), "t", (lon, lat), 400.0,
                _u(rng, (75, 90), 0), _u(rng, (2.0, 3.2)), _u(rng, (410, 430), 0),
                _u(rng, (12, 18)))
    zone_w = np.array([z[4] for z in INDUSTRIAL_ZONES])
    boiler_spec = {  # control, height, diameter, temperature, velocity
        "coal": ("lnb+wfgd+esp", (35, 45), (1.5, 2.5), (325, 335), (8, 14)),
        "natural_gas": ("lnb", (15, 30), (0.5, 1.5), (390, 430), (5, 12)),
        "fuel_oil": ("wfgd+esp", (25, 40), (1.0, 2.0), (330, 340), (6, 12)),
    }
    counter = 0
    for fuel, count in BOILER_COUNTS.items():
        control, hr, dr, tr, vr = boiler_spec[fuel]
        for _ in range(count):
            counter += 1
            zi = int(rng.choice(len(INDUSTRIAL_ZONES), p=zone_w / zone_w.sum()))
            zname, zlon, zlat, zrad, _w = INDUSTRIAL_ZONES[zi]
            add(f"{zname} boiler {counter:03d} ({fuel.replace('_', ' ')})",
                "industry_combustion", "industrial_boiler", fuel, "industrial_boiler", control,
                float(rng.lognormal(0.0, 0.8)), "t" if fuel != "natural_gas" else "m**3",
                (zlon, zlat), zrad, _u(rng, hr, 0), _u(rng, dr), _u(rng, tr, 0), _u(rng, vr))

    for name, lon, lat, share in AIRPORTS:  # LTO below 3 000 ft, one point per airport
        add(name, "aviation", "lto", "jet_kerosene", "lto_cycle", "none", share, "t",
            (lon, lat), 800.0, 10.0, 5.0, 600.0, 30.0)
    add("Laogang landfill (gas flare)", "waste", "landfill", "msw", "landfill", "none", 1.0, "t",
        (121.86, 31.06), 800.0, 10.0, 1.0, 300.0, 1.0)

    df = pd.DataFrame(rows)
    targets = [  # (mask columns, total, decimals)
        (("power", "coal"), TARGET_POWER_COAL_T, 1),
        (("power", "natural_gas"), TARGET_POWER_GAS_M3, 0),
        (("industry_combustion", "coal"), TARGET_BOILER_COAL_T, 1),
        (("industry_combustion", "natural_gas"), TARGET_BOILER_GAS_M3, 0),
        (("industry_combustion", "fuel_oil"), TARGET_BOILER_OIL_T, 1),
        *((("industry_process", tech), total, 1) for tech, (total, _u) in STEEL_ACTIVITY.items()),
        *((("industry_process", tech), spec[3], 1) for tech, spec in REFINERY_PROCESS.items()),
        (("waste", "incinerator"), TARGET_MSW_T, 1),
        (("waste", "landfill"), TARGET_LANDFILL_T, 1),
        (("aviation", "lto_cycle"), TARGET_LTO_KEROSENE_T, 1),
    ]
    df["activity"] = np.nan
    for (sector, key), total, dec in targets:
        m = (df["sector"] == sector) & ((df["fuel"] == key) | (df["technology"] == key))
        df.loc[m, "activity"] = round_to_total(df.loc[m, "weight"], total, dec)
    assert df["activity"].notna().all()
    df.insert(0, "source_id", [f"P{i:04d}" for i in range(1, len(df) + 1)])
    df.attrs["max_move_m"] = max(d for _n, d in moved)
    cols = ["source_id", "name", "sector", "subsector", "fuel", "technology", "control",
            "activity", "activity_unit", "lon", "lat", "stack_height_m", "stack_diameter_m",
            "exit_temp_k", "exit_velocity_m_s", "district_code"]
    return df[cols]


# --------------------------------------------------------------------------------------------
# 4. Roads
# --------------------------------------------------------------------------------------------
RINGS = [  # name, centre, semi-axes km (E-W, N-S), rotation, AADT, shares car/bus/lt/ht
    ("Inner Ring", (121.490, 31.228), 6.0, 4.3, 0.0, 120_000, (0.93, 0.012, 0.05, 0.008)),
    ("Middle Ring", (121.490, 31.225), 10.0, 8.5, 5.0, 110_000, (0.90, 0.010, 0.06, 0.03)),
    ("Outer Ring S20", (121.500, 31.220), 17.0, 15.5, 10.0, 100_000, (0.78, 0.01, 0.08, 0.13)),
    ("Suburban Ring G1503", (121.470, 31.160), 34.0, 30.0, 15.0, 60_000,
     (0.70, 0.01, 0.09, 0.20)),
]
EXPRESSWAYS = [  # name, waypoints, AADT, shares
    ("G2", [(121.410, 31.250), (121.330, 31.285), (121.250, 31.300), (121.170, 31.305),
            (121.090, 31.310)], 90_000, (0.80, 0.01, 0.07, 0.12)),
    ("G42/S5", [(121.420, 31.270), (121.340, 31.320), (121.270, 31.370), (121.230, 31.420),
                (121.200, 31.470)], 70_000, (0.80, 0.01, 0.07, 0.12)),
    ("G60", [(121.430, 31.180), (121.350, 31.140), (121.250, 31.080), (121.150, 31.020),
             (121.060, 30.950), (120.980, 30.880)], 90_000, (0.80, 0.01, 0.07, 0.12)),
    ("G50", [(121.370, 31.200), (121.280, 31.185), (121.150, 31.150), (121.030, 31.110),
             (120.890, 31.075)], 70_000, (0.80, 0.01, 0.07, 0.12)),
    ("G15", [(121.300, 31.500), (121.330, 31.420), (121.345, 31.320), (121.320, 31.190),
             (121.320, 31.060), (121.340, 30.930), (121.300, 30.810), (121.220, 30.720)],
     60_000, (0.72, 0.01, 0.09, 0.18)),
    ("S4", [(121.450, 31.100), (121.460, 30.980), (121.420, 30.870), (121.350, 30.770)],
     50_000, (0.76, 0.01, 0.08, 0.15)),
    ("S32", [(121.310, 31.190), (121.400, 31.090), (121.500, 31.060), (121.620, 31.070),
             (121.720, 31.100), (121.800, 31.140)], 60_000, (0.80, 0.01, 0.08, 0.11)),
    ("S1 Yingbin", [(121.550, 31.200), (121.650, 31.180), (121.730, 31.165),
                    (121.790, 31.155)], 70_000, (0.90, 0.02, 0.06, 0.02)),
    ("S2 Hulu", [(121.560, 31.130), (121.660, 31.040), (121.760, 30.960), (121.850, 30.910),
                 (121.900, 30.880)], 50_000, (0.75, 0.01, 0.08, 0.16)),
    ("Yan'an Elevated", [(121.320, 31.197), (121.380, 31.205), (121.430, 31.220),
                         (121.470, 31.232), (121.492, 31.238)], 110_000,
     (0.94, 0.02, 0.04, 0.0)),
    ("North-South Elevated", [(121.460, 31.330), (121.463, 31.290), (121.468, 31.255),
                              (121.474, 31.230), (121.468, 31.200), (121.452, 31.170),
                              (121.440, 31.130)], 110_000, (0.94, 0.02, 0.04, 0.0)),
    ("G40", [(121.600, 31.290), (121.620, 31.400), (121.700, 31.440), (121.735, 31.530),
             (121.600, 31.620), (121.500, 31.700), (121.430, 31.780), (121.410, 31.860)],
     30_000, (0.80, 0.01, 0.08, 0.11)),
    ("Chongming Chenhai Road", [(121.220, 31.780), (121.320, 31.700), (121.420, 31.640),
                                (121.550, 31.590), (121.700, 31.550), (121.850, 31.515),
                                (121.940, 31.500)], 12_000, (0.82, 0.02, 0.08, 0.08)),
]
GRID_ZONES = [  # name, centre, radius km, spacing km, rotation deg, AADT, shares
    ("core", PEOPLES_SQUARE, 18.0, 0.85, 8.0, None, (0.88, 0.04, 0.06, 0.02)),
    ("Jiading", (121.250, 31.375), 6.0, 1.1, -10.0, 14_000, (0.85, 0.03, 0.07, 0.05)),
    ("Songjiang", (121.220, 31.035), 6.5, 1.1, 5.0, 14_000, (0.85, 0.03, 0.07, 0.05)),
    ("Qingpu", (121.110, 31.150), 5.0, 1.2, 0.0, 12_000, (0.85, 0.03, 0.07, 0.05)),
    ("Nanqiao", (121.460, 30.920), 5.0, 1.2, 12.0, 12_000, (0.85, 0.03, 0.07, 0.05)),
    ("Lingang", (121.910, 30.895), 5.0, 1.2, 30.0, 12_000, (0.85, 0.03, 0.07, 0.05)),
    ("Jinshan", (121.330, 30.750), 4.0, 1.2, 20.0, 10_000, (0.82, 0.03, 0.07, 0.08)),
    ("Chuansha", (121.700, 31.190), 4.5, 1.2, 0.0, 12_000, (0.85, 0.03, 0.07, 0.05)),
    ("Huinan", (121.760, 31.050), 3.5, 1.2, 0.0, 10_000, (0.85, 0.03, 0.07, 0.05)),
    ("Anting", (121.160, 31.295), 3.5, 1.2, 0.0, 12_000, (0.82, 0.03, 0.07, 0.08)),
    ("Zhujing", (121.160, 30.900), 3.0, 1.2, 0.0, 9_000, (0.82, 0.03, 0.07, 0.08)),
    ("Chengqiao", (121.400, 31.630), 3.0, 1.0, 25.0, 8_000, (0.85, 0.04, 0.07, 0.04)),
    ("Minhang south", (121.400, 31.040), 4.0, 1.1, 0.0, 12_000, (0.84, 0.03, 0.07, 0.06)),
    ("rural", None, None, 3.0, 3.0, 4_000, (0.75, 0.02, 0.10, 0.13)),
]
VEHICLES = [("passenger_car", "gasoline"), ("bus", "diesel"), ("light_truck", "diesel"),
            ("heavy_truck", "diesel")]


def _jitter_line(pts: np.ndarray, rng: np.random.Generator, step: float, amp: float):
    line = shapely.segmentize(LineString(pts), step)
    c = np.asarray(line.coords).copy()
    if len(c) > 2:
        c[1:-1] += rng.normal(0.0, amp, size=(len(c) - 2, 2))
    return LineString(c)


def _grid_lines(rng, cx, cy, half, spacing, rot):
    lines = []
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    n = int(half // spacing)
    for orient in (0, 1):
        for i in range(-n, n + 1):
            off = i * spacing + rng.uniform(-0.2, 0.2) * spacing
            t = np.linspace(-half, half, max(3, int(2 * half / 250.0) + 1))
            u = off + rng.normal(0.0, 0.03 * spacing, size=t.size).cumsum() * 0.3
            xy = np.column_stack([u, t]) if orient == 0 else np.column_stack([t, u])
            xr = cx + c * xy[:, 0] - s * xy[:, 1]
            yr = cy + s * xy[:, 0] + c * xy[:, 1]
            lines.append(LineString(np.column_stack([xr, yr])))
    return lines


def _segments(line, target: float):
    """Split a line into equal pieces no longer than ``target`` m; drop pieces under 100 m."""
    out = []
    for p in parts(line):
        if p.geom_type != "LineString" or p.length < 100.0:
            continue
        n = max(1, math.ceil(p.length / target))
        step = p.length / n
        for k in range(n):
            seg = substring(p, k * step, (k + 1) * step)
            if seg.geom_type == "LineString" and seg.length >= 100.0:
                out.append(seg)
    return out


def build_roads(land, seed: int) -> gpd.GeoDataFrame:
    rng = rng_for(seed, 4)
    land_in = land.buffer(-150.0)
    shapely.prepare(land_in)
    segs: list[tuple] = []  # (geometry, subsector, aadt, shares)
    pcx, pcy = utm_xy([PEOPLES_SQUARE])[0]
    for _name, centre, a, b, rot, aadt, shares in RINGS:
        cx, cy = utm_xy([centre])[0]
        wob = [(k, float(rng.uniform(0.005, 0.02)), float(rng.uniform(0, 2 * np.pi)))
               for k in (2, 3, 5)]
        ring = LineString(ellipse(cx, cy, a * 1000, b * 1000, rot, 900, wob))
        for s in _segments(ring.intersection(land_in), 800.0):
            segs.append((s, "ring_road", aadt, shares))
    for _name, wps, aadt, shares in EXPRESSWAYS:
        line = _jitter_line(utm_xy(wps), rng, 250.0, 25.0)
        for s in _segments(line.intersection(land_in), 1000.0):
            segs.append((s, "expressway", aadt, shares))
    used = None
    for name, centre, radius, spacing, rot, aadt, shares in GRID_ZONES:
        if name == "rural":
            zone = land_in if used is None else land_in.difference(used)
            cx, cy = utm_xy([(121.45, 31.25)])[0]
            half = 75_000.0
        else:
            cx, cy = utm_xy([centre])[0]
            circle = Point(cx, cy).buffer(radius * 1000.0, quad_segs=32)
            zone = circle.intersection(land_in)
            if used is not None:
                zone = zone.difference(used)
            used = circle if used is None else used.union(circle)
            half = radius * 1000.0
        shapely.prepare(zone)
        target = 800.0 if name == "rural" else 500.0
        for line in _grid_lines(rng, cx, cy, half, spacing * 1000.0, rot):
            for s in _segments(line.intersection(zone), target):
                if aadt is None:  # core: busier towards the centre
                    m = s.interpolate(0.5, normalized=True)
                    r = math.hypot(m.x - pcx, m.y - pcy) / 1000.0
                    a_ = 6_000.0 + 24_000.0 * math.exp(-r / 8.0)
                else:
                    a_ = aadt
                segs.append((s, "arterial", a_, shares))

    geoms_ll = [to_lonlat(s, 6) for s, *_ in segs]
    lengths_km = np.array([s.length / 1000.0 for s, *_ in segs])
    keep = np.array([len(set(g.coords)) >= 2 for g in geoms_ll])
    wkb = [shapely.to_wkb(g) for g in geoms_ll]
    seen: set[bytes] = set()
    for i, w in enumerate(wkb):  # distinct segments only
        if w in seen:
            keep[i] = False
        seen.add(w)
    idx = np.flatnonzero(keep)
    n = idx.size
    seg_ids = [f"R{i:06d}" for i in range(1, n + 1)]
    cols = {"source_id": [], "sector": [], "subsector": [], "fuel": [], "technology": [],
            "control": [], "activity": [], "activity_unit": [], "geometry": []}
    acts = {}
    for v, (veh, _fuel) in enumerate(VEHICLES):
        w = np.array([lengths_km[i] * segs[i][2] * segs[i][3][v] * DAYS_IN_YEAR for i in idx])
        w = np.maximum(w, 1e-9)
        acts[veh] = round_to_total(w, TARGET_VKM[veh], 1)
        acts[veh + "_raw"] = w.sum()
    for j, i in enumerate(idx):
        for veh, fuel in VEHICLES:
            cols["source_id"].append(f"{seg_ids[j]}-{veh}")
            cols["sector"].append("road")
            cols["subsector"].append(segs[i][1])
            cols["fuel"].append(fuel)
            cols["technology"].append(veh)
            cols["control"].append("none")
            cols["activity"].append(acts[veh][j])
            cols["activity_unit"].append("km")
            cols["geometry"].append(geoms_ll[i])
    gdf = gpd.GeoDataFrame(cols, geometry="geometry", crs=WGS84)
    gdf.attrs["segments"] = n
    gdf.attrs["length_km"] = float(lengths_km[idx].sum())
    gdf.attrs["seg_len_range_km"] = (float(lengths_km[idx].min()), float(lengths_km[idx].max()))
    gdf.attrs["calibration"] = {v: TARGET_VKM[v] / acts[v + "_raw"] for v, _ in VEHICLES}
    return gdf


# --------------------------------------------------------------------------------------------
# 5. Shipping lanes
# --------------------------------------------------------------------------------------------
LANES = [  # name, subsector, technology, relative traffic, waypoints
    ("Yangtze estuary main channel", "yangtze_estuary", "ocean_going", 10.0,
     [(122.190, 31.120), (122.050, 31.180), (121.950, 31.235), (121.900, 31.255),
      (121.800, 31.298), (121.720, 31.325), (121.660, 31.350), (121.600, 31.377),
      (121.530, 31.397), (121.500, 31.410), (121.460, 31.440), (121.420, 31.478),
      (121.360, 31.520), (121.280, 31.560), (121.180, 31.620), (121.080, 31.680),
      (120.980, 31.730)]),
    ("Yangshan deep-water port approach", "port_approach", "ocean_going", 8.0,
     [(122.190, 31.120), (122.185, 30.980), (122.160, 30.840), (122.120, 30.720),
      (122.080, 30.650), (122.050, 30.620), (122.020, 30.600)]),
    ("Hangzhou Bay north channel (Caojing/Jinshan jetties)", "hangzhou_bay", "ocean_going", 2.0,
     [(122.120, 30.720), (122.000, 30.760), (121.850, 30.790), (121.700, 30.795),
      (121.550, 30.780), (121.450, 30.750), (121.390, 30.720), (121.340, 30.690)]),
    ("Lower Huangpu (Wusongkou to Yangpu)", "huangpu_river", "ocean_going", 1.0,
     HUANGPU[1:8]),
    ("Huangpu River", "huangpu_river", "inland_vessel", 6.0, HUANGPU[1:30]),
    ("Yangtze inland route (south bank)", "yangtze_estuary", "inland_vessel", 5.0,
     [(121.530, 31.390), (121.490, 31.412), (121.450, 31.446), (121.410, 31.485),
      (121.350, 31.527), (121.270, 31.575), (121.170, 31.635), (121.070, 31.695),
      (120.970, 31.745)]),
    ("Dianpu River", "inland_waterway", "inland_vessel", 3.0, DIANPU),
    ("Suzhou Creek", "inland_waterway", "inland_vessel", 0.5, SUZHOU_CREEK),
    ("Dazhi River", "inland_waterway", "inland_vessel", 1.0, DAZHI),
]


def build_lanes(seed: int) -> gpd.GeoDataFrame:
    rng = rng_for(seed, 5)
    rows = []
    for name, sub, tech, traffic, wps in LANES:
        line = shapely.segmentize(LineString(utm_xy(wps)), 500.0)
        n = max(1, math.ceil(line.length / 2500.0))
        step = line.length / n
        for k in range(n):
            seg = substring(line, k * step, (k + 1) * step)
            w = seg.length / 1000.0 * traffic * float(rng.uniform(0.9, 1.1))
            rows.append({"name": name, "subsector": sub, "tech": tech, "w": w,
                         "length_km": seg.length / 1000.0, "geometry": to_lonlat(seg, 6)})
    df = pd.DataFrame(rows)
    df["activity"] = 0.0
    for tech, total in (("ocean_going", TARGET_SHIP_OCEAN_T),
                        ("inland_vessel", TARGET_SHIP_INLAND_T)):
        m = df["tech"] == tech
        df.loc[m, "activity"] = round_to_total(df.loc[m, "w"], total, 1)
    gdf = gpd.GeoDataFrame({
        "src_id": [f"S{i:04d}" for i in range(1, len(df) + 1)],
        "sector": "shipping", "subsector": df["subsector"], "fuel": "marine_diesel",
        "tech": df["tech"], "control": "none", "activity": df["activity"], "act_unit": "t",
    }, geometry=list(df["geometry"]), crs=WGS84)
    gdf.attrs["seg_len_range_km"] = (float(df["length_km"].min()), float(df["length_km"].max()))
    return gdf


# --------------------------------------------------------------------------------------------
# 6. Area sources (one row per district x activity; agriculture only where it exists)
# --------------------------------------------------------------------------------------------
RES_GAS_PER_CAPITA = {"central": 1.3, "suburban": 0.9, "310151": 0.5}
RES_LPG_PER_CAPITA = {"central": 0.3, "suburban": 1.0, "310151": 2.0}
SOLVENT_FACTOR = {"central": 0.8, "suburban": 1.3, "310151": 0.6}
OFFROAD_FACTOR = {"central": 0.6, "suburban": 1.2, "310115": 1.5, "310151": 0.8}
LIVESTOCK_FACTOR = {  # pig, cattle, poultry, fertiliser per unit cropland (synthetic)
    "310112": (0.0, 0.0, 0.2, 1.0), "310113": (0.2, 0.2, 0.3, 1.0),
    "310114": (0.4, 0.2, 0.8, 1.0), "310115": (0.6, 0.8, 1.0, 1.0),
    "310116": (1.2, 1.0, 1.0, 1.0), "310117": (1.0, 0.4, 1.0, 1.0),
    "310118": (0.6, 0.3, 1.0, 1.0), "310120": (1.0, 1.0, 1.0, 1.0),
    "310151": (1.0, 1.2, 1.0, 1.1),
}


def _factor(table: dict, code: str) -> float:
    if code in table:
        return table[code]
    return table["central"] if code in CENTRAL else table["suburban"]


def build_areas(dist: gpd.GeoDataFrame, crop_by_district: dict) -> gpd.GeoDataFrame:
    codes = list(dist["district_code"])
    people = {c: p for c, _zh, _en, p in DISTRICTS}
    geom = dict(zip(dist["district_code"], dist.geometry, strict=True))
    specs = [  # tag, sector, subsector, fuel, technology, unit, proxy, total, decimals, weights
        ("res_ng", "residential", "domestic_combustion", "natural_gas", "domestic_combustion",
         "m**3", "population", TARGET_RES_GAS_M3, 0,
         {c: people[c] * _factor(RES_GAS_PER_CAPITA, c) for c in codes}),
        ("res_lpg", "residential", "domestic_combustion", "lpg", "domestic_combustion", "t",
         "population", TARGET_RES_LPG_T, 1,
         {c: people[c] * _factor(RES_LPG_PER_CAPITA, c) for c in codes}),
        ("solvent", "solvents", "solvent_use", "none", "solvent_use", "t", "population",
         TARGET_SOLVENT_T, 1, {c: people[c] * _factor(SOLVENT_FACTOR, c) for c in codes}),
        ("offroad", "offroad", "construction_machinery", "diesel", "construction_machinery",
         "t", "population", TARGET_OFFROAD_DIESEL_T, 1,
         {c: people[c] * _factor(OFFROAD_FACTOR, c) for c in codes}),
    ]
    pop = {c: people[c] for c in codes}
    specs += [
        ("com_diesel", "residential", "commercial_combustion", "diesel", "commercial_combustion",
         "t", "population", TARGET_COMMERCIAL_DIESEL_T, 1, pop),
        ("cooking", "cooking", "commercial_cooking", "none", "commercial_cooking", "head",
         "population", TARGET_POPULATION, 0, pop),
        ("road_dust", "fugitive_dust", "paved_road_dust", "none", "paved_road_dust", "km",
         "population", TARGET_ROAD_DUST_VKM, 0, pop),
        ("constr_dust", "fugitive_dust", "construction_site", "none", "construction_site",
         "m**2", "population", TARGET_CONSTRUCTION_M2, 0,
         {c: people[c] * _factor(OFFROAD_FACTOR, c) for c in codes}),
        ("gas_distr", "storage_transport", "gasoline_distribution", "gasoline",
         "gasoline_distribution", "t", "population", TARGET_GASOLINE_SOLD_T, 1, pop),
        ("evap", "road", "evaporative", "gasoline", "evaporative", "head", "population",
         TARGET_CAR_STOCK, 0, pop),
        ("wastewater", "waste", "wastewater", "none", "domestic_wastewater", "head",
         "population", TARGET_POPULATION, 0, pop),
        ("human_nh3", "waste", "human_excreta", "none", "human_excreta", "head",
         "population", TARGET_POPULATION, 0, pop),
    ]
    ag = {c: crop_by_district[c] for c in codes if c in LIVESTOCK_FACTOR}
    specs += [
        ("agri_mach", "offroad", "agricultural_machinery", "diesel", "agricultural_machinery",
         "t", "cropland", TARGET_AGRI_DIESEL_T, 1, ag),
        ("rice", "rice", "rice_paddies", "none", "flooded_rice", "ha", "cropland",
         TARGET_RICE_HA, 0, ag),
        ("burn", "biomass_burning", "crop_residue", "biomass", "open_crop_residue", "t",
         "cropland", TARGET_RESIDUE_BURNED_T, 1, ag),
        ("fert_rice", "fertiliser", "cropland", "none", "synthetic_n_rice", "t", "cropland",
         TARGET_FERTILISER_T_N * RICE_N_SHARE, 1, ag),
    ]
    for k, (tag, tech, unit, total, sub) in enumerate([
            ("pig", "pig", "head", TARGET_PIG_HEAD, "livestock_farming"),
            ("cattle", "cattle", "head", TARGET_CATTLE_HEAD, "livestock_farming"),
            ("poultry", "poultry", "head", TARGET_POULTRY_HEAD, "livestock_farming"),
            ("fert", "synthetic_n_fertiliser", "t", TARGET_FERTILISER_T_N * (1 - RICE_N_SHARE),
             "cropland")]):
        sector = "fertiliser" if tag == "fert" else "livestock"
        w = {c: crop_by_district[c] * LIVESTOCK_FACTOR[c][k] for c in codes
             if c in LIVESTOCK_FACTOR and LIVESTOCK_FACTOR[c][k] > 0}
        specs.append((tag, sector, sub, "none", tech, unit, "cropland", total,
                      1 if unit == "t" else 0, w))
    rows = []
    for tag, sector, sub, fuel, tech, unit, proxy, total, dec, weights in specs:
        cs = [c for c in codes if weights.get(c, 0) > 0]
        vals = round_to_total([weights[c] for c in cs], total, dec)
        for c, v in zip(cs, vals, strict=True):
            if v <= 0:
                continue
            rows.append({"source_id": f"A{c}-{tag}", "sector": sector, "subsector": sub,
                         "fuel": fuel, "technology": tech, "control": "none", "activity": v,
                         "activity_unit": unit, "proxy": proxy, "district_code": c,
                         "geometry": geom[c]})
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=WGS84)


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


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
def generate(out: Path, seed: int = DEFAULT_SEED, verbose: bool = True) -> dict[str, Path]:
    t0 = time.perf_counter()
    os.environ["OGR_CURRENT_DATE"] = FIXED_TIMESTAMP
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": FIXED_TIMESTAMP})
    out = Path(out)
    for sub in ("boundaries", "points", "roads", "shipping", "areas", "proxies"):
        (out / sub).mkdir(parents=True, exist_ok=True)

    dist = build_districts()
    dist_utm = [to_utm(g) for g in dist.geometry]
    land = unary_union(dist_utm)
    frac = district_fractions(dist_utm)
    pop, crop, pop_by_district = build_proxies(frac, seed)
    # cropland inside each district (a pixel shared by districts is shared by land fraction)
    land_frac = np.maximum(frac.sum(axis=0), 1e-12)
    crop_by_district = {code: float((frac[i] / land_frac * crop.astype(float)).sum())
                        for i, (code, *_r) in enumerate(DISTRICTS)}
    siting = Siting(dist)
    points = build_points(siting, seed)
    roads = build_roads(land, seed)
    lanes = build_lanes(seed)
    areas = build_areas(dist, crop_by_district)

    paths = {
        "districts": out / "boundaries" / "shanghai_districts.gpkg",
        "points": out / "points" / "stacks.csv",
        "roads": out / "roads" / "roads.parquet",
        "lanes": out / "shipping" / "lanes.shp",
        "areas": out / "areas" / "area_sources.gpkg",
        "population": out / "proxies" / "population.tif",
        "cropland": out / "proxies" / "cropland.tif",
    }
    write_gpkg(dist, paths["districts"], "districts")
    write_csv(points, paths["points"],
              {"activity": 1, "lon": 6, "lat": 6, "stack_height_m": 0, "stack_diameter_m": 1,
               "exit_temp_k": 0, "exit_velocity_m_s": 1})
    write_parquet(roads, paths["roads"])
    write_shapefile(lanes, paths["lanes"])
    write_gpkg(areas, paths["areas"], "area_sources")
    write_tif(pop, paths["population"], "population", "people per pixel")
    write_tif(crop, paths["cropland"], "cropland", "fraction of pixel area (0-1)")

    if verbose:
        summary(out, dist, points, roads, lanes, areas, pop, crop, pop_by_district,
                crop_by_district, time.perf_counter() - t0)
    return paths


def _files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and p.name != "README.md")


def summary(out, dist, points, roads, lanes, areas, pop, crop, pop_by_district,
            crop_by_district, secs) -> None:
    p = print
    p(f"Tongyuan synthetic Shanghai demo -> {out}  ({secs:.1f} s)")
    dist_area = dist.to_crs(UTM).area / 1e6
    p("\nDistricts (approximate polygons): code name area_km2 population cropland_km2")
    for (code, en), a in zip(zip(dist["district_code"], dist["name_en"], strict=True),
                             dist_area, strict=True):
        p(f"  {code} {en:16s} {a:7.0f} {pop_by_district[code]:12,.0f} "
          f"{crop_by_district[code] * 0.25:8.1f}")
    p(f"  total area {dist_area.sum():.0f} km2, population {pop.sum():,.0f}, "
      f"cropland {crop.sum() * 0.25:.0f} km2")
    p(f"\nPoint sources: {len(points)} (largest move beyond a siting radius "
      f"{points.attrs.get('max_move_m', 0):.0f} m)")
    g = points.groupby(["sector", "fuel", "technology", "activity_unit"], sort=True)
    p(g["activity"].agg(["count", "sum"]).to_string(float_format=lambda v: f"{v:.6g}"))
    p(f"\nRoads: {roads.attrs['segments']} segments, {len(roads)} rows, "
      f"{roads.attrs['length_km']:.0f} km, segment length "
      f"{roads.attrs['seg_len_range_km'][0]:.3f}-{roads.attrs['seg_len_range_km'][1]:.3f} km")
    p(roads.groupby(["subsector", "technology"])["activity"].sum().to_string(
        float_format=lambda v: f"{v:.6g}"))
    p("  vkm calibration factor (target / length x AADT x share x 366 d): " + ", ".join(
        f"{k} {v:.3f}" for k, v in roads.attrs["calibration"].items()))
    p(f"\nShipping lanes: {len(lanes)} segments, length "
      f"{lanes.attrs['seg_len_range_km'][0]:.2f}-{lanes.attrs['seg_len_range_km'][1]:.2f} km")
    p(lanes.groupby(["tech", "subsector"])["activity"].agg(["count", "sum"]).to_string(
        float_format=lambda v: f"{v:.6g}"))
    p(f"\nArea sources: {len(areas)} rows")
    p(areas.groupby(["sector", "fuel", "technology", "activity_unit", "proxy"])["activity"]
      .agg(["count", "sum"]).to_string(float_format=lambda v: f"{v:.6g}"))
    p("\nFiles (bytes, sha256):")
    total = 0
    for f in _files(out):
        size = f.stat().st_size
        total += size
        p(f"  {size:10,d}  {hashlib.sha256(f.read_bytes()).hexdigest()[:16]}  "
          f"{f.relative_to(out)}")
    p(f"  total {total / 1e6:.2f} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "shanghai-demo",
                    help="output directory (default: data/shanghai-demo next to this script)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    ap.add_argument("--quiet", action="store_true", help="no summary")
    args = ap.parse_args(argv)
    generate(args.out, args.seed, verbose=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
