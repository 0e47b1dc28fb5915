"""A small fixture world with answers computable by hand.

Grid: EPSG:32651, 4 × 3 cells of 1 km, lower-left (300 000, 3 400 000). Cell (iy, ix) has flat
index iy*4 + ix. Factors are round numbers so expected cell values can be written down.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from affine import Affine

from grids.grid import griddesc_crs

X0, Y0, NX, NY = 300_000, 3_400_000, 4, 3

SPECIES_YAML = """
species:
  SO2: {long_name: sulfur dioxide, kind: pollutant, molar_mass_g_mol: 64.066,
        cf_standard_name: tendency_of_atmosphere_mass_content_of_sulfur_dioxide_due_to_emission}
  NOx: {long_name: nitrogen oxides as NO2, kind: pollutant, molar_mass_g_mol: 46.0055}
  CO: {long_name: carbon monoxide, kind: pollutant}
  NMVOC: {long_name: non-methane volatile organic compounds, kind: pollutant}
  NH3: {long_name: ammonia, kind: pollutant}
  PM10: {long_name: PM10, kind: pollutant}
  PM2_5: {long_name: PM2.5, kind: pollutant}
  BC: {long_name: black carbon, kind: pollutant}
  OC: {long_name: organic carbon, kind: pollutant}
  CO2: {long_name: carbon dioxide, kind: greenhouse_gas, gwp100_ar5: 1, gwp100_ar6: 1}
  CH4: {long_name: methane, kind: greenhouse_gas, gwp100_ar5: 28, gwp100_ar6: 27}
  N2O: {long_name: nitrous oxide, kind: greenhouse_gas, gwp100_ar5: 265, gwp100_ar6: 273}
  CO2e: {long_name: CO2 equivalent, kind: derived}
