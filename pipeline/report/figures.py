"""Figures of the report pages: annual maps, difference maps, monthly bars, hourly weeks and
the map of where the local and the regional inventory hold.

Maps are drawn in grid-CRS kilometres with the district outlines of
:func:`boundary_lines_km`; every function returns a matplotlib figure (Agg backend) for
:func:`pipeline.report.html.save_png`.
"""

from __future__ import annotations

import geopandas as gpd
import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import shapely  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm, Normalize, SymLogNorm  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from grids.grid import Grid  # noqa: E402
from pipeline.report.build_dir import BuildData  # noqa: E402
from pipeline.report.html import label  # noqa: E402


def boundary_lines_km(districts: gpd.GeoDataFrame | None, grid: Grid) -> list[np.ndarray]:
    """District outlines in grid-CRS kilometres, as (n, 2) coordinate arrays."""
    if districts is None or len(districts) == 0:
        return []
    geoms = districts.to_crs(grid.crs).geometry.to_numpy()
    rings = shapely.get_parts(shapely.boundary(geoms))
    rings = shapely.get_parts(rings)
    return [shapely.get_coordinates(r) / 1e3 for r in rings if not r.is_empty]


def map_axes(ax: plt.Axes, grid: Grid, outlines: list[np.ndarray]) -> None:
    xmin, ymin, xmax, ymax = (v / 1e3 for v in grid.bounds)
    for xy in outlines:
        ax.plot(xy[:, 0], xy[:, 1], color="#333333", linewidth=0.5, alpha=0.8)
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.yaxis.set_major_locator(MaxNLocator(7))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    crs_name = grid.crs.name
    ax.set_xlabel(f"x [km] ({crs_name})", fontsize=8)
    ax.set_ylabel("y [km]", fontsize=8)
    ax.tick_params(labelsize=7)


def map_figure(values: np.ndarray, grid: Grid, outlines: list[np.ndarray], title: str,
               unit: str) -> plt.Figure:
    """Map of a positive field per cell with a log colour scale; zero cells left blank.

    Parameters
    ----------
    values : (ny, nx) amount per cell, e.g. t/yr; row 0 is the southern row
    grid : grid of the values
    outlines : district outlines in km (see :func:`boundary_lines_km`)
    title, unit : figure title and colour-bar label
    """
    fig, ax = plt.subplots(figsize=(6.2, 5.6))
    pos = values[values > 0]
    extent = [v / 1e3 for v in (grid.bounds[0], grid.bounds[2], grid.bounds[1], grid.bounds[3])]
    ax.set_facecolor("#f2f2f2")
    if pos.size:
        vmax = float(pos.max())
        vmin = max(float(np.percentile(pos, 1)), vmax * 1e-6)
        vmin = min(vmin, vmax / 10)
        masked = np.ma.masked_less_equal(values, 0)
        im = ax.imshow(masked, origin="lower", extent=extent, cmap="YlOrRd",
                       norm=LogNorm(vmin=vmin, vmax=vmax), interpolation="nearest")
        cb = fig.colorbar(im, ax=ax, shrink=0.82, pad=0.04, extend="min")
        cb.set_label(unit, fontsize=8)
        cb.ax.tick_params(labelsize=7)
    else:
        ax.text(0.5, 0.5, "no emissions", transform=ax.transAxes, ha="center", va="center")
    map_axes(ax, grid, outlines)
    ax.set_title(title, fontsize=10)
    return fig


def _scale(max_value: float, unit: str) -> tuple[float, str]:
    """(divisor, unit) so that amounts in tonnes read well: t, kt or Mt."""
    if max_value >= 1e6:
        return 1e6, f"Mt/{unit}"
    if max_value >= 1e4:
        return 1e3, f"kt/{unit}"
    if 0 < max_value < 1:
        return 1e-3, f"kg/{unit}"
    return 1.0, f"t/{unit}"


