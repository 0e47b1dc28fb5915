"""Every bad input gets an error naming file, row, column, the value and what was expected."""

import re

import pytest

from pipeline.config import load_config
from pipeline.steps import read_inputs
from sources import errors as E
from sources.readers import FileLayout, Vocabulary, read_sources


def build_with(world, tables, name, text):
    (world.parent.parent / "data" / name).write_text(text)
    return read_inputs(load_config(world), tables)


HEAD = "source_id,sector,fuel,technology,control,activity,activity_unit,x,y\n"
OK = "P1,power,coal,boiler,none,10,t,300500,3400500\n"


@pytest.mark.parametrize("row, err, pattern", [
    ("P9,power,coal,boiler,none,,t,300500,3400500", E.ActivityError,
     r"points.csv, row 2, source_id 'P9', column 'activity': activity is missing or not a "
     r"number; got nan; expected a finite number >= 0"),
    ("P9,power,coal,boiler,none,-5,t,300500,3400500", E.ActivityError,
     r"points.csv, row 2, source_id 'P9', column 'activity': negative activity; got '?-5"),
    ("P9,power,coal,boiler,none,5,tonnes of coal,300500,3400500", E.UnitError,
     r"points.csv, row 2, source_id 'P9', column 'activity_unit': unparseable unit; got "
     r"'tonnes of coal'; expected a pint unit string"),
    ("P9,cement,coal,boiler,none,5,t,300500,3400500", E.UnknownKeyError,
     r"points.csv, row 2, source_id 'P9', column 'sector': unknown sector; got 'cement'; "
     r"expected one of \['power', 'residential', 'road'\]"),
    ("P9,power,peat,boiler,none,5,t,300500,3400500", E.UnknownKeyError,
     r"row 2, source_id 'P9', column 'fuel': unknown fuel; got 'peat'"),
    ("P9,power,coal,turbine,none,5,t,300500,3400500", E.UnknownKeyError,
     r"row 2, source_id 'P9', column 'technology': unknown technology; got 'turbine'"),
    ("P9,power,natural_gas,stove,none,5,t,300500,3400500", E.UnknownKeyError,
     r"column 'technology': no emission factors for this sector/fuel/technology; got "
     r"\('power', 'natural_gas', 'stove'\); expected one of \(coal, boiler\)"),
    ("P9,power,coal,boiler,scr,5,t,300500,3400500", E.UnknownKeyError,
     r"column 'control': unknown control device 'scr'; got 'scr'"),
    ("P1,power,coal,boiler,none,5,t,300500,3400500", E.DuplicateSourceError,
     r"points.csv, row 2, column 'source_id': duplicate source_id in rows \[1, 2\]; got 'P1'"),
    ("P9,power,coal,boiler,none,5,t,abc,3400500", E.GeometryError,
     r"points.csv, row 2, column 'x': coordinate is missing or not a number; got 'abc'"),
])
def test_point_row_errors(world, tables, row, err, pattern):
    with pytest.raises(err, match=pattern):
        build_with(world, tables, "points.csv", HEAD + OK + row + "\n")


def test_missing_column(world, tables):
    with pytest.raises(E.MissingColumnError, match=r"points.csv, column 'activity_unit': "
                       r"required column 'activity_unit' is missing.*expected columns"):
        build_with(world, tables, "points.csv",
                   "source_id,sector,fuel,technology,activity,x,y\nP1,power,coal,boiler,1,1,1\n")


LHEAD = "source_id,sector,fuel,technology,activity,activity_unit,geometry\n"


@pytest.mark.parametrize("geom, pattern", [
    ('"LINESTRING EMPTY"', r"lines.csv, row 1, source_id 'X', column 'geometry': geometry is "
     r"missing or empty"),
    ('"POINT (300000 3400000)"', r"wrong geometry type for a line source; got 'Point'; "
     r"expected LineString or MultiLineString"),
    ('"LINESTRING (300000 3400000, 300000 3400000)"', r"invalid geometry \(Too few points"),
    ('"LINESTRING (300000 34"', r"lines.csv, row 1, column 'geometry': cannot parse WKT"),
])
def test_line_geometry_errors(world, tables, geom, pattern):
    with pytest.raises(E.GeometryError, match=pattern):
        build_with(world, tables, "lines.csv", LHEAD + f"X,road,gasoline,car,1,km,{geom}\n")


def test_invalid_polygon(world, tables):
    bowtie = '"POLYGON ((300000 3400000, 301000 3401000, 301000 3400000, 300000 3401000, ' \
             '300000 3400000))"'
    with pytest.raises(E.GeometryError, match=r"areas.csv, row 1, source_id 'B', column "
                       r"'geometry': invalid geometry \(Self-intersection"):
        build_with(world, tables, "areas.csv", "source_id,sector,fuel,technology,activity,"
                   f"activity_unit,proxy,geometry\nB,residential,natural_gas,stove,1,m**3,"
                   f"population,{bowtie}\n")


