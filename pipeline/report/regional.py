"""The report's section on a regional background inventory: where each inventory holds.

A build with a ``regional:`` section has regional sectors ``<sector>@<inventory>[-MM]`` in
``annual.nc`` and ``regional_merge.nc`` (:data:`pipeline.regional.MERGE_FILE`: the mask share
and the regional mass replaced by the local inventory per cell). :func:`holdings` classifies
every cell (:data:`pipeline.report.figures.HOLDINGS`); :func:`regional_section` draws the map
and tabulates the merge ledger (``regional_read``, ``regional_outside``, ``replaced_by_local``,
``regional_gridded``) per inventory and species.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from pipeline.regional import MERGE_FILE, REGIONAL_COLUMNS
from pipeline.report.build_dir import BuildData
from pipeline.report.figures import HOLDINGS, holdings_figure
from pipeline.report.html import fmt, label, save_png, table


def is_regional(sector: str) -> bool:
    """A regional build sector (``road@meic-07``)."""
    return "@" in sector


def inventory_of(sector: str) -> str:
    """The inventory of a regional build sector (``road@meic-07`` → ``meic``)."""
    return sector.split("@", 1)[1].rsplit("-", 1)[0] if sector.rsplit("-", 1)[-1].isdigit() \
        else sector.split("@", 1)[1]


def replaced_cells(data: BuildData) -> np.ndarray | None:
    """Regional mass replaced by the local inventory per cell, all species [kg/yr], (ny, nx),
    from ``regional_merge.nc``; None when the build has no such file."""
    path = data.path / MERGE_FILE
    if not path.exists():
        return None
    data.verify(MERGE_FILE)
    with xr.open_dataset(path) as ds:
        rep = ds["replaced_by_local"].load()
    keep = [s for s in rep["species"].values if str(s) != "CO2e"]
    return rep.sel(species=keep).sum("species").to_numpy()


def holdings(data: BuildData, species: str) -> tuple[np.ndarray, np.ndarray]:
    """Per cell its :data:`HOLDINGS` code and the local share of ``species`` [1] (NaN where
    neither inventory has it).

    Codes: 0 no emissions; 1 regional only; 2 local only; 3 the local inventory replaced
    regional mass there (regional mass of sectors the city lacks may remain); 4 local and
    regional mass without replacement (beyond the mask)."""
    sectors = data.sectors
    reg = [s for s in sectors if is_regional(s)]
    loc = [s for s in sectors if not is_regional(s)]
    species_all = [s for s in data.species if s != "CO2e"]
    a = data.annual.sel(species=species_all)
    local = a.sel(sector=loc).sum(("sector", "species")).to_numpy() if loc else 0.0
    regional = a.sel(sector=reg).sum(("sector", "species")).to_numpy()
    rep = replaced_cells(data)
    replaced = np.zeros(data.grid.shape, dtype=bool) if rep is None else rep > 0
    has_l, has_r = np.asarray(local) > 0, regional > 0
    cat = np.zeros(data.grid.shape, dtype=np.int64)
    cat[has_r & ~has_l] = 1
    cat[has_l & ~has_r] = 2
    cat[has_l & has_r] = 4
    cat[replaced] = 3
    one = data.annual.sel(species=species)
    ls = one.sel(sector=loc).sum("sector").to_numpy() if loc else np.zeros(data.grid.shape)
    rs = one.sel(sector=reg).sum("sector").to_numpy()
    tot = ls + rs
    share = np.divide(ls, tot, out=np.full(tot.shape, np.nan), where=tot > 0)
    return cat, share


def regional_section(data: BuildData, outlines: list[np.ndarray], out: Path) -> str | None:
    """HTML of the regional section (map and merge ledger), or None for a build without a
    regional inventory."""
    if not any(is_regional(s) for s in data.sectors):
        return None
    species = next((s for s in ("NOx", "CO2", "SO2") if s in data.species), data.species[0])
    cat, share = holdings(data, species)
    img = save_png(holdings_figure(cat, share, data.grid, outlines, species), out,
                   "map_holdings.png")
    counts = np.bincount(cat.ravel(), minlength=len(HOLDINGS))
    led = data.ledger
    cols = [c for c in REGIONAL_COLUMNS if c in led.columns]
    rows = []
    if cols:
        t = led[led[cols].abs().sum(axis=1) > 0][cols]
        inv = [inventory_of(s) for s in t.index.get_level_values("sector")]
        per = t.groupby([inv, t.index.get_level_values("species")], sort=True).sum() / 1e3
        rows = [[name, label(str(sp)), *[fmt(r[c]) for c in cols]]
                for (name, sp), r in per.iterrows()]
    tally = ", ".join(f"{n} {name}" for (name, _), n in zip(HOLDINGS, counts, strict=True) if n)
    note = (f"<p class='note'>Left: per cell, which inventory its emissions come from ({tally}"
            "). Inside the mask (district outlines) the local inventory replaces the regional "
            "one for every sector it has; sectors it lacks stay regional. Right: the local "
            f"share of {label(species)} per cell. Regional sectors are named "
            "<code>&lt;sector&gt;@&lt;inventory&gt;[-MM]</code> in the tables above.</p>")
    head = ["inventory", "species", *[c.replace("_", " ") + " t/yr" for c in cols]]
    tab = table(head, rows, numeric=set(range(2, len(head))), table_id="regional-ledger") \
        if rows else ""
    return (note + f"<figure>{img}</figure><p class='note'>regional read = regional gridded + "
            "regional outside (beyond the grid) + replaced by local.</p>" + tab)
