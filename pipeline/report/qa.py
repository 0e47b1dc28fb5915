"""QA report of one published build, for inventory staff signing off an inventory.

:func:`write_report` reads only the build directory (``annual.nc``, ``ledger.csv``,
``emissions_by_source.csv``, ``sources.csv``, ``notices.csv``, ``inputs.csv``, the manifest,
the optional ``checks.csv`` and the hourly files of two sample weeks) and writes
``<build>/report/index.html`` with its PNG figures beside it. The HTML embeds the figures as data
URIs, so the one file can be mailed.

The report shows: identity and inputs; totals per sector × species (t/yr, CO2e included); totals
per district (exact cell ∩ district area weights, :mod:`grids.regions`); annual maps per species;
with a regional inventory, the map of where each inventory holds (:mod:`~pipeline.report.regional`);
the hourly series of two weeks read from the files themselves, in the local time of the build's
temporal profiles (``profile_timezone`` of ``annual.nc``); monthly series; the top cells and the
top stacks; the ledger; the notices; the same-source check findings. It also re-checks what it
can cheaply: the sha256 of every file it reads against the manifest, ``annual.nc`` against the
ledger, the ledger balance, and the sampled hourly files against ``annual.nc`` × temporal
factors.

:func:`summary_markdown` gives a short markdown summary for a Prefect artifact.
"""

from __future__ import annotations

import datetime as dt
import html
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import netCDF4
import numpy as np
import pandas as pd
import pyproj
import xarray as xr

from grids.regions import OUTSIDE, read_regions, region_names, region_of_cells, region_weights
from pipeline.report.build_dir import BuildData, open_build
from pipeline.report.figures import boundary_lines_km, map_figure, monthly_figure, week_figure
from pipeline.report.html import Raw, details, fmt, html_page, label, save_png, table
from pipeline.report.regional import regional_section
from pipeline.report.uncertainty import uncertainty_section

KEY_SPECIES = ["CO2", "NOx", "SO2", "PM2_5", "NMVOC", "CO"]
TOP_N = 20
SECONDS_PER_HOUR = 3600.0
LEDGER_COLUMNS = ["read_kg", "gridded_kg", "outside_domain_kg", "rejected_kg", "written_kg"]


def monthly_totals(data: BuildData) -> pd.DataFrame:
    """t/month per species: Σ_sector annual total × Σ temporal factors of the UTC month.

    Returns
    -------
    pandas.DataFrame
        index month 1..12, columns species, tonnes.
    """
    tot = data.sector_species_kg()  # (sector, species) kg
    f = data.factors.sel(sector=tot["sector"])
    fm = f.groupby("time.month").sum()  # (sector, month) or (month, sector)
    m = xr.dot(tot, fm, dim="sector").transpose("month", "species")
    return pd.DataFrame(m.to_numpy() / 1e3, index=m["month"].to_numpy(), columns=data.species)


def default_weeks(year: int) -> list[pd.Timestamp]:
    """Local Monday 00:00 of the second full week (Monday–Sunday) of January and of July."""
    weeks = []
    for month in (1, 7):
        first = dt.date(year, month, 1)
        monday = first + dt.timedelta(days=(7 - first.weekday()) % 7)
        weeks.append(pd.Timestamp(monday + dt.timedelta(days=7)))
    return weeks