co2e: {gwp_set: ar6, components: [CO2, CH4, N2O]}
"""

FACTORS_CSV = """sector,fuel,technology,species,value,unit,reference
power,coal,boiler,CO2,2000,kg/t,test
power,coal,boiler,SO2,10,kg/t,test
power,coal,boiler,NOx,5,kg/t,test
power,coal,boiler,PM10,2,kg/t,test
power,coal,boiler,PM2_5,1,kg/t,test
power,coal,boiler,CH4,1,kg/TJ,test
road,gasoline,car,CO2,200,g/km,test
road,gasoline,car,NOx,0.5,g/km,test
residential,natural_gas,stove,CO2,50000,kg/TJ,test
residential,natural_gas,stove,NOx,50,g/GJ,test
"""

CONTROLS_CSV = """control,species,efficiency,reference
fgd,SO2,0.9,test
esp,PM10,0.99,test
esp,PM2_5,0.98,test
"""

FUELS_CSV = """fuel,ncv,ncv_unit,reference
coal,20,GJ/t,test
natural_gas,40,MJ/m**3,test
"""

SECTORS_CSV = """sector,long_name,month_profile,weekday_profile,hour_profile,holiday_as,reference
power,power,flat,flat,flat,none,test
road,road,flat,work,peak8,sunday,test
residential,residential,flat,flat,flat,none,test
"""


def _profiles() -> str:
    rows = ["profile_id,kind,index,value,reference"]
    rows += [f"flat,month,{m},1,test" for m in range(1, 13)]
    rows += [f"flat,weekday,{d},1,test" for d in range(1, 8)]
    rows += [f"flat,hour,{h},1,test" for h in range(24)]
    # weekdays 2 each, Saturday 1, Sunday 0.5
    rows += [f"work,weekday,{d},{v},test" for d, v in zip(range(1, 8), [2, 2, 2, 2, 2, 1, 0.5])]
    # everything in local hour 8 (08:00-09:00 Asia/Shanghai = 00:00-01:00 UTC)
    rows += [f"peak8,hour,{h},{1 if h == 8 else 0},test" for h in range(24)]
    return "\n".join(rows) + "\n"


POINTS_CSV = """source_id,sector,fuel,technology,control,activity,activity_unit,x,y,stack_height_m
P1,power,coal,boiler,fgd+esp,1000,t,300500,3400500,100
P2,power,coal,boiler,none,500,t,303500,3402500,60
P3,power,coal,boiler,none,100,t,310000,3400500,30
"""

# L1 spans cells (0,0) and (0,1) equally; L2 is 25 % inside (cell (1,3)); L3 lies on the edge
# x = 301 000 between cells (0,0) and (0,1).
LINES_CSV = """source_id,sector,fuel,technology,activity,activity_unit,geometry
L1,road,gasoline,car,1000000,km,"LINESTRING (300000 3400500, 302000 3400500)"
L2,road,gasoline,car,1000000,km,"LINESTRING (303500 3401500, 305500 3401500)"
L3,road,gasoline,car,1000000,km,"LINESTRING (301000 3400200, 301000 3400800)"
"""

# A1 covers cells (0,0),(0,1): proxy 3:1 → 0.75/0.25. A2 straddles the east edge: half outside.
# A3 lies where the proxy is zero: falls back to area.
AREAS_CSV = """source_id,sector,fuel,technology,activity,activity_unit,proxy,geometry
A1,residential,natural_gas,stove,1000,m**3,population,"POLYGON ((300000 3400000, 302000 3400000, 302000 3401000, 300000 3401000, 300000 3400000))"
A2,residential,natural_gas,stove,1000,m**3,population,"POLYGON ((303000 3402000, 305000 3402000, 305000 3403000, 303000 3403000, 303000 3402000))"
A3,residential,natural_gas,stove,1000,m**3,population,"POLYGON ((302000 3401000, 303000 3401000, 303000 3402000, 302000 3402000, 302000 3401000))"
"""


def write_proxy(path: Path) -> None:
    """500 m raster over x 300–306 km, y 3400–3403 km (beyond the grid to the east).

    Cell (0,0) holds proxy 3 (four pixels of 0.75), cell (0,1) holds 1 (four of 0.25); cell
    (1,2) holds 0; everything else 1 per pixel.
    """
    nrow, ncol = 6, 12
    v = np.ones((nrow, ncol), dtype="float32")
    # rows counted from the top (y = 3 403 000); grid row iy=0 is raster rows 4-5
    v[4:6, 0:2] = 0.75
    v[4:6, 2:4] = 0.25
    v[2:4, 4:6] = 0.0
    with rasterio.open(path, "w", driver="GTiff", width=ncol, height=nrow, count=1,
                       dtype="float32", crs="EPSG:32651",
                       transform=Affine(500, 0, X0, 0, -500, Y0 + 3000)) as dst:
        dst.write(v, 1)


def write_world(root: Path, *, sectors: list[str] | None = None) -> Path:
    """Write tables, inputs and config under ``root``; return the config path."""
    cfg_dir = root / "config"
    data = root / "data"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    (cfg_dir / "species.yaml").write_text(SPECIES_YAML)
    (cfg_dir / "emission_factors.csv").write_text(FACTORS_CSV)
    (cfg_dir / "control_efficiencies.csv").write_text(CONTROLS_CSV)
    (cfg_dir / "fuels.csv").write_text(FUELS_CSV)
    (cfg_dir / "sectors.csv").write_text(SECTORS_CSV)
    (cfg_dir / "temporal_profiles.csv").write_text(_profiles())
    (data / "points.csv").write_text(POINTS_CSV)
    (data / "lines.csv").write_text(LINES_CSV)
    (data / "areas.csv").write_text(AREAS_CSV)
    write_proxy(data / "population.tif")
    sector_line = f"sectors: {sectors}\n" if sectors else ""
    cfg = textwrap.dedent(f"""\
        name: fixture
        year: 2024
        grid: {{crs: "EPSG:32651", x0: {X0}, y0: {Y0}, dx: 1000, dy: 1000, nx: {NX}, ny: {NY}, name: T1KM}}
        tables:
          species: species.yaml
          sectors: sectors.csv
          fuels: fuels.csv
          emission_factors: emission_factors.csv
          control_efficiencies: control_efficiencies.csv
          temporal_profiles: temporal_profiles.csv
        inputs:
          - {{name: points, kind: point, path: ../data/points.csv, crs: "EPSG:32651", x_column: x, y_column: y}}
          - {{name: lines, kind: line, path: ../data/lines.csv, crs: "EPSG:32651"}}
          - {{name: areas, kind: area, path: ../data/areas.csv, crs: "EPSG:32651"}}
        proxies:
          population: ../data/population.tif
        output: {{dir: ../out}}
        """) + sector_line
    path = cfg_dir / "build.yaml"
    path.write_text(cfg)
    return path


#: a speciation table of a test mechanism ``t1`` for the fixture species
SPECIATION = """mechanism,sector,pollutant,model_species,mass_fraction,molar_mass_g_mol,reference
t1,*,NOx,NO,0.9,46.0055,test
t1,*,NOx,NO2,0.1,46.0055,test
t1,road,NOx,NO,0.5,46.0055,test
t1,road,NOx,NO2,0.5,46.0055,test
t1,*,SO2,SO2,1,64.066,test
t1,*,CO,CO,1,28.0101,test
t1,*,PM2_5_other,PSO4,0.25,,test
t1,*,PM2_5_other,PMOTHR,0.75,,test
t1,*,BC,PEC,1,,test
t1,*,OC,POC,1,,test
t1,*,PMC,PMC,1,,test
"""

#: a WRF-Chem emiss_opt 3 (RADM2/MADE-SORGAM) mechanism for the fixture world (rows to add
#: to SPECIATION)
SPECIATION_W3 = """w3,*,NOx,NO,0.9,46.0055,test
w3,*,NOx,NO2,0.1,46.0055,test
w3,*,SO2,SO2,1,64.066,test
w3,*,CO,CO,1,28.0101,test
w3,*,PM2_5_other,SO4J,0.25,,test
w3,*,PM2_5_other,PM25J,0.75,,test
w3,*,BC,ECJ,1,,test
w3,*,OC,ORGJ,1,,test
w3,*,PMC,PM_10,1,,test
"""


LCC_GRIDDESC = """' '
'LAM_CN'
  2  25.000  40.000  110.000  110.000  34.000
' '
'T3KM'
'LAM_CN'  {x0}  {y0}  3000.000  3000.000  4  3  1
' '
"""


def lcc_world(world: Path) -> tuple[pyproj.CRS, float, float]:
    """Put the fixture world (config path ``world``) on a 3 km Lambert grid (CMAQ China
    projection, FACTS §4): writes ``GRIDDESC`` beside the config and points its ``grid:`` at it.

    Returns the grid's CRS and lower-left corner ``x0, y0`` [m].
    """
    crs = griddesc_crs(2, 25, 40, 110, 110, 34)
    x, y = pyproj.Transformer.from_crs(32651, crs, always_xy=True).transform(300_000, 3_400_000)
    x0, y0 = np.floor(x / 3000) * 3000 - 3000, np.floor(y / 3000) * 3000 - 3000
    (world.parent / "GRIDDESC").write_text(LCC_GRIDDESC.format(x0=x0, y0=y0))
    text = world.read_text()
    start = text.index("grid:")
    end = text.index("\n", start)
    world.write_text(text[:start] + "grid: {griddesc: GRIDDESC, name: T3KM}" + text[end:])
    return crs, x0, y0
