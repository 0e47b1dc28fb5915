"""Constants, calibration targets, coordinate systems and small helpers of the demo generator."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import shapely

from demo.real import census_population

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
CENSUS_2020 = census_population()       # REAL: 7th census residents per district (2020-11-01)
TARGET_POPULATION = float(sum(CENSUS_2020.values()))  # 24 870 895, sum of proxies/population.tif

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

BOUNDARY_NOTE = ("geoBoundaries gbOpen CHN ADM3 (OpenStreetMap-derived), ODbL 1.0: Contains "
                 "information from geoBoundaries (Runfola et al. 2020) and OpenStreetMap (c) "
                 "OpenStreetMap contributors. NOT an official boundary (no map review number); "
                 "includes tidal flats; demonstration only")

# District code, Chinese name, English name, resident population (REAL: 2020 census, scales the
# population proxy per district)
DISTRICTS = [
    ("310101", "黄浦区", "Huangpu", CENSUS_2020["310101"]),
    ("310104", "徐汇区", "Xuhui", CENSUS_2020["310104"]),
    ("310105", "长宁区", "Changning", CENSUS_2020["310105"]),
    ("310106", "静安区", "Jing'an", CENSUS_2020["310106"]),
    ("310107", "普陀区", "Putuo", CENSUS_2020["310107"]),
    ("310109", "虹口区", "Hongkou", CENSUS_2020["310109"]),
    ("310110", "杨浦区", "Yangpu", CENSUS_2020["310110"]),
    ("310112", "闵行区", "Minhang", CENSUS_2020["310112"]),
    ("310113", "宝山区", "Baoshan", CENSUS_2020["310113"]),
    ("310114", "嘉定区", "Jiading", CENSUS_2020["310114"]),
    ("310115", "浦东新区", "Pudong New Area", CENSUS_2020["310115"]),
    ("310116", "金山区", "Jinshan", CENSUS_2020["310116"]),
    ("310117", "松江区", "Songjiang", CENSUS_2020["310117"]),
    ("310118", "青浦区", "Qingpu", CENSUS_2020["310118"]),
    ("310120", "奉贤区", "Fengxian", CENSUS_2020["310120"]),
    ("310151", "崇明区", "Chongming", CENSUS_2020["310151"]),
]
CENTRAL = {"310101", "310104", "310105", "310106", "310107", "310109", "310110"}


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