def hourly_city_totals(hourly_dir: Path, days: list[pd.Timestamp], species: list[str],
                       data: BuildData | None = None) -> pd.DataFrame:
    """City total per UTC hour [kg/h] of ``species`` from the daily files of ``days``.

    Reads ``Σ flux × cell_area × 3600 s`` per hour; missing files are skipped.

    Returns
    -------
    pandas.DataFrame
        index UTC times (naive), columns species, kg per hour.
    """
    frames = []
    for day in days:
        rel = f"hourly/{day:%Y%m%d}.nc"
        path = hourly_dir / f"{day:%Y%m%d}.nc"
        if not path.exists():
            continue
        if data is not None:
            data.verify(rel)
        with netCDF4.Dataset(path) as nc:
            nc.set_auto_mask(False)
            area = np.asarray(nc["cell_area"][:], dtype=np.float64)
            tv = nc["time"]
            origin = pd.Timestamp(tv.units.split("since", 1)[1].strip())
            times = origin + pd.to_timedelta(np.asarray(tv[:], dtype=np.int64), unit="h")
            cols = {}
            for sp in species:
                if sp in nc.variables:  # 6 hours at a time: a 100 m day is 0.34 GB a species
                    v = nc[sp]
                    # each hour's chunk is read once: no cache (its default, 64 MB a variable,
                    # kept 17 species' last chunks until the file closed: 0.4 GB at 100 m)
                    v.set_var_chunk_cache(size=1)
                    cols[sp] = np.concatenate([
                        np.einsum("tyx,yx->t", np.asarray(v[t:t + 6], np.float64), area)
                        for t in range(0, v.shape[0], 6)]) * SECONDS_PER_HOUR
        frames.append(pd.DataFrame(cols, index=times))
    if not frames:
        return pd.DataFrame(columns=species, dtype=float)
    return pd.concat(frames).sort_index()


def expected_hourly(data: BuildData, times: pd.DatetimeIndex, species: list[str]) -> pd.DataFrame:
    """City total per UTC hour [kg/h] from ``annual.nc``: Σ_sector total × factor."""
    tot = data.sector_species_kg().sel(species=species)  # (sector, species)
    f = data.factors.sel(sector=tot["sector"]).sel(time=times.to_numpy())
    e = xr.dot(f, tot, dim="sector").transpose("time", "species")
    return pd.DataFrame(e.to_numpy(), index=times, columns=species)


def week_series(data: BuildData, start_local: pd.Timestamp, species: list[str]
                ) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """One local week of hourly city totals from the files, the expected series and their
    largest relative difference.

    Parameters
    ----------
    data : the build
    start_local : start of the week, naive, in the build's profile time zone
        (:attr:`BuildData.timezone`)
    species : species to read

    Returns
    -------
    (measured, expected, max relative difference)
        kg/h per species, indexed by naive *local* times; empty frames if no file covers it.
    """
    zone = data.timezone
    start_utc, end_utc = (t.tz_localize(zone, nonexistent="shift_forward").tz_convert("UTC")
                          .tz_localize(None) for t in (start_local,
                                                       start_local + pd.Timedelta(days=7)))
    days = list(pd.date_range(start_utc.normalize(), (end_utc - pd.Timedelta(hours=1))
                              .normalize(), freq="D"))
    measured = hourly_city_totals(data.path / "hourly", days, species, data)
    measured = measured[(measured.index >= start_utc) & (measured.index < end_utc)]
    if measured.empty:
        return measured, measured, float("nan")
    expected = expected_hourly(data, measured.index, list(measured.columns))
    scale = np.maximum(np.abs(measured.to_numpy()), np.abs(expected.to_numpy()))
    peak = scale.max(axis=0, keepdims=True)
    diff = np.abs(measured.to_numpy() - expected.to_numpy()) / np.where(peak > 0, peak, 1.0)
    local = (measured.index.tz_localize("UTC").tz_convert(zone).tz_localize(None))
    measured.index = local
    expected.index = local
    return measured, expected, float(diff.max())


def pick_weeks(data: BuildData, weeks: list[str | pd.Timestamp] | None) -> list[pd.Timestamp]:
    """The requested weeks, or the defaults; for a period build without those files, the
    first seven days the build has."""
    chosen = [pd.Timestamp(w) for w in weeks] if weeks else default_weeks(data.year)
    hourly = data.path / "hourly"
    have = sorted(p.stem for p in hourly.glob("*.nc")) if hourly.is_dir() else []
    if not have:
        return []

    def covered(w: pd.Timestamp) -> bool:
        return (hourly / f"{w:%Y%m%d}.nc").exists()

    ok = [w for w in chosen if covered(w)]
    if not ok:
        first = pd.Timestamp(have[0]) + pd.Timedelta(days=1)
        ok = [first if covered(first) else pd.Timestamp(have[0])]
    return ok


