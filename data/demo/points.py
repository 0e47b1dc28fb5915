"""Point sources: siting rules, power plants (real WRI plants, synthetic units), steel, refineries,
incinerators, boilers and airports."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import LineString
from shapely.ops import unary_union

from demo.common import (
    GRID_X0,
    GRID_X1,
    GRID_Y0,
    GRID_Y1,
    TARGET_BOILER_COAL_T,
    TARGET_BOILER_GAS_M3,
    TARGET_BOILER_OIL_T,
    TARGET_LANDFILL_T,
    TARGET_LTO_KEROSENE_T,
    TARGET_MSW_T,
    TARGET_POWER_COAL_T,
    TARGET_POWER_GAS_M3,
    TO_LL,
    rng_for,
    round_to_total,
    to_utm,
    utm_xy,
)
from demo.geography import DAZHI, DIANPU, HUANGPU, SUZHOU_CREEK
from demo.real import power_plants


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


# REAL plants (WRI Global Power Plant Database, CC BY 4.0): name [gppd_idnr], lon, lat, capacity
# MW and WRI's estimated generation; their units (at most UNIT_MW each, equal size), loads, stack
# parameters and controls are SYNTHETIC. A plant's activity is proportional to its estimated
# generation (× a synthetic heat-rate and load spread per unit), scaled to the calibration target.
COAL_PLANTS = power_plants("Coal")
GAS_PLANTS = power_plants("Gas")
UNIT_MW = {"coal": 1000.0, "natural_gas": 400.0}


def _units(capacity_mw: float, fuel: str) -> list[float]:
    """Synthetic equal units of a plant: the fewest of at most UNIT_MW[fuel] each."""
    n = max(1, math.ceil(capacity_mw / UNIT_MW[fuel] - 1e-9))
    return [capacity_mw / n] * n


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

    def add(name, key, weight, unit, anchor, radius, stack):
        """key = (sector, subsector, fuel, technology, control); stack = (height m, diameter m,
        exit temperature K, exit velocity m/s)."""
        sector, subsector, fuel, tech, control = key
        height, diam, temp, vel = stack
        x, y, code, d = siting.place(rng, anchor[0], anchor[1], radius)
        lon, lat = TO_LL.transform(x, y)
        moved.append((name, max(0.0, d - radius)))
        rows.append({"name": name, "sector": sector, "subsector": subsector, "fuel": fuel,
                     "technology": tech, "control": control, "weight": weight,
                     "activity_unit": unit, "lon": round(lon, 6), "lat": round(lat, 6),
                     "stack_height_m": height, "stack_diameter_m": diam, "exit_temp_k": temp,
                     "exit_velocity_m_s": vel, "district_code": code})

    for name, lon, lat, capacity, gwh in COAL_PLANTS:
        units = _units(capacity, "coal")
        for k, mw in enumerate(units, start=1):
            big = mw >= 900
            load = rng.uniform(0.90, 1.10)  # synthetic spread of the plant's generation
            heat = 0.95 if big else 1.05  # larger units burn less coal per MWh
            add(f"{name} unit {k} ({mw:.0f} MW, synthetic unit)",
                ("power", "coal_power", "coal", "pulverised_coal", "lnb+scr+wfgd+esp+wesp"),
                gwh / len(units) * load * heat, "t", (lon, lat), 700.0,
                (_u(rng, (210, 240) if big else (150, 210), 0),
                 _u(rng, (7.5, 9.0) if big else (6.0, 7.5)), _u(rng, (320, 335), 0),
                 _u(rng, (15, 25))))
    for name, lon, lat, capacity, gwh in GAS_PLANTS:
        units = _units(capacity, "natural_gas")
        for k, mw in enumerate(units, start=1):
            add(f"{name} unit {k} ({mw:.0f} MW, synthetic unit)",
                ("power", "gas_power", "natural_gas", "gas_combined_cycle", "lnb+scr"),
                gwh / len(units) * rng.uniform(0.90, 1.10), "m**3", (lon, lat), 500.0,
                (_u(rng, (60, 80), 0), _u(rng, (5.0, 7.0)), _u(rng, (360, 385), 0),
                 _u(rng, (15, 20))))
    sname, slon, slat, srad = STEEL_SITE
    for tech, n, control, hr, dr, tr, vr in STEEL_STACKS:
        unit = STEEL_ACTIVITY[tech][1]
        fuel = "steelworks_gas" if tech == "steelworks_gas_boiler" else "none"
        for k in range(1, n + 1):
            add(f"{sname} {tech.replace('_', ' ')} stack {k}",
                ("industry_process", tech, fuel, tech, control), rng.uniform(0.8, 1.2), unit,
                (slon, slat), srad, (_u(rng, hr, 0), _u(rng, dr), _u(rng, tr, 0), _u(rng, vr)))
    for name, lon, lat, mt in REFINERIES:
        for sub, tech, w, hr, dr, tr, vr in REFINERY_UNITS:
            fuel, control, unit, _total = REFINERY_PROCESS[tech]
            add(f"{name} {sub.replace('_', ' ')}", ("industry_process", sub, fuel, tech, control),
                mt * w * rng.uniform(0.85, 1.15), unit, (lon, lat), 1200.0,
                (_u(rng, hr, 0), _u(rng, dr), _u(rng, tr, 0), _u(rng, vr)))
    for name, lon, lat, tpd, n in INCINERATORS:
        for k in range(1, n + 1):
            add(f"{name} stack {k}", ("waste", "msw_incineration", "msw", "incinerator",
                                      "sncr+sdfgd+ff"),
                tpd / n * rng.uniform(0.85, 1.0), "t", (lon, lat), 400.0,
                (_u(rng, (75, 90), 0), _u(rng, (2.0, 3.2)), _u(rng, (410, 430), 0),
                 _u(rng, (12, 18))))
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
                ("industry_combustion", "industrial_boiler", fuel, "industrial_boiler", control),
                float(rng.lognormal(0.0, 0.8)), "t" if fuel != "natural_gas" else "m**3",
                (zlon, zlat), zrad, (_u(rng, hr, 0), _u(rng, dr), _u(rng, tr, 0), _u(rng, vr)))

    for name, lon, lat, share in AIRPORTS:  # LTO below 3 000 ft, one point per airport
        add(name, ("aviation", "lto", "jet_kerosene", "lto_cycle", "none"), share, "t",
            (lon, lat), 800.0, (10.0, 5.0, 600.0, 30.0))
    add("Laogang landfill (gas flare)", ("waste", "landfill", "msw", "landfill", "none"), 1.0,
        "t", (121.86, 31.06), 800.0, (10.0, 1.0, 300.0, 1.0))

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
