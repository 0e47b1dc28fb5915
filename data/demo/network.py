"""Line sources: the synthetic road network and the ship lanes."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import LineString, Point
from shapely.ops import substring

from demo.common import (
    DAYS_IN_YEAR,
    PEOPLES_SQUARE,
    TARGET_SHIP_INLAND_T,
    TARGET_SHIP_OCEAN_T,
    TARGET_VKM,
    WGS84,
    ellipse,
    parts,
    rng_for,
    round_to_total,
    to_lonlat,
    utm_xy,
)
from demo.geography import DAZHI, DIANPU, HUANGPU, SUZHOU_CREEK

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
