"""The real public data of the demo (``data/demo/real/``): the WRI Global Power Plant Database
rows of Shanghai (CC BY 4.0), the geoBoundaries/OpenStreetMap district polygons (ODbL 1.0, not
official boundaries) and the 2020 census population per district. Copied unchanged into the
demo folder with their licence and attribution files; the district polygons are also the
demo's boundaries, land and area-source polygons (an ODbL derived database, which carries the
same licence notice). Everything else of the demo is synthetic.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pandas as pd

REAL = Path(__file__).resolve().parent / "real"
PLANTS_CSV = REAL / "shanghai_power_plants.csv"
STATS_CSV = REAL / "shanghai_district_stats.csv"
DISTRICTS_GEOJSON = REAL / "shanghai_districts.geojson"
#: the WRI estimate used to weight the synthetic units of a plant (the latest year it covers)
GENERATION = "est_gen_gwh_2017"
GPPD_CITATION = ("Global Energy Observatory, Google, KTH Royal Institute of Technology in "
                 "Stockholm, Enipedia, World Resources Institute. 2019. Global Power Plant "
                 "Database. Published on Resource Watch and Google Earth Engine; "
                 "http://resourcewatch.org/ https://earthengine.google.com/")
ODBL_ATTRIBUTION = ("Contains information from geoBoundaries (www.geoboundaries.org, Runfola et "
                    "al. 2020, doi:10.1371/journal.pone.0231866) and OpenStreetMap (c) "
                    "OpenStreetMap contributors, made available under the Open Database License "
                    "(ODbL) 1.0: https://opendatacommons.org/licenses/odbl/1-0/")
LICENCES = {
    "LICENSE-GPPD-CC-BY-4.0.txt": (
        "shanghai_power_plants.csv: rows of the WRI Global Power Plant Database v1.3.0\n"
        "(c) 2018-2021 World Resources Institute and Data Contributors.\n"
        "Licence: Creative Commons Attribution 4.0 International (CC BY 4.0),\n"
        "https://creativecommons.org/licenses/by/4.0/legalcode\n\n"
        f"Cite as: {GPPD_CITATION}\n\n"
        "Changes: rows inside the lon/lat box of Shanghai, shut-down rows dropped, a district\n"
        "assigned by point-in-polygon (see the '#' header lines of the CSV). The generation\n"
        "figures are WRI model ESTIMATES, not reported generation. Tongyuan uses the names,\n"
        "locations, capacities, fuels and estimated generation of the coal and gas plants; their\n"
        "units, stack parameters, controls and activities in points/stacks.csv are SYNTHETIC.\n"),
    "LICENSE-geoBoundaries-ODbL-1.0.txt": (
        "shanghai_districts_geoboundaries.geojson: the 16 districts of Shanghai from\n"
        "geoBoundaries gbOpen CHN ADM3 (OpenStreetMap-derived); see the file's 'metadata'.\n\n"
        f"{ODBL_ATTRIBUTION}\n\n"
        "This file is a Database under the Open Database License 1.0 (ODbL 1.0); any adapted\n"
        "copy must stay under the ODbL. Full text: https://opendatacommons.org/licenses/odbl/1-0/\n"
        "NOT official boundaries: no map review number (审图号); their area (7 003 km2) includes\n"
        "tidal flats (official land area about 6 340 km2).\n\n"
        "Derived databases in the demo (same licence, same attribution): boundaries/\n"
        "shanghai_districts.gpkg (these polygons unchanged, with Tongyuan column names),\n"
        "areas/area_sources.gpkg (one row per district and activity, the district's polygon as\n"
        "geometry) and the district shares of the proxy rasters proxies/*.tif (the polygons\n"
        "rasterised on the 500 m grid). The demo's land (roads, stack siting) is their union.\n"),
}
#: the notice written next to every demo file derived from the district polygons
ODBL_NOTICE = "LICENSE-geoBoundaries-ODbL-1.0.txt"


def _csv(path: Path) -> pd.DataFrame:
    """A CSV whose ``#`` lines before the header are comments (they stay in the copied file)."""
    text = "".join(ln for ln in path.read_text(encoding="utf-8").splitlines(keepends=True)
                   if not ln.startswith("#"))
    return pd.read_csv(io.StringIO(text), dtype={"district_code": str})


def power_plants(fuel: str) -> list[tuple[str, float, float, float, float]]:
    """``(name [id], lon, lat, capacity MW, estimated GWh)`` of the operational Shanghai plants
    of one WRI ``primary_fuel`` (``Coal``, ``Gas``; landfill gas is left out), file order."""
    df = _csv(PLANTS_CSV)
    df = df[(df["in_shanghai"] == "yes") & (df["primary_fuel"] == fuel)
            & (df["raw_fuel"] != "Landfill gas")]
    return [(f"{r.name} [{r.gppd_idnr}]", float(r.lon), float(r.lat), float(r.capacity_mw),
             float(getattr(r, GENERATION))) for r in df.itertuples()]


def district_polygons():
    """The 16 districts (geoBoundaries gbOpen CHN ADM3, ODbL 1.0), WGS 84, in GB/T 2260 code
    order: ``district_code``, ``name_zh``, geometry (unchanged from the real file). The polygons
    tile exactly (a valid coverage); checked here because the siting and the proxies rely on it."""
    import geopandas as gpd
    import shapely

    gdf = gpd.read_file(DISTRICTS_GEOJSON)
    gdf = gdf.sort_values("district_code", kind="stable").reset_index(drop=True)
    if len(gdf) != 16 or not gdf["district_code"].is_unique:
        raise RuntimeError(f"{DISTRICTS_GEOJSON}: expected 16 distinct districts")
    if not bool(shapely.coverage_is_valid(gdf.geometry.to_numpy())):
        raise RuntimeError(f"{DISTRICTS_GEOJSON}: the district polygons overlap")
    return gdf[["district_code", "name_zh", "geometry"]]


def census_population() -> dict[str, int]:
    """Resident population per district code, 7th national census (2020-11-01)."""
    df = _csv(STATS_CSV)
    return {str(c): int(p) for c, p in zip(df["district_code"], df["pop_2020_census"],
                                            strict=True)}


def copy_real(out: Path) -> None:
    """``out/real/``: the three real files, unchanged, with their licence notices."""
    dest = out / "real"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PLANTS_CSV, dest / PLANTS_CSV.name)
    shutil.copyfile(STATS_CSV, dest / STATS_CSV.name)
    shutil.copyfile(DISTRICTS_GEOJSON, dest / "shanghai_districts_geoboundaries.geojson")
    shutil.copyfile(REAL / "SOURCES.md", dest / "SOURCES.md")
    for name, text in LICENCES.items():
        (dest / name).write_text(text, encoding="utf-8")
    # the files derived from the district polygons carry the ODbL notice beside them
    for sub in ("boundaries", "areas", "proxies"):
        (out / sub / ODBL_NOTICE).write_text(LICENCES[ODBL_NOTICE], encoding="utf-8")
