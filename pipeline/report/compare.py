"""Compare two builds on the same grid: what changed, where, and by how much.

:func:`compare_builds` reads ``annual.nc``, ``ledger.csv`` and the manifest of builds A and
B and writes ``out_dir/index.html`` (self-contained, figures embedded), the difference maps as
PNG files and ``differences.csv`` (per sector × species and per species over all sectors:
A, B, B − A in t/yr and the relative change). Builds on different grids are refused with a
:class:`~sources.errors.ConfigError` naming both.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from grids.regions import read_regions, region_names, region_of_cells, region_weights
from pipeline.report.build_dir import BuildData, open_build
from pipeline.report.figures import boundary_lines_km, diff_map
from pipeline.report.html import details, fmt, fmt_rel, html_page, label, save_png, table
from pipeline.report.qa import TOP_N
from sources.errors import ConfigError

ALL = "all sectors"


def grid_differences(a: BuildData, b: BuildData) -> list[str]:
    """How the grids of two builds differ (empty when they are the same).

    Compares the CRS, the number of cells, the lower-left corner and the cell size (to 1 mm).
    """
    ga, gb = a.grid, b.grid
    out = []
    if not ga.crs.equals(gb.crs):
        out.append(f"CRS {ga.crs.to_string()} vs {gb.crs.to_string()}")
    if (ga.nx, ga.ny) != (gb.nx, gb.ny):
        out.append(f"{ga.nx} × {ga.ny} vs {gb.nx} × {gb.ny} cells")
    tol = 1e-8 if ga.is_geographic else 1e-3  # degrees or metres
    if not np.allclose([ga.x0, ga.y0], [gb.x0, gb.y0], rtol=0, atol=tol):
        out.append(f"lower-left ({ga.x0:g}, {ga.y0:g}) vs ({gb.x0:g}, {gb.y0:g}) {ga.units}")
    if not np.allclose([ga.dx, ga.dy], [gb.dx, gb.dy], rtol=0, atol=tol):
        out.append(f"cell size {ga.dx:g} × {ga.dy:g} vs {gb.dx:g} × {gb.dy:g} {ga.units}")
    return out


def _aligned(a: BuildData, b: BuildData) -> tuple[xr.DataArray, xr.DataArray, list[str],
                                                   list[str]]:
    """Both annual grids on the union of sectors and species (missing = 0), kg/yr."""
    sectors = list(dict.fromkeys(a.sectors + b.sectors))
    species = list(dict.fromkeys(a.species + b.species))
    ya, yb = a.annual.reindex(sector=sectors, species=species, fill_value=0.0), \
        b.annual.reindex(sector=sectors, species=species, fill_value=0.0)
    yb = yb.assign_coords(x=ya["x"], y=ya["y"])
    return ya, yb, sectors, species


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(b − a) / a; 0 where both are 0; NaN where only a is 0."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(a != 0, (b - a) / np.where(a != 0, a, 1.0), np.nan)
    return np.where((a == 0) & (b == 0), 0.0, rel)


def differences_table(ya: xr.DataArray, yb: xr.DataArray) -> pd.DataFrame:
    """Totals of A and B per sector × species and per species over all sectors.

    Parameters
    ----------
    ya, yb : aligned annual grids of A and B [kg/yr], dims (sector, species, y, x)

    Returns
    -------
    pandas.DataFrame
        columns sector, species, a_t, b_t, b_minus_a_t [t/yr], relative_change [1] (NaN where
        A is 0 and B is not); the rows of sector ``all sectors`` come first.
    """
    ta = ya.sum(dim=("y", "x")).to_pandas() / 1e3
    tb = yb.sum(dim=("y", "x")).to_pandas() / 1e3
    rows = []
    for sp in ta.columns:
        rows.append((ALL, sp, float(ta[sp].sum()), float(tb[sp].sum())))
    for s in ta.index:
        for sp in ta.columns:
            rows.append((s, sp, float(ta.loc[s, sp]), float(tb.loc[s, sp])))
    df = pd.DataFrame(rows, columns=["sector", "species", "a_t", "b_t"])
    df["b_minus_a_t"] = df["b_t"] - df["a_t"]
    df["relative_change"] = _relative(df["a_t"], df["b_t"])
    return df


def _top_changed(sp: str, da: np.ndarray, db: np.ndarray, data: BuildData,
                 dist: list[str] | None) -> str:
    d = (db - da).ravel()
    order = [c for c in np.argsort(-np.abs(d), kind="stable")[:TOP_N] if d[c] != 0]
    if not order:
        return f"<p class='note'>{label(sp)}: no cell changed.</p>"
    rel = _relative(da.ravel()[order], db.ravel()[order])
    rows = []
    for k, c in enumerate(order):
        iy, ix = divmod(int(c), data.grid.nx)
        rows.append([k + 1, iy, ix, f"{data.lon.ravel()[c]:.4f}", f"{data.lat.ravel()[c]:.4f}",
                     dist[c] if dist else "–", fmt(da.ravel()[c]), fmt(db.ravel()[c]),
                     ("+" if d[c] > 0 else "") + fmt(d[c]),
                     "new" if np.isnan(rel[k]) else fmt_rel(rel[k])])
    head = ["#", "iy", "ix", "lon", "lat", "district", "A t/yr", "B t/yr", "B − A t/yr",
            "change"]
    return table(head, rows, numeric={0, 1, 2, 3, 4, 6, 7, 8, 9}, table_id=f"top-changed-{sp}")


def _build_rows(a: BuildData, b: BuildData) -> str:
    def row(key: str, va: str, vb: str) -> str:
        same = "" if va == vb else " class='warn'"
        return (f"<tr><td>{html.escape(key)}</td><td>{html.escape(va)}</td>"
                f"<td{same}>{html.escape(vb)}</td></tr>")

    items = [("build id", a.build_id, b.build_id), ("year", str(a.year), str(b.year)),
             ("config hash", str(a.config_hash), str(b.config_hash)),
             ("code version", str(a.attrs.get("tongyuan_code_version", "?")),
              str(b.attrs.get("tongyuan_code_version", "?"))),
             ("config", str(a.config), str(b.config)),
             ("period", str(a.period or "whole year"), str(b.period or "whole year")),
             ("directory", str(a.path), str(b.path))]
    ia, ib = a.inputs, b.inputs
    for name in sorted(set(ia) | set(ib)):
        items.append((f"input {name} sha256", str(ia.get(name, "absent"))[:16],
                      str(ib.get(name, "absent"))[:16]))
    body = "".join(row(*i) for i in items)
    return (f"<table class='meta'><thead><tr><th></th><th>A</th><th>B</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _what_changed(a: BuildData, b: BuildData) -> str:
    ia, ib = a.inputs, b.inputs
    changed = [n for n in sorted(set(ia) | set(ib)) if ia.get(n) != ib.get(n)]
    notes = []
    if a.config_hash == b.config_hash:
        notes.append("Same config hash: configuration, tables and inputs are identical.")
    elif changed:
        notes.append("Inputs that differ: " + ", ".join(changed) + ".")
    else:
        notes.append("Inputs are identical; the configuration or its tables (factors, profiles, "
                     "…) differ.")
    if a.year != b.year:
        notes.append(f"The builds are for different years ({a.year}, {b.year}).")
    return "".join(f"<p>{html.escape(n)}</p>" for n in notes)


def compare_builds(build_a: str | Path, build_b: str | Path, out_dir: str | Path, *,
                   boundaries: str | Path | None = None) -> Path:
    """Compare build B with build A; write ``index.html``, PNG maps and ``differences.csv``.

    Parameters
    ----------
    build_a, build_b : build directories (A is the reference: differences are B − A)
    out_dir : output directory (created)
    boundaries : district GeoPackage for outlines and the district of the top cells; default
        the ``boundaries`` of B's manifest, else A's

    Returns
    -------
    pathlib.Path
        Path of ``index.html``. Amounts are gridded annual emissions in t/yr.

    Raises
    ------
    ConfigError
        When the grids differ (CRS, cells, origin or cell size); the message names both builds.
    """
    t0 = time.perf_counter()
    a, b = open_build(build_a), open_build(build_b)
    diff = grid_differences(a, b)
    if diff:
        raise ConfigError(f"cannot compare build {a.build_id} ({a.path}) with build {b.build_id} "
                          f"({b.path}): their grids differ ({'; '.join(diff)}); a comparison "
                          "needs both builds on the same grid")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("diff_*.png"):  # figures of an earlier run
        old.unlink()
    ya, yb, sectors, species = _aligned(a, b)
    df = differences_table(ya, yb)
    df.to_csv(out / "differences.csv", index=False, float_format="%.12g")

    bpath = boundaries or b.boundaries or a.boundaries
    districts = read_regions(bpath)
    dist = (region_of_cells(region_weights(b.grid, districts), region_names(districts))
            if districts is not None else None)
    outlines = boundary_lines_km(districts, b.grid)

    # totals per species, then per sector × species (changed rows open, all in details)
    per = df[df["sector"] == ALL]

    def trow(r: pd.Series, with_sector: bool) -> list[str]:
        rel = "new" if np.isnan(r.relative_change) else fmt_rel(r.relative_change)
        d = ("+" if r.b_minus_a_t > 0 else "") + fmt(r.b_minus_a_t)
        return ([r.sector] if with_sector else []) + [label(r.species), fmt(r.a_t), fmt(r.b_t),
                                                       d, rel]

    head = ["species", "A t/yr", "B t/yr", "B − A t/yr", "change"]
    species_html = table(head, [trow(r, False) for _, r in per.iterrows()],
                         numeric={1, 2, 3, 4}, table_id="species-totals")
    sec = df[df["sector"] != ALL]
    changed = sec[sec["b_minus_a_t"] != 0]
    sector_html = (table(["sector", *head], [trow(r, True) for _, r in changed.iterrows()],
                         numeric={2, 3, 4, 5}, table_id="sector-changes")
                   if len(changed) else "<p class='ok'>No sector × species total changed.</p>")
    sector_html += details(f"All {len(sec)} sector × species rows", table(
        ["sector", *head], [trow(r, True) for _, r in sec.iterrows()], numeric={2, 3, 4, 5},
        table_id="sector-all"))

    # maps and top cells
    ta = ya.sum("sector").to_numpy() / 1e3
    tb = yb.sum("sector").to_numpy() / 1e3
    maps, unchanged = [], []
    for i, sp in enumerate(species):
        delta = tb[i] - ta[i]
        if not np.any(delta != 0):
            unchanged.append(label(sp))
            continue
        tot_a, tot_b = float(ta[i].sum()), float(tb[i].sum())
        rel = _relative(np.array([tot_a]), np.array([tot_b]))[0]
        title = (f"{label(sp)}: B − A, annual\nΣ {('+' if tot_b >= tot_a else '')}"
                 f"{fmt(tot_b - tot_a)} t/yr ({'new' if np.isnan(rel) else fmt_rel(rel)})")
        maps.append(save_png(diff_map(delta, b, outlines, title), out, f"diff_{sp}.png"))
    tops = "".join(f"<h3>By |Δ{label(sp)}|</h3>" + _top_changed(sp, ta[i], tb[i], b, dist)
                   for i, sp in enumerate(species) if sp in ("CO2", "NOx"))

    sections = [
        ("builds", "Builds", _build_rows(a, b) + _what_changed(a, b)),
        ("species", "Totals per species", "<p class='note'>Gridded annual emissions (sum of "
         "annual.nc), t/yr; change = (B − A) / A.</p>" + species_html),
        ("sectors", "Changes per sector", "<div class='scroll'>" + sector_html + "</div>"),
        ("maps", "Difference maps", ("<div class='figs'>" + "".join(maps) + "</div>")
         + (f"<p class='note'>Unchanged everywhere: {', '.join(unchanged)}.</p>"
            if unchanged else "")),
        ("cells", "Cells that changed most", f"<p class='note'>The {TOP_N} cells with the "
         "largest absolute change; lon/lat of the cell centre.</p>" + tops),
    ]
    body = [f"<p class='note'>A = {html.escape(a.build_id)}, B = {html.escape(b.build_id)}. "
            f"Written in {time.perf_counter() - t0:.1f} s; differences.csv beside this file.</p>"]
    body += [f"<section id='{k}'><h2>{html.escape(t)}</h2>{c}</section>" for k, t, c in sections]
    index = out / "index.html"
    index.write_text(html_page(f"Tongyuan comparison — {b.build_id} vs {a.build_id}",
                               [(k, t) for k, t, _ in sections], body), encoding="utf-8")
    return index
