"""Write the SYNTHETIC MEIC-format regional inventory of the YRD demo (data/yrd-demo/meic).

Nothing here is MEIC data: MEIC is distributed by Tsinghua University after registration at
meicmodel.org and may not be redistributed. This generator writes files in MEIC's layout
(ESRI ASCII grids, lon/lat 0.25° on WGS 84, one file per month × sector × species, values in
t (Mg) per cell and month, named ``2024_01__transportation__NOx.asc``) with made-up numbers:
city blobs at the YRD's prefecture-level cities of Shanghai, Jiangsu, Zhejiang and Anhui on a
rural background over land (a coarse coastline), shipping at sea, plausible monthly cycles.
Seeded: the same files every run.

    python data/generate_yrd_demo.py      # rewrites data/yrd-demo/meic/*.asc
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "yrd-demo" / "meic"
YEAR = 2024
X0, Y0, DX, NX, NY = 116.75, 28.0, 0.25, 28, 24  # lon/lat of the lower-left corner, 0.25°
SEED = 20240116

#: (name, province, lon, lat, weight): the YRD's large cities (weights ~ urban size)
CITIES = [("Shanghai", "SH", 121.47, 31.23, 10.0), ("Nanjing", "JS", 118.80, 32.06, 4.0),
          ("Suzhou", "JS", 120.62, 31.30, 4.5), ("Wuxi", "JS", 120.31, 31.57, 2.5),
          ("Changzhou", "JS", 119.97, 31.81, 2.0), ("Nantong", "JS", 120.86, 32.01, 2.0),
          ("Yangzhou", "JS", 119.41, 32.39, 1.2), ("Zhenjiang", "JS", 119.45, 32.20, 1.0),
          ("Taizhou_JS", "JS", 119.92, 32.46, 1.0), ("Yancheng", "JS", 120.16, 33.35, 1.2),
          ("Hangzhou", "ZJ", 120.16, 30.27, 4.0), ("Ningbo", "ZJ", 121.55, 29.87, 3.0),
          ("Jiaxing", "ZJ", 120.75, 30.75, 1.5), ("Huzhou", "ZJ", 120.09, 30.89, 1.0),
          ("Shaoxing", "ZJ", 120.58, 30.00, 1.5), ("Zhoushan", "ZJ", 122.11, 30.02, 0.5),
          ("Taizhou_ZJ", "ZJ", 121.42, 28.66, 1.5), ("Hefei", "AH", 117.23, 31.82, 3.0),
          ("Wuhu", "AH", 118.38, 31.33, 1.5), ("Ma'anshan", "AH", 118.51, 31.67, 1.2)]

#: their sector → (t NOx per cell and year at weight 1, species ratios to NOx [t/t])
SECTORS = {
    "power": (4000.0, {"SO2": 0.35, "NOx": 1.0, "CO": 0.6, "VOC": 0.02, "PM25": 0.08,
                       "PMcoarse": 0.04, "BC": 0.002, "OC": 0.003, "CO2": 1200.0}),
    "industry": (5000.0, {"SO2": 0.6, "NOx": 1.0, "CO": 8.0, "VOC": 3.0, "PM25": 0.6,
                          "PMcoarse": 0.4, "BC": 0.04, "OC": 0.05, "CO2": 700.0}),
    "residential": (300.0, {"SO2": 0.5, "NOx": 1.0, "CO": 25.0, "VOC": 4.0, "PM25": 3.0,
                            "PMcoarse": 0.5, "BC": 0.5, "OC": 1.2, "CO2": 250.0}),
    "transportation": (3500.0, {"SO2": 0.1, "NOx": 1.0, "CO": 3.0, "VOC": 0.6, "PM25": 0.05,
                                "PMcoarse": 0.01, "BC": 0.02, "OC": 0.01, "CO2": 180.0,
                                "NH3": 0.01}),
    "agriculture": (400.0, {"NH3": 1.0}),  # NH3 t per cell and year at weight 1
}
#: monthly shares (sum 1): residential winter heating/cooking, agriculture summer
MONTHS = {
    "power": [9.2, 8.0, 8.1, 7.6, 7.8, 8.2, 9.4, 9.5, 8.0, 7.6, 7.9, 8.7],
    "industry": [7.5, 6.0, 8.4, 8.3, 8.5, 8.5, 8.4, 8.4, 8.6, 8.5, 8.9, 10.0],
    "residential": [12.5, 11.0, 9.0, 7.0, 6.0, 5.5, 5.5, 5.5, 6.0, 7.5, 10.0, 14.5],
    "transportation": [8.3] * 11 + [8.7],
    "agriculture": [4.0, 4.5, 7.0, 9.5, 10.5, 12.0, 13.0, 12.0, 9.0, 7.5, 6.0, 5.0],
}


def coast_lon(lat: np.ndarray) -> np.ndarray:
    """A coarse east coast of the YRD: land west of this longitude."""
    return np.interp(lat, [27.5, 28.5, 29.5, 30.5, 31.0, 31.5, 32.0, 33.0, 34.5],
                     [121.0, 121.5, 121.9, 121.9, 121.95, 121.9, 121.5, 120.8, 119.8])


def fields(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per sector the NOx-equivalent weight per cell (row 0 south), before sector scales."""
    lon = X0 + (np.arange(NX) + 0.5) * DX
    lat = Y0 + (np.arange(NY) + 0.5) * DX
    lo, la = np.meshgrid(lon, lat)
    land = lo < coast_lon(la)
    urban = np.zeros_like(lo)
    for _, _, x, y, w in CITIES:
        urban += w * np.exp(-((lo - x) ** 2 + (la - y) ** 2) / (2 * 0.18 ** 2))
    noise = rng.lognormal(0.0, 0.35, lo.shape)
    rural = 0.08 * noise * land
    out = {"power": np.where(land, urban * 0.5 * rng.lognormal(0, 0.8, lo.shape), 0.0),
           "industry": (urban * 0.8 + rural * 2) * land * noise,
           "residential": (urban + rural * 4) * land,
           "transportation": (urban + rural) * land + 0.15 * ~land * np.exp(
               -np.abs(lo - coast_lon(la)) / 0.8),
           "agriculture": land * noise * np.exp(-urban / 3.0)}
    return out


def write_asc(path: Path, values: np.ndarray) -> None:
    """ESRI ASCII, north row first, as MEIC writes it (cells under 0.5 kg written as 0)."""
    head = (f"ncols {NX}\nnrows {NY}\nxllcorner {X0}\nyllcorner {Y0}\ncellsize {DX}\n"
            "NODATA_value -9999\n")
    rows = "\n".join(" ".join("0" if v < 5e-4 else f"{v:.4g}" for v in row)
                     for row in values[::-1])
    path.write_text(head + rows + "\n", encoding="ascii")


def main() -> None:
    rng = np.random.default_rng(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.asc"):
        old.unlink()
    weights = fields(rng)
    for sector, (scale, ratios) in SECTORS.items():
        months = np.array(MONTHS[sector]) / sum(MONTHS[sector])
        for species, ratio in ratios.items():
            annual = weights[sector] * scale * ratio  # t per cell and year
            for m in range(12):
                write_asc(OUT / f"{YEAR}_{m + 1:02d}__{sector}__{species}.asc",
                          annual * months[m])
    total = sum(p.stat().st_size for p in OUT.glob("*.asc"))
    print(f"wrote {len(list(OUT.glob('*.asc')))} files, {total / 1e6:.2f} MB, to {OUT}")


if __name__ == "__main__":
    main()
