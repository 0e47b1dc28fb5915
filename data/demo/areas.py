"""Area sources per district (population and cropland based)."""

from __future__ import annotations

import geopandas as gpd

from demo.common import (
    CENTRAL,
    DISTRICTS,
    RICE_N_SHARE,
    TARGET_AGRI_DIESEL_T,
    TARGET_CAR_STOCK,
    TARGET_CATTLE_HEAD,
    TARGET_COMMERCIAL_DIESEL_T,
    TARGET_CONSTRUCTION_M2,
    TARGET_FERTILISER_T_N,
    TARGET_GASOLINE_SOLD_T,
    TARGET_OFFROAD_DIESEL_T,
    TARGET_PIG_HEAD,
    TARGET_POPULATION,
    TARGET_POULTRY_HEAD,
    TARGET_RES_GAS_M3,
    TARGET_RES_LPG_T,
    TARGET_RESIDUE_BURNED_T,
    TARGET_RICE_HA,
    TARGET_ROAD_DUST_VKM,
    TARGET_SOLVENT_T,
    WGS84,
    round_to_total,
)

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