def test_unknown_proxy(world, tables):
    with pytest.raises(E.UnknownKeyError, match=r"column 'proxy': unknown proxy; got 'lights'"):
        build_with(world, tables, "areas.csv", "source_id,sector,fuel,technology,activity,"
                   "activity_unit,proxy,geometry\nB,residential,natural_gas,stove,1,m**3,lights,"
                   '"POLYGON ((300000 3400000, 301000 3400000, 301000 3401000, 300000 3400000))"\n')


def test_crs_missing(world, tables):
    cfg = world.read_text().replace(', crs: "EPSG:32651", x_column', ", x_column")
    world.write_text(cfg)
    with pytest.raises(E.CRSMissingError, match=r"points.csv, column 'crs': no coordinate "
                       r"reference system.*expected a file with a CRS, or 'crs: EPSG:4326'"):
        read_inputs(load_config(world), tables)


def test_duplicate_across_files(world, tables):
    (world.parent.parent / "data" / "lines.csv").write_text(
        LHEAD + 'P1,road,gasoline,car,1,km,"LINESTRING (300000 3400500, 302000 3400500)"\n')
    with pytest.raises(E.DuplicateSourceError, match=r"lines.csv, row 1, column 'source_id': "
                       r"source_id also used in .*points.csv row 1"):
        read_inputs(load_config(world), tables)


@pytest.mark.parametrize("fmt", ["gpkg", "parquet", "shp"])
def test_geospatial_formats_round_trip(world, tables, tmp_path, fmt):
    """GPKG, GeoParquet and Shapefile give the same activity table as CSV; CRS from the file."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    df = pd.read_csv(world.parent.parent / "data" / "lines.csv")
    gdf = gpd.GeoDataFrame(df.drop(columns="geometry"), geometry=shapely.from_wkt(df.geometry),
                           crs="EPSG:4326").to_crs(4326)
    gdf = gdf.set_crs("EPSG:32651", allow_override=True).to_crs("EPSG:4326")
    path = tmp_path / f"lines.{fmt}"
    if fmt == "shp":
        gdf = gdf.rename(columns={"technology": "tech", "activity_unit": "act_unit"})
        gdf.to_file(path)
        columns = {"tech": "technology", "act_unit": "activity_unit"}
    elif fmt == "gpkg":
        gdf.to_file(path, layer="roads")
        columns = {}
    else:
        gdf.to_parquet(path)
        columns = {}
    table, meta = read_sources(
        path, "line", target_crs=tables.grid.crs,
        layout=FileLayout(columns=columns, layer="roads" if fmt == "gpkg" else None),
        vocabulary=Vocabulary(keys=tables.library.keys, devices=tables.library.devices))
    assert meta.source_crs == "EPSG:4326" and len(meta.sha256) == 64
    assert table.crs.to_epsg() == 32651
    assert table.source_id.tolist() == ["L1", "L2", "L3"]
    assert shapely.length(table.geometry.to_numpy())[0] == pytest.approx(2000, abs=1e-3)


def test_unsupported_format(tmp_path, tables):
    p = tmp_path / "x.xls"  # the old binary workbook: save it as .xlsx
    p.write_text("")
    with pytest.raises(E.InputError, match=re.escape("x.xls: unsupported file format; got '.xls'")):
        read_sources(p, "point", target_crs=tables.grid.crs)
    p = tmp_path / "x.xlsx"
    p.write_text("not a workbook")
    with pytest.raises(E.InputError, match=r"x.xlsx: cannot read workbook"):
        read_sources(p, "point", target_crs=tables.grid.crs)


def test_line_overlapping_itself_is_refused(world, tables):
    geom = '"MULTILINESTRING ((300000 3400500, 302000 3400500), (300500 3400500, 301500 3400500))"'
    with pytest.raises(E.GeometryError, match=r"lines.csv, row 1, source_id 'X', column "
                       r"'geometry': line overlaps itself"):
        build_with(world, tables, "lines.csv", LHEAD + f"X,road,gasoline,car,1,km,{geom}\n")


def test_swapped_lon_lat_is_refused(world, tables):
    cfg = world.read_text().replace('crs: "EPSG:32651", x_column: x, y_column: y',
                                    'crs: "EPSG:4326", x_column: x, y_column: y')
    world.write_text(cfg)
    with pytest.raises(E.GeometryError, match=r"points.csv, row 1, source_id 'P9', column "
                       r"'geometry': coordinates cannot be projected"):
        build_with(world, tables, "points.csv", HEAD.replace(",x,y", ",x,y") +
                   "P9,power,coal,boiler,none,10,t,31.2,121.5\n")


def test_empty_csv_and_bad_crs(world, tables):
    with pytest.raises(E.InputError, match=r"points.csv: the file is empty"):
        build_with(world, tables, "points.csv", "")
    world.write_text(world.read_text().replace('crs: "EPSG:32651", x_column',
                                               'crs: "EPSG:99", x_column'))
    with pytest.raises(E.CRSMissingError, match=r"the config's CRS cannot be understood"):
        build_with(world, tables, "points.csv", HEAD + OK)
