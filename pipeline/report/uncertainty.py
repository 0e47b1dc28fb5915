"""The uncertainty section of the QA report: Approach 1 and Monte Carlo tables, maps of the
relative 95 % half-width per cell, and the same-source ratio distributions.

Reads what :mod:`pipeline.uncertainty` wrote into the build: ``uncertainty.csv`` and, after
``tongyuan uncertainty`` (or ``uncertainty.members`` > 0), ``uncertainty/uncertainty_mc.csv``,
``uncertainty/uncertainty_ratios.csv`` and ``uncertainty/uncertainty.nc``.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from pipeline.report.build_dir import BuildData
from pipeline.report.figures import map_figure
from pipeline.report.html import fmt, label, save_png, table

#: species shown per sector and mapped
KEY = ("CO2", "NOx", "SO2", "PM2_5", "CO", "NMVOC", "CH4")
MAPPED = ("CO2", "NOx")


def _pct(v: float) -> str:
    return "" if pd.isna(v) else f"{v:.1f}"


def _approach1(a1: pd.DataFrame) -> str:
    city = a1[a1["sector"] == "city"]
    rows = [[label(r.species), fmt(r.central_kg / 1e3), f"±{_pct(r.u95_pct)}",
             fmt(r.lower_kg / 1e3), fmt(r.upper_kg / 1e3)] for r in city.itertuples()]
    out = ("<h3>City totals, Approach 1</h3>"
           + table(["species", "central t/yr", "95 % half-width %", "lower t/yr", "upper t/yr"],
                   rows, numeric={1, 2, 3, 4}, table_id="unc-city"))
    key = [s for s in KEY if s in set(a1["species"])]
    wide = a1[a1["sector"] != "city"].pivot(index="sector", columns="species", values="u95_pct")
    rows = [[sec, *[_pct(wide.loc[sec].get(s, np.nan)) for s in key]] for sec in wide.index]
    return out + ("<h3>Per sector, Approach 1 (95 % half-width, % of the sector total)</h3>"
                  + table(["sector", *[label(s) for s in key]], rows,
                          numeric=set(range(1, len(key) + 1)), table_id="unc-sector"))


def _monte_carlo(mc: pd.DataFrame) -> str:
    key = [s for s in KEY if s in set(mc["species"])]
    sel = mc[mc["species"].isin(key)].copy()
    sel["order"] = sel["species"].map({s: i for i, s in enumerate(key)})
    sel = sel.sort_values(["sector", "order"])
    rows = [[r.sector, label(r.species), fmt(r.central_kg / 1e3), fmt(r.median_kg / 1e3),
             f"{r.mc_lower_pct:+.1f} / {r.mc_upper_pct:+.1f}", _pct(r.approach1_u95_pct)]
            for r in sel.itertuples()]
    return ("<h3>Monte Carlo (Approach 2) per sector</h3>"
            + table(["sector", "species", "central t/yr", "median t/yr",
                     "2.5 / 97.5 % vs central (%)", "Approach 1 ±%"], rows,
                    numeric={2, 3, 5}, table_id="unc-mc"))


def _ratio_figure(ratios: pd.DataFrame, ratio: str) -> plt.Figure:
    sub = ratios[ratios["ratio"] == ratio]
    sectors = list(dict.fromkeys(sub["sector"]))
    fig, ax = plt.subplots(figsize=(6.2, 0.35 * len(sectors) + 1.2))
    for k, (mode, colour) in enumerate((("correlated", "#c0392b"),
                                        ("independent_activity", "#7f8c8d"))):
        part = sub[sub["activity"] == mode].set_index("sector").reindex(sectors)
        y = np.arange(len(sectors)) + (0.18 if k else -0.18)
        med = part["median"].to_numpy()
        err = np.vstack([med - part["p2_5"].to_numpy(), part["p97_5"].to_numpy() - med])
        ax.errorbar(med, y, xerr=err, fmt="o", ms=3, color=colour, capsize=2,
                    label="shared activity" if k == 0 else "activity drawn per species")
    ax.set_yticks(np.arange(len(sectors)), sectors, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(f"{ratio} (g/kg), median and 95 % range", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def uncertainty_section(data: BuildData, out: Path, outlines: list[np.ndarray]) -> str:
    """HTML of the report's uncertainty section (figures saved under ``out``)."""
    path = data.path / "uncertainty.csv"
    if not path.exists():
        return ("<p class='note'>Not assessed: the build's tables carry no uncertainty "
                "columns (README, Uncertainty).</p>")
    parts = ["<p class='note'>IPCC 2006 Vol. 1 Ch. 3. Approach 1: linear propagation of the "
             "activity, factor, fuel-carbon and device uncertainties, shared parameters fully "
             "correlated. Ranges in % of the central value.</p>",
             _approach1(pd.read_csv(path))]
    mc_dir = data.path / "uncertainty"
    if not (mc_dir / "uncertainty_mc.csv").exists():
        parts.append("<p class='note'>No Monte Carlo members yet: run <code>tongyuan "
                     "uncertainty &lt;build&gt; --members 1000</code>.</p>")
        return "".join(parts)
    parts.append(_monte_carlo(pd.read_csv(mc_dir / "uncertainty_mc.csv")))
    figs = []
    with xr.open_dataset(mc_dir / "uncertainty.nc") as ds:
        n = ds.attrs.get("tongyuan_uncertainty", "")
        for sp in [s for s in MAPPED if s in ds["species"].values]:
            lo = ds["annual_emissions_p2_5"].sel(species=sp).to_numpy()
            hi = ds["annual_emissions_p97_5"].sel(species=sp).to_numpy()
            c = ds["annual_emissions_central"].sel(species=sp).to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(c > 0, 50.0 * (hi - lo) / c, 0.0)
            fig = map_figure(rel, data.grid, outlines, f"{label(sp)}: relative 95 % half-width "
                             f"per cell\n(p97.5 − p2.5) / (2 × central)", "% of the cell's "
                             "central value")
            figs.append(save_png(fig, out, f"unc_map_{sp}.png"))
    parts.append(f"<h3>Per cell</h3><p class='note'>{html.escape(str(n))}</p>"
                 f"<div class='figs'>{''.join(figs)}</div>")
    ratios_path = mc_dir / "uncertainty_ratios.csv"
    if ratios_path.exists():
        ratios = pd.read_csv(ratios_path)
        if not ratios.empty:
            rfigs = [save_png(_ratio_figure(ratios, r), out,
                              f"unc_ratio_{r.replace('/', '_')}.png")
                     for r in dict.fromkeys(ratios["ratio"])]
            city = ratios[ratios["sector"] == "city"]
            rows = [[r.ratio, r.activity, f"{r.median:.3g}", f"{r.p2_5:.3g} – {r.p97_5:.3g}",
                     _pct(r.mc_u95_pct)] for r in city.itertuples()]
            parts.append("<h3>Same-source ratios</h3><p class='note'>One activity record drives "
                         "every species of a source: drawn with the shared activity (red) the "
                         "ratios are less uncertain than either species alone; grey: each "
                         "species' activity drawn apart.</p><div class='figs'>"
                         + "".join(rfigs) + "</div>"
                         + table(["ratio (city)", "activity", "median g/kg", "95 % range",
                                  "±% of central"], rows, numeric={2, 4},
                                 table_id="unc-ratios"))
    return "".join(parts)
