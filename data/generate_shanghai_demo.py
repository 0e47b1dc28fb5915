#!/usr/bin/env python
"""Generate the Shanghai demo dataset of Tongyuan (``data/shanghai-demo/``).

REAL public data (``data/demo/real/``, copied to ``real/`` with their licences): the coal and gas
plants of the WRI Global Power Plant Database (CC BY 4.0: names, locations, capacities, estimated
generation, which weights each plant's activity), the 2020 census population per district
(scales the population proxy) and the 16 geoBoundaries/OpenStreetMap district polygons (ODbL
1.0; not official boundaries), which are the demo's boundaries, land and area-source polygons
and share every proxy pixel among the districts; the files derived from them carry the ODbL
notice. Every other value is SYNTHETIC: plausible in size and place, but not an inventory of
real facilities, roads or people; the units and stacks of the real plants, the waterways and
ship lanes, the road network and the population density within each district are synthetic too.

The output is deterministic: the same seed gives the same bytes on every run (GeoPackage
timestamps, DBF dates and float formatting are pinned). Run::

    python data/generate_shanghai_demo.py --out data/shanghai-demo [--seed 20240101]

The calibration targets (annual totals over Shanghai, 2024) are the named constants below; the
generated activities are scaled so that their sums hit them exactly (after rounding).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
from demo.areas import build_areas
from demo.common import DEFAULT_SEED, DISTRICTS, FIXED_TIMESTAMP, UTM, to_utm
from demo.geography import build_districts, build_proxies, district_fractions
from demo.network import build_lanes, build_roads
from demo.output import write_csv, write_gpkg, write_parquet, write_shapefile, write_tif
from demo.points import Siting, build_points
from demo.real import copy_real
from shapely.ops import unary_union


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
    copy_real(out)

    if verbose:
        summary(out, {"dist": dist, "points": points, "roads": roads, "lanes": lanes,
                      "areas": areas, "pop": pop, "crop": crop},
                pop_by_district, crop_by_district, time.perf_counter() - t0)
    return paths


def _files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and p.name != "README.md")


def summary(out, parts: dict, pop_by_district, crop_by_district, secs) -> None:
    """Print what was written; ``parts``: dist, points, roads, lanes, areas, pop, crop."""
    dist, points, roads, lanes = (parts[k] for k in ("dist", "points", "roads", "lanes"))
    areas, pop, crop = parts["areas"], parts["pop"], parts["crop"]
    p = print
    p(f"Tongyuan synthetic Shanghai demo -> {out}  ({secs:.1f} s)")
    dist_area = dist.to_crs(UTM).area / 1e6
    p("\nDistricts (geoBoundaries/OSM, ODbL): code name area_km2 population cropland_km2")
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
