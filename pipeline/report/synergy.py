"""The synergy page of a scenario build: the synergy table and the difference maps.

:func:`write_synergy_page` reads ``synergy.csv``, ``difference.nc`` and ``scenario.yaml``, which
:func:`pipeline.scenario.write_scenario_files` wrote into the build, and writes
``<build>/synergy/index.html`` with its PNG maps beside it.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from grids.regions import read_regions
from pipeline.report.build_dir import open_build
from pipeline.report.figures import boundary_lines_km, diff_map
from pipeline.report.html import fmt, html_page, label, save_png, table

MAP_SPECIES = ("CO2", "CO2e", "NOx", "SO2", "PM2_5", "NMVOC")


def _range(row: pd.Series, column: str, divide: float = 1.0, fmt_=fmt) -> str:
    """`` [p2.5, p97.5]`` of a synergy column when the table has its 95 % range, else ''."""
    lo, hi = row.get(f"{column}_p2_5"), row.get(f"{column}_p97_5")
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    return f" [{fmt_(lo / divide)}, {fmt_(hi / divide)}]"


def write_synergy_page(build_dir: Path, boundaries: Path | None) -> Path:
    """``synergy/index.html``: the synergy table and difference maps (combined and per measure).

    Parameters
    ----------
    build_dir : a scenario build directory (with ``synergy.csv`` and ``difference.nc`` of
        :func:`pipeline.scenario.write_scenario_files`)
    boundaries : district boundaries for the map outlines, or None

    Returns
    -------
    pathlib.Path
        Path of ``synergy/index.html``.
    """
    data = open_build(build_dir)
    out = build_dir / "synergy"
    out.mkdir(exist_ok=True)
    syn = pd.read_csv(build_dir / "synergy.csv")
    outlines = boundary_lines_km(read_regions(boundaries), data.grid)
    with xr.open_dataset(build_dir / "difference.nc") as ds:
        diff = ds["emission_difference"].load()
    species = [s for s in MAP_SPECIES if s in diff["species"].values]

    def fig(measure: str, sp: str) -> str | None:
        delta = diff.sel(measure=measure, species=sp).to_numpy() / 1e3  # t/yr
        if not np.any(delta != 0):
            return None
        title = f"Δ{label(sp)} — {measure}\nΣ {fmt(float(delta.sum()))} t/yr"
        return save_png(diff_map(delta, data, outlines, title, what="scenario − base"), out,
                        f"diff_{measure}_{sp}.png")

    combined = [f for f in (fig("combined", sp) for sp in species) if f]
    per_measure = []
    for m in [str(v) for v in diff["measure"].values if v != "combined"]:
        figs = [f for f in (fig(m, sp) for sp in ("CO2", "NOx")) if f]
        if figs:
            per_measure.append(f"<h3>{html.escape(m)}</h3><div class='figs'>{''.join(figs)}</div>")
    pollutants = [c[:-len("_t_per_kt_CO2")] for c in syn.columns if c.endswith("_t_per_kt_CO2")]
    co2 = "CO2_fossil" if "delta_CO2_fossil_t" in syn.columns else "CO2"  # the ratios' CO2
    head = ["measure", "basis", f"Δ{label(co2)} kt", "ΔCO2e kt"] \
        + [f"Δ{label(p)} t" for p in pollutants] \
        + [f"{label(p)} t/kt {label(co2)}" for p in ("NOx", "SO2", "PM2_5") if p in pollutants]
    rows = []
    for _, r in syn.iterrows():
        rows.append([r["measure"], r["basis"],
                     fmt(r[f"delta_{co2}_t"] / 1e3) + _range(r, f"delta_{co2}_t", 1e3),
                     fmt(r.get("delta_CO2e_t", np.nan) / 1e3)]
                    + [fmt(r[f"delta_{p}_t"]) + _range(r, f"delta_{p}_t") for p in pollutants]
                    + ["" if pd.isna(r[f"{p}_t_per_kt_CO2"]) else f"{r[f'{p}_t_per_kt_CO2']:.3g}"
                       + _range(r, f"{p}_t_per_kt_CO2", fmt_=lambda v: f"{v:.3g}")
                       for p in ("NOx", "SO2", "PM2_5") if p in pollutants])
    sc_doc = (build_dir / "scenario.yaml").read_text(encoding="utf-8") \
        if (build_dir / "scenario.yaml").exists() else ""
    sections = [
        ("table", "Synergy per measure",
         "<p class='note'>Scenario − base, t/yr (negative = avoided). <b>sequential</b>: the "
         "measure's change where it stands in the order of the scenario (these add up to "
         "<b>combined</b>); <b>alone</b>: the measure applied by itself to the base; "
         "<b>interaction</b> = combined − sum of alone. Co-benefit ratio: t pollutant per kt "
         "fossil CO2 (biogenic CO2 is not counted, as in CO2e), both as changes (positive: "
         "both fall). [a, b]: the 95 % range of the Monte Carlo members, base and scenario "
         "drawn with common random numbers (uncertainty.synergy_members).</p>"
         "<div class='scroll'>"
         + table(head, rows, numeric=set(range(2, len(head))), table_id="synergy") + "</div>"),
        ("maps", "Combined difference maps",
         "<p class='note'>Gridded annual change, t/yr per cell. Σ on a map covers the grid only; "
         "the table counts every source read, including the share of lines and ships beyond "
         "the domain.</p><div class='figs'>" + "".join(combined) + "</div>"),
        ("measures", "Per measure (sequential): CO2 and NOx", "".join(per_measure)),
        ("scenario", "Scenario file", f"<pre>{html.escape(sc_doc)}</pre>"),
    ]
    body = [f"<section id='{k}'><h2>{html.escape(t)}</h2>{c}</section>" for k, t, c in sections]
    index = out / "index.html"
    index.write_text(html_page(f"Tongyuan scenario {data.build_id}", [(k, t) for k, t, _ in
                                                                       sections], body),
                     encoding="utf-8")
    return index
