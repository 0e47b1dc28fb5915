"""The shipped configuration and demo data: tables are consistent, the demo reads, validates,
allocates and balances, and its totals are plausible. (The full-year write is `make demo` and
bench/full_year.py; the write path itself is tested end to end on the fixture world.)"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.ledger import check_balance
from pipeline.steps import (
    allocate_sources,
    compute_annual,
    compute_input_emissions,
    compute_ledger,
    load_tables,
    read_inputs,
)

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "shanghai.yaml"


@pytest.fixture(scope="module")
def shanghai():
    cfg = load_config(CONFIG)
    return cfg, load_tables(cfg)


def test_factor_table_is_consistent(shanghai):
    _, tables = shanghai
    ef = tables.library.factors
    assert (ef["reference"].str.len() > 10).all()
    wide = ef.pivot_table(index=["sector", "fuel", "technology"], columns="species",
                          values="value_num", aggfunc="first")
    # uncontrolled: PM2.5 <= PM10 and BC + OC <= PM2.5 wherever given (same units per key)
    units = ef.groupby(["sector", "fuel", "technology"])["unit"].nunique()
    same = wide.loc[units[units == 1].index]
    both = same[["PM10", "PM2_5"]].dropna()
    assert (both["PM2_5"] <= both["PM10"]).all()
    carb = same[["PM2_5", "BC", "OC"]].dropna()
    assert (carb["BC"] + carb["OC"] <= carb["PM2_5"]).all()
    # every fuel other than 'none' has a calorific value, except the energy carriers of the
    # zero-exhaust keys that scenarios shift activity to (their activity is km or MWh)
    fuels = set(ef["fuel"]) - {"none", "electricity", "hydrogen"}
    assert fuels <= set(tables.library.fuels["fuel"])
    # every sector has a CO2-relevant key and a profile row
    assert set(ef["sector"]) <= set(tables.sectors["sector"])


def test_coal_power_with_ultra_low_controls_meets_the_limits(shanghai):
    """lnb+scr+wfgd+esp+wesp on coal power ends within China's ultra-low limits
    (SO2 35, NOx 50, PM 10 mg/Nm3 at 6 % O2; ~7 500 Nm3 flue gas per t raw coal)."""
    _, tables = shanghai
    ef = tables.library.factors
    rows = ef[(ef.sector == "power") & (ef.fuel == "coal")].set_index("species")
    ncv = float(tables.library.fuels.set_index("fuel").loc["coal", "ncv_value"])
    rem = tables.library.remaining_fraction("lnb+scr+wfgd+esp+wesp", ["SO2", "NOx", "PM10"])
    from sources.units import Q_

    def kg_per_t(sp):
        q = Q_(rows.loc[sp, "value_num"], rows.loc[sp, "unit"]) * Q_(1, "t")
        if not q.check("[mass]"):
            q = q * Q_(ncv, tables.library.fuels.set_index("fuel").loc["coal", "ncv_unit"])
        return q.to("kg").magnitude * rem[sp]

    flue_nm3_per_t = 7500
    for sp, limit in (("SO2", 35), ("NOx", 50), ("PM10", 10)):
        mg_per_nm3 = kg_per_t(sp) * 1e6 / flue_nm3_per_t
        assert mg_per_nm3 <= limit * 1.1, (sp, mg_per_nm3)


@pytest.fixture(scope="module")
def demo(shanghai):
    cfg, tables = shanghai
    activity, metas, rejected = read_inputs(cfg, tables)
    emissions = compute_input_emissions(activity, tables)
    alloc = allocate_sources(activity, tables)
    annual = compute_annual(alloc, emissions, activity, tables)
    ledger = compute_ledger(emissions, activity, alloc, annual, None)
    return activity, metas, emissions, alloc, annual, ledger


def test_demo_inputs(demo):
    activity, metas, *_ = demo
    assert {m.format for m in metas} == {"csv", "parquet", "shapefile", "gpkg", "geotiff"}
    kinds = activity["kind"].value_counts()
    points = activity[activity.kind == "point"]
    assert 200 <= len(points) <= 400
    roads = activity[activity.sector == "road"]
    assert roads.geometry.nunique() >= 10_000
    assert {"shipping", "residential", "solvents", "offroad", "livestock", "fertiliser"} <= set(
        activity.sector)
    assert kinds["area"] > 0 and set(activity.loc[activity.kind == "area", "proxy"]) == {
        "population", "cropland"}


def test_demo_totals_are_plausible_and_balance(demo):
    _, _, emissions, alloc, annual, ledger = demo
    check_balance(ledger, written=False)
    totals = ledger.totals()
    co2_mt = totals.loc["CO2", "read_kg"] / 1e9
    # territorial: CEADs 2019 192.9 Mt minus the aviation and bunker memo items, plus LTO
    assert 140 <= co2_mt <= 165, co2_mt
    # some shipping lies beyond the grid (Yangshan approach): outside domain, not in edge cells
    assert ledger.table.loc[("shipping", "CO2"), "outside_domain_kg"] > 0
    assert np.isfinite(annual.to_numpy()).all() and (annual.to_numpy() >= 0).all()
    # same-source: the emissions table has every species for every source
    assert list(emissions.table.columns[-1:]) == ["CO2e"]
    assert (emissions.table["CO2"] >= 0).all()
    by_sector = ledger.table.xs("CO2", level="species")["read_kg"]
    assert by_sector.idxmax() == "power"
    pd.testing.assert_series_equal(
        ledger.table["read_kg"].groupby(level="species", sort=False).sum().loc[["CO2"]],
        pd.Series({"CO2": emissions.table["CO2"].sum()}, name="read_kg"), check_names=False,
        rtol=1e-12)


def _parquet_content(path):
    """A GeoParquet file without the versions of the libraries that wrote it (pyarrow's
    ``created_by``, pandas' ``pandas_version``, geopandas' ``creator``): its table, schema and
    the rest of its metadata."""
    import json

    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = {k: json.loads(v) for k, v in (table.schema.metadata or {}).items()
            if k in (b"pandas", b"geo")}
    meta.get(b"pandas", {}).pop("pandas_version", None)
    meta.get(b"geo", {}).pop("creator", None)
    return table.replace_schema_metadata(None), meta


def test_demo_data_regenerate_byte_for_byte(tmp_path):
    """`make demo-data` reproduces the committed files exactly (seeded generator); a GeoParquet
    file the same table and metadata, whichever pandas, pyarrow and geopandas wrote it (each
    writes its own version into the file)."""
    import hashlib
    import subprocess
    import sys

    shipped = REPO / "data" / "shanghai-demo"
    subprocess.run([sys.executable, str(REPO / "data" / "generate_shanghai_demo.py"), "--out",
                    str(tmp_path), "--quiet"], check=True, timeout=300)
    # cems/ is derived from the inventory itself (see the next test)
    files = sorted(p.relative_to(shipped) for p in shipped.rglob("*")
                   if p.is_file() and p.name != "README.md" and p.parent.name != "cems")
    assert len(files) >= 10
    for rel in files:
        if rel.suffix == ".parquet":
            (ta, ma), (tb, mb) = _parquet_content(shipped / rel), _parquet_content(tmp_path / rel)
            assert ta.equals(tb) and ma == mb and ta.num_rows > 0, rel
            continue
        a = hashlib.sha256((shipped / rel).read_bytes()).hexdigest()
        b = hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest()
        assert a == b, rel


def test_demo_cems_series_regenerates_byte_for_byte(tmp_path):
    """The synthetic CEMS series of the demo is reproduced exactly by its script."""
    import subprocess
    import sys

    cems = REPO / "data" / "shanghai-demo" / "cems"
    out = tmp_path / "P0001.csv"
    subprocess.run([sys.executable, str(cems / "make_cems.py"), str(out)], check=True,
                   timeout=300, capture_output=True)
    assert out.read_bytes() == (cems / "P0001_2024-07.csv").read_bytes()


def test_demo_is_built_on_the_real_district_polygons():
    """Issue 17 item 5: the build's boundaries, land and area-source polygons are the 16
    geoBoundaries/OSM districts (ODbL 1.0; coverage-simplified at 50 m), the licence notice sits
    beside every file derived from them, every stack lies in its own district, and the population
    proxy holds each district's 2020 census population (within the shares of border pixels)."""
    import geopandas as gpd
    import rasterio
    import rasterio.features
    import shapely
    from rasterio.transform import Affine

    demo = REPO / "data" / "shanghai-demo"
    real = gpd.read_file(demo / "real" / "shanghai_districts_geoboundaries.geojson")
    real = real.set_index("district_code").to_crs(32651)
    built = gpd.read_file(demo / "boundaries" / "shanghai_districts.gpkg", layer="districts")
    built = built.set_index("district_code").to_crs(32651)
    assert list(built.index) == sorted(real.index) and len(built) == 16
    assert bool(shapely.coverage_is_valid(built.geometry.to_numpy()))  # an exact tiling
    assert built.area.sum() / 1e6 == pytest.approx(7003.46, abs=0.01)  # with the tidal flats
    for code, g in built.geometry.items():
        r = real.geometry[code]
        assert g.symmetric_difference(r).area < 0.01 * r.area, code
        assert g.hausdorff_distance(r) < 200.0, code
    assert built["boundary_note"].str.contains("NOT an official boundary").all()
    assert built["boundary_note"].str.contains("OpenStreetMap").all()
    for sub in ("boundaries", "areas", "proxies", "real"):
        notice = (demo / sub / "LICENSE-geoBoundaries-ODbL-1.0.txt").read_text(encoding="utf-8")
        assert "Open Database License" in notice and "OpenStreetMap contributors" in notice
        assert "NOT official boundaries" in notice
    # area sources carry their district's polygon
    areas = gpd.read_file(demo / "areas" / "area_sources.gpkg").to_crs(32651)
    for code, g in areas.groupby("district_code").geometry:
        assert all(x.equals(built.geometry[code]) for x in g), code
    # every stack lies at least 100 m inside the district of its district_code
    st = pd.read_csv(demo / "points" / "stacks.csv", dtype={"district_code": str})
    pts = gpd.GeoSeries(gpd.points_from_xy(st.lon, st.lat), crs=4326).to_crs(32651)
    inner = built.geometry.buffer(-99.0)
    assert all(inner[c].contains(p) for c, p in zip(st.district_code, pts, strict=True))
    # population proxy: the 2020 census per district (REAL), spread by a synthetic density
    census = pd.read_csv(demo / "real" / "shanghai_district_stats.csv", comment="#",
                         dtype={"district_code": str}).set_index("district_code")
    with rasterio.open(demo / "proxies" / "population.tif") as src:
        pop, transform = src.read(1).astype(float), src.transform
    assert pop.sum() == pytest.approx(census["pop_2020_census"].sum(), abs=5)
    k = 5
    fine = rasterio.features.rasterize(
        [(g, i + 1) for i, g in enumerate(built.geometry)], out_shape=(pop.shape[0] * k,
                                                                       pop.shape[1] * k),
        transform=transform * Affine.scale(1 / k), fill=0, dtype="int16")
    for i, code in enumerate(built.index):
        share = (fine == i + 1).reshape(pop.shape[0], k, pop.shape[1], k).mean(axis=(1, 3))
        people = float((pop * share).sum())
        assert people == pytest.approx(census.loc[code, "pop_2020_census"], rel=0.03), code