def local_time_label(zone: str, start_local: pd.Timestamp, days: int = 7) -> str:
    """Time-axis label naming ``zone`` and its UTC offset(s) over ``days`` from ``start_local``.

    ``"local time (Asia/Shanghai, UTC+8)"``; ``"local time (Europe/Berlin, UTC+1/+2)"`` for a
    week across a change of summer time; ``"UTC"`` for UTC.
    """
    if zone == "UTC":
        return "UTC"
    utc = pd.date_range(start_local - pd.Timedelta(days=1), periods=(days + 2) * 24, freq="h",
                        tz="UTC")
    local = utc.tz_convert(zone)
    local = local[(local.tz_localize(None) >= start_local)
                  & (local.tz_localize(None) < start_local + pd.Timedelta(days=days))]
    offsets = sorted({int(t.utcoffset().total_seconds()) // 60 for t in local})

    def text(minutes: int) -> str:
        h, m = divmod(abs(minutes), 60)
        return ("+" if minutes >= 0 else "-") + f"{h}" + (f":{m:02d}" if m else "")

    return f"local time ({zone}, UTC{'/'.join(text(o) for o in offsets)})"


def _input_cell(column: str, value: Any) -> Any:
    if pd.isna(value):
        return ""
    return str(value)[:16] + "…" if column == "sha256" else value


def _shown_path(path: Any, recorded: str | None) -> str:
    """How the report names a file the build used: its path relative to the configuration as
    the manifest records it, or its bare name for a file given otherwise (a published page
    never shows the server's absolute paths)."""
    if not path:
        return "none configured"
    if recorded and Path(recorded).name == Path(path).name:
        return recorded
    return Path(path).name


def _header(data: BuildData, inputs: pd.DataFrame | None, boundaries: Any) -> str:
    a = data.attrs
    g = data.grid
    rows = [
        ("build id", data.build_id),
        ("year", str(data.year)),
        ("period", " .. ".join(data.period) if data.period else "whole year"),
        ("config hash", str(a.get("tongyuan_config_hash") or data.config_hash)),
        ("code version", str(a.get("tongyuan_code_version", "?"))),
        ("config", str(data.config or "?")),
        ("grid", f"{g.name}: {g.nx} × {g.ny} cells of {g.dx:g} × {g.dy:g} {g.units}, "
                 f"{g.crs.name} ({g.crs.to_string()}), lower-left ({g.x0:g}, {g.y0:g}) "
                 f"{g.units}"),
        ("district boundaries", _shown_path(boundaries, data.manifest.boundaries)),
        ("history", str(a.get("history", ""))),
        # the published name (a report is written in the staging folder, then published)
        ("build directory", data.path.name.removeprefix(".staging-")),
    ]
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    out = [f"<table class='meta'>{body}</table>"]
    if inputs is not None and len(inputs):
        cols = [c for c in ("name", "kind", "format", "rows", "source_crs", "path", "sha256")
                if c in inputs.columns]
        trows = []
        for _, r in inputs.iterrows():
            trows.append([_input_cell(c, r[c]) for c in cols])
        out.append("<h3>Inputs</h3>" + table(cols, trows, numeric={cols.index("rows")}
                                               if "rows" in cols else None, table_id="inputs"))
    return "".join(out)


def _qa_block(items: list[tuple[bool | None, str]]) -> str:
    li = []
    for ok, text in items:
        cls, mark = ("ok", "OK") if ok else ("note", "–") if ok is None else ("bad", "FAIL")
        li.append(f"<li><span class='{cls}'>{mark}</span> {html.escape(text)}</li>")
    return f"<ul>{''.join(li)}</ul>"


def _sector_species_table(data: BuildData) -> tuple[str, bool, float]:
    """Sector × species table in t/yr from annual.nc, and its agreement with the ledger."""
    tot = data.sector_species_kg().to_pandas() / 1e3  # sector × species, t
    species = data.species
    rows = [[s, *[fmt(tot.loc[s, sp]) for sp in species]] for s in tot.index
            if tot.loc[s].abs().sum() > 0]
    rows.append(["total", *[fmt(tot[sp].sum()) for sp in species]])
    led = data.ledger["gridded_kg"].unstack("species").reindex(index=tot.index,
                                                               columns=species).fillna(0) / 1e3
    scale = np.maximum(np.abs(led.to_numpy()), np.abs(tot.to_numpy()))
    rel = np.abs(led.to_numpy() - tot.to_numpy()) / np.where(scale > 0, scale, 1)
    worst = float(rel.max()) if rel.size else 0.0
    html_t = table(["sector", *[label(s) for s in species]], rows,
                   numeric=set(range(1, len(species) + 1)), table_id="sector-species",
                   bold_last=True)
    return f"<div class='scroll'>{html_t}</div>", worst <= 1e-9, worst


def _ledger_section(data: BuildData) -> tuple[str, bool, float]:
    led = data.ledger
    cols = [c for c in LEDGER_COLUMNS if c in led.columns]
    per = led[cols].groupby(level="species", sort=False).sum()
    resid = (led["read_kg"] - led["gridded_kg"] - led["outside_domain_kg"] - led["rejected_kg"])
    scale = led["read_kg"].abs().where(led["read_kg"].abs() > 0, 1.0)
    worst = float((resid.abs() / scale).max()) if len(led) else 0.0
    head = ["species", *[c.replace("_kg", "").replace("_", " ") + " t/yr" for c in cols]]
    rows = [[label(sp), *[fmt(per.loc[sp, c] / 1e3) for c in cols]] for sp in per.index]
    full_rows = [[s, label(sp), *[fmt(r[c] / 1e3) for c in cols]] for (s, sp), r in led.iterrows()]
    period = data.period
    note = ("<p class='note'>read = gridded + outside domain + rejected; written is what the "
            "hourly files carry" + (f" for the period {period[0]} .. {period[1]}" if period
                                    else " (= gridded for a whole-year build)") + ".</p>")
    out = (note + table(head, rows, numeric=set(range(1, len(head))), table_id="ledger-species")
           + details(f"Full ledger: {len(led)} rows (sector × species, t/yr)",
                     "<div class='scroll'>" + table(["sector", *head], full_rows,
                                                     numeric=set(range(2, len(head) + 1)),
                                                     table_id="ledger-full") + "</div>"))
    return out, worst <= 1e-9, worst


def _district_section(data: BuildData, districts: gpd.GeoDataFrame | None,
                      weights: np.ndarray | None) -> str:
    if districts is None or weights is None:
        return "<p class='note'>No district boundaries: set <code>boundaries:</code> in the " \
               "config or pass <code>boundaries=</code>.</p>"
    t = data.totals_t().reshape(len(data.species), -1)  # species × cells
    by_d = t @ weights  # species × districts
    outside = t @ np.clip(1.0 - weights.sum(axis=1), 0.0, 1.0)
    species = data.species
    rows = []
    for k, (_, r) in enumerate(districts.iterrows()):
        rows.append([str(r["district_code"]), str(r.get("name_zh") or ""),
                     str(r.get("name_en") or ""), *[fmt(by_d[i, k]) for i in range(len(species))]])
    rows.append(["", "", OUTSIDE, *[fmt(v) for v in outside]])
    rows.append(["", "", "total", *[fmt(v) for v in t.sum(axis=1)]])
    cell_km2 = data.grid.cell_area_m2.ravel() / 1e6
    covered = float(np.asarray(weights.sum(axis=1)).ravel() @ cell_km2)
    note = (f"<p class='note'>Each cell is shared among districts by exact area: weight = "
            f"area(cell ∩ district) / cell area. Gridded emissions only (t/yr). District "
            f"polygons cover {covered:,.0f} km² of the {cell_km2.sum():,.0f} km² "
            "grid.</p>")
    if "boundary_note" in districts.columns:  # the boundaries' source, licence, status
        for text in dict.fromkeys(districts["boundary_note"].dropna().astype(str)):
            note += f"<p class='note'>Boundaries: {html.escape(text)}</p>"
    t_html = table(["code", "name (zh)", "name (en)", *[label(s) for s in species]], rows,
                   numeric=set(range(3, 3 + len(species))), table_id="districts", bold_last=True)
    return note + f"<div class='scroll'>{t_html}</div>"


def _top_cells(data: BuildData, dnames: list[str] | None, weights: np.ndarray | None) -> str:
    species = data.species
    rank_sp = "CO2" if "CO2" in species else species[0]
    tot = data.totals_t()
    flat = {sp: tot[i].ravel() for i, sp in enumerate(species)}
    order = np.argsort(-flat[rank_sp], kind="stable")[:TOP_N]
    order = [c for c in order if flat[rank_sp][c] > 0]
    iy, ix = np.divmod(np.asarray(order, dtype=np.int64), data.grid.nx)
    # (sector, listed cell): the listed cells only, not a 100 m grid per sector (0.24 GB)
    by_sector = data.annual.sel(species=rank_sp).isel(
        y=xr.DataArray(iy, dims="cell"), x=xr.DataArray(ix, dims="cell")).to_numpy()
    # the district of the listed cells only (not a name for each of the grid's cells)
    dist = dict(zip(order, region_of_cells(weights[order], dnames), strict=True)) \
        if weights is not None and dnames else None
    cols = [sp for sp in ("CO2", "NOx") if sp in species]
    rows = []
    for rank, c in enumerate(order, 1):
        s = by_sector[:, rank - 1]
        dom = int(np.argmax(s))
        share = s[dom] / s.sum() if s.sum() > 0 else 0
        rows.append([rank, iy[rank - 1], ix[rank - 1], f"{data.lon.ravel()[c]:.4f}",
                     f"{data.lat.ravel()[c]:.4f}", dist[c] if dist else "–",
                     *[fmt(flat[sp][c]) for sp in cols], f"{data.sectors[dom]} ({share:.0%})"])
    head = ["#", "iy", "ix", "lon", "lat", "district", *[f"{label(s)} t/yr" for s in cols],
            f"dominant sector ({label(rank_sp)})"]
    return (f"<p class='note'>The {TOP_N} cells with the largest annual {label(rank_sp)}; lon/lat "
            "of the cell centre; iy counted from the southern row.</p>"
            + table(head, rows, numeric={0, 1, 2, 3, 4, 6, 7}, table_id="top-cells"))


def _top_stacks(data: BuildData, sources: pd.DataFrame | None,
                emissions: pd.DataFrame | None) -> str:
    if sources is None or emissions is None:
        return "<p class='note'>sources.csv or emissions_by_source.csv missing.</p>"
    pts = sources[sources["kind"] == "point"]
    if pts.empty:
        return "<p class='note'>No point sources in this build.</p>"
    em = emissions.set_index(emissions.columns[0])
    j = pts.join(em, on="source_id", rsuffix="_em")
    rank = "CO2" if "CO2" in j.columns else em.columns[0]
    j = j.sort_values(rank, ascending=False, kind="stable").head(TOP_N)
    tr = pyproj.Transformer.from_crs(data.grid.crs, data.grid.crs.geodetic_crs, always_xy=True)
    lon, lat = tr.transform(j["x"].to_numpy(), j["y"].to_numpy())
    rows = []
    for k, (_, r) in enumerate(j.iterrows()):
        def g(sp: str, div: float, row=r) -> str:
            return fmt(float(row[sp]) / div) if sp in row and pd.notna(row[sp]) else "–"
        out = float(r.get("outside_domain_fraction", 0) or 0)
        rows.append([k + 1, r["source_id"], r["sector"], r.get("fuel", ""), r.get("technology", ""),
                     "" if pd.isna(r.get("control")) else r.get("control"),
                     f"{lon[k]:.4f}", f"{lat[k]:.4f}", g("CO2", 1e6), g("NOx", 1e3),
                     g("SO2", 1e3), g("PM2_5", 1e3),
                     "outside grid" if out >= 1 else f"{out:.0%} outside" if out > 0 else ""])
    head = ["#", "id", "sector", "fuel", "technology", "control", "lon", "lat", "CO2 kt/yr",
            "NOx t/yr", "SO2 t/yr", "PM2.5 t/yr", "note"]
    return (f"<p class='note'>The {TOP_N} point sources with the largest {label(rank)} "
            f"(emissions_by_source.csv joined with sources.csv; {len(pts)} point sources in "
            "all).</p>" + table(head, rows, numeric={0, 6, 7, 8, 9, 10, 11},
                                table_id="top-stacks"))


def _notices(notices: pd.DataFrame | None) -> str:
    if notices is None or notices.empty:
        return "<p class='ok'>No notices.</p>"
    counts = notices.groupby("reason").size().sort_values(ascending=False)
    summary = table(["reason", "sources"], [[r, n] for r, n in counts.items()], numeric={1},
                    table_id="notice-counts")
    full = table(list(notices.columns), notices.astype(str).values.tolist(), table_id="notices")
    return summary + details(f"All {len(notices)} notices", full, open_=len(notices) <= 20)


def _short_ids(value: Any, n: int = 8) -> str:
    """``"P1; P2; …"``: the first ``n`` source ids of a ``"; "``-joined list."""
    if pd.isna(value):
        return ""
    ids = [s.strip() for s in str(value).split(";") if s.strip()]
    return "; ".join(ids[:n]) + (f" … (+{len(ids) - n})" if len(ids) > n else "")


def _factor_rows(value: Any, n: int = 6) -> Raw:
    """Factor-table rows of a finding (``" | "``-joined), one per line, file names shortened."""
    if pd.isna(value):
        return Raw("")
    rows = [r.strip() for r in str(value).split(" | ") if r.strip()]
    lines = []
    for r in rows[:n]:
        path, sep, rest = r.partition(" row ")
        lines.append(html.escape(f"{Path(path).name} row {rest}" if sep else r))
    if len(rows) > n:
        lines.append(f"… (+{len(rows) - n})")
    return Raw("<br>".join(lines))


def _finding_cell(column: str, value: Any) -> Any:
    if column == "source_ids":
        return _short_ids(value)
    if column == "factor_rows":
        return _factor_rows(value)
    if pd.isna(value):
        return ""
    if column in ("value", "expected") and isinstance(value, float):
        return f"{value:.4g}"
    return value


def check_counts(checks: pd.DataFrame | None) -> dict[str, int]:
    """Findings per severity (lower case) of a ``checks.csv`` table."""
    if checks is None or checks.empty or "severity" not in checks.columns:
        return {}
    return checks["severity"].astype(str).str.lower().value_counts().to_dict()


def _checks(checks: pd.DataFrame | None) -> str:
    if checks is None:
        return "<p class='note'>No checks.csv in this build (same-source checks not run).</p>"
    if checks.empty:
        return "<p class='ok'>The same-source checks found nothing.</p>"
    counts = check_counts(checks)
    order = {"error": 0, "warning": 1, "info": 2}
    c = checks.assign(_o=checks["severity"].astype(str).str.lower().map(order).fillna(3))
    c = c.sort_values(["_o", "check"], kind="stable").drop(columns="_o")
    cols = [k for k in ("check", "severity", "sector", "pair", "value", "unit", "expected",
                        "message", "source_ids", "factor_rows") if k in c.columns]
    rows = [[_finding_cell(k, r[k]) for k in cols] for _, r in c.iterrows()]
    css = {"error": "bad", "warning": "warn"}
    parts = ", ".join(f"<span class='{css.get(s, 'note')}'>"
                      f"{n} {html.escape(s)}{'s' if n != 1 else ''}</span>"
                      for s, n in sorted(counts.items(), key=lambda kv: order.get(kv[0], 3)))
    return f"<p>{parts}</p>" + table(cols, rows, table_id="checks")


def _zone_note(data: BuildData) -> str:
    if not data.timezone_recorded:
        return ("<p class='warn'>annual.nc records no profile time zone (temporal_factor "
                "attribute profile_timezone): the weeks are shown in UTC.</p>")
    return (f"<p class='note'>Hours in the time zone of the build's temporal profiles: "
            f"{html.escape(data.timezone)}.</p>")


def write_report(build_dir: str | Path, out_dir: str | Path | None = None, *,
                 boundaries: str | Path | None = None,
                 weeks: list[str | pd.Timestamp] | None = None) -> Path:
    """Write the QA report of a build: ``index.html`` and its PNG figures.

    Parameters
    ----------
    build_dir : build directory (``OUT/<build-id>`` or ``OUT/latest``)
    out_dir : where to write; default ``<build_dir>/report``
    boundaries : district GeoPackage (layer ``districts``); default the manifest's ``boundaries``
    weeks : Monday dates of the weeks to plot hour by hour, local in the build's profile time
        zone (``profile_timezone`` of ``annual.nc``; UTC when not recorded); default the second
        full week of January and of July of the build year

    Returns
    -------
    pathlib.Path
        Path of ``index.html``. Amounts in the report are tonnes per year (t/yr) unless labelled.
    """
    t0 = time.perf_counter()
    data = open_build(build_dir)
    out = Path(out_dir) if out_dir is not None else data.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    # figures of an earlier run
    for pattern in ("map_*.png", "week_*.png", "monthly.png", "unc_*.png"):
        for old in out.glob(pattern):
            old.unlink()
    inputs = data.read_csv("inputs.csv")
    sources = data.read_csv("sources.csv", dtype={"source_id": str})
    emissions = data.read_csv("emissions_by_source.csv", dtype={"source_id": str})
    notices = data.read_csv("notices.csv", dtype=str)
    checks = data.read_csv("checks.csv")
    bpath = boundaries if boundaries is not None else data.boundaries
    if bpath and not Path(bpath).exists():
        print(f"note: district boundaries {bpath} (as the manifest records it, relative to the "
              "build's configuration) not found from here; pass --boundaries to draw them")
    districts = read_regions(bpath)
    weights = region_weights(data.grid, districts) if districts is not None else None
    dnames = region_names(districts) if districts is not None else None
    outlines = boundary_lines_km(districts, data.grid)

    sec_table, sec_ok, sec_worst = _sector_species_table(data)
    ledger_html, bal_ok, bal_worst = _ledger_section(data)

    # maps
    tot = data.totals_t()
    areas_km2 = data.grid.cell_area_m2 / 1e6
    cell_km2 = (f"{areas_km2.min():.3g}–{areas_km2.max():.3g} km²"
                if np.ptp(areas_km2) > 1e-9 * areas_km2.max() else f"{areas_km2.flat[0]:g} km²")
    maps = []
    for i, sp in enumerate(data.species):
        total = float(tot[i].sum())
        if total <= 0:
            continue
        fig = map_figure(tot[i], data.grid, outlines,
                         f"{label(sp)}: annual emissions {data.year}\ncity total {fmt(total)} t/yr",
                         f"t/yr per cell ({cell_km2})")
        maps.append(save_png(fig, out, f"map_{sp}.png"))
    zero = [label(sp) for i, sp in enumerate(data.species) if float(tot[i].sum()) <= 0]

    # time series
    monthly = monthly_totals(data)
    monthly_img = save_png(monthly_figure(monthly, data.year), out, "monthly.png")
    mrows = [[label(sp), *[fmt(monthly.loc[m, sp]) for m in range(1, 13)],
              fmt(monthly[sp].sum())] for sp in monthly.columns]
    monthly_tab = details("Monthly totals (t/month)", "<div class='scroll'>" + table(
        ["species", *[f"{m:02d}" for m in range(1, 13)], "year"], mrows,
        numeric=set(range(1, 14)), table_id="monthly") + "</div>")
    key = [s for s in KEY_SPECIES if s in data.species]
    week_imgs, week_qa = [], []
    for w in pick_weeks(data, weeks):
        measured, expected, worst = week_series(data, w, key)
        if measured.empty:
            continue
        end = w + pd.Timedelta(days=6)
        fig = week_figure(measured, expected, f"City total per hour, week {w:%d %b} – "
                          f"{end:%d %b %Y} (local time), from the hourly files",
                          time_label=local_time_label(data.timezone, w))
        week_imgs.append(save_png(fig, out, f"week_{w:%Y%m%d}.png"))
        week_qa.append((worst <= 1e-6, f"hourly files of the week from {w:%Y-%m-%d} agree with "
                        f"annual.nc × temporal factors (largest difference {worst:.1e} of the "
                        "week's peak)"))

    counts = check_counts(checks)
    qa = [(sec_ok, f"annual.nc equals the ledger's gridded mass per sector × species "
                   f"(largest relative difference {sec_worst:.1e})"),
          (bal_ok, f"ledger balance read = gridded + outside + rejected (largest relative "
                   f"residual {bal_worst:.1e})"),
          *week_qa,
          (not data.sha_mismatch,
           f"{len(data.sha_checked)} files read by this report match the manifest's sha256"
           if not data.sha_mismatch else "files differ from the manifest: "
           + ", ".join(data.sha_mismatch)),
          (None if checks is None else counts.get("error", 0) == 0,
           "same-source checks: not run (no checks.csv)" if checks is None else
           f"same-source checks: {counts.get('error', 0)} errors, "
           f"{counts.get('warning', 0)} warnings")]

    regional = regional_section(data, outlines, out)
    sections = [
        ("build", "Build", _header(data, inputs, bpath) + "<h3>Checks made by this report</h3>"
         + _qa_block(qa)),
        ("totals", "Totals by sector",
         "<p class='note'>Gridded annual emissions in t/yr (sum of annual.nc; sources and parts "
         "of sources beyond the grid are in the ledger's 'outside domain'). CO2e: AR6 GWP100."
         "</p>" + sec_table),
        ("districts", "Totals by district", _district_section(data, districts, weights)),
        ("maps", "Maps", "<p class='note'>Annual emissions per cell, t/yr, log colour scale; "
         "grey: no emissions; lines: district boundaries.</p><div class='figs'>"
         + "".join(maps) + "</div>" + (f"<p class='note'>No emissions of: {', '.join(zero)}.</p>"
                                       if zero else "")),
        *([("regional", "Regional background", regional)] if regional else []),
        ("hourly", "Hourly weeks", _zone_note(data) + (
            "".join(f"<figure>{img}</figure>" for img in week_imgs)
            or "<p class='note'>No hourly files to plot.</p>")),
        ("monthly", "Monthly", f"<figure>{monthly_img}</figure>{monthly_tab}"),
        ("topcells", "Top cells", _top_cells(data, dnames, weights)),
        ("stacks", "Top stacks", _top_stacks(data, sources, emissions)),
        ("ledger", "Ledger", ledger_html),
        ("notices", "Notices", _notices(notices)),
        ("checks", "Same-source checks", _checks(checks)),
        ("uncertainty", "Uncertainty", uncertainty_section(data, out, outlines)),
    ]
    body = [f"<p class='note'>Tongyuan QA report, written "
            f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC in "
            f"{time.perf_counter() - t0:.1f} s from the files of the build directory only.</p>"]
    body += [f"<section id='{a}'><h2>{html.escape(t)}</h2>{content}</section>"
             for a, t, content in sections]
    page = html_page(f"Tongyuan QA report — {data.build_id}", [(a, t) for a, t, _ in sections],
                     body)
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def summary_markdown(build_dir: str | Path) -> str:
    """Short markdown summary of a build for a Prefect artifact.

    Parameters
    ----------
    build_dir : build directory

    Returns
    -------
    str
        Build id, a table of ledger totals per species (read and gridded, t/yr) and the number
        of same-source check errors and warnings.
    """
    data = open_build(build_dir)
    path = data.path
    per = data.ledger.groupby("species", sort=False)[["read_kg", "gridded_kg", "outside_domain_kg",
                                                 "rejected_kg"]].sum() / 1e3
    lines = [f"## Tongyuan build `{data.build_id}` ({data.year})",
             "", "| species | read t/yr | gridded t/yr | outside domain t/yr | rejected t/yr |",
             "|---|---:|---:|---:|---:|"]
    for sp, r in per.iterrows():
        lines.append(f"| {label(str(sp))} | {fmt(r.read_kg)} | {fmt(r.gridded_kg)} | "
                     f"{fmt(r.outside_domain_kg)} | {fmt(r.rejected_kg)} |")
    checks_path = path / "checks.csv"
    lines.append("")
    if checks_path.exists():
        counts = check_counts(pd.read_csv(checks_path))
        lines.append(f"Same-source checks: **{counts.get('error', 0)} errors**, "
                     f"**{counts.get('warning', 0)} warnings** (checks.csv).")
    else:
        lines.append("Same-source checks: not run (no checks.csv).")
    if (path / "report" / "index.html").exists():
        lines.append(f"QA report: `{path / 'report' / 'index.html'}`")
    return "\n".join(lines)