def monthly_figure(monthly: pd.DataFrame, year: int) -> plt.Figure:
    """Small multiples of monthly totals [t/month] per species (columns), months as rows."""
    species = [s for s in monthly.columns if monthly[s].abs().sum() > 0]
    ncol = 4
    nrow = max(1, int(np.ceil(len(species) / ncol)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(12, 2.3 * nrow), squeeze=False)
    months = np.arange(1, 13)
    for ax, sp in zip(axes.ravel(), species, strict=False):
        div, unit = _scale(float(monthly[sp].max()), "month")
        ax.bar(months, monthly[sp].to_numpy() / div, color="#2b5d8a", width=0.75)
        ax.set_title(f"{label(sp)} [{unit}]", fontsize=9)
        ax.set_xticks(months, ["J", "F", "M", "A", "M", "J", "J", "A", "S", "O", "N", "D"],
                      fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[len(species):]:
        ax.axis("off")
    fig.suptitle(f"Monthly emissions {year} (UTC calendar months; annual.nc × temporal factors)",
                 fontsize=11)
    fig.tight_layout()
    return fig


def week_figure(series: pd.DataFrame, expected: pd.DataFrame, title: str, *,
                time_label: str = "local time") -> plt.Figure:
    """Hourly city totals of a few species over one week, local time on the axis.

    Parameters
    ----------
    series : kg/h per species (columns) measured in the hourly files, index local naive times
    expected : the same from annual.nc × temporal factors (drawn dashed)
    title : figure title
    time_label : label of the time axis, naming the zone of the index (see
        :func:`pipeline.report.qa.local_time_label`)
    """
    species = [s for s in series.columns if series[s].abs().sum() > 0] or list(series.columns)[:1]
    fig, axes = plt.subplots(len(species), 1, figsize=(11, 1.55 * len(species) + 0.8),
                             sharex=True, squeeze=False)
    for ax, sp in zip(axes[:, 0], species, strict=True):
        t = series[sp] / 1e3
        div, unit = _scale(float(t.max()) * 1.0001, "h")
        ax.step(series.index, t / div, where="post", color="#2b5d8a", linewidth=1.2,
                label="hourly files")
        if sp in expected:
            ax.step(expected.index, expected[sp] / 1e3 / div, where="post", color="#e07b00",
                    linewidth=0.8, linestyle="--", label="annual.nc × factors")
        ax.set_ylabel(f"{label(sp)}\n[{unit}]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper right", ncol=2)
    ax = axes[-1, 0]
    ax.xaxis.set_major_locator(mdates.DayLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))
    ax.xaxis.set_minor_locator(mdates.HourLocator(byhour=[6, 12, 18]))
    ax.set_xlabel(time_label, fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def diff_map(delta: np.ndarray, data: BuildData, outlines: list[np.ndarray], title: str,
             what: str = "B − A") -> plt.Figure:
    """Map of B − A per cell [t/yr], diverging colours centred at 0.

    A symmetric-log scale is used when the non-zero changes span more than two decades, else a
    linear one.
    """
    grid = data.grid
    fig, ax = plt.subplots(figsize=(6.2, 5.6))
    extent = [v / 1e3 for v in (grid.bounds[0], grid.bounds[2], grid.bounds[1], grid.bounds[3])]
    nz = np.abs(delta[delta != 0])
    m = float(nz.max()) if nz.size else 1.0
    if nz.size and m / float(nz.min()) > 100:
        lin = max(float(np.percentile(nz, 5)), m * 1e-4)
        norm: Normalize = SymLogNorm(linthresh=lin, vmin=-m, vmax=m, base=10)
        scale = "symmetric log"
    else:
        norm = Normalize(vmin=-m, vmax=m)
        scale = "linear"
    shown = np.ma.masked_equal(delta, 0.0)
    ax.set_facecolor("#f7f7f7")
    im = ax.imshow(shown, origin="lower", extent=extent, cmap="RdBu_r", norm=norm,
                   interpolation="nearest")
    cb = fig.colorbar(im, ax=ax, shrink=0.82, pad=0.04)
    cb.set_label(f"{what}, t/yr per cell ({scale})", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    map_axes(ax, grid, outlines)
    ax.set_title(title, fontsize=10)
    return fig


#: categories of :func:`holdings_figure`, in order of their codes 0..4, with their colours
HOLDINGS = [("no emissions", "#f2f2f2"), ("regional inventory only", "#9ecae1"),
            ("local inventory only", "#fdae6b"),
            ("local replaces regional for its sectors (regional kept for the others)",
             "#e6550d"),
            ("local and regional side by side (no replacement)", "#756bb1")]


def holdings_figure(category: np.ndarray, local_share: np.ndarray, grid: Grid,
                    outlines: list[np.ndarray], species: str) -> plt.Figure:
    """Two maps of a build with a regional inventory: which inventory holds each cell
    (:data:`HOLDINGS` codes) and the local inventory's share of the cell's ``species``.

    Parameters
    ----------
    category : (ny, nx) codes 0..4 of :data:`HOLDINGS`
    local_share : (ny, nx) local / (local + regional) of ``species`` [1], NaN where neither
    grid : grid of the values
    outlines : mask / district outlines in km (:func:`boundary_lines_km`)
    species : the species of the right map
    """
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12.4, 5.8))
    extent = [v / 1e3 for v in (grid.bounds[0], grid.bounds[2], grid.bounds[1], grid.bounds[3])]
    cmap = ListedColormap([c for _, c in HOLDINGS])
    a1.imshow(category, origin="lower", extent=extent, cmap=cmap, vmin=-0.5,
              vmax=len(HOLDINGS) - 0.5, interpolation="nearest")
    counts = np.bincount(category.ravel().astype(np.int64), minlength=len(HOLDINGS))
    a1.legend(handles=[Patch(color=c, label=f"{name} ({n} cells)")
                       for (name, c), n in zip(HOLDINGS, counts, strict=True) if n],
              fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
    map_axes(a1, grid, outlines)
    a1.set_title("Where each inventory holds", fontsize=10)
    a2.set_facecolor("#f2f2f2")
    im = a2.imshow(np.ma.masked_invalid(local_share), origin="lower", extent=extent,
                   cmap="PuOr_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    cb = fig.colorbar(im, ax=a2, shrink=0.82, pad=0.04)
    cb.set_label(f"local / (local + regional) {label(species)}", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    map_axes(a2, grid, outlines)
    a2.set_title(f"Local inventory's share of {label(species)} per cell", fontsize=10)
    fig.tight_layout()
    return fig
